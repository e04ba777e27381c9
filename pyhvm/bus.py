"""Port-I/O and MMIO buses: ordered maps of address ranges to devices.

A device is registered at (base, size) and then sees accesses as offsets from its base.
Ranges that overlap, have no length or wrap past the top of the address space are refused
when the machine is wired, not when the guest touches them. An access nobody claims reads
as all ones and drops writes, as on a PC, and is counted so a trace can show it.
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter
from dataclasses import dataclass

from .devices.base import Device


log = logging.getLogger(__name__)


class BusError(ValueError):
    """The machine was wired wrongly (a host-side bug or bad configuration)."""


@dataclass(frozen=True)
class Mapping:
    base: int
    size: int
    device: Device
    name: str

    @property
    def end(self) -> int:
        return self.base + self.size


class Bus:
    """One address space (ports or memory). `limit` is its size (0x10000 for ports)."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self._bases: list[int] = []
        self._mappings: list[Mapping] = []
        self._dense: list[tuple[Device, int] | None] | None = None
        self.unclaimed_reads: Counter[int] = Counter()
        self.unclaimed_writes: Counter[int] = Counter()

    def register(self, base: int, size: int, device: Device, name: str = "") -> None:
        if size <= 0:
            raise BusError(f"{self.name}: {name or device!r} has no length")
        if base < 0 or base + size > self.limit:
            raise BusError(f"{self.name}: {name} {base:#x}+{size:#x} is outside the bus")
        index = bisect.bisect_left(self._bases, base)
        neighbours = self._mappings[max(index - 1, 0):index + 1]
        for other in neighbours:
            if base < other.end and other.base < base + size:
                raise BusError(f"{self.name}: {name} {base:#x}+{size:#x} overlaps "
                               f"{other.name} {other.base:#x}+{other.size:#x}")
        self._bases.insert(index, base)
        self._mappings.insert(index, Mapping(base, size, device, name or type(device).__name__))
        self._refresh_dense()

    def place(self, base: int, size: int, device: Device, name: str = "") -> bool:
        """Map a range the guest chose (a PCI BAR, a decode enable).

        Unlike `register`, a clash is the guest's doing, not a wiring bug: the range is left
        not decoding, one line is logged, and the machine runs on (on real hardware the
        result of overlapping BARs is undefined, not fatal).
        """
        try:
            self.register(base, size, device, name)
        except BusError as err:
            log.warning("guest placed %s where it cannot decode: %s", name or device, err)
            return False
        return True

    def unplace(self, base: int, device: Device) -> None:
        """Undo `place`: unmap `device` at `base` if it is mapped there (a placement that
        failed left nothing to undo, and another device's mapping is never touched)."""
        index = bisect.bisect_left(self._bases, base)
        if (index < len(self._bases) and self._bases[index] == base
                and self._mappings[index].device == device):
            self.unregister(base)

    def move(self, old: int | None, new: int | None, size: int, device: Device,
             name: str = "") -> None:
        """A guest-placed range moved from `old` to `new` (None: not decoding), as a PCI BAR
        write reports it: `unplace` the old range, `place` the new one."""
        if old is not None:
            self.unplace(old, device)
        if new is not None:
            self.place(new, size, device, name)

    def unregister(self, base: int) -> None:
        index = bisect.bisect_left(self._bases, base)
        if index == len(self._bases) or self._bases[index] != base:
            raise BusError(f"{self.name}: nothing registered at {base:#x}")
        del self._bases[index]
        del self._mappings[index]
        self._refresh_dense()

    def find(self, addr: int) -> Mapping | None:
        index = bisect.bisect_right(self._bases, addr) - 1
        if index >= 0:
            mapping = self._mappings[index]
            if addr < mapping.end:
                return mapping
        return None

    def dense_table(self) -> list[tuple[Device, int] | None]:
        """(device, base) for every address: an O(1) lookup for small spaces (ports).

        The vCPU loop takes this list once; `register` rebuilds it in place, so a device
        added later (a PCI BAR moved by the guest) is seen without re-fetching it."""
        if self.limit > 0x10000:
            raise BusError(f"{self.name}: too large for a dense table")
        if self._dense is None:
            self._dense = [None] * self.limit
            self._refresh_dense()
        return self._dense

    def _refresh_dense(self) -> None:
        table = self._dense
        if table is None:
            return
        table[:] = [None] * self.limit
        for mapping in self._mappings:
            for addr in range(mapping.base, mapping.end):
                table[addr] = (mapping.device, mapping.base)

    @property
    def mappings(self) -> tuple[Mapping, ...]:
        return tuple(self._mappings)

    def read(self, addr: int, size: int) -> int:
        mapping = self.find(addr)
        if mapping is None:
            self.unclaimed_reads[addr] += 1
            return (1 << (8 * size)) - 1
        return mapping.device.read(addr - mapping.base, size)

    def write(self, addr: int, size: int, value: int) -> None:
        mapping = self.find(addr)
        if mapping is None:
            self.unclaimed_writes[addr] += 1
            return
        mapping.device.write(addr - mapping.base, size, value)


def pio_bus() -> Bus:
    return Bus("pio", 0x10000)


def mmio_bus() -> Bus:
    return Bus("mmio", 1 << 52)
