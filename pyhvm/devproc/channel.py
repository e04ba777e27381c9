"""The VMM's end of a device process: requests out, answers and events back, and what
happens when the other end dies or hangs.

A read (or the INTA cycle) is synchronous: the request goes into the ring, the device
process is woken if it sleeps, and the caller waits for the answer: first spinning on the
slot for `spin_us` (a knob: an eventfd wake-up costs a context switch each way), then
asleep on the response eventfd with the deadline as timeout. A posted write only waits
when the ring is full. Events (interrupt line changes, UART output) are taken whenever
the channel is used and by the event loop when the device process signals them.

A device process that dies (its pidfd turns readable), misses the deadline or breaks the
ring protocol is *failed*: one line on stderr says what happened, the process is killed,
and from then on every read returns all ones, every write is dropped and no interrupt
comes from it, as for hardware that stopped answering. `on_failure` lets the machine apply
`--device-process-failure` (carry on, or stop the VM).

Callers hold the channel's lock only through these methods; the lock orders the ring's
single producer and consumer. Never take the machine's device lock while holding it.
"""

from __future__ import annotations

import math
import os
import select
import sys
import threading
import time
from typing import Callable

from .protocol import (EVT_CONSOLE, EVT_IRQ, INTA_NONE, OP_CONTROL, OP_INTA, OP_IRQ, OP_READ,
                       OP_WRITE, RANGES, all_ones)
from .ring import RingError, VmmRing, fence

DEFAULT_DEADLINE_S = 1.0
DEFAULT_SPIN_US = 0


def _drain_eventfd(fd: int) -> None:
    try:
        os.eventfd_read(fd)
    except (BlockingIOError, OSError):
        pass


