"""A small blocking WebSocket client for tests (RFC 6455, written independently of the
server): the opening handshake, masked frames out, messages in (fragments reassembled).
Also used to drive Chromium over its DevTools protocol."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
from typing import Any

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WsClient:
    def __init__(self, host: str, port: int, path: str = "/",
                 headers: dict[str, str] | None = None, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._buf = b""
        while b"\r\n\r\n" not in self._buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError(f"closed during the handshake: {self._buf!r}")
            self._buf += chunk
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        self.status_line = head.split(b"\r\n")[0].decode()
        if " 101 " not in self.status_line:
            raise ConnectionRefusedError(self.status_line)
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        assert headers.get("sec-websocket-accept") == want, headers

    def send(self, payload: bytes, opcode: int = 0x1, fin: bool = True) -> None:
        mask = os.urandom(4)
        n = len(payload)
        first = (0x80 if fin else 0) | opcode
        if n < 126:
            header = struct.pack(">BB", first, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack(">BBH", first, 0x80 | 126, n)
        else:
            header = struct.pack(">BBQ", first, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_json(self, message: Any) -> None:
        self.send(json.dumps(message).encode())

    def _recv(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def recv(self) -> tuple[int, bytes]:
        """The next message: (opcode, payload); control frames come back as they are."""
        parts: list[bytes] = []
        message_op = None
        while True:
            first, second = self._recv(2)
            assert not second & 0x80, "a server frame must not be masked"
            n = second & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv(8))[0]
            payload = self._recv(n)
            opcode = first & 0x0F
            if opcode >= 0x8:
                return opcode, payload
            if opcode != 0:
                message_op = opcode
            parts.append(payload)
            if first & 0x80:
                assert message_op is not None
                return message_op, b"".join(parts)

    def close(self) -> None:
        self.sock.close()
