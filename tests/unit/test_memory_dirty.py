"""Dirty logging: the memslot re-registrations it asks of KVM and the bitmap it hands back,
driven through a fake VM that plays KVM_GET_DIRTY_LOG (the KVM side is in
tests/integration/test_memory.py)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from pyhvm.kvm import constants as kc
from pyhvm.memory import GuestMemory
from pyhvm.memory_dirty import DirtyBitmap, DirtyLog, words_for

MiB = 1 << 20


class FakeVm:
    """Records memslot registrations; each get_dirty_log_into hands out `pending` pages
    once, as KVM clears what it reports."""

    def __init__(self) -> None:
        self.registrations: list[tuple[int, int, int, int, int]] = []
        self.pending: dict[int, set[int]] = {}

    def set_user_memory_region(self, slot: int, gpa: int, size: int, host: int,
                               flags: int = 0) -> None:
        self.registrations.append((slot, gpa, size, host, flags))

    def get_dirty_log_into(self, slot: int, address: int) -> None:
        npages = next(size for s, _, size, _, _ in reversed(self.registrations)
                      if s == slot) // 4096
        words = np.zeros(words_for(npages), np.uint64)
        for page in self.pending.pop(slot, set()):
            words[page // 64] |= np.uint64(1 << (page % 64))
        ctypes.memmove(address, words.ctypes.data, words.nbytes)


@pytest.fixture
def memory() -> GuestMemory:
    mem = GuestMemory.with_size(8 * MiB)
    yield mem
    mem.close()


def test_enable_and_disable_reregister_the_slot_with_the_flag(memory: GuestMemory) -> None:
    vm, region = FakeVm(), memory.regions[0]
    log = DirtyLog(vm)
    log.enable(region)
    log.enable(region)  # idempotent: one registration
    assert vm.registrations == [(region.slot, region.gpa, region.size, region.host_address,
                                 kc.KVM_MEM_LOG_DIRTY_PAGES)]
    assert region.flags == kc.KVM_MEM_LOG_DIRTY_PAGES and log.enabled(region)
    log.disable(region)
    assert vm.registrations[-1][4] == 0 and region.flags == 0 and not log.enabled(region)
    with pytest.raises(ValueError, match="not enabled"):
        log.fetch(region)


def test_fetch_returns_the_pages_written_since_the_last_fetch(memory: GuestMemory) -> None:
    vm, region = FakeVm(), memory.regions[0]
    log = DirtyLog(vm)
    log.enable(region)
    vm.pending[region.slot] = {0, 63, 64, 65, 2047}
    bitmap = log.fetch(region)
    assert bitmap.npages == 2048 and bitmap.words.dtype == np.uint64
    assert bitmap.count() == 5 and bitmap.any()
    assert list(bitmap.pages()) == [0, 63, 64, 65, 2047]
    assert bitmap.is_dirty(64) and not bitmap.is_dirty(1)
    assert bitmap.ranges() == [(0, 4096), (63 * 4096, 3 * 4096), (2047 * 4096, 4096)]
    again = log.fetch(region)
    assert again.count() == 0 and again.ranges() == [] and not again.any()
    assert bitmap.count() == 5  # each fetch is its own copy


def test_bitmaps_of_slots_not_a_multiple_of_64_pages() -> None:
    words = np.array([0b1011, 1 << 2], np.uint64)
    bitmap = DirtyBitmap(0x100000, 67, words)
    assert list(bitmap.pages()) == [0, 1, 3, 66]
    assert bitmap.ranges() == [(0x100000, 0x2000), (0x103000, 0x1000), (0x142000, 0x1000)]
    with pytest.raises(IndexError):
        bitmap.is_dirty(67)


def test_close_stops_logging_every_slot(memory: GuestMemory) -> None:
    vm = FakeVm()
    log = DirtyLog(vm)
    log.enable(memory.regions[0])
    log.close()
    assert vm.registrations[-1][4] == 0 and not log.enabled(memory.regions[0])


def test_words_for_rounds_up_to_64_pages() -> None:
    assert [words_for(n) for n in (1, 64, 65, 262144)] == [1, 1, 2, 4096]


@pytest.mark.parametrize("density", [0.001, 0.05, 0.5, 1.0])
def test_sparse_and_dense_bitmaps_decode_alike(density: float) -> None:
    """pages() unpacks only the words with a bit set when few are, the whole bitmap when
    many are: either way the pages are the bits set, and ranges() covers exactly them."""
    rng = np.random.default_rng(7)
    npages = 64 * 300 - 5
    bits = rng.random(npages) < density
    padded = np.zeros(words_for(npages) * 64, bool)
    padded[:npages] = bits
    words = np.packbits(padded, bitorder="little").view(np.uint64)
    bitmap = DirtyBitmap(0x40000000, npages, words)
    assert list(bitmap.pages()) == list(np.flatnonzero(bits))
    assert bitmap.count() == int(bits.sum())
    covered = [(gpa - 0x40000000) // 4096 + i for gpa, size in bitmap.ranges()
               for i in range(size // 4096)]
    assert covered == list(np.flatnonzero(bits))
