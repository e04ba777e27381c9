"""Guest-controlled sizes, offsets and indices of the std VGA: the Bochs VBE registers (ports
and BAR2), the VGA index registers and DAC, the legacy window, the linear framebuffer and
the renderer's size limits, each at 0, its maximum, maximum + 1 and 2^32 - 1 (or the
register's full width, said where narrower). docs/security/guest-lengths.md lists every
value with the test that proves it.

The history replays (test_device_history_vga.py) prove the invariant "the frame stays inside
video memory" for a grid of edge values; these tests pin the exact value each register takes
(the clamp is right, not only safe), and the index registers' masks."""

from __future__ import annotations

import numpy as np
import pytest

from pyhvm.devices import vbe as v
from pyhvm.devices import vga_regs as r
from pyhvm.devices.vga import MMIO_QEXT, MMIO_VBE, MMIO_VGA_PORTS, StdVga
from pyhvm.devices.vga_memory import WINDOW_SIZE
from pyhvm.devices.vga_render import MAX_FRAME_PIXELS, MAX_TEXT_CELLS, VgaRenderer, screen_regs
from tests.vbe_access import MiB, getreg, new_vga, setreg

U32_MAX = 0xFFFF_FFFF


def make(size: int = MiB) -> tuple[StdVga, bytearray]:
    return new_vga(size)


def out(vga: StdVga, port: int, value: int, size: int = 1) -> None:
    vga.regs.write(port - r.PORT_BASE, size, value)


def inb(vga: StdVga, port: int) -> int:
    return vga.regs.read(port - r.PORT_BASE, 1)


def enabled(vga: StdVga, xres: int = 640, yres: int = 480, bpp: int = 8) -> StdVga:
    setreg(vga, v.INDEX_XRES, xres)
    setreg(vga, v.INDEX_YRES, yres)
    setreg(vga, v.INDEX_BPP, bpp)
    setreg(vga, v.INDEX_ENABLE, v.ENABLED | v.NOCLEARMEM)
    return vga


def inside(vga: StdVga) -> bool:
    vbe = vga.vbe
    return vbe.start + vbe.yres * vbe.line_offset <= vga.vram_size


def screen_on(vga: StdVga) -> None:
    inb(vga, r.INPUT_STATUS1_COLOR)
    out(vga, r.AC_INDEX, r.AR_PALETTE_ADDRESS_SOURCE)


def render(vga: StdVga, memory: bytearray) -> np.ndarray:
    pixels, _ = VgaRenderer().render(screen_regs(vga), np.frombuffer(memory, np.uint8), None)
    return pixels


# -- VBE mode registers (16 bits each), as fixed up while VBE is enabled -------------------

@pytest.mark.parametrize("value,expect", [(0, 8), (v.MAX_XRES, v.MAX_XRES),
                                          (v.MAX_XRES + 1, v.MAX_XRES), (0xFFFF, v.MAX_XRES),
                                          (U32_MAX, v.MAX_XRES)])
def test_vbe_xres_edges(value: int, expect: int) -> None:
    """0 becomes the minimum 8; max stays; max + 1 and the full width clamp to max
    (2^32-1 reaches the 16-bit data port as 0xFFFF)."""
    vga, _ = make(16 * MiB)
    enabled(vga, yres=1)
    setreg(vga, v.INDEX_XRES, value & 0xFFFF)
    assert getreg(vga, v.INDEX_XRES) == expect and inside(vga)


@pytest.mark.parametrize("value,expect", [(0, 1), (1024, 1024), (1025, 1024), (0xFFFF, 1024)])
def test_vbe_yres_edges_cut_to_what_video_memory_holds(value: int, expect: int) -> None:
    """1 MiB at 1024 x 8 bpp holds 1024 lines: that is the maximum, not MAX_YRES."""
    vga, _ = make(MiB)
    enabled(vga, xres=1024)
    setreg(vga, v.INDEX_YRES, value)
    assert getreg(vga, v.INDEX_YRES) == expect and inside(vga)


def test_vbe_yres_max_is_max_yres_when_memory_holds_more() -> None:
    vga, _ = make(16 * MiB)
    enabled(vga, xres=8)
    for value, expect in ((v.MAX_YRES, v.MAX_YRES), (v.MAX_YRES + 1, v.MAX_YRES),
                          (0xFFFF, v.MAX_YRES)):
        setreg(vga, v.INDEX_YRES, value)
        assert getreg(vga, v.INDEX_YRES) == expect


