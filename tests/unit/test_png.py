"""The PNG and PPM screenshot writers, checked by an independent small decoder."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhvm.backends.display.frame import Frame
from pyhvm.backends.display.png import PNG_SIGNATURE, encode_png, encode_ppm, write_image


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(data: bytes) -> tuple[np.ndarray, list[bytes]]:
    """A minimal PNG reader (8-bit RGB, all five filter types): the pixels and the chunk
    types in order. Every chunk's CRC is checked (PNG spec 5.3)."""
    assert data[:8] == PNG_SIGNATURE
    pos, kinds, idat, header = 8, [], b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        kinds.append(kind)
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, colour, compression, filtering, interlace = header
    assert (depth, colour, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(idat)
    stride = width * 3
    assert len(raw) == height * (stride + 1)
    out = bytearray()
    previous = bytearray(stride)
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind, row = line[0], bytearray(line[1:])
        for i in range(stride):
            a = row[i - 3] if i >= 3 else 0
            b = previous[i]
            c = previous[i - 3] if i >= 3 else 0
            predictor = {0: 0, 1: a, 2: b, 3: (a + b) // 2, 4: _paeth(a, b, c)}[kind]
            row[i] = (row[i] + predictor) & 0xFF
        out += row
        previous = row
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(height, width, 3), kinds


def test_png_round_trips_a_picture_and_has_signature_and_valid_crcs() -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    pixels[10:20] = pixels[9]  # repeated rows: the Up filter's case
    decoded, kinds = decode_png(encode_png(pixels))
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]
    assert np.array_equal(decoded, pixels)


def test_png_takes_a_frame_and_a_single_pixel() -> None:
    frame = Frame(np.array([[[1, 2, 3]]], dtype=np.uint8), None, 0)
    decoded, _ = decode_png(encode_png(frame))
    assert decoded.tolist() == [[[1, 2, 3]]]


def test_png_of_a_flat_screen_is_small() -> None:
    """A 1024x768 screen of one colour compresses to a few kilobytes, not 2.3 MB."""
    pixels = np.full((768, 1024, 3), (0, 0, 170), dtype=np.uint8)
    assert len(encode_png(pixels)) < 16 * 1024


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.binary(min_size=243, max_size=243))
def test_png_round_trips_any_small_picture(height: int, width: int, noise: bytes) -> None:
    pixels = np.frombuffer(noise[:height * width * 3], dtype=np.uint8).reshape(height, width, 3)
    assert np.array_equal(decode_png(encode_png(pixels))[0], pixels)


def test_ppm_is_p6_with_the_rgb_bytes() -> None:
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert encode_ppm(pixels) == b"P6\n3 2\n255\n" + pixels.tobytes()


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8),
                                 np.zeros((4, 4, 3), np.uint16), np.zeros((0, 4, 3), np.uint8)])
def test_writers_refuse_what_is_not_an_rgb_picture(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        encode_png(bad)


def test_write_image_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "shot.png"
    path.write_bytes(b"old")
    pixels = np.zeros((2, 2, 3), np.uint8)
    write_image(str(path), pixels)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    write_image(str(tmp_path / "shot.ppm"), pixels, "ppm")
    assert (tmp_path / "shot.ppm").read_bytes().startswith(b"P6\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot.png", "shot.ppm"]


def test_write_image_to_a_missing_directory_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_image(str(tmp_path / "nowhere" / "shot.png"), np.zeros((1, 1, 3), np.uint8))
