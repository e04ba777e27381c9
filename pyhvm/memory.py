"""Guest RAM: anonymous mmap regions, one checked API by guest-physical address.

Every access names a guest-physical address (GPA) and a length. The pair must fall wholly
inside one RAM region; anything else (outside RAM, straddling two regions or the hole, a
negative or absurd length) raises `GuestMemoryError` and touches no host memory. Python's
slicing traps (negative indexes wrap, short slices, growing bytearrays) never see a guest
value: bounds are checked before any slice is taken.
"""

from __future__ import annotations

import ctypes
import mmap
import struct
from dataclasses import dataclass, field

from .devices.base import GuestError

PAGE_SIZE = 4096
MiB = 1 << 20
GiB = 1 << 30
# Where RAM stops below 4 GiB when the guest has more: the rest goes above 4 GiB and the
# hole is left for device MMIO (PCI BARs, the LAPIC/IOAPIC, the firmware ROM).
LOW_RAM_TOP = 3 * GiB
HIGH_RAM_BASE = 4 * GiB


class GuestMemoryError(GuestError):
    """A guest-physical range that is not wholly inside guest RAM."""


@dataclass
class RamRegion:
    gpa: int
    size: int
    slot: int
    buffer: mmap.mmap = field(repr=False)
    view: memoryview = field(repr=False)
    host_address: int = field(repr=False)

    @property
    def end(self) -> int:
        return self.gpa + self.size


def ram_layout(size: int) -> list[tuple[int, int]]:
    """(gpa, size) of each RAM region for `size` bytes of RAM, leaving the PCI hole."""
    if size <= LOW_RAM_TOP:
        return [(0, size)]
    return [(0, LOW_RAM_TOP), (HIGH_RAM_BASE, size - LOW_RAM_TOP)]


class GuestMemory:
    """All of the guest's RAM. Regions are added once at build time, never moved."""

    def __init__(self) -> None:
        self.regions: list[RamRegion] = []

    @classmethod
    def with_size(cls, size: int) -> "GuestMemory":
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"RAM size must be a positive multiple of 4 KiB, not {size}")
        memory = cls()
        for gpa, region_size in ram_layout(size):
            memory.add_region(gpa, region_size)
        return memory

    def add_region(self, gpa: int, size: int) -> RamRegion:
        if gpa % PAGE_SIZE or size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"region {gpa:#x}+{size:#x} is not page-aligned")
        for other in self.regions:
            if gpa < other.end and other.gpa < gpa + size:
                raise ValueError(f"region {gpa:#x}+{size:#x} overlaps {other.gpa:#x}")
        buffer = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                           mmap.PROT_READ | mmap.PROT_WRITE)
        anchor = ctypes.c_char.from_buffer(buffer)
        host_address = ctypes.addressof(anchor)
        del anchor  # an exported buffer could not be closed later
        region = RamRegion(gpa, size, len(self.regions), buffer, memoryview(buffer),
                           host_address)
        self.regions.append(region)
        self.regions.sort(key=lambda r: r.gpa)
        return region

    @property
    def size(self) -> int:
        return sum(region.size for region in self.regions)

    def close(self) -> None:
        for region in self.regions:
            region.view.release()
            region.buffer.close()
        self.regions.clear()

    # --- the checked API ----------------------------------------------------------------
    def _locate(self, gpa: int, size: int) -> tuple[RamRegion, int]:
        if size < 0 or gpa < 0:
            raise GuestMemoryError(f"invalid guest range {gpa:#x}+{size:#x}")
        for region in self.regions:
            if region.gpa <= gpa < region.end or (size == 0 and gpa == region.end):
                if gpa + size > region.end:
                    raise GuestMemoryError(
                        f"guest range {gpa:#x}+{size:#x} runs past RAM at {region.end:#x}")
                return region, gpa - region.gpa
        raise GuestMemoryError(f"guest address {gpa:#x} is not RAM")

    def contains(self, gpa: int, size: int = 1) -> bool:
        try:
            self._locate(gpa, size)
        except GuestMemoryError:
            return False
        return True

    def view(self, gpa: int, size: int) -> memoryview:
        """A zero-copy window onto guest RAM, for DMA; valid while the memory lives."""
        region, offset = self._locate(gpa, size)
        return region.view[offset:offset + size]

    def read(self, gpa: int, size: int) -> bytes:
        region, offset = self._locate(gpa, size)
        return bytes(region.view[offset:offset + size])

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        size = len(data)
        region, offset = self._locate(gpa, size)
        region.view[offset:offset + size] = data

    def fill(self, gpa: int, size: int, byte: int = 0) -> None:
        region, offset = self._locate(gpa, size)
        region.view[offset:offset + size] = bytes([byte]) * size

    def read_u8(self, gpa: int) -> int:
        return self.read(gpa, 1)[0]

    def read_u16(self, gpa: int) -> int:
        return struct.unpack("<H", self.read(gpa, 2))[0]

    def read_u32(self, gpa: int) -> int:
        return struct.unpack("<I", self.read(gpa, 4))[0]

    def read_u64(self, gpa: int) -> int:
        return struct.unpack("<Q", self.read(gpa, 8))[0]

    def write_u8(self, gpa: int, value: int) -> None:
        self.write(gpa, struct.pack("<B", value))

    def write_u16(self, gpa: int, value: int) -> None:
        self.write(gpa, struct.pack("<H", value))

    def write_u32(self, gpa: int, value: int) -> None:
        self.write(gpa, struct.pack("<I", value))

    def write_u64(self, gpa: int, value: int) -> None:
        self.write(gpa, struct.pack("<Q", value))
