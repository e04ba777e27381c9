"""KVM ioctl numbers, exit reasons and capabilities: one table, checked against the headers."""

from __future__ import annotations

import ctypes

from . import structs as s

_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
KVMIO = 0xAE


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


def _io(nr: int) -> int:
    return _ioc(_IOC_NONE, nr, 0)


def _ior(nr: int, struct: type) -> int:
    return _ioc(_IOC_READ, nr, ctypes.sizeof(struct))


def _iow(nr: int, struct: type) -> int:
    return _ioc(_IOC_WRITE, nr, ctypes.sizeof(struct))


def _iowr(nr: int, struct: type) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, nr, ctypes.sizeof(struct))


# /dev/kvm
KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_CHECK_EXTENSION = _io(0x03)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_GET_SUPPORTED_CPUID = _iowr(0x05, s.kvm_cpuid2)
KVM_GET_MSR_INDEX_LIST = _iowr(0x02, s.kvm_msr_list)
# VM
KVM_CREATE_VCPU = _io(0x41)
KVM_GET_DIRTY_LOG = _iow(0x42, s.kvm_dirty_log)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, s.kvm_userspace_memory_region)
KVM_SET_TSS_ADDR = _io(0x47)
KVM_SET_IDENTITY_MAP_ADDR = _iow(0x48, ctypes.c_uint64)
KVM_CREATE_IRQCHIP = _io(0x60)
KVM_IRQ_LINE = _iow(0x61, s.kvm_irq_level)
KVM_IRQ_LINE_STATUS = _iowr(0x67, s.kvm_irq_level)
KVM_IRQFD = _iow(0x76, s.kvm_irqfd)
KVM_CREATE_PIT2 = _iow(0x77, s.kvm_pit_config)
KVM_IOEVENTFD = _iow(0x79, s.kvm_ioeventfd)
KVM_SIGNAL_MSI = _iow(0xA5, s.kvm_msi)
KVM_ENABLE_CAP = _iow(0xA3, s.kvm_enable_cap)
# vCPU
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, s.kvm_regs)
KVM_SET_REGS = _iow(0x82, s.kvm_regs)
KVM_GET_SREGS = _ior(0x83, s.kvm_sregs)
KVM_SET_SREGS = _iow(0x84, s.kvm_sregs)
KVM_INTERRUPT = _iow(0x86, s.kvm_interrupt)
KVM_GET_MSRS = _iowr(0x88, s.kvm_msrs)
KVM_SET_MSRS = _iow(0x89, s.kvm_msrs)
KVM_SET_SIGNAL_MASK = _iow(0x8B, s.kvm_signal_mask)
KVM_GET_FPU = _ior(0x8C, s.kvm_fpu)
KVM_SET_FPU = _iow(0x8D, s.kvm_fpu)
KVM_GET_LAPIC = _ior(0x8E, s.kvm_lapic_state)
KVM_SET_LAPIC = _iow(0x8F, s.kvm_lapic_state)
KVM_SET_CPUID2 = _iow(0x90, s.kvm_cpuid2)
KVM_GET_CPUID2 = _iowr(0x91, s.kvm_cpuid2)
KVM_GET_MP_STATE = _ior(0x98, s.kvm_mp_state)
KVM_SET_MP_STATE = _iow(0x99, s.kvm_mp_state)
KVM_NMI = _io(0x9A)
KVM_GET_VCPU_EVENTS = _ior(0x9F, s.kvm_vcpu_events)
KVM_SET_VCPU_EVENTS = _iow(0xA0, s.kvm_vcpu_events)
KVM_GET_TSC_KHZ = _io(0xA3)

# Exit reasons (kvm_run.exit_reason)
KVM_EXIT_UNKNOWN = 0
KVM_EXIT_EXCEPTION = 1
KVM_EXIT_IO = 2
KVM_EXIT_HYPERCALL = 3
KVM_EXIT_DEBUG = 4
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_IRQ_WINDOW_OPEN = 7
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_NMI = 16
KVM_EXIT_INTERNAL_ERROR = 17
KVM_EXIT_SYSTEM_EVENT = 24
KVM_EXIT_X86_RDMSR = 29
KVM_EXIT_X86_WRMSR = 30

KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

# Capabilities (KVM_CHECK_EXTENSION)
KVM_CAP_IRQCHIP = 0
KVM_CAP_HLT = 1
KVM_CAP_USER_MEMORY = 3
KVM_CAP_SET_TSS_ADDR = 4
KVM_CAP_EXT_CPUID = 7
KVM_CAP_NR_VCPUS = 9
KVM_CAP_NR_MEMSLOTS = 10
KVM_CAP_PIT = 11
KVM_CAP_COALESCED_MMIO = 15
KVM_CAP_SET_IDENTITY_MAP_ADDR = 37
KVM_CAP_IRQFD = 32
KVM_CAP_PIT2 = 33
KVM_CAP_IOEVENTFD = 36
KVM_CAP_VCPU_EVENTS = 41
KVM_CAP_GET_TSC_KHZ = 61
KVM_CAP_MAX_VCPUS = 66
KVM_CAP_SIGNAL_MSI = 77
KVM_CAP_READONLY_MEM = 81
KVM_CAP_SPLIT_IRQCHIP = 121
KVM_CAP_IMMEDIATE_EXIT = 136

KVM_MEM_LOG_DIRTY_PAGES = 1 << 0
KVM_MEM_READONLY = 1 << 1

KVM_IOEVENTFD_FLAG_DATAMATCH = 1 << 0
KVM_IOEVENTFD_FLAG_PIO = 1 << 1
KVM_IOEVENTFD_FLAG_DEASSIGN = 1 << 2
KVM_IRQFD_FLAG_DEASSIGN = 1 << 0
KVM_IRQFD_FLAG_RESAMPLE = 1 << 1

KVM_INTERNAL_ERROR_EMULATION = 1
KVM_INTERNAL_ERROR_SIMUL_EX = 2
KVM_INTERNAL_ERROR_DELIVERY_EV = 3
