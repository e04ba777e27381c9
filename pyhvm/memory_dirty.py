"""Dirty-page logging of KVM memslots: which guest pages were written since last asked.

For a display refreshing only what changed (the framebuffer slot) and, later, snapshots
and live migration. Per slot: `enable` re-registers the memslot with
KVM_MEM_LOG_DIRTY_PAGES (KVM then write-protects the slot's pages and notes the first
guest write to each), `fetch` is KVM_GET_DIRTY_LOG: the bitmap of pages written since the
previous fetch (or the enable), cleared and write-protected again in the same call,
`disable` re-registers without the flag.

Costs to know (measure them with `pyhvm bench mem`, section "dirty log"): a fetch walks
the whole slot's bitmap in the kernel and copies ceil(pages / 64) words out, so it grows
with the slot's size even when nothing is dirty; each page dirtied between fetches costs
the guest one write-protection fault. Keep logged slots as small as the job needs.

Only guest writes through the memslot are logged: what the VMM writes into guest RAM
itself (DMA by a device model) is not, so a consumer that also needs those must mark them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .errors import HostError
from .kvm import constants as kc

PAGE_SIZE = 4096
PAGE_SHIFT = 12
WORD_BITS = 64
DENSE_DIVISOR = 8   # past 1/8 of the words dirty, unpacking the whole bitmap is cheaper


class Slot(Protocol):
    """A memslot as registered: what KVM_SET_USER_MEMORY_REGION takes (RamRegion is one)."""

    slot: int
    gpa: int
    size: int
    host_address: int
    flags: int


class DirtyLogVm(Protocol):
    """The two KVM calls dirty logging needs (kvm.Vm has them)."""

    def set_user_memory_region(self, slot: int, guest_phys_addr: int, memory_size: int,
                               userspace_addr: int, flags: int = 0) -> None: ...

    def get_dirty_log_into(self, slot: int, bitmap_address: int) -> None: ...


def words_for(npages: int) -> int:
    """u64 words in a dirty bitmap of `npages` pages (KVM rounds up to 64 bits)."""
    return (npages + WORD_BITS - 1) // WORD_BITS


@dataclass(frozen=True)
class DirtyBitmap:
    """One fetch: bit i of `words` (little-endian bit order) is page i of the slot."""

    gpa: int
    npages: int
    words: np.ndarray   # uint64, words_for(npages) of them

    def bits(self) -> np.ndarray:
        """One bool per page."""
        as_bytes = self.words.view(np.uint8)
        return np.unpackbits(as_bytes, bitorder="little")[:self.npages].astype(bool)

    def count(self) -> int:
        """Pages dirtied."""
        return int(np.bitwise_count(self.words).sum())

    def any(self) -> bool:
        return bool(self.words.any())

    def pages(self) -> np.ndarray:
        """Indexes (within the slot) of the dirty pages, ascending. Only the words with a
        bit set are unpacked: a mostly clean large slot costs little."""
        nonzero = np.flatnonzero(self.words)
        if not nonzero.size:
            return np.zeros(0, np.int64)
        if nonzero.size * DENSE_DIVISOR > self.words.size:
            return np.flatnonzero(self.bits())
        bits = np.unpackbits(self.words[nonzero].view(np.uint8), bitorder="little")
        bits = bits.reshape(nonzero.size, WORD_BITS)
        rows, cols = np.nonzero(bits)
        return nonzero[rows] * WORD_BITS + cols

    def is_dirty(self, page: int) -> bool:
        if not 0 <= page < self.npages:
            raise IndexError(f"page {page} is outside the slot's {self.npages} pages")
        return bool((int(self.words[page // WORD_BITS]) >> (page % WORD_BITS)) & 1)

    def ranges(self) -> list[tuple[int, int]]:
        """Runs of dirty pages as (first guest-physical address, bytes), in order: what a
        display or a copier walks."""
        pages = self.pages()
        if not pages.size:
            return []
        breaks = np.flatnonzero(np.diff(pages) != 1) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [pages.size]))
        return [(self.gpa + int(pages[a]) * PAGE_SIZE, int(b - a) * PAGE_SIZE)
                for a, b in zip(starts, ends)]


class DirtyLog:
    """Dirty logging for the memslots of one VM. Not thread-safe: one owner calls it (the
    display's refresh, a snapshot writer); vCPUs may run meanwhile."""

    def __init__(self, vm: DirtyLogVm) -> None:
        self.vm = vm
        self._buffers: dict[int, np.ndarray] = {}
        self._slots: dict[int, Slot] = {}

    def enabled(self, slot: Slot) -> bool:
        return slot.slot in self._slots

    def enable(self, slot: Slot) -> None:
        """Start logging `slot` (re-registers the memslot); idempotent."""
        if slot.size <= 0 or slot.size % PAGE_SIZE:
            raise ValueError(f"slot {slot.slot}: size {slot.size:#x} is not whole pages")
        if slot.slot in self._slots:
            return
        flags = slot.flags | kc.KVM_MEM_LOG_DIRTY_PAGES
        self.vm.set_user_memory_region(slot.slot, slot.gpa, slot.size, slot.host_address,
                                       flags)
        slot.flags = flags
        self._buffers[slot.slot] = np.zeros(words_for(slot.size >> PAGE_SHIFT), np.uint64)
        self._slots[slot.slot] = slot

    def disable(self, slot: Slot) -> None:
        """Stop logging `slot`; idempotent."""
        if slot.slot not in self._slots:
            return
        flags = slot.flags & ~kc.KVM_MEM_LOG_DIRTY_PAGES
        self.vm.set_user_memory_region(slot.slot, slot.gpa, slot.size, slot.host_address,
                                       flags)
        slot.flags = flags
        del self._slots[slot.slot]
        del self._buffers[slot.slot]

    def fetch(self, slot: Slot) -> DirtyBitmap:
        """The pages the guest wrote since the last fetch, and clear them (one ioctl)."""
        buffer = self._buffers.get(slot.slot)
        if buffer is None:
            raise ValueError(f"dirty logging is not enabled on memslot {slot.slot}")
        self.vm.get_dirty_log_into(slot.slot, buffer.ctypes.data)
        return DirtyBitmap(slot.gpa, slot.size >> PAGE_SHIFT, buffer.copy())

    def close(self) -> None:
        """Stop logging every slot (the VM may be gone already: then nothing to undo)."""
        for slot in list(self._slots.values()):
            try:
                self.disable(slot)
            except (HostError, OSError):  # KvmError: the VM fd is closed already
                self._slots.pop(slot.slot, None)
                self._buffers.pop(slot.slot, None)


__all__ = ["DirtyBitmap", "DirtyLog", "Slot", "words_for"]
