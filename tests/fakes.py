"""Small fakes for driving device models without KVM, threads or real time."""

from __future__ import annotations

import heapq
import itertools
from typing import Callable


class FakeIrq:
    """An IrqLine that records every level change."""

    def __init__(self) -> None:
        self.level = False
        self.changes: list[bool] = []

    def set_level(self, level: bool) -> None:
        level = bool(level)
        if level != self.level or not self.changes:
            self.changes.append(level)
        self.level = level

    @property
    def rising_edges(self) -> int:
        previous, count = False, 0
        for level in self.changes:
            count += level and not previous
            previous = level
        return count


class _Timer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A Clock whose time moves only when the test calls `advance`."""

    def __init__(self, start_ns: int = 0) -> None:
        self.now = start_ns
        self._queue: list[tuple[int, int, _Timer, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.scheduled: list[int] = []  # every deadline ever asked for, in order

    def now_ns(self) -> int:
        return self.now

    def call_at(self, deadline_ns: int, callback: Callable[[], None]) -> _Timer:
        timer = _Timer()
        self.scheduled.append(deadline_ns)
        heapq.heappush(self._queue, (deadline_ns, next(self._seq), timer, callback))
        return timer

    def pending(self) -> int:
        return sum(1 for _, _, timer, _ in self._queue if not timer.cancelled)

    def advance(self, ns: int, max_callbacks: int = 1_000_000) -> int:
        """Move time forward by `ns`, running due callbacks in deadline order; how many ran."""
        target = self.now + ns
        ran = 0
        while self._queue and self._queue[0][0] <= target:
            deadline, _, timer, callback = heapq.heappop(self._queue)
            if timer.cancelled:
                continue
            self.now = max(self.now, deadline)
            callback()
            ran += 1
            if ran >= max_callbacks:
                raise AssertionError(f"more than {max_callbacks} timer callbacks: a storm")
        self.now = target
        return ran
