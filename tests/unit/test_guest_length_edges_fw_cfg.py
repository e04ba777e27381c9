"""Guest-controlled lengths, indices and addresses of fw_cfg (pyhvm/devices/fw_cfg.py), each
driven through the ports and guest RAM at 0, its maximum, maximum + 1 and 2^32 - 1 (or the
field's full width). docs/security/guest-lengths.md lists every value with the test here
that proves it; the selector and DMA classes of CVE-2016-1714 are replayed separately in
test_device_history_pc.py.

Guest RAM is the fuzzer's `CheckedMemory`: it judges every access against its own layout
(1 MiB at 0, a 64 KiB hole, 1 MiB above), so a DMA the model let through outside RAM fails
the test even if the memory layer accepted it."""

from __future__ import annotations

import struct

import pytest

from pyhvm.devices import fw_cfg as f
from pyhvm.fuzz.memory import CheckedMemory

LOW_TOP = 0x100000            # end of the first RAM region
HOLE_END = 0x110000           # where the second region starts
DESC = 0x1000                 # where the tests put a DMA descriptor
BUFFER = 0x8000
ITEM = bytes(range(1, 201))   # a 200-byte file item
FILL = 0xAA
U32_MAX = 0xFFFF_FFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF


class Rig:
    """fw_cfg with one read-only and one writable file, over checked RAM filled with FILL."""

    def __init__(self) -> None:
        self.memory = CheckedMemory()
        for base, size in self.memory.layout:
            self.memory.fill(base, size, FILL)
        self.dev = f.FwCfg(self.memory)
        self.dev.add_file("etc/item", ITEM)
        self.dev.add_file("etc/rw", bytes(16), writable=True)
        self.item = self.dev.file_key("etc/item")
        self.rw = self.dev.file_key("etc/rw")

    def select(self, key: int, size: int = 2) -> None:
        self.dev.io_port.write(0, size, key)

    def data(self, size: int = 1) -> int:
        return self.dev.io_port.read(1, size)

    def dma(self, control: int, length: int, address: int, at: int = DESC) -> int:
        """Write a descriptor at `at`, kick it (high half, then low half), return the
        control word the device wrote back (or None if it could not)."""
        self.memory.write(at, f.DMA_DESCRIPTOR.pack(control, length, address))
        self.kick(at)
        return struct.unpack(">I", self.memory.read(at, 4))[0]

    def kick(self, address: int) -> None:
        high, low = address >> 32, address & U32_MAX
        self.dev.dma_port.write(0, 4, int.from_bytes(high.to_bytes(4, "big"), "little"))
        self.dev.dma_port.write(4, 4, int.from_bytes(low.to_bytes(4, "big"), "little"))

    def untouched(self, gpa: int, size: int) -> bool:
        return self.memory.read(gpa, size) == bytes([FILL]) * size

    def clean(self) -> bool:
        return self.memory.findings == []


def read_control(key: int) -> int:
    return f.DMA_CTL_SELECT | f.DMA_CTL_READ | key << 16


# -- the selector (16 bits; keys 0 .. MAX_ENTRY - 1, arch-local keys 0x8000 + n) -----------

@pytest.mark.parametrize("key,size,expect", [
    (0, 2, f.SIGNATURE),                          # 0: the signature item
    (f.MAX_ENTRY - 1, 2, b""),                    # max: the last file slot (empty here)
    (f.MAX_ENTRY, 2, None),                       # max + 1: selects nothing, reads 0
    (U32_MAX, 4, "unchanged"),                    # 2^32-1 as a dword: not a selector write
])
def test_selector_edges_select_an_item_or_nothing(key: int, size: int,
                                                  expect: bytes | str | None) -> None:
    rig = Rig()
    rig.select(rig.item)
    rig.data()
    rig.select(key, size)
    got = bytes(rig.data() for _ in range(len(ITEM) + 4))
    if expect == "unchanged":  # still the file item, one byte already consumed
        assert got == ITEM[1:] + bytes(5)
        assert rig.dev.state().key == rig.item
    elif expect is None:
        assert got == bytes(len(got)) and rig.dev.state().key == f.INVALID_KEY
    else:
        assert isinstance(expect, bytes)
        assert got == expect + bytes(len(got) - len(expect))


def test_last_file_slot_is_reachable_when_the_table_is_full() -> None:
    """With FILE_SLOTS files, key MAX_ENTRY - 1 is the last file and MAX_ENTRY is nothing."""
    dev = f.FwCfg(CheckedMemory())
    for i in range(f.FILE_SLOTS):
        dev.add_file(f"f{i:03d}", bytes([i]) * 3)
    with pytest.raises(ValueError):
        dev.add_file("one-too-many", b"x")  # host side: refused, one line
    dev.io_port.write(0, 2, f.MAX_ENTRY - 1)
    assert [dev.io_port.read(1, 1) for _ in range(4)] == [f.FILE_SLOTS - 1] * 3 + [0]
    dev.io_port.write(0, 2, f.MAX_ENTRY)
    assert dev.io_port.read(1, 1) == 0 and dev.item(f.MAX_ENTRY) is None


