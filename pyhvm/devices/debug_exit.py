"""QEMU's `isa-debug-exit`: the guest ends the VM with a status through one port write.

The guest kit runs under both pyhvm and QEMU and reports its result the same way on both, so
the semantics are QEMU's: writing V makes the VMM exit with status (V << 1) | 1, so that a
guest-requested exit is always odd and never looks like a clean 0 from the VMM itself.

What the guest can make it do: request an exit, any number of times (the callback decides what
a second request means). Reads return 0 and have no effect.
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_IOBASE = 0x501  # QEMU's default iobase; guests often pass iobase=0xf4 instead
DEFAULT_IOSIZE = 0x02  # QEMU's default iosize
READ_VALUE = 0  # QEMU's device has no read handler and returns 0


def exit_status(value: int, size: int) -> int:
    """The status QEMU exits with for a write of `value` with an access of `size` bytes."""
    return ((value & ((1 << (8 * size)) - 1)) << 1) | 1


class DebugExit:
    """Any write, at any offset in its range, calls `on_exit(status)`; the offset is ignored."""

    def __init__(self, on_exit: Callable[[int], None]) -> None:
        self._on_exit = on_exit

    def read(self, offset: int, size: int) -> int:
        _check_size(size)
        return READ_VALUE

    def write(self, offset: int, size: int, value: int) -> None:
        _check_size(size)
        self._on_exit(exit_status(value, size))


def _check_size(size: int) -> None:
    if size not in (1, 2, 4, 8):
        raise ValueError(f"access size must be 1, 2, 4 or 8 bytes, got {size}")
