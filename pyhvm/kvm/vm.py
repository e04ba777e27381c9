"""`Vm`: a KVM virtual machine file descriptor (memory slots, vCPUs, irqchip, eventfds)."""

from __future__ import annotations

import ctypes
import fcntl
import os
from typing import TYPE_CHECKING

from . import constants as k
from . import structs as s
from .errors import ioctl_error

if TYPE_CHECKING:
    from .system import Kvm
    from .vcpu import Vcpu


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]
_libc.ioctl.restype = ctypes.c_int


def _ioctl_ulong(fd: int, request: int, value: int, what: str) -> int:
    """An ioctl whose argument is an unsigned long (fcntl.ioctl only passes a C int)."""
    ret = _libc.ioctl(fd, request, value)
    if ret < 0:
        err = ctypes.get_errno()
        raise ioctl_error(what, OSError(err, os.strerror(err)))
    return ret


def _ioctl(fd: int, request: int, arg: object, what: str) -> int:
    try:
        return fcntl.ioctl(fd, request, arg)
    except OSError as err:
        raise ioctl_error(what, err) from None


class Vm:
    """One VM. Each method is one ioctl with typed arguments; no policy lives here."""

    def __init__(self, kvm: "Kvm", fd: int) -> None:
        self.kvm = kvm
        self.fd = fd
        self.vcpus: list["Vcpu"] = []

    def close(self) -> None:
        for vcpu in self.vcpus:
            vcpu.close()
        self.vcpus.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def check_extension(self, cap: int) -> int:
        return fcntl.ioctl(self.fd, k.KVM_CHECK_EXTENSION, cap)

    # --- memory -------------------------------------------------------------------------
    def set_user_memory_region(self, slot: int, guest_phys_addr: int, memory_size: int,
                               userspace_addr: int, flags: int = 0) -> None:
        """Map host memory at `userspace_addr` into the guest; size 0 deletes the slot."""
        region = s.kvm_userspace_memory_region(slot, flags, guest_phys_addr, memory_size,
                                               userspace_addr)
        _ioctl(self.fd, k.KVM_SET_USER_MEMORY_REGION, region,
               f"KVM_SET_USER_MEMORY_REGION slot {slot} at {guest_phys_addr:#x}")

    def get_dirty_log(self, slot: int, npages: int) -> bytearray:
        """The slot's dirty bitmap (one bit per 4 KiB page), cleared in the kernel."""
        bitmap = (ctypes.c_uint8 * (((npages + 63) // 64) * 8))()
        log = s.kvm_dirty_log(slot, 0, ctypes.addressof(bitmap))
        _ioctl(self.fd, k.KVM_GET_DIRTY_LOG, log, f"KVM_GET_DIRTY_LOG slot {slot}")
        return bytearray(bitmap)

    def get_dirty_log_into(self, slot: int, bitmap_address: int) -> None:
        """KVM_GET_DIRTY_LOG into a caller's buffer of ceil(npages / 64) u64 words (no
        allocation per call: memory_dirty.DirtyLog reuses one per slot)."""
        log = s.kvm_dirty_log(slot, 0, bitmap_address)
        _ioctl(self.fd, k.KVM_GET_DIRTY_LOG, log, f"KVM_GET_DIRTY_LOG slot {slot}")

    def set_tss_addr(self, addr: int) -> None:
        """Three pages of guest-physical space KVM may use for real-mode emulation (VMX)."""
        _ioctl_ulong(self.fd, k.KVM_SET_TSS_ADDR, addr, "KVM_SET_TSS_ADDR")

    def set_identity_map_addr(self, addr: int) -> None:
        _ioctl(self.fd, k.KVM_SET_IDENTITY_MAP_ADDR, ctypes.c_uint64(addr),
               "KVM_SET_IDENTITY_MAP_ADDR")

    # --- interrupts ---------------------------------------------------------------------
    def create_irqchip(self) -> None:
        _ioctl(self.fd, k.KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP")

    def create_pit2(self, flags: int = 0) -> None:
        _ioctl(self.fd, k.KVM_CREATE_PIT2, s.kvm_pit_config(flags), "KVM_CREATE_PIT2")

    def irq_line(self, irq: int, level: int) -> None:
        _ioctl(self.fd, k.KVM_IRQ_LINE, s.kvm_irq_level(irq, level), "KVM_IRQ_LINE")

    def irqfd(self, fd: int, gsi: int, flags: int = 0, resamplefd: int = 0) -> None:
        _ioctl(self.fd, k.KVM_IRQFD, s.kvm_irqfd(fd, gsi, flags, resamplefd), "KVM_IRQFD")

    def ioeventfd(self, fd: int, addr: int, length: int, *, pio: bool,
                  datamatch: int | None = None, deassign: bool = False) -> None:
        flags = k.KVM_IOEVENTFD_FLAG_PIO if pio else 0
        if datamatch is not None:
            flags |= k.KVM_IOEVENTFD_FLAG_DATAMATCH
        if deassign:
            flags |= k.KVM_IOEVENTFD_FLAG_DEASSIGN
        arg = s.kvm_ioeventfd(datamatch or 0, addr, length, fd, flags)
        _ioctl(self.fd, k.KVM_IOEVENTFD, arg, f"KVM_IOEVENTFD at {addr:#x}")

    def signal_msi(self, address: int, data: int) -> int:
        msi = s.kvm_msi(address & 0xFFFFFFFF, address >> 32, data)
        return _ioctl(self.fd, k.KVM_SIGNAL_MSI, msi, "KVM_SIGNAL_MSI")

    def enable_cap(self, cap: int, *args: int) -> None:
        arg = s.kvm_enable_cap(cap, 0)
        for i, value in enumerate(args):
            arg.args[i] = value
        _ioctl(self.fd, k.KVM_ENABLE_CAP, arg, f"KVM_ENABLE_CAP {cap}")

    # --- vCPUs --------------------------------------------------------------------------
    def create_vcpu(self, vcpu_id: int) -> "Vcpu":
        from .vcpu import Vcpu

        fd = _ioctl(self.fd, k.KVM_CREATE_VCPU, vcpu_id, f"KVM_CREATE_VCPU {vcpu_id}")
        vcpu = Vcpu(self, fd, vcpu_id, self.kvm.vcpu_mmap_size())
        self.vcpus.append(vcpu)
        return vcpu
