"""What a VGA BIOS leaves behind after POST: 80x25 colour text (mode 03h).

A kernel booted directly (no firmware) expects the screen a PC's BIOS hands over: mode 03h
programmed, the 16-colour palette in the DAC, the 8x16 font in plane 2, the text page
cleared to grey-on-black spaces, the cursor at the top left. `set_text_mode3` programs it
through the adapter's own ports, as a BIOS does. The register values are the standard mode
03h table of the IBM VGA (720x400, 9-dot characters, 16 scan lines, blink enabled).
"""

from __future__ import annotations

from . import vga_regs as r
from .vga import StdVga
from .vga_font import GLYPH_STRIDE

MISC = 0x67                   # colour I/O at 0x3Dx, 28 MHz clock, RAM enabled, -/+ sync
SEQUENCER = (0x03, 0x00, 0x03, 0x00, 0x02)
CRTC = (0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F, 0x00, 0x4F, 0x0D, 0x0E, 0x00, 0x00,
        0x00, 0x00, 0x9C, 0x8E, 0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF)
GRAPHICS = (0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0E, 0x00, 0xFF)
ATTRIBUTE = (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07,
             0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F, 0x0C, 0x00, 0x0F, 0x08, 0x00)
BLANK_CELL = (0x20, 0x07)     # space, light grey on black
TEXT_CELLS = 0x4000           # the whole 32 KiB text window at 0xB8000
FONT_GLYPHS = 256


def ega_palette_entry(index: int) -> tuple[int, int, int]:
    """The 64-colour EGA palette (6-bit DAC values): bits 2/1/0 give 2/3 of red/green/blue,
    bits 5/4/3 the remaining third (rgbRGB)."""
    def channel(primary: int, secondary: int) -> int:
        return 0x2A * ((index >> primary) & 1) + 0x15 * ((index >> secondary) & 1)
    return channel(2, 5), channel(1, 4), channel(0, 3)


def set_text_mode3(vga: StdVga, font: bytes | None) -> None:
    """Program mode 03h, load `font` (256 glyphs of GLYPH_STRIDE bytes, or None to leave
    plane 2 as it is) and clear the screen."""
    ports = vga.regs

    def out(port: int, value: int) -> None:
        ports.write(port - r.PORT_BASE, 1, value)

    out(r.MISC_WRITE, MISC)
    for index, value in enumerate(SEQUENCER):
        out(r.SEQ_INDEX, index)
        out(r.SEQ_DATA, value)
    out(r.CRTC_INDEX_COLOR, r.CR_V_RETRACE_END)
    out(r.CRTC_DATA_COLOR, 0x00)  # lift the CR0-CR7 protection first
    for index, value in enumerate(CRTC):
        out(r.CRTC_INDEX_COLOR, index)
        out(r.CRTC_DATA_COLOR, value)
    for index, value in enumerate(GRAPHICS):
        out(r.GC_INDEX, index)
        out(r.GC_DATA, value)
    ports.read(r.INPUT_STATUS1_COLOR - r.PORT_BASE, 1)  # attribute flip-flop to index
    for index, value in enumerate(ATTRIBUTE):
        out(r.AC_INDEX, index)
        out(r.AC_INDEX, value)
    out(r.AC_INDEX, r.AR_PALETTE_ADDRESS_SOURCE)  # screen on
    out(r.PEL_MASK, r.DEFAULT_PEL_MASK)
    out(r.DAC_WRITE_INDEX, 0)
    for index in range(r.DAC_ENTRIES):
        for component in ega_palette_entry(index) if index < 64 else (0, 0, 0):
            out(r.DAC_DATA, component)
    if font is not None:
        if len(font) != FONT_GLYPHS * GLYPH_STRIDE:
            raise ValueError(f"a VGA font table is {FONT_GLYPHS * GLYPH_STRIDE} bytes")
        vga.write_plane(2, 0, font)
    # Text cells: odd/even puts character k in plane 0 and its attribute in plane 1, at
    # offset k (see vga_memory.py's layout).
    for plane, byte in enumerate(BLANK_CELL):
        vga.write_plane(plane, 0, bytes([byte]) * TEXT_CELLS)