@pytest.mark.parametrize("value,expect", [(0, 8), (4, 4), (32, 32), (33, 8), (0xFFFF, 8)])
def test_vbe_bpp_edges(value: int, expect: int) -> None:
    vga, _ = make(MiB)
    enabled(vga)
    setreg(vga, v.INDEX_BPP, value)
    assert getreg(vga, v.INDEX_BPP) == expect and inside(vga)
    assert vga.vbe.line_offset == 640 * {4: 4, 8: 8, 32: 32}[expect] // 8


@pytest.mark.parametrize("value,expect", [(0, 640), (v.MAX_XRES, v.MAX_XRES),
                                          (v.MAX_XRES + 1, v.MAX_XRES),
                                          (0xFFFF, v.MAX_XRES)])
def test_vbe_virt_width_edges(value: int, expect: int) -> None:
    """0 becomes the width; the maximum line is MAX_XRES wide (the height then shrinks
    to the lines that fit)."""
    vga, _ = make(MiB)
    enabled(vga)
    setreg(vga, v.INDEX_VIRT_WIDTH, value)
    assert getreg(vga, v.INDEX_VIRT_WIDTH) == expect and inside(vga)
    assert getreg(vga, v.INDEX_YRES) == min(480, MiB // expect)
    assert getreg(vga, v.INDEX_VIRT_HEIGHT) == MiB // expect


def test_vbe_virt_height_reads_the_lines_video_memory_holds_and_ignores_writes() -> None:
    vga, _ = make(MiB)
    enabled(vga, xres=8)
    assert getreg(vga, v.INDEX_VIRT_HEIGHT) == 0xFFFF  # 131072 lines, clamped to 16 bits
    setreg(vga, v.INDEX_VIRT_HEIGHT, 0)
    assert getreg(vga, v.INDEX_VIRT_HEIGHT) == 0xFFFF


@pytest.mark.parametrize("value,expect", [(0, 0), (v.MAX_XRES, v.MAX_XRES),
                                          (v.MAX_XRES + 1, v.MAX_XRES),
                                          (0xFFFF, v.MAX_XRES)])
def test_vbe_x_offset_edges(value: int, expect: int) -> None:
    vga, _ = make(MiB)
    enabled(vga)
    setreg(vga, v.INDEX_X_OFFSET, value)
    assert getreg(vga, v.INDEX_X_OFFSET) == expect and inside(vga)
    assert vga.vbe.start == expect & ~3


# 640 x 480 x 8 on 1 MiB: 1024 * 1024 - 480 * 640 = 741376 bytes to spare, 1158.4 lines.
@pytest.mark.parametrize("value,expect", [(0, 0), (1158, 1158), (1159, 0), (0xFFFF, 0)])
def test_vbe_y_offset_edges_drop_an_offset_that_runs_past_video_memory(value: int,
                                                                       expect: int) -> None:
    vga, _ = make(MiB)
    enabled(vga)
    setreg(vga, v.INDEX_Y_OFFSET, value)
    assert getreg(vga, v.INDEX_Y_OFFSET) == expect and inside(vga)
    assert vga.vbe.start == expect * 640


@pytest.mark.parametrize("bpp,value,expect", [
    (8, 0, 0), (8, 15, 15), (8, 16, 0), (8, 0xFFFF, 15),   # 16 banks of 64 KiB in 1 MiB
    (4, 3, 3), (4, 4, 0), (4, 0xFFFF, 3),                   # planar: a quarter of them
])
def test_vbe_bank_edges_mask_to_the_banks_that_exist(bpp: int, value: int,
                                                     expect: int) -> None:
    vga, memory = make(MiB)
    enabled(vga, bpp=bpp)
    setreg(vga, v.INDEX_BANK, value)
    assert getreg(vga, v.INDEX_BANK) == expect and vga.vbe.bank_offset == expect << 16
    if bpp == 8:  # the window's last byte is video memory's byte at bank end - 1
        memory[(expect + 1 << 16) - 1] = 0x77
        assert vga.window.read(0xFFFF, 1) == 0x77
        assert vga.window.read(0x10000, 4) == U32_MAX  # past the 64 KiB map: floats


@pytest.mark.parametrize("value,expect", [(0, v.ID5), (v.ID0, v.ID0), (v.ID5, v.ID5),
                                          (v.ID5 + 1, v.ID5), (0xFFFF, v.ID5)])
def test_vbe_id_edges(value: int, expect: int) -> None:
    vga, _ = make(MiB)
    setreg(vga, v.INDEX_ID, value)
    assert getreg(vga, v.INDEX_ID) == expect


@pytest.mark.parametrize("index", [v.INDEX_VIDEO_MEMORY_64K, v.INDEX_VIDEO_MEMORY_64K + 1,
                                   0xFFFF])
def test_vbe_index_edges_past_the_registers_read_derived_or_zero(index: int) -> None:
    """10 (max) is the read-only memory size; 11 (max + 1) and 0xFFFF name nothing: they
    read 0 and drop writes, and no stored register changes."""
    vga, _ = make(MiB)
    enabled(vga)
    before = list(vga.vbe.regs)
    setreg(vga, index, 0x1234)
    assert getreg(vga, index) == (MiB >> 16 if index == v.INDEX_VIDEO_MEMORY_64K else 0)
    assert vga.vbe.regs == before


def test_vbe_dword_write_of_ones_at_the_index_port_loads_index_and_data() -> None:
    """2^32-1 as one dword at 0x1CE: index 0xFFFF (nothing) and data 0xFFFF at 0x1D0."""
    vga, _ = make(MiB)
    enabled(vga)
    before = list(vga.vbe.regs)
    vga.vbe.write(0, 4, U32_MAX)
    assert vga.vbe.index == 0xFFFF and vga.vbe.regs == before
    assert vga.vbe.read(0, 4) == 0x0000_FFFF  # index 0xFFFF, data 0: one dword, two ports
    assert vga.vbe.read(2, 4) == 0xFFFF_0000  # 0x1D0 (data) and 0x1D2 (nobody)


def test_vbe_enable_clears_exactly_the_visible_frame() -> None:
    """The clear on enable is YRES x line length, never more than video memory, even for
    the largest mode that fits."""
    vga, memory = make(MiB)
    memory[:] = b"\x5A" * MiB
    setreg(vga, v.INDEX_XRES, 0xFFFF)
    setreg(vga, v.INDEX_YRES, 0xFFFF)
    setreg(vga, v.INDEX_BPP, 32)
    setreg(vga, v.INDEX_ENABLE, v.ENABLED)
    cleared = vga.vbe.yres * vga.vbe.line_offset
    assert cleared <= MiB and vga.vbe.xres == v.MAX_XRES and vga.vbe.yres == 16
    assert memory[:cleared] == bytes(cleared) and memory[cleared:] == b"\x5A" * (MiB - cleared)


# -- the VBE registers through BAR2 (0x500 + 2 * index, 11 words) ---------------------------

@pytest.mark.parametrize("offset,size,expect", [
    (MMIO_VBE, 2, v.ID5),                           # index 0
    (MMIO_VBE + 2 * v.INDEX_VIDEO_MEMORY_64K, 2, MiB >> 16),  # index 10 (max)
    (MMIO_VBE + 2 * v.INDEX_VIDEO_MEMORY_64K, 4, MiB >> 16),  # index 10 and 11 (nothing)
    (MMIO_VBE + 0x16, 2, 0),                        # index 11: a hole
    (MMIO_VBE + 0x15, 1, 0),                        # the last byte of index 10
    (MMIO_QEXT + 6, 4, 0x1E1E),                     # QEMU's byte-order word, half past the end
    (0xFFC, 8, 0),                                  # the page's last bytes: a hole
])
def test_register_page_offsets_past_each_block(offset: int, size: int, expect: int) -> None:
    vga, _ = make(MiB)
    assert vga.mmio.read(offset, size) == expect
    vga.mmio.write(offset, size, (1 << 8 * size) - 1)  # nothing named there changes
    assert vga.vbe.regs[v.INDEX_ID] == v.ID5 and vga.vbe.vram_size == MiB


def test_register_page_vga_ports_block_ends_at_0x41f() -> None:
    vga, _ = make(MiB)
    out(vga, r.MISC_WRITE, r.MISC_IO_COLOR)
    vga.mmio.write(MMIO_VGA_PORTS + 0x14, 2, 0x120C)  # CRTC index 0x0C, then data 0x12
    assert vga.regs.cr[0x0C] == 0x12
    assert vga.mmio.read(MMIO_VGA_PORTS + 0x1F, 4) == 0xFF  # port 0x3DF, then a hole
    vga.mmio.write(MMIO_VGA_PORTS + 0x1F, 4, U32_MAX)  # only 0x3DF (nobody) is reached


# -- the VGA index registers -------------------------------------------------------------------

@pytest.mark.parametrize("value,index", [(0, 0), (7, 7), (8, 0), (0xFF, 7)])
def test_sequencer_index_edges_are_three_bits(value: int, index: int) -> None:
    vga, _ = make(MiB)
    out(vga, r.SEQ_INDEX, value)
    assert inb(vga, r.SEQ_INDEX) == index
    out(vga, r.SEQ_DATA, 0xFF)
    assert inb(vga, r.SEQ_DATA) == r.SR_WRITABLE[index]


@pytest.mark.parametrize("value,index", [(0, 0), (8, 8), (9, 9), (15, 15), (16, 0),
                                         (0xFF, 15)])
def test_graphics_index_edges_are_four_bits(value: int, index: int) -> None:
    """8 is the last register; 9-15 exist only as index values (read 0, keep nothing)."""
    vga, _ = make(MiB)
    out(vga, r.GC_INDEX, value)
    assert inb(vga, r.GC_INDEX) == index
    out(vga, r.GC_DATA, 0xFF)
    assert inb(vga, r.GC_DATA) == r.GR_WRITABLE[index]


@pytest.mark.parametrize("index", [0, 0x18, 0x19, 0xFF])
def test_crtc_index_edges_are_eight_bits_and_every_index_stores(index: int) -> None:
    vga, _ = make(MiB)
    out(vga, r.MISC_WRITE, r.MISC_IO_COLOR)
    out(vga, r.CRTC_INDEX_COLOR, index)
    out(vga, r.CRTC_DATA_COLOR, 0xA5)
    assert inb(vga, r.CRTC_INDEX_COLOR) == index and inb(vga, r.CRTC_DATA_COLOR) == 0xA5
    assert len(vga.regs.cr) == r.CR_COUNT


def test_crtc_index_and_data_written_as_one_dword_of_ones() -> None:
    """2^32-1 at 0x3D4: index 0xFF, data 0xFF, then 0x3D6 and 0x3D7 (nobody)."""
    vga, _ = make(MiB)
    out(vga, r.MISC_WRITE, r.MISC_IO_COLOR)
    out(vga, r.CRTC_INDEX_COLOR, U32_MAX, 4)
    assert vga.regs.cr_index == 0xFF and vga.regs.cr[0xFF] == 0xFF


@pytest.mark.parametrize("value,stored", [(0x00, True), (0x14, True), (0x15, False),
                                          (0x1F, False), (0xFF, False)])
def test_attribute_index_edges(value: int, stored: bool) -> None:
    """Five index bits name the register, 0x14 the last one; 0x15-0x1F (max + 1 on) read
    0 and drop writes. Bit 5 is PAS and bits 7:6 do not exist, so 0xFF reads back as 0x3F
    and names 0x1F: nothing."""
    vga, _ = make(MiB)
    inb(vga, r.INPUT_STATUS1_COLOR)
    before = bytes(vga.regs.ar)
    out(vga, r.AC_INDEX, value)
    out(vga, r.AC_INDEX, 0xFF)  # the data write
    index = value & r.AR_INDEX_MASK
    if stored:
        assert inb(vga, r.AC_READ) == r.AR_WRITABLE[index]
    else:
        assert inb(vga, r.AC_READ) == 0 and bytes(vga.regs.ar) == before
    assert inb(vga, r.AC_INDEX) == value & 0x3F and len(vga.regs.ar) == r.AR_COUNT


@pytest.mark.parametrize("start", [0, 0xFF])
def test_dac_indices_wrap_after_entry_255(start: int) -> None:
    """Write index 0 and 255 (max): three components load an entry, the next write goes
    to the following entry, and after 255 that is entry 0 (256 is max + 1)."""
    vga, _ = make(MiB)
    out(vga, r.DAC_WRITE_INDEX, start)
    for value in (1, 2, 3, 4, 5, 6):
        out(vga, r.DAC_DATA, value)
    second = (start + 1) & 0xFF
    assert vga.regs.dac[3 * start:3 * start + 3] == bytes((1, 2, 3))
    assert vga.regs.dac[3 * second:3 * second + 3] == bytes((4, 5, 6))
    out(vga, r.DAC_READ_INDEX, start)
    assert [inb(vga, r.DAC_DATA) for _ in range(6)] == [1, 2, 3, 4, 5, 6]
    assert len(vga.regs.dac) == 3 * 256


def test_dac_data_written_as_a_dword_of_ones_loads_components_in_turn() -> None:
    vga, _ = make(MiB)
    out(vga, r.DAC_WRITE_INDEX, 0xFF)
    out(vga, r.DAC_DATA, U32_MAX, 4)  # 0x3C9 0xFF, then 0x3CA-0x3CC: not the DAC
    assert vga.regs.dac_component == 1 and vga.regs.dac[3 * 255:] == bytes(3)


# -- the legacy window (128 KiB) and the linear framebuffer ---------------------------------

@pytest.mark.parametrize("select,start,size", [(0, 0, 0x20000), (1, 0, 0x10000),
                                               (2, 0x10000, 0x8000), (3, 0x18000, 0x8000)])
def test_window_offsets_outside_the_selected_map_float(select: int, start: int,
                                                       size: int) -> None:
    """Offsets 0 .. WINDOW_SIZE - 1 per memory map select: the map's first and last byte
    reach memory, the bytes just outside it read 0xFF and drop writes."""
    vga, memory = make(MiB)
    out(vga, r.SEQ_INDEX, r.SR_MEMORY_MODE)
    out(vga, r.SEQ_DATA, r.SR4_CHAIN4)
    out(vga, r.SEQ_INDEX, r.SR_MAP_MASK)
    out(vga, r.SEQ_DATA, 0x0F)
    out(vga, r.GC_INDEX, r.GR_MISC)
    out(vga, r.GC_DATA, select << r.GR6_MAP_SHIFT | r.GR6_GRAPHICS)
    for offset in (start, start + size - 1):
        vga.window.write(offset, 1, 0x42)
        assert vga.window.read(offset, 1) == 0x42
    for offset in (start - 1, start + size):
        if 0 <= offset < WINDOW_SIZE:
            before = bytes(memory)
            vga.window.write(offset, 1, 0x99)
            assert vga.window.read(offset, 1) == 0xFF and bytes(memory) == before
    assert vga.window.read(WINDOW_SIZE - 2, 4) >> 16 == 0xFFFF  # lanes past the window


def test_linear_framebuffer_access_past_the_end_touches_only_what_fits() -> None:
    vga, memory = make(MiB)
    vga.lfb.write(MiB - 4, 8, 0x1122_3344_5566_7788)
    assert memory[-4:] == bytes.fromhex("88776655") and len(memory) == MiB
    assert vga.lfb.read(MiB - 4, 8) == 0xFFFF_FFFF_5566_7788
    assert vga.lfb.read(0, 8) == 0 and vga.lfb.read(MiB - 1, 1) == 0x55


# -- the renderer's size limits ------------------------------------------------------------

def text_mode(vga: StdVga, cols: int, rows: int, cheight: int) -> None:
    out(vga, r.MISC_WRITE, r.MISC_IO_COLOR)
    crtc = {r.CR_V_RETRACE_END: 0, r.CR_H_DISPLAY_END: cols - 1,
            r.CR_MAX_SCAN: cheight - 1, r.CR_V_DISPLAY_END: (rows * cheight - 1) & 0xFF,
            r.CR_OVERFLOW: ((rows * cheight - 1) >> 8 & 1) << 1 |
            ((rows * cheight - 1) >> 9 & 1) << 6}
    for index, value in crtc.items():
        out(vga, r.CRTC_INDEX_COLOR, index)
        out(vga, r.CRTC_DATA_COLOR, value)
    screen_on(vga)


@pytest.mark.parametrize("cols,rows,cheight,drawn", [
    (1, 1, 16, False),           # 0 useful cells: one cell is blank
    (2, 1, 16, True),            # the smallest text screen drawn
    (160, 100, 1, True),         # max: MAX_TEXT_CELLS cells
    (161, 100, 1, False),        # max + 1 cells: blank
    (256, 1024, 1, False),       # the registers' full widths: blank
])
def test_text_mode_cell_count_edges(cols: int, rows: int, cheight: int, drawn: bool) -> None:
    assert 160 * 100 == MAX_TEXT_CELLS
    vga, memory = make(MiB)
    text_mode(vga, cols, rows, cheight)
    pixels = render(vga, memory)
    if drawn:
        assert pixels.shape[:2] == (rows * cheight, cols * 9)
    else:
        assert not pixels.any()


@pytest.mark.parametrize("height,drawn", [(4096, True), (4097, False)])
def test_vbe_frame_pixel_limit_edges(height: int, drawn: bool) -> None:
    """4096 x 4096 (MAX_FRAME_PIXELS, max) is drawn; one more line (max + 1) is blank.
    A 32 MiB adapter holds both at 8 bpp."""
    vga, memory = make(32 * MiB)
    enabled(vga, xres=4096, yres=height)
    assert vga.vbe.yres == height
    memory[:4096] = b"\x01" * 4096
    screen_on(vga)
    pixels = render(vga, memory)
    if drawn:
        assert pixels.shape[:2] == (4096, 4096) and pixels.shape[0] * pixels.shape[1] == \
            MAX_FRAME_PIXELS
    else:
        assert not pixels.any()
