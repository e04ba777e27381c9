"""Displays of a machine: `--display none|png:PATH|vnc:[HOST]:N|web:PORT`, screendumps, keys.

- `DisplayHub` is the only caller of the VGA renderer (`FrameSource.frame()`), so the dirty
  rows each frame reports are relative to the frame the hub saw before. It narrows them to
  the rectangle that really changed and hands each new frame to the outputs. It renders on a
  timer only while some output watches (a VNC client is connected, a PNG file is kept up to
  date), at the fastest rate any of them asked for.
- Rendering needs the device lock (the vCPUs change the VGA state under it), and timers run
  with that lock held; encoding and writing must not hold it, or the vCPUs would wait for a
  viewer. So the refresh timer only renders and rings a `Doorbell`, a pipe in the event
  loop whose callback (run without the lock) passes the frame on.
- `KeyboardInput` turns display clients' keysyms into key presses on the i8042's keyboard,
  waiting (bounded) when the guest has not read the keyboard's buffer yet, so fast typing
  into a viewer is not lost to the keyboard's 16-byte buffer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from ..backends.display.frame import Frame, FrameSource
from ..backends.display.keymap import keysym_to_set2
from ..backends.display.png import write_image
from ..backends.display.server import Doorbell
from ..backends.display.vnc import VNC_BASE_PORT, VncServer
from ..backends.display.web import WebDisplay
from ..errors import HostError
from ..runtime.eventloop import EventLoop
from .config import ConfigError

log = logging.getLogger("pyhvm.display")

VNC_REFRESH_NS = 33_333_333  # 30 frames a second while a viewer is connected
PNG_REFRESH_NS = 1_000_000_000  # png:PATH is rewritten at most once a second, when changed
DEFAULT_VNC_HOST = "127.0.0.1"  # RFB security type None: loopback unless a host is named
LOCK_TIMEOUT_S = 2.0
Rect = tuple[int, int, int, int]


# --- options -------------------------------------------------------------------------------

@dataclass(frozen=True)
class DisplaySpec:
    kind: str  # "png", "vnc" or "web"
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "png":
            return f"png:{self.path}"
        if self.kind == "vnc":
            return f"vnc:{self.host}:{self.port - VNC_BASE_PORT}"
        return f"web:{self.host}:{self.port}"


def parse_display(spec: str) -> DisplaySpec | None:
    """One `--display` value; None for `none`. A one-line ConfigError when it is wrong."""
    kind, sep, rest = spec.partition(":")
    if spec == "none":
        return None
    if kind == "png" and sep:
        if not rest:
            raise ConfigError("--display png:PATH needs a file name")
        return DisplaySpec("png", path=rest)
    if kind == "vnc" and sep:
        host, colon, number = rest.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]  # an IPv6 address: vnc:[::1]:0
        if not number.isdigit() or VNC_BASE_PORT + int(number) > 65535:
            raise ConfigError(f"--display {spec!r}: write vnc:[HOST]:N, N the display number "
                              "(port 5900+N), e.g. vnc::0 or vnc:0.0.0.0:1")
        return DisplaySpec("vnc", host=host or DEFAULT_VNC_HOST,
                           port=VNC_BASE_PORT + int(number))
    if kind == "web" and sep:
        host, colon, number = rest.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not number.isdigit() or not 0 < int(number) <= 65535:
            raise ConfigError(f"--display {spec!r}: write web:[HOST:]PORT, e.g. web:8080")
        return DisplaySpec("web", host=host or DEFAULT_VNC_HOST, port=int(number))
    raise ConfigError(f"--display {spec!r}: use none, png:PATH, vnc:[HOST]:N or web:PORT")


# --- plumbing --------------------------------------------------------------------------------

def frame_damage(previous: Frame | None, frame: Frame) -> Rect | None | bool:
    """What changed from `previous` to `frame`: a rectangle, None for everything (first
    frame, new size), or False for nothing. Only the rows the renderer marked dirty are
    compared, and only they can be in the answer."""
    if previous is None or previous.pixels.shape != frame.pixels.shape:
        return None
    height = frame.height
    y0, y1 = frame.dirty_rows if frame.dirty_rows is not None else (0, height)
    y0, y1 = max(0, min(y0, height)), max(0, min(y1, height))
    if y0 >= y1:
        return False
    changed = np.any(previous.pixels[y0:y1] != frame.pixels[y0:y1], axis=2)
    rows = np.flatnonzero(changed.any(axis=1))
    if rows.size == 0:
        return False
    columns = np.flatnonzero(changed.any(axis=0))
    return (int(columns[0]), y0 + int(rows[0]), int(columns[-1]) + 1, y0 + int(rows[-1]) + 1)


def _merge_dirty(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    if a is None or b is None:
        return None
    return min(a[0], b[0]), max(a[1], b[1])


class Output(Protocol):
    def show(self, frame: Frame, damage: Rect | None) -> None: ...


class DisplayHub:
    """The one caller of the renderer; see the module docstring."""

    def __init__(self, loop: EventLoop, source: FrameSource, lock: threading.Lock) -> None:
        self.loop = loop
        self.source = source
        self.lock = lock
        self.outputs: list[Output] = []
        self.frame: Frame | None = None
        self.frames_rendered = 0
        self._watchers: dict[int, int] = {}  # id(owner) -> refresh period
        self._timer: object | None = None
        self._pending: Frame | None = None
        self._failed = False
        self._bell = Doorbell(loop, self._deliver)

    # --- FrameFeed ------------------------------------------------------------------------
    def latest(self) -> Frame:
        """The newest frame: the last refresh's while refreshing, else a new one."""
        if self.frame is not None and self._timer is not None:
            return self.frame
        return self.capture()

    def watch(self, owner: object, period_ns: int | None) -> None:
        if period_ns is None:
            self._watchers.pop(id(owner), None)
        else:
            self._watchers[id(owner)] = period_ns
        if self._watchers and self._timer is None:
            self._schedule()
        elif not self._watchers and self._timer is not None:
            self._timer.cancel()  # type: ignore[attr-defined]
            self._timer = None

    # --- rendering ------------------------------------------------------------------------
    def capture(self) -> Frame:
        """Render now (loop thread, device lock not held) and pass the frame on."""
        if not self.lock.acquire(timeout=LOCK_TIMEOUT_S):
            if self.frame is not None:
                return self.frame
            raise HostError("display: the machine is busy (device lock held); try again")
        try:
            frame = self._render()
        finally:
            self.lock.release()
        self._deliver()
        return self.frame if self.frame is not None else frame

    def _render(self) -> Frame:
        """source.frame(), with the lock held; merged into a frame not yet delivered."""
        frame = self.source.frame()
        self.frames_rendered += 1
        if self._pending is not None:
            frame = Frame(frame.pixels, _merge_dirty(self._pending.dirty_rows,
                                                     frame.dirty_rows), frame.serial)
        self._pending = frame
        return frame

    def _schedule(self) -> None:
        period = min(self._watchers.values())
        self._timer = self.loop.call_at(self.loop.now_ns() + period, self._tick)

    def _tick(self) -> None:
        """Refresh timer: device lock held, so render and ring, nothing more."""
        self._timer = None
        if not self._watchers:
            return
        try:
            self._render()
            self._bell.ring()
        except Exception:
            if not self._failed:  # once: a broken renderer would fail 30 times a second
                log.exception("display refresh failed (the VM keeps running)")
            self._failed = True
        self._schedule()

    def _deliver(self) -> None:
        frame, self._pending = self._pending, None
        if frame is None:
            return
        damage = frame_damage(self.frame, frame)
        self.frame = frame
        if damage is False:
            return
        for output in self.outputs:
            try:
                output.show(frame, damage)  # type: ignore[arg-type]
            except Exception:
                log.exception("display output %s failed (the VM keeps running)",
                              type(output).__name__)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()  # type: ignore[attr-defined]
            self._timer = None
        self._bell.close()


