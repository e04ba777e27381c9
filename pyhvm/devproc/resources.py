"""What a device process is handed instead of opening things itself: guest RAM as the
memfd (or file) of a shared `--mem-backing` with each region's offset, and disk images as
open file descriptors. It cannot open files once sandboxed; it never needs to.
"""

from __future__ import annotations

import mmap
import os
from typing import Any

from ..backends.disk import SECTOR, RawImage
from ..memory import PAGE_SIZE, GuestMemory, RamRegion

MAX_REGIONS = 8


class ResourceError(Exception):
    """What the VMM handed over cannot be used (a bug in the VMM, or a hostile peer)."""


def map_guest_memory(fd: int, regions: list[dict[str, Any]]) -> GuestMemory:
    """Guest RAM as the VMM lays it out, mapped from the shared backing's fd: the same
    checked `GuestMemory` API the in-process IDE model uses for DMA."""
    if not isinstance(regions, list) or not 0 < len(regions) <= MAX_REGIONS:
        raise ResourceError("guest RAM: expected 1 to 8 regions")
    size = os.fstat(fd).st_size
    memory = GuestMemory()
    try:
        for slot, region in enumerate(regions):
            gpa, length, offset = (int(region["gpa"]), int(region["size"]),
                                   int(region["offset"]))
            if min(gpa, length, offset) < 0 or length == 0 or \
                    (gpa | length | offset) % PAGE_SIZE or offset + length > size:
                raise ResourceError(f"guest RAM region {gpa:#x}+{length:#x} at offset "
                                    f"{offset:#x} does not fit the {size}-byte backing")
            for other in memory.regions:
                if gpa < other.end and other.gpa < gpa + length:
                    raise ResourceError(f"guest RAM region {gpa:#x} overlaps {other.gpa:#x}")
            buffer = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                               offset=offset)
            memory.regions.append(RamRegion(gpa, length, slot, buffer, memoryview(buffer),
                                            0, offset))
        memory.regions.sort(key=lambda r: r.gpa)
    except BaseException:
        memory.close()
        raise
    return memory


class FdImage(RawImage):
    """A raw image the VMM opened (with its checks and messages) and passed over as an fd:
    the same positioned I/O as `RawImage`."""

    def __init__(self, fd: int, *, readonly: bool, path: str = "") -> None:  # noqa: super
        size = os.fstat(fd).st_size
        if size < SECTOR:
            raise ResourceError(f"disk image {path!r} is smaller than one sector")
        self.fd = fd
        self.path = path
        self.size = size - size % SECTOR
        self.readonly = readonly
