"""QEMU's fw_cfg device: the port interface, the file directory and the DMA interface
(QEMU docs/specs/fw_cfg.rst), driven register by register with a small guest RAM."""

from __future__ import annotations

import struct

import pytest

from pyhvm.devices import fw_cfg as f
from pyhvm.memory import GuestMemory

RAM = 1 << 20
DESC = 0x1000  # where the tests put DMA descriptors
BUF = 0x2000


@pytest.fixture
def memory() -> GuestMemory:
    mem = GuestMemory.with_size(RAM)
    yield mem
    mem.close()


@pytest.fixture
def dev(memory: GuestMemory) -> f.FwCfg:
    return f.FwCfg(memory)


def read_item(dev: f.FwCfg, key: int, count: int) -> bytes:
    dev.io_port.write(0, 2, key)
    return bytes(dev.io_port.read(1, 1) for _ in range(count))


def start_dma(dev: f.FwCfg, memory: GuestMemory, control: int, length: int, address: int,
              at: int = DESC) -> int:
    """Write a descriptor, start it the way SeaBIOS does (one outl of the low half, the
    address byte-swapped), and return the control word the device wrote back."""
    memory.write(at, f.DMA_DESCRIPTOR.pack(control, length, address))
    dev.dma_port.write(4, 4, int.from_bytes(at.to_bytes(4, "big"), "little"))
    return struct.unpack(">I", memory.read(at, 4))[0]


# -- port interface -----------------------------------------------------------------------------


def test_signature_reads_qemu_then_zeros_past_its_end(dev: f.FwCfg) -> None:
    assert read_item(dev, f.FW_CFG_SIGNATURE, 6) == b"QEMU\0\0"


def test_signature_is_selected_at_reset(dev: f.FwCfg) -> None:
    """QEMU's fw_cfg_reset selects FW_CFG_SIGNATURE."""
    dev.io_port.write(0, 2, f.FW_CFG_ID)
    dev.reset()
    assert bytes(dev.io_port.read(1, 1) for _ in range(4)) == b"QEMU"


def test_id_advertises_dma_only_with_a_memory_port(memory: GuestMemory) -> None:
    with_dma = read_item(f.FwCfg(memory), f.FW_CFG_ID, 4)
    without = read_item(f.FwCfg(None), f.FW_CFG_ID, 4)
    assert struct.unpack("<I", with_dma)[0] == f.ID_TRADITIONAL | f.ID_DMA
    assert struct.unpack("<I", without)[0] == f.ID_TRADITIONAL


def test_selecting_restarts_the_data_offset(dev: f.FwCfg) -> None:
    assert read_item(dev, f.FW_CFG_SIGNATURE, 2) == b"QE"
    assert read_item(dev, f.FW_CFG_SIGNATURE, 2) == b"QE"


def test_unknown_and_out_of_table_keys_read_zeros(dev: f.FwCfg) -> None:
    assert read_item(dev, 0x1F, 4) == bytes(4)  # inside the table, no item
    assert read_item(dev, 0x3FFF, 4) == bytes(4)  # past the table: nothing selected
    assert read_item(dev, 0xFFFF, 4) == bytes(4)


def test_write_channel_bit_selects_the_same_item(dev: f.FwCfg) -> None:
    assert read_item(dev, f.FW_CFG_SIGNATURE | f.FW_CFG_WRITE_CHANNEL, 4) == b"QEMU"


def test_arch_local_keys_are_a_separate_table(dev: f.FwCfg) -> None:
    dev.add_u32(f.FW_CFG_IRQ0_OVERRIDE, 1)
    assert read_item(dev, f.FW_CFG_IRQ0_OVERRIDE, 4) == b"\1\0\0\0"
    assert read_item(dev, f.FW_CFG_IRQ0_OVERRIDE & f.FW_CFG_ENTRY_MASK, 4) == bytes(4)


