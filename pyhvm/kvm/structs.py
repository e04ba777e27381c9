"""ctypes mirrors of the structures in <linux/kvm.h> and <asm/kvm.h> (x86-64).

Field names follow the kernel's so the layout test can compare sizeof/offsetof one to one
(tests/unit/test_kvm_layout.py compiles a C program against the real headers).
"""

from __future__ import annotations

import ctypes
from ctypes import c_int32, c_uint8, c_uint16, c_uint32, c_uint64


class kvm_userspace_memory_region(ctypes.Structure):
    _fields_ = [
        ("slot", c_uint32),
        ("flags", c_uint32),
        ("guest_phys_addr", c_uint64),
        ("memory_size", c_uint64),
        ("userspace_addr", c_uint64),
    ]


class kvm_regs(ctypes.Structure):
    _fields_ = [(name, c_uint64) for name in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
        "rip", "rflags",
    )]


class kvm_segment(ctypes.Structure):
    _fields_ = [
        ("base", c_uint64),
        ("limit", c_uint32),
        ("selector", c_uint16),
        ("type", c_uint8),
        ("present", c_uint8),
        ("dpl", c_uint8),
        ("db", c_uint8),
        ("s", c_uint8),
        ("l", c_uint8),
        ("g", c_uint8),
        ("avl", c_uint8),
        ("unusable", c_uint8),
        ("padding", c_uint8),
    ]


class kvm_dtable(ctypes.Structure):
    _fields_ = [("base", c_uint64), ("limit", c_uint16), ("padding", c_uint16 * 3)]


class kvm_sregs(ctypes.Structure):
    _fields_ = [
        ("cs", kvm_segment), ("ds", kvm_segment), ("es", kvm_segment), ("fs", kvm_segment),
        ("gs", kvm_segment), ("ss", kvm_segment), ("tr", kvm_segment), ("ldt", kvm_segment),
        ("gdt", kvm_dtable), ("idt", kvm_dtable),
        ("cr0", c_uint64), ("cr2", c_uint64), ("cr3", c_uint64), ("cr4", c_uint64),
        ("cr8", c_uint64), ("efer", c_uint64), ("apic_base", c_uint64),
        ("interrupt_bitmap", c_uint64 * 4),
    ]


class kvm_fpu(ctypes.Structure):
    _fields_ = [
        ("fpr", (c_uint8 * 16) * 8),
        ("fcw", c_uint16),
        ("fsw", c_uint16),
        ("ftwx", c_uint8),
        ("pad1", c_uint8),
        ("last_opcode", c_uint16),
        ("last_ip", c_uint64),
        ("last_dp", c_uint64),
        ("xmm", (c_uint8 * 16) * 16),
        ("mxcsr", c_uint32),
        ("pad2", c_uint32),
    ]


class kvm_cpuid_entry2(ctypes.Structure):
    _fields_ = [
        ("function", c_uint32),
        ("index", c_uint32),
        ("flags", c_uint32),
        ("eax", c_uint32),
        ("ebx", c_uint32),
        ("ecx", c_uint32),
        ("edx", c_uint32),
        ("padding", c_uint32 * 3),
    ]


KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1


class kvm_cpuid2(ctypes.Structure):
    """Header only; the entries follow it in the same buffer (see `cpuid2_buffer`)."""

    _fields_ = [("nent", c_uint32), ("padding", c_uint32)]


def cpuid2_buffer(nent: int) -> ctypes.Structure:
    """A kvm_cpuid2 with room for `nent` entries, as one contiguous ctypes object."""

    class _kvm_cpuid2_n(ctypes.Structure):
        _fields_ = [("nent", c_uint32), ("padding", c_uint32),
                    ("entries", kvm_cpuid_entry2 * nent)]

    buf = _kvm_cpuid2_n()
    buf.nent = nent
    return buf


class kvm_msr_entry(ctypes.Structure):
    _fields_ = [("index", c_uint32), ("reserved", c_uint32), ("data", c_uint64)]


class kvm_msr_list(ctypes.Structure):
    _fields_ = [("nmsrs", c_uint32)]


class kvm_msrs(ctypes.Structure):
    _fields_ = [("nmsrs", c_uint32), ("pad", c_uint32)]


def msrs_buffer(n: int) -> ctypes.Structure:
    class _kvm_msrs_n(ctypes.Structure):
        _fields_ = [("nmsrs", c_uint32), ("pad", c_uint32), ("entries", kvm_msr_entry * n)]

    buf = _kvm_msrs_n()
    buf.nmsrs = n
    return buf


class kvm_interrupt(ctypes.Structure):
    _fields_ = [("irq", c_uint32)]


class kvm_irq_level(ctypes.Structure):
    _fields_ = [("irq", c_uint32), ("level", c_uint32)]


class kvm_pit_config(ctypes.Structure):
    _fields_ = [("flags", c_uint32), ("pad", c_uint32 * 15)]


class kvm_irqfd(ctypes.Structure):
    _fields_ = [
        ("fd", c_uint32),
        ("gsi", c_uint32),
        ("flags", c_uint32),
        ("resamplefd", c_uint32),
        ("pad", c_uint8 * 16),
    ]


