"""Worker results come back on the event loop's thread, with the device lock held."""

from __future__ import annotations

import threading

from pyhvm.runtime.eventloop import EventLoop
from pyhvm.runtime.workers import WorkerPool


def test_work_runs_on_a_worker_and_completion_on_the_loop_with_the_lock() -> None:
    lock = threading.Lock()
    loop = EventLoop(lock)
    pool = WorkerPool(loop, threads=2)
    seen: list[tuple[object, bool, bool]] = []
    main = threading.get_ident()

    def work() -> int:
        assert threading.get_ident() != main
        return 42

    def failing() -> int:
        raise OSError(5, "Input/output error")

    for job in (work, failing):
        pool.submit(job, lambda result: seen.append(
            (result, threading.get_ident() == main, lock.locked())))
    loop.run(lambda: len(seen) == 2)
    pool.close()
    loop.close()
    results = {type(r).__name__ if isinstance(r, Exception) else r for r, _, _ in seen}
    assert results == {42, "OSError"}
    assert all(on_loop and locked for _, on_loop, locked in seen)
