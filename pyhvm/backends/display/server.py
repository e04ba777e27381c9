"""What the VNC server and the web display share: a listening socket in the event loop,
clients with bounded output, and the wake-up pipe that retries what a socket did not take.

Both live in the machine's event loop (no thread of their own) and only ever do non-blocking
socket calls there, so a slow or vanished client never holds up the loop or a vCPU:
- output waits in a per-client buffer; a subclass gives a client no new update while that
  holds more than `LOW_WATER` bytes, so a client that falls behind gets newer pictures, not
  a queue;
- the loop has no write readiness, so a buffer the socket did not take is retried on a
  short timer, which only rings a `Doorbell`: all socket work and encoding happen in
  file-descriptor callbacks, which run without the device lock (timers hold it);
- whatever goes wrong serving one client is logged and closes that client alone.

The rectangle helpers and the protocols of the frame feed and the loop are here too.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, ClassVar, Generic, Protocol, TypeVar

import numpy as np

from ...errors import HostError
from .frame import Frame, KeyEventSink

log = logging.getLogger("pyhvm.display")

MAX_CLIENTS = 16
LOW_WATER = 256 << 10  # a client's unsent bytes above which it gets no new update
RECV_SIZE = 65536
FLUSH_RETRY_NS = 5_000_000  # a full socket buffer is retried this often

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1: half-open


class FrameFeed(Protocol):
    """Where a server's frames come from (machine/displays.py's hub)."""

    def latest(self) -> Frame:
        """The newest frame, rendering one if there is none yet."""

    def watch(self, owner: object, period_ns: int | None) -> None:
        """Refresh at least every `period_ns` for `owner`; None: `owner` no longer needs it."""


class Loop(Protocol):
    """The parts of the machine's event loop (runtime/eventloop.py) the servers use."""

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


