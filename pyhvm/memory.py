"""Guest RAM: host memory regions, one checked API by guest-physical address.

Every access names a guest-physical address (GPA) and a length. The pair must fall wholly
inside one RAM region; anything else (outside RAM, straddling two regions or the hole, a
negative or absurd length) raises `GuestMemoryError` and touches no host memory. Python's
slicing traps (negative indexes wrap, short slices, growing bytearrays) never see a guest
value: bounds are checked before any slice is taken.

Where the host memory comes from (anonymous, memfd, hugetlbfs, a file; prealloc; THP) is
memory_backing.py's job; dirty-page logging of the memslots is memory_dirty.py's.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from typing import Protocol

from .devices.base import GuestError
from .memory_backing import BackingSpec, HostRam, Mapping, host_page_sizes

PAGE_SIZE = 4096
MiB = 1 << 20
GiB = 1 << 30
# Where RAM stops below 4 GiB when the guest has more: the rest goes above 4 GiB and the
# hole is left for device MMIO (PCI BARs, the LAPIC/IOAPIC, the firmware ROM).
LOW_RAM_TOP = 3 * GiB
HIGH_RAM_BASE = 4 * GiB


class GuestMemoryError(GuestError):
    """A guest-physical range that is not wholly inside guest RAM."""


class SlotRegistrar(Protocol):
    """What registers a memslot (kvm.Vm); memory.py itself knows nothing of KVM."""

    def set_user_memory_region(self, slot: int, guest_phys_addr: int, memory_size: int,
                               userspace_addr: int, flags: int = 0) -> None: ...


@dataclass
class RamRegion:
    """One RAM region and the KVM memslot it is registered as."""

    gpa: int
    size: int
    slot: int
    buffer: mmap.mmap = field(repr=False)
    view: memoryview = field(repr=False)
    host_address: int = field(repr=False)
    fd_offset: int = -1           # offset in the shared backing's fd; -1 for anon
    flags: int = 0                # KVM memslot flags (KVM_MEM_LOG_DIRTY_PAGES, ...)
    mapping: Mapping | None = field(default=None, repr=False)

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

    def __init__(self, host: HostRam | None = None) -> None:
        self.regions: list[RamRegion] = []
        self.host = host if host is not None else HostRam(BackingSpec(thp=False), 0)

    @classmethod
    def with_size(cls, size: int, backing: BackingSpec | None = None) -> "GuestMemory":
        """RAM laid out as a PC has it (ram_layout), backed as `backing` says (default:
        anonymous memory, THP as memory_backing.DEFAULT_THP). BackingError when the host
        cannot give it."""
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"RAM size must be a positive multiple of 4 KiB, not {size}")
        memory = cls(HostRam(backing if backing is not None else BackingSpec(), size))
        try:
            for gpa, region_size in ram_layout(size):
                memory.add_region(gpa, region_size)
        except BaseException:
            memory.close()
            raise
        return memory

    @property
    def backing(self) -> BackingSpec:
        return self.host.spec

    def add_region(self, gpa: int, size: int) -> RamRegion:
        if gpa % PAGE_SIZE or size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"region {gpa:#x}+{size:#x} is not page-aligned")
        for other in self.regions:
            if gpa < other.end and other.gpa < gpa + size:
                raise ValueError(f"region {gpa:#x}+{size:#x} overlaps {other.gpa:#x}")
        mapping = self.host.map_region(size)
        region = RamRegion(gpa, size, len(self.regions), mapping.buffer, mapping.view,
                           mapping.host_address, mapping.fd_offset, 0, mapping)
        self.regions.append(region)
        self.regions.sort(key=lambda r: r.gpa)
        return region

    @property
    def size(self) -> int:
        return sum(region.size for region in self.regions)

    def region_of_slot(self, slot: int) -> RamRegion:
        for region in self.regions:
            if region.slot == slot:
                return region
        raise KeyError(f"no RAM region is memslot {slot}")

    def register(self, vm: "SlotRegistrar") -> None:
        """Register every region as a KVM memslot, with its flags."""
        for region in self.regions:
            vm.set_user_memory_region(region.slot, region.gpa, region.size,
                                      region.host_address, region.flags)

    def discard(self) -> None:
        """Every byte of RAM reads zero again (a reboot), the host memory freed where the
        backing allows (prealloc populates it again)."""
        for region in self.regions:
            if region.mapping is not None:
                self.host.discard(region.mapping)
            else:
                region.buffer.madvise(mmap.MADV_DONTNEED)

    def share(self) -> dict[str, object]:
        """What another process needs to map guest RAM: the backing's fd and path, and per
        region its guest-physical address, size and offset in that fd (shared backings
        only; `regions` is empty for anon)."""
        info = self.host.share()
        if info["fd"] is None:
            return info
        info["regions"] = [{"gpa": r.gpa, "size": r.size, "offset": r.fd_offset,
                            "slot": r.slot} for r in self.regions]
        return info

    def host_stats(self) -> dict[str, object]:
        """How the host backs guest RAM now: the backing, and bytes resident, in
        transparent huge pages and in hugetlb pages (from /proc/self/smaps)."""
        totals: dict[str, int] = {}
        for region in self.regions:
            for key, value in host_page_sizes(region.host_address, region.size).items():
                totals[key] = totals.get(key, 0) + value
        return {"backing": self.host.spec.describe(), "page_size": self.host.page_size,
                "ram_bytes": self.size,
                "regions": [{"gpa": r.gpa, "size": r.size, "slot": r.slot}
                            for r in self.regions],
                **{f"{k}_bytes": v for k, v in totals.items()}}

    def close(self) -> None:
        for region in self.regions:
            if region.mapping is not None:
                self.host.unmap(region.mapping)
            else:
                region.view.release()
                region.buffer.close()
        self.regions.clear()
        self.host.close()

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
