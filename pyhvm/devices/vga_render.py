"""Rendering the VGA's screen into an RGB picture, with numpy (no per-pixel Python).

`VgaRenderer.render(regs, vram, dirty)` keeps the previous picture and converts only what
changed: in graphics modes the scanlines whose bytes lie in dirty 4 KiB pages of video
memory; in text mode the character rows whose cells, cursor or blink phase changed. A mode,
size, palette or font change redraws everything. It returns the picture (its own array:
copy it before handing it on) and the rows that changed (None when the size changed).

What is drawn, as the chip shows it (IBM VGA Technical Reference; the conversions match
QEMU's std VGA so screenshots of the same guest compare equal):

- Blank: attribute controller palette address source (AR index bit 5) clear: black.
- Text (GR6 bit 0 clear): (CR1 + 1) columns, (vertical display end + 1) / (CR9 max scan
  line + 1) rows; 9-dot cells unless SR1 bit 0 (8-dot), doubled with SR1 bit 3; character k
  and its attribute at video memory 4k and 4k + 1 from the CRTC start address; glyphs from
  plane 2, 32 bytes each, in the 8 KiB map SR3 selects by attribute bit 3; the ninth column
  repeats the eighth for C0h-DFh when AR10 bit 2 says so (QEMU does it for B0h-DFh); with
  AR10 bit 3 attribute bit 7 blinks (else it brightens the background); the cursor (CR0A
  bit 5 clear) fills scan lines CR0A..CR0B of the cell at the cursor address in the
  foreground colour, when the cursor phase is on.
- Graphics: planar 16 colours (GR5 shift 0; modes 0Dh-12h), CGA 4 colours (shift 1), 256
  colours with pixel doubling (shift 2, mode 13h), and the VBE modes 8 (palette), 15, 16,
  24 and 32 bpp with the virtual width and X/Y offset; CRTC offset, start address, line
  compare, scan doubling and the CGA addressing bits of CR17 as QEMU applies them.
- Colours: the attribute palette (with AR10 bit 7 and the colour select register) picks a
  DAC entry (masked by the PEL mask); a 6-bit DAC value v becomes (v << 2) | (v & 1) * 3;
  15/16-bit pixels are shifted up (low bits zero); 24/32-bit pixels are B, G, R in memory.

Not drawn: the overscan border, horizontal pixel panning, the underline attribute
(monochrome), the text mode's line compare split at a pixel row inside a character row
(it splits at character row granularity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import vga_regs as r
from .vga_memory import PAGE_SHIFT, VGA_PLANES_SIZE

MAX_FRAME_PIXELS = 4096 * 4096   # a larger mode (possible with big vgamem) shows blank
MAX_TEXT_CELLS = 160 * 100
DEFAULT_SIZE = (400, 720)        # (height, width) of the picture before any mode is drawn
LINE_GRAPHICS_FIRST, LINE_GRAPHICS_LAST = 0xC0, 0xDF


@dataclass(frozen=True)
class ScreenRegs:
    """What the renderer reads of the adapter: copies, so it can run outside the device lock."""

    sr: bytes
    gr: bytes
    cr: bytes
    ar: bytes
    ar_index: int
    dac: bytes
    pel_mask: int
    dac_8bit: bool
    vbe_enabled: bool = False
    vbe_bpp: int = 0
    vbe_xres: int = 0
    vbe_yres: int = 0
    vbe_line_offset: int = 0
    vbe_start: int = 0


def screen_regs(vga: "object") -> ScreenRegs:
    """Snapshot a `StdVga` (typed loosely to keep this module free of the device class)."""
    regs = vga.regs  # type: ignore[attr-defined]
    vbe = vga.vbe  # type: ignore[attr-defined]
    return ScreenRegs(bytes(regs.sr_eff), bytes(regs.gr_eff), bytes(regs.cr_eff[:0x19]),
                      bytes(regs.ar), regs.ar_index, bytes(regs.dac), regs.pel_mask,
                      regs.dac_8bit, vbe.enabled, vbe.bpp, vbe.xres, vbe.yres,
                      vbe.line_offset, vbe.start)


def dac_colors(regs: ScreenRegs) -> np.ndarray:
    """The 256 DAC entries as 8-bit RGB, shape (256, 3)."""
    dac = np.frombuffer(regs.dac, np.uint8).reshape(256, 3)
    if regs.dac_8bit:
        return dac.copy()
    six = dac & 0x3F
    return ((six << 2) | ((six & 1) * 3)).astype(np.uint8)


def palette16(regs: ScreenRegs, dac: np.ndarray) -> np.ndarray:
    """The 16 attribute colours as RGB, shape (16, 3)."""
    ar = np.frombuffer(regs.ar[:16], np.uint8).astype(np.int64)
    select = regs.ar[r.AR_COLOR_SELECT]
    if regs.ar[r.AR_MODE] & r.AR10_P54_SELECT:
        index = ((select & 0xF) << 4) | (ar & 0xF)
    else:
        index = ((select & 0xC) << 4) | (ar & 0x3F)
    return dac[index & regs.pel_mask]


def palette256(regs: ScreenRegs, dac: np.ndarray) -> np.ndarray:
    return dac[np.arange(256) & regs.pel_mask]


def vertical_display_end(cr: bytes) -> int:
    return cr[r.CR_V_DISPLAY_END] | ((cr[r.CR_OVERFLOW] & 0x02) << 7) | \
        ((cr[r.CR_OVERFLOW] & 0x40) << 3)


def line_compare(cr: bytes) -> int:
    return cr[r.CR_LINE_COMPARE] | ((cr[r.CR_OVERFLOW] & 0x10) << 4) | \
        ((cr[r.CR_MAX_SCAN] & 0x40) << 3)


class VgaRenderer:
    """Turns adapter state into pictures; keeps the last one to redraw only changes."""

    def __init__(self) -> None:
        self.pixels = np.zeros(DEFAULT_SIZE + (3,), np.uint8)
        self._mode = "none"
        self._key: object = None
        self._text: dict[str, object] = {}
        self._line_cache: tuple[object, np.ndarray] | None = None

    def render(self, regs: ScreenRegs, vram: np.ndarray, dirty: np.ndarray | None, *,
               cursor_on: bool = True, blink_on: bool = True
               ) -> tuple[np.ndarray, tuple[int, int] | None]:
        """Redraw what changed. `dirty`: one bool per 4 KiB page of `vram` written since the
        last call, or None if unknown (everything is redrawn)."""
        if not regs.ar_index & r.AR_PALETTE_ADDRESS_SOURCE:
            return self._blank()
        if not regs.gr[r.GR_MISC] & r.GR6_GRAPHICS:
            return self._render_text(regs, vram, cursor_on, blink_on)
        return self._render_graphics(regs, vram, dirty)

    # -- helpers ------------------------------------------------------------------------------

    def _resize(self, height: int, width: int) -> bool:
        if self.pixels.shape[:2] == (height, width):
            return False
        self.pixels = np.zeros((height, width, 3), np.uint8)
        return True

    def _blank(self) -> tuple[np.ndarray, tuple[int, int] | None]:
        if self._mode == "blank":
            return self.pixels, (0, 0)
        self._mode, self._key, self._text = "blank", None, {}
        self.pixels = np.zeros_like(self.pixels)
        return self.pixels, (0, self.pixels.shape[0])

    @staticmethod
    def _row_span(changed: np.ndarray, scale: int) -> tuple[int, int]:
        rows = np.flatnonzero(changed)
        if rows.size == 0:
            return (0, 0)
        return int(rows[0]) * scale, (int(rows[-1]) + 1) * scale

    # -- text -----------------------------------------------------------------------------------

    def _render_text(self, regs: ScreenRegs, vram: np.ndarray, cursor_on: bool,
                     blink_on: bool) -> tuple[np.ndarray, tuple[int, int] | None]:
        sr, cr, ar = regs.sr, regs.cr, regs.ar
        cheight = (cr[r.CR_MAX_SCAN] & 0x1F) + 1
        cwidth = 8 if sr[r.SR_CLOCKING] & r.SR1_8DOT else 9
        doubled = bool(sr[r.SR_CLOCKING] & r.SR1_DOT_CLOCK_DIV2)
        cols = cr[r.CR_H_DISPLAY_END] + 1
        rows = (vertical_display_end(cr) + 1) // cheight
        if rows * cols <= 1 or rows * cols > MAX_TEXT_CELLS:
            return self._blank()
        cells = self._text_cells(regs, vram, rows, cols, cheight)
        chars, attrs = vram[cells], vram[cells + 1]
        fonts = self._fonts(regs, vram, cheight)
        colors = palette16(regs, dac_colors(regs))
        blink_enabled = bool(ar[r.AR_MODE] & r.AR10_BLINK)
        line_graphics = bool(ar[r.AR_MODE] & r.AR10_LINE_GRAPHICS)
        cursor = self._cursor(regs, cells, cheight, cursor_on)
        key = ("text", rows, cols, cheight, cwidth, doubled, line_graphics, blink_enabled,
               colors.tobytes(), fonts.tobytes())
        height, width = rows * cheight, cols * cwidth * (2 if doubled else 1)
        resized = self._resize(height, width)
        prev = self._text
        if self._mode != "text" or key != self._key or resized:
            changed = np.ones(rows, bool)
        else:
            changed = np.any((chars != prev["chars"]) | (attrs != prev["attrs"]), axis=1)
            if cursor != prev["cursor"]:
                for where in (cursor, prev["cursor"]):
                    if where is not None:
                        changed[where[0]] = True
            if blink_enabled and blink_on != prev["blink_on"]:
                changed |= np.any(attrs & 0x80, axis=1)
        self._mode, self._key = "text", key
        self._text = {"chars": chars, "attrs": attrs, "cursor": cursor, "blink_on": blink_on}
        if changed.any():
            glyphs = self._glyph_masks(fonts, cwidth, line_graphics, doubled)
            sel = np.flatnonzero(changed)
            self._draw_text_rows(sel, chars[sel], attrs[sel], glyphs, colors, cheight,
                                 blink_enabled, blink_on, cursor)
        span = self._row_span(changed, cheight)
        return self.pixels, None if resized else span

    @staticmethod
    def _text_cells(regs: ScreenRegs, vram: np.ndarray, rows: int, cols: int,
                    cheight: int) -> np.ndarray:
        """Video memory index of each cell's character, shape (rows, cols)."""
        cr = regs.cr
        offset = ((cr[r.CR_START_HI] << 8) | cr[r.CR_START_LO]) * 4
        line_offset = cr[r.CR_OFFSET] * 8
        compare = line_compare(cr)
        bases = np.empty(rows, np.int64)
        for row in range(rows):
            bases[row] = offset
            offset += line_offset
            if row * cheight < compare <= (row + 1) * cheight:
                offset = 0  # the split screen restarts at address 0
        return (bases[:, None] + 4 * np.arange(cols)) % VGA_PLANES_SIZE

    @staticmethod
    def _fonts(regs: ScreenRegs, vram: np.ndarray, cheight: int) -> np.ndarray:
        """Glyph rows from plane 2, shape (2, 256, cheight): [0] for attribute bit 3 clear
        (character map B), [1] for set (map A)."""
        select = regs.sr[r.SR_CHAR_MAP]
        map_b = ((select >> 4) & 1) | ((select << 1) & 6)
        map_a = ((select >> 5) & 1) | ((select >> 1) & 6)
        maps = np.array([map_b, map_a]) * 8192
        offsets = maps[:, None, None] + 32 * np.arange(256)[None, :, None] + \
            np.arange(cheight)[None, None, :]
        return vram[(offsets * 4 + 2) % VGA_PLANES_SIZE]

    @staticmethod
    def _glyph_masks(fonts: np.ndarray, cwidth: int, line_graphics: bool,
                     doubled: bool) -> np.ndarray:
        """Pixel masks, shape (2, 256, cheight, cell width)."""
        bits = np.unpackbits(fonts[..., None], axis=-1).astype(bool)
        if cwidth == 9:
            ninth = np.zeros(bits.shape[:-1] + (1,), bool)
            if line_graphics:
                codes = slice(LINE_GRAPHICS_FIRST, LINE_GRAPHICS_LAST + 1)
                ninth[:, codes, :, 0] = bits[:, codes, :, 7]
            bits = np.concatenate([bits, ninth], axis=-1)
        if doubled:
            bits = np.repeat(bits, 2, axis=-1)
        return bits

    @staticmethod
    def _cursor(regs: ScreenRegs, cells: np.ndarray, cheight: int,
                cursor_on: bool) -> tuple[int, int, int, int] | None:
        """(row, column, first line, last line) of the visible cursor, or None."""
        cr = regs.cr
        start = cr[r.CR_CURSOR_START]
        first, last = start & 0x1F, min(cr[r.CR_CURSOR_END] & 0x1F, cheight - 1)
        if not cursor_on or start & r.CR0A_CURSOR_OFF or last < first or first >= cheight:
            return None
        address = (((cr[r.CR_CURSOR_HI] << 8) | cr[r.CR_CURSOR_LO]) * 4) % VGA_PLANES_SIZE
        where = np.argwhere(cells == address)
        if where.size == 0:
            return None
        return int(where[0][0]), int(where[0][1]), first, last

    def _draw_text_rows(self, rows: np.ndarray, chars: np.ndarray, attrs: np.ndarray,
                        glyphs: np.ndarray, colors: np.ndarray, cheight: int,
                        blink_enabled: bool, blink_on: bool,
                        cursor: tuple[int, int, int, int] | None) -> None:
        fg = attrs & 0x0F
        if blink_enabled:
            bg = (attrs >> 4) & 0x07
            if not blink_on:
                fg = np.where(attrs & 0x80, bg, fg)
        else:
            bg = attrs >> 4
        mask = glyphs[(attrs >> 3) & 1, chars]          # (n, cols, cheight, cell width)
        index = np.where(mask, fg[:, :, None, None], bg[:, :, None, None]).astype(np.uint8)
        if cursor is not None:
            hit = np.flatnonzero(rows == cursor[0])
            if hit.size:
                row, col, first, last = hit[0], cursor[1], cursor[2], cursor[3]
                index[row, col, first:last + 1, :] = fg[row, col]
        n, cols, _, cell = index.shape
        picture = colors[index.transpose(0, 2, 1, 3).reshape(n, cheight, cols * cell)]
        target = self.pixels.reshape(-1, cheight, cols * cell, 3)
        target[rows] = picture

    # -- graphics -------------------------------------------------------------------------------

    def _render_graphics(self, regs: ScreenRegs, vram: np.ndarray, dirty: np.ndarray | None
                         ) -> tuple[np.ndarray, tuple[int, int] | None]:
        sr, gr, cr, ar = regs.sr, regs.gr, regs.cr, regs.ar
        shift = (gr[r.GR_MODE] >> r.GR5_SHIFT_SHIFT) & 3
        halved = bool(sr[r.SR_CLOCKING] & r.SR1_DOT_CLOCK_DIV2)
        if regs.vbe_enabled:
            width, height = regs.vbe_xres, regs.vbe_yres
            line_offset, start = regs.vbe_line_offset, regs.vbe_start
            compare, wrap, bpp = -1, len(vram), regs.vbe_bpp
        else:
            width, height = (cr[r.CR_H_DISPLAY_END] + 1) * 8, vertical_display_end(cr) + 1
            line_offset = cr[r.CR_OFFSET] * 8
            start = ((cr[r.CR_START_HI] << 8) | cr[r.CR_START_LO]) * 4
            compare, wrap, bpp = line_compare(cr), VGA_PLANES_SIZE, 0
        double_scan = cr[r.CR_MAX_SCAN] >> 7
        if shift == 1:
            multi_scan = double_scan
        else:
            multi_scan = (((cr[r.CR_MAX_SCAN] & 0x1F) + 1) << double_scan) - 1
        if shift == 0:
            kind, bits = "planar", 4
        elif shift == 1:
            kind, bits = "cga", 4
        elif bpp == 0:
            kind, bits = "pal8d2", 4
        else:
            kind, bits = {8: ("pal8", 8), 15: ("rgb15", 16), 16: ("rgb16", 16),
                          24: ("rgb24", 24), 32: ("rgb32", 32)}.get(bpp, ("pal8", 8))
        display_width = width * 2 if halved and kind in ("planar", "cga") else width
        if width <= 0 or height <= 0 or display_width * height > MAX_FRAME_PIXELS:
            return self._blank()
        line_bytes = (width * bits + 7) // 8
        dac = dac_colors(regs)
        colors = palette256(regs, dac) if kind in ("pal8", "pal8d2") else palette16(regs, dac)
        plane_enable = ar[r.AR_PLANE_ENABLE] & 0xF
        key = ("graphics", kind, width, height, display_width, line_offset, start, compare,
               multi_scan, cr[r.CR_MODE] & 0x43, plane_enable, colors.tobytes(), len(vram))
        addresses = self._line_addresses(regs.vbe_enabled, start, line_offset, height,
                                         compare, multi_scan, cr[r.CR_MODE])
        resized = self._resize(height, display_width)
        if self._mode != "graphics" or key != self._key or resized or dirty is None:
            changed = np.ones(height, bool)
        else:
            changed = self._dirty_lines(addresses, line_bytes, wrap, dirty)
        self._mode, self._key, self._text = "graphics", key, {}
        lines = np.flatnonzero(changed)
        if lines.size:
            data = self._gather(vram, addresses[lines], line_bytes, wrap)
            self.pixels[lines] = _CONVERTERS[kind](data, width, colors, plane_enable, halved)
        span = self._row_span(changed, 1)
        return self.pixels, None if resized else span

    def _line_addresses(self, vbe: bool, start: int, line_offset: int, height: int,
                        compare: int, multi_scan: int, crtc_mode: int) -> np.ndarray:
        """Video memory address of each displayed line's first byte, as the CRTC counts."""
        cache_key = (vbe, start, line_offset, height, compare, multi_scan, crtc_mode)
        if self._line_cache is not None and self._line_cache[0] == cache_key:
            return self._line_cache[1]
        if vbe:
            addresses = start + line_offset * np.arange(height, dtype=np.int64)
        else:
            addresses = np.empty(height, np.int64)
            base, counted, run = start, 0, multi_scan
            skip = (crtc_mode & 3) ^ 3
            for y in range(height):
                address = base
                if not crtc_mode & 1:  # CGA: alternate lines in the second 8 KiB bank
                    bit = 14 + ((crtc_mode >> 6) & 1)
                    address = (address & ~(1 << bit)) | ((counted & 1) << bit)
                if not crtc_mode & 2:  # Hercules: lines 2-3 of 4 in the upper 32 KiB
                    address = (address & ~0x8000) | ((counted & 2) << 14)
                addresses[y] = address
                if run == 0:
                    if counted & skip == skip:
                        base += line_offset
                    counted += 1
                    run = multi_scan
                else:
                    run -= 1
                if y == compare:
                    base = 0
        self._line_cache = (cache_key, addresses)
        return addresses

    @staticmethod
    def _dirty_lines(addresses: np.ndarray, line_bytes: int, wrap: int,
                     dirty: np.ndarray) -> np.ndarray:
        """Which lines touch a dirty page (a line that wraps around counts as dirty)."""
        pages = dirty.size
        start = addresses % wrap
        end = start + line_bytes - 1
        wraps = end >= min(wrap, pages << PAGE_SHIFT)
        first = np.minimum(start >> PAGE_SHIFT, pages - 1)
        last = np.minimum(end >> PAGE_SHIFT, pages - 1)
        prefix = np.concatenate(([0], np.cumsum(dirty, dtype=np.int64)))
        return (prefix[last + 1] - prefix[first] > 0) | wraps

    @staticmethod
    def _gather(vram: np.ndarray, addresses: np.ndarray, line_bytes: int,
                wrap: int) -> np.ndarray:
        """The bytes of the given lines, shape (lines, line_bytes); never outside `vram`."""
        limit = min(wrap, vram.size)
        start = addresses % wrap
        if start.size and int(start.max()) + line_bytes <= limit:
            step = np.diff(start)
            if start.size > 1 and np.all(step == step[0]) and step[0] > 0:
                view = np.lib.stride_tricks.as_strided(
                    vram[int(start[0]):], shape=(start.size, line_bytes),
                    strides=(int(step[0]), 1), writeable=False)
                return view.copy()
            return np.stack([vram[a:a + line_bytes] for a in start.tolist()])
        index = (start[:, None] + np.arange(line_bytes)) % wrap
        return vram[index % vram.size]