class PngDisplay:
    """`png:PATH`: the screen as a PNG file, rewritten (atomically) at most once a second
    while it changes, and written at exit. QEMU has no such display; it is for watching a
    headless run with any image viewer, and for the last screen of a run."""

    def __init__(self, hub: DisplayHub, path: str) -> None:
        self.hub = hub
        self.path = path
        self.writes = 0
        self._written_at = 0.0
        self._changed = False
        self._later: object | None = None
        self._bell = Doorbell(hub.loop, self._write_due)
        hub.watch(self, PNG_REFRESH_NS)

    def show(self, frame: Frame, damage: Rect | None) -> None:
        self._changed = True
        self._write_due()

    def _write_due(self) -> None:
        self._later = None
        wait = self._written_at + PNG_REFRESH_NS / 1e9 - time.monotonic()
        if not self._changed or self.hub.frame is None:
            return
        if wait > 0:
            if self._later is None:  # write the newest frame once the second is up
                self._later = self.hub.loop.call_at(self.hub.loop.now_ns() + int(wait * 1e9),
                                                    self._bell.ring)
            return
        self._write(self.hub.frame)

    def _write(self, frame: Frame) -> None:
        self._changed = False
        self._written_at = time.monotonic()
        try:
            write_image(self.path, frame)
            self.writes += 1
        except OSError as err:
            log.warning("--display png:%s: cannot write: %s", self.path, err.strerror or err)

    def close(self, final: bool = True) -> None:
        """Stop; with `final`, write the last screen of the run."""
        self.hub.watch(self, None)
        if self in self.hub.outputs:
            self.hub.outputs.remove(self)
        if self._later is not None:
            self._later.cancel()  # type: ignore[attr-defined]
        if final:
            try:
                self._write(self.hub.capture())
            except HostError as err:
                log.warning("--display png:%s: %s", self.path, err)
        self._bell.close()


# --- keys ------------------------------------------------------------------------------------

class Keyboard(Protocol):
    """What KeyboardInput needs of the i8042 (devices/i8042.py)."""

    keyboard: object

    def key(self, code: int, down: bool) -> bool: ...


