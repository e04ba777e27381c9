"""The ports through which device models touch the outside world.

A device implements `Device`: `read(offset, size)` and `write(offset, size, value)` where
`offset` is relative to the start of the range the bus mapped it at. Interrupts leave through
an `IrqLine`; anything else (bytes for a console, a reset request) through plain callables
handed in at construction.
"""

from __future__ import annotations

from typing import Protocol


class Device(Protocol):
    """What a bus needs from a device: two methods, nothing else."""

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


class IrqLine(Protocol):
    """One interrupt request line as the device sees it (level semantics)."""

    def set_level(self, level: bool) -> None: ...


class NullIrqLine:
    """A line wired to nothing: used until an interrupt controller exists."""

    def __init__(self) -> None:
        self.level = False

    def set_level(self, level: bool) -> None:
        self.level = level


class GuestError(Exception):
    """The guest asked for something impossible: logged and counted, the VM runs on."""
