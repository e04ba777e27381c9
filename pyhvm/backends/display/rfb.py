"""The RFB protocol (VNC), server side, as a pure object: bytes in, events and bytes out.

Implemented from RFC 6143 ("The Remote Framebuffer Protocol", which is RFB 3.8) and its
notes on 3.3 and 3.7. The session does the handshake (version, security type None,
ClientInit/ServerInit) itself and turns the client's normal messages into events for the
server (vnc.py), which owns sockets, frames and encoders (rfb_encode.py). So the protocol is
tested without a socket.

A client that breaks the protocol (a bad version string, an unknown message type, an
unusable pixel format) gets `RfbProtocolError`: the server logs it and closes that client.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Union

# Encodings (RFC 6143 7.7) and pseudo-encodings (7.8).
ENC_RAW = 0
ENC_ZLIB = 6
ENC_ZRLE = 16
ENC_DESKTOP_SIZE = -223
PIXEL_ENCODINGS = (ENC_RAW, ENC_ZLIB, ENC_ZRLE)  # what this server can send

# Client-to-server message types (7.5) and their fixed lengths, type byte included.
MSG_SET_PIXEL_FORMAT = 0
MSG_SET_ENCODINGS = 2
MSG_UPDATE_REQUEST = 3
MSG_KEY_EVENT = 4
MSG_POINTER_EVENT = 5
MSG_CLIENT_CUT_TEXT = 6
_FIXED_LENGTH = {MSG_SET_PIXEL_FORMAT: 20, MSG_SET_ENCODINGS: 4, MSG_UPDATE_REQUEST: 10,
                 MSG_KEY_EVENT: 8, MSG_POINTER_EVENT: 6, MSG_CLIENT_CUT_TEXT: 8}

# Server-to-client message types (7.6).
MSG_FRAMEBUFFER_UPDATE = 0

SECURITY_NONE = 1
SECURITY_OK = 0
SECURITY_FAILED = 1
VERSION_LENGTH = 12
SERVER_VERSION = b"RFB 003.008\n"
MAX_ENCODINGS = 1024  # a longer SetEncodings list is refused: no client needs so many


class RfbProtocolError(Exception):
    """The client broke the protocol; the message says how (one line for the log)."""


@dataclass(frozen=True)
class PixelFormat:
    """PIXEL_FORMAT (RFC 6143 7.4): how a client wants pixel values laid out."""

    bpp: int
    depth: int
    big_endian: bool
    true_colour: bool
    red_max: int
    green_max: int
    blue_max: int
    red_shift: int
    green_shift: int
    blue_shift: int

    _STRUCT = struct.Struct(">BBBBHHHBBB3x")

    def pack(self) -> bytes:
        return self._STRUCT.pack(self.bpp, self.depth, int(self.big_endian),
                                 int(self.true_colour), self.red_max, self.green_max,
                                 self.blue_max, self.red_shift, self.green_shift,
                                 self.blue_shift)

    @classmethod
    def unpack(cls, data: bytes) -> "PixelFormat":
        bpp, depth, big, true, rmax, gmax, bmax, rs, gs, bs = cls._STRUCT.unpack(data)
        return cls(bpp, depth, big != 0, true != 0, rmax, gmax, bmax, rs, gs, bs)

    def problem(self) -> str | None:
        """Why this server cannot produce the format, or None when it can."""
        if self.bpp not in (8, 16, 32):
            return f"{self.bpp} bits per pixel (8, 16 or 32 are supported)"
        if not self.true_colour:
            return "a colour-map pixel format (only true colour is supported)"
        for name, top, shift in (("red", self.red_max, self.red_shift),
                                 ("green", self.green_max, self.green_shift),
                                 ("blue", self.blue_max, self.blue_shift)):
            if top == 0 or top & (top + 1):
                return f"{name}-max {top} is not 2^n - 1"
            if shift + top.bit_length() > self.bpp:
                return f"{name} bits (shift {shift}, max {top}) outside {self.bpp}-bit pixels"
        return None


# What ServerInit offers: 32-bit little-endian xRGB, as QEMU offers by default.
DEFAULT_PIXEL_FORMAT = PixelFormat(32, 24, False, True, 255, 255, 255, 16, 8, 0)


# --- events for the server --------------------------------------------------------------------

@dataclass(frozen=True)
class Initialised:
    """The handshake is over: the client has its ServerInit and may send messages."""

    shared: bool


@dataclass(frozen=True)
class SetPixelFormat:
    pixel_format: PixelFormat


@dataclass(frozen=True)
class SetEncodings:
    encodings: tuple[int, ...]


@dataclass(frozen=True)
class UpdateRequest:
    incremental: bool
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class KeyEvent:
    down: bool
    keysym: int


@dataclass(frozen=True)
class PointerEvent:
    buttons: int
    x: int
    y: int


Event = Union[Initialised, SetPixelFormat, SetEncodings, UpdateRequest, KeyEvent, PointerEvent]


# --- server messages ----------------------------------------------------------------------------

def update_header(rectangles: int) -> bytes:
    """FramebufferUpdate (7.6.1): type, padding, number of rectangles."""
    return struct.pack(">BxH", MSG_FRAMEBUFFER_UPDATE, rectangles)


def rect_header(x: int, y: int, width: int, height: int, encoding: int) -> bytes:
    return struct.pack(">HHHHi", x, y, width, height, encoding)


def server_init(width: int, height: int, pixel_format: PixelFormat, name: str) -> bytes:
    """ServerInit (7.3.2): framebuffer size, the server's pixel format, the desktop name."""
    encoded = name.encode("utf-8")
    return (struct.pack(">HH", width, height) + pixel_format.pack()
            + struct.pack(">I", len(encoded)) + encoded)


