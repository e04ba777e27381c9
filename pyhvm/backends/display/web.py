"""The web display (`--display web:[HOST:]PORT`): a page with a canvas, fed over a WebSocket.

GET / serves the page (web_page.py); the page opens /ws, and the server sends it PNG
rectangles of what changed, one at a time: the next only after the page has drawn the last
and said so (`{"t":"ack"}`), so a slow browser gets fewer, newer pictures rather than a
queue. Keys come back as keysyms (`{"t":"key","k":KEYSYM,"d":true}`) to the same sink as
the VNC server's.

Like the VNC server it runs on server.py's loop-server plumbing: output is bounded per
connection (`LOW_WATER` plus one update), a full socket buffer is retried on a timer that
only rings a wake-up pipe, and a peer that breaks HTTP or the WebSocket protocol is logged
and closed alone. A WebSocket whose Origin is not this server
is refused, so another site open in the same browser cannot type into the guest.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .frame import Frame
from .png import encode_png
from .server import LOW_WATER, MAX_CLIENTS, Client, FrameServer, Rect, intersect, region, union
from .web_page import page
from .websocket import (CLOSE_NORMAL, CLOSE_UNSUPPORTED, OP_BINARY, OP_CLOSE, OP_PING,
                        OP_PONG, OP_TEXT, HttpError, WsDecoder, WsProtocolError, close_frame,
                        encode_frame, http_response, parse_request, upgrade_response)

log = logging.getLogger("pyhvm.web")

MAX_CONNECTIONS = MAX_CLIENTS
HANGUP_GRACE_NS = 2_000_000_000  # after our last byte, how long the peer has to hang up
PNG_LEVEL = 1  # fast: the encoder runs on the event loop
UPDATE = 1  # message kind: a PNG rectangle
UPDATE_HEADER = struct.Struct(">BHHHHHH")  # kind, x, y, w, h, screen w, screen h


@dataclass(eq=False)
class _Conn(Client):
    inbuf: bytearray = field(default_factory=bytearray)
    websocket: WsDecoder | None = None  # set once upgraded
    closing: bool = False  # close once `out` is sent
    shut_at: int | None = None  # when our side was shut: the peer has a grace to hang up
    ready: bool = False  # the page drew the last update
    full: bool = False  # owes the page the whole screen
    damage: Rect | None = None


class WebDisplay(FrameServer[_Conn]):
    """Serves the page and its WebSocket to up to `MAX_CONNECTIONS` browsers."""

    LABEL = "web display"
    ANNOUNCE = "web display on http://%s:%d/"
    LOG_HANGUPS = False  # every page fetch is a connection of its own
    log = log

    # --- frames ------------------------------------------------------------------------------
    def show(self, frame: Frame, damage: Rect | None) -> None:
        self._frame = frame
        for conn in self.clients.values():
            if damage is None:
                conn.full = True
            else:
                conn.damage = union(conn.damage, damage)
        self._pump()

    # --- connections ------------------------------------------------------------------------
    def _new_client(self, sock: socket.socket, peer: str) -> _Conn:
        return _Conn(sock, sock.fileno(), peer)

    def _watching(self, conn: _Conn) -> bool:
        return conn.websocket is not None

    def _readable(self, conn: _Conn) -> None:
        data = self._receive(conn)
        if data is None or conn.closing:
            return
        try:
            if conn.websocket is None:
                self._http(conn, data)
            else:
                self._messages(conn, data)
        except HttpError as err:
            conn.out += http_response(err.status, err.reason, err.reason.encode())
            self._close_after_output(conn, str(err))
        except WsProtocolError as err:
            conn.out += close_frame(err.code, str(err))
            self._close_after_output(conn, f"WebSocket: {err}")
        if self._alive(conn):
            self._service(conn)
            self._flush(conn)

    def _http(self, conn: _Conn, data: bytes) -> None:
        conn.inbuf += data
        parsed = parse_request(conn.inbuf)
        if parsed is None:
            return
        request, length = parsed
        del conn.inbuf[:length]
        path = urlsplit(request.path).path
        if path == "/ws":
            origin = request.headers.get("origin")
            if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
                raise HttpError(403, "cross-origin WebSocket refused")
            conn.out += upgrade_response(request)
            conn.websocket = WsDecoder()
            conn.ready = conn.full = True
            if self._frame is None:
                self._frame = self.feed.latest()
            self.feed.watch(self, self.period_ns)
            log.info("web display client %s connected", conn.peer)
            if conn.inbuf:
                self._messages(conn, b"")
        elif request.method not in ("GET", "HEAD"):
            raise HttpError(405, "method not allowed")
        elif path in ("/", "/index.html"):
            body = page(self.name)
            response = http_response(200, "OK", body, "text/html; charset=utf-8")
            if request.method == "HEAD":
                response = response[:len(response) - len(body)]
            conn.out += response
            self._close_after_output(conn, None)
        else:
            raise HttpError(404, "not found")

    def _messages(self, conn: _Conn, data: bytes) -> None:
        assert conn.websocket is not None
        if conn.inbuf:  # bytes that came with the upgrade request
            data, conn.inbuf = bytes(conn.inbuf) + data, bytearray()
        for opcode, payload in conn.websocket.feed(data):
            if opcode == OP_TEXT:
                self._text(conn, payload)
            elif opcode == OP_PING:
                conn.out += encode_frame(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                conn.out += close_frame(CLOSE_NORMAL)
                self._close_after_output(conn, None)
                return
            elif opcode == OP_BINARY:
                raise WsProtocolError(CLOSE_UNSUPPORTED, "binary messages are not expected")

    def _text(self, conn: _Conn, payload: bytes) -> None:
        try:
            message = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise WsProtocolError(CLOSE_UNSUPPORTED, "a message that is not JSON") from None
        kind = message.get("t") if isinstance(message, dict) else None
        if kind == "ack":
            conn.ready = True
        elif kind == "key":
            keysym, down = message.get("k"), message.get("d")
            if not (isinstance(keysym, int) and 0 <= keysym <= 0xFFFFFFFF
                    and isinstance(down, bool)):
                raise WsProtocolError(CLOSE_UNSUPPORTED, "a key message without k and d")
            try:
                self.keys(keysym, down)
            except Exception:
                log.exception("web display key event %#x lost", keysym)
        else:
            raise WsProtocolError(CLOSE_UNSUPPORTED, f"unknown message {kind!r}")

    def _service(self, conn: _Conn) -> None:
        frame = self._frame
        if (frame is None or conn.websocket is None or conn.closing or not conn.ready
                or len(conn.out) >= LOW_WATER):
            return
        everything = (0, 0, frame.width, frame.height)
        area = everything if conn.full else intersect(conn.damage, everything)
        if area is None:
            return
        x0, y0, x1, y1 = area
        picture = encode_png(region(frame, area), PNG_LEVEL)
        conn.out += encode_frame(OP_BINARY, UPDATE_HEADER.pack(
            UPDATE, x0, y0, x1 - x0, y1 - y0, frame.width, frame.height) + picture)
        conn.ready = conn.full = False
        conn.damage = None
        self.updates_sent += 1

    # --- output -----------------------------------------------------------------------------
    def _close_after_output(self, conn: _Conn, reason: str | None) -> None:
        if reason:
            log.warning("web display client %s: %s; closing it", conn.peer, reason)
        conn.closing = True
        self._flush(conn)

    def _flushed(self, conn: _Conn) -> None:
        if conn.closing and conn.shut_at is None:
            # Half-close and wait for the peer's EOF: closing at once, with its bytes
            # unread, could reset the connection and lose what we just sent.
            conn.shut_at = self.loop.now_ns()
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._drop(conn, None)
            else:
                self.loop.call_at(conn.shut_at + HANGUP_GRACE_NS, self._ring)

    def _pump(self) -> None:
        """Drop the half-closed connections whose peer did not hang up in time, then as
        for every server."""
        now = self.loop.now_ns()
        for conn in list(self.clients.values()):
            if conn.shut_at is not None and now - conn.shut_at >= HANGUP_GRACE_NS:
                self._drop(conn, None)
        super()._pump()


__all__ = ["WebDisplay", "UPDATE_HEADER", "MAX_CONNECTIONS", "LOW_WATER"]