MAX_KEY_BYTES = 3  # the longest key event in sets 1 and 2: E0 F0 xx
KEY_RETRY_NS = 5_000_000
MAX_PENDING_KEYS = 256
KEY_GIVE_UP_NS = 5_000_000_000  # a guest that reads no keys for this long loses them


class KeyboardInput:
    """A `KeyEventSink`: keysym -> set 2 key -> the i8042's keyboard, in order, waiting
    while the keyboard's buffer is full; bounded, and given up on a guest that reads none."""

    def __init__(self, loop: EventLoop, lock: threading.Lock, kbc: Keyboard) -> None:
        self.loop = loop
        self.lock = lock
        self.kbc = kbc
        self.pending: deque[tuple[int, bool]] = deque()
        self.dropped = 0
        self._retry: object | None = None
        self._progress_ns = 0

    def __call__(self, keysym: int, down: bool) -> None:
        """From a display client, in the loop thread without the device lock."""
        code = keysym_to_set2(keysym)
        if code is None:
            log.debug("no key for keysym %#x", keysym)
            return
        if len(self.pending) >= MAX_PENDING_KEYS:
            self.dropped += 1
            return
        if not self.pending:
            self._progress_ns = self.loop.now_ns()
        self.pending.append((code, down))
        with self.lock:
            self._feed()

    def _feed(self) -> None:
        """Device lock held (a timer, or taken by the caller)."""
        self._retry = None
        room = self.kbc.keyboard.room  # type: ignore[attr-defined]
        while self.pending and room() >= MAX_KEY_BYTES:
            code, down = self.pending.popleft()
            self.kbc.key(code, down)
            self._progress_ns = self.loop.now_ns()
        if not self.pending:
            return
        if self.loop.now_ns() - self._progress_ns > KEY_GIVE_UP_NS:
            log.warning("the guest reads no keys; %d key events dropped", len(self.pending))
            self.dropped += len(self.pending)
            self.pending.clear()
        elif self._retry is None:
            self._retry = self.loop.call_at(self.loop.now_ns() + KEY_RETRY_NS, self._feed)


# --- the machine's displays --------------------------------------------------------------------

class Screen(Protocol):
    """What the displays need of the VGA (machine/display.py's VgaDisplay): frame sources,
    each with its own dirty rows. `blink` makes the cursor and blinking text follow the
    clock (for people watching); without it they are steady (files, screendumps)."""

    def frame_source(self, blink: bool = True) -> FrameSource: ...


class Displays:
    """Everything a machine shows: outputs from `--display`, screendumps, and the keys
    viewers type. Two hubs, made when first needed: a live one (blinking cursor) for
    viewers and a steady one for files, so a PNG is not rewritten for a cursor blink."""

    def __init__(self, loop: EventLoop, lock: threading.Lock, screen: Screen | None,
                 kbc: Keyboard, specs: list[DisplaySpec], name: str = "pyhvm") -> None:
        self.loop = loop
        self.lock = lock
        self.screen = screen
        self.keys = KeyboardInput(loop, lock, kbc)
        self.outputs: list[VncServer | WebDisplay | PngDisplay] = []
        self._hubs: dict[bool, DisplayHub] = {}
        try:
            for spec in specs:
                self._open(spec, name)
        except BaseException:
            self.close(final=False)
            raise

    def hub(self, blink: bool) -> DisplayHub:
        if self.screen is None:
            raise HostError("there is no display (the machine has no VGA)")
        if blink not in self._hubs:
            self._hubs[blink] = DisplayHub(self.loop, self.screen.frame_source(blink), self.lock)
        return self._hubs[blink]

    def _open(self, spec: DisplaySpec, name: str) -> None:
        if self.screen is None:
            raise ConfigError(f"--display {spec}: this machine has no VGA to show "
                              "(drop --vga none)")
        if spec.kind == "png":
            hub = self.hub(blink=False)
            output: VncServer | WebDisplay | PngDisplay = PngDisplay(hub, spec.path)
        else:
            hub = self.hub(blink=True)
            kind = VncServer if spec.kind == "vnc" else WebDisplay
            server = kind(self.loop, hub, self.keys, spec.host, spec.port, name=name,
                          period_ns=VNC_REFRESH_NS)
            output = server
            try:
                server.listen()
            except HostError as err:
                raise ConfigError(f"--display {spec}: {err}") from None
        hub.outputs.append(output)
        self.outputs.append(output)

    def screendump(self, path: str, fmt: str = "png") -> None:
        """Write the screen now, steady (QMP `screendump`): HostError without a VGA,
        OSError when the file cannot be written."""
        write_image(path, self.hub(blink=False).capture(), fmt)

    def close(self, final: bool = True) -> None:
        """Stop serving; PNG outputs write the last screen (when `final`)."""
        for output in self.outputs:
            if isinstance(output, PngDisplay):
                output.close(final)
            else:
                output.close()
        self.outputs = []
        for hub in self._hubs.values():
            hub.close()
        self._hubs.clear()


__all__ = ["DisplaySpec", "parse_display", "DisplayHub", "PngDisplay", "KeyboardInput",
           "Displays", "Doorbell", "frame_damage"]
