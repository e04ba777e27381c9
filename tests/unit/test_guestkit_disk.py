"""tests/guestkit_disk.py computes the disk-* scenarios' pattern and checksum as the guest does."""

from __future__ import annotations

import struct

from tests import guestkit_disk as gd


def test_pattern_first_words_follow_the_formula() -> None:
    mask = (1 << 64) - 1
    v = 1  # seed 1, LBA 0, word 0: v = 0 * golden + seed
    v ^= v >> 31
    v = (v * 0xBF58476D1CE4E5B9) & mask
    v ^= v >> 29
    assert struct.unpack_from("<Q", gd.pattern(1, 0, 1))[0] == v
    assert len(gd.pattern(7, 10, 3)) == 3 * gd.SECTOR
    assert gd.pattern(7, 11, 1) == gd.pattern(7, 10, 2)[gd.SECTOR:]


def test_checksums_match_what_the_guest_reported_on_qemu_and_pyhvm() -> None:
    # RESULT disk-verify ... mb=1 seed=1 checksum=0x35ed1c00ae5a5d85 (both VMMs)
    assert gd.fnv1a64(gd.pattern(1, 0, 2048)) == 0x35ED1C00AE5A5D85
    assert gd.fnv1a64(b"") == gd.FNV_OFFSET


def test_first_difference_names_the_sector() -> None:
    data = bytearray(4 * gd.SECTOR)
    assert gd.first_difference(bytes(data), bytes(data)) is None
    data[2 * gd.SECTOR + 5] = 1
    assert gd.first_difference(bytes(data), bytes(4 * gd.SECTOR)) == 2
