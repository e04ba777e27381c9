"""Buses: ranges map to devices; overlaps refused at wiring time; nothing answers all ones."""

from __future__ import annotations

import pytest

from pyhvm.bus import Bus, BusError, mmio_bus, pio_bus


class Recorder:
    def __init__(self, value: int = 0) -> None:
        self.value = value
        self.accesses: list[tuple[str, int, int, int | None]] = []

    def read(self, offset: int, size: int) -> int:
        self.accesses.append(("r", offset, size, None))
        return self.value

    def write(self, offset: int, size: int, value: int) -> None:
        self.accesses.append(("w", offset, size, value))


def test_device_sees_offsets_from_its_base() -> None:
    bus, dev = pio_bus(), Recorder(0x42)
    bus.register(0x3F8, 8, dev, "com1")
    assert bus.read(0x3FD, 1) == 0x42
    bus.write(0x3F8, 1, 0x41)
    assert dev.accesses == [("r", 5, 1, None), ("w", 0, 1, 0x41)]


@pytest.mark.parametrize("base,size", [(0x3F0, 0x10), (0x3FF, 1), (0x3F8, 8), (0x3F4, 5)])
def test_overlapping_ranges_are_refused(base: int, size: int) -> None:
    bus = pio_bus()
    bus.register(0x3F8, 8, Recorder(), "com1")
    with pytest.raises(BusError, match="overlaps"):
        bus.register(base, size, Recorder(), "other")


@pytest.mark.parametrize("base,size", [(0x10, 0), (0x10, -1), (0xFFFF, 2), (-1, 1)])
def test_empty_negative_or_overflowing_ranges_are_refused(base: int, size: int) -> None:
    with pytest.raises(BusError):
        pio_bus().register(base, size, Recorder())


def test_adjacent_ranges_are_fine_and_dispatch_separately() -> None:
    bus, a, b = pio_bus(), Recorder(1), Recorder(2)
    bus.register(0x60, 1, a)
    bus.register(0x61, 1, b)
    assert (bus.read(0x60, 1), bus.read(0x61, 1)) == (1, 2)


@pytest.mark.parametrize("size,expected", [(1, 0xFF), (2, 0xFFFF), (4, 0xFFFFFFFF),
                                           (8, (1 << 64) - 1)])
def test_unclaimed_reads_are_all_ones_and_counted(size: int, expected: int) -> None:
    bus = mmio_bus()
    assert bus.read(0xD0000000, size) == expected
    assert bus.unclaimed_reads[0xD0000000] == 1


def test_unclaimed_writes_are_dropped_and_counted() -> None:
    bus = pio_bus()
    bus.write(0x404, 1, 7)
    bus.write(0x404, 1, 7)
    assert bus.unclaimed_writes[0x404] == 2


def test_dense_table_follows_later_registrations() -> None:
    bus = pio_bus()
    table = bus.dense_table()
    assert table[0x80] is None
    dev = Recorder()
    bus.register(0x80, 1, dev)
    assert table[0x80] == (dev, 0x80)
    bus.unregister(0x80)
    assert table[0x80] is None


def test_unregister_of_nothing_is_an_error() -> None:
    with pytest.raises(BusError):
        Bus("pio", 0x10000).unregister(0x1234)


def test_a_moved_range_leaves_its_old_place_and_a_clash_leaves_it_off() -> None:
    """A BAR write: the device follows the guest's address; where it would overlap another
    device it does not decode, and the other device keeps its range."""
    bus, dev, other = pio_bus(), Recorder(0x11), Recorder(0x22)
    bus.register(0xC100, 16, other, "other")
    bus.move(None, 0xC000, 16, dev, "bar")
    assert bus.read(0xC004, 1) == 0x11
    bus.move(0xC000, 0xC108, 16, dev, "bar")  # over `other`: not decoding
    assert bus.read(0xC004, 1) == 0xFF and bus.read(0xC108, 1) == 0x22
    bus.move(0xC108, 0xC200, 16, dev, "bar")  # unplacing a failed place touches nothing
    assert bus.read(0xC108, 1) == 0x22 and bus.read(0xC200, 1) == 0x11
    bus.move(0xC200, None, 16, dev, "bar")
    assert [m.name for m in bus.mappings] == ["other"]