def test_data_port_writes_are_ignored(dev: f.FwCfg) -> None:
    """Since QEMU 2.4 the data register is read-only."""
    dev.io_port.write(0, 2, f.FW_CFG_SIGNATURE)
    dev.io_port.write(1, 1, 0x41)
    assert bytes(dev.io_port.read(1, 1) for _ in range(4)) == b"QEMU"


def test_wide_reads_of_the_io_window_float_high(dev: f.FwCfg) -> None:
    """QEMU accepts only byte reads there; an invalid PIO access reads all ones."""
    assert dev.io_port.read(0, 2) == 0xFFFF
    assert dev.io_port.read(0, 4) == 0xFFFFFFFF


def test_integer_items_are_little_endian(dev: f.FwCfg) -> None:
    dev.add_u16(f.FW_CFG_NB_CPUS, 2)
    dev.add_u64(f.FW_CFG_RAM_SIZE, 0x1_2345_6789)
    assert read_item(dev, f.FW_CFG_NB_CPUS, 2) == b"\2\0"
    assert read_item(dev, f.FW_CFG_RAM_SIZE, 8) == struct.pack("<Q", 0x1_2345_6789)


def test_a_key_gets_one_item_only(dev: f.FwCfg) -> None:
    with pytest.raises(ValueError):
        dev.add_u16(f.FW_CFG_SIGNATURE, 1)
    with pytest.raises(ValueError):
        dev.add_u16(f.MAX_ENTRY, 1)


# -- file directory -----------------------------------------------------------------------------


def parse_directory(raw: bytes) -> dict[str, tuple[int, int]]:
    count = struct.unpack(">I", raw[:4])[0]
    entries = {}
    for i in range(count):
        size, select, _, name = f.FILE_ENTRY.unpack_from(raw, 4 + 64 * i)
        entries[name.rstrip(b"\0").decode()] = (size, select)
    return entries


def test_file_directory_is_big_endian_and_sorted_by_name(dev: f.FwCfg) -> None:
    dev.add_file("etc/e820", bytes(40))
    dev.add_file("bootorder", b"/pci@i0cf8/ide@1,1/drive@0/disk@0\n")
    raw = read_item(dev, f.FW_CFG_FILE_DIR, 4 + 2 * 64)
    assert raw[:4] == b"\0\0\0\2"
    entries = parse_directory(raw)
    assert entries == {"bootorder": (34, f.FW_CFG_FILE_FIRST),
                       "etc/e820": (40, f.FW_CFG_FILE_FIRST + 1)}
    assert dev.file_key("etc/e820") == f.FW_CFG_FILE_FIRST + 1
    assert read_item(dev, f.FW_CFG_FILE_FIRST, 5) == b"/pci@"


def test_bad_file_names_are_refused(dev: f.FwCfg) -> None:
    for name in ("", "x" * 56, "a\0b"):
        with pytest.raises(ValueError):
            dev.add_file(name, b"")
    dev.add_file("x" * 55, b"")
    with pytest.raises(ValueError):
        dev.add_file("x" * 55, b"")


def test_the_file_table_is_bounded(dev: f.FwCfg) -> None:
    for i in range(f.FILE_SLOTS):
        dev.add_file(f"opt/{i:03d}", b"")
    with pytest.raises(ValueError):
        dev.add_file("opt/one-too-many", b"")


# -- DMA interface ------------------------------------------------------------------------------


def test_dma_window_reads_the_signature_bytes(dev: f.FwCfg) -> None:
    raw = b"".join(dev.dma_port.read(i, 1).to_bytes(1, "little") for i in range(8))
    assert raw == b"QEMU CFG"
    assert dev.dma_port.read(0, 4).to_bytes(4, "little") == b"QEMU"
    assert dev.dma_port.read(0, 8).to_bytes(8, "little") == b"QEMU CFG"


def test_dma_select_and_read_copies_the_item(dev: f.FwCfg, memory: GuestMemory) -> None:
    control = f.FW_CFG_SIGNATURE << 16 | f.DMA_CTL_SELECT | f.DMA_CTL_READ
    assert start_dma(dev, memory, control, 4, BUF) == 0
    assert memory.read(BUF, 4) == b"QEMU"