class Doorbell:
    """A wake-up pipe in the event loop: `ring()` from a timer (device lock held) or any
    thread; `callback` then runs in the loop thread without the device lock."""

    def __init__(self, loop: Loop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        loop.add_reader(self._r, self._answer)

    def ring(self) -> None:
        try:
            os.write(self._w, b"\0")
        except OSError:
            pass  # full (a wake-up is pending anyway) or closed

    def _answer(self) -> None:
        try:
            while os.read(self._r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        try:
            self._callback()
        except Exception:
            log.exception("display error (the VM keeps running)")

    def close(self) -> None:
        if self._r < 0:
            return
        try:
            self._loop.remove_reader(self._r)
        except (KeyError, ValueError, OSError):
            pass
        os.close(self._r)
        os.close(self._w)
        self._r = self._w = -1


@dataclass(eq=False)
class Client:
    """One connection: its socket and the bytes it has not taken yet."""
    sock: socket.socket
    fd: int
    peer: str
    out: bytearray = field(default_factory=bytearray)


C = TypeVar("C", bound=Client)


class FrameServer(Generic[C]):
    """Listens, accepts up to `MAX_CLIENTS`, reads, flushes and drops clients; a subclass
    makes its clients (`_new_client`), reads their bytes (`_readable`), tells whether one
    watches the screen (`_watching`) and decides what to send (`show`, `_service`)."""

    LABEL: ClassVar[str] = "display"  # leads its messages: "VNC", "web display"
    ANNOUNCE: ClassVar[str] = "display on %s:%d"  # logged with the address bound
    LOG_HANGUPS: ClassVar[bool] = True  # log a client's orderly hang-up (info)
    log: ClassVar[logging.Logger] = log

    def __init__(self, loop: Loop, feed: FrameFeed, keys: KeyEventSink, host: str, port: int,
                 *, name: str = "pyhvm", period_ns: int = 33_333_333) -> None:
        self.loop = loop
        self.feed = feed
        self.keys = keys
        self.host, self.port = host, port
        self.name = name
        self.period_ns = period_ns
        self.clients: dict[int, C] = {}
        self.updates_sent = 0
        self._frame: Frame | None = None
        self._listener: socket.socket | None = None
        self._bell: Doorbell | None = None
        self._retry_due = False

    # --- what a subclass provides ------------------------------------------------------------
    def _new_client(self, sock: socket.socket, peer: str) -> C:
        raise NotImplementedError

    def _connected(self, client: C) -> None:
        """Just accepted and registered: greet it if the protocol wants that."""

    def _readable(self, client: C) -> None:
        raise NotImplementedError

    def _service(self, client: C) -> None:
        """Queue an update in `client.out` if one is due."""

    def _watching(self, client: C) -> bool:
        """Whether `client` watches the screen (the feed refreshes while one does)."""
        raise NotImplementedError

    def _flushed(self, client: C) -> None:
        """All of `client.out` was sent."""

    # --- setting up and down -----------------------------------------------------------------
    def listen(self) -> tuple[str, int]:
        """Bind and serve from the loop; the address bound (port 0 picks a free one)."""
        try:
            infos = socket.getaddrinfo(self.host or None, self.port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        except socket.gaierror as err:
            raise HostError(f"{self.LABEL}: cannot resolve {self.host!r}: "
                            f"{err.strerror}") from None
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(8)
        except OSError as err:
            sock.close()
            raise HostError(f"{self.LABEL}: cannot listen on {self.host or '*'}:{self.port}: "
                            f"{err.strerror}") from None
        sock.setblocking(False)
        self._listener = sock
        self.loop.add_reader(sock.fileno(), self._guard(self._accept_ready))
        self._bell = Doorbell(self.loop, self._guard(self._wake))
        self.host, self.port = sock.getsockname()[:2]
        self.log.info(self.ANNOUNCE, self.host, self.port)
        return self.host, self.port

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._drop(client, None)
        if self._listener is not None:
            self._unregister(self._listener.fileno())
            self._listener.close()
            self._listener = None
        if self._bell is not None:
            self._bell.close()

    def _unregister(self, fd: int) -> None:
        try:
            self.loop.remove_reader(fd)
        except (KeyError, ValueError, OSError):
            pass

    def _guard(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Whatever goes wrong serving a client, the VM goes on."""
        def guarded() -> None:
            try:
                callback()
            except Exception:
                self.log.exception("%s error (the VM keeps running)", self.LABEL)
        return guarded

    # --- clients -----------------------------------------------------------------------------
    def _accept_ready(self) -> None:
        assert self._listener is not None
        for _ in range(MAX_CLIENTS):
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # EMFILE and friends: try again on the next event
                self.log.warning("%s accept failed: %s", self.LABEL, err)
                return
            peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else "?"
            if len(self.clients) >= MAX_CLIENTS:
                self.log.warning("%s client %s refused: %d clients already", self.LABEL, peer,
                                 MAX_CLIENTS)
                sock.close()
                continue
            sock.setblocking(False)
            client = self._new_client(sock, peer)
            self.clients[client.fd] = client
            self.loop.add_reader(client.fd, self._guard(partial(self._readable, client)))
            self._connected(client)

    def _receive(self, client: C) -> bytes | None:
        """What `client` sent; None when there is nothing (it may have been dropped)."""
        try:
            data = client.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as err:
            self._drop(client, f"read failed ({err.strerror or err})")
            return None
        if not data:
            self._drop(client, None)
            return None
        return data

    def _alive(self, client: C) -> bool:
        return self.clients.get(client.fd) is client

    # --- output ------------------------------------------------------------------------------
    def _flush(self, client: C) -> None:
        while client.out:
            try:
                sent = client.sock.send(client.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as err:
                self._drop(client, f"write failed ({err.strerror or err})")
                return
            del client.out[:sent]
        if client.out:
            if not self._retry_due:
                self._retry_due = True
                self.loop.call_at(self.loop.now_ns() + FLUSH_RETRY_NS, self._ring)
        else:
            self._flushed(client)

    def _ring(self) -> None:
        """Timer callback (device lock held): do nothing here but wake the loop."""
        if self._bell is not None:
            self._bell.ring()

    def _wake(self) -> None:
        self._retry_due = False
        self._pump()

    def _pump(self) -> None:
        """Flush every client, then give an update to those that can take one."""
        for client in list(self.clients.values()):
            if client.out:
                self._flush(client)
            if self._alive(client):
                self._service(client)
                if client.out:
                    self._flush(client)

    def _drop(self, client: C, reason: str | None) -> None:
        if not self._alive(client):
            return
        del self.clients[client.fd]
        if reason:
            self.log.warning("%s client %s: %s; closing it", self.LABEL, client.peer, reason)
        elif self.LOG_HANGUPS:
            self.log.info("%s client %s disconnected", self.LABEL, client.peer)
        self._unregister(client.fd)
        client.sock.close()
        if not any(self._watching(c) for c in self.clients.values()):
            self.feed.watch(self, None)


__all__ = ["FrameServer", "Client", "Doorbell", "FrameFeed", "Loop", "Rect", "LOW_WATER",
           "MAX_CLIENTS", "union", "intersect", "contains", "region"]
