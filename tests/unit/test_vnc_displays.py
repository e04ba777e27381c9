"""The machine's displays without KVM: `--display` parsing, the hub's damage rectangles,
png:PATH, screendumps, and keys from viewers into the i8042."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from pyhvm.backends.display.frame import Frame
from pyhvm.devices.i8042 import COMMAND_OFFSET, DATA_OFFSET, STATUS_OBF, I8042
from pyhvm.errors import HostError
from pyhvm.machine.config import ConfigError
from pyhvm.machine.displays import (MAX_PENDING_KEYS, DisplayHub, Displays, DisplaySpec,
                                    KeyboardInput, frame_damage, parse_display)
from pyhvm.runtime.eventloop import EventLoop
from tests.fakes import FakeClock
from tests.unit.test_png import decode_png


# --- options -----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("none", None),
    ("png:/tmp/screen.png", DisplaySpec("png", path="/tmp/screen.png")),
    ("vnc::0", DisplaySpec("vnc", host="127.0.0.1", port=5900)),
    ("vnc:0.0.0.0:3", DisplaySpec("vnc", host="0.0.0.0", port=5903)),
    ("vnc:[::1]:1", DisplaySpec("vnc", host="::1", port=5901)),
    ("vnc:7", DisplaySpec("vnc", host="127.0.0.1", port=5907)),
    ("web:8080", DisplaySpec("web", host="127.0.0.1", port=8080)),
    ("web:0.0.0.0:8000", DisplaySpec("web", host="0.0.0.0", port=8000)),
])
def test_display_options_parse_like_qemu(spec: str, expected: DisplaySpec | None) -> None:
    """vnc:[HOST]:N listens on 5900+N, as QEMU's -display vnc=HOST:N."""
    assert parse_display(spec) == expected


@pytest.mark.parametrize("spec", ["vnc:", "vnc::x", "vnc::60000", "png:", "sdl", "gtk:1",
                                  "web:", "web:x", "web:0", "web:70000"])
def test_bad_display_options_are_one_line_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_display(spec)
    assert "\n" not in str(err.value)


# --- damage ------------------------------------------------------------------------------------

def frame(pixels: np.ndarray, dirty: tuple[int, int] | None, serial: int = 1) -> Frame:
    return Frame(pixels, dirty, serial)


def test_damage_is_the_changed_rectangle_inside_the_dirty_rows() -> None:
    a = np.zeros((50, 80, 3), np.uint8)
    b = a.copy()
    b[10:12, 30:35] = 7
    b[40, 2] = 1  # changed, but outside the rows the renderer reported: not looked at
    assert frame_damage(frame(a, None), frame(b, (5, 20))) == (30, 10, 35, 12)
    assert frame_damage(frame(a, None), frame(b, None)) == (2, 10, 35, 41)


def test_damage_is_everything_first_and_after_a_size_change_and_nothing_when_equal() -> None:
    a = np.zeros((50, 80, 3), np.uint8)
    assert frame_damage(None, frame(a, None)) is None
    assert frame_damage(frame(a, None), frame(np.zeros((60, 80, 3), np.uint8), (0, 0))) is None
    assert frame_damage(frame(a, None), frame(a.copy(), (0, 50))) is False
    assert frame_damage(frame(a, None), frame(a.copy(), (0, 0))) is False
    assert frame_damage(frame(a, None), frame(a.copy(), (40, 999))) is False  # clamped


class Screen:
    """A fake VGA: frame sources over one picture, each with its own dirty rows."""

    def __init__(self) -> None:
        self.pixels = np.zeros((40, 60, 3), np.uint8)
        self.sources: list[tuple[bool, Source]] = []

    def frame_source(self, blink: bool = True) -> "Source":
        source = Source(self)
        self.sources.append((blink, source))
        return source

    def paint(self, y: int, colour: int) -> None:
        self.pixels[y] = colour
        for _, source in self.sources:
            source.dirty = (y, y + 1) if source.dirty is not None else None


