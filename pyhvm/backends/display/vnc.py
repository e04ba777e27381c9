"""A VNC server: the guest's screen for any RFB viewer, and its keys back to the guest.

It runs on the shared loop-server plumbing of server.py (bounded per-client output, retries
rung through a wake-up pipe, one misbehaving client closed alone). Output for a client that
holds more than `LOW_WATER` unsent bytes gets no new update, only more damage, so a client
that falls behind gets the newest picture of what changed when it catches up (updates are
coalesced, never queued); a client that breaks the protocol is logged and closed.

Frames come from a `FrameFeed` (the machine's display hub) which calls `show()` with each new
frame and the rectangle that changed. The protocol itself is in rfb.py and the encodings in
rfb_encode.py.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field

from ...errors import HostError
from .frame import Frame
from .rfb import (ENC_DESKTOP_SIZE, ENC_RAW, PIXEL_ENCODINGS, DEFAULT_PIXEL_FORMAT,
                  Initialised, KeyEvent, PixelFormat, RfbProtocolError, RfbSession,
                  SetEncodings, SetPixelFormat, UpdateRequest, rect_header, update_header)
from .rfb_encode import Encoder, new_encoder
from .server import (LOW_WATER, MAX_CLIENTS, Client, FrameFeed, FrameServer, Loop, Rect,
                     contains, intersect, region, union)

log = logging.getLogger("pyhvm.vnc")

VNC_BASE_PORT = 5900


@dataclass(eq=False)
class _Client(Client):
    session: RfbSession = field(kw_only=True)
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


class VncServer(FrameServer[_Client]):
    """Serves one screen to up to `MAX_CLIENTS` viewers; see the module docstring."""

    LABEL = "VNC"
    ANNOUNCE = "VNC server on %s:%d"
    log = log

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
    def _new_client(self, sock: socket.socket, peer: str) -> _Client:
        return _Client(sock, sock.fileno(), peer, session=RfbSession(self.name,
                                                                      self._screen_size))

    def _connected(self, client: _Client) -> None:
        client.out += client.session.greeting()
        self._flush(client)
        log.info("VNC client %s connected", client.peer)

    def _watching(self, client: _Client) -> bool:
        return client.session.initialised

    def _screen_size(self) -> tuple[int, int]:
        if self._frame is None:
            self._frame = self.feed.latest()
        return self._frame.width, self._frame.height

    def _readable(self, client: _Client) -> None:
        data = self._receive(client)
        if data is None:
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
        if self._alive(client):
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


__all__ = ["VncServer", "FrameFeed", "Loop", "VNC_BASE_PORT", "LOW_WATER", "MAX_CLIENTS",
           "contains", "intersect", "region", "union"]
