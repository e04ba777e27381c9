"""The web display without a browser: HTTP and WebSocket framing (RFC 6455) as pure code,
then the server on real sockets, driven by the test WebSocket client."""

from __future__ import annotations

import json
import socket
import struct
from typing import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhvm.backends.display.web import UPDATE_HEADER, WebDisplay
from pyhvm.backends.display.websocket import (CLOSE_TOO_BIG, OP_BINARY, OP_CLOSE, OP_PING,
                                              OP_PONG, OP_TEXT, HttpError, WsDecoder,
                                              WsProtocolError, accept_key, encode_frame,
                                              parse_request, upgrade_response)
from tests import display_served
from tests.display_served import WAIT_S, serve, wait_until
from tests.unit.test_png import decode_png
from tests.ws_client import WsClient


def masked(payload: bytes, opcode: int = OP_TEXT, fin: bool = True,
           key: bytes = b"\x01\x02\x03\x04") -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    header = (struct.pack(">BB", first, 0x80 | n) if n < 126
              else struct.pack(">BBH", first, 0x80 | 126, n))
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


# --- HTTP and the opening handshake --------------------------------------------------------------

def test_accept_key_matches_the_rfc_example() -> None:
    """RFC 6455 1.3: key dGhlIHNhbXBsZSBub25jZQ== gives s3pPLMBiTxaQ9kYGzzhZRbK+xOo=."""
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def request(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


UPGRADE = ["GET /ws HTTP/1.1", "Host: h:1", "Upgrade: websocket", "Connection: keep-alive, Upgrade",
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]


def test_a_valid_upgrade_is_switched_and_extra_bytes_are_left() -> None:
    data = request(*UPGRADE) + b"\x81"
    parsed = parse_request(data)
    assert parsed is not None
    req, length = parsed
    assert data[length:] == b"\x81"
    response = upgrade_response(req)
    assert response.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response


@pytest.mark.parametrize("drop, status", [(4, 400), (5, 400), (3, 400)])
def test_an_incomplete_upgrade_is_refused(drop: int, status: int) -> None:
    lines = [line for i, line in enumerate(UPGRADE) if i != drop]
    req, _ = parse_request(request(*lines))  # type: ignore[misc]
    with pytest.raises(HttpError) as err:
        upgrade_response(req)
    assert err.value.status in (status, 426)


def test_requests_wait_for_their_end_and_have_a_size_limit() -> None:
    assert parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n") is None
    with pytest.raises(HttpError, match="431"):
        parse_request(b"GET / HTTP/1.1\r\nX: " + b"a" * 20000)
    for bad in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nno colon\r\n\r\n", b"\xff\r\n\r\n"):
        with pytest.raises(HttpError):
            parse_request(bad)


# --- frames --------------------------------------------------------------------------------------

def test_decoder_unmasks_reassembles_and_passes_control_frames() -> None:
    decoder = WsDecoder()
    stream = (masked(b"hel", fin=False) + masked(b"ping!", OP_PING)
              + masked(b"lo", opcode=0, fin=True) + masked(b"\x03\xe8", OP_CLOSE))
    got = []
    for i in range(len(stream)):  # byte by byte
        got += decoder.feed(stream[i:i + 1])
    assert got == [(OP_PING, b"ping!"), (OP_TEXT, b"hello"), (OP_CLOSE, b"\x03\xe8")]


@pytest.mark.parametrize("frame", [
    b"\x81\x05hello",  # not masked
    b"\xc1\x80\x00\x00\x00\x00",  # RSV1 without an extension
    masked(b"x", opcode=0),  # continuation of nothing
    masked(b"x", opcode=0x3),  # reserved data opcode
    masked(b"x", opcode=0xB),  # reserved control opcode
    masked(b"x", opcode=OP_PING, fin=False),  # fragmented control frame
])
def test_protocol_violations_are_errors(frame: bytes) -> None:
    with pytest.raises(WsProtocolError):
        WsDecoder().feed(frame)


def test_a_message_over_the_limit_is_refused_before_it_is_buffered() -> None:
    decoder = WsDecoder(max_message=1000)
    with pytest.raises(WsProtocolError) as err:
        decoder.feed(struct.pack(">BBQ", 0x82, 0xFF, 1 << 40))
    assert err.value.code == CLOSE_TOO_BIG


def test_server_frames_use_the_shortest_length() -> None:
    assert encode_frame(OP_BINARY, b"a" * 125)[:2] == b"\x82\x7d"
    assert encode_frame(OP_BINARY, b"a" * 126)[:4] == b"\x82\x7e\x00\x7e"
    assert encode_frame(OP_BINARY, b"a" * 70000)[:10] == b"\x82\x7f" + struct.pack(">Q", 70000)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_a_protocol_error(junk: bytes) -> None:
    try:
        WsDecoder().feed(junk)
    except WsProtocolError:
        pass


# --- the server ----------------------------------------------------------------------------------

class Served(display_served.Served[WebDisplay]):
    def ws(self, **headers: str) -> WsClient:
        return WsClient("127.0.0.1", self.server.port, "/ws", headers or None)


@pytest.fixture
def served() -> Iterator[Served]:
    with serve(lambda loop, hub, keys: WebDisplay(loop, hub, keys, "127.0.0.1", 0,
                                                  name="test <vm>", period_ns=10_000_000),
               Served) as running:
        yield running


def http_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def update(client: WsClient, screen: np.ndarray) -> tuple[int, int, int, int]:
    """Read one update, paint it into `screen`, acknowledge it; its rectangle."""
    opcode, payload = client.recv()
    assert opcode == OP_BINARY
    kind, x, y, w, h, width, height = UPDATE_HEADER.unpack_from(payload)
    assert kind == 1 and (height, width) == screen.shape[:2]
    screen[y:y + h, x:x + w] = decode_png(payload[UPDATE_HEADER.size:])[0]
    client.send_json({"t": "ack"})
    return x, y, w, h


def test_the_page_is_served_with_the_vm_name_escaped(served: Served) -> None:
    response = http_get(served.server.port, "/")
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"<canvas" in response and b"pyhvm: test &lt;vm&gt;" in response
    assert http_get(served.server.port, "/nothing").startswith(b"HTTP/1.1 404")


def test_a_websocket_gets_the_screen_then_only_changes_after_each_ack(served: Served) -> None:
    client = served.ws()
    screen = np.zeros((120, 160, 3), np.uint8)
    try:
        assert update(client, screen) == (0, 0, 160, 120)
        assert np.array_equal(screen, served.screen.pixels)
        served.screen.paint(30, 40, 50, 60, (1, 200, 3))
        assert update(client, screen) == (50, 30, 10, 10)
        assert np.array_equal(screen, served.screen.pixels)
    finally:
        client.close()


def test_keys_reach_the_sink_and_pings_are_answered(served: Served) -> None:
    client = served.ws()
    try:
        update(client, np.zeros((120, 160, 3), np.uint8))
        client.send_json({"t": "key", "k": 0x61, "d": True})
        client.send_json({"t": "key", "k": 0x61, "d": False})
        client.send(b"abc", opcode=OP_PING)
        assert client.recv() == (OP_PONG, b"abc")
        wait_until(lambda: served.keys == [(0x61, True), (0x61, False)], "two keys")
    finally:
        client.close()


def test_a_websocket_from_another_origin_is_refused(served: Served) -> None:
    with pytest.raises(ConnectionRefusedError, match="403"):
        served.ws(Origin="http://evil.example")
    client = served.ws(Origin=f"http://127.0.0.1:{served.server.port}")
    client.close()


@pytest.mark.parametrize("message", [b"not json", b'{"t": "launch"}', b'{"t": "key"}',
                                     b'{"t": "key", "k": -1, "d": true}'])
def test_a_bad_message_closes_only_that_websocket(served: Served, message: bytes) -> None:
    good, bad = served.ws(), served.ws()
    screen = np.zeros((120, 160, 3), np.uint8)
    try:
        update(good, screen)
        update(bad, screen.copy())
        bad.send(message)
        while True:  # an update may come first; then the close frame
            opcode, _ = bad.recv()
            if opcode == OP_CLOSE:
                break
        served.screen.paint(0, 5, 0, 5, (9, 9, 9))
        update(good, screen)
        assert np.array_equal(screen, served.screen.pixels)
        assert served.keys == []
    finally:
        good.close()
        bad.close()


def test_a_browser_that_does_not_ack_gets_no_more_updates_and_blocks_no_one(
        served: Served) -> None:
    slow, fast = served.ws(), served.ws()
    screen = np.zeros((120, 160, 3), np.uint8)
    try:
        slow.recv()  # the first update, never acknowledged
        update(fast, screen)
        for i in range(10):
            served.screen.paint(i, i + 1, 0, 160, (i, 0, 0))
            update(fast, screen)
        assert served.server.updates_sent >= 11
        pending = [c for c in list(served.server.clients.values()) if c.websocket and not c.ready]
        assert len(pending) >= 1  # the slow one waits for its ack, holding nothing new
        slow.send(json.dumps({"t": "ack"}).encode())
        opcode, payload = slow.recv()  # then it gets what changed meanwhile, at once
        assert opcode == OP_BINARY
    finally:
        slow.close()
        fast.close()
