"""RFB rectangle encodings: Raw, Zlib and ZRLE, from RGB frames into a client's pixel format.

RFC 6143 7.7 (Raw, ZRLE) and the Zlib encoding as registered in the RFB encoding table
(a 4-byte length, then the Raw pixels through one zlib stream). Zlib and ZRLE keep one zlib
stream per client for the life of the connection, flushed with Z_SYNC_FLUSH at the end of
each rectangle, as both encodings require: the client's inflater carries its dictionary
from one update to the next. Everything is numpy over whole rectangles or 64x64 tiles,
never a Python loop over pixels.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from .rfb import ENC_RAW, ENC_ZLIB, ENC_ZRLE, PixelFormat

ZLIB_LEVEL = 1  # fast: the encoder runs on the event loop; ZRLE's palettes do the rest
TILE = 64  # ZRLE tile size (7.7.6)
ZRLE_RAW, ZRLE_SOLID = 0, 1  # subencodings; 2-16 are packed palettes of that many colours
MAX_PALETTE = 16
SAMPLE_STEP = 8  # every 8th pixel of every 8th row: 64 of a tile's 4096


def _channel(values: np.ndarray, top: int) -> np.ndarray:
    """8-bit intensities scaled to 0..top, rounded to the nearest step."""
    if top == 255:
        return values.astype(np.uint32)
    return (values.astype(np.uint32) * top + 127) // 255


def _byte_aligned_32(pf: PixelFormat) -> bool:
    return (pf.bpp == 32 and (pf.red_max, pf.green_max, pf.blue_max) == (255, 255, 255)
            and all(s % 8 == 0 for s in (pf.red_shift, pf.green_shift, pf.blue_shift))
            and len({pf.red_shift, pf.green_shift, pf.blue_shift}) == 3)


def pixel_bytes(rgb: np.ndarray, pf: PixelFormat) -> np.ndarray:
    """(h, w, bpp/8) uint8: each pixel's value in the client's format, in wire byte order."""
    height, width = rgb.shape[:2]
    if _byte_aligned_32(pf):
        # The common case (every VNC viewer's default): each channel is one byte of the
        # pixel, so the conversion is a byte shuffle.
        out = np.zeros((height, width, 4), dtype=np.uint8)
        for channel, shift in enumerate((pf.red_shift, pf.green_shift, pf.blue_shift)):
            index = 3 - shift // 8 if pf.big_endian else shift // 8
            out[:, :, index] = rgb[:, :, channel]
        return out
    value = ((_channel(rgb[:, :, 0], pf.red_max) << pf.red_shift)
             | (_channel(rgb[:, :, 1], pf.green_max) << pf.green_shift)
             | (_channel(rgb[:, :, 2], pf.blue_max) << pf.blue_shift))
    size = pf.bpp // 8
    dtype = np.dtype(f"{'>' if pf.big_endian else '<'}u{size}")
    return value.astype(dtype).view(np.uint8).reshape(height, width, size)


def cpixel_slice(pf: PixelFormat) -> slice:
    """Which bytes of a pixel ZRLE sends (7.7.6 CPIXEL): three of a 32-bit pixel whose
    colour bits all lie in its low or high three bytes, when depth <= 24; else all."""
    size = pf.bpp // 8
    if pf.bpp != 32 or pf.depth > 24:
        return slice(0, size)
    masks = [top << shift for top, shift in ((pf.red_max, pf.red_shift),
                                             (pf.green_max, pf.green_shift),
                                             (pf.blue_max, pf.blue_shift))]
    if all(mask < 1 << 24 for mask in masks):  # the value's low three bytes
        return slice(1, 4) if pf.big_endian else slice(0, 3)
    if all(mask & 0xFF == 0 for mask in masks):  # the value's high three bytes
        return slice(0, 3) if pf.big_endian else slice(1, 4)
    return slice(0, size)


class RawEncoder:
    encoding = ENC_RAW

    def encode(self, rgb: np.ndarray, pf: PixelFormat) -> bytes:
        return pixel_bytes(rgb, pf).tobytes()


class ZlibEncoder:
    """Raw pixels through the connection's zlib stream, behind a 4-byte length."""

    encoding = ENC_ZLIB

    def __init__(self, level: int = ZLIB_LEVEL) -> None:
        self._stream = zlib.compressobj(level)

    def encode(self, rgb: np.ndarray, pf: PixelFormat) -> bytes:
        data = (self._stream.compress(pixel_bytes(rgb, pf).tobytes())
                + self._stream.flush(zlib.Z_SYNC_FLUSH))
        return struct.pack(">I", len(data)) + data


