"""Exit handling as plain functions of (buses, run page, decoded exit): no KVM calls here.

The vCPU thread decodes an exit, calls `handle_exit`, and acts on the returned `Action`.
Tests drive these functions with a bytearray standing in for the kvm_run page.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..bus import Bus
from ..kvm.exits import (Exit, FailEntryExit, HltExit, InternalErrorExit, InterruptedExit,
                         IoExit, IrqWindowOpenExit, MmioExit, ShutdownExit, SystemEventExit)
from ..kvm.structs import _run_mmio, kvm_run

# Where KVM expects the answer to an MMIO read: kvm_run.mmio.data.
MMIO_DATA_OFFSET = kvm_run.u.offset + _run_mmio.data.offset


class Action(enum.Enum):
    CONTINUE = "continue"      # re-enter the guest
    HALT = "halt"              # the vCPU executed HLT: sleep until woken
    INTERRUPTED = "interrupted"  # a signal or immediate_exit: look at the stop flag
    IRQ_WINDOW = "irq-window"  # the guest can take an interrupt now
    SHUTDOWN = "shutdown"      # triple fault
    FATAL = "fatal"            # KVM could not go on (internal error, failed entry, unknown)


@dataclass
class Buses:
    pio: Bus
    mmio: Bus


def handle_io(pio: Bus, page: memoryview, exit: IoExit) -> None:
    """Port I/O, including string I/O: `count` elements of `size` bytes in the run page."""
    size, port = exit.size, exit.port
    start = exit.data_offset
    if exit.count == 1:
        if exit.is_write:
            pio.write(port, size, int.from_bytes(page[start:start + size], "little"))
        else:
            page[start:start + size] = pio.read(port, size).to_bytes(size, "little")
        return
    for i in range(exit.count):
        at = start + i * size
        if exit.is_write:
            pio.write(port, size, int.from_bytes(page[at:at + size], "little"))
        else:
            page[at:at + size] = pio.read(port, size).to_bytes(size, "little")


def handle_mmio(mmio: Bus, page: memoryview, run_mmio_data_offset: int, exit: MmioExit) -> None:
    """MMIO: writes carry their data in the exit; reads are answered in run->mmio.data."""
    if exit.is_write:
        mmio.write(exit.addr, exit.size, int.from_bytes(exit.data, "little"))
    else:
        value = mmio.read(exit.addr, exit.size)
        at = run_mmio_data_offset
        page[at:at + exit.size] = value.to_bytes(exit.size, "little")



def handle_exit(buses: Buses, page: memoryview, exit: Exit) -> Action:
    if isinstance(exit, IoExit):
        handle_io(buses.pio, page, exit)
        return Action.CONTINUE
    if isinstance(exit, MmioExit):
        handle_mmio(buses.mmio, page, MMIO_DATA_OFFSET, exit)
        return Action.CONTINUE
    if isinstance(exit, HltExit):
        return Action.HALT
    if isinstance(exit, InterruptedExit):
        return Action.INTERRUPTED
    if isinstance(exit, IrqWindowOpenExit):
        return Action.IRQ_WINDOW
    if isinstance(exit, ShutdownExit):
        return Action.SHUTDOWN
    if isinstance(exit, SystemEventExit):
        return Action.SHUTDOWN
    if isinstance(exit, (InternalErrorExit, FailEntryExit)):
        return Action.FATAL
    return Action.FATAL
