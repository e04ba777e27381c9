"""PSF1/PSF2 parsing and the CP437 glyph table (the PC Screen Font formats as kbd documents
them: header, glyphs, Unicode table)."""

from __future__ import annotations

import gzip
import os
import struct

import pytest

from pyhvm.devices.vga_font import (CP437_UNICODE, FontError, cp437_table, parse_psf)
from pyhvm.machine.display import FONT_DIR, FONT_FILES, load_default_font


def glyph(code: int, height: int = 16) -> bytes:
    return bytes((code + row * 3) & 0xFF for row in range(height))


def psf1(chars: list[str], height: int = 16) -> bytes:
    """256 glyphs; glyph i stands for chars[i] (if any), plus a two-char sequence entry."""
    header = bytes((0x36, 0x04, 0x02, height))
    glyphs = b"".join(glyph(i, height) for i in range(256))
    table = b""
    for i in range(256):
        if i < len(chars):
            table += struct.pack("<H", ord(chars[i]))
            table += struct.pack("<HHH", 0xFFFE, 0x41, 0x301)  # a sequence: ignored
        table += struct.pack("<H", 0xFFFF)
    return header + glyphs + table


def psf2(chars: list[str], height: int = 16, width: int = 8) -> bytes:
    size = height * ((width + 7) // 8)
    header = struct.pack("<4s7I", b"\x72\xb5\x4a\x86", 0, 32, 1, 256, size, height, width)
    glyphs = b"".join(glyph(i, size) for i in range(256))
    table = b""
    for i in range(256):
        if i < len(chars):
            table += chars[i].encode() + b"\xfe" + "é".encode()
        table += b"\xff"
    return header + glyphs + table


def test_psf1_glyphs_and_unicode_table() -> None:
    font = parse_psf(psf1(["A", "☺", "─"]))
    assert (font.width, font.height, len(font.glyphs)) == (8, 16, 256)
    assert font.glyphs[2] == glyph(2)
    assert font.unicode == {ord("A"): 0, 0x263A: 1, 0x2500: 2}


def test_psf2_glyphs_and_utf8_table() -> None:
    font = parse_psf(psf2(["B", "♥"], height=14))
    assert (font.width, font.height) == (8, 14)
    assert font.unicode == {ord("B"): 0, 0x2665: 1}
    assert font.glyphs[1] == glyph(1, 14)


@pytest.mark.parametrize("data", [b"", b"\x36\x04", b"\x36\x04\x00\x10" + b"\x00" * 100,
                                  b"\x72\xb5\x4a\x86" + b"\x00" * 28, b"GIF89a" * 10])
def test_truncated_or_foreign_files_raise_font_error(data: bytes) -> None:
    with pytest.raises(FontError):
        parse_psf(data)


def test_psf1_without_a_unicode_table_has_glyphs_and_no_map() -> None:
    """Mode bits 1 and 2 clear: no table follows the glyphs; mode bit 0: 512 glyphs."""
    font = parse_psf(bytes((0x36, 0x04, 0x00, 8)) + bytes(256 * 8) + b"\x41\x00\xff\xff")
    assert len(font.glyphs) == 256 and font.unicode == {}
    wide = parse_psf(bytes((0x36, 0x04, 0x01, 8)) + bytes(range(256)) * 16)
    assert len(wide.glyphs) == 512 and wide.glyphs[511] == bytes(range(248, 256))


def test_psf1_table_entries_past_the_last_glyph_are_ignored() -> None:
    data = psf1(["A"]) + struct.pack("<HH", ord("Z"), 0xFFFF)  # a 257th entry
    assert parse_psf(data).unicode == {ord("A"): 0}


def test_psf2_without_the_unicode_flag_has_no_map() -> None:
    data = bytearray(psf2(["B"]))
    data[12:16] = struct.pack("<I", 0)  # flags: no table, though bytes follow the glyphs
    font = parse_psf(bytes(data))
    assert len(font.glyphs) == 256 and font.unicode == {}


def test_psf2_table_skips_bad_utf8_and_keeps_the_good_characters() -> None:
    data = bytearray(psf2([]))
    end = 32 + 256 * 16
    data[end:end + 4] = b"\xc3Q\xfe\xff"  # a truncated sequence, then 'Q', then a sequence
    font = parse_psf(bytes(data))
    assert font.unicode == {ord("Q"): 0}


@pytest.mark.parametrize("header,flags,count,size,height,width,glyph_bytes", [
    (32, 0, 0, 16, 16, 8, 0),             # no glyphs
    (32, 0, 256, 16, 16, 0, 4096),        # zero width
    (32, 0, 256, 15, 16, 8, 4096),        # bytes per glyph disagree with height x width
    (16, 0, 256, 16, 16, 8, 4096),        # header size inside the fixed header
    (32, 0, 256, 16, 16, 8, 4095),        # glyphs cut short
    (0xFFFFFFFF, 0, 1, 1, 1, 8, 1),       # header size past the file
])
def test_psf2_headers_that_describe_no_usable_glyphs_raise_font_error(
        header: int, flags: int, count: int, size: int, height: int, width: int,
        glyph_bytes: int) -> None:
    data = struct.pack("<4s7I", b"\x72\xb5\x4a\x86", 0, header, flags, count, size, height,
                       width) + bytes(glyph_bytes)
    with pytest.raises(FontError):
        parse_psf(data)


def test_psf2_header_shorter_than_32_bytes_raises_font_error() -> None:
    with pytest.raises(FontError, match="truncated"):
        parse_psf(b"\x72\xb5\x4a\x86" + bytes(27))


def test_cp437_table_places_each_code_by_its_unicode_character() -> None:
    first = parse_psf(psf1(["A", "☺"]))
    second = parse_psf(psf1(["☺", "ç"]))
    table, missing = cp437_table([first, second])
    assert len(table) == 256 * 32
    assert table[0x41 * 32:0x41 * 32 + 16] == glyph(0)       # 'A' from the first font
    assert table[0x01 * 32:0x01 * 32 + 16] == glyph(1)       # ☺: the first font wins
    assert table[0x87 * 32:0x87 * 32 + 16] == glyph(1)       # ç (CP437 0x87) from the second
    assert table[0x41 * 32 + 16:0x42 * 32] == bytes(16)      # rows 16-31 stay 0
    assert 0x42 in missing and 0x41 not in missing and 0 not in missing


def test_fonts_wider_than_8_dots_are_not_vga_fonts() -> None:
    with pytest.raises(FontError):
        cp437_table([parse_psf(psf2(["A"], width=12))])


def test_cp437_mapping_covers_the_ibm_graphics() -> None:
    assert len(CP437_UNICODE) == 256
    assert CP437_UNICODE[0x01] == (0x263A,) and CP437_UNICODE[0xC4] == (0x2500,)
    assert CP437_UNICODE[0x7F] == (0x2302,) and CP437_UNICODE[0xE1] == (0x00DF,)


def test_missing_font_package_gives_none_and_one_log_line(tmp_path, caplog) -> None:
    assert load_default_font(str(tmp_path)) is None
    assert len(caplog.records) == 1 and "console-setup-linux" in caplog.text


def test_font_read_from_a_gzipped_file(tmp_path) -> None:
    (tmp_path / "a.psf.gz").write_bytes(gzip.compress(psf1(["A"])))
    table = load_default_font(str(tmp_path), ("a.psf.gz",))
    assert table is not None and table[0x41 * 32:0x41 * 32 + 16] == glyph(0)


@pytest.mark.skipif(not os.path.exists(f"{FONT_DIR}/{FONT_FILES[0]}"),
                    reason="Debian's console-setup-linux is not installed")
def test_installed_console_fonts_cover_code_page_437() -> None:
    fonts = []
    for name in FONT_FILES:
        with open(f"{FONT_DIR}/{name}", "rb") as f:
            fonts.append(parse_psf(gzip.decompress(f.read())))
    _, missing = cp437_table(fonts)
    assert missing == []
