"""The machine's event loop: timers for device models and file descriptors for backends.

It runs in the main thread. Device models see it only through the `Clock` port
(`now_ns`, `call_at`); backends register readers. Any thread may add a timer or ask for a
wake-up; callbacks always run in the loop's thread with the machine's device lock held, so a
model never runs concurrently with itself.
"""

from __future__ import annotations

import heapq
import itertools
import os
import selectors
import threading
import time
from typing import Callable

Callback = Callable[[], None]
# Due timers run per pass before file descriptors get another look: a guest that makes its
# devices' timers fire as fast as they can still cannot starve console input or a stop.
MAX_TIMERS_PER_PASS = 256
# Cancelled timers stay in the heap until they surface. A guest can re-arm far-future
# timers in a loop (RTC alarm toggles, RTL8139 TCTR writes), so once cancelled entries are
# this many and at least half the heap, the heap is rebuilt without them (as asyncio does).
MIN_CANCELLED_TO_PURGE = 64


class Timer:
    __slots__ = ("deadline_ns", "callback", "cancelled", "_loop")

    def __init__(self, deadline_ns: int, callback: Callback,
                 loop: "EventLoop | None" = None) -> None:
        self.deadline_ns = deadline_ns
        self.callback = callback
        self.cancelled = False
        self._loop = loop

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        if self._loop is not None:
            self._loop._timer_cancelled()


class EventLoop:
    def __init__(self, device_lock: threading.Lock) -> None:
        self._device_lock = device_lock
        # select(2) takes its timeout in microseconds; epoll's is in milliseconds, which
        # would make every 1 kHz timer tick up to a period late.
        self._selector = selectors.SelectSelector()
        self._timers: list[tuple[int, int, Timer]] = []
        self._timers_lock = threading.Lock()
        self._seq = itertools.count()
        self._cancelled_in_heap = 0
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._calls: list[Callback] = []
        self.running = False
        self.timer_callbacks = 0
        self.max_sleep: float | None = None

    # --- the Clock port ------------------------------------------------------------------
    def now_ns(self) -> int:
        return time.monotonic_ns()

    def call_at(self, deadline_ns: int, callback: Callback) -> Timer:
        timer = Timer(deadline_ns, callback, self)
        with self._timers_lock:
            earliest = not self._timers or deadline_ns < self._timers[0][0]
            heapq.heappush(self._timers, (deadline_ns, next(self._seq), timer))
        if earliest and threading.get_ident() != self._thread_ident:
            self.wake()
        return timer

    _thread_ident: int | None = None

    def _timer_cancelled(self) -> None:
        with self._timers_lock:
            self._cancelled_in_heap += 1
            if (self._cancelled_in_heap >= MIN_CANCELLED_TO_PURGE
                    and 2 * self._cancelled_in_heap >= len(self._timers)):
                self._timers = [entry for entry in self._timers if not entry[2].cancelled]
                heapq.heapify(self._timers)
                self._cancelled_in_heap = 0

    @property
    def pending_timers(self) -> int:
        """Timers in the heap, cancelled ones not yet purged included (for tests and stats)."""
        with self._timers_lock:
            return len(self._timers)

    # --- from any thread -----------------------------------------------------------------
    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the loop is already going to wake

    def call_soon(self, callback: Callback) -> None:
        """Run `callback` in the loop's thread (with the device lock) as soon as possible."""
        with self._timers_lock:
            self._calls.append(callback)
        self.wake()

    # --- file descriptors (loop thread only) ---------------------------------------------
    def add_reader(self, fd: int, callback: Callback) -> None:
        self._selector.register(fd, selectors.EVENT_READ, callback)

    def remove_reader(self, fd: int) -> None:
        self._selector.unregister(fd)

    # --- running -------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool]) -> None:
        self._thread_ident = threading.get_ident()
        self.running = True
        try:
            while not should_stop():
                self._run_once()
        finally:
            self.running = False

    def _run_once(self) -> None:
        with self._timers_lock:
            timeout = None
            if self._calls:
                timeout = 0.0
            elif self._timers:
                timeout = max(0.0, (self._timers[0][0] - time.monotonic_ns()) / 1e9)
        if timeout is None and self.max_sleep is not None:
            timeout = self.max_sleep
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                _drain(self._wake_r)
            else:
                key.data()
        self._run_calls()
        self._run_due_timers()

    def _run_calls(self) -> None:
        with self._timers_lock:
            calls, self._calls = self._calls, []
        for call in calls:
            with self._device_lock:
                call()

    def _run_due_timers(self) -> None:
        now = time.monotonic_ns()
        for _ in range(MAX_TIMERS_PER_PASS):
            with self._timers_lock:
                if not self._timers or self._timers[0][0] > now:
                    return
                _, _, timer = heapq.heappop(self._timers)
                if timer.cancelled:
                    self._cancelled_in_heap = max(0, self._cancelled_in_heap - 1)
                    continue
            self.timer_callbacks += 1
            with self._device_lock:
                timer.callback()

    def close(self) -> None:
        self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