# -- the data port's offset (reads past the item's end) ----------------------------------

def test_data_port_offset_stops_at_the_item_end() -> None:
    """Offset 0 .. len - 1 read the item, len (max + 1) and beyond read 0 and the offset
    stays at len; wide reads are not data reads (all ones, offset unchanged)."""
    rig = Rig()
    rig.select(rig.item)
    assert rig.data(2) == 0xFFFF and rig.data(4) == U32_MAX and rig.dev.state().offset == 0
    assert bytes(rig.data() for _ in range(len(ITEM))) == ITEM
    for _ in range(1000):
        assert rig.data() == 0
    assert rig.dev.state().offset == len(ITEM)


# -- the DMA address register (64 bits, big endian, two halves) ---------------------------

@pytest.mark.parametrize("address,served", [
    (0, True),                          # 0: a descriptor at guest address 0
    (LOW_TOP - f.DMA_DESCRIPTOR.size, True),   # max: the last descriptor that fits
    (LOW_TOP - f.DMA_DESCRIPTOR.size + 1, False),  # max + 1: runs into the hole
    (U32_MAX, False),                   # 2^32-1 in the low half
    (U64_MAX, False),                   # the full 64-bit width
])
def test_dma_descriptor_address_edges(address: int, served: bool) -> None:
    rig = Rig()
    if served:
        assert rig.dma(read_control(rig.item), 4, BUFFER, at=address) == 0
        assert rig.memory.read(BUFFER, 4) == ITEM[:4]
    else:
        rig.kick(address)  # the descriptor is not RAM: nothing read, nothing written back
        assert rig.dev.dma_errors == 1 and rig.untouched(BUFFER, 4)
        assert rig.memory.rejected["read"] >= 1
    assert rig.dev.state().dma_address == 0 and rig.clean()


@pytest.mark.parametrize("offset,size", [(0, 1), (0, 2), (2, 4), (6, 2), (7, 1)])
def test_dma_register_accesses_that_are_not_a_half_or_the_whole_start_nothing(
        offset: int, size: int) -> None:
    rig = Rig()
    rig.memory.write(DESC, f.DMA_DESCRIPTOR.pack(read_control(rig.item), 4, BUFFER))
    rig.dev.dma_port.write(offset, size, int.from_bytes(DESC.to_bytes(size, "big"), "little")
                           if size >= 2 else 0)
    assert rig.untouched(BUFFER, 4) and rig.dev.dma_errors == 0
    # Reads: the signature inside the window, all ones for lanes past it.
    expect = f.DMA_SIGNATURE[offset:offset + size] if offset + size <= 8 else None
    value = rig.dev.dma_port.read(offset, size)
    assert value == (int.from_bytes(expect, "little") if expect is not None
                     else (1 << 8 * size) - 1)


def test_dma_window_read_past_its_eight_bytes_is_all_ones() -> None:
    rig = Rig()
    assert rig.dev.dma_port.read(6, 4) == U32_MAX
    assert rig.dev.dma_port.read(0, 8) == int.from_bytes(f.DMA_SIGNATURE, "little")


# -- the DMA descriptor's length (32 bits) -------------------------------------------------

@pytest.mark.parametrize("length", [0, len(ITEM), len(ITEM) + 1, U32_MAX])
def test_dma_read_length_edges(length: int) -> None:
    """0 moves nothing; the item's size copies it exactly; one more byte adds one zero
    after it; 2^32-1 runs out of RAM, so nothing at all moves and the offset stays."""
    rig = Rig()
    status = rig.dma(read_control(rig.item), length, BUFFER)
    state = rig.dev.state()
    if length == U32_MAX:
        assert status == f.DMA_CTL_ERROR and state.offset == 0
        assert rig.untouched(BUFFER, len(ITEM) + 16)
    else:
        assert status == 0 and state.offset == min(length, len(ITEM))
        copied = ITEM[:length] + bytes(max(0, length - len(ITEM)))
        assert rig.memory.read(BUFFER, length) == copied
        assert rig.untouched(BUFFER + length, 16)
    assert rig.clean()


@pytest.mark.parametrize("length", [0, len(ITEM), len(ITEM) + 1, U32_MAX])
def test_dma_skip_length_edges_stop_the_offset_at_the_item_end(length: int) -> None:
    rig = Rig()
    control = f.DMA_CTL_SELECT | f.DMA_CTL_SKIP | rig.item << 16
    assert rig.dma(control, length, U64_MAX) == 0  # skip never touches the address
    assert rig.dev.state().offset == min(length, len(ITEM))
    assert rig.memory.rejected == {} and rig.clean()


