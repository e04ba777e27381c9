"""The ports through which device models touch the outside world.

A device implements `Device`: `read(offset, size)` and `write(offset, size, value)` where
`offset` is relative to the start of the range the bus mapped it at. Interrupts leave through
an `IrqLine`; anything else (bytes for a console, a reset request) through plain callables
handed in at construction.
"""

from __future__ import annotations

from typing import Callable, Protocol


class Device(Protocol):
    """What a bus needs from a device: two methods, nothing else."""

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


class IrqLine(Protocol):
    """One interrupt request line as the device sees it (level semantics)."""

    def set_level(self, level: bool) -> None: ...


ACCESS_SIZES = (1, 2, 4, 8)


def check_access_size(size: int) -> None:
    """Buses only produce these sizes; anything else is a pyhvm bug, not guest input."""
    if size not in ACCESS_SIZES:
        raise ValueError(f"access size must be 1, 2, 4 or 8 bytes, got {size}")


class ByteRegisters:
    """For ISA-style devices whose registers are bytes: a wider access is successive byte
    cycles on consecutive ports, lowest address in the lowest byte, as the ISA bus does it.
    Subclasses implement `_read_byte(offset)` and `_write_byte(offset, value)`."""

    def read(self, offset: int, size: int) -> int:
        check_access_size(size)
        value = 0
        for lane in range(size):
            value |= self._read_byte(offset + lane) << (8 * lane)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        check_access_size(size)
        for lane in range(size):
            self._write_byte(offset + lane, (value >> (8 * lane)) & 0xFF)

    def _read_byte(self, offset: int) -> int:
        raise NotImplementedError

    def _write_byte(self, offset: int, value: int) -> None:
        raise NotImplementedError


class NullIrqLine:
    """A line wired to nothing: used until an interrupt controller exists."""

    def __init__(self) -> None:
        self.level = False

    def set_level(self, level: bool) -> None:
        self.level = level


class TimerHandle(Protocol):
    def cancel(self) -> None:
        """Forget the callback if it has not run yet (cancelling twice is harmless)."""


class Clock(Protocol):
    """Virtual time for device models: a monotonic nanosecond counter and one-shot timers.

    Callbacks run on the machine's event loop with the device lock held, never inside a
    device method, so a model may call `call_at` from its own register handlers safely.
    """

    def now_ns(self) -> int: ...

    def call_at(self, deadline_ns: int, callback: Callable[[], None]) -> TimerHandle: ...


class GuestError(Exception):
    """The guest asked for something impossible: logged and counted, the VM runs on."""
