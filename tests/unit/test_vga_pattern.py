"""tests/vga_pattern.py: the host's copy of what the guest kit's VGA/VBE scenarios draw.

The checksums pinned here are the ones the guest printed under QEMU 7.2 (`vbe`,
`vga-text`, `fb-fill`): they tie this module to guest/src/vbe_pattern.c and vga.c without
booting anything. If one side changes, change the other and these values together.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests import vga_pattern as vp


def test_checksum_weights_words_by_odd_numbers_and_wraps() -> None:
    data = np.array([1, 2, 3], dtype="<u8").view(np.uint8)
    assert vp.checksum(data) == 1 * 1 + 2 * 3 + 3 * 5
    assert vp.checksum(bytes(data)) == 22
    big = np.array([2**63, 2**63], dtype="<u8").view(np.uint8)
    assert vp.checksum(big) == (2**63 * 1 + 2**63 * 3) % 2**64
    with pytest.raises(ValueError):
        vp.checksum(b"1234567")


@pytest.mark.parametrize("mode, value", [
    ("640x480x32", 0xF4A7C5963028E575),
    ("640x480x8", 0x8CB8AAEFE1A8B2D0),
])
def test_pattern_checksum_matches_what_the_guest_wrote(mode: str, value: int) -> None:
    w, h, bpp = vp.parse_mode(mode)
    assert vp.checksum(vp.pattern_framebuffer(w, h, bpp)) == value


def test_text_and_fill_checksums_match_the_guest() -> None:
    assert vp.checksum(vp.text_bytes(vp.text_layout())) == 0x2A753796C6896E13
    assert vp.checksum(vp.fill_framebuffer(640, 480, 32, 10)) == 0xD2D2D2D259800000


def test_pattern_regions_follow_the_rules_in_order() -> None:
    w, h = 640, 480
    rgb = vp.pattern_rgb(w, h)
    for x, y in [(0, 0), (w - 1, 100), (300, h - 1), (0, 300)]:
        assert tuple(rgb[y, x]) == (255, 255, 255), (x, y)          # border wins
    bars = [tuple(rgb[h // 8, k * w // 8 + 5]) for k in range(8)]
    assert bars == [tuple(c) for c in vp.BAR_RGB]
    assert tuple(rgb[h * 3 // 4, w // 8]) == (255, 136, 0)             # rect A's corner
    assert tuple(rgb[h * 3 // 4, w // 8 + w // 4]) != (255, 136, 0)   # just past it
    assert tuple(rgb[h * 5 // 8, w // 2 + 1]) == (96, 32, 224)         # rect B
    assert tuple(rgb[h - 9, 3 * w // 4 + 2]) == (0, 255, 128)          # line C, last row
    assert tuple(rgb[h - 8, 3 * w // 4 + 2]) != (0, 255, 128)
    x, y = 321, 200                                                     # the gradient
    assert tuple(rgb[y, x]) == (x * 255 // (w - 1), y * 255 // (h - 1), (x ^ y) & 255)
    assert tuple(rgb[h - 16, 8]) == (160, 160, 160)                    # checker: odd
    assert tuple(rgb[h - 16, 16]) == (48, 48, 48)                      # and even


def test_8bpp_indices_and_palette() -> None:
    idx = vp.pattern_index(640, 480)
    assert idx[0, 0] == vp.PAL_BORDER and idx[60, 5] == 0 and idx[60, 639 - 5] == 7
    assert idx[200, 0 + 1] == vp.PAL_GRADIENT and idx[200, 638] == 255
    pal = vp.palette6()
    assert pal.shape == (256, 3) and pal.max() <= 63
    assert tuple(pal[vp.PAL_GRADIENT]) == (0, 63, 0) and tuple(pal[255]) == (63, 0, (239 * 5) & 63)


def test_dac_values_widen_as_qemu_does() -> None:
    assert list(vp.dac6_to_8(np.array([0, 0x15, 0x2A, 0x3F]))) == [0, 0x57, 0xA8, 0xFF]


@pytest.mark.parametrize("bpp", vp.BPPS)
def test_packing_then_decoding_keeps_the_bits_a_mode_has(bpp: int) -> None:
    w, h = 64, 32
    fb = vp.pattern_framebuffer(w, h, bpp)
    assert fb.shape == (h, w * vp.bytes_per_pixel(bpp))
    shown = vp.decode_framebuffer(fb, w, h, bpp)
    want = (vp.dac6_to_8(vp.palette6())[vp.pattern_index(w, h)] if bpp == 8
            else vp.pattern_rgb(w, h))
    assert vp.describe_difference(shown, want, vp.channel_bits(bpp)) == "identical"
    if bpp in (24, 32):
        assert np.array_equal(shown, want)


def test_16bpp_widens_by_repeating_top_bits_15bpp_with_zeros() -> None:
    white16 = np.array([[0xFF, 0xFF] * 8], dtype=np.uint8)
    assert tuple(vp.decode_framebuffer(white16, 8, 1, 16)[0, 0]) == (255, 255, 255)
    white15 = np.array([[0xFF, 0x7F] * 8], dtype=np.uint8)
    assert tuple(vp.decode_framebuffer(white15, 8, 1, 15)[0, 0]) == (248, 248, 248)


def test_difference_ignores_bits_the_mode_does_not_define() -> None:
    a = np.full((2, 2, 3), 0xA8, dtype=np.uint8)
    b = a.copy()
    b[1, 0] = 0xAA
    assert vp.describe_difference(a, b, (6, 6, 6)) == "identical"
    assert vp.describe_difference(a, b).startswith("1 pixels differ, e.g. (0,1)")
    assert "size" in vp.describe_difference(a, b[:1])


def test_blit_and_scroll_replays() -> None:
    w, h, bpp = 64, 32, 32
    fb = vp.blit_framebuffer(w, h, bpp, frames=3)
    rw, rh = w // 4 // 8 * 8, h // 4
    src = vp.pattern_framebuffer(w, h, bpp)[:rh, :rw * 4]
    x, y = rw + 8 * (2 % ((w - 2 * rw) // 8 + 1)), 4 * 2 % (h - rh + 1)   # frame 2
    assert np.array_equal(fb[y:y + rh, x * 4:(x + rw) * 4], src)
    scrolled = vp.scroll_framebuffer(w, h, bpp, frames=2, lines=4)
    assert (scrolled[-4:] == vp.fill_byte(1)).all() and (scrolled[-8:-4] == vp.fill_byte(0)).all()
    assert np.array_equal(scrolled[:-8], vp.pattern_framebuffer(w, h, bpp)[8:])
    cells = vp.scroll_text_cells(3)
    assert int(cells[-1, 0]) == ord("c") | 3 << 8 and int(cells[-3, 79]) == ord("a") | 1 << 8
    assert np.array_equal(cells[:-3], vp.text_layout()[3:])


def test_expected_screen_from_result_fields() -> None:
    exp = vp.expected_screen("fb-blit", {"mode": "64x32x16", "frames": "2", "w": "16",
                                         "h": "8"})
    assert exp.picture is not None and exp.picture.shape == (32, 64, 3)
    assert exp.bits == (5, 6, 5)
    text = vp.expected_screen("fb-scroll", {"kind": "text", "frames": "4"})
    assert text.cells is not None and text.cursor is None
    assert vp.expected_screen("vga-text", {}).cursor == (vp.CURSOR_ROW, vp.CURSOR_COL)
    with pytest.raises(ValueError):
        vp.expected_screen("hello", {"mode": "64x32x32"})


def test_text_layout_and_colours() -> None:
    cells = vp.text_layout()
    assert cells.shape == (25, 80)
    assert int(cells[4 + 2, 4 + 4 * 5]) == 0xDB | (2 << 4 | 5) << 8
    assert int(cells[24, 79]) == ord("#") | 0x2F << 8
    assert vp.text_colour(0) == (0, 0, 0) and vp.text_colour(15) == (255, 255, 255)
    assert vp.text_colour(6) == (0xA8, 0x57, 0)                      # brown, DAC 0x14
    assert vp.text_colour(1) == (0, 0, 0xA8)


def render_text(cells: np.ndarray, cursor: tuple[int, int] | None,
                char_width: int = 9) -> np.ndarray:
    """A toy VGA renderer: glyphs are diagonal strokes (full block: all), 16 lines."""
    rows, cols = cells.shape
    img = np.zeros((rows * 16, cols * char_width, 3), dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            ch, attr = int(cells[r, c]) & 0xFF, int(cells[r, c]) >> 8
            fg, bg = vp.text_colour(attr & 15), vp.text_colour(attr >> 4 & 7)
            block = img[r * 16:(r + 1) * 16, c * char_width:(c + 1) * char_width]
            block[:] = bg
            if ch == 0xDB:
                block[:] = fg
            elif ch != 0x20:
                for line in range(2, 14):
                    block[line, line % 8] = fg
                if 0xC0 <= ch <= 0xDF and char_width == 9:
                    block[:, 8] = block[:, 7]
            if (r, c) == cursor:
                block[vp.CURSOR_FIRST:vp.CURSOR_LAST + 1] = fg
    return img


def test_text_screen_check_accepts_a_right_screen_and_names_wrong_cells() -> None:
    cells = vp.text_layout()
    cursor = (vp.CURSOR_ROW, vp.CURSOR_COL)
    img = render_text(cells, cursor)
    assert vp.check_text_screen(img, cells, cursor) == []
    assert vp.check_text_screen(render_text(cells, None), cells, cursor) == []   # blink off
    assert vp.check_text_screen(render_text(cells, None, 8), cells, cursor) == []

    wrong = img.copy()
    wrong[4 * 16 + 3, 4 * 9 + 4] = (200, 0, 0)                    # row 4, col 4: odd colour
    problems = vp.check_text_screen(wrong, cells, cursor)
    assert len(problems) == 1 and "cell (4,4)" in problems[0]

    shifted = vp.text_layout()
    shifted[1] = np.roll(shifted[1], 1)                            # the title one column off
    assert any("cell (1,2)" in p for p in vp.check_text_screen(img, shifted, cursor))
    assert vp.check_text_screen(img[:-1], cells, cursor)[0].startswith("screen 720x399")
    assert vp.check_text_screen(img, cells, None) != []            # unexpected cursor


def test_read_ppm_with_comments(tmp_path: Path) -> None:
    pixels = bytes(range(2 * 3 * 3))
    path = tmp_path / "a.ppm"
    path.write_bytes(b"P6\n# made by a test\n2 3\n255\n" + pixels)
    img = vp.read_ppm(path)
    assert img.shape == (3, 2, 3) and img.tobytes() == pixels
    path.write_bytes(b"P6\n2 3\n255\n" + pixels[:-1])
    with pytest.raises(ValueError):
        vp.read_ppm(path)
    path.write_bytes(b"P5\n2 3\n255\n" + pixels)
    with pytest.raises(ValueError):
        vp.read_ppm(path)
