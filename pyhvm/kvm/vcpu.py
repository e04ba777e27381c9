"""`Vcpu`: one virtual CPU file descriptor and its shared `kvm_run` page."""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
from typing import TYPE_CHECKING, Iterable

from . import constants as k
from . import structs as s
from .errors import ioctl_error

if TYPE_CHECKING:
    from .vm import Vm


class Vcpu:
    """A vCPU. `run()` enters the guest; the exit is then described by `self.run_page`."""

    def __init__(self, vm: "Vm", fd: int, vcpu_id: int, mmap_size: int) -> None:
        self.vm = vm
        self.fd = fd
        self.id = vcpu_id
        self._mmap = mmap.mmap(fd, mmap_size, mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE)
        # The whole shared area (the I/O data of KVM_EXIT_IO lives at run.io.data_offset).
        self.page = memoryview(self._mmap)
        self.run_page = s.kvm_run.from_buffer(self._mmap)

    def close(self) -> None:
        if self.fd < 0:
            return
        del self.run_page
        self.page.release()
        self._mmap.close()
        os.close(self.fd)
        self.fd = -1

    def _ioctl(self, request: int, arg: object, what: str) -> int:
        try:
            return fcntl.ioctl(self.fd, request, arg)
        except OSError as err:
            raise ioctl_error(what, err) from None

    def run(self) -> None:
        """Enter the guest until the next exit. Raises InterruptedError on a signal."""
        fcntl.ioctl(self.fd, k.KVM_RUN, 0)

    # --- registers ----------------------------------------------------------------------
    def get_regs(self) -> s.kvm_regs:
        regs = s.kvm_regs()
        self._ioctl(k.KVM_GET_REGS, regs, "KVM_GET_REGS")
        return regs

    def set_regs(self, regs: s.kvm_regs) -> None:
        self._ioctl(k.KVM_SET_REGS, regs, "KVM_SET_REGS")

    def get_sregs(self) -> s.kvm_sregs:
        sregs = s.kvm_sregs()
        self._ioctl(k.KVM_GET_SREGS, sregs, "KVM_GET_SREGS")
        return sregs

    def set_sregs(self, sregs: s.kvm_sregs) -> None:
        self._ioctl(k.KVM_SET_SREGS, sregs, "KVM_SET_SREGS")

    def get_fpu(self) -> s.kvm_fpu:
        fpu = s.kvm_fpu()
        self._ioctl(k.KVM_GET_FPU, fpu, "KVM_GET_FPU")
        return fpu

    def set_fpu(self, fpu: s.kvm_fpu) -> None:
        self._ioctl(k.KVM_SET_FPU, fpu, "KVM_SET_FPU")

    def set_cpuid2(self, entries: list[s.kvm_cpuid_entry2]) -> None:
        buf = s.cpuid2_buffer(len(entries))
        for i, entry in enumerate(entries):
            buf.entries[i] = entry
        self._ioctl(k.KVM_SET_CPUID2, buf, "KVM_SET_CPUID2")

    def get_msrs(self, indices: Iterable[int]) -> dict[int, int]:
        indices = list(indices)
        buf = s.msrs_buffer(len(indices))
        for i, index in enumerate(indices):
            buf.entries[i].index = index
        done = self._ioctl(k.KVM_GET_MSRS, buf, "KVM_GET_MSRS")
        return {buf.entries[i].index: buf.entries[i].data for i in range(done)}

    def set_msrs(self, values: dict[int, int]) -> int:
        """Returns how many MSRs KVM accepted (it stops at the first it refuses)."""
        buf = s.msrs_buffer(len(values))
        for i, (index, data) in enumerate(values.items()):
            buf.entries[i].index = index
            buf.entries[i].data = data
        return self._ioctl(k.KVM_SET_MSRS, buf, "KVM_SET_MSRS")

    def get_vcpu_events(self) -> s.kvm_vcpu_events:
        events = s.kvm_vcpu_events()
        self._ioctl(k.KVM_GET_VCPU_EVENTS, events, "KVM_GET_VCPU_EVENTS")
        return events

    def set_vcpu_events(self, events: s.kvm_vcpu_events) -> None:
        self._ioctl(k.KVM_SET_VCPU_EVENTS, events, "KVM_SET_VCPU_EVENTS")

    def get_mp_state(self) -> int:
        state = s.kvm_mp_state()
        self._ioctl(k.KVM_GET_MP_STATE, state, "KVM_GET_MP_STATE")
        return state.mp_state

    def set_mp_state(self, mp_state: int) -> None:
        self._ioctl(k.KVM_SET_MP_STATE, s.kvm_mp_state(mp_state), "KVM_SET_MP_STATE")

    def get_lapic(self) -> bytearray:
        state = s.kvm_lapic_state()
        self._ioctl(k.KVM_GET_LAPIC, state, "KVM_GET_LAPIC")
        return bytearray(state.regs)

    def set_lapic(self, regs: bytes) -> None:
        state = s.kvm_lapic_state()
        ctypes.memmove(state.regs, regs, min(len(regs), 1024))
        self._ioctl(k.KVM_SET_LAPIC, state, "KVM_SET_LAPIC")

    # --- events -------------------------------------------------------------------------
    def interrupt(self, vector: int) -> None:
        """Queue an external interrupt (userspace irqchip only; see the interrupt window)."""
        self._ioctl(k.KVM_INTERRUPT, s.kvm_interrupt(vector), "KVM_INTERRUPT")

    def nmi(self) -> None:
        self._ioctl(k.KVM_NMI, 0, "KVM_NMI")

    def set_signal_mask(self, sigset: bytes | None) -> None:
        """Signals to unblock while in KVM_RUN (a kernel sigset_t, 8 bytes on x86-64)."""
        arg = s.signal_mask_buffer(sigset) if sigset is not None else s.kvm_signal_mask(0)
        self._ioctl(k.KVM_SET_SIGNAL_MASK, arg, "KVM_SET_SIGNAL_MASK")

    def tsc_khz(self) -> int:
        return self._ioctl(k.KVM_GET_TSC_KHZ, 0, "KVM_GET_TSC_KHZ")

    def set_immediate_exit(self, value: bool) -> None:
        self.run_page.immediate_exit = 1 if value else 0
