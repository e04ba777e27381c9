"""A VNC server: the guest's screen for any RFB viewer, and its keys back to the guest.

It lives in the machine's event loop (no thread of its own) and only ever does non-blocking
socket calls there, so a slow or vanished viewer never holds up the loop or a vCPU:
- output waits in a per-client buffer; while that holds more than `LOW_WATER` bytes the
  client gets no new update, only more damage, so a client that falls behind gets the
  newest picture of what changed when it catches up (updates are coalesced, never queued);
- the loop has no write readiness, so a buffer the socket did not take is retried on a
  short timer, which only rings a wake-up pipe: all socket work and encoding happen in
  file-descriptor callbacks, which run without the device lock (timers hold it);
- a client that breaks the protocol is logged and closed, and only that client.

Frames come from a `FrameFeed` (the machine's display hub) which calls `show()` with each new
frame and the rectangle that changed. The protocol itself is in rfb.py and the encodings in
rfb_encode.py.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from ...errors import HostError
from .frame import Frame, KeyEventSink
from .rfb import (ENC_DESKTOP_SIZE, ENC_RAW, PIXEL_ENCODINGS, DEFAULT_PIXEL_FORMAT,
                  Initialised, KeyEvent, PixelFormat, RfbProtocolError, RfbSession,
                  SetEncodings, SetPixelFormat, UpdateRequest, rect_header, update_header)
from .rfb_encode import Encoder, new_encoder

log = logging.getLogger("pyhvm.vnc")

VNC_BASE_PORT = 5900
MAX_CLIENTS = 16
LOW_WATER = 256 << 10  # a client's unsent bytes above which it gets no new update
RECV_SIZE = 65536
FLUSH_RETRY_NS = 5_000_000  # a full socket buffer is retried this often

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1: half-open


class FrameFeed(Protocol):
    """Where the server's frames come from (machine/displays.py's hub)."""

    def latest(self) -> Frame:
        """The newest frame, rendering one if there is none yet."""

    def watch(self, owner: object, period_ns: int | None) -> None:
        """Refresh at least every `period_ns` for `owner`; None: `owner` no longer needs it."""


class Loop(Protocol):
    """The parts of the machine's event loop (runtime/eventloop.py) the server uses."""

    def now_ns(self) -> int: ...

    def call_at(self, deadline_ns: int, callback: Callable[[], None]) -> object: ...

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None: ...

    def remove_reader(self, fd: int) -> None: ...


def union(a: Rect | None, b: Rect | None) -> Rect | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def intersect(a: Rect | None, b: Rect | None) -> Rect | None:
    if a is None or b is None:
        return None
    r = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return r if r[0] < r[2] and r[1] < r[3] else None


def contains(outer: Rect, inner: Rect) -> bool:
    return (outer[0] <= inner[0] and outer[1] <= inner[1]
            and outer[2] >= inner[2] and outer[3] >= inner[3])


def region(frame: Frame, rect: Rect) -> np.ndarray:
    """The frame's pixels in `rect`; black where `rect` goes past the frame (a client that
    cannot resize keeps its old size)."""
    x0, y0, x1, y1 = rect
    if x1 <= frame.width and y1 <= frame.height:
        return frame.pixels[y0:y1, x0:x1]
    out = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
    part = frame.pixels[y0:min(y1, frame.height), x0:min(x1, frame.width)]
    out[:part.shape[0], :part.shape[1]] = part
    return out


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    fd: int
    peer: str
    session: RfbSession
    out: bytearray = field(default_factory=bytearray)
    pixel_format: PixelFormat = DEFAULT_PIXEL_FORMAT
    encoding: int = ENC_RAW
    encoders: dict[int, Encoder] = field(default_factory=dict)  # one zlib stream each
    desktop_size: bool = False
    size: tuple[int, int] = (0, 0)  # the framebuffer size the client believes in
    requested: Rect | None = None  # areas asked for and not yet answered
    forced: Rect | None = None  # of those, asked non-incrementally: sent even if unchanged
    damage: Rect | None = None  # changed since the client last got it

    def encoder(self) -> Encoder:
        if self.encoding not in self.encoders:
            self.encoders[self.encoding] = new_encoder(self.encoding)
        return self.encoders[self.encoding]


