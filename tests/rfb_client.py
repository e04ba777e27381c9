"""A small blocking RFB (VNC) client for tests, written from RFC 6143 independently of the
server: handshake (3.3, 3.7, 3.8), pixel formats, and decoding of Raw, Zlib and ZRLE (every
ZRLE subencoding, though the server sends only some) into an RGB picture."""

from __future__ import annotations

import socket
import struct
import zlib

import numpy as np

RAW, ZLIB, ZRLE, DESKTOP_SIZE = 0, 6, 16, -223


class PixelFormat:
    def __init__(self, bpp: int, depth: int, big_endian: bool, red_max: int, green_max: int,
                 blue_max: int, red_shift: int, green_shift: int, blue_shift: int) -> None:
        self.bpp, self.depth, self.big_endian = bpp, depth, big_endian
        self.maxes = (red_max, green_max, blue_max)
        self.shifts = (red_shift, green_shift, blue_shift)

    def pack(self) -> bytes:
        return struct.pack(">BBBBHHHBBB3x", self.bpp, self.depth, int(self.big_endian), 1,
                           *self.maxes, *self.shifts)

    @classmethod
    def unpack(cls, data: bytes) -> "PixelFormat":
        bpp, depth, big, true, rm, gm, bm, rs, gs, bs = struct.unpack(">BBBBHHHBBB3x", data)
        assert true, "the server offered a colour map"
        return cls(bpp, depth, bool(big), rm, gm, bm, rs, gs, bs)

    @property
    def size(self) -> int:
        return self.bpp // 8

    def cpixel_size_and_pad(self) -> tuple[int, int]:
        """ZRLE CPIXEL: 3 bytes, and where the missing zero byte goes in the 4-byte pixel."""
        if self.bpp != 32 or self.depth > 24:
            return self.size, -1
        masks = [m << s for m, s in zip(self.maxes, self.shifts)]
        low = all(m < (1 << 24) for m in masks)
        high = all(m & 0xFF == 0 for m in masks)
        if low:  # the top byte is zero: last in little-endian memory, first in big-endian
            return 3, (0 if self.big_endian else 3)
        if high:
            return 3, (3 if self.big_endian else 0)
        return self.size, -1

    def to_rgb(self, raw: bytes, count: int) -> np.ndarray:
        """(count, 3) uint8 intensities, each channel scaled back to 0..255."""
        dtype = np.dtype(f"{'>' if self.big_endian else '<'}u{self.size}")
        values = np.frombuffer(raw, dtype=dtype, count=count).astype(np.uint64)
        out = np.empty((count, 3), dtype=np.uint8)
        for i, (top, shift) in enumerate(zip(self.maxes, self.shifts)):
            channel = (values >> shift) & top
            out[:, i] = (channel * 255 + top // 2) // top
        return out


class RfbClient:
    def __init__(self, host: str, port: int, version: bytes = b"RFB 003.008\n",
                 shared: bool = True, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        server_version = self.recv(12)
        assert server_version == b"RFB 003.008\n", server_version
        self.sock.sendall(version)
        minor = int(version[8:11])
        if minor == 3:
            assert struct.unpack(">I", self.recv(4))[0] == 1
        else:
            count = self.recv(1)[0]
            types = self.recv(count)
            assert 1 in types, types
            self.sock.sendall(b"\x01")
            if minor >= 8:
                assert struct.unpack(">I", self.recv(4))[0] == 0
        self.sock.sendall(bytes([int(shared)]))
        self.width, self.height = struct.unpack(">HH", self.recv(4))
        self.server_format = PixelFormat.unpack(self.recv(16))
        (name_length,) = struct.unpack(">I", self.recv(4))
        self.name = self.recv(name_length).decode()
        self.format = self.server_format
        self.fb = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        self._zlib = zlib.decompressobj()
        self._zrle = zlib.decompressobj()

    # --- sending -------------------------------------------------------------------------
    def set_pixel_format(self, pf: PixelFormat) -> None:
        self.sock.sendall(b"\x00\x00\x00\x00" + pf.pack())
        self.format = pf

    def set_encodings(self, *encodings: int) -> None:
        self.sock.sendall(struct.pack(f">BxH{len(encodings)}i", 2, len(encodings), *encodings))

    def request(self, incremental: bool = False, x: int = 0, y: int = 0,
                width: int | None = None, height: int | None = None) -> None:
        self.sock.sendall(struct.pack(">BBHHHH", 3, int(incremental), x, y,
                                      self.width if width is None else width,
                                      self.height if height is None else height))

    def key(self, keysym: int, down: bool) -> None:
        self.sock.sendall(struct.pack(">BBxxI", 4, int(down), keysym))

    def pointer(self, buttons: int, x: int, y: int) -> None:
        self.sock.sendall(struct.pack(">BBHH", 5, buttons, x, y))

    def cut_text(self, text: bytes) -> None:
        self.sock.sendall(struct.pack(">BxxxI", 6, len(text)) + text)

    # --- receiving -----------------------------------------------------------------------
    def recv(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError(f"connection closed with {n - len(data)} bytes to come")
            data += chunk
        return bytes(data)

    def read_update(self) -> list[tuple[int, int, int, int, int]]:
        """One FramebufferUpdate, applied to `fb`; its rectangles (x, y, w, h, encoding)."""
        kind = self.recv(1)[0]
        assert kind == 0, f"unexpected server message {kind}"
        (count,) = struct.unpack(">xH", self.recv(3))
        rects = []
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack(">HHHHi", self.recv(12))
            rects.append((x, y, w, h, encoding))
            if encoding == DESKTOP_SIZE:
                self.width, self.height = w, h
                self.fb = np.zeros((h, w, 3), dtype=np.uint8)
            elif encoding == RAW:
                self._put(x, y, w, h, self.recv(w * h * self.format.size))
            elif encoding == ZLIB:
                (length,) = struct.unpack(">I", self.recv(4))
                self._put(x, y, w, h, self._zlib.decompress(self.recv(length)))
            elif encoding == ZRLE:
                (length,) = struct.unpack(">I", self.recv(4))
                self._zrle_rect(x, y, w, h, self._zrle.decompress(self.recv(length)))
            else:
                raise AssertionError(f"unexpected encoding {encoding}")
        return rects

    def _put(self, x: int, y: int, w: int, h: int, raw: bytes) -> None:
        assert len(raw) == w * h * self.format.size
        self.fb[y:y + h, x:x + w] = self.format.to_rgb(raw, w * h).reshape(h, w, 3)

    def _cpixels(self, data: bytes, count: int) -> np.ndarray:
        size, pad = self.format.cpixel_size_and_pad()
        if pad < 0:
            return self.format.to_rgb(data, count)
        three = np.frombuffer(data, dtype=np.uint8, count=count * 3).reshape(count, 3)
        four = np.insert(three, pad, 0, axis=1)
        return self.format.to_rgb(four.tobytes(), count)

    def _zrle_rect(self, x: int, y: int, w: int, h: int, data: bytes) -> None:
        size, _ = self.format.cpixel_size_and_pad()
        pos = 0
        for ty in range(y, y + h, 64):
            for tx in range(x, x + w, 64):
                tw, th = min(64, x + w - tx), min(64, y + h - ty)
                sub = data[pos]
                pos += 1
                if sub == 0:
                    tile = self._cpixels(data[pos:], tw * th)
                    pos += tw * th * size
                elif sub == 1:
                    tile = np.repeat(self._cpixels(data[pos:], 1), tw * th, axis=0)
                    pos += size
                elif 2 <= sub <= 16:
                    palette = self._cpixels(data[pos:], sub)
                    pos += sub * size
                    bits = 1 if sub == 2 else 2 if sub <= 4 else 4
                    row_bytes = (tw * bits + 7) // 8
                    indices = []
                    for _ in range(th):
                        row = data[pos:pos + row_bytes]
                        pos += row_bytes
                        for i in range(tw):
                            bit = i * bits
                            byte = row[bit // 8]
                            indices.append((byte >> (8 - bits - bit % 8)) & ((1 << bits) - 1))
                    tile = palette[indices]
                elif sub == 128 or sub >= 130:
                    palette = None
                    if sub >= 130:
                        palette = self._cpixels(data[pos:], sub - 128)
                        pos += (sub - 128) * size
                    pixels: list[np.ndarray] = []
                    while len(pixels) < tw * th:
                        if palette is None:
                            colour, run = self._cpixels(data[pos:], 1)[0], 1
                            pos += size
                            run = self._run(data, pos)
                            pos = self._run_end
                        else:
                            index = data[pos]
                            pos += 1
                            colour = palette[index & 0x7F]
                            run = 1
                            if index & 0x80:
                                run = self._run(data, pos)
                                pos = self._run_end
                        pixels.extend([colour] * run)
                    tile = np.array(pixels, dtype=np.uint8)
                else:
                    raise AssertionError(f"bad ZRLE subencoding {sub}")
                self.fb[ty:ty + th, tx:tx + tw] = tile.reshape(th, tw, 3)
        assert pos == len(data), "ZRLE data longer than its tiles"

    def _run(self, data: bytes, pos: int) -> int:
        run = 1
        while data[pos] == 255:
            run += 255
            pos += 1
        run += data[pos]
        self._run_end = pos + 1
        return run

    def close(self) -> None:
        self.sock.close()
