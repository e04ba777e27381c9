"""The legacy window: memory map select, chain-4, odd/even, planar read/write modes with
latches (IBM VGA Technical Reference, graphics controller registers 0-8)."""

from __future__ import annotations

import itertools

import pytest

from pyhvm.devices import vga_regs as r
from pyhvm.devices.vga import StdVga
from pyhvm.devices.vga_memory import LegacyWindow

MiB = 1 << 20


def make() -> tuple[StdVga, bytearray]:
    memory = bytearray(1 * MiB)
    vga = StdVga(memoryview(memory))
    vga.regs.write(r.MISC_WRITE - r.PORT_BASE, 1, 0x67)
    return vga, memory


def sr(vga: StdVga, index: int, value: int) -> None:
    vga.regs.write(r.SEQ_INDEX - r.PORT_BASE, 2, index | value << 8)


def gr(vga: StdVga, index: int, value: int) -> None:
    vga.regs.write(r.GC_INDEX - r.PORT_BASE, 2, index | value << 8)


def planar(vga: StdVga) -> None:
    """Mode 12h style: sequential planes, 64 KiB at 0xA0000."""
    sr(vga, r.SR_MEMORY_MODE, 0x06)
    sr(vga, r.SR_MAP_MASK, 0x0F)
    gr(vga, r.GR_MODE, 0x00)
    gr(vga, r.GR_MISC, 0x05)
    gr(vga, r.GR_BIT_MASK, 0xFF)


def plane_byte(memory: bytearray, plane: int, offset: int) -> int:
    return memory[4 * offset + plane]


def test_text_odd_even_puts_characters_in_plane_0_and_attributes_in_plane_1() -> None:
    vga, memory = make()
    sr(vga, r.SR_MEMORY_MODE, 0x02)
    sr(vga, r.SR_MAP_MASK, 0x03)
    gr(vga, r.GR_MODE, 0x10)
    gr(vga, r.GR_MISC, 0x0E)   # 32 KiB at 0xB8000
    vga.window.write(0x18000 + 10, 2, 0x1E41)  # 'A' yellow on blue, as one word
    assert plane_byte(memory, 0, 5) == 0x41 and plane_byte(memory, 1, 5) == 0x1E
    assert vga.window.read(0x18000 + 10, 2) == 0x1E41
    assert vga.window.read(0x00000, 1) == 0xFF  # 0xA0000 is outside map 3
    vga.window.write(0x00000, 1, 0x55)
    assert not any(memory[:16])


@pytest.mark.parametrize("mode,start,size", [(0, 0, 0x20000), (1, 0, 0x10000),
                                             (2, 0x10000, 0x8000), (3, 0x18000, 0x8000)])
def test_memory_map_select_picks_the_window(mode: int, start: int, size: int) -> None:
    vga, memory = make()
    sr(vga, r.SR_MEMORY_MODE, 0x0E)  # chain-4
    sr(vga, r.SR_MAP_MASK, 0x0F)
    gr(vga, r.GR_MISC, 0x01 | mode << 2)
    vga.window.write(start + 0x123, 1, 0x77)
    assert memory[0x123] == 0x77
    if start:
        assert vga.window.read(start - 1, 1) == 0xFF
    if start + size < 0x20000:
        assert vga.window.read(start + size, 1) == 0xFF


def test_chain4_is_linear_and_map_mask_gates_each_plane() -> None:
    vga, memory = make()
    sr(vga, r.SR_MEMORY_MODE, 0x0E)
    sr(vga, r.SR_MAP_MASK, 0x0F)
    gr(vga, r.GR_MISC, 0x05)
    vga.window.write(0x100, 4, 0x44332211)
    assert memory[0x100:0x104] == bytes((0x11, 0x22, 0x33, 0x44))
    assert vga.legacy_alias() == (0xA0000, 0, 0x10000)
    sr(vga, r.SR_MAP_MASK, 0x05)  # planes 0 and 2
    vga.window.write(0x200, 4, 0xDDCCBBAA)
    assert memory[0x200:0x204] == bytes((0xAA, 0, 0xCC, 0))
    assert vga.legacy_alias() is None  # not every plane writable: must trap


