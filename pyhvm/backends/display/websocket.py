"""HTTP/1.1 requests and WebSocket framing (RFC 6455), server side, as pure functions and a
decoder object: bytes in, messages out. The web display (web.py) does the sockets.

Only what a browser page talking to its own server needs: one GET per connection (the page,
or the upgrade to a WebSocket), client frames masked as the RFC requires, fragmented
messages reassembled up to a small limit, ping/pong and close. A peer that breaks the
protocol gets `WsProtocolError` (or `HttpError` before the upgrade) and is closed.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

import numpy as np

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
MAX_REQUEST = 16 << 10  # bytes of request line and headers
MAX_MESSAGE = 64 << 10  # a client's message (keys, acknowledgements) is tiny

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_UNSUPPORTED, CLOSE_TOO_BIG = 1000, 1002, 1003, 1009


class HttpError(Exception):
    """A request we answer with an error status, then close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


class WsProtocolError(Exception):
    """The peer broke RFC 6455; `code` is the close status to send."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased

    def header_has(self, name: str, token: str) -> bool:
        """Whether a comma-separated header lists `token` (case-insensitive)."""
        values = self.headers.get(name, "").lower().split(",")
        return token.lower() in (v.strip() for v in values)


def parse_request(data: bytes | bytearray) -> tuple[HttpRequest, int] | None:
    """The request at the start of `data` and its length; None while incomplete."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_REQUEST:
            raise HttpError(431, "request header fields too large")
        return None
    try:
        text = bytes(data[:end]).decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "request is not ASCII") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "bad header line")
        headers[name.lower()] = value.strip()
    return HttpRequest(parts[0], parts[1], headers), end + 4


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode()


def upgrade_response(request: HttpRequest) -> bytes:
    """101 Switching Protocols for a valid WebSocket opening handshake (RFC 6455 4.2.1)."""
    if request.method != "GET":
        raise HttpError(405, "a WebSocket opens with GET")
    if not (request.header_has("upgrade", "websocket")
            and request.header_has("connection", "upgrade")):
        raise HttpError(400, "not a WebSocket upgrade")
    if request.headers.get("sec-websocket-version") != "13":
        raise HttpError(426, "WebSocket version 13 only")
    key = request.headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except ValueError:
        raise HttpError(400, "bad Sec-WebSocket-Key") from None
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_key(key)}\r\n\r\n").encode()


def http_response(status: int, reason: str, body: bytes = b"",
                  content_type: str = "text/plain; charset=utf-8") -> bytes:
    """A complete response; the connection closes after it."""
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
            "Connection: close\r\n\r\n").encode() + body


def encode_frame(opcode: int, payload: bytes = b"") -> bytes:
    """One unfragmented, unmasked server frame."""
    n = len(payload)
    if n < 126:
        header = struct.pack(">BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        header = struct.pack(">BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack(">BBQ", 0x80 | opcode, 127, n)
    return header + payload


def close_frame(code: int, reason: str = "") -> bytes:
    return encode_frame(OP_CLOSE, struct.pack(">H", code) + reason.encode()[:120])


def unmask(payload: bytes, key: bytes) -> bytes:
    data = np.frombuffer(payload, dtype=np.uint8)
    mask = np.resize(np.frombuffer(key, dtype=np.uint8), len(data))
    return (data ^ mask).tobytes()


class WsDecoder:
    """Client frames in, whole messages out: (opcode, payload), with text and binary
    messages reassembled from their fragments and control frames passed as they come."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._buf = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_op: int | None = None

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        messages: list[tuple[int, bytes]] = []
        while True:
            frame = self._frame()
            if frame is None:
                return messages
            fin, opcode, payload = frame
            message = self._assemble(fin, opcode, payload)
            if message is not None:
                messages.append(message)

    def _frame(self) -> tuple[bool, int, bytes] | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        if first & 0x70:
            raise WsProtocolError(CLOSE_PROTOCOL, "reserved bits set (no extension agreed)")
        if not second & 0x80:
            raise WsProtocolError(CLOSE_PROTOCOL, "client frame not masked")
        length, pos = second & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, pos = struct.unpack_from(">H", buf, 2)[0], 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, pos = struct.unpack_from(">Q", buf, 2)[0], 10
        if length > self.max_message:
            raise WsProtocolError(CLOSE_TOO_BIG, f"frame of {length} bytes")
        if len(buf) < pos + 4 + length:
            return None
        key = bytes(buf[pos:pos + 4])
        payload = unmask(bytes(buf[pos + 4:pos + 4 + length]), key)
        del buf[:pos + 4 + length]
        return bool(first & 0x80), first & 0x0F, payload

    def _assemble(self, fin: bool, opcode: int, payload: bytes) -> tuple[int, bytes] | None:
        if opcode >= OP_CLOSE:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                raise WsProtocolError(CLOSE_PROTOCOL, f"unknown control opcode {opcode}")
            if not fin or len(payload) > 125:
                raise WsProtocolError(CLOSE_PROTOCOL, "fragmented or long control frame")
            return opcode, payload
        if opcode == OP_CONTINUATION:
            if self._fragment_op is None:
                raise WsProtocolError(CLOSE_PROTOCOL, "continuation without a message")
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._fragment_op is not None:
                raise WsProtocolError(CLOSE_PROTOCOL, "new message inside a fragmented one")
            self._fragment_op = opcode
        else:
            raise WsProtocolError(CLOSE_PROTOCOL, f"unknown data opcode {opcode}")
        self._fragments.append(payload)
        if sum(len(f) for f in self._fragments) > self.max_message:
            raise WsProtocolError(CLOSE_TOO_BIG, "message too large")
        if not fin:
            return None
        message = (self._fragment_op, b"".join(self._fragments))
        self._fragments, self._fragment_op = [], None
        return message


__all__ = ["HttpError", "HttpRequest", "WsProtocolError", "WsDecoder", "parse_request",
           "accept_key", "upgrade_response", "http_response", "encode_frame", "close_frame"]
