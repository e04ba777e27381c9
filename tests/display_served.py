"""A display server (VNC or web) on real sockets in a real event loop thread, fed by the
display hub from a fake screen the test paints on: what the VNC and web display tests share."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Generic, Iterator, Protocol, TypeVar

import numpy as np

from pyhvm.backends.display.frame import Frame, KeyEventSink
from pyhvm.machine.displays import DisplayHub
from pyhvm.runtime.eventloop import EventLoop

WAIT_S = 10.0


class FakeScreen:
    """A FrameSource: a picture the test paints on, with honest dirty rows."""

    def __init__(self, lock: threading.Lock, height: int = 120, width: int = 160) -> None:
        self.lock = lock
        self.pixels = np.zeros((height, width, 3), dtype=np.uint8)
        self.pixels[:, :] = (0, 0, 170)
        self.dirty: tuple[int, int] | None = None  # None: everything (first frame)
        self.serial = 0
        self.calls = 0

    def frame(self) -> Frame:
        self.calls += 1
        self.serial += 1
        dirty, self.dirty = self.dirty, (0, 0)
        return Frame(self.pixels.copy(), dirty, self.serial)

    def paint(self, y0: int, y1: int, x0: int, x1: int, colour: object) -> None:
        with self.lock:
            self.pixels[y0:y1, x0:x1] = colour
            if self.dirty is None:
                pass  # everything is dirty already
            elif self.dirty[0] >= self.dirty[1]:
                self.dirty = (y0, y1)
            else:
                self.dirty = (min(self.dirty[0], y0), max(self.dirty[1], y1))

    def resize(self, height: int, width: int, pixels: np.ndarray | None = None) -> None:
        with self.lock:
            self.pixels = pixels if pixels is not None else \
                np.full((height, width, 3), 40, dtype=np.uint8)
            self.dirty = None


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class DisplayServer(Protocol):
    port: int

    def listen(self) -> tuple[str, int]: ...

    def close(self) -> None: ...


S = TypeVar("S", bound=DisplayServer)


class Served(Generic[S]):
    """A running server, its loop, screen and hub, and the keys it passed on."""

    def __init__(self, loop: EventLoop, screen: FakeScreen, hub: DisplayHub, server: S,
                 keys: list[tuple[int, bool]]) -> None:
        self.loop, self.screen, self.hub, self.server, self.keys = loop, screen, hub, server, keys

    def on_loop(self, fn: Callable[[], object]) -> object:
        """Run `fn` in the loop thread and wait for it (server state is the loop's)."""
        done = threading.Event()
        box: list[object] = []
        self.loop.call_soon(lambda: (box.append(fn()), done.set()))
        assert done.wait(WAIT_S)
        return box[0]


ServedT = TypeVar("ServedT", bound=Served)  # type: ignore[type-arg]


@contextmanager
def serve(make: Callable[[EventLoop, DisplayHub, KeyEventSink], S], served: type[ServedT],
          *, height: int = 120, width: int = 160,
          pixels: np.ndarray | None = None) -> Iterator[ServedT]:
    """`make(loop, hub, keys)`'s server listening on a free loopback port, the loop running in
    a thread of its own; everything is closed afterwards."""
    lock = threading.Lock()
    loop = EventLoop(lock)
    loop.max_sleep = 0.05
    screen = FakeScreen(lock, height, width)
    if pixels is not None:
        screen.pixels[:] = pixels
    hub = DisplayHub(loop, screen, lock)
    keys: list[tuple[int, bool]] = []
    server = make(loop, hub, lambda keysym, down: keys.append((keysym, down)))
    server.listen()
    hub.outputs.append(server)  # type: ignore[arg-type]
    done = threading.Event()
    thread = threading.Thread(target=loop.run, args=(done.is_set,), daemon=True)
    thread.start()
    try:
        yield served(loop, screen, hub, server, keys)
    finally:
        done.set()
        loop.wake()
        thread.join(timeout=5)
        server.close()
        hub.close()
        loop.close()