def test_alias_is_none_in_text_and_planar_modes() -> None:
    vga, _ = make()
    sr(vga, r.SR_MEMORY_MODE, 0x02)
    assert vga.legacy_alias() is None
    planar(vga)
    assert vga.legacy_alias() is None


def test_read_mode_0_loads_latches_and_returns_the_selected_plane() -> None:
    vga, memory = make()
    planar(vga)
    memory[4 * 7:4 * 8] = bytes((0x11, 0x22, 0x33, 0x44))
    for plane in range(4):
        gr(vga, r.GR_READ_MAP, plane)
        assert vga.window.read(7, 1) == 0x11 * (plane + 1)
    assert vga.window.latch == 0x44332211


def test_read_mode_1_compares_colours_with_dont_care() -> None:
    vga, memory = make()
    planar(vga)
    memory[0:4] = bytes((0b11110000, 0b11001100, 0b10101010, 0b00000000))
    gr(vga, r.GR_MODE, r.GR5_READ_MODE1)
    gr(vga, r.GR_COLOR_COMPARE, 0b0011)  # planes 0 and 1 set, 2 and 3 clear
    gr(vga, r.GR_COLOR_DONT_CARE, 0x0F)
    expected = 0
    for bit in range(8):
        colour = sum(((memory[p] >> bit) & 1) << p for p in range(4))
        expected |= (colour == 0b0011) << bit
    assert vga.window.read(0, 1) == expected
    gr(vga, r.GR_COLOR_DONT_CARE, 0x01)  # only plane 0 counts
    assert vga.window.read(0, 1) == 0b11110000


def reference_write(latch: list[int], value: int, regs: dict[str, int]) -> list[int]:
    """The graphics controller's write path, plane by plane, from the reference manual."""
    rotate = regs["rotate"] & 7
    rotated = ((value >> rotate) | (value << (8 - rotate))) & 0xFF
    mode, function = regs["mode"], (regs["rotate"] >> 3) & 3
    result = []
    for plane in range(4):
        if mode == 1:
            result.append(latch[plane])
            continue
        mask = regs["bit_mask"]
        if mode == 0:
            if regs["enable_sr"] >> plane & 1:
                source = 0xFF if regs["sr"] >> plane & 1 else 0
            else:
                source = rotated
        elif mode == 2:
            source = 0xFF if value >> plane & 1 else 0
        else:
            source = 0xFF if regs["sr"] >> plane & 1 else 0
            mask &= rotated
        alu = [source, source & latch[plane], source | latch[plane],
               source ^ latch[plane]][function]
        result.append((alu & mask) | (latch[plane] & ~mask & 0xFF))
    return result


@pytest.mark.parametrize("mode,function", list(itertools.product(range(4), range(4))))
def test_planar_write_modes_match_the_reference(mode: int, function: int) -> None:
    vga, memory = make()
    planar(vga)
    regs = {"mode": mode, "rotate": function << 3 | 3, "bit_mask": 0b10110110,
            "sr": 0b0101, "enable_sr": 0b0011, "map_mask": 0b1011}
    gr(vga, r.GR_SET_RESET, regs["sr"])
    gr(vga, r.GR_ENABLE_SET_RESET, regs["enable_sr"])
    gr(vga, r.GR_DATA_ROTATE, regs["rotate"])
    gr(vga, r.GR_BIT_MASK, regs["bit_mask"])
    gr(vga, r.GR_MODE, mode)
    sr(vga, r.SR_MAP_MASK, regs["map_mask"])
    latch = [0x3C, 0xA5, 0x0F, 0xF0]
    before = [0x11, 0x22, 0x33, 0x44]
    memory[4 * 9:4 * 10] = bytes(latch)
    memory[4 * 20:4 * 21] = bytes(before)
    vga.window.read(9, 1)      # load the latches from offset 9
    vga.window.write(20, 1, 0x9A)
    expected = reference_write(latch, 0x9A, regs)
    got = list(memory[4 * 20:4 * 21])
    for plane in range(4):
        want = expected[plane] if regs["map_mask"] >> plane & 1 else before[plane]
        assert got[plane] == want, f"plane {plane}"


