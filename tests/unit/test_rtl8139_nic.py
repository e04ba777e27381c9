"""The NIC as the machine wires it (pyhvm/machine/nic.py): the RTL8139 model on the PCI bus,
a backend, and the event/poll placements, with a fake event loop and a fake backend, so a
test plays the guest (port I/O through the bus) and the wire (frames in, frames out)
without KVM, sockets or threads. What the issue's "bad input" list asks of the machine
level: a backend that fails or floods, writes while in reset, a full ring."""

from __future__ import annotations

import threading
from collections import deque
from types import SimpleNamespace
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhvm.backends.net_base import NetCounters, NetError, Offered
from pyhvm.bus import mmio_bus, pio_bus
from pyhvm.devices.pci_chipset import build_pc_chipset
from pyhvm.devices.rtl8139 import (
    CBR,
    CR,
    CR_RE,
    CR_RST,
    CR_TE,
    IMR,
    INT_LINKCHG,
    INT_MASK,
    ISR,
    MSR,
    MSR_LINKB,
    RBSTART,
    RCR,
    RCR_AB,
    RCR_APM,
    TSAD0,
    TSD0,
    TSD_CRS,
    TSD_OWN,
    TSD_TOK,
)
from pyhvm.machine import nic as nic_module
from pyhvm.machine.nic import NIC_IO_BASE, RX_BUDGET, Nic, NicConfig
from pyhvm.runtime.dispatch import Buses
from tests.fakes import FakeClock, FakeIrq
from tests.unit.test_rtl8139 import MAC, RAM, RING, TXBUF, TrackingMemory, frame, span

NETDEV = "dgram,id=n0,local.type=unix,local.path=/nonexistent/a,remote.type=unix," \
         "remote.path=/nonexistent/b"
BACKEND_FD = 42


class FakeLoop(FakeClock):
    """The EventLoop's interface on a FakeClock; like the real selector, removing a reader
    that is not registered raises (so a double removal shows)."""

    def __init__(self) -> None:
        super().__init__(1_000_000)
        self.readers: dict[int, Callable[[], None]] = {}
        self.soon: list[Callable[[], None]] = []

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        assert fd not in self.readers, "fd registered twice"
        self.readers[fd] = callback

    def remove_reader(self, fd: int) -> None:
        del self.readers[fd]

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.soon.append(callback)

    def run_soon(self) -> int:
        ran = 0
        while self.soon:
            self.soon.pop(0)()
            ran += 1
        return ran

    def readable(self) -> None:
        """The backend's fd selected readable: what the loop calls."""
        self.readers[BACKEND_FD]()


class FakeBackend:
    """Frames queued in `inbox` come from the wire (unchecked: runts and giants too)."""

    def __init__(self) -> None:
        self.name = "fake"
        self.counters = NetCounters()
        self.inbox: deque[bytes] = deque()
        self.sent: list[bytes] = []
        self.recv_error: str | None = None
        self.send_error: str | None = None
        self.endless: bytes | None = None  # a flood: recv never runs dry
        self.recv_calls = 0
        self.full = False  # the host's queue has no room: offer answers FULL

    def fileno(self) -> int:
        return BACKEND_FD

    def offer(self, frame: bytes) -> Offered:
        if self.send_error:
            raise NetError(self.send_error)
        if self.full:
            return Offered.FULL
        self.sent.append(bytes(frame))
        return Offered.SENT

    def send(self, frame: bytes) -> bool:
        return self.offer(frame) is Offered.SENT

    def recv(self) -> bytes | None:
        self.recv_calls += 1
        if self.recv_error:
            raise NetError(self.recv_error)
        if self.endless is not None:
            return self.endless
        return self.inbox.popleft() if self.inbox else None

    def close(self) -> None:
        pass