class VncServer:
    """Serves one screen to up to `MAX_CLIENTS` viewers; see the module docstring."""

    def __init__(self, loop: Loop, feed: FrameFeed, keys: KeyEventSink, host: str, port: int,
                 *, name: str = "pyhvm", period_ns: int = 33_333_333) -> None:
        self.loop = loop
        self.feed = feed
        self.keys = keys
        self.host, self.port = host, port
        self.name = name
        self.period_ns = period_ns
        self.clients: dict[int, _Client] = {}
        self.updates_sent = 0
        self._frame: Frame | None = None
        self._listener: socket.socket | None = None
        self._wake_r = self._wake_w = -1
        self._retry_due = False

    # --- setting up and down ---------------------------------------------------------------
    def listen(self) -> tuple[str, int]:
        """Bind and serve from the loop; the address bound (port 0 picks a free one)."""
        try:
            infos = socket.getaddrinfo(self.host or None, self.port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        except socket.gaierror as err:
            raise HostError(f"VNC: cannot resolve {self.host!r}: {err.strerror}") from None
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(8)
        except OSError as err:
            sock.close()
            raise HostError(f"VNC: cannot listen on {self.host or '*'}:{self.port}: "
                            f"{err.strerror}") from None
        sock.setblocking(False)
        self._listener = sock
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.loop.add_reader(sock.fileno(), self._guard(self._accept_ready))
        self.loop.add_reader(self._wake_r, self._guard(self._wake))
        bound = sock.getsockname()
        self.host, self.port = bound[0], bound[1]
        log.info("VNC server on %s:%d", self.host, self.port)
        return self.host, self.port

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._drop(client, None)
        if self._listener is not None:
            self._unregister(self._listener.fileno())
            self._listener.close()
            self._listener = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                if fd == self._wake_r:
                    self._unregister(fd)
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _unregister(self, fd: int) -> None:
        try:
            self.loop.remove_reader(fd)
        except (KeyError, ValueError, OSError):
            pass

    @staticmethod
    def _guard(callback: Callable[[], None]) -> Callable[[], None]:
        """Whatever goes wrong serving a viewer, the VM goes on."""
        def guarded() -> None:
            try:
                callback()
            except Exception:
                log.exception("VNC server error (the VM keeps running)")
        return guarded

    # --- frames ----------------------------------------------------------------------------
    def show(self, frame: Frame, damage: Rect | None) -> None:
        """A new frame; `damage` is what changed since the previous one (None: all of it,
        as after a mode change). Called in the loop thread without the device lock."""
        self._frame = frame
        for client in self.clients.values():
            if damage is None:  # everything, including what a client that cannot resize
                # still shows past the edge of a smaller new screen (now black)
                width, height = client.size
                client.damage = (0, 0, max(width, frame.width), max(height, frame.height))
            else:
                client.damage = union(client.damage, damage)
        self._pump()

    # --- clients ---------------------------------------------------------------------------
    def _accept_ready(self) -> None:
        assert self._listener is not None
        for _ in range(MAX_CLIENTS):
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # EMFILE and friends: try again on the next event
                log.warning("VNC accept failed: %s", err)
                return
            peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else "?"
            if len(self.clients) >= MAX_CLIENTS:
                log.warning("VNC client %s refused: %d clients already", peer, MAX_CLIENTS)
                sock.close()
                continue
            sock.setblocking(False)
            session = RfbSession(self.name, self._screen_size)
            client = _Client(sock, sock.fileno(), peer, session)
            self.clients[client.fd] = client
            self.loop.add_reader(client.fd, self._guard(lambda c=client: self._readable(c)))
            client.out += session.greeting()
            self._flush(client)
            log.info("VNC client %s connected", peer)

    def _screen_size(self) -> tuple[int, int]:
        if self._frame is None:
            self._frame = self.feed.latest()
        return self._frame.width, self._frame.height

    def _readable(self, client: _Client) -> None:
        try:
            data = client.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            self._drop(client, f"read failed ({err.strerror or err})")
            return
        if not data:
            self._drop(client, None)
            return
        try:
            events = client.session.feed(data)
        except RfbProtocolError as err:
            client.out += client.session.output
            self._flush(client)
            self._drop(client, str(err))
            return
        except HostError as err:  # no picture for ServerInit (the machine is busy)
            self._drop(client, str(err))
            return
        if client.session.output:
            client.out += client.session.output
            client.session.output.clear()
        for event in events:
            self._handle(client, event)
        if self.clients.get(client.fd) is client:
            self._service(client)
            self._flush(client)

    def _handle(self, client: _Client, event: object) -> None:
        if isinstance(event, UpdateRequest):
            rect = intersect((event.x, event.y, event.x + event.width, event.y + event.height),
                             (0, 0) + client.size)
            if rect is None:
                return
            client.requested = union(client.requested, rect)
            if not event.incremental:
                client.forced = union(client.forced, rect)
        elif isinstance(event, KeyEvent):
            try:
                self.keys(event.keysym, event.down)
            except Exception:
                log.exception("VNC key event %#x lost", event.keysym)
        elif isinstance(event, SetPixelFormat):
            client.pixel_format = event.pixel_format
        elif isinstance(event, SetEncodings):
            client.encoding = next((e for e in event.encodings if e in PIXEL_ENCODINGS),
                                   ENC_RAW)
            client.desktop_size = ENC_DESKTOP_SIZE in event.encodings
        elif isinstance(event, Initialised):
            assert self._frame is not None  # ServerInit asked for its size
            client.size = (self._frame.width, self._frame.height)
            self.feed.watch(self, self.period_ns)  # refresh while someone watches
        # PointerEvent: there is no mouse to move.

    def _service(self, client: _Client) -> None:
        """Send one update if the client asked for one and something is due."""
        frame = self._frame
        if (frame is None or client.requested is None or not client.session.initialised
                or len(client.out) >= LOW_WATER):
            return
        rects: list[bytes] = []
        if (frame.width, frame.height) != client.size and client.desktop_size:
            # RFC 6143 7.8.2: announce the new size, then everything is new.
            client.size = (frame.width, frame.height)
            client.requested = client.forced = (0, 0, frame.width, frame.height)
            client.damage = None
            rects.append(rect_header(0, 0, frame.width, frame.height, ENC_DESKTOP_SIZE))
        area = union(client.forced, intersect(client.damage, client.requested))
        area = intersect(area, (0, 0) + client.size)
        if area is None and not rects:
            return  # an incremental request with nothing new: it waits
        if area is not None:
            x0, y0, x1, y1 = area
            encoder = client.encoder()
            payload = encoder.encode(region(frame, area), client.pixel_format)
            rects.append(rect_header(x0, y0, x1 - x0, y1 - y0, encoder.encoding) + payload)
            if client.damage is not None and contains(area, client.damage):
                client.damage = None
        client.out += update_header(len(rects))
        for rect in rects:
            client.out += rect
        client.requested = client.forced = None
        self.updates_sent += 1

    # --- output ----------------------------------------------------------------------------
    def _flush(self, client: _Client) -> None:
        while client.out:
            try:
                sent = client.sock.send(client.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as err:
                self._drop(client, f"write failed ({err.strerror or err})")
                return
            del client.out[:sent]
        if client.out and not self._retry_due:
            self._retry_due = True
            self.loop.call_at(self.loop.now_ns() + FLUSH_RETRY_NS, self._ring)

    def _ring(self) -> None:
        """Timer callback (device lock held): do nothing here but wake the loop."""
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass  # the pipe is full (a wake-up is pending anyway) or closed

    def _wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        self._retry_due = False
        self._pump()

    def _pump(self) -> None:
        """Flush every client, then give an update to those that can take one."""
        for client in list(self.clients.values()):
            if client.out:
                self._flush(client)
            if self.clients.get(client.fd) is client:
                self._service(client)
                if client.out:
                    self._flush(client)

    def _drop(self, client: _Client, reason: str | None) -> None:
        if self.clients.get(client.fd) is not client:
            return
        del self.clients[client.fd]
        if reason:
            log.warning("VNC client %s: %s; closing it", client.peer, reason)
        else:
            log.info("VNC client %s disconnected", client.peer)
        self._unregister(client.fd)
        client.sock.close()
        if not any(c.session.initialised for c in self.clients.values()):
            self.feed.watch(self, None)


__all__ = ["VncServer", "FrameFeed", "VNC_BASE_PORT", "LOW_WATER", "MAX_CLIENTS"]
