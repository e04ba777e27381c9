"""The web display in a real browser (headless Chromium): the page's canvas shows the screen
pixel for pixel, follows changes, and keys typed on it reach the guest through the i8042."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from pyhvm.backends.display.web import WebDisplay
from tests import chromium
from tests.display_served import Served, serve, wait_until
from tests.integration.test_display import boot_watching, quit_vm
from tests.vga_pattern import pattern_rgb

pytestmark = pytest.mark.skipif(chromium.missing_reason() is not None,
                                reason=str(chromium.missing_reason()))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


WebServed = Served[WebDisplay]


@pytest.fixture
def served() -> Iterator[WebServed]:
    """A web display of a fake screen, in an event loop thread (no guest needed)."""
    pixels = np.random.default_rng(2).integers(0, 256, (200, 320, 3))
    with serve(lambda loop, hub, keys: WebDisplay(loop, hub, keys, "127.0.0.1", 0,
                                                  period_ns=10_000_000),
               Served, height=200, width=320, pixels=pixels) as running:
        yield running


def test_the_canvas_shows_the_screen_follows_changes_and_sends_keys(served: WebServed) -> None:
    browser = chromium.Chromium(f"http://127.0.0.1:{served.server.port}/")
    try:
        browser.wait_for("window.pyhvm?.frames >= 1")
        assert np.array_equal(browser.canvas(), served.screen.pixels)
        served.screen.paint(100, 120, 10, 300, (250, 128, 3))
        browser.wait_for("window.pyhvm?.frames >= 2")
        assert np.array_equal(browser.canvas(), served.screen.pixels)
        served.screen.resize(100, 160)  # a mode change: the canvas takes the new size
        browser.wait_for("document.getElementById('screen').width === 160")
        browser.wait_for("window.pyhvm?.frames >= 3")
        assert np.array_equal(browser.canvas(), served.screen.pixels)
        browser.key("ShiftLeft", "Shift", 16, True)
        browser.key("KeyA", "A", 65, True)
        browser.key("KeyA", "A", 65, False)
        browser.key("ShiftLeft", "Shift", 16, False)
        wait_until(lambda: len(served.keys) == 4, "four key events")
        assert served.keys == [(0xFFE1, True), (0x61, True), (0x61, False), (0xFFE1, False)]
    finally:
        browser.close()


@pytest.mark.kvm
def test_a_browser_shows_the_guests_picture(guestkit: Path, tmp_path: Path) -> None:
    port = free_port()
    qmp = tmp_path / "qmp.sock"
    seen: dict[str, np.ndarray] = {}

    def look() -> None:
        try:
            browser = chromium.Chromium(f"http://127.0.0.1:{port}/")
            try:
                browser.wait_for("window.pyhvm?.frames >= 1")
                seen["canvas"] = browser.canvas()
            finally:
                browser.close()
        finally:
            quit_vm(qmp)

    run = boot_watching(guestkit, "scenario=vbe mode=640x480x32 hold=1",
                        ["--display", f"web:{port}", "--qmp", f"unix:{qmp},server,wait=off"],
                        "READY vbe", look)
    assert run.result("vbe").fields["ok"] == "1", run.describe()
    assert np.array_equal(seen["canvas"], pattern_rgb(640, 480))


@pytest.mark.kvm
def test_keys_typed_in_the_browser_reach_the_guest(guestkit: Path) -> None:
    port = free_port()

    def type_keys() -> None:
        browser = chromium.Chromium(f"http://127.0.0.1:{port}/")
        try:
            browser.wait_for("window.pyhvm?.frames >= 1")
            for code, key, keycode, down in [("ShiftLeft", "Shift", 16, True),
                                             ("KeyA", "A", 65, True),
                                             ("KeyA", "A", 65, False),
                                             ("ShiftLeft", "Shift", 16, False)]:
                browser.key(code, key, keycode, down)
            # Every event sent and handed to the network before the browser is killed.
            browser.wait_for("window.pyhvm.keys >= 4 && window.pyhvm.unsent() === 0")
        finally:
            browser.close()

    run = boot_watching(guestkit, "scenario=kbd n=4", ["--display", f"web:{port}"],
                        "kbd: waiting for 4 bytes", type_keys)
    assert run.status == 0, run.describe()
    assert run.result("kbd").fields["hex"] == "2a1e9eaa"

