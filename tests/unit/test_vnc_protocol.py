"""The RFB session as a pure object (RFC 6143), and the encoders against the test client's
independent decoders."""

from __future__ import annotations

import re
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhvm.backends.display import rfb_encode
from pyhvm.backends.display.rfb import (DEFAULT_PIXEL_FORMAT, MAX_ENCODINGS, Initialised,
                                        KeyEvent, PixelFormat, PointerEvent, RfbProtocolError,
                                        RfbSession, SetEncodings, SetPixelFormat,
                                        UpdateRequest)
from tests import rfb_client

SIZE = (640, 480)


def session_after_handshake() -> RfbSession:
    session = RfbSession("test", lambda: SIZE)
    session.feed(b"RFB 003.008\n\x01\x01")
    session.output.clear()
    return session


def test_rfb_38_handshake_offers_none_and_reports_success() -> None:
    """7.1.1-7.3.2: version, security types [None], SecurityResult OK, ServerInit."""
    session = RfbSession("pyhvm test", lambda: SIZE)
    assert session.greeting() == b"RFB 003.008\n"
    assert session.feed(b"RFB 003.008\n") == []
    assert bytes(session.output) == b"\x01\x01"
    session.output.clear()
    assert session.feed(b"\x01") == []
    assert bytes(session.output) == b"\x00\x00\x00\x00"
    session.output.clear()
    assert session.feed(b"\x01") == [Initialised(shared=True)]
    width, height = struct.unpack(">HH", session.output[:4])
    assert (width, height) == SIZE
    assert PixelFormat.unpack(bytes(session.output[4:20])) == DEFAULT_PIXEL_FORMAT
    name_length = struct.unpack(">I", session.output[20:24])[0]
    assert session.output[24:] == b"pyhvm test" and name_length == 10


def test_rfb_33_server_decides_the_security_type() -> None:
    session = RfbSession("x", lambda: SIZE)
    session.feed(b"RFB 003.003\n")
    assert bytes(session.output) == b"\x00\x00\x00\x01"
    assert session.feed(b"\x00") == [Initialised(shared=False)]


def test_rfb_37_has_no_security_result_for_none() -> None:
    session = RfbSession("x", lambda: SIZE)
    session.feed(b"RFB 003.007\n")
    session.output.clear()
    session.feed(b"\x01")
    assert bytes(session.output) == b""
    assert session.minor == 7


@pytest.mark.parametrize("version, minor", [(b"RFB 003.005\n", 3), (b"RFB 003.889\n", 3),
                                            (b"RFB 003.010\n", 8)])
def test_unknown_3x_versions_fall_back(version: bytes, minor: int) -> None:
    """Other 3.x are treated as 3.3 (Apple's 3.889 too); a newer one speaks 3.8."""
    session = RfbSession("x", lambda: SIZE)
    session.feed(version)
    assert session.minor == minor


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\n", b"RFB 004.000\n", b"RFB 003x008\n",
                                     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00"])
def test_a_client_that_is_not_rfb_is_refused(garbage: bytes) -> None:
    session = RfbSession("x", lambda: SIZE)
    with pytest.raises(RfbProtocolError):
        session.feed(garbage)


def test_choosing_another_security_type_fails_with_a_reason() -> None:
    session = RfbSession("x", lambda: SIZE)
    session.feed(b"RFB 003.008\n")
    session.output.clear()
    with pytest.raises(RfbProtocolError):
        session.feed(b"\x02")
    assert session.output[:4] == b"\x00\x00\x00\x01"  # SecurityResult: failed, then reason


def test_normal_messages_become_events_even_byte_by_byte() -> None:
    session = session_after_handshake()
    pf = PixelFormat(16, 16, True, True, 31, 63, 31, 11, 5, 0)
    stream = (b"\x00\x00\x00\x00" + pf.pack()
              + struct.pack(">BxH3i", 2, 3, 16, 0, -223)
              + struct.pack(">BBHHHH", 3, 1, 10, 20, 30, 40)
              + struct.pack(">BBxxI", 4, 1, 0xFF0D)
              + struct.pack(">BBHH", 5, 1, 7, 8)
              + struct.pack(">BxxxI", 6, 5) + b"hello"
              + struct.pack(">BBxxI", 4, 0, 0xFF0D))
    events = []
    for i in range(len(stream)):
        events += session.feed(stream[i:i + 1])
    assert events == [SetPixelFormat(pf), SetEncodings((16, 0, -223)),
                      UpdateRequest(True, 10, 20, 30, 40), KeyEvent(True, 0xFF0D),
                      PointerEvent(1, 7, 8), KeyEvent(False, 0xFF0D)]


def test_cut_text_is_skipped_without_keeping_it() -> None:
    session = session_after_handshake()
    session.feed(struct.pack(">BxxxI", 6, 10_000_000))
    for _ in range(100):
        assert session.feed(b"x" * 100_000) == []
    assert session.feed(struct.pack(">BBxxI", 4, 1, 0x61)) == [KeyEvent(True, 0x61)]
    assert len(session._buf) == 0


@pytest.mark.parametrize("message, needle", [
    (b"\x07", "unknown client message type 7"),
    (b"\x00\x00\x00\x00" + PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0).pack(),
     "colour-map"),
    (b"\x00\x00\x00\x00" + PixelFormat(24, 24, False, True, 255, 255, 255, 16, 8, 0).pack(),
     "24 bits per pixel"),
    (b"\x00\x00\x00\x00" + PixelFormat(16, 16, False, True, 255, 63, 31, 11, 5, 0).pack(),
     "outside 16-bit"),
    (b"\x00\x00\x00\x00" + PixelFormat(32, 24, False, True, 200, 255, 255, 16, 8, 0).pack(),
     "not 2^n - 1"),
    (struct.pack(">BxH", 2, MAX_ENCODINGS + 1), "encodings"),
])
def test_protocol_errors_name_the_problem(message: bytes, needle: str) -> None:
    session = session_after_handshake()
    with pytest.raises(RfbProtocolError, match=re.escape(needle)):
        session.feed(message)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_events_or_a_protocol_error_never_a_crash(junk: bytes) -> None:
    session = session_after_handshake()
    try:
        session.feed(junk)
    except RfbProtocolError:
        pass