@pytest.mark.parametrize("length,ok", [(0, True), (16, True), (17, False), (U32_MAX, False)])
def test_dma_write_length_edges_never_grow_the_item(length: int, ok: bool) -> None:
    """A writable 16-byte item: up to its size is written, one byte more (or 2^32-1) is
    refused with the error bit and changes nothing; no item ever changes size."""
    rig = Rig()
    rig.memory.write(BUFFER, bytes(range(0x40, 0x50)))
    control = f.DMA_CTL_SELECT | f.DMA_CTL_WRITE | rig.rw << 16
    status = rig.dma(control, length, BUFFER)
    item = rig.dev.item(rig.rw)
    assert item is not None and len(item) == 16
    if ok:
        assert status == 0 and item == bytes(range(0x40, 0x40 + length)) + bytes(16 - length)
    else:
        assert status == f.DMA_CTL_ERROR and item == bytes(16)
    assert rig.clean()


def test_dma_write_to_a_read_only_item_is_refused() -> None:
    rig = Rig()
    control = f.DMA_CTL_SELECT | f.DMA_CTL_WRITE | rig.item << 16
    assert rig.dma(control, 4, BUFFER) == f.DMA_CTL_ERROR
    assert rig.dev.item(rig.item) == ITEM


@pytest.mark.parametrize("key", ["read-only", "absent"])
def test_a_zero_length_dma_write_succeeds_and_changes_nothing(key: str) -> None:
    """As QEMU: the transfer loop runs while the length is above 0, so a zero-length write
    reports no error, whatever the item; no byte moves and the offset stays."""
    rig = Rig()
    selector = rig.item if key == "read-only" else 0x7FF
    control = f.DMA_CTL_SELECT | f.DMA_CTL_WRITE | selector << 16
    assert rig.dma(control, 0, BUFFER) == 0
    assert rig.dev.state().offset == 0
    assert rig.dev.item(rig.item) == ITEM and rig.clean()


# -- the DMA descriptor's address (64 bits) ------------------------------------------------

@pytest.mark.parametrize("address,ok", [
    (0, True),                               # 0
    (LOW_TOP - len(ITEM), True),             # max: the item ends exactly at the RAM end
    (LOW_TOP - len(ITEM) + 1, False),        # max + 1: its last byte would be in the hole
    (HOLE_END - 1, False),                   # starts in the hole
    (U32_MAX, False),                        # 2^32-1
    (U64_MAX - 3, False),                    # the full width: wraps past 2^64
])
def test_dma_read_address_edges_move_all_or_nothing(address: int, ok: bool) -> None:
    rig = Rig()
    status = rig.dma(read_control(rig.item), len(ITEM), address)
    if ok:
        assert status == 0 and rig.memory.read(address, len(ITEM)) == ITEM
    else:
        assert status == f.DMA_CTL_ERROR and rig.dev.state().offset == 0
        assert rig.untouched(LOW_TOP - len(ITEM), len(ITEM))
    assert rig.clean()


def test_dma_read_whose_zero_fill_runs_out_of_ram_copies_nothing() -> None:
    """The bug this audit found: a read of the 4-byte signature with a length that runs
    past the end of RAM used to copy the four item bytes, then fail on the zero fill (error
    bit set, offset advanced, guest memory changed). Now the whole destination is checked
    first: error, nothing written, offset unchanged, and the next read starts at byte 0."""
    rig = Rig()
    status = rig.dma(read_control(f.FW_CFG_SIGNATURE), 64, LOW_TOP - 16)
    assert status == f.DMA_CTL_ERROR
    assert rig.untouched(LOW_TOP - 16, 16) and rig.dev.state().offset == 0
    assert rig.dma(f.DMA_CTL_READ, 4, BUFFER) == 0
    assert rig.memory.read(BUFFER, 4) == f.SIGNATURE and rig.clean()


@pytest.mark.parametrize("key", [0, f.MAX_ENTRY - 1, f.MAX_ENTRY, 0xFFFF])
def test_dma_select_key_edges(key: int) -> None:
    """The descriptor's select field is 16 bits: a key past the table selects nothing and
    a read then fills zeros (the length is still checked against RAM)."""
    rig = Rig()
    assert rig.dma(read_control(key), 8, BUFFER) == 0
    expect = (f.SIGNATURE + bytes(4)) if key == 0 else bytes(8)
    assert rig.memory.read(BUFFER, 8) == expect
    assert rig.dma(read_control(key), U32_MAX, BUFFER) == f.DMA_CTL_ERROR
    assert rig.untouched(BUFFER + 8, 8) and rig.clean()
