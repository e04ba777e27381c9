"""Small PC ports guests touch at boot: the POST code port (the i8042 is in i8042.py).

A byte device on ISA. A wider access is split into byte lanes; lane 0 is the device's own
port, and the lanes above it belong to the next ports, which it does not own, so they read as
all ones and ignore writes (as unmapped ISA ports do).
"""

from __future__ import annotations

from collections.abc import Callable

from pyhvm.devices.base import check_access_size

UNMAPPED_BYTE = 0xFF  # a byte lane past the device floats high on ISA

POST_CODE_PORT = 0x80  # firmware progress codes; Linux also writes here as an I/O delay
DEFAULT_POST_CODE = 0x00



def _lanes_above_unmapped(size: int) -> int:
    """All-ones for every byte lane but the lowest: the bits a wider read fills in."""
    return ((1 << (8 * size)) - 1) & ~0xFF


class PostCode:
    """Port 0x80: each write is a POST code for `log`; a read returns the last one written.

    On AT-class chipsets port 0x80 sits among the DMA page registers and reads back what was
    last written; some boards read 0xFF instead. We read back, which is the more useful of the
    two for a guest checking its own progress. Called on every Linux I/O-delay write, so
    `log` should be cheap.
    """

    def __init__(self, log: Callable[[int], None]) -> None:
        self._log = log
        self._last = DEFAULT_POST_CODE

    @property
    def last(self) -> int:
        return self._last

    def read(self, offset: int, size: int) -> int:
        check_access_size(size)
        if offset != 0:
            return (1 << (8 * size)) - 1
        return self._last | _lanes_above_unmapped(size)

    def write(self, offset: int, size: int, value: int) -> None:
        check_access_size(size)
        if offset != 0:
            return
        self._last = value & 0xFF
        self._log(self._last)


# The i8042 moved to its own module with its keyboard; these names stay importable here.
from .i8042 import (  # noqa: E402,F401
    COMMAND_OFFSET,
    DATA_OFFSET,
    I8042,
    I8042_COMMAND_PORT,
    I8042_DATA_PORT,
    STATUS_A2,
    STATUS_INH,
    STATUS_OBF,
    STATUS_SYS,
)
