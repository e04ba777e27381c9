"""What the guest kit's VGA/VBE scenarios put on screen, computed on the host.

The guest draws with C (guest/src/vbe_pattern.c, vga.c, scn_fb_*.c); this module redoes
the same integer arithmetic with numpy so a test can compare a screenshot with the
expected picture pixel for pixel, and the scenarios' checksums with the expected bytes.
Change both sides together.

The expected pictures widen colours as QEMU 7.2's screendump does: 6-bit DAC values as
``(v << 2) | (v & 1) * 3`` (its ``c6_to_8``), 16 bpp channels by repeating their top bits
(pixman), 15 bpp channels with zero low bits (its own line converter). How a display fills
the low bits is its choice, so comparisons (``channel_bits``, ``describe_difference``) look
at the bits the mode defines: 6 per channel for DAC colours, 5/6/5 or 5/5/5 for 16/15 bpp,
8 for 24/32 bpp. Every pixel is compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# --- the VBE test pattern (vbe_pattern.h) ---------------------------------------------

R_BORDER, R_RECT_A, R_RECT_B, R_LINE_C, R_BARS, R_GRADIENT, R_LIGHT, R_DARK = range(8)

BAR_RGB = np.array([(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0),
                    (255, 0, 255), (255, 0, 0), (0, 0, 255), (0, 0, 0)], dtype=np.uint8)
SOLID_RGB = {R_BORDER: (255, 255, 255), R_RECT_A: (255, 136, 0), R_RECT_B: (96, 32, 224),
             R_LINE_C: (0, 255, 128), R_LIGHT: (160, 160, 160), R_DARK: (48, 48, 48)}

PAL_CHECK_LIGHT, PAL_CHECK_DARK, PAL_RECT_A, PAL_RECT_B, PAL_LINE_C, PAL_BORDER = range(10, 16)
PAL_GRADIENT = 16
SOLID_INDEX = {R_BORDER: PAL_BORDER, R_RECT_A: PAL_RECT_A, R_RECT_B: PAL_RECT_B,
               R_LINE_C: PAL_LINE_C, R_LIGHT: PAL_CHECK_LIGHT, R_DARK: PAL_CHECK_DARK}
_PAL6_LOW = [(63, 63, 63), (63, 63, 0), (0, 63, 63), (0, 63, 0), (63, 0, 63), (63, 0, 0),
             (0, 0, 63), (0, 0, 0), (21, 21, 21), (42, 42, 42), (40, 40, 40), (12, 12, 12),
             (63, 34, 0), (24, 8, 56), (0, 63, 32), (63, 63, 63)]

BPPS = (8, 15, 16, 24, 32)


def bytes_per_pixel(bpp: int) -> int:
    if bpp not in BPPS:
        raise ValueError(f"unsupported depth {bpp}")
    return 2 if bpp == 15 else bpp // 8


def parse_mode(mode: str) -> tuple[int, int, int]:
    """"640x480x32" -> (640, 480, 32)."""
    w, h, bpp = (int(part) for part in mode.split("x"))
    return w, h, bpp


def palette6() -> np.ndarray:
    """The 256-entry palette the kit loads at 8 bpp: (256, 3) 6-bit values."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[:16] = _PAL6_LOW
    j = np.arange(240)
    pal[16:, 0] = j * 63 // 239
    pal[16:, 1] = 63 - j * 63 // 239
    pal[16:, 2] = (j * 5) & 63
    return pal


def dac6_to_8(values: np.ndarray | int) -> np.ndarray:
    """6-bit DAC values as the 8-bit ones QEMU displays."""
    v = np.asarray(values, dtype=np.uint16) & 0x3F
    return ((v << 2) | (v & 1) * 3).astype(np.uint8)