def test_dma_read_past_the_end_fills_zeros(dev: f.FwCfg, memory: GuestMemory) -> None:
    memory.write(BUF, b"\xAA" * 8)
    control = f.FW_CFG_SIGNATURE << 16 | f.DMA_CTL_SELECT | f.DMA_CTL_READ
    assert start_dma(dev, memory, control, 8, BUF) == 0
    assert memory.read(BUF, 8) == b"QEMU\0\0\0\0"


def test_dma_skip_then_read_continues_at_the_offset(dev: f.FwCfg, memory: GuestMemory) -> None:
    dev.add_file("etc/test", bytes(range(16)))
    key = dev.file_key("etc/test")
    assert start_dma(dev, memory, key << 16 | f.DMA_CTL_SELECT | f.DMA_CTL_SKIP, 5, 0) == 0
    assert start_dma(dev, memory, f.DMA_CTL_READ, 3, BUF) == 0
    assert memory.read(BUF, 3) == bytes([5, 6, 7])
    # The port interface shares the offset.
    assert dev.io_port.read(1, 1) == 8


def test_dma_64bit_address_in_two_halves(dev: f.FwCfg, memory: GuestMemory) -> None:
    """The high half first (at +0), the low half (at +4) starts the transfer."""
    memory.write(DESC, f.DMA_DESCRIPTOR.pack(f.DMA_CTL_SELECT | f.DMA_CTL_READ, 4, BUF))
    dev.dma_port.write(0, 4, 0)
    dev.dma_port.write(4, 4, int.from_bytes(DESC.to_bytes(4, "big"), "little"))
    assert memory.read(BUF, 4) == b"QEMU"


def test_dma_one_64bit_write_starts_it(dev: f.FwCfg, memory: GuestMemory) -> None:
    memory.write(DESC, f.DMA_DESCRIPTOR.pack(f.DMA_CTL_SELECT | f.DMA_CTL_READ, 4, BUF))
    dev.dma_port.write(0, 8, int.from_bytes(DESC.to_bytes(8, "big"), "little"))
    assert memory.read(BUF, 4) == b"QEMU"


def test_dma_address_register_clears_after_a_transfer(dev: f.FwCfg,
                                                        memory: GuestMemory) -> None:
    """A stale high half must not leak into the next transfer."""
    memory.write(DESC, f.DMA_DESCRIPTOR.pack(f.DMA_CTL_SELECT | f.DMA_CTL_READ, 4, BUF))
    dev.dma_port.write(0, 4, int.from_bytes((1).to_bytes(4, "big"), "little"))  # 4 GiB up
    dev.dma_port.write(4, 4, int.from_bytes(DESC.to_bytes(4, "big"), "little"))
    assert dev.dma_errors == 1  # 0x1_0000_1000 is not RAM: nothing to report to
    assert dev.state().dma_address == 0
    assert start_dma(dev, memory, f.DMA_CTL_SELECT | f.DMA_CTL_READ, 4, BUF) == 0


def test_dma_read_into_memory_outside_ram_sets_the_error_bit(dev: f.FwCfg,
                                                             memory: GuestMemory) -> None:
    control = f.DMA_CTL_SELECT | f.DMA_CTL_READ
    assert start_dma(dev, memory, control, 4, RAM - 2) == f.DMA_CTL_ERROR
    assert start_dma(dev, memory, control, 4, 0xFFFF_FFFF_FFFF_FFF0) == f.DMA_CTL_ERROR


def test_dma_huge_length_is_refused_without_allocating(dev: f.FwCfg,
                                                       memory: GuestMemory) -> None:
    """A 4 GiB zero fill past RAM is checked first: nothing is written, error reported."""
    memory.write(BUF, b"\xAA" * 16)
    control = f.DMA_CTL_SELECT | f.DMA_CTL_READ
    assert start_dma(dev, memory, control, 0xFFFF_FFFF, BUF) == f.DMA_CTL_ERROR
    assert memory.read(BUF + 4, 12) == b"\xAA" * 12


