"""The disk-* scenarios of the guest kit, seen from the host: images and sector patterns.

The guest writes a deterministic pattern (guest/src/disk.h): 64-bit word i (0-63) of
sector `lba` under `seed` is

    v = (lba * 64 + i) * 0x9E3779B97F4A7C15 + seed;  v ^= v >> 31
    v *= 0xBF58476D1CE4E5B9;  v ^= v >> 29                   (mod 2**64, little-endian)

and reports checksums as FNV-1a over the 64-bit words in LBA order. These functions compute
the same, so a test can check an image file after a run, or prepare one for a read-only run.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

SECTOR = 512
QWORDS_PER_SECTOR = SECTOR // 8
IMAGE_MIB = 64
IMAGE_SECTORS = IMAGE_MIB * 2048

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX = 0xBF58476D1CE4E5B9
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3


def make_image(path: Path, mib: int = IMAGE_MIB) -> Path:
    """A sparse raw image of `mib` MiB (what `truncate -s 64M` makes)."""
    with open(path, "wb") as f:
        f.truncate(mib << 20)
    return path


def drive_arg(path: Path, readonly: bool = False) -> str:
    """The -drive / --drive value for a raw image on the first IDE slot (primary master)."""
    return f"file={path},if=ide,format=raw" + (",readonly=on" if readonly else "")


def pattern(seed: int, lba: int, count: int) -> bytes:
    """`count` sectors of the guest's pattern starting at `lba`."""
    words = []
    base = lba * QWORDS_PER_SECTOR
    for n in range(count * QWORDS_PER_SECTOR):
        v = ((base + n) * _GOLDEN + seed) & _MASK
        v ^= v >> 31
        v = (v * _MIX) & _MASK
        v ^= v >> 29
        words.append(v)
    return struct.pack(f"<{len(words)}Q", *words)


def fnv1a64(data: bytes, h: int = FNV_OFFSET) -> int:
    """FNV-1a over little-endian 64-bit words, as the guest's checksum= and expected=."""
    for (word,) in struct.iter_unpack("<Q", data):
        h = ((h ^ word) * FNV_PRIME) & _MASK
    return h


def read_sectors(path: Path, lba: int, count: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(lba * SECTOR)
        return f.read(count * SECTOR)


def write_sectors(path: Path, lba: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(lba * SECTOR)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def first_difference(actual: bytes, expected: bytes) -> int | None:
    """The first sector (relative) where two byte strings differ, or None."""
    if actual == expected:
        return None
    for s in range(0, max(len(actual), len(expected)), SECTOR):
        if actual[s:s + SECTOR] != expected[s:s + SECTOR]:
            return s // SECTOR
    return None