def test_write_mode_1_copies_latches_for_screen_to_screen_moves() -> None:
    vga, memory = make()
    planar(vga)
    memory[0:4] = bytes((1, 2, 3, 4))
    gr(vga, r.GR_MODE, 1)
    vga.window.read(0, 1)
    vga.window.write(100, 1, 0xFF)
    assert memory[400:404] == bytes((1, 2, 3, 4))


def test_planar_offsets_wrap_inside_the_64k_plane() -> None:
    vga, memory = make()
    planar(vga)
    gr(vga, r.GR_MISC, 0x01)  # 128 KiB window: offsets past 64 KiB wrap
    vga.window.write(0x10000 + 3, 1, 0xFF)
    assert memory[12:16] == b"\xff" * 4
    assert not any(memory[0x40000:])


def test_model_writes_mark_their_pages_dirty() -> None:
    vga, _ = make()
    vga.take_dirty()
    planar(vga)
    vga.window.write(0x2000, 1, 0xFF)  # plane offset 0x2000 -> video memory 0x8000
    dirty = vga.take_dirty()
    assert [i for i, d in enumerate(dirty) if d] == [8]
    assert not any(vga.take_dirty())


def vbe(vga: StdVga, index: int, value: int) -> None:
    vga.vbe.write(0, 4, value << 16 | index)


def test_vbe_bank_reaches_video_memory_past_the_vga_planes() -> None:
    """A VBE mode's 64 KiB bank at 0xA0000 (Bochs dispi BANK register) addresses all of
    video memory, not just the 256 KiB the VGA planes wrap in."""
    vga, memory = make()
    vbe(vga, 1, 640)  # XRES
    vbe(vga, 2, 480)  # YRES
    vbe(vga, 3, 8)    # BPP
    vbe(vga, 4, 0x41 | 0x80)  # ENABLED, LFB, NOCLEARMEM
    vbe(vga, 5, 9)    # BANK: video memory 0x90000
    memory[0x90010] = 0x5A
    assert vga.window.read(0x10, 1) == 0x5A
    vga.window.write(0x20, 2, 0xBEEF)
    assert memory[0x90020:0x90022] == b"\xef\xbe"
    assert not any(memory[0x10020:0x10022])  # not wrapped into the planes
    assert vga.legacy_alias() == (0xA0000, 0x90000, 0x10000)


def test_a_bank_set_while_vbe_is_off_wraps_inside_the_planes_and_keeps_trapping() -> None:
    """The BANK register takes effect even with VBE off (as in QEMU); mode 13h then
    addresses 0x50000, which wraps inside the 256 KiB planes, so the window may not be
    shared as plain memory (a shared mapping would show bytes past the planes)."""
    vga, memory = make()
    vbe(vga, 5, 5)
    sr(vga, r.SR_MEMORY_MODE, 0x0E)  # chain-4: mode 13h
    sr(vga, r.SR_MAP_MASK, 0x0F)
    gr(vga, r.GR_MISC, 0x05)          # 64 KiB at 0xA0000
    assert vga.legacy_alias() is None
    vga.window.write(0x10, 1, 0x77)
    assert memory[0x10010] == 0x77 and memory[0x50010] == 0
    assert vga.window.read(0x10, 1) == 0x77


def test_odd_even_writes_skip_planes_the_map_mask_disables() -> None:
    """Text mode with map mask 01b: characters (plane 0) are written, attributes (plane 1)
    are not; the attribute already in memory stays."""
    vga, memory = make()
    sr(vga, r.SR_MEMORY_MODE, 0x02)
    sr(vga, r.SR_MAP_MASK, 0x01)
    gr(vga, r.GR_MODE, 0x10)
    gr(vga, r.GR_MISC, 0x0E)
    memory[4 * 5 + 1] = 0x07
    vga.window.write(0x18000 + 10, 2, 0x1E41)
    assert plane_byte(memory, 0, 5) == 0x41 and plane_byte(memory, 1, 5) == 0x07


def test_the_window_needs_the_256k_of_vga_planes() -> None:
    with pytest.raises(ValueError, match="256 KiB"):
        LegacyWindow(r.VgaRegisters(), memoryview(bytearray(128 << 10)), lambda page: None,
                     lambda: 0, lambda: False)