def test_dma_write_to_a_read_only_item_is_an_error(dev: f.FwCfg, memory: GuestMemory) -> None:
    memory.write(BUF, b"EVIL")
    control = f.DMA_CTL_SELECT | f.DMA_CTL_WRITE
    assert start_dma(dev, memory, control, 4, BUF) == f.DMA_CTL_ERROR
    assert read_item(dev, f.FW_CFG_SIGNATURE, 4) == b"QEMU"


def test_dma_write_to_a_writable_item(dev: f.FwCfg, memory: GuestMemory) -> None:
    seen: list[tuple[int, int]] = []
    dev.add_file("etc/writable", bytes(8), writable=True,
                 on_write=lambda offset, length: seen.append((offset, length)))
    key = dev.file_key("etc/writable")
    memory.write(BUF, b"abcd")
    assert start_dma(dev, memory, key << 16 | f.DMA_CTL_SELECT | f.DMA_CTL_SKIP, 2, 0) == 0
    assert start_dma(dev, memory, f.DMA_CTL_WRITE, 4, BUF) == 0
    assert dev.item(key) == b"\0\0abcd\0\0"
    assert seen == [(2, 4)]


def test_dma_write_past_the_end_is_dropped_whole(dev: f.FwCfg, memory: GuestMemory) -> None:
    """QEMU refuses a write that does not fit: the item never grows or half-changes."""
    dev.add_file("etc/writable", bytes(4), writable=True)
    key = dev.file_key("etc/writable")
    memory.write(BUF, b"abcdef")
    control = key << 16 | f.DMA_CTL_SELECT | f.DMA_CTL_WRITE
    assert start_dma(dev, memory, control, 6, BUF) == f.DMA_CTL_ERROR
    assert dev.item(key) == bytes(4)


def test_dma_descriptor_straddling_ram_end_reports_error(dev: f.FwCfg,
                                                         memory: GuestMemory) -> None:
    """QEMU stores the error into the control word when that much of it is RAM."""
    dev.dma_port.write(4, 4, int.from_bytes((RAM - 8).to_bytes(4, "big"), "little"))
    assert dev.dma_errors == 1
    assert memory.read(RAM - 8, 8) == b"\0\0\0\1" + bytes(4)


def test_dma_descriptor_without_an_operation_just_selects(dev: f.FwCfg,
                                                          memory: GuestMemory) -> None:
    memory.write(BUF, b"\xAA" * 4)
    assert start_dma(dev, memory, f.FW_CFG_ID << 16 | f.DMA_CTL_SELECT, 4, BUF) == 0
    assert memory.read(BUF, 4) == b"\xAA" * 4
    assert dev.io_port.read(1, 1) == f.ID_TRADITIONAL | f.ID_DMA


def test_dma_interface_absent_without_memory() -> None:
    dev = f.FwCfg(None)
    assert dev.dma_port.read(0, 4) == 0xFFFFFFFF
    dev.dma_port.write(4, 4, 0x1000)  # dropped, nothing to transfer to


def test_odd_dma_register_writes_are_ignored(dev: f.FwCfg, memory: GuestMemory) -> None:
    memory.write(DESC, f.DMA_DESCRIPTOR.pack(f.DMA_CTL_SELECT | f.DMA_CTL_READ, 4, BUF))
    dev.dma_port.write(4, 2, 0x1000)
    dev.dma_port.write(2, 4, 0x1000)
    dev.dma_port.write(1, 1, 0x10)
    assert memory.read(BUF, 4) == bytes(4)


def test_state_round_trip_and_bad_snapshot(dev: f.FwCfg) -> None:
    read_item(dev, f.FW_CFG_SIGNATURE, 2)
    state = dev.state()
    other = f.FwCfg(None)
    other.restore(state)
    assert bytes(other.io_port.read(1, 1) for _ in range(2)) == b"MU"
    with pytest.raises(ValueError):
        other.restore(f.FwCfgState(key=0x10000))
