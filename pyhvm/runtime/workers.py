"""A small pool of worker threads for blocking backend I/O (the concurrent placements).

`submit(work, done)` runs `work()` on a worker; `done(result)` then runs on the event loop
with the device lock held, exactly like a timer callback, so device models never see a
thread. An exception from `work` is passed to `done` as the result: a backend failure must
become a guest-visible error, not a dead worker.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

from .eventloop import EventLoop

_STOP = object()


class WorkerPool:
    def __init__(self, loop: EventLoop, threads: int = 2, name: str = "io") -> None:
        self._loop = loop
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._worker, name=f"{name}{i}", daemon=True)
                         for i in range(threads)]
        for thread in self._threads:
            thread.start()
        self.completed = 0

    def submit(self, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        self._queue.put((work, done))

    def _worker(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            work, done = item
            try:
                result = work()
            except Exception as err:  # reported to the device as a failed request
                result = err
            self.completed += 1
            self._loop.call_soon(lambda done=done, result=result: done(result))

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=5)
