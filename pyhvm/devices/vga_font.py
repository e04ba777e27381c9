"""PC Screen Font (PSF1 and PSF2) parsing, and the code page 437 glyph table a VGA BIOS
leaves in plane 2.

Console font packages ship PSF files whose glyphs are in their own order with a Unicode
table; a VGA text screen indexes glyphs by code page 437 byte. `cp437_table` picks, for each
of the 256 CP437 codes, the glyph whose Unicode table names that code's character, from
the first font that has it. Bytes in, bytes out: reading and decompressing the file is the
caller's business (the machine does it at run time; nothing here is drawn by hand).

PSF1: magic 36 04, mode, bytes per glyph; 8 dots wide; 256 or 512 glyphs; a table of
UCS-2 values per glyph, each list ended by 0xFFFF (0xFFFE starts combining sequences).
PSF2: magic 72 B5 4A 86, version, header size, flags, glyph count, bytes per glyph, height,
width; a table of UTF-8 strings per glyph, each ended by 0xFF (0xFE starts sequences).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence

PSF1_MAGIC = b"\x36\x04"
PSF1_MODE512 = 0x01
PSF1_MODEHASTAB = 0x02
PSF1_MODESEQ = 0x04
PSF1_SEPARATOR, PSF1_STARTSEQ = 0xFFFF, 0xFFFE
PSF2_MAGIC = b"\x72\xb5\x4a\x86"
PSF2_HAS_UNICODE_TABLE = 0x01
PSF2_SEPARATOR, PSF2_STARTSEQ = 0xFF, 0xFE
MAX_GLYPHS = 65536
GLYPH_STRIDE = 32   # plane 2 keeps 32 bytes per character, whatever the font height
MAX_VGA_HEIGHT = 32

# What each CP437 byte shows, as Unicode (alternatives in order of preference). 0x00-0x1F
# and 0x7F are the IBM PC's graphic characters, not control codes.
_CP437_LOW = (
    (0x0020,), (0x263A,), (0x263B,), (0x2665,), (0x2666,), (0x2663,), (0x2660,), (0x2022,),
    (0x25D8,), (0x25CB,), (0x25D9,), (0x2642,), (0x2640,), (0x266A,), (0x266B,), (0x263C,),
    (0x25BA, 0x25B6), (0x25C4, 0x25C0), (0x2195,), (0x203C,), (0x00B6,), (0x00A7,),
    (0x25AC,), (0x21A8,), (0x2191,), (0x2193,), (0x2192,), (0x2190,), (0x221F,), (0x2194,),
    (0x25B2,), (0x25BC,))
CP437_UNICODE: tuple[tuple[int, ...], ...] = _CP437_LOW + tuple(
    (0x2302,) if code == 0x7F else (ord(bytes([code]).decode("cp437")),)
    for code in range(0x20, 0x100))


class FontError(ValueError):
    """A file that is not a usable PSF font."""


@dataclass(frozen=True)
class PsfFont:
    width: int
    height: int
    glyphs: tuple[bytes, ...]     # each `height` rows of ceil(width / 8) bytes
    unicode: dict[int, int]       # code point -> glyph index (first glyph that lists it)


def parse_psf(data: bytes) -> PsfFont:
    """A PSF1 or PSF2 font from its (uncompressed) bytes; FontError if it is not one."""
    if data[:2] == PSF1_MAGIC:
        return _parse_psf1(data)
    if data[:4] == PSF2_MAGIC:
        return _parse_psf2(data)
    raise FontError("not a PSF1 or PSF2 font (bad magic)")


def _parse_psf1(data: bytes) -> PsfFont:
    if len(data) < 4:
        raise FontError("PSF1 header truncated")
    mode, size = data[2], data[3]
    count = 512 if mode & PSF1_MODE512 else 256
    end = 4 + count * size
    if size == 0 or len(data) < end:
        raise FontError("PSF1 glyphs truncated")
    glyphs = tuple(data[4 + i * size:4 + (i + 1) * size] for i in range(count))
    table: dict[int, int] = {}
    if mode & (PSF1_MODEHASTAB | PSF1_MODESEQ):
        values = struct.unpack_from(f"<{(len(data) - end) // 2}H", data, end)
        glyph, in_sequence = 0, False
        for value in values:
            if glyph >= count:
                break
            if value == PSF1_SEPARATOR:
                glyph, in_sequence = glyph + 1, False
            elif value == PSF1_STARTSEQ:
                in_sequence = True
            elif not in_sequence:
                table.setdefault(value, glyph)
    return PsfFont(8, size, glyphs, table)


def _parse_psf2(data: bytes) -> PsfFont:
    if len(data) < 32:
        raise FontError("PSF2 header truncated")
    _, header, flags, count, size, height, width = struct.unpack_from("<7I", data, 4)
    if not 0 < count <= MAX_GLYPHS or width == 0 or height == 0 or \
            size != height * ((width + 7) // 8):
        raise FontError("PSF2 header describes no usable glyphs")
    end = header + count * size
    if header < 32 or len(data) < end:
        raise FontError("PSF2 glyphs truncated")
    glyphs = tuple(data[header + i * size:header + (i + 1) * size] for i in range(count))
    table: dict[int, int] = {}
    if flags & PSF2_HAS_UNICODE_TABLE:
        glyph, at = 0, end
        while glyph < count and at < len(data):
            stop = at
            while stop < len(data) and data[stop] not in (PSF2_SEPARATOR, PSF2_STARTSEQ):
                stop += 1
            for char in data[at:stop].decode("utf-8", "replace"):
                if char != "\ufffd":
                    table.setdefault(ord(char), glyph)
            while stop < len(data) and data[stop] != PSF2_SEPARATOR:
                stop += 1  # skip combining sequences
            glyph, at = glyph + 1, stop + 1
    return PsfFont(width, height, glyphs, table)


def cp437_table(fonts: Sequence[PsfFont]) -> tuple[bytes, list[int]]:
    """256 glyphs of 32 bytes each (rows past the font's height are 0), taken from the
    first of `fonts` that has each character, and the CP437 codes none had (left blank).
    Only 8-dot-wide fonts of at most 32 rows fit a VGA character."""
    usable = [f for f in fonts if f.width == 8 and f.height <= MAX_VGA_HEIGHT]
    if not usable:
        raise FontError("no 8-dot font of at most 32 rows among those given")
    table = bytearray(256 * GLYPH_STRIDE)
    missing = []
    for code, choices in enumerate(CP437_UNICODE):
        glyph = next(((f, f.unicode[c]) for c in choices for f in usable if c in f.unicode),
                     None)
        if glyph is None:
            if code:  # 0x00 is blank by definition
                missing.append(code)
            continue
        font, index = glyph
        table[code * GLYPH_STRIDE:code * GLYPH_STRIDE + font.height] = font.glyphs[index]
    return bytes(table), missing
