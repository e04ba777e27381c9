"""Renderer: known adapter states against pictures computed here, cell by cell and pixel by
pixel, from the glyph bitmaps and palettes (IBM VGA Technical Reference: attribute
controller, CRTC cursor registers, sequencer clocking mode; Bochs VBE pixel formats)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from pyhvm.devices import vbe as v
from pyhvm.devices import vga_regs as r
from pyhvm.devices.vga import StdVga
from pyhvm.devices.vga_bios import ega_palette_entry, set_text_mode3
from pyhvm.devices.vga_render import VgaRenderer, screen_regs

MiB = 1 << 20
SIX_TO_EIGHT = {0x00: 0x00, 0x15: 0x57, 0x2A: 0xA8, 0x3F: 0xFF}  # as QEMU expands 6 bits
MODE3_AR = [0, 1, 2, 3, 4, 5, 0x14, 7, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F]


def synthetic_font() -> bytes:
    """256 glyphs x 32 bytes: a pattern unique to each character and row."""
    table = bytearray(256 * 32)
    for code in range(256):
        for row in range(16):
            table[code * 32 + row] = (code * 7 + row * 29 + 3) & 0xFF
    return bytes(table)


FONT = synthetic_font()


def text_vga() -> tuple[StdVga, np.ndarray]:
    memory = bytearray(4 * MiB)
    vga = StdVga(memoryview(memory))
    set_text_mode3(vga, FONT)
    return vga, np.frombuffer(memory, np.uint8)


def out(vga: StdVga, port: int, value: int) -> None:
    vga.regs.write(port - r.PORT_BASE, 1, value)


def crtc(vga: StdVga, index: int, value: int) -> None:
    out(vga, r.CRTC_INDEX_COLOR, index)
    out(vga, r.CRTC_DATA_COLOR, value)


def put(vga: StdVga, row: int, col: int, text: bytes, attr: int) -> None:
    for i, ch in enumerate(text):
        vga.window.write(0x18000 + 2 * (row * 80 + col + i), 2, ch | attr << 8)


def mode3_rgb(index: int) -> tuple[int, int, int]:
    red, green, blue = ega_palette_entry(MODE3_AR[index])
    return SIX_TO_EIGHT[red], SIX_TO_EIGHT[green], SIX_TO_EIGHT[blue]


def expected_text(cells: dict[tuple[int, int], tuple[int, int]], *, cwidth: int = 9,
                  blink_on: bool = True, blink: bool = True, line_graphics: bool = True,
                  rgb: Callable[[int], tuple[int, int, int]] = mode3_rgb) -> np.ndarray:
    """The 80x25 screen: every cell blank (0x20, 0x07) except `cells`; `rgb` turns an
    attribute colour (0-15) into the pixel."""
    image = np.zeros((400, 80 * cwidth, 3), np.uint8)
    for row in range(25):
        for col in range(80):
            ch, attr = cells.get((row, col), (0x20, 0x07))
            fg, bg = attr & 0xF, attr >> 4
            if blink:
                bg &= 7
                if attr & 0x80 and not blink_on:
                    fg = bg
            for y in range(16):
                bits = FONT[ch * 32 + y]
                for x in range(cwidth):
                    if x < 8:
                        on = bits >> (7 - x) & 1
                    else:
                        on = bits & 1 if line_graphics and 0xC0 <= ch <= 0xDF else 0
                    image[row * 16 + y, col * cwidth + x] = rgb(fg if on else bg)
    return image


def render(vga: StdVga, vram: np.ndarray, renderer: VgaRenderer | None = None,
           dirty: np.ndarray | None = None, **phases: bool
           ) -> tuple[np.ndarray, tuple[int, int] | None]:
    renderer = renderer or VgaRenderer()
    return renderer.render(screen_regs(vga), vram, dirty, **phases)


def test_text_80x25_with_attributes_matches_glyphs_and_palette() -> None:
    vga, vram = text_vga()
    crtc(vga, r.CR_CURSOR_START, 0x20)  # cursor off
    put(vga, 0, 0, b"Hello", 0x1E)
    put(vga, 24, 75, b"\xc4\xb0\x01", 0x4A)
    put(vga, 12, 40, b"X", 0x70)
    pixels, rows = render(vga, vram)
    cells = {(0, i): (c, 0x1E) for i, c in enumerate(b"Hello")}
    cells.update({(24, 75 + i): (c, 0x4A) for i, c in enumerate(b"\xc4\xb0\x01")})
    cells[(12, 40)] = (ord("X"), 0x70)
    assert rows is None or rows == (0, 400)
    assert np.array_equal(pixels, expected_text(cells))


def test_cursor_fills_its_scan_lines_in_the_foreground_colour() -> None:
    vga, vram = text_vga()
    put(vga, 3, 5, b"A", 0x2C)
    crtc(vga, r.CR_CURSOR_START, 4)
    crtc(vga, r.CR_CURSOR_END, 6)
    crtc(vga, r.CR_CURSOR_HI, 0)
    crtc(vga, r.CR_CURSOR_LO, 3 * 80 + 5)
    pixels, _ = render(vga, vram)
    expected = expected_text({(3, 5): (ord("A"), 0x2C)})
    expected[48 + 4:48 + 7, 45:54] = mode3_rgb(0xC)
    assert np.array_equal(pixels, expected)
    off, _ = render(vga, vram, cursor_on=False)
    assert np.array_equal(off, expected_text({(3, 5): (ord("A"), 0x2C)}))


def test_cursor_start_after_end_shows_no_cursor() -> None:
    vga, vram = text_vga()
    crtc(vga, r.CR_CURSOR_START, 10)
    crtc(vga, r.CR_CURSOR_END, 5)
    pixels, _ = render(vga, vram)
    assert np.array_equal(pixels, expected_text({}))


def test_blink_attribute_hides_the_character_in_the_off_phase() -> None:
    vga, vram = text_vga()
    crtc(vga, r.CR_CURSOR_START, 0x20)
    put(vga, 1, 1, b"B", 0xCE)  # blink, red background (intensity bit is blink)
    cells = {(1, 1): (ord("B"), 0xCE)}
    renderer = VgaRenderer()
    on, _ = render(vga, vram, renderer, blink_on=True)
    assert np.array_equal(on, expected_text(cells, blink_on=True))
    off, rows = render(vga, vram, renderer, np.zeros(1024, bool), blink_on=False)
    assert np.array_equal(off, expected_text(cells, blink_on=False))
    assert rows == (16, 32)  # only the row with the blinking character changed


def test_without_blink_enable_bit_7_brightens_the_background() -> None:
    vga, vram = text_vga()
    crtc(vga, r.CR_CURSOR_START, 0x20)
    vga.regs.read(r.INPUT_STATUS1_COLOR - r.PORT_BASE, 1)
    out(vga, r.AC_INDEX, r.AR_MODE | r.AR_PALETTE_ADDRESS_SOURCE)
    out(vga, r.AC_INDEX, 0x04)  # line graphics, no blink
    put(vga, 1, 1, b"B", 0xCE)
    pixels, _ = render(vga, vram, blink_on=False)
    assert np.array_equal(pixels, expected_text({(1, 1): (ord("B"), 0xCE)}, blink=False))


def test_8_dot_clocking_makes_640_pixel_lines() -> None:
    vga, vram = text_vga()
    crtc(vga, r.CR_CURSOR_START, 0x20)
    out(vga, r.SEQ_INDEX, r.SR_CLOCKING)
    out(vga, r.SEQ_DATA, r.SR1_8DOT)
    put(vga, 0, 0, b"\xc4Z", 0x07)
    pixels, _ = render(vga, vram)
    assert pixels.shape == (400, 640, 3)
    assert np.array_equal(pixels, expected_text({(0, 0): (0xC4, 7), (0, 1): (90, 7)},
                                                cwidth=8))


def test_text_start_address_scrolls_by_whole_lines() -> None:
    vga, vram = text_vga()
    crtc(vga, r.CR_CURSOR_START, 0x20)
    put(vga, 1, 0, b"second", 0x0F)
    crtc(vga, r.CR_START_HI, 0)
    crtc(vga, r.CR_START_LO, 80)
    pixels, _ = render(vga, vram)
    assert np.array_equal(pixels, expected_text({(0, i): (c, 0x0F)
                                                 for i, c in enumerate(b"second")}))


def test_text_rows_redrawn_only_where_cells_changed() -> None:
    vga, vram = text_vga()
    crtc(vga, r.CR_CURSOR_START, 0x20)
    renderer = VgaRenderer()
    render(vga, vram, renderer)
    assert render(vga, vram, renderer)[1] == (0, 0)
    put(vga, 7, 3, b"q", 0x07)
    pixels, rows = render(vga, vram, renderer)
    assert rows == (7 * 16, 8 * 16)
    assert np.array_equal(pixels, expected_text({(7, 3): (ord("q"), 7)}))


def test_blank_when_the_attribute_controller_releases_the_palette() -> None:
    vga, vram = text_vga()
    vga.regs.read(r.INPUT_STATUS1_COLOR - r.PORT_BASE, 1)
    out(vga, r.AC_INDEX, 0x00)  # PAS clear: the CPU owns the palette, the screen is blank
    pixels, _ = render(vga, vram)
    assert not pixels.any()


def attribute(vga: StdVga, index: int, value: int) -> None:
    """One attribute controller register, leaving the palette to the screen (PAS set)."""
    vga.regs.read(r.INPUT_STATUS1_COLOR - r.PORT_BASE, 1)
    out(vga, r.AC_INDEX, index | r.AR_PALETTE_ADDRESS_SOURCE)
    out(vga, r.AC_INDEX, value)


def test_ar10_bit7_takes_palette_bits_5_4_from_the_colour_select() -> None:
    """AR10 bit 7 (P5,P4 select): DAC index bits 5-4 come from AR14 bits 1-0 instead of
    the palette register; otherwise AR14 bits 3-2 give DAC index bits 7-6."""
    vga, vram = text_vga()
    crtc(vga, r.CR_CURSOR_START, 0x20)
    put(vga, 2, 7, b"P", 0x1E)
    cells = {(2, 7): (ord("P"), 0x1E)}

    def dac_rgb(index: int) -> tuple[int, int, int]:
        red, green, blue = ega_palette_entry(index) if index < 64 else (0, 0, 0)
        return six(red), six(green), six(blue)

    attribute(vga, r.AR_COLOR_SELECT, 0x02)
    attribute(vga, r.AR_MODE, vga.regs.ar[r.AR_MODE] | 0x80)
    pixels, _ = render(vga, vram)
    assert np.array_equal(pixels, expected_text(
        cells, rgb=lambda c: dac_rgb(0x20 | MODE3_AR[c] & 0x0F)))
    attribute(vga, r.AR_MODE, vga.regs.ar[r.AR_MODE] & ~0x80)
    attribute(vga, r.AR_COLOR_SELECT, 0x04)  # bits 3-2 = 01: DAC 0x40-0x7F, all black here
    pixels, _ = render(vga, vram)
    assert not pixels.any()


def test_moving_the_cursor_redraws_its_old_and_new_rows_only() -> None:
    vga, vram = text_vga()
    crtc(vga, r.CR_CURSOR_START, 14)
    crtc(vga, r.CR_CURSOR_END, 15)
    crtc(vga, r.CR_CURSOR_HI, 0)
    crtc(vga, r.CR_CURSOR_LO, 3 * 80 + 5)
    renderer = VgaRenderer()
    render(vga, vram, renderer)
    crtc(vga, r.CR_CURSOR_HI, (9 * 80 + 1) >> 8)
    crtc(vga, r.CR_CURSOR_LO, (9 * 80 + 1) & 0xFF)
    pixels, rows = render(vga, vram, renderer)
    assert rows == (3 * 16, 10 * 16)
    expected = expected_text({})
    expected[9 * 16 + 14:9 * 16 + 16, 9:18] = mode3_rgb(0x7)
    assert np.array_equal(pixels, expected)
    pixels, rows = render(vga, vram, renderer, cursor_on=False)  # the blink's off phase
    assert rows == (9 * 16, 10 * 16)
    assert np.array_equal(pixels, expected_text({}))


def test_cursor_address_outside_the_visible_cells_draws_no_cursor() -> None:
    vga, vram = text_vga()
    crtc(vga, r.CR_CURSOR_START, 0)
    crtc(vga, r.CR_CURSOR_END, 15)
    crtc(vga, r.CR_CURSOR_HI, 2100 >> 8)  # cell 2100 of an 80x25 (2000-cell) screen
    crtc(vga, r.CR_CURSOR_LO, 2100 & 0xFF)
    pixels, _ = render(vga, vram)
    assert np.array_equal(pixels, expected_text({}))


def test_text_line_compare_restarts_the_lower_screen_at_address_0() -> None:
    """CRTC line compare (CR18, CR07 bit 4, CR09 bit 6): the rows after the compare line
    show video memory from address 0 (a split screen under a scrolled top)."""
    vga, vram = text_vga()
    crtc(vga, r.CR_CURSOR_START, 0x20)
    put(vga, 0, 0, b"status", 0x1F)
    put(vga, 10, 0, b"scrolled", 0x0E)
    crtc(vga, r.CR_START_HI, (10 * 80) >> 8)
    crtc(vga, r.CR_START_LO, (10 * 80) & 0xFF)
    crtc(vga, r.CR_OVERFLOW, vga.regs.cr[r.CR_OVERFLOW] & ~0x10)
    crtc(vga, r.CR_MAX_SCAN, vga.regs.cr[r.CR_MAX_SCAN] & ~0x40)
    crtc(vga, r.CR_LINE_COMPARE, 5 * 16)
    pixels, _ = render(vga, vram)
    cells = {(0, i): (c, 0x0E) for i, c in enumerate(b"scrolled")}
    cells.update({(5, i): (c, 0x1F) for i, c in enumerate(b"status")})
    cells.update({(15, i): (c, 0x0E) for i, c in enumerate(b"scrolled")})
    assert np.array_equal(pixels, expected_text(cells))


def test_without_line_graphics_the_ninth_column_is_background() -> None:
    vga, vram = text_vga()
    crtc(vga, r.CR_CURSOR_START, 0x20)
    attribute(vga, r.AR_MODE, 0x08)  # blink on, line graphics (bit 2) off
    put(vga, 4, 4, b"\xc4\xdb\xb3", 0x07)
    pixels, _ = render(vga, vram)
    cells = {(4, 4 + i): (c, 0x07) for i, c in enumerate(b"\xc4\xdb\xb3")}
    assert np.array_equal(pixels, expected_text(cells, line_graphics=False))


def test_dot_clock_halved_text_doubles_every_pixel_across() -> None:
    vga, vram = text_vga()
    crtc(vga, r.CR_CURSOR_START, 0x20)
    out(vga, r.SEQ_INDEX, r.SR_CLOCKING)
    out(vga, r.SEQ_DATA, r.SR1_DOT_CLOCK_DIV2)  # 9-dot cells, each dot twice as wide
    put(vga, 0, 0, b"W\xc4", 0x1F)
    pixels, _ = render(vga, vram)
    assert pixels.shape == (400, 80 * 9 * 2, 3)
    expected = expected_text({(0, 0): (ord("W"), 0x1F), (0, 1): (0xC4, 0x1F)})
    assert np.array_equal(pixels, np.repeat(expected, 2, axis=1))


# -- graphics ------------------------------------------------------------------------------------

MODE13 = {"misc": 0x63, "sr": (0x03, 0x01, 0x0F, 0x00, 0x0E),
          "cr": (0x5F, 0x4F, 0x50, 0x82, 0x54, 0x80, 0xBF, 0x1F, 0x00, 0x41, 0x00, 0x00,
                 0x00, 0x00, 0x00, 0x00, 0x9C, 0x0E, 0x8F, 0x28, 0x40, 0x96, 0xB9, 0xA3,
                 0xFF),
          "gr": (0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0F, 0xFF),
          "ar": tuple(range(16)) + (0x41, 0x00, 0x0F, 0x00, 0x00)}
MODE12 = {"misc": 0xE3, "sr": (0x03, 0x01, 0x0F, 0x00, 0x06),
          "cr": (0x5F, 0x4F, 0x50, 0x82, 0x54, 0x80, 0x0B, 0x3E, 0x00, 0x40, 0x00, 0x00,
                 0x00, 0x00, 0x00, 0x00, 0xEA, 0x8C, 0xDF, 0x28, 0x00, 0xE7, 0x04, 0xE3,
                 0xFF),
          "gr": (0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x0F, 0xFF),
          "ar": (0, 1, 2, 3, 4, 5, 0x14, 7, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F,
                 0x01, 0x00, 0x0F, 0x00, 0x00)}


def program(vga: StdVga, table: dict[str, tuple[int, ...] | int]) -> None:
    out(vga, r.MISC_WRITE, table["misc"])  # type: ignore[arg-type]
    for i, value in enumerate(table["sr"]):  # type: ignore[arg-type]
        out(vga, r.SEQ_INDEX, i)
        out(vga, r.SEQ_DATA, value)
    crtc(vga, r.CR_V_RETRACE_END, 0)
    for i, value in enumerate(table["cr"]):  # type: ignore[arg-type]
        crtc(vga, i, value)
    for i, value in enumerate(table["gr"]):  # type: ignore[arg-type]
        out(vga, r.GC_INDEX, i)
        out(vga, r.GC_DATA, value)
    vga.regs.read(r.INPUT_STATUS1_COLOR - r.PORT_BASE, 1)
    for i, value in enumerate(table["ar"]):  # type: ignore[arg-type]
        out(vga, r.AC_INDEX, i)
        out(vga, r.AC_INDEX, value)
    out(vga, r.AC_INDEX, r.AR_PALETTE_ADDRESS_SOURCE)


def load_dac(vga: StdVga, colours: list[tuple[int, int, int]]) -> None:
    out(vga, r.DAC_WRITE_INDEX, 0)
    for colour in colours:
        for component in colour:
            out(vga, r.DAC_DATA, component)


def six(value: int) -> int:
    return (value << 2) | (value & 1) * 3


def test_mode_13h_is_320x200_chain4_doubled_to_640x400() -> None:
    memory = bytearray(1 * MiB)
    vga = StdVga(memoryview(memory))
    program(vga, MODE13)
    dac = [((i * 5) & 63, (i * 11) & 63, (i * 17) & 63) for i in range(256)]
    load_dac(vga, dac)
    rng = np.random.default_rng(13)
    picture = rng.integers(0, 256, (200, 320), dtype=np.uint8)
    for y in range(0, 200, 7):
        for x in range(0, 320, 4):
            vga.window.write(y * 320 + x, 4, int.from_bytes(picture[y, x:x + 4].tobytes(),
                                                            "little"))
    rendered, _ = render(vga, np.frombuffer(memory, np.uint8))
    assert rendered.shape == (400, 640, 3)
    for y in range(0, 200, 7):
        for x in range(0, 320, 13):
            colour = tuple(six(c) for c in dac[picture[y, x]])
            for dy in (0, 1):
                for dx in (0, 1):
                    assert tuple(rendered[2 * y + dy, 2 * x + dx]) == colour
    assert vga.legacy_alias() == (0xA0000, 0, 0x10000)


def test_mode_12h_planar_16_colours() -> None:
    memory = bytearray(1 * MiB)
    vga = StdVga(memoryview(memory))
    program(vga, MODE12)
    load_dac(vga, [ega_palette_entry(i) for i in range(64)])
    out(vga, r.GC_INDEX, r.GR_MODE)
    out(vga, r.GC_DATA, 0x02)  # write mode 2: the byte's low nibble is the colour
    colours = {}
    for y in (0, 1, 240, 479):
        for x in range(0, 640, 37):
            colour = (x // 37 + y) % 16
            colours[(y, x)] = colour
            out(vga, r.GC_INDEX, r.GR_BIT_MASK)
            out(vga, r.GC_DATA, 0x80 >> (x % 8))
            vga.window.read(y * 80 + x // 8, 1)  # load the latches (keep neighbours)
            vga.window.write(y * 80 + x // 8, 1, colour)
    rendered, _ = render(vga, np.frombuffer(memory, np.uint8))
    assert rendered.shape == (480, 640, 3)
    ar = MODE12["ar"]
    for (y, x), colour in colours.items():
        red, green, blue = ega_palette_entry(ar[colour])  # type: ignore[index]
        assert tuple(rendered[y, x]) == (SIX_TO_EIGHT[red], SIX_TO_EIGHT[green],
                                         SIX_TO_EIGHT[blue])
    assert not rendered[2:240].any()


def vbe_vga(size: int = 4 * MiB) -> tuple[StdVga, bytearray]:
    memory = bytearray(size)
    vga = StdVga(memoryview(memory))
    set_text_mode3(vga, None)
    return vga, memory


def setreg(vga: StdVga, index: int, value: int) -> None:
    vga.vbe.write(0, 4, value << 16 | index)


def expected_pixel(memory: bytearray, at: int, bpp: int,
                   dac: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    if bpp == 8:
        return tuple(six(c) for c in dac[memory[at]])  # type: ignore[return-value]
    if bpp in (15, 16):
        word = memory[at] | memory[at + 1] << 8
        if bpp == 15:
            return ((word >> 10 & 31) << 3, (word >> 5 & 31) << 3, (word & 31) << 3)
        return ((word >> 11 & 31) << 3, (word >> 5 & 63) << 2, (word & 31) << 3)
    return memory[at + 2], memory[at + 1], memory[at]


@pytest.mark.parametrize("bpp", [8, 15, 16, 24, 32])
def test_vbe_modes_with_virtual_width_and_offsets(bpp: int) -> None:
    vga, memory = vbe_vga()
    dac = [((i * 3) & 63, (i * 7) & 63, (i * 13) & 63) for i in range(256)]
    load_dac(vga, dac)
    setreg(vga, v.INDEX_XRES, 96)
    setreg(vga, v.INDEX_YRES, 40)
    setreg(vga, v.INDEX_BPP, bpp)
    setreg(vga, v.INDEX_ENABLE, v.ENABLED | v.LFB_ENABLED)
    setreg(vga, v.INDEX_VIRT_WIDTH, 160)
    setreg(vga, v.INDEX_X_OFFSET, 16)
    setreg(vga, v.INDEX_Y_OFFSET, 5)
    rng = np.random.default_rng(bpp)
    memory[:1 << 20] = rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    rendered, _ = render(vga, np.frombuffer(memory, np.uint8))
    assert rendered.shape == (40, 96, 3)
    depth = (bpp + 7) // 8
    line = 160 * depth
    for y in range(40):
        for x in range(96):
            at = (y + 5) * line + (x + 16) * depth
            assert tuple(rendered[y, x]) == expected_pixel(memory, at, bpp, dac), (y, x)


def test_vbe_dirty_pages_redraw_only_their_scanlines() -> None:
    vga, memory = vbe_vga(16 * MiB)
    setreg(vga, v.INDEX_XRES, 1024)
    setreg(vga, v.INDEX_YRES, 768)
    setreg(vga, v.INDEX_BPP, 32)
    setreg(vga, v.INDEX_ENABLE, v.ENABLED | v.LFB_ENABLED)
    vram = np.frombuffer(memory, np.uint8)
    renderer = VgaRenderer()
    first, rows = render(vga, vram, renderer, None)
    assert rows is None  # a new size
    pages = np.zeros(len(memory) >> 12, bool)
    assert render(vga, vram, renderer, pages)[1] == (0, 0)
    memory[10 * 4096 + 8:10 * 4096 + 12] = bytes((1, 2, 3, 0))  # line 10, pixel 2
    memory[200 * 4096] = 0xFF                                    # not marked: not redrawn
    pages[10] = True
    pixels, rows = render(vga, vram, renderer, pages)
    assert rows == (10, 11)
    assert tuple(pixels[10, 2]) == (3, 2, 1) and pixels[200, 0, 2] == 0


def test_a_palette_change_redraws_every_line() -> None:
    vga, memory = vbe_vga()
    setreg(vga, v.INDEX_XRES, 64)
    setreg(vga, v.INDEX_YRES, 8)
    setreg(vga, v.INDEX_BPP, 8)
    setreg(vga, v.INDEX_ENABLE, v.ENABLED | v.LFB_ENABLED)
    vram = np.frombuffer(memory, np.uint8)
    renderer = VgaRenderer()
    render(vga, vram, renderer, None)
    load_dac(vga, [(63, 0, 0)])
    pixels, rows = render(vga, vram, renderer, np.zeros(len(memory) >> 12, bool))
    assert rows == (0, 8) and tuple(pixels[3, 3]) == (255, 0, 0)


def test_crtc_start_past_the_end_wraps_inside_the_planes() -> None:
    memory = bytearray(1 * MiB)
    vga = StdVga(memoryview(memory))
    program(vga, MODE13)
    crtc(vga, r.CR_START_HI, 0xFF)
    crtc(vga, r.CR_START_LO, 0xF0)
    rendered, _ = render(vga, np.frombuffer(memory, np.uint8))
    assert rendered.shape == (400, 640, 3)


def test_a_vbe_frame_larger_than_the_renderer_draws_is_blank_not_allocated() -> None:
    """16000 x 2097 at 8 bpp fits 32 MiB of video memory; past MAX_FRAME_PIXELS the screen
    shows black at the previous size rather than a picture of 33 million pixels."""
    vga, memory = vbe_vga(32 * MiB)
    vram = np.frombuffer(memory, np.uint8)
    renderer = VgaRenderer()
    before, _ = render(vga, vram, renderer)
    setreg(vga, v.INDEX_XRES, 16000)
    setreg(vga, v.INDEX_YRES, 12000)
    setreg(vga, v.INDEX_BPP, 8)
    setreg(vga, v.INDEX_ENABLE, v.ENABLED | v.LFB_ENABLED | v.NOCLEARMEM)
    assert (vga.vbe.xres, vga.vbe.yres) == (16000, 32 * MiB // 16000)
    memory[:4096] = b"\x01" * 4096
    pixels, rows = render(vga, vram, renderer)
    assert pixels.shape == before.shape and not pixels.any()
    assert rows == (0, before.shape[0])