class Source:
    def __init__(self, screen: Screen) -> None:
        self.screen = screen
        self.dirty: tuple[int, int] | None = None
        self.serial = 0

    def frame(self) -> Frame:
        self.serial += 1
        dirty, self.dirty = self.dirty, (0, 0)
        return Frame(self.screen.pixels.copy(), dirty, self.serial)


class Recorder:
    def __init__(self) -> None:
        self.shown: list[tuple[int, object]] = []

    def show(self, f: Frame, damage: object) -> None:
        self.shown.append((f.serial, damage))


@pytest.fixture
def loop() -> Iterator[EventLoop]:
    loop = EventLoop(threading.Lock())
    yield loop
    loop.close()


def test_hub_passes_on_only_frames_that_changed(loop: EventLoop) -> None:
    screen = Screen()
    hub = DisplayHub(loop, screen.frame_source(), threading.Lock())
    out = Recorder()
    hub.outputs.append(out)
    try:
        hub.capture()
        hub.capture()  # nothing changed: not passed on
        screen.paint(7, 200)
        hub.capture()
        assert out.shown == [(1, None), (3, (0, 7, 60, 8))]
        assert hub.frame is not None and hub.frame.serial == 3
        assert hub.latest().serial == 4  # not refreshing on a timer: a new frame
    finally:
        hub.close()


def test_hub_refresh_timer_runs_only_while_watched(loop: EventLoop) -> None:
    screen = Screen()
    hub = DisplayHub(loop, screen.frame_source(), loop._device_lock)
    owner = object()
    try:
        hub.watch(owner, 1_000_000)
        assert hub._timer is not None
        hub.watch(owner, None)
        assert hub._timer is None
    finally:
        hub.close()


# --- outputs ------------------------------------------------------------------------------------

def test_png_display_writes_the_last_screen_at_close_and_screendump_writes_now(
        loop: EventLoop, tmp_path: Path) -> None:
    screen = Screen()
    screen.paint(3, 99)
    kbc = I8042(lambda: None)
    path = tmp_path / "screen.png"
    displays = Displays(loop, threading.Lock(), screen, kbc,
                        [DisplaySpec("png", path=str(path))])
    try:
        displays.screendump(str(tmp_path / "now.ppm"), "ppm")
        ppm = (tmp_path / "now.ppm").read_bytes()
        assert ppm.startswith(b"P6\n60 40\n255\n") and ppm[-60 * 40 * 3:] == \
            screen.pixels.tobytes()
        screen.paint(20, 50)
    finally:
        displays.close()
    assert np.array_equal(decode_png(path.read_bytes())[0], screen.pixels)
    # PNG and screendumps come from a steady (non-blinking) source.
    assert [blink for blink, _ in screen.sources] == [False]


def test_display_options_without_a_vga_fail_with_one_line(loop: EventLoop) -> None:
    with pytest.raises(ConfigError, match="no VGA"):
        Displays(loop, threading.Lock(), None, I8042(lambda: None),
                 [DisplaySpec("vnc", host="127.0.0.1", port=0)])
    displays = Displays(loop, threading.Lock(), None, I8042(lambda: None), [])
    with pytest.raises(HostError):
        displays.screendump("/tmp/never.png")
    displays.close()


def test_vnc_display_on_a_busy_port_is_a_config_error(loop: EventLoop) -> None:
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        with pytest.raises(ConfigError, match="cannot listen"):
            Displays(loop, threading.Lock(), Screen(), I8042(lambda: None),
                     [DisplaySpec("vnc", host="127.0.0.1", port=busy.getsockname()[1])])
    finally:
        busy.close()


# --- keys -----------------------------------------------------------------------------------------

def read_all(kbc: I8042) -> list[int]:
    out = []
    while kbc.read(COMMAND_OFFSET, 1) & STATUS_OBF:
        out.append(kbc.read(DATA_OFFSET, 1))
    return out