def pattern_regions(w: int, h: int) -> np.ndarray:
    """(h, w) region codes, the first rule that holds winning (see vbe_pattern.h)."""
    y, x = np.mgrid[0:h, 0:w]
    reg = np.where(((x >> 3) ^ (y >> 3)) & 1 == 1, R_LIGHT, R_DARK)
    reg[y < h // 2] = R_GRADIENT
    reg[y < h // 4] = R_BARS
    # The rectangles, lowest priority first, so that earlier rules overwrite later ones.
    reg[(x >= 3 * w // 4) & (x < 3 * w // 4 + 3) & (y >= h // 2) & (y + 8 < h)] = R_LINE_C
    reg[(x >= w // 2) & (x < w // 2 + w // 6) & (y >= 9 * h // 16) & (y < 13 * h // 16)] = \
        R_RECT_B
    reg[(x >= w // 8) & (x < w // 8 + w // 4) & (y >= 5 * h // 8) & (y < 7 * h // 8)] = \
        R_RECT_A
    reg[(x == 0) | (y == 0) | (x == w - 1) | (y == h - 1)] = R_BORDER
    return reg


def pattern_rgb(w: int, h: int) -> np.ndarray:
    """(h, w, 3) uint8: the pattern's colours for 15/16/24/32 bpp, before packing."""
    reg = pattern_regions(w, h)
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    for code, colour in SOLID_RGB.items():
        rgb[reg == code] = colour
    bars = reg == R_BARS
    rgb[bars] = BAR_RGB[(x * 8 // w)[bars]]
    grad = reg == R_GRADIENT
    rgb[grad, 0] = (x * 255 // (w - 1))[grad]
    rgb[grad, 1] = (y * 255 // (h - 1))[grad]
    rgb[grad, 2] = ((x ^ y) & 255)[grad]
    return rgb


def pattern_index(w: int, h: int) -> np.ndarray:
    """(h, w) uint8: the pattern's palette indices for 8 bpp."""
    reg = pattern_regions(w, h)
    x = np.broadcast_to(np.arange(w), (h, w))
    idx = np.zeros((h, w), dtype=np.uint8)
    for code, index in SOLID_INDEX.items():
        idx[reg == code] = index
    bars = reg == R_BARS
    idx[bars] = (x * 8 // w)[bars]
    grad = reg == R_GRADIENT
    idx[grad] = (PAL_GRADIENT + x * 240 // w)[grad]
    return idx


def pack_rgb(rgb: np.ndarray, bpp: int) -> np.ndarray:
    """(h, w, 3) colours as the guest stores them: (h, w * bytes per pixel) uint8."""
    h, w, _ = rgb.shape
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    if bpp == 16:
        v = ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3)
    elif bpp == 15:
        v = ((r >> 3) << 10) | ((g >> 3) << 5) | (b >> 3)
    elif bpp == 24:
        return np.stack([b, g, r], axis=-1).astype(np.uint8).reshape(h, w * 3)
    elif bpp == 32:
        return np.stack([b, g, r, np.zeros_like(r)], axis=-1).astype(np.uint8).reshape(h, w * 4)
    else:
        raise ValueError(f"pack_rgb: no direct colour at {bpp} bpp")
    return v.astype("<u2").view(np.uint8).reshape(h, w * 2)


def pattern_framebuffer(w: int, h: int, bpp: int) -> np.ndarray:
    """The bytes the vbe scenario writes: (h, w * bytes per pixel) uint8 (pitch = row)."""
    if bpp == 8:
        return pattern_index(w, h).copy()
    return pack_rgb(pattern_rgb(w, h), bpp)


def _widen(v: np.ndarray, bits: int, replicate: bool = True) -> np.ndarray:
    low = v >> (2 * bits - 8) if replicate else 0
    return ((v << (8 - bits)) | low).astype(np.uint8)


def channel_bits(bpp: int) -> tuple[int, int, int]:
    """Bits of R, G, B a mode defines: what a screenshot comparison should look at."""
    return {8: (6, 6, 6), 15: (5, 5, 5), 16: (5, 6, 5), 24: (8, 8, 8), 32: (8, 8, 8)}[bpp]


TEXT_BITS = (6, 6, 6)  # text colours come from the 6-bit DAC


def significant(img: np.ndarray, bits: tuple[int, int, int]) -> np.ndarray:
    """The top bits of each channel (the rest is a display's choice)."""
    return np.asarray(img, dtype=np.uint8) >> np.array([8 - b for b in bits], dtype=np.uint8)


def decode_framebuffer(fb: np.ndarray, w: int, h: int, bpp: int,
                       pal6: np.ndarray | None = None) -> np.ndarray:
    """Framebuffer bytes (h rows of at least w * bytes per pixel) as the RGB a display
    shows: (h, w, 3) uint8. 8 bpp looks colours up in pal6 (default: the kit's palette)."""
    bpx = bytes_per_pixel(bpp)
    rows = np.ascontiguousarray(np.asarray(fb, dtype=np.uint8)[:h, :w * bpx])
    if bpp == 8:
        pal = dac6_to_8(palette6() if pal6 is None else pal6)
        return pal[rows]
    if bpp in (24, 32):
        px = rows.reshape(h, w, bpx)
        return px[..., 2::-1].copy()
    v = rows.view("<u2").astype(np.uint16).reshape(h, w)
    if bpp == 16:
        r, g, b = v >> 11, (v >> 5) & 63, v & 31
        return np.stack([_widen(r, 5), _widen(g, 6), _widen(b, 5)], axis=-1)
    r, g, b = (v >> 10) & 31, (v >> 5) & 31, v & 31
    return np.stack([_widen(c, 5, replicate=False) for c in (r, g, b)], axis=-1)


def checksum(data: bytes | np.ndarray) -> int:
    """The kit's checksum: sum of 64-bit little-endian words w[i] * (2i + 1) mod 2^64."""
    raw = np.ascontiguousarray(np.frombuffer(bytes(data), dtype=np.uint8)
                               if isinstance(data, (bytes, bytearray)) else data).ravel()
    if raw.size % 8:
        raise ValueError("checksum: length is not a multiple of 8")
    words = raw.view("<u8")
    k = np.arange(1, 2 * words.size, 2, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return int(np.sum(words * k, dtype=np.uint64))


# --- the fb-* scenarios' final pictures --------------------------------------------------

def fill_byte(frame: int) -> int:
    return (0x11 + 0x1D * frame) & 0xFF


def fill_framebuffer(w: int, h: int, bpp: int, frames: int) -> np.ndarray:
    """fb-fill after `frames` frames: every byte is the last frame's."""
    return np.full((h, w * bytes_per_pixel(bpp)), fill_byte(frames - 1), dtype=np.uint8)


def blit_framebuffer(w: int, h: int, bpp: int, frames: int, rw: int | None = None,
                     rh: int | None = None) -> np.ndarray:
    """fb-blit after `frames` frames (either source: same picture)."""
    bpx = bytes_per_pixel(bpp)
    rw = w // 4 // 8 * 8 if rw is None else rw
    rh = h // 4 if rh is None else rh
    fb = pattern_framebuffer(w, h, bpp)
    src = fb[:rh, :rw * bpx].copy()
    x_steps, y_range = (w - 2 * rw) // 8 + 1, h - rh + 1
    for f in range(frames):
        x, y = rw + 8 * (f % x_steps), 4 * f % y_range
        fb[y:y + rh, x * bpx:(x + rw) * bpx] = src
    return fb


def scroll_framebuffer(w: int, h: int, bpp: int, frames: int, lines: int = 8) -> np.ndarray:
    """fb-scroll kind=pixel after `frames` frames."""
    fb = pattern_framebuffer(w, h, bpp)
    for f in range(frames):
        fb[:h - lines] = fb[lines:].copy()
        fb[h - lines:] = fill_byte(f)
    return fb


# --- text mode (vga.c vga_text_layout) ---------------------------------------------------

TEXT_COLS, TEXT_ROWS = 80, 25
CURSOR_ROW, CURSOR_COL = 20, 40
CURSOR_FIRST, CURSOR_LAST = 13, 14
# Attribute controller palette of mode 03h: text colour -> DAC entry.
AC_PALETTE = (0, 1, 2, 3, 4, 5, 0x14, 7, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F)


def _cell(ch: int, attr: int) -> int:
    return ch | attr << 8


def _put(cells: np.ndarray, row: int, col: int, text: str, attr: int) -> None:
    for i, ch in enumerate(text.encode("ascii")):
        cells[row, col + i] = _cell(ch, attr)


def text_layout() -> np.ndarray:
    """(25, 80) uint16 cells (character | attribute << 8) of the vga-text screen."""
    cells = np.full((TEXT_ROWS, TEXT_COLS), _cell(0x20, 0x07), dtype=np.uint16)
    _put(cells, 1, 2, "pyhvm guest kit vga-text", 0x1F)
    for b in range(8):
        for f in range(16):
            attr, col = b << 4 | f, 4 + 4 * f
            cells[4 + b, col:col + 3] = [_cell(0xDB, attr), _cell(ord("A") + f, attr),
                                         _cell(0x20, attr)]
    _put(cells, 14, 2, "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ",
         0x0E)
    cells[16, 2:78] = _cell(0xC4, 0x0A)
    _put(cells, 24, 0, "bottom-left", 0x4F)
    cells[24, 79] = _cell(ord("#"), 0x2F)
    cells[CURSOR_ROW, CURSOR_COL] = _cell(0x20, 0x1E)
    return cells


def text_bytes(cells: np.ndarray) -> bytes:
    return np.ascontiguousarray(cells, dtype="<u2").tobytes()


def scroll_text_cells(frames: int) -> np.ndarray:
    """fb-scroll kind=text after `frames` frames."""
    cells = text_layout()
    for f in range(frames):
        cells[:-1] = cells[1:].copy()
        cells[-1] = _cell(ord("a") + f % 26, 1 + f % 15)
    return cells


def ega_rgb6(i: int) -> tuple[int, int, int]:
    """DAC entry i of the EGA-compatible palette mode 03h loads (vga.c vga_ega_rgb6)."""
    return (((i >> 2) & 1) * 0x2A + ((i >> 5) & 1) * 0x15,
            ((i >> 1) & 1) * 0x2A + ((i >> 4) & 1) * 0x15,
            (i & 1) * 0x2A + ((i >> 3) & 1) * 0x15)


def text_colour(index: int) -> tuple[int, int, int]:
    """Text colour 0-15 as displayed (AC palette, then the DAC, then QEMU's widening)."""
    return tuple(int(c) for c in dac6_to_8(np.array(ega_rgb6(AC_PALETTE[index]))))


def _rgb(px: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) for v in px)


def check_text_screen(img: np.ndarray, cells: np.ndarray,
                      cursor: tuple[int, int] | None = (CURSOR_ROW, CURSOR_COL)) -> list[str]:
    """Compare a text-mode screenshot with the cells that should be on it, font aside.

    Colours are compared in their 6 DAC bits (TEXT_BITS). Every cell must show only its
    foreground and background colours, in the right places: spaces all background, 0xDB
    (full block) all foreground, other characters both (when the colours differ). With
    9-dot cells the ninth column repeats the eighth for line graphics (0xC0-0xDF) and is
    background for the rest. The cursor cell (a blank one; None when the cursor is off) may
    show the cursor (foreground on scan lines CURSOR_FIRST-CURSOR_LAST) or not: it blinks.
    Returns a list of problems, empty when the screen is right.
    """
    rows, cols = cells.shape
    h, w, _ = img.shape
    if h % rows or w % cols:
        return [f"screen {w}x{h} is not a grid of {cols}x{rows} cells"]
    ch_h, ch_w = h // rows, w // cols
    problems: list[str] = []
    for r in range(rows):
        for c in range(cols):
            ch, attr = int(cells[r, c]) & 0xFF, int(cells[r, c]) >> 8
            fg = np.array(text_colour(attr & 15), dtype=np.uint8)
            bg = np.array(text_colour((attr >> 4) & 7), dtype=np.uint8)
            block = img[r * ch_h:(r + 1) * ch_h, c * ch_w:(c + 1) * ch_w]
            top = significant(block, TEXT_BITS)
            is_fg = np.all(top == significant(fg, TEXT_BITS), axis=-1)
            is_bg = np.all(top == significant(bg, TEXT_BITS), axis=-1)
            where = f"cell ({r},{c}) char 0x{ch:02x} attr 0x{attr:02x}"
            if not np.all(is_fg | is_bg):
                odd = block[~(is_fg | is_bg)][0]
                problems.append(f"{where}: colour {_rgb(odd)} is neither fg {_rgb(fg)} nor "
                                f"bg {_rgb(bg)}")
                continue
            if (fg == bg).all():
                continue
            if (r, c) == cursor:
                lines = slice(CURSOR_FIRST, CURSOR_LAST + 1)
                rest = np.ones(ch_h, dtype=bool)
                rest[lines] = False
                shown = is_fg[lines]
                if not is_bg[rest].all() or not (shown.all() or (~shown).all()):
                    problems.append(f"{where}: not a blank cell with an underline cursor on "
                                    f"lines {CURSOR_FIRST}-{CURSOR_LAST}")
                continue
            if ch == 0x20 and not is_bg.all():
                problems.append(f"{where}: a space shows foreground pixels")
            elif ch == 0xDB and not is_fg.all():
                problems.append(f"{where}: the full block is not all foreground")
            elif ch not in (0x20, 0xDB) and not (is_fg.any() and is_bg.any()):
                problems.append(f"{where}: the glyph does not show both colours")
            if ch_w == 9 and ch != 0x20:
                ninth = is_fg[:, 8]
                if 0xC0 <= ch <= 0xDF and not np.array_equal(ninth, is_fg[:, 7]):
                    problems.append(f"{where}: the ninth column does not repeat the eighth")
                elif not 0xB0 <= ch <= 0xDF and ninth.any():
                    problems.append(f"{where}: the ninth column is not background")
    return problems


# --- what a scenario's RESULT line says should be on screen ------------------------------

@dataclass(frozen=True)
class ExpectedScreen:
    """The bytes a scenario leaves in video memory (as its checksum) and what they show:
    a picture for graphics modes, the cells for text mode (fonts differ between VGA BIOS
    and VMM, so text is checked cell by cell, see check_text_screen)."""

    checksum: int
    picture: np.ndarray | None = None
    bits: tuple[int, int, int] = (8, 8, 8)
    cells: np.ndarray | None = None
    cursor: tuple[int, int] | None = None


def expected_screen(scenario: str, fields: dict[str, str]) -> ExpectedScreen:
    """From a RESULT line's scenario and fields (mode=, frames=, w=, h=, lines=, kind=)."""
    if scenario == "vga-text" or (scenario == "fb-scroll" and fields.get("kind") == "text"):
        if scenario == "vga-text":
            cells, cursor = text_layout(), (CURSOR_ROW, CURSOR_COL)
        else:
            cells, cursor = scroll_text_cells(int(fields["frames"])), None
        return ExpectedScreen(checksum(text_bytes(cells)), cells=cells, cursor=cursor,
                              bits=TEXT_BITS)
    w, h, bpp = parse_mode(fields["mode"])
    if scenario == "vbe":
        fb = pattern_framebuffer(w, h, bpp)
    elif scenario == "fb-fill":
        fb = fill_framebuffer(w, h, bpp, int(fields["frames"]))
    elif scenario == "fb-blit":
        fb = blit_framebuffer(w, h, bpp, int(fields["frames"]), int(fields["w"]),
                              int(fields["h"]))
    elif scenario == "fb-scroll":
        fb = scroll_framebuffer(w, h, bpp, int(fields["frames"]), int(fields["lines"]))
    else:
        raise ValueError(f"no expected screen for scenario {scenario!r}")
    return ExpectedScreen(checksum(fb), picture=decode_framebuffer(fb, w, h, bpp),
                          bits=channel_bits(bpp))


# --- the screen scenarios, as every VMM with a std VGA must run them ----------------------

# (test id, scenario command line; hold=1 is added to take a screenshot). Small modes and
# few frames: the kit's CPL 0 code runs in KVM's emulator on the project's hosts (its
# drawing loops run at CPL 3).
SCREEN_CASES = [
    ("vga-text", "scenario=vga-text"),
    ("vbe-8", "scenario=vbe mode=640x480x8"),
    ("vbe-16", "scenario=vbe mode=640x480x16"),
    ("vbe-24", "scenario=vbe mode=640x480x24"),
    ("vbe-32", "scenario=vbe mode=640x480x32"),
    ("vbe-15-mmio", "scenario=vbe mode=800x600x15 io=mmio"),
    ("fb-fill", "scenario=fb-fill mode=640x480x32 ms=100"),
    ("fb-blit-fb", "scenario=fb-blit mode=640x480x16 frames=20 src=fb"),
    ("fb-blit-ram", "scenario=fb-blit mode=640x480x32 frames=20 src=ram"),
    ("fb-scroll-pixel", "scenario=fb-scroll mode=640x480x8 frames=20 lines=8"),
    ("fb-scroll-text", "scenario=fb-scroll kind=text frames=10"),
]


def scenario_of(cmdline: str) -> str:
    return cmdline_args(cmdline)["scenario"]


def cmdline_args(cmdline: str) -> dict[str, str]:
    return dict(tok.split("=", 1) for tok in cmdline.split() if "=" in tok)


def check_scenario_screen(run: Any, image: np.ndarray, cmdline: str) -> None:
    """What a screen scenario must show and say (run: a tests.guestkit.GuestRun): its
    RESULT says ok, its checksum matches the expected video memory, the screenshot shows
    the expected picture (or text cells), and the fields agree with its arguments.
    AssertionError says what is wrong."""
    name, args = scenario_of(cmdline), cmdline_args(cmdline)
    r = run.result(name)
    assert r["ok"] == "1", run.describe()
    expected = expected_screen(name, r.fields)
    assert r.num("sum") == expected.checksum, \
        f"video memory checksum {r['sum']} != expected {expected.checksum:#018x}"
    if expected.cells is not None:
        problems = check_text_screen(image, expected.cells, expected.cursor)
        assert not problems, "\n".join(problems[:20])
    else:
        assert expected.picture is not None
        diff = describe_difference(image, expected.picture, expected.bits)
        assert diff == "identical", diff

    if name == "vga-text":
        assert (r.num("cursor_row"), r.num("cursor_col")) == (CURSOR_ROW, CURSOR_COL), r
        assert (r.num("cursor_start"), r.num("cursor_end")) == (CURSOR_FIRST, CURSOR_LAST), r
        assert (r.num("char_width"), r.num("char_height")) == (9, 16), r
        assert image.shape == (25 * 16, 80 * 9, 3), image.shape     # mode 03h: 720x400
        return
    if "mode" in args:
        assert r["mode"] == args["mode"], r
    if name == "vbe":
        w, h, bpp = parse_mode(r["mode"])
        assert r.num("pitch") == w * bytes_per_pixel(bpp), r
        assert r.num("bytes") == r.num("pitch") * h, r
        assert r["dac_ok"] == "1" and r["io"] == args.get("io", "port"), r
        assert r.num("lfb") and 0xB0C0 <= r.num("id") <= 0xB0CF and r.num("vram_kb") >= 1024, r
        return
    assert r.num("frames") >= 1 and r.num("cycles") > 0, r
    if "frames" in args:
        assert r.num("frames") == int(args["frames"]), r
    assert float(r["mbps"]) > 0 and float(r["fps"]) > 0, r


# --- screenshots ---------------------------------------------------------------------------

def read_ppm(path: Path | str) -> np.ndarray:
    """A binary PPM (P6, maxval 255), as QEMU's screendump writes: (h, w, 3) uint8."""
    data = Path(path).read_bytes()
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while end < len(data) and not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    if fields[0] != b"P6" or fields[3] != b"255":
        raise ValueError(f"{path}: not a P6 PPM with maxval 255 ({fields[0]!r}, {fields[3]!r})")
    w, h = int(fields[1]), int(fields[2])
    pixels = data[pos + 1:pos + 1 + w * h * 3]
    if len(pixels) != w * h * 3:
        raise ValueError(f"{path}: {len(pixels)} bytes of pixels for {w}x{h}")
    return np.frombuffer(pixels, dtype=np.uint8).reshape(h, w, 3)


def describe_difference(got: np.ndarray, want: np.ndarray,
                        bits: tuple[int, int, int] = (8, 8, 8), limit: int = 5) -> str:
    """"identical" when every pixel agrees in the top `bits` of each channel, else where
    the pictures differ, in a few words (for assertion messages)."""
    if got.shape != want.shape:
        return f"size {got.shape[1]}x{got.shape[0]}, expected {want.shape[1]}x{want.shape[0]}"
    bad = np.argwhere(np.any(significant(got, bits) != significant(want, bits), axis=-1))
    if not len(bad):
        return "identical"
    samples = ", ".join(f"({x},{y}) {tuple(int(v) for v in got[y, x])} != "
                        f"{tuple(int(v) for v in want[y, x])}" for y, x in bad[:limit])
    return f"{len(bad)} pixels differ, e.g. {samples}"
