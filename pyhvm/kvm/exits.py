"""The kvm_run page decoded once into small typed records.

`decode(run)` reads the exit reason and the union member it names and returns a frozen
dataclass; the run loop dispatches on its type and never touches raw offsets again.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import constants as k
from . import structs as s


@dataclass(frozen=True, slots=True)
class IoExit:
    port: int
    size: int          # 1, 2 or 4 bytes per element
    is_write: bool     # OUT (guest to device)
    count: int         # > 1 for string I/O (rep ins/outs)
    data_offset: int   # where the count*size data bytes live in the run page


@dataclass(frozen=True, slots=True)
class MmioExit:
    addr: int
    size: int
    is_write: bool
    data: bytes        # what the guest wrote (meaningful when is_write)


@dataclass(frozen=True, slots=True)
class HltExit:
    pass


@dataclass(frozen=True, slots=True)
class ShutdownExit:
    """Triple fault, or the guest reset the CPU some other way."""


@dataclass(frozen=True, slots=True)
class FailEntryExit:
    hardware_entry_failure_reason: int
    cpu: int


@dataclass(frozen=True, slots=True)
class InternalErrorExit:
    suberror: int
    data: tuple[int, ...]

    def describe(self) -> str:
        names = {k.KVM_INTERNAL_ERROR_EMULATION: "instruction emulation failed",
                 k.KVM_INTERNAL_ERROR_SIMUL_EX: "exception while delivering an exception",
                 k.KVM_INTERNAL_ERROR_DELIVERY_EV: "event delivery failed"}
        return names.get(self.suberror, f"suberror {self.suberror}")


@dataclass(frozen=True, slots=True)
class IrqWindowOpenExit:
    pass


@dataclass(frozen=True, slots=True)
class InterruptedExit:
    """KVM_EXIT_INTR: a signal arrived (or immediate_exit was set)."""


@dataclass(frozen=True, slots=True)
class SystemEventExit:
    type: int


@dataclass(frozen=True, slots=True)
class UnknownExit:
    reason: int


Exit = (IoExit | MmioExit | HltExit | ShutdownExit | FailEntryExit | InternalErrorExit
        | IrqWindowOpenExit | InterruptedExit | SystemEventExit | UnknownExit)

_HLT = HltExit()
_SHUTDOWN = ShutdownExit()
_WINDOW = IrqWindowOpenExit()
_INTR = InterruptedExit()


def decode(run: s.kvm_run) -> Exit:
    reason = run.exit_reason
    if reason == k.KVM_EXIT_IO:
        io = run.u.io
        return IoExit(io.port, io.size, io.direction == k.KVM_EXIT_IO_OUT, io.count,
                      io.data_offset)
    if reason == k.KVM_EXIT_MMIO:
        mmio = run.u.mmio
        size = mmio.len
        return MmioExit(mmio.phys_addr, size, bool(mmio.is_write), bytes(mmio.data[:size]))
    if reason == k.KVM_EXIT_HLT:
        return _HLT
    if reason == k.KVM_EXIT_SHUTDOWN:
        return _SHUTDOWN
    if reason == k.KVM_EXIT_IRQ_WINDOW_OPEN:
        return _WINDOW
    if reason == k.KVM_EXIT_INTR:
        return _INTR
    if reason == k.KVM_EXIT_FAIL_ENTRY:
        fail = run.u.fail_entry
        return FailEntryExit(fail.hardware_entry_failure_reason, fail.cpu)
    if reason == k.KVM_EXIT_INTERNAL_ERROR:
        internal = run.u.internal
        ndata = min(internal.ndata, 16)
        return InternalErrorExit(internal.suberror, tuple(internal.data[:ndata]))
    if reason == k.KVM_EXIT_SYSTEM_EVENT:
        return SystemEventExit(run.u.system_event.type)
    return UnknownExit(reason)
