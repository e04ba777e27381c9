"""Guest RAM for fuzzing: the real `GuestMemory`, with an independent bounds check in front.

Devices get a `CheckedMemory`. Every DMA access is judged against the RAM layout computed
here (not by `GuestMemory`): one the memory layer refuses while it lies outside RAM is
counted as rejected (the model asked for it, the layer held); one it accepts outside RAM, or
refuses inside RAM, or answers with the wrong length (Python slices shorten silently) is a
finding for the oracles. The layout has a hole between two regions so that accesses
straddling it are tried too.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

from ..memory import GuestMemory, GuestMemoryError

# Two regions with a 64 KiB hole: [0, 1 MiB) and [1 MiB + 64 KiB, 2 MiB + 64 KiB).
DEFAULT_LAYOUT = ((0x0, 0x100000), (0x110000, 0x100000))


class MemoryFinding(Exception):
    """The memory layer let through, or answered wrongly, an access (an oracle violation)."""


class CheckedMemory:
    """`DmaMemory` (read, write, view) plus the rest of `GuestMemory`'s checked API."""

    def __init__(self, layout: tuple[tuple[int, int], ...] = DEFAULT_LAYOUT) -> None:
        self.layout = tuple(layout)
        self.inner = GuestMemory()
        for gpa, size in self.layout:
            self.inner.add_region(gpa, size)
        self.rejected: Counter[str] = Counter()  # out-of-RAM accesses refused, by operation
        self.accesses = 0
        self.findings: list[str] = []
        # Who is doing the DMA right now (the harness sets it around device entries).
        self.active: Callable[[], str] = lambda: "?"

    @property
    def ram_top(self) -> int:
        return max(gpa + size for gpa, size in self.layout)

    def in_ram(self, gpa: int, size: int) -> bool:
        if not isinstance(gpa, int) or not isinstance(size, int) or gpa < 0 or size < 0:
            return False
        # An empty access names a point, which may be a region's end (as GuestMemory has it).
        return any(base <= gpa and gpa + size <= base + length
                   for base, length in self.layout)

    def _judge(self, operation: str, gpa: int, size: int, call: Callable[[], object]) -> object:
        self.accesses += 1
        inside = self.in_ram(gpa, size)
        try:
            result = call()
        except GuestMemoryError:
            if inside:
                self._finding(f"{operation} {gpa:#x}+{size:#x} is RAM but the memory layer "
                              "refused it")
            self.rejected[operation] += 1
            raise
        if not inside:
            self._finding(f"{operation} {gpa:#x}+{size:#x} outside guest RAM was accepted "
                          f"(by {self.active()})")
        if isinstance(result, (bytes, memoryview)) and len(result) != size:
            self._finding(f"{operation} {gpa:#x}+{size:#x} returned {len(result)} bytes")
        return result

    def _finding(self, message: str) -> None:
        self.findings.append(message)
        raise MemoryFinding(message)

    # -- DmaMemory -----------------------------------------------------------------------
    def read(self, gpa: int, size: int) -> bytes:
        return self._judge("read", gpa, size,  # type: ignore[return-value]
                           lambda: self.inner.read(gpa, size))

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        self._judge("write", gpa, len(data), lambda: self.inner.write(gpa, data))

    def view(self, gpa: int, size: int) -> memoryview:
        return self._judge("view", gpa, size,  # type: ignore[return-value]
                           lambda: self.inner.view(gpa, size))

    # -- the rest of the GuestMemory API, checked the same way ------------------------------
    def fill(self, gpa: int, size: int, byte: int = 0) -> None:
        self._judge("fill", gpa, size, lambda: self.inner.fill(gpa, size, byte))

    def contains(self, gpa: int, size: int = 1) -> bool:
        return self.inner.contains(gpa, size)

    def read_u8(self, gpa: int) -> int:
        return self.read(gpa, 1)[0]

    def read_u16(self, gpa: int) -> int:
        return int.from_bytes(self.read(gpa, 2), "little")

    def read_u32(self, gpa: int) -> int:
        return int.from_bytes(self.read(gpa, 4), "little")

    def read_u64(self, gpa: int) -> int:
        return int.from_bytes(self.read(gpa, 8), "little")

    def write_u8(self, gpa: int, value: int) -> None:
        self.write(gpa, value.to_bytes(1, "little"))

    def write_u16(self, gpa: int, value: int) -> None:
        self.write(gpa, value.to_bytes(2, "little"))

    def write_u32(self, gpa: int, value: int) -> None:
        self.write(gpa, value.to_bytes(4, "little"))

    def write_u64(self, gpa: int, value: int) -> None:
        self.write(gpa, value.to_bytes(8, "little"))

    @property
    def regions(self) -> list:
        return self.inner.regions

    @property
    def size(self) -> int:
        return self.inner.size

    # -- the guest CPU's own stores (fill ops): clipped to RAM, never judged ----------------
    def guest_store(self, gpa: int, data: bytes) -> None:
        for base, length in self.layout:
            start, end = max(gpa, base), min(gpa + len(data), base + length)
            if start < end:
                self.inner.write(start, data[start - gpa:end - gpa])

    def clear(self) -> None:
        for base, length in self.layout:
            self.inner.fill(base, length, 0)

    def close(self) -> None:
        self.inner.close()