class NicRig:
    """A Nic in a fake machine; `w`/`r` are the guest's port I/O through the PIO bus."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, mode: str = "event",
                 ram: int = RAM) -> None:
        self.backend = FakeBackend()
        monkeypatch.setattr(nic_module, "open_backend", lambda netdev: self.backend)
        self.memory = TrackingMemory(ram)
        self.loop = FakeLoop()
        self.irqs: dict[int, FakeIrq] = {}
        self.machine = SimpleNamespace(
            memory=self.memory, loop=self.loop, io_lock=threading.Lock(),
            buses=Buses(pio_bus(), mmio_bus()),
            chipset=build_pc_chipset(isa_line=lambda irq: self.irqs.setdefault(irq, FakeIrq())))
        self.nic = Nic(self.machine, NicConfig(netdev=NETDEV, device="rtl8139,netdev=n0",
                                               mode=mode))  # type: ignore[arg-type]
        self.nic.start()

    def w(self, offset: int, size: int, value: int) -> None:
        self.machine.buses.pio.write(NIC_IO_BASE + offset, size, value)

    def r(self, offset: int, size: int) -> int:
        return self.machine.buses.pio.read(NIC_IO_BASE + offset, size)

    def open(self) -> None:
        """A driver's open: reset, ring, enables, filter, interrupt mask."""
        self.w(CR, 1, CR_RST)
        self.w(RBSTART, 4, RING)
        self.w(CR, 1, CR_RE | CR_TE)
        self.w(RCR, 4, RCR_APM | RCR_AB)
        self.w(IMR, 2, INT_MASK)

    def post(self, descriptor: int, size: int = 60, address: int = TXBUF) -> None:
        self.w(TSAD0 + 4 * descriptor, 4, address)
        self.w(TSD0 + 4 * descriptor, 4, size)

    def consume_all(self) -> None:
        self.w(0x38, 2, (self.r(CBR, 2) - 16) & 0xFFFF)  # CAPR = read pointer - 16


# -- a backend that fails -----------------------------------------------------------------

def test_backend_failing_on_read_takes_the_link_down_and_the_vm_runs_on(monkeypatch) -> None:
    """A TAP deleted under us: the next read fails. The guest sees LinkChg and LINKB, the
    fd leaves the loop, later TX completes with CRS and is counted, nothing raises."""
    rig = NicRig(monkeypatch)
    rig.open()
    rig.backend.recv_error = "TAP gone"
    rig.loop.readable()
    assert rig.nic.backend_dead
    assert rig.r(ISR, 2) & INT_LINKCHG and rig.r(MSR, 1) & MSR_LINKB
    rig.loop.run_soon()
    assert BACKEND_FD not in rig.loop.readers
    rig.post(0)
    rig.loop.run_soon()
    assert rig.r(TSD0, 4) & (TSD_OWN | TSD_TOK | TSD_CRS) == TSD_OWN | TSD_TOK | TSD_CRS
    assert rig.backend.sent == [] and rig.nic.model.tx_dropped["link-down"] == 1
    stats = rig.nic.stats()
    assert stats["backend_dead"] is True and stats["tx_dropped"] == {"link-down": 1}
    rig.w(ISR, 2, 0xFFFF)  # the guest goes on using its NIC
    assert rig.r(ISR, 2) == 0


@pytest.mark.parametrize("mode", ["event", "poll"])
def test_backend_failing_on_send_counts_the_frame_lost(monkeypatch, mode: str) -> None:
    rig = NicRig(monkeypatch, mode)
    rig.open()
    rig.backend.send_error = "write failed"
    rig.post(0)
    rig.loop.run_soon()
    rig.loop.advance(20_000_000)  # the poll placement's tick
    assert rig.nic.tx_lost == 1 and rig.nic.backend_dead
    rig.loop.run_soon()
    assert BACKEND_FD not in rig.loop.readers
    rig.post(1)
    rig.loop.run_soon()
    rig.loop.advance(20_000_000)
    assert rig.nic.tx_lost == 1 and rig.nic.model.tx_dropped["link-down"] == 1
    assert rig.loop.advance(50_000_000) >= (1 if mode == "poll" else 0)  # poll keeps ticking


def test_backend_dying_while_the_reader_is_paused_stays_unregistered(monkeypatch) -> None:
    rig = NicRig(monkeypatch)
    rig.open()
    rig.backend.endless = frame(MAC, 1514)
    rig.loop.readable()  # fills the ring, pauses the reader
    assert BACKEND_FD not in rig.loop.readers
    rig.backend.endless = None
    rig.backend.recv_error = "gone"
    rig.consume_all()
    rig.loop.advance(1_000_000)  # the retry finds the backend dead
    rig.loop.run_soon()
    assert rig.nic.backend_dead and BACKEND_FD not in rig.loop.readers


# -- a host queue that is full ----------------------------------------------------------

def _frames_in_ram(rig: NicRig, count: int) -> list[bytes]:
    frames = [frame(b"\x02" + bytes(5), 60, fill=i) for i in range(count)]
    for i, data in enumerate(frames):
        rig.memory.data[TXBUF + 0x800 * i:TXBUF + 0x800 * i + 60] = data
    return frames


