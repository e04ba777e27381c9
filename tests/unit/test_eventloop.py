"""The event loop runs timers in deadline order, from any thread, under the device lock."""

from __future__ import annotations

import os
import threading

from pyhvm.runtime.eventloop import MAX_TIMERS_PER_PASS, EventLoop


def make_loop() -> tuple[EventLoop, threading.Lock]:
    lock = threading.Lock()
    return EventLoop(lock), lock


def test_timers_run_in_deadline_order_with_the_device_lock_held() -> None:
    loop, lock = make_loop()
    order: list[str] = []
    now = loop.now_ns()
    loop.call_at(now + 2_000_000, lambda: order.append(f"b{lock.locked()}"))
    loop.call_at(now + 1_000_000, lambda: order.append(f"a{lock.locked()}"))
    loop.run(lambda: len(order) == 2)
    loop.close()
    assert order == ["aTrue", "bTrue"]


def test_cancelled_timer_does_not_run() -> None:
    loop, _ = make_loop()
    ran: list[int] = []
    now = loop.now_ns()
    loop.call_at(now, lambda: ran.append(1)).cancel()
    loop.call_at(now + 1_000_000, lambda: ran.append(2))
    loop.run(lambda: bool(ran))
    loop.close()
    assert ran == [2]


def test_call_soon_from_another_thread_wakes_a_sleeping_loop() -> None:
    loop, _ = make_loop()
    done = threading.Event()
    thread = threading.Thread(target=lambda: loop.call_soon(done.set))
    loop.call_at(loop.now_ns() + 60_000_000_000, lambda: None)  # would sleep a minute
    thread.start()
    loop.run(done.is_set)
    thread.join()
    loop.close()
    assert done.is_set()


def test_a_timer_storm_cannot_starve_file_descriptors() -> None:
    """A callback that re-arms itself in the past still lets readers run between passes."""
    loop, _ = make_loop()
    r, w = os.pipe()
    seen: list[bytes] = []
    fired = [0]

    def storm() -> None:
        fired[0] += 1
        loop.call_at(0, storm)

    loop.call_at(0, storm)
    loop.add_reader(r, lambda: seen.append(os.read(r, 10)))
    os.write(w, b"x")
    loop.run(lambda: bool(seen))
    loop.close()
    os.close(r)
    os.close(w)
    assert seen == [b"x"]
    assert fired[0] <= 2 * MAX_TIMERS_PER_PASS


def test_cancelled_far_future_timers_do_not_pile_up() -> None:
    """A guest re-arming a far-future timer in a loop must not grow the heap without bound."""
    loop = EventLoop(threading.Lock())
    try:
        far = loop.now_ns() + 10**12
        timer = loop.call_at(far, lambda: None)
        for _ in range(10_000):
            timer.cancel()
            timer = loop.call_at(far, lambda: None)
        assert loop.pending_timers < 200
        ran: list[int] = []
        loop.call_at(loop.now_ns(), lambda: ran.append(1))
        loop._run_due_timers()
        assert ran == [1]
    finally:
        loop.close()


def test_purge_keeps_live_timers_in_order() -> None:
    loop = EventLoop(threading.Lock())
    try:
        now = loop.now_ns()
        order: list[int] = []
        live = [loop.call_at(now - 1000 + i, lambda i=i: order.append(i)) for i in range(10)]
        for _ in range(500):
            loop.call_at(now + 10**12, lambda: None).cancel()
        assert loop.pending_timers < 100
        loop._run_due_timers()
        assert order == list(range(10))
        assert all(not t.cancelled for t in live)
    finally:
        loop.close()
