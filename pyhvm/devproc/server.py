"""The device process: the same device model classes as in the VMM, served from the ring.

`python -m pyhvm.devproc --control-fd N` receives its setup (JSON) and every file
descriptor it will use over the control socket, builds the device groups it was given,
sandboxes itself (sandbox.py), says it is ready, and then runs its own event loop: the
request eventfd wakes it for ring work, the PIT's and the UART input's timers run on its
own clock, IDE workers complete DMA under its own device lock, exactly as in the VMM.

Interrupt lines: a line whose PIC lives here too is wired straight to it; with KVM's
in-kernel irqchip a rising edge is a write to an irqfd the VMM registered (the kernel
injects it, the VMM never sees it); otherwise line changes go back as ring events.

Every request is checked before a device sees it (`valid_request`): the VMM is trusted
more than the guest, but a slot that is not a proper request is refused, not acted on.
A device model that raises is a bug: the process dies with the traceback on stderr, and
the VMM's crash containment takes over.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable

from ..backends.blockexec import ConcurrentDiskExecutor, SyncDiskExecutor
from ..devices.ata_disk import AtaDisk
from ..devices.base import Device, IrqLine
from ..devices.ide import PiixIde
from ..devices.pic8259 import DualPic
from ..devices.pit8254 import Pit8254
from ..devices.uart16550 import Uart16550
from ..memory import GuestMemory
from ..runtime.eventloop import EventLoop
from ..runtime.workers import WorkerPool
from . import sandbox
from .protocol import (CONSOLE_IN_CHUNK, CTL_BUS_MASTER, CTL_CONSOLE_IN, CTL_RESET, EVT_CONSOLE,
                       EVT_IRQ, GROUP_IDS, GROUPS, INTA_NONE, INTR_LINE, OP_CONTROL, OP_INTA,
                       OP_IRQ, OP_READ, OP_WRITE, RANGE_IDS, RANGES, all_ones)
from .resources import FdImage, map_guest_memory
from .ring import EVT_PAYLOAD, DeviceRing, Request, attach_ring_memory, fence, valid_request

log = logging.getLogger("pyhvm.devproc")

MAX_SETUP = 1 << 16
MAX_FDS = 32
FALLBACK_SLEEP_S = 0.1       # the loop looks at the ring at least this often (lost wake-ups)
EVENT_SPACE_WAIT_S = 10.0    # a VMM that takes no events for this long is gone
CONSOLE_BACKLOG_LIMIT = 1 << 20
CONSOLE_RETRY_NS = 10_000_000
CONSOLE_NOTIFY_NS = 2_000_000  # console output reaches the VMM at most this late


class EventLine:
    """An interrupt line whose controller is in the VMM: level changes go back as events."""

    def __init__(self, server: "DeviceServer", line: int) -> None:
        self.server = server
        self.line = line
        self.level = False

    def set_level(self, level: bool) -> None:
        level = bool(level)
        if level != self.level:
            self.level = level
            self.server.emit(EVT_IRQ, self.line, int(level))


class IrqfdLine:
    """A GSI of KVM's in-kernel irqchip, reached through an irqfd: each rising edge is one
    eventfd write, which KVM turns into an edge on the (edge-triggered ISA) input."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.level = False
        self.edges = 0

    def set_level(self, level: bool) -> None:
        level = bool(level)
        if level and not self.level:
            self.edges += 1
            os.eventfd_write(self.fd, 1)
        self.level = level


class DeviceLoop(EventLoop):
    """The event loop with one hook before each sleep (look at the ring, flush output)."""

    def __init__(self, lock: threading.Lock, before_sleep: Callable[[], None]) -> None:
        super().__init__(lock)
        self._before_sleep = before_sleep
        self.max_sleep = FALLBACK_SLEEP_S

    def _run_once(self) -> None:
        self._before_sleep()
        super()._run_once()


