"""Worker results complete on the worker, with the device lock held."""

from __future__ import annotations

import threading

from pyhvm.runtime.workers import WorkerPool


def test_work_and_completion_run_on_a_worker_with_the_lock_for_the_completion() -> None:
    lock = threading.Lock()
    pool = WorkerPool(lock, threads=2)
    seen: list[tuple[object, bool, bool]] = []
    finished = threading.Event()
    main = threading.get_ident()

    def work() -> int:
        assert not lock.locked()  # blocking I/O never holds the device lock
        return 42

    def failing() -> int:
        raise OSError(5, "Input/output error")

    def done(result: object) -> None:
        seen.append((result, threading.get_ident() != main, lock.locked()))
        if len(seen) == 2:
            finished.set()

    for job in (work, failing):
        pool.submit(job, done)
    assert finished.wait(10)
    pool.close()
    results = {type(r).__name__ if isinstance(r, Exception) else r for r, _, _ in seen}
    assert results == {42, "OSError"}
    assert all(on_worker and locked for _, on_worker, locked in seen)