def test_keysyms_become_translated_scan_codes() -> None:
    clock = FakeClock()
    kbc = I8042(lambda: None)
    keys = KeyboardInput(clock, threading.Lock(), kbc)  # type: ignore[arg-type]
    for keysym, down in [(0xFFE1, True), (ord("A"), True), (ord("A"), False),
                         (0xFFE1, False), (0xFF52, True), (0x20AC, True)]:
        keys(keysym, down)
    # Shift, A, A up, Shift up, Up (E0 48); the euro sign has no key on this layout.
    assert read_all(kbc) == [0x2A, 0x1E, 0x9E, 0xAA, 0xE0, 0x48]


def test_fast_typing_waits_for_the_guest_instead_of_overrunning_the_keyboard() -> None:
    clock = FakeClock()
    kbc = I8042(lambda: None)
    keys = KeyboardInput(clock, threading.Lock(), kbc)  # type: ignore[arg-type]
    for _ in range(40):
        keys(ord("a"), True)
        keys(ord("a"), False)
    got: list[int] = []
    for _ in range(200):
        got += read_all(kbc)
        clock.advance(5_000_000)
    assert got == [0x1E, 0x9E] * 40  # nothing lost, no overrun code


def test_a_guest_that_reads_no_keys_loses_them_after_a_while_and_memory_stays_bounded(
        ) -> None:
    clock = FakeClock()
    kbc = I8042(lambda: None)
    keys = KeyboardInput(clock, threading.Lock(), kbc)  # type: ignore[arg-type]
    for _ in range(MAX_PENDING_KEYS * 2):
        keys(ord("a"), True)
    assert len(keys.pending) <= MAX_PENDING_KEYS
    clock.advance(10_000_000_000)
    assert not keys.pending and keys.dropped > 0
    assert clock.pending() == 0  # no retry timer left behind


# --- QMP screendump ---------------------------------------------------------------------------------

def qmp_screendump(displays: object, **arguments: object) -> dict[str, object]:
    import json
    from types import SimpleNamespace

    from pyhvm.control.qmp import QmpSession, machine_commands

    machine = SimpleNamespace(displays=displays)
    session = QmpSession(machine_commands(machine))  # type: ignore[arg-type]
    session.feed(b'{"execute": "qmp_capabilities"}')
    reply = session.feed(json.dumps({"execute": "screendump", "arguments": arguments}).encode())
    return json.loads(reply)  # type: ignore[no-any-return]


def test_qmp_screendump_writes_ppm_by_default_and_png_on_request(loop: EventLoop,
                                                                 tmp_path: Path) -> None:
    """QEMU's screendump: filename, optional format (ppm, the default, or png)."""
    screen = Screen()
    screen.paint(5, 77)
    displays = Displays(loop, threading.Lock(), screen, I8042(lambda: None), [])
    try:
        assert qmp_screendump(displays, filename=str(tmp_path / "a.ppm")) == {"return": {}}
        assert (tmp_path / "a.ppm").read_bytes().startswith(b"P6\n60 40\n255\n")
        assert qmp_screendump(displays, filename=str(tmp_path / "b.png"), format="png") == \
            {"return": {}}
        assert np.array_equal(decode_png((tmp_path / "b.png").read_bytes())[0], screen.pixels)
        bad = qmp_screendump(displays, filename=str(tmp_path / "c"), format="jpeg")
        assert "format" in bad["error"]["desc"]  # type: ignore[index]
        missing = qmp_screendump(displays, filename=str(tmp_path / "no" / "d.png"))
        assert "failed to write" in missing["error"]["desc"]  # type: ignore[index]
    finally:
        displays.close()


def test_qmp_screendump_without_a_screen_is_an_error(loop: EventLoop) -> None:
    displays = Displays(loop, threading.Lock(), None, I8042(lambda: None), [])
    reply = qmp_screendump(displays, filename="/tmp/never.ppm")
    assert reply["error"]["desc"] == "There is no console to take a screendump from"  # type: ignore[index]
    assert qmp_screendump(None, filename="/tmp/never.ppm")["error"]  # no displays at all