# -- scanline converters: (lines, bytes) -> (lines, display width, 3) ------------------------------

def _planar(data: np.ndarray, width: int, colors: np.ndarray, plane_enable: int,
            halved: bool) -> np.ndarray:
    n = data.shape[0]
    planes = data[:, :width // 2].reshape(n, width // 8, 4)
    enable = np.array([0xFF if plane_enable >> p & 1 else 0 for p in range(4)], np.uint8)
    bits = np.unpackbits((planes & enable)[..., None], axis=-1)  # (n, groups, 4, 8)
    index = bits[:, :, 0] | (bits[:, :, 1] << 1) | (bits[:, :, 2] << 2) | (bits[:, :, 3] << 3)
    picture = colors[index.reshape(n, width)]
    return np.repeat(picture, 2, axis=1) if halved else picture


def _cga(data: np.ndarray, width: int, colors: np.ndarray, plane_enable: int,
         halved: bool) -> np.ndarray:
    n = data.shape[0]
    planes = data[:, :width // 2].reshape(n, width // 8, 4)
    enable = np.array([0xFF if plane_enable >> p & 1 else 0 for p in range(4)], np.uint8)
    planes = planes & enable
    shifts = np.array([6, 4, 2, 0], np.uint8)
    low = (planes[:, :, [0, 1], None] >> shifts) & 3     # (n, groups, 2, 4)
    high = (planes[:, :, [2, 3], None] >> shifts) & 3
    index = (low | (high << 2)).reshape(n, width)
    picture = colors[index]
    return np.repeat(picture, 2, axis=1) if halved else picture


def _pal8d2(data: np.ndarray, width: int, colors: np.ndarray, plane_enable: int,
            halved: bool) -> np.ndarray:
    return np.repeat(colors[data[:, :width // 2]], 2, axis=1)


def _pal8(data: np.ndarray, width: int, colors: np.ndarray, plane_enable: int,
          halved: bool) -> np.ndarray:
    return colors[data[:, :width]]


def _rgb1x(data: np.ndarray, width: int, green_bits: int) -> np.ndarray:
    value = data[:, :2 * width].view("<u2").astype(np.uint16)
    out = np.empty(value.shape + (3,), np.uint8)
    if green_bits == 5:
        out[..., 0] = (value >> 7) & 0xF8
        out[..., 1] = (value >> 2) & 0xF8
    else:
        out[..., 0] = (value >> 8) & 0xF8
        out[..., 1] = (value >> 3) & 0xFC
    out[..., 2] = (value << 3) & 0xF8
    return out


def _rgb15(data: np.ndarray, width: int, colors: np.ndarray, plane_enable: int,
           halved: bool) -> np.ndarray:
    return _rgb1x(np.ascontiguousarray(data), width, 5)


def _rgb16(data: np.ndarray, width: int, colors: np.ndarray, plane_enable: int,
           halved: bool) -> np.ndarray:
    return _rgb1x(np.ascontiguousarray(data), width, 6)


def _rgb24(data: np.ndarray, width: int, colors: np.ndarray, plane_enable: int,
           halved: bool) -> np.ndarray:
    return data[:, :3 * width].reshape(data.shape[0], width, 3)[..., ::-1]


def _rgb32(data: np.ndarray, width: int, colors: np.ndarray, plane_enable: int,
           halved: bool) -> np.ndarray:
    return data[:, :4 * width].reshape(data.shape[0], width, 4)[..., 2::-1]


_CONVERTERS = {"planar": _planar, "cga": _cga, "pal8d2": _pal8d2, "pal8": _pal8,
               "rgb15": _rgb15, "rgb16": _rgb16, "rgb24": _rgb24, "rgb32": _rgb32}
