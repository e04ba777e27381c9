"""Guest memory: every access is checked before any host memory is touched."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from pyhvm.memory import GiB, HIGH_RAM_BASE, LOW_RAM_TOP, GuestMemory, GuestMemoryError, ram_layout

MiB = 1 << 20


@pytest.fixture
def memory() -> GuestMemory:
    mem = GuestMemory()
    mem.add_region(0, 2 * MiB)
    mem.add_region(4 * MiB, 1 * MiB)  # a hole between 2 MiB and 4 MiB
    yield mem
    mem.close()


def test_write_then_read_round_trips(memory: GuestMemory) -> None:
    memory.write(0x1000, b"hello")
    assert memory.read(0x1000, 5) == b"hello"
    memory.write_u32(4 * MiB + 8, 0xDEADBEEF)
    assert memory.read_u32(4 * MiB + 8) == 0xDEADBEEF
    assert memory.read(4 * MiB + 8, 4) == bytes.fromhex("efbeadde")


def test_view_is_zero_copy(memory: GuestMemory) -> None:
    view = memory.view(0x2000, 4)
    view[:] = b"abcd"
    assert memory.read(0x2000, 4) == b"abcd"
    memory.write(0x2001, b"Z")
    assert bytes(view) == b"aZcd"
    view.release()


@pytest.mark.parametrize("gpa,size", [
    (2 * MiB, 1),            # first byte of the hole
    (2 * MiB - 4, 8),        # straddles the end of region 0 into the hole
    (4 * MiB - 1, 2),        # straddles from the hole into region 1
    (5 * MiB, 1),            # past the last region
    (-1, 1),                 # negative addresses never wrap to the end
    (0, -1),                 # negative lengths are refused, not sliced
    (1 << 64, 1),
])
def test_out_of_range_or_straddling_access_raises(memory: GuestMemory, gpa: int,
                                                  size: int) -> None:
    with pytest.raises(GuestMemoryError):
        memory.read(gpa, size)
    with pytest.raises(GuestMemoryError):
        memory.view(gpa, size)
    if size >= 0:
        with pytest.raises(GuestMemoryError):
            memory.write(gpa, b"x" * size)


def test_write_past_end_does_not_grow_or_partially_write(memory: GuestMemory) -> None:
    memory.write(2 * MiB - 2, b"\x11\x22")
    with pytest.raises(GuestMemoryError):
        memory.write(2 * MiB - 2, b"\xAA\xBB\xCC")
    assert memory.read(2 * MiB - 2, 2) == b"\x11\x22"
    assert memory.regions[0].size == 2 * MiB


@given(gpa=st.integers(min_value=-(1 << 20), max_value=6 * MiB),
       size=st.integers(min_value=-16, max_value=3 * MiB))
def test_any_range_is_either_wholly_inside_one_region_or_refused(gpa: int, size: int) -> None:
    mem = GuestMemory()
    mem.add_region(0, 2 * MiB)
    mem.add_region(4 * MiB, 1 * MiB)
    try:
        inside = any(r.gpa <= gpa and gpa + size <= r.end for r in mem.regions) and size >= 0 \
            and gpa >= 0
        try:
            data = mem.read(gpa, size)
        except GuestMemoryError:
            assert not inside or size == 0
        else:
            assert inside or size == 0
            assert len(data) == size
    finally:
        mem.close()


def test_regions_may_not_overlap_or_be_unaligned() -> None:
    mem = GuestMemory()
    mem.add_region(0, MiB)
    with pytest.raises(ValueError):
        mem.add_region(MiB // 2, MiB)
    with pytest.raises(ValueError):
        mem.add_region(3 * MiB + 1, MiB)
    mem.close()


def test_large_ram_leaves_a_hole_below_4_gib_for_devices() -> None:
    assert ram_layout(512 * MiB) == [(0, 512 * MiB)]
    assert ram_layout(6 * GiB) == [(0, LOW_RAM_TOP), (HIGH_RAM_BASE, 6 * GiB - LOW_RAM_TOP)]


def test_with_size_rejects_unaligned_sizes() -> None:
    with pytest.raises(ValueError):
        GuestMemory.with_size(12345)