# --- the session ------------------------------------------------------------------------------

class RfbSession:
    """One client's protocol state. `greeting()` first; then `feed(data)` returns the events
    in `data` and appends the handshake replies to `self.output` (the server sends and
    clears it). `screen_size` is asked at ServerInit time."""

    def __init__(self, name: str, screen_size: Callable[[], tuple[int, int]]) -> None:
        self.name = name
        self._screen_size = screen_size
        self.output = bytearray()
        self.minor = 8  # the protocol version agreed: 3.3, 3.7 or 3.8
        self._state = "version"
        self._buf = bytearray()
        self._skip = 0  # ClientCutText bytes still to discard

    @property
    def initialised(self) -> bool:
        return self._state == "normal"

    def greeting(self) -> bytes:
        return SERVER_VERSION

    def feed(self, data: bytes) -> list[Event]:
        """Events in `data`; raises RfbProtocolError when the client broke the protocol."""
        if self._skip:
            taken = min(self._skip, len(data))
            self._skip -= taken
            data = data[taken:]
        self._buf += data
        events: list[Event] = []
        while True:
            step = getattr(self, f"_on_{self._state}")(events)
            if not step:
                return events

    def _take(self, n: int) -> bytes | None:
        if len(self._buf) < n:
            return None
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    # Each handler consumes one message when complete and says whether it did.
    def _on_version(self, events: list[Event]) -> bool:
        data = self._take(VERSION_LENGTH)
        if data is None:
            if self._buf and not SERVER_VERSION.startswith(bytes(self._buf[:4])):
                raise RfbProtocolError(f"not an RFB client (sent {bytes(self._buf[:12])!r})")
            return False
        if data[:4] != b"RFB " or data[7:8] != b"." or data[11:] != b"\n" \
                or not data[4:7].isdigit() or not data[8:11].isdigit():
            raise RfbProtocolError(f"bad protocol version {data!r}")
        major, minor = int(data[4:7]), int(data[8:11])
        if major != 3:
            raise RfbProtocolError(f"unsupported protocol version {major}.{minor}")
        # 3.7 and 3.8 as such; anything newer as 3.8; other 3.x (3.5, Apple's 3.889) as 3.3.
        self.minor = 8 if 8 <= minor < 889 else 7 if minor == 7 else 3
        if self.minor == 3:
            self.output += struct.pack(">I", SECURITY_NONE)
            self._state = "client_init"
        else:
            self.output += bytes([1, SECURITY_NONE])
            self._state = "security"
        return True

    def _on_security(self, events: list[Event]) -> bool:
        data = self._take(1)
        if data is None:
            return False
        if data[0] != SECURITY_NONE:
            if self.minor >= 8:
                reason = b"security type not offered"
                self.output += struct.pack(">II", SECURITY_FAILED, len(reason)) + reason
            raise RfbProtocolError(f"client chose security type {data[0]}, not None (1)")
        if self.minor >= 8:
            self.output += struct.pack(">I", SECURITY_OK)
        self._state = "client_init"
        return True

    def _on_client_init(self, events: list[Event]) -> bool:
        data = self._take(1)
        if data is None:
            return False
        width, height = self._screen_size()
        self.output += server_init(width, height, DEFAULT_PIXEL_FORMAT, self.name)
        self._state = "normal"
        events.append(Initialised(data[0] != 0))
        return True

    def _on_normal(self, events: list[Event]) -> bool:
        if self._skip or not self._buf:
            return False
        kind = self._buf[0]
        length = _FIXED_LENGTH.get(kind)
        if length is None:
            raise RfbProtocolError(f"unknown client message type {kind}")
        if len(self._buf) < length:
            return False
        if kind == MSG_SET_ENCODINGS:
            count = struct.unpack_from(">H", self._buf, 2)[0]
            if count > MAX_ENCODINGS:
                raise RfbProtocolError(f"SetEncodings with {count} encodings")
            length += 4 * count
            if len(self._buf) < length:
                return False
        message = self._take(length)
        assert message is not None
        self._decode(kind, message, events)
        return True

    def _decode(self, kind: int, message: bytes, events: list[Event]) -> None:
        if kind == MSG_SET_PIXEL_FORMAT:
            pixel_format = PixelFormat.unpack(message[4:20])
            problem = pixel_format.problem()
            if problem:
                raise RfbProtocolError(f"SetPixelFormat: cannot send {problem}")
            events.append(SetPixelFormat(pixel_format))
        elif kind == MSG_SET_ENCODINGS:
            count = (len(message) - 4) // 4
            events.append(SetEncodings(struct.unpack_from(f">{count}i", message, 4)))
        elif kind == MSG_UPDATE_REQUEST:
            incremental, x, y, w, h = struct.unpack_from(">BHHHH", message, 1)
            events.append(UpdateRequest(incremental != 0, x, y, w, h))
        elif kind == MSG_KEY_EVENT:
            down, key = struct.unpack_from(">B2xI", message, 1)
            events.append(KeyEvent(down != 0, key))
        elif kind == MSG_POINTER_EVENT:
            buttons, x, y = struct.unpack_from(">BHH", message, 1)
            events.append(PointerEvent(buttons, x, y))
        elif kind == MSG_CLIENT_CUT_TEXT:
            # The clipboard is not shared with the guest: its text is read and dropped,
            # whatever its length, without keeping it.
            (length,) = struct.unpack_from(">I", message, 4)
            taken = min(length, len(self._buf))
            del self._buf[:taken]
            self._skip = length - taken


__all__ = ["RfbSession", "RfbProtocolError", "PixelFormat", "DEFAULT_PIXEL_FORMAT",
           "Initialised", "SetPixelFormat", "SetEncodings", "UpdateRequest", "KeyEvent",
           "PointerEvent", "update_header", "rect_header", "server_init", "ENC_RAW",
           "ENC_ZLIB", "ENC_ZRLE", "ENC_DESKTOP_SIZE", "PIXEL_ENCODINGS"]