class DeviceServer:
    def __init__(self, setup: dict[str, Any], fds: dict[str, int],
                 control: socket.socket) -> None:
        self.setup = setup
        self.fds = fds
        self.control = control
        self.groups = tuple(g for g in setup["groups"] if g in GROUPS)
        self.lock = threading.Lock()
        self.loop = DeviceLoop(self.lock, self._before_sleep)
        buf, layout = attach_ring_memory(fds["ring"])
        self.ring = DeviceRing(buf, layout)
        self.req_efd, self.resp_efd, self.evt_efd = fds["req"], fds["resp"], fds["evt"]
        self.spin_ns = int(setup.get("spin_us", 0)) * 1000
        self.stopping = False
        self._console_out = bytearray()
        self._console_in = bytearray()
        self._console_retry: object | None = None
        self._console_notify: object | None = None
        self.stats_counts = {"requests": 0, "refused": 0, "events": 0, "wakeups": 0,
                             "found_before_sleep": 0, "event_space_waits": 0}
        self.ranges: dict[int, Device] = {}
        self.range_sizes: dict[int, int] = {}
        self.pic: DualPic | None = None
        self.pit: Pit8254 | None = None
        self.uart: Uart16550 | None = None
        self.ide: PiixIde | None = None
        self.memory: GuestMemory | None = None
        self.executor: SyncDiskExecutor | ConcurrentDiskExecutor | None = None
        self._bus_master = False
        self._irq_lines: dict[int, IrqLine] = {}
        self._build()

    # -- construction ---------------------------------------------------------------------
    def _line(self, irq: int) -> IrqLine:
        """The interrupt line a device here gets for ISA IRQ `irq`."""
        if irq in self._irq_lines:
            return self._irq_lines[irq]
        if self.pic is not None:
            line: IrqLine = self.pic.line(irq)
        elif f"irqfd{irq}" in self.fds:
            line = IrqfdLine(self.fds[f"irqfd{irq}"])
        else:
            line = EventLine(self, irq)
        self._irq_lines[irq] = line
        return line

    def _serve(self, name: str, device: Device) -> None:
        index = RANGE_IDS[name]
        self.ranges[index] = device
        self.range_sizes[index] = RANGES[index].size

    def _build(self) -> None:
        setup = self.setup
        if "pic" in self.groups:
            self.pic = DualPic(EventLine(self, INTR_LINE))
            self.pit = Pit8254(self.loop, self.pic.line(0),
                               lost_tick_policy=setup.get("lost_tick_policy", "delay"))
            self._serve("pic-master", self.pic.master_port)
            self._serve("pic-slave", self.pic.slave_port)
            self._serve("elcr", self.pic.elcr_port)
            self._serve("pit", self.pit)
            self._serve("port61", self.pit.port61)
        if "uart" in self.groups:
            self.uart = Uart16550(self._line(4), self._console)
            self._serve("com1", self.uart)
        if "ide" in self.groups:
            self._build_ide(setup["ide"])

    def _build_ide(self, ide: dict[str, Any]) -> None:
        memory = self.memory = map_guest_memory(self.fds["memory"], ide["regions"])
        disks = {}
        for drive in ide["drives"]:
            index = int(drive["index"])
            image = FdImage(self.fds[f"disk{index}"], readonly=bool(drive["readonly"]),
                            path=str(drive.get("path", "")))
            disks[(index // 2, index % 2)] = AtaDisk(image, serial=f"PYHVM{index:04d}")
        if ide.get("dma") == "sync":
            self.executor = SyncDiskExecutor(memory)
        else:
            self.executor = ConcurrentDiskExecutor(
                memory, WorkerPool(self.lock, threads=2, name="ide"))
        self.ide = PiixIde(memory, self.executor, self._line(14), self._line(15), disks,
                           bus_master_enabled=lambda: self._bus_master)
        for base, size, device, name in self.ide.legacy_ports():
            self._serve(name, device)
        self._serve("ide-bus-master", self.ide.bmide_port)

    def kept_fds(self) -> set[int]:
        """The descriptors this process keeps once sandboxed."""
        keep = {0, 1, 2, self.control.fileno(), *self.fds.values(),
                self.loop._wake_r, self.loop._wake_w}
        keep.discard(self.fds.get("ring", -1))    # mapped: the fd is no longer needed
        keep.discard(self.fds.get("memory", -1))
        return keep

    # -- the ring -------------------------------------------------------------------------
    def _on_request_fd(self) -> None:
        try:
            os.eventfd_read(self.req_efd)
        except BlockingIOError:
            pass
        self.stats_counts["wakeups"] += 1
        self.ring.set_sleeping(False)
        self.serve()

    def serve(self) -> None:
        """Take every request waiting, in order; then spin briefly if asked, and wake the
        VMM if it sleeps waiting for an answer or for ring space."""
        ring = self.ring
        with self.lock:
            while True:
                served = 0
                while (request := ring.take()) is not None:
                    self._handle(request)
                    served += 1
                self._flush_console()
                if served:
                    fence()
                    if ring.vmm_waiting():
                        os.eventfd_write(self.resp_efd, 1)
                if not self.spin_ns:
                    return
                end = time.monotonic_ns() + self.spin_ns
                while not ring.pending() and time.monotonic_ns() < end:
                    pass
                if not ring.pending():
                    return

    def _before_sleep(self) -> None:
        """Announce the sleep, then look once more (the VMM fences the other way)."""
        ring = self.ring
        while True:
            if self._console_out:  # a timer or worker wrote to the UART
                with self.lock:
                    self._flush_console()
            ring.set_sleeping(True)
            fence()
            if not ring.pending():
                return
            ring.set_sleeping(False)
            self.stats_counts["found_before_sleep"] += 1
            self.serve()

    def _handle(self, request: Request) -> None:
        self.stats_counts["requests"] += 1
        if not valid_request(request, self.range_sizes):
            self.stats_counts["refused"] += 1
            self.ring.answer(request, all_ones(min(max(request.size, 1), 8)), refused=True)
            return
        op = request.op
        if op == OP_READ:
            value = self.ranges[request.target].read(request.offset, request.size)
            self.ring.answer(request, value & all_ones(request.size))
        elif op == OP_WRITE:
            self.ranges[request.target].write(request.offset, request.size, request.data)
            self.ring.answer(request)
        elif op == OP_IRQ:
            if self.pic is None:
                self._refuse(request)
                return
            self.pic.set_irq(request.offset, bool(request.data))
            self.ring.answer(request)
        elif op == OP_INTA:
            if self.pic is None:
                self._refuse(request)
                return
            vector = self.pic.acknowledge() if self.pic.has_interrupt() else INTA_NONE
            self.ring.answer(request, vector)
        elif op == OP_CONTROL:
            if not self._control(request):
                self._refuse(request)
                return
            self.ring.answer(request)

    def _refuse(self, request: Request) -> None:
        self.stats_counts["refused"] += 1
        self.ring.answer(request, all_ones(min(max(request.size, 1), 8)), refused=True)

    def _control(self, request: Request) -> bool:
        group = GROUPS[request.target] if request.target < len(GROUPS) else None
        command = request.offset
        if group not in self.groups:
            return False
        if command == CTL_RESET:
            if group == "uart" and self.uart is not None:
                self.uart.reset()
            elif group == "pic" and self.pic is not None and self.pit is not None:
                self.pic.reset()
                self.pit.reset()
            elif group == "ide" and self.ide is not None:
                self.ide.reset()
            return True
        if command == CTL_BUS_MASTER and self.ide is not None:
            self._bus_master = bool(request.data)
            self.ide.bus_master_changed()
            return True
        if command == CTL_CONSOLE_IN and self.uart is not None:
            count = min(request.size, CONSOLE_IN_CHUNK)
            if len(self._console_in) + count <= CONSOLE_BACKLOG_LIMIT:
                self._console_in += request.data.to_bytes(8, "little")[:count]
            self._feed_console()
            return True
        return False

    # -- the UART's host side -------------------------------------------------------------
    def _console(self, data: bytes) -> None:
        self._console_out += data

    def _flush_console(self) -> None:
        out = self._console_out
        if not out:
            return
        while out:
            chunk = bytes(out[:EVT_PAYLOAD])
            self.emit(EVT_CONSOLE, 0, len(chunk), chunk, notify=False)
            del out[:len(chunk)]
        if self._console_notify is None:
            self._console_notify = self.loop.call_at(self.loop.now_ns() + CONSOLE_NOTIFY_NS,
                                                     self._notify_console)

    def _notify_console(self) -> None:
        """Console output needs no wake-up of its own: the VMM takes events whenever it
        uses the ring. This timer covers a guest that stops using it (as the VMM's console
        itself gathers bytes for a few milliseconds)."""
        self._console_notify = None
        os.eventfd_write(self.evt_efd, 1)

    def _feed_console(self) -> None:
        """Host input into the UART's FIFO as it makes room (the VMM's retry, here)."""
        self._console_retry = None
        if self.uart is None or not self._console_in:
            return
        taken = self.uart.receive(bytes(self._console_in))
        del self._console_in[:taken]
        if self._console_in and self._console_retry is None:
            self._console_retry = self.loop.call_at(self.loop.now_ns() + CONSOLE_RETRY_NS,
                                                    self._feed_console)

    # -- events ---------------------------------------------------------------------------
    def emit(self, kind: int, arg: int, length: int, payload: bytes = b"",
             notify: bool = True) -> None:
        """One event to the VMM; waits (waking the VMM) while its ring is full."""
        ring = self.ring
        self.stats_counts["events"] += 1
        if not ring.put_event(kind, arg, length, payload):
            self.stats_counts["event_space_waits"] += 1
            deadline = time.monotonic() + EVENT_SPACE_WAIT_S
            while not ring.put_event(kind, arg, length, payload):
                os.eventfd_write(self.evt_efd, 1)
                if ring.vmm_waiting():
                    os.eventfd_write(self.resp_efd, 1)
                if time.monotonic() > deadline:
                    print("pyhvm device process: the VMM takes no events; exiting",
                          file=sys.stderr, flush=True)
                    os._exit(3)
                time.sleep(0.0001)
        if notify:
            os.eventfd_write(self.evt_efd, 1)

    # -- the control socket ---------------------------------------------------------------
    def _on_control(self) -> None:
        try:
            message = self.control.recv(MAX_SETUP)
        except OSError:
            message = b""
        if not message:  # the VMM is gone
            self.stopping = True
            return
        try:
            request = json.loads(message)
            op = request.get("op")
        except (ValueError, AttributeError):
            op = None
        if op == "stats":
            with self.lock:
                reply = {"ok": True, "stats": self.stats()}
        elif op == "shutdown":
            reply = {"ok": True}
            self.stopping = True
        else:
            reply = {"ok": False, "error": "unknown request"}
        try:
            self.control.send(json.dumps(reply).encode())
        except OSError:
            self.stopping = True

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = {"groups": list(self.groups), "pid": os.getpid(),
                                  **self.stats_counts}
        if self.pic is not None and self.pit is not None:
            ticks = self.pit.tick_stats
            result["pic_acknowledged"] = list(self.pic.acknowledged)
            result["pic_spurious"] = self.pic.spurious
            result["pit_ticks"] = {"delivered": ticks.delivered, "delayed": ticks.delayed,
                                   "merged": ticks.merged, "discarded": ticks.discarded}
        if self.executor is not None:
            result["ide_requests"] = self.executor.requests
        irqfd = {irq: line.edges for irq, line in self._irq_lines.items()
                 if isinstance(line, IrqfdLine)}
        if irqfd:
            result["irqfd_edges"] = irqfd
        return result

    # -- running --------------------------------------------------------------------------
    def run(self) -> None:
        self.loop.add_reader(self.req_efd, self._on_request_fd)
        self.loop.add_reader(self.control.fileno(), self._on_control)
        self.loop.run(lambda: self.stopping)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()
        self.loop.close()
        self.control.close()


def _receive_setup(control: socket.socket) -> tuple[dict[str, Any], dict[str, int]]:
    message, fds, _, _ = socket.recv_fds(control, MAX_SETUP, MAX_FDS)
    setup = json.loads(message)
    names = setup.get("fds")
    if not isinstance(names, list) or len(names) != len(fds):
        raise ValueError(f"setup names {names!r} for {len(fds)} descriptors")
    return setup, dict(zip(names, fds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyhvm.devproc")
    parser.add_argument("--control-fd", type=int, required=True)
    args = parser.parse_args(argv)
    # Ctrl-C at the terminal reaches the whole process group: the VMM decides when we go.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="pyhvm device process: %(message)s")
    control = socket.socket(fileno=args.control_fd)
    try:
        setup, fds = _receive_setup(control)
        server = DeviceServer(setup, fds, control)
        report = sandbox.confine(server.kept_fds(), setup.get("sandbox", {}))
    except Exception as err:  # the setup could not be used: say why, one line
        try:
            control.send(json.dumps({"ok": False, "error": f"{type(err).__name__}: {err}"})
                         .encode())
        except OSError:
            pass
        return 1
    control.send(json.dumps({"ok": True, "pid": os.getpid(), **report}).encode())
    try:
        server.run()
    finally:
        server.close()
    return 0
