"""The VNC server on real sockets in a real event loop, fed by the display hub from a fake
renderer; checked with the independent test client (tests/rfb_client.py)."""

from __future__ import annotations

import socket
from typing import Iterator

import numpy as np
import pytest

from pyhvm.backends.display.vnc import LOW_WATER, VncServer
from tests import display_served
from tests.display_served import WAIT_S, serve, wait_until
from tests.rfb_client import DESKTOP_SIZE, RAW, ZLIB, ZRLE, PixelFormat, RfbClient


class Served(display_served.Served[VncServer]):
    def client(self, **kwargs: object) -> RfbClient:
        return RfbClient("127.0.0.1", self.server.port, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def served() -> Iterator[Served]:
    with serve(lambda loop, hub, keys: VncServer(loop, hub, keys, "127.0.0.1", 0, name="test vm",
                                                 period_ns=10_000_000), Served) as running:
        yield running


def test_handshake_reports_the_screen_and_a_full_update_matches_it(served: Served) -> None:
    served.screen.paint(10, 20, 30, 90, (255, 255, 85))
    client = served.client()
    try:
        assert (client.width, client.height) == (160, 120)
        assert client.name == "test vm"
        assert (client.server_format.bpp, client.server_format.depth) == (32, 24)
        client.request(incremental=False)
        rects = client.read_update()
        assert rects == [(0, 0, 160, 120, RAW)]
        assert np.array_equal(client.fb, served.screen.pixels)
    finally:
        client.close()


@pytest.mark.parametrize("version", [b"RFB 003.003\n", b"RFB 003.007\n"])
def test_older_protocol_versions_are_served_too(served: Served, version: bytes) -> None:
    client = served.client(version=version)
    try:
        client.request()
        client.read_update()
        assert np.array_equal(client.fb, served.screen.pixels)
    finally:
        client.close()


@pytest.mark.parametrize("encoding", [ZRLE, ZLIB])
@pytest.mark.parametrize("pf", [None, PixelFormat(16, 16, False, 31, 63, 31, 11, 5, 0),
                                PixelFormat(32, 24, True, 255, 255, 255, 0, 8, 16)])
def test_compressed_updates_in_the_clients_pixel_format(served: Served, encoding: int,
                                                        pf: PixelFormat | None) -> None:
    rng = np.random.default_rng(3)
    with served.screen.lock:
        served.screen.pixels[60:, 80:] = rng.integers(0, 256, (60, 80, 3))
    served.screen.paint(5, 9, 0, 160, (255, 0, 0))
    client = served.client()
    try:
        client.set_encodings(encoding, RAW)
        if pf is not None:
            client.set_pixel_format(pf)
        for _ in range(2):  # a second full update goes through the same zlib stream
            client.request(incremental=False)
            rects = client.read_update()
            assert [r[4] for r in rects] == [encoding]
        if pf is None or pf.bpp == 32:
            assert np.array_equal(client.fb, served.screen.pixels)
        else:
            error = np.abs(client.fb.astype(int) - served.screen.pixels.astype(int))
            assert error.max() <= 5  # 5 or 6 bits a channel
    finally:
        client.close()


def test_incremental_updates_send_only_what_changed(served: Served) -> None:
    client = served.client()
    try:
        client.set_encodings(ZRLE)
        client.request(incremental=False)
        client.read_update()
        client.request(incremental=True)  # nothing changed: the request waits
        served.screen.paint(50, 54, 20, 28, (0, 255, 0))
        rects = client.read_update()
        assert rects == [(20, 50, 8, 4, ZRLE)]
        assert np.array_equal(client.fb, served.screen.pixels)
    finally:
        client.close()


def test_incremental_request_is_limited_to_its_area(served: Served) -> None:
    client = served.client()
    try:
        client.request(incremental=False)
        client.read_update()
        served.screen.paint(0, 10, 0, 10, (1, 2, 3))  # outside the area asked for
        served.screen.paint(100, 110, 100, 110, (4, 5, 6))
        client.request(incremental=True, x=80, y=80, width=80, height=40)
        [(x, y, w, h, encoding)] = client.read_update()
        # Damage is kept as one bounding box: the update may be larger than the change,
        # but it never leaves the area requested.
        assert 80 <= x <= 100 and 80 <= y <= 100 and x + w == 110 and y + h == 110
        assert np.array_equal(client.fb[80:], served.screen.pixels[80:])
        assert not np.array_equal(client.fb[:10, :10], served.screen.pixels[:10, :10])
    finally:
        client.close()


def test_desktop_size_announces_a_mode_change(served: Served) -> None:
    client = served.client()
    try:
        client.set_encodings(RAW, DESKTOP_SIZE)
        client.request(incremental=False)
        client.read_update()
        client.request(incremental=True)
        served.screen.resize(200, 320)
        rects = client.read_update()
        assert rects == [(0, 0, 320, 200, DESKTOP_SIZE), (0, 0, 320, 200, RAW)]
        assert np.array_equal(client.fb, served.screen.pixels)
    finally:
        client.close()


def test_a_client_that_cannot_resize_keeps_its_size_cropped_or_padded(served: Served) -> None:
    client = served.client()
    try:
        client.request(incremental=False)
        client.read_update()
        big = np.random.default_rng(1).integers(0, 256, (200, 100, 3), dtype=np.uint8)
        client.request(incremental=True)
        served.screen.resize(200, 100, big)
        client.read_update()
        assert client.fb.shape == (120, 160, 3)
        assert np.array_equal(client.fb[:, :100], big[:120])
        assert not client.fb[:, 100:].any()  # past the new, narrower screen: black
    finally:
        client.close()


def test_key_events_reach_the_sink_in_order_and_pointer_and_clipboard_are_ignored(
        served: Served) -> None:
    client = served.client()
    try:
        client.pointer(1, 5, 5)
        client.cut_text(b"clipboard text")
        for keysym, down in [(0xFFE1, True), (0x41, True), (0x41, False), (0xFFE1, False)]:
            client.key(keysym, down)
        wait_until(lambda: len(served.keys) == 4, "four key events")
        assert served.keys == [(0xFFE1, True), (0x41, True), (0x41, False), (0xFFE1, False)]
        client.request(incremental=False)
        client.read_update()  # the session is still fine
    finally:
        client.close()


def test_garbage_closes_only_that_client(served: Served) -> None:
    good = served.client()
    bad = socket.create_connection(("127.0.0.1", served.server.port), timeout=WAIT_S)
    late_bad = served.client()
    try:
        bad.recv(12)
        bad.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert bad.recv(100) == b""  # closed
        late_bad.sock.sendall(b"\xee\x00\x00")  # an unknown message type after the handshake
        with pytest.raises((EOFError, ConnectionResetError)):
            late_bad.recv(1)
        good.request(incremental=False)
        good.read_update()
        assert np.array_equal(good.fb, served.screen.pixels)
        wait_until(lambda: len(served.server.clients) == 1, "the bad clients dropped")
    finally:
        for sock in (good.sock, bad, late_bad.sock):
            sock.close()


def test_a_client_that_stops_reading_blocks_no_one_and_its_buffer_stays_bounded(
        served: Served) -> None:
    """A stalled viewer: its updates wait unsent (bounded), the other viewer is served."""
    rng = np.random.default_rng(5)
    served.screen.resize(480, 640, rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    stalled = served.client()
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    frame_bytes = 480 * 640 * 4
    def backlog() -> int:
        return served.on_loop(  # type: ignore[return-value]
            lambda: max((len(c.out) for c in served.server.clients.values()), default=0))

    try:
        for _ in range(100):  # asks again and again, never reads, until the server holds back
            sent = served.server.updates_sent
            stalled.request(incremental=False)
            wait_until(lambda: served.server.updates_sent > sent or backlog() > 0,
                       "an update or a backlog")
            if backlog() > 0:
                break
        assert backlog() > 0, "the kernel took everything: the test did not stall a client"
        active = served.client()
        try:
            for i in range(5):
                served.screen.paint(i, i + 1, 0, 640, (i, i, i))
                active.request(incremental=i > 0)
                active.read_update()
            active.key(0x61, True)
            wait_until(lambda: served.keys == [(0x61, True)], "the key event")
            assert np.array_equal(active.fb, served.screen.pixels)
        finally:
            active.close()
        assert backlog() <= LOW_WATER + frame_bytes + 64
    finally:
        stalled.close()


def test_the_hub_renders_only_while_a_viewer_is_connected(served: Served) -> None:
    client = served.client()
    client.request(incremental=False)
    client.read_update()
    calls = served.screen.calls
    wait_until(lambda: served.screen.calls > calls + 3, "refreshes while connected")
    client.close()
    wait_until(lambda: not served.server.clients, "the server to see the hang-up")
    assert served.on_loop(lambda: served.hub._timer is None)


def test_several_clients_each_get_the_screen(served: Served) -> None:
    clients = [served.client() for _ in range(4)]
    try:
        for client in clients:
            client.set_encodings(ZRLE)
            client.request(incremental=False)
        for client in clients:
            client.read_update()
            client.request(incremental=True)
        served.screen.paint(30, 40, 30, 40, (9, 9, 9))
        for client in clients:
            client.read_update()
            assert np.array_equal(client.fb, served.screen.pixels)
    finally:
        for client in clients:
            client.close()
