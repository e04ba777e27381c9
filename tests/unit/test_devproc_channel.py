"""The VMM's end of a device process (pyhvm/devproc/channel.py) against a device side
played by a thread of this process: answers, posting, events, and every way the other
end can fail (wrong answers, silence, death, events it has no right to send)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from pyhvm.devproc import ring as r
from pyhvm.devproc.channel import Channel
from pyhvm.devproc.protocol import (EVT_CONSOLE, EVT_IRQ, INTA_NONE, OP_INTA, OP_READ, OP_WRITE,
                                    RANGE_IDS)

COM1 = RANGE_IDS["com1"]
Handler = Callable[[r.DeviceRing, r.Request], None]


def answer_reads_with_offset(ring: r.DeviceRing, request: r.Request) -> None:
    """Reads return 0x40 + offset, INTA vector 0x28, writes are acknowledged."""
    if request.op == OP_READ:
        ring.answer(request, 0x40 + request.offset)
    elif request.op == OP_INTA:
        ring.answer(request, 0x28)
    else:
        ring.answer(request)


class FakeDevice:
    """The device process's ring protocol in a thread: sleep on the request eventfd,
    take requests in order, answer through `handler`, wake a waiting VMM."""

    def __init__(self, ring: r.DeviceRing, req_efd: int, resp_efd: int,
                 handler: Handler = answer_reads_with_offset) -> None:
        self.ring, self.req_efd, self.resp_efd = ring, req_efd, resp_efd
        self.handler = handler
        self.taken: list[r.Request] = []
        self.paused = threading.Event()  # set: take nothing (a hung device)
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        ring = self.ring
        while not self.stop:
            ring.set_sleeping(True)
            r.fence()
            if not ring.pending() or self.paused.is_set():
                select.select([self.req_efd], [], [], 0.01)
                try:
                    os.eventfd_read(self.req_efd)
                except BlockingIOError:
                    pass
            ring.set_sleeping(False)
            if self.paused.is_set():
                continue
            while (request := ring.take()) is not None:
                self.taken.append(request)
                self.handler(ring, request)
            r.fence()
            if ring.vmm_waiting():
                os.eventfd_write(self.resp_efd, 1)

    def close(self) -> None:
        self.stop = True
        self.thread.join(timeout=5)


class Rig:
    def __init__(self, handler: Handler = answer_reads_with_offset, deadline_s: float = 2.0,
                 req_slots: int = 8) -> None:
        layout = r.RingLayout(req_slots=req_slots, evt_slots=8)
        self.fd, self.buf = r.create_ring_memory(layout)
        self.device_buf, device_layout = r.attach_ring_memory(self.fd)
        self.efds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(3)]
        self.device_ring = r.DeviceRing(self.device_buf, device_layout)
        self.channel = Channel(r.VmmRing(self.buf, layout), *self.efds, name="test",
                               deadline_s=deadline_s)
        self.failures: list[str] = []
        self.irqs: list[tuple[int, int]] = []
        self.console = bytearray()
        self.channel.on_failure = self.failures.append
        self.channel.on_irq = lambda line, level: self.irqs.append((line, level))
        self.channel.on_console = self.console.extend
        self.channel.allowed_lines = frozenset({4})
        self.channel.console_allowed = True
        self.device = FakeDevice(self.device_ring, self.efds[0], self.efds[1], handler)

    def close(self) -> None:
        self.device.close()
        self.channel.ring.close()
        self.device_ring.close()
        self.device_buf.close()
        self.buf.close()
        for fd in (self.fd, *self.efds):
            os.close(fd)


@pytest.fixture
def rig() -> Iterator[Rig]:
    made = Rig()
    yield made
    made.close()


def test_a_read_returns_what_the_device_answered(rig: Rig) -> None:
    assert rig.channel.read(COM1, 5, 1) == 0x45
    assert rig.channel.inta() == 0x28
    assert not rig.channel.failed


def test_posted_writes_reach_the_device_in_order_before_a_later_read(rig: Rig) -> None:
    for value in range(20):  # more than the ring holds: posting waits for room
        rig.channel.write(COM1, 7, 1, value)
    assert rig.channel.read(COM1, 7, 1) == 0x47
    writes = [t.data for t in rig.device.taken if t.op == OP_WRITE]
    assert writes == list(range(20))
    assert rig.device.taken[-1].op == OP_READ


def test_unposted_writes_wait_for_the_device(rig: Rig) -> None:
    rig.channel.posted = False
    rig.channel.write(COM1, 0, 1, 0x41)
    assert [t.data for t in rig.device.taken] == [0x41]  # taken before write() returned


def test_inta_with_nothing_pending_is_none() -> None:
    def nothing(ring: r.DeviceRing, request: r.Request) -> None:
        ring.answer(request, INTA_NONE)

    rig = Rig(nothing)
    try:
        assert rig.channel.inta() is None
        assert not rig.channel.failed
    finally:
        rig.close()


def test_events_are_delivered_when_the_channel_is_used(rig: Rig) -> None:
    rig.device_ring.put_event(EVT_IRQ, 4, 1)
    rig.device_ring.put_event(EVT_CONSOLE, 0, 2, b"hi")
    rig.channel.poll_events()
    assert rig.irqs == [(4, 1)] and bytes(rig.console) == b"hi"


@pytest.mark.parametrize("event", [(EVT_IRQ, 14, 1), (EVT_IRQ, 4, 2), (77, 0, 0)],
                         ids=["line-it-does-not-drive", "bad-level", "unknown-kind"])
def test_an_event_it_has_no_right_to_send_fails_the_device(
        rig: Rig, event: tuple[int, int, int], capsys: pytest.CaptureFixture[str]) -> None:
    rig.device_ring.put_event(*event)
    rig.channel.poll_events()
    assert rig.channel.failed and rig.irqs == []
    assert len(rig.failures) == 1 and "broke the ring protocol" in rig.failures[0]
    assert capsys.readouterr().err.count("pyhvm: device process (test)") == 1


def _fails_like_absent_hardware(rig: Rig) -> None:
    assert rig.channel.failed
    taken = len(rig.device.taken)
    assert rig.channel.read(COM1, 5, 1) == 0xFF
    assert rig.channel.read(COM1, 0, 4) == 0xFFFFFFFF
    assert rig.channel.inta() is None
    rig.channel.write(COM1, 0, 1, 0x41)
    rig.channel.set_irq(4, True)
    assert len(rig.device.taken) == taken  # nothing more goes out
    assert len(rig.failures) == 1  # said once


def test_a_read_answered_with_too_wide_a_value_fails_the_device() -> None:
    def wide(ring: r.DeviceRing, request: r.Request) -> None:
        ring.answer(request, 0x1FF)

    rig = Rig(wide)
    try:
        assert rig.channel.read(COM1, 5, 1) == 0xFF
        assert "answered a 1-byte read with 0x1ff" in rig.failures[0]
        _fails_like_absent_hardware(rig)
    finally:
        rig.close()


def test_an_answer_in_the_wrong_slot_fails_the_device() -> None:
    def corrupt(ring: r.DeviceRing, request: r.Request) -> None:
        ring.answer(request, 1)
        ring.view[ring.slot_offset(request.seq) + r._REQ_SEQ_AT] ^= 0xFF

    rig = Rig(corrupt)
    try:
        assert rig.channel.read(COM1, 5, 1) == 0xFF
        assert "broke the ring protocol" in rig.failures[0]
        _fails_like_absent_hardware(rig)
    finally:
        rig.close()


def test_a_device_that_stops_answering_fails_at_the_deadline() -> None:
    rig = Rig(deadline_s=0.2)
    killed: list[bool] = []
    rig.channel.kill = lambda: killed.append(True)
    try:
        rig.device.paused.set()
        assert rig.channel.read(COM1, 5, 1) == 0xFF
        assert "did not answer a read of com1+5 within 0.2 s (hung)" in rig.failures[0]
        assert killed
        rig.device.paused.clear()
        _fails_like_absent_hardware(rig)
    finally:
        rig.close()


def test_a_full_ring_that_never_drains_fails_at_the_deadline() -> None:
    rig = Rig(deadline_s=0.2, req_slots=4)
    try:
        rig.device.paused.set()
        for _ in range(5):
            rig.channel.write(COM1, 0, 1, 0x41)
        assert "did not take requests within 0.2 s (ring full" in rig.failures[0]
    finally:
        rig.close()


def test_a_device_process_that_dies_fails_the_wait_at_once(rig: Rig) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    pidfd = os.pidfd_open(child.pid)
    try:
        rig.channel.deadline_s = 30.0
        rig.channel.attach_process(pidfd, lambda: "died (test)", child.kill)
        rig.device.paused.set()
        assert child.stdin is not None
        child.stdin.close()  # the child exits: its pidfd turns readable
        assert rig.channel.read(COM1, 5, 1) == 0xFF
        assert rig.failures == ["died (test)"]
    finally:
        child.wait()
        os.close(pidfd)


def test_the_failure_line_says_what_happened_and_what_follows(
        rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    rig.channel.consequence = "; the VM runs on"
    rig.channel.fail("died (killed by SIGKILL)")
    rig.channel.fail("again")
    assert capsys.readouterr().err == \
        "pyhvm: device process (test) died (killed by SIGKILL); the VM runs on\n"
