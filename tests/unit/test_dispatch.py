"""Exit decoding and dispatch, driven with a kvm_run structure in plain memory (no KVM)."""

from __future__ import annotations

import ctypes

import pytest

from pyhvm.bus import mmio_bus, pio_bus
from pyhvm.kvm import constants as k
from pyhvm.kvm.exits import (HltExit, InternalErrorExit, IoExit, MmioExit, ShutdownExit,
                             UnknownExit, decode)
from pyhvm.kvm.structs import kvm_run
from pyhvm.runtime.dispatch import MMIO_DATA_OFFSET, Action, Buses, handle_exit

DATA_OFFSET = 4096  # where KVM puts string I/O data: after the kvm_run structure


class Port:
    """A device that records writes and answers reads from a queue."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.writes: list[tuple[int, int, int]] = []
        self.answers = list(answers or [])

    def read(self, offset: int, size: int) -> int:
        return self.answers.pop(0)

    def write(self, offset: int, size: int, value: int) -> None:
        self.writes.append((offset, size, value))


def make_page() -> tuple[kvm_run, memoryview]:
    buf = bytearray(8192)
    return kvm_run.from_buffer(buf), memoryview(buf)


def io_exit(run: kvm_run, *, port: int, size: int, out: bool, count: int) -> IoExit:
    run.exit_reason = k.KVM_EXIT_IO
    run.u.io.port, run.u.io.size, run.u.io.count = port, size, count
    run.u.io.direction = k.KVM_EXIT_IO_OUT if out else k.KVM_EXIT_IO_IN
    run.u.io.data_offset = DATA_OFFSET
    exit = decode(run)
    assert isinstance(exit, IoExit)
    return exit


@pytest.mark.parametrize("size", [1, 2, 4])
def test_string_out_delivers_every_element_in_order(size: int) -> None:
    run, page = make_page()
    buses, dev = Buses(pio_bus(), mmio_bus()), Port()
    buses.pio.register(0x404, 1, dev)
    values = [(0x11 * (i + 1)) & ((1 << (8 * size)) - 1) for i in range(5)]
    page[DATA_OFFSET:DATA_OFFSET + 5 * size] = b"".join(v.to_bytes(size, "little")
                                                         for v in values)
    exit = io_exit(run, port=0x404, size=size, out=True, count=5)
    assert handle_exit(buses, page, exit) is Action.CONTINUE
    assert dev.writes == [(0, size, v) for v in values]


@pytest.mark.parametrize("size", [1, 2, 4])
def test_string_in_fills_every_element(size: int) -> None:
    run, page = make_page()
    buses = Buses(pio_bus(), mmio_bus())
    buses.pio.register(0x60, 1, Port([1, 2, 3]))
    exit = io_exit(run, port=0x60, size=size, out=False, count=3)
    handle_exit(buses, page, exit)
    got = [int.from_bytes(page[DATA_OFFSET + i * size:DATA_OFFSET + (i + 1) * size], "little")
           for i in range(3)]
    assert got == [1, 2, 3]


def test_string_in_from_unclaimed_port_reads_all_ones() -> None:
    run, page = make_page()
    exit = io_exit(run, port=0x404, size=2, out=False, count=4)
    handle_exit(Buses(pio_bus(), mmio_bus()), page, exit)
    assert bytes(page[DATA_OFFSET:DATA_OFFSET + 8]) == b"\xff" * 8


def test_mmio_read_answer_goes_to_run_mmio_data() -> None:
    run, page = make_page()
    buses = Buses(pio_bus(), mmio_bus())
    buses.mmio.register(0xFEE00000, 0x1000, Port([0x12345678]))
    run.exit_reason = k.KVM_EXIT_MMIO
    run.u.mmio.phys_addr, run.u.mmio.len, run.u.mmio.is_write = 0xFEE00020, 4, 0
    exit = decode(run)
    assert exit == MmioExit(0xFEE00020, 4, False, b"\0\0\0\0")
    handle_exit(buses, page, exit)
    assert bytes(run.u.mmio.data[:4]) == (0x12345678).to_bytes(4, "little")
    assert MMIO_DATA_OFFSET == ctypes.addressof(run.u.mmio.data) - ctypes.addressof(run)


def test_mmio_write_carries_data_from_the_exit() -> None:
    run, page = make_page()
    buses, dev = Buses(pio_bus(), mmio_bus()), Port()
    buses.mmio.register(0xD0000000, 0x1000, dev)
    run.exit_reason = k.KVM_EXIT_MMIO
    run.u.mmio.phys_addr, run.u.mmio.len, run.u.mmio.is_write = 0xD0000004, 2, 1
    run.u.mmio.data[0], run.u.mmio.data[1] = 0x34, 0x12
    handle_exit(buses, page, decode(run))
    assert dev.writes == [(4, 2, 0x1234)]


@pytest.mark.parametrize("reason,record,action", [
    (k.KVM_EXIT_HLT, HltExit, Action.HALT),
    (k.KVM_EXIT_SHUTDOWN, ShutdownExit, Action.SHUTDOWN),
    (k.KVM_EXIT_INTERNAL_ERROR, InternalErrorExit, Action.FATAL),
    (12345, UnknownExit, Action.FATAL),
])
def test_other_exits_decode_to_records_and_actions(reason: int, record: type,
                                                   action: Action) -> None:
    run, page = make_page()
    run.exit_reason = reason
    exit = decode(run)
    assert isinstance(exit, record)
    assert handle_exit(Buses(pio_bus(), mmio_bus()), page, exit) is action


def test_internal_error_data_is_bounded_by_the_array() -> None:
    run, _ = make_page()
    run.exit_reason = k.KVM_EXIT_INTERNAL_ERROR
    run.u.internal.suberror = k.KVM_INTERNAL_ERROR_EMULATION
    run.u.internal.ndata = 1000  # nonsense from a buggy kernel must not over-read
    exit = decode(run)
    assert isinstance(exit, InternalErrorExit) and len(exit.data) == 16
    assert exit.describe() == "instruction emulation failed"