def test_a_full_host_queue_holds_frames_in_order_and_stalls_the_transmitter(monkeypatch) -> None:
    """The socket has no room: the chip's frames are held (not dropped), no new descriptor
    is taken meanwhile (the guest sees OWN clear: still sending), and once the host takes
    frames again they leave in order."""
    rig = NicRig(monkeypatch)
    rig.open()
    frames = _frames_in_ram(rig, 5)
    rig.backend.full = True
    for i in range(4):
        rig.post(i, 60, TXBUF + 0x800 * i)
    rig.loop.run_soon()
    assert rig.backend.sent == [] and rig.nic.stats()["tx_held"] == 4
    rig.post(0, 60, TXBUF + 0x800 * 4)
    rig.loop.run_soon()
    assert rig.r(TSD0, 4) & TSD_OWN == 0  # the fifth waits in its descriptor
    rig.loop.advance(nic_module.TX_FULL_RETRY_NS)  # still full: held, retried later
    assert rig.backend.sent == [] and rig.loop.pending() == 1
    rig.backend.full = False
    rig.loop.advance(nic_module.TX_FULL_RETRY_NS)
    assert rig.backend.sent == frames and rig.backend.counters.tx_dropped == 0
    assert rig.r(TSD0, 4) & (TSD_OWN | TSD_TOK) == TSD_OWN | TSD_TOK
    assert rig.nic.stats()["tx_held"] == 0 and rig.loop.pending() == 0


def test_held_frames_are_dropped_when_the_host_takes_none_for_too_long(monkeypatch) -> None:
    rig = NicRig(monkeypatch)
    rig.open()
    _frames_in_ram(rig, 5)
    rig.backend.full = True
    for i in range(4):
        rig.post(i, 60, TXBUF + 0x800 * i)
    rig.loop.run_soon()
    rig.post(0, 60, TXBUF + 0x800 * 4)
    rig.loop.run_soon()
    rig.loop.advance(nic_module.TX_FULL_GIVE_UP_NS + nic_module.TX_FULL_RETRY_NS)
    assert rig.nic.tx_given_up == 4 and rig.backend.counters.tx_dropped == 4
    assert rig.r(TSD0, 4) & TSD_OWN  # the guest's transmitter moved on
    assert rig.nic.stats()["tx_held"] == 1  # the fifth, held in turn


def test_poll_placement_offers_held_frames_again_at_the_next_tick(monkeypatch) -> None:
    rig = NicRig(monkeypatch, "poll")
    rig.open()
    frames = _frames_in_ram(rig, 2)
    rig.backend.full = True
    rig.post(0, 60, TXBUF)
    rig.post(1, 60, TXBUF + 0x800)
    rig.loop.advance(10_000_000)
    assert rig.backend.sent == [] and rig.nic.stats()["tx_held"] == 2
    rig.backend.full = False
    rig.loop.advance(10_000_000)
    assert rig.backend.sent == frames


# -- bad frames and floods from the backend -----------------------------------------------

def test_runt_and_giant_frames_from_the_backend_are_dropped_and_counted(monkeypatch) -> None:
    rig = NicRig(monkeypatch)
    rig.open()
    rig.backend.inbox.extend([b"", b"\x01" * 13, frame(MAC, 64), frame(MAC, 1519),
                              frame(MAC, 9000), frame(MAC, 65536 + 60)])
    rig.loop.readable()
    dropped = rig.nic.model.rx_dropped
    assert rig.nic.model.rx_frames == 1 and dropped["runt"] == 2 and dropped["oversize"] == 3
    assert rig.r(CBR, 2) == span(64)


def test_a_flooding_backend_gives_the_loop_back_after_the_budget(monkeypatch) -> None:
    """A peer that never runs dry: one readiness call takes at most RX_BUDGET frames."""
    rig = NicRig(monkeypatch)
    rig.open()
    rig.backend.endless = frame(b"\x02" + bytes(5), 60)  # filtered: never fills the ring
    rig.loop.readable()
    assert rig.backend.recv_calls == RX_BUDGET
    assert rig.nic.model.rx_dropped["filtered"] == RX_BUDGET


# -- writes while in reset ----------------------------------------------------------------