class kvm_ioeventfd(ctypes.Structure):
    _fields_ = [
        ("datamatch", c_uint64),
        ("addr", c_uint64),
        ("len", c_uint32),
        ("fd", c_int32),
        ("flags", c_uint32),
        ("pad", c_uint8 * 36),
    ]


class kvm_dirty_log(ctypes.Structure):
    _fields_ = [("slot", c_uint32), ("padding1", c_uint32), ("dirty_bitmap", c_uint64)]


class kvm_signal_mask(ctypes.Structure):
    _fields_ = [("len", c_uint32)]


def signal_mask_buffer(sigset: bytes) -> ctypes.Structure:
    class _kvm_signal_mask_n(ctypes.Structure):
        _fields_ = [("len", c_uint32), ("sigset", c_uint8 * len(sigset))]

    buf = _kvm_signal_mask_n()
    buf.len = len(sigset)
    ctypes.memmove(buf.sigset, sigset, len(sigset))
    return buf


class _exception_events(ctypes.Structure):
    _fields_ = [("injected", c_uint8), ("nr", c_uint8), ("has_error_code", c_uint8),
                ("pending", c_uint8), ("error_code", c_uint32)]


class _interrupt_events(ctypes.Structure):
    _fields_ = [("injected", c_uint8), ("nr", c_uint8), ("soft", c_uint8), ("shadow", c_uint8)]


class _nmi_events(ctypes.Structure):
    _fields_ = [("injected", c_uint8), ("pending", c_uint8), ("masked", c_uint8),
                ("pad", c_uint8)]


class _smi_events(ctypes.Structure):
    _fields_ = [("smm", c_uint8), ("pending", c_uint8), ("smm_inside_nmi", c_uint8),
                ("latched_init", c_uint8)]


class kvm_vcpu_events(ctypes.Structure):
    _fields_ = [
        ("exception", _exception_events),
        ("interrupt", _interrupt_events),
        ("nmi", _nmi_events),
        ("sipi_vector", c_uint32),
        ("flags", c_uint32),
        ("smi", _smi_events),
        ("triple_fault_pending", c_uint8),
        ("reserved", c_uint8 * 26),
        ("exception_has_payload", c_uint8),
        ("exception_payload", c_uint64),
    ]


class kvm_mp_state(ctypes.Structure):
    _fields_ = [("mp_state", c_uint32)]


class kvm_lapic_state(ctypes.Structure):
    _fields_ = [("regs", c_uint8 * 1024)]


class kvm_enable_cap(ctypes.Structure):
    _fields_ = [("cap", c_uint32), ("flags", c_uint32), ("args", c_uint64 * 4),
                ("pad", c_uint8 * 64)]


class kvm_msi(ctypes.Structure):
    _fields_ = [("address_lo", c_uint32), ("address_hi", c_uint32), ("data", c_uint32),
                ("flags", c_uint32), ("devid", c_uint32), ("pad", c_uint8 * 12)]


# --- the shared kvm_run page -------------------------------------------------------------

class _run_io(ctypes.Structure):
    _fields_ = [("direction", c_uint8), ("size", c_uint8), ("port", c_uint16),
                ("count", c_uint32), ("data_offset", c_uint64)]


class _run_mmio(ctypes.Structure):
    _fields_ = [("phys_addr", c_uint64), ("data", c_uint8 * 8), ("len", c_uint32),
                ("is_write", c_uint8)]


class _run_internal(ctypes.Structure):
    _fields_ = [("suberror", c_uint32), ("ndata", c_uint32), ("data", c_uint64 * 16)]


class _run_fail_entry(ctypes.Structure):
    _fields_ = [("hardware_entry_failure_reason", c_uint64), ("cpu", c_uint32)]


class _run_system_event(ctypes.Structure):
    _fields_ = [("type", c_uint32), ("ndata", c_uint32), ("data", c_uint64 * 16)]


class _run_msr(ctypes.Structure):
    _fields_ = [("error", c_uint8), ("pad", c_uint8 * 7), ("reason", c_uint32),
                ("index", c_uint32), ("data", c_uint64)]


class _run_exit_union(ctypes.Union):
    _fields_ = [
        ("io", _run_io),
        ("mmio", _run_mmio),
        ("internal", _run_internal),
        ("fail_entry", _run_fail_entry),
        ("system_event", _run_system_event),
        ("msr", _run_msr),
        ("padding", c_uint8 * 256),
    ]


class kvm_run(ctypes.Structure):
    _fields_ = [
        ("request_interrupt_window", c_uint8),
        ("immediate_exit", c_uint8),
        ("padding1", c_uint8 * 6),
        ("exit_reason", c_uint32),
        ("ready_for_interrupt_injection", c_uint8),
        ("if_flag", c_uint8),
        ("flags", c_uint16),
        ("cr8", c_uint64),
        ("apic_base", c_uint64),
        ("u", _run_exit_union),
        ("kvm_valid_regs", c_uint64),
        ("kvm_dirty_regs", c_uint64),
        ("s", c_uint8 * 2048),  # synced registers (KVM_CAP_SYNC_REGS); unused
    ]
