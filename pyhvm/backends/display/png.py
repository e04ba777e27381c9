"""Screenshots as files: PNG (RGB, 8 bits a channel) and QEMU's default, binary PPM.

Written with zlib and struct only, so a screenshot needs no imaging library. PNG rows use
filter type "Up" (each byte minus the byte above it): on screens, where most rows repeat the
one above (text backgrounds, window fills), it makes the deflate stream several times smaller
than unfiltered rows, and numpy computes it for the whole picture at once.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from .frame import Frame

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPE_RGB = 2
BIT_DEPTH = 8
FILTER_NONE = 0
FILTER_UP = 2
ZLIB_LEVEL = 6


def _pixels(picture: Frame | np.ndarray) -> np.ndarray:
    """The (height, width, 3) uint8 array of a Frame or an array; a bug otherwise."""
    pixels = picture.pixels if isinstance(picture, Frame) else np.asarray(picture)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"need a (height, width, 3) uint8 array, got {pixels.dtype} "
                         f"{pixels.shape}")
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ValueError(f"an image needs at least one pixel, got {pixels.shape}")
    return pixels


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, and the CRC-32 of type and data (PNG spec 5.3)."""
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF))


def encode_png(picture: Frame | np.ndarray, level: int = ZLIB_LEVEL) -> bytes:
    """The PNG file for an RGB picture."""
    pixels = _pixels(picture)
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(height, width * 3)
    filtered = np.empty((height, width * 3 + 1), dtype=np.uint8)
    filtered[0, 0] = FILTER_NONE
    filtered[0, 1:] = rows[0]
    if height > 1:
        filtered[1:, 0] = FILTER_UP
        np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # wraps mod 256, as PNG wants
    header = struct.pack(">IIBBBBB", width, height, BIT_DEPTH, COLOUR_TYPE_RGB, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(filtered.tobytes(), level))
            + _chunk(b"IEND", b""))


def encode_ppm(picture: Frame | np.ndarray) -> bytes:
    """The binary PPM (P6) file for an RGB picture: what QEMU's `screendump` writes."""
    pixels = _pixels(picture)
    height, width = pixels.shape[:2]
    return f"P6\n{width} {height}\n255\n".encode() + np.ascontiguousarray(pixels).tobytes()


def write_image(path: str, picture: Frame | np.ndarray, fmt: str = "png") -> None:
    """Write a screenshot atomically: a viewer watching `path` never sees half a file.

    Raises OSError when the file cannot be written; `fmt` is "png" or "ppm".
    """
    data = encode_png(picture) if fmt == "png" else encode_ppm(picture)
    directory = os.path.dirname(os.path.abspath(path))
    temp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as f:
            f.write(data)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


__all__ = ["encode_png", "encode_ppm", "write_image", "PNG_SIGNATURE"]