def test_a_queued_tx_kick_after_a_machine_reset_sends_nothing(monkeypatch) -> None:
    """The guest posts a frame, the machine resets before the loop runs the kick."""
    rig = NicRig(monkeypatch)
    rig.open()
    rig.post(0)
    rig.nic.reset()
    rig.loop.run_soon()
    assert rig.backend.sent == [] and rig.r(TSD0, 4) == TSD_OWN


def test_writes_in_the_reset_state_move_nothing_until_enabled(monkeypatch) -> None:
    """After CR.RST (RST with RE|TE in the same write: reset wins), TSD writes wait for TE,
    frames from the wire are dropped while RE is off, and nothing touches memory."""
    rig = NicRig(monkeypatch)
    rig.w(RBSTART, 4, RING)
    rig.w(CR, 1, CR_RST | CR_RE | CR_TE)
    assert rig.r(CR, 1) & (CR_RE | CR_TE | CR_RST) == 0
    rig.post(0)
    rig.backend.inbox.append(frame(MAC, 64))
    rig.loop.readable()
    rig.loop.run_soon()
    assert rig.memory.accesses == [] and rig.backend.sent == []
    assert rig.nic.model.rx_dropped["disabled"] == 1
    rig.w(CR, 1, CR_TE)
    rig.loop.run_soon()
    assert len(rig.backend.sent) == 1


def test_tx_posted_while_bus_mastering_is_off_goes_when_it_comes_on(monkeypatch) -> None:
    rig = NicRig(monkeypatch)
    rig.open()
    rig.nic.function.config_write(0x04, 2, 0x0003)  # bus mastering off
    rig.post(0)
    rig.loop.run_soon()
    assert rig.backend.sent == []
    rig.nic.function.config_write(0x04, 2, 0x0007)
    rig.loop.run_soon()
    assert len(rig.backend.sent) == 1


# -- random guests and wires at the machine level -----------------------------------------

NIC_OPS = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(0, 255), st.sampled_from([1, 2, 4]),
              st.integers(0, 0xFFFFFFFF)),
    st.tuples(st.just("post"), st.integers(0, 3), st.integers(0, RAM + 0x100),
              st.integers(0, 0x1FFF)),
    st.tuples(st.just("wire"), st.integers(0, 2000), st.sampled_from([MAC, b"\xff" * 6])),
    st.tuples(st.just("readable")), st.tuples(st.just("soon")), st.tuples(st.just("consume")),
    st.tuples(st.just("time"), st.integers(0, 30_000_000)),
    st.tuples(st.just("fail"), st.sampled_from(["recv", "send"])),
    st.tuples(st.just("full"), st.booleans()),
    st.tuples(st.just("reset")),
), max_size=40)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["event", "poll"]), NIC_OPS)
def test_random_guests_wires_and_failures_never_break_the_machine_nic(mode: str,
                                                                     ops: list[Any]) -> None:
    """Whatever the guest and the wire do, and whenever the backend fails: nothing
    raises, no DMA has a negative address or length (TrackingMemory refuses what is outside
    RAM), no frame of 0 or more than 1792 bytes reaches the backend, and the loop's reader
    set stays consistent (the fake raises on a double add or remove)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        rig = NicRig(monkeypatch, mode)
        rig.open()
        for op in ops:
            kind = op[0]
            if kind == "write":
                rig.w(op[1], op[2], op[3] & ((1 << 8 * op[2]) - 1))
            elif kind == "post":
                rig.post(op[1], op[3], op[2])
            elif kind == "wire":
                rig.backend.inbox.append(op[2] + bytes(max(0, op[1] - 6)))
            elif kind == "readable":
                if BACKEND_FD in rig.loop.readers:
                    rig.loop.readable()
            elif kind == "soon":
                rig.loop.run_soon()
            elif kind == "consume":
                rig.consume_all()
            elif kind == "time":
                rig.loop.advance(op[1], max_callbacks=10_000)
            elif kind == "fail":
                setattr(rig.backend, f"{op[1]}_error", "gone")
            elif kind == "full":
                rig.backend.full = op[1]
            else:
                rig.nic.reset()
        rig.loop.run_soon()
        assert all(0 < len(f) <= 1792 for f in rig.backend.sent)
        assert all(gpa >= 0 and size >= 0 for _, gpa, size in rig.memory.accesses)
        if rig.nic.backend_dead:
            assert BACKEND_FD not in rig.loop.readers
        assert rig.nic.stats()["tx_held"] <= 4  # one process_tx's worth at most