def _pack_indices(indices: np.ndarray, colours: int) -> bytes:
    """Packed palette indices (7.7.6): 1, 2 or 4 bits each, most significant first, every
    row padded to a whole byte."""
    indices = indices.astype(np.uint8)
    if colours == 2:
        return np.packbits(indices, axis=1).tobytes()  # pads each row, MSB first
    bits = 2 if colours <= 4 else 4
    per_byte = 8 // bits
    pad = -indices.shape[1] % per_byte
    if pad:
        indices = np.pad(indices, ((0, 0), (0, pad)))
    packed = np.zeros((indices.shape[0], indices.shape[1] // per_byte), dtype=np.uint8)
    for j in range(per_byte):
        packed |= indices[:, j::per_byte] << np.uint8(8 - bits * (j + 1))
    return packed.tobytes()


def _palette(tile: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """A tile's colours (sorted) and each pixel's index among them; None for more than a
    palette holds. A sample usually finds every colour, and then a search over a handful
    of values replaces sorting the whole tile."""
    sample = np.unique(tile[::SAMPLE_STEP, ::SAMPLE_STEP])
    if len(sample) > MAX_PALETTE:
        return None, tile
    indices = np.minimum(np.searchsorted(sample, tile), len(sample) - 1)
    if (sample[indices] == tile).all():
        return sample, indices
    colours, inverse = np.unique(tile, return_inverse=True)
    if len(colours) > MAX_PALETTE:
        return None, tile
    return colours, inverse.reshape(tile.shape)


def _solid_tiles(keys: np.ndarray) -> np.ndarray:
    """(tile rows, tile columns) bools: which 64x64 tiles hold a single colour. Edge tiles
    are padded with copies of their own last row and column, which keeps the answer."""
    height, width = keys.shape
    padded = np.pad(keys, ((0, -height % TILE), (0, -width % TILE)), mode="edge")
    tiles = padded.reshape(padded.shape[0] // TILE, TILE, padded.shape[1] // TILE, TILE)
    return (tiles == tiles[:, :1, :, :1]).all(axis=(1, 3))


class ZrleEncoder:
    """ZRLE with three tile kinds: solid, packed palette (2-16 colours) and raw CPIXELs."""

    encoding = ENC_ZRLE

    def __init__(self, level: int = ZLIB_LEVEL) -> None:
        self._stream = zlib.compressobj(level)

    def encode(self, rgb: np.ndarray, pf: PixelFormat) -> bytes:
        pixels = pixel_bytes(rgb, pf)
        height, width, size = pixels.shape
        cslice = cpixel_slice(pf)
        cpixels = pixels[:, :, cslice]
        # One integer per pixel (the pixel value itself) for comparing and counting colours.
        keys = pixels.reshape(height, width * size).view(f"<u{size}")
        solid = _solid_tiles(keys)
        parts: list[bytes] = []
        for row, top in enumerate(range(0, height, TILE)):
            for column, left in enumerate(range(0, width, TILE)):
                if solid[row, column]:
                    parts.append(bytes([ZRLE_SOLID]) + cpixels[top, left].tobytes())
                    continue
                tile = keys[top:top + TILE, left:left + TILE]
                palette_keys, indices = _palette(tile)
                if palette_keys is None:
                    parts.append(bytes([ZRLE_RAW])
                                 + cpixels[top:top + TILE, left:left + TILE].tobytes())
                    continue
                palette = (palette_keys.astype(f"<u{size}").view(np.uint8)
                           .reshape(-1, size)[:, cslice])
                parts.append(bytes([len(palette_keys)]) + palette.tobytes()
                             + _pack_indices(indices, len(palette_keys)))
        data = self._stream.compress(b"".join(parts)) + self._stream.flush(zlib.Z_SYNC_FLUSH)
        return struct.pack(">I", len(data)) + data


Encoder = RawEncoder | ZlibEncoder | ZrleEncoder


def new_encoder(encoding: int) -> Encoder:
    """A fresh encoder (with its own zlib stream) for one client."""
    if encoding == ENC_ZRLE:
        return ZrleEncoder()
    if encoding == ENC_ZLIB:
        return ZlibEncoder()
    return RawEncoder()


__all__ = ["pixel_bytes", "cpixel_slice", "RawEncoder", "ZlibEncoder", "ZrleEncoder",
           "new_encoder", "Encoder"]
