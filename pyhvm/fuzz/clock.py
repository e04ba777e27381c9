"""A virtual clock for fuzzing: time moves only when the harness says, timers run in order.

It keeps cancelled timers in its heap and purges them by the same rule as the machine's event
loop (pyhvm/runtime/eventloop.py), so a device that keeps cancelling and re-arming far-future
timers shows up here as the same growth it would cause in a real run.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Callable

from ..runtime.eventloop import MIN_CANCELLED_TO_PURGE

Callback = Callable[[], None]
# More callbacks than this at one virtual instant: a timer that re-arms at `now` (the event
# loop would spin at 100% CPU forever). A real device never needs more than a handful.
SAME_INSTANT_LIMIT = 1000
STEP_CALLBACK_LIMIT = 1_000_000  # callbacks in one step: far more than any device's rate
FAR_FUTURE_NS = 2_000_000_000  # a cancelled timer due later than this is "stale"


class TimerStorm(Exception):
    """Timers that re-arm without letting time move: an unbounded loop in the event loop."""


class _Timer:
    __slots__ = ("cancelled", "_clock")

    def __init__(self, clock: "VirtualClock") -> None:
        self.cancelled = False
        self._clock = clock

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._clock._timer_cancelled()


class VirtualClock:
    """The `Clock` port (now_ns, call_at) over a virtual nanosecond counter."""

    def __init__(self, start_ns: int = 1_000_000_000) -> None:
        self.now = start_ns
        self._queue: list[tuple[int, int, _Timer, Callback]] = []
        self._seq = itertools.count()
        self._cancelled_in_heap = 0
        self.callbacks = 0

    def now_ns(self) -> int:
        return self.now

    def call_at(self, deadline_ns: int, callback: Callback) -> _Timer:
        if not isinstance(deadline_ns, int):
            raise TypeError(f"timer deadline {deadline_ns!r} is not an int")
        timer = _Timer(self)
        heapq.heappush(self._queue, (deadline_ns, next(self._seq), timer, callback))
        return timer

    def advance(self, ns: int, run: Callable[[Callback], None], late: bool = False) -> int:
        """Move time on by `ns`, handing each due callback to `run` in deadline order; `late`:
        as a busy event loop does, jump first and run the callbacks after, all late."""
        target = self.now + ns
        if late:
            self.now = target
        ran = same_instant = 0
        instant = None
        queue = self._queue
        while queue and queue[0][0] <= target:
            deadline, _, timer, callback = heapq.heappop(queue)
            if timer.cancelled:
                self._cancelled_in_heap = max(0, self._cancelled_in_heap - 1)
                continue
            self.now = max(self.now, deadline)
            if self.now == instant:
                same_instant += 1
                if same_instant > SAME_INSTANT_LIMIT:
                    raise TimerStorm(f"more than {SAME_INSTANT_LIMIT} timer callbacks at one "
                                     "virtual instant (a timer re-arms at or before now)")
            else:
                instant, same_instant = self.now, 0
            ran += 1
            self.callbacks += 1
            if ran > STEP_CALLBACK_LIMIT:
                raise TimerStorm(f"more than {STEP_CALLBACK_LIMIT} timer callbacks in one step")
            run(callback)
        self.now = max(self.now, target)
        return ran

    def _timer_cancelled(self) -> None:
        self._cancelled_in_heap += 1
        if (self._cancelled_in_heap >= MIN_CANCELLED_TO_PURGE
                and 2 * self._cancelled_in_heap >= len(self._queue)):
            self._queue = [entry for entry in self._queue if not entry[2].cancelled]
            heapq.heapify(self._queue)
            self._cancelled_in_heap = 0

    def live(self) -> int:
        """Timers armed and not cancelled."""
        return sum(1 for entry in self._queue if not entry[2].cancelled)

    def queued(self) -> int:
        """Heap entries, cancelled ones included (what the event loop would hold)."""
        return len(self._queue)

    def stale(self) -> int:
        """Cancelled timers the heap keeps for more than FAR_FUTURE_NS yet."""
        horizon = self.now + FAR_FUTURE_NS
        return sum(1 for entry in self._queue if entry[2].cancelled and entry[0] > horizon)