class Channel:
    """Requests to one device process through `ring`, with eventfds for notification."""

    def __init__(self, ring: VmmRing, req_efd: int, resp_efd: int, evt_efd: int, *,
                 name: str, deadline_s: float = DEFAULT_DEADLINE_S,
                 spin_us: int = DEFAULT_SPIN_US, posted: bool = True) -> None:
        self.ring = ring
        self.req_efd, self.resp_efd, self.evt_efd = req_efd, resp_efd, evt_efd
        self.name = name                  # e.g. "uart,pic": for messages
        self.deadline_s = deadline_s
        self.spin_ns = int(spin_us * 1000)
        self.posted = posted              # post writes (True) or wait for each (False)
        self.lock = threading.Lock()
        self.failed = False
        self.failure = ""
        self.pidfd: int | None = None
        self.describe_exit: Callable[[], str] = lambda: "exited"
        self.kill: Callable[[], None] = lambda: None
        # Where events go (set by the host): line changes and console bytes.
        self.on_irq: Callable[[int, int], None] = lambda line, level: None
        self.on_console: Callable[[bytes], None] = lambda data: None
        self.on_failure: Callable[[str], None] = lambda reason: None
        self.consequence = ""           # what failing means here (the policy), for the log
        self.allowed_lines: frozenset[int] = frozenset()
        self.console_allowed = False
        self._poll = select.poll()
        self._poll.register(resp_efd, select.POLLIN)
        # What the placement costs, for --stats and the benchmark.
        self.reads = self.writes = self.syncs_slept = self.full_waits = self.events = 0
        self.notifies = 0

    def attach_process(self, pidfd: int, describe_exit: Callable[[], str],
                       kill: Callable[[], None]) -> None:
        """Watch the process: its death ends any wait at once."""
        self.pidfd = pidfd
        self.describe_exit = describe_exit
        self.kill = kill
        self._poll.register(pidfd, select.POLLIN)

    # -- the operations (any thread) ------------------------------------------------------
    def read(self, target: int, offset: int, size: int) -> int:
        with self.lock:
            if self.failed:
                return all_ones(size)
            self.reads += 1
            answer = self._sync(OP_READ, target, offset, size, 0,
                                lambda: f"a read of {RANGES[target].name}+{offset}")
            if answer is None:
                return all_ones(size)
            refused, value = answer
            if refused:
                return all_ones(size)
            if value >> (8 * size):
                self._fail(f"answered a {size}-byte read with {value:#x}")
                return all_ones(size)
            return value

    def write(self, target: int, offset: int, size: int, value: int) -> None:
        with self.lock:
            if self.failed:
                return
            self.writes += 1
            if self.posted:
                self._post(OP_WRITE, target, offset, size, value)
                self._take_events()  # e.g. UART output of earlier writes: never signalled
            else:
                self._sync(OP_WRITE, target, offset, size, value,
                           lambda: f"a write to {RANGES[target].name}+{offset}")

    def set_irq(self, irq: int, level: bool) -> None:
        """An input of the PIC in the device process (posted)."""
        with self.lock:
            if not self.failed:
                self._post(OP_IRQ, 0, irq, 1, int(level))

    def control(self, group: int, command: int, data: int = 0, size: int = 0) -> None:
        with self.lock:
            if not self.failed:
                self._post(OP_CONTROL, group, command, size, data)

    def inta(self) -> int | None:
        """The INTA cycle: the vector, or None when no request is pending (or failed)."""
        with self.lock:
            if self.failed:
                return None
            answer = self._sync(OP_INTA, 0, 0, 1, 0, lambda: "the INTA cycle")
            if answer is None or answer[0]:
                return None
            vector = answer[1]
            if vector == INTA_NONE:
                return None
            if vector > 0xFF:
                self._fail(f"answered INTA with {vector:#x}, not a vector")
                return None
            return vector

    def poll_events(self) -> None:
        """Take whatever events wait (the event loop, when the device process signals)."""
        _drain_eventfd(self.evt_efd)
        with self.lock:
            if not self.failed:
                self._take_events()

    def process_died(self) -> None:
        """The pidfd turned readable (the event loop noticed first)."""
        with self.lock:
            self._fail(self.describe_exit())

    def fail(self, reason: str) -> None:
        with self.lock:
            self._fail(reason)

    # -- inside the lock ------------------------------------------------------------------
    def _notify(self) -> None:
        """After publishing a request: wake the device process if it sleeps (Dekker: the
        slot store, a fence, then the load of its flag; it stores the flag, fences, and
        looks at the ring once more before sleeping)."""
        fence()
        if self.ring.device_sleeping():
            self.notifies += 1
            os.eventfd_write(self.req_efd, 1)

    def _put(self, op: int, target: int, offset: int, size: int, data: int,
             what: Callable[[], str]) -> int | None:
        ring = self.ring
        try:
            seq = ring.put(op, target, offset, size, data)
            if seq is not None:
                return seq
            self.full_waits += 1
            deadline = time.monotonic() + self.deadline_s
            while seq is None:
                self._notify()
                if not self._sleep_until(deadline, lambda: not ring.ready(ring.head)):
                    self._fail(f"did not take requests within {self.deadline_s:g} s "
                               f"(ring full at {what()})")
                    return None
                seq = ring.put(op, target, offset, size, data)
            return seq
        except RingError as err:
            self._fail(f"broke the ring protocol: {err}")
            return None

    def _post(self, op: int, target: int, offset: int, size: int, data: int) -> None:
        if self._put(op, target, offset, size, data,
                     lambda: f"a write to {RANGES[target].name}") is not None:
            self._notify()

    def _sync(self, op: int, target: int, offset: int, size: int, data: int,
              what: Callable[[], str]) -> tuple[bool, int] | None:
        seq = self._put(op, target, offset, size, data, what)
        if seq is None:
            return None
        self._notify()
        ring = self.ring
        try:
            answer = ring.answer(seq)
            if answer is None and self.spin_ns:
                end = time.monotonic_ns() + self.spin_ns
                while answer is None and time.monotonic_ns() < end:
                    answer = ring.answer(seq)
            if answer is None:
                self.syncs_slept += 1
                deadline = time.monotonic() + self.deadline_s
                done: list[tuple[bool, int]] = []

                def answered() -> bool:
                    result = ring.answer(seq)
                    if result is not None:
                        done.append(result)
                    return result is not None

                if not self._sleep_until(deadline, answered):
                    self._fail(f"did not answer {what()} within {self.deadline_s:g} s "
                               "(hung); killed it")
                    return None
                answer = done[0]
            self._take_events()
            return answer
        except RingError as err:
            self._fail(f"broke the ring protocol: {err}")
            return None

    def _sleep_until(self, deadline: float, condition: Callable[[], bool]) -> bool:
        """Sleep on the response eventfd (and the pidfd) until `condition()`; False at the
        deadline or when the process dies (then the channel has failed)."""
        ring = self.ring
        ring.set_waiting(True)
        try:
            while True:
                fence()
                if condition():
                    return True
                self._take_events()  # the device process may wait for event space
                if self.failed:
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                for fd, _ in self._poll.poll(max(1, math.ceil(remaining * 1000))):
                    if fd == self.resp_efd:
                        _drain_eventfd(fd)
                    elif fd == self.pidfd:
                        if not condition():
                            self._fail(self.describe_exit())
                            return False
        finally:
            ring.set_waiting(False)

    def _take_events(self) -> None:
        ring = self.ring
        try:
            for _ in range(ring.layout.evt_slots):
                event = ring.take_event()
                if event is None:
                    return
                self.events += 1
                kind, arg, length, payload = event
                if kind == EVT_IRQ:
                    if arg not in self.allowed_lines or length not in (0, 1):
                        raise RingError(f"an interrupt event for line {arg} (level "
                                        f"{length}) that it does not drive")
                    self.on_irq(arg, length)
                elif kind == EVT_CONSOLE and self.console_allowed:
                    self.on_console(bytes(payload[:length]))
                else:
                    raise RingError(f"an event of kind {kind}")
        except RingError as err:
            self._fail(f"broke the ring protocol: {err}")

    def _fail(self, reason: str) -> None:
        if self.failed:
            return
        self.failed = True
        self.failure = reason
        try:
            self.kill()
        except OSError:
            pass
        print(f"pyhvm: device process ({self.name}) {reason}{self.consequence}",
              file=sys.stderr, flush=True)
        self.on_failure(reason)

    def stats(self) -> dict[str, object]:
        return {"reads": self.reads, "writes": self.writes, "posted": self.posted,
                "sync_sleeps": self.syncs_slept, "ring_full_waits": self.full_waits,
                "events": self.events, "notifies": self.notifies,
                "refused": self.ring.refused, "failed": self.failed,
                "failure": self.failure or None}