# --- encoders, decoded by the test client ------------------------------------------------------

FORMATS = {
    "default-32": DEFAULT_PIXEL_FORMAT,
    "bgr-32-big-endian": PixelFormat(32, 24, True, True, 255, 255, 255, 0, 8, 16),
    "high-bytes-32": PixelFormat(32, 24, False, True, 255, 255, 255, 24, 16, 8),
    "depth-32": PixelFormat(32, 32, False, True, 255, 255, 255, 16, 8, 0),
    "rgb565": PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0),
    "rgb555-big-endian": PixelFormat(16, 15, True, True, 31, 31, 31, 10, 5, 0),
    "bgr233": PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6),
}


def sample_picture(height: int = 150, width: int = 200) -> np.ndarray:
    """Solid areas, few-colour areas and noise: every ZRLE tile kind."""
    rng = np.random.default_rng(7)
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, :] = (0, 0, 170)
    pixels[70:, :100] = rng.integers(0, 3, (height - 70, 100, 1)) * 100
    pixels[70:, 100:] = rng.integers(0, 256, (height - 70, width - 100, 3))
    pixels[10:20, 5:150] = (255, 255, 85)
    return pixels


def client_format(pf: PixelFormat) -> rfb_client.PixelFormat:
    return rfb_client.PixelFormat(pf.bpp, pf.depth, pf.big_endian, pf.red_max, pf.green_max,
                                  pf.blue_max, pf.red_shift, pf.green_shift, pf.blue_shift)


def within_precision(decoded: np.ndarray, source: np.ndarray, pf: PixelFormat) -> bool:
    """Equal for 8-bit channels; within half a step of the client's precision otherwise."""
    for channel, top in enumerate((pf.red_max, pf.green_max, pf.blue_max)):
        error = np.abs(decoded[..., channel].astype(int) - source[..., channel].astype(int))
        if error.max() > 255 / top / 2 + 1:
            return False
    return True


class _Decoder(rfb_client.RfbClient):
    def __init__(self, pf: PixelFormat, height: int, width: int) -> None:  # no socket
        self.format = client_format(pf)
        self.fb = np.zeros((height, width, 3), dtype=np.uint8)
        self._zlib = zlib.decompressobj()
        self._zrle = zlib.decompressobj()


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("encoder_class", [rfb_encode.RawEncoder, rfb_encode.ZlibEncoder,
                                           rfb_encode.ZrleEncoder])
def test_every_encoding_decodes_to_the_picture_in_every_format(name: str,
                                                               encoder_class: type) -> None:
    pf = FORMATS[name]
    picture = sample_picture()
    decoder = _Decoder(pf, *picture.shape[:2])
    encoder = encoder_class()
    # Two rectangles through one stream: the zlib dictionary carries over between them.
    for (y0, y1) in ((0, 90), (90, 150)):
        data = encoder.encode(picture[y0:y1], pf)
        h, w = y1 - y0, picture.shape[1]
        if encoder.encoding == rfb_client.RAW:
            decoder._put(0, y0, w, h, data)
        elif encoder.encoding == rfb_client.ZLIB:
            (length,) = struct.unpack(">I", data[:4])
            assert length == len(data) - 4
            decoder._put(0, y0, w, h, decoder._zlib.decompress(data[4:]))
        else:
            decoder._zrle_rect(0, y0, w, h, decoder._zrle.decompress(data[4:]))
    if pf.red_max == pf.green_max == pf.blue_max == 255:
        assert np.array_equal(decoder.fb, picture)
    else:
        assert within_precision(decoder.fb, picture, pf)


def test_zrle_sends_three_byte_cpixels_only_where_rfc_allows() -> None:
    assert rfb_encode.cpixel_slice(FORMATS["default-32"]) == slice(0, 3)
    assert rfb_encode.cpixel_slice(FORMATS["bgr-32-big-endian"]) == slice(1, 4)
    assert rfb_encode.cpixel_slice(FORMATS["high-bytes-32"]) == slice(1, 4)
    assert rfb_encode.cpixel_slice(FORMATS["depth-32"]) == slice(0, 4)
    assert rfb_encode.cpixel_slice(FORMATS["rgb565"]) == slice(0, 2)


def test_zrle_of_a_flat_screen_is_tiny() -> None:
    picture = np.full((768, 1024, 3), 30, dtype=np.uint8)
    assert len(rfb_encode.ZrleEncoder().encode(picture, DEFAULT_PIXEL_FORMAT)) < 1024


def test_zrle_palette_finds_a_colour_the_sample_missed() -> None:
    """One odd pixel off the sampling grid: the tile is still encoded losslessly."""
    picture = np.zeros((64, 64, 3), dtype=np.uint8)
    picture[:, 32:] = (200, 100, 50)
    picture[1, 1] = (1, 2, 3)
    decoder = _Decoder(DEFAULT_PIXEL_FORMAT, 64, 64)
    data = rfb_encode.ZrleEncoder().encode(picture, DEFAULT_PIXEL_FORMAT)
    decoder._zrle_rect(0, 0, 64, 64, decoder._zrle.decompress(data[4:]))
    assert np.array_equal(decoder.fb, picture)
