"""The RTL8139 and its backend, and the `--net-mode` placement switch.

- `poll` (the paper's "before", an old device model's main loop): a periodic timer every
  `poll-interval` ms drains the backend into the RX ring and performs the TX requests the
  guest has posted since the last tick; nothing happens between ticks.
- `event` (default, the "after"): the backend's fd sits in the event loop and a frame is
  delivered the moment it is readable; a TX request (the TSD write) is handed to the event
  loop at once, so the vCPU resumes without waiting for the copy and the send.

Both: a frame the host cannot queue now (a full socket) is held and offered again (event:
after TX_FULL_RETRY_NS; poll: the next tick), in order, and the chip takes no new TX
descriptor meanwhile, so a slow peer slows the guest's transmitter instead of losing its
frames (QEMU's net queue does the same). A peer that takes nothing for TX_FULL_GIVE_UP_NS
loses the held frames (counted) and the guest goes on.

Tracing (`--trace`, group `backend`): one BACKEND_IO record per pass that moves frames, on
the thread doing it, with the time spent in the device model and the backend: op
NET_OP_RX (backend reads and stores into the guest's ring), op NET_OP_TX (descriptor DMA
reads and backend sends); b = bytes moved. `pyhvm bench net --breakdown` reads them.

KVM facilities: an ioeventfd cannot carry the TX kick here, because the TSD register write
carries the frame size and an ioeventfd drops the written value (datamatch would need one
eventfd per possible size); the kick is therefore a normal exit that defers the work to the
loop. The interrupt is the PCI INTx line, raised with KVM_IRQ_LINE (kernel irqchip) or on
our PIC; a level-triggered INTx through irqfd would need the resample protocol for no
fewer system calls than KVM_IRQ_LINE's one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import deque
from typing import TYPE_CHECKING

from ..backends.net import open_backend, parse_netdev
from ..backends.net_base import NetBackend, NetError, Offered
from ..backends.pcap import CapturingBackend, PcapWriter, parse_filter_dump
from ..devices.pci import STATUS_RECEIVED_MASTER_ABORT
from ..devices.rtl8139 import Rtl8139, Rtl8139Pci
from ..errors import HostError
from ..trace.records import Kind
from .config import ConfigError

if TYPE_CHECKING:
    from .pc import Machine

log = logging.getLogger("pyhvm.nic")

NET_MODES = ("event", "poll")
DEFAULT_POLL_INTERVAL_MS = 10
NIC_PCI_DEVICE = 3                 # 00:03.0, where QEMU's first NIC sits on a `pc` machine
NIC_IO_BASE = 0xC100               # what firmware would assign (SeaBIOS: the first free I/O)
NIC_MMIO_BASE = 0xFEBF1000
DEFAULT_MAC = "52:54:00:12:34:56"  # QEMU's default first NIC address
RX_BUDGET = 64                     # frames taken from the backend per readiness/tick
RING_FULL_RETRY_NS = 500_000       # event placement: look again this soon after a full ring
TX_FULL_RETRY_NS = 200_000         # event placement: offer a held frame again this soon
TX_FULL_GIVE_UP_NS = 500_000_000   # drop held frames when the host took none for this long
TRACE_NAME = "rtl8139"             # its name in the trace header's device list
NET_OP_RX, NET_OP_TX = 1, 2        # BACKEND_IO op codes: a receive pass, a transmit pass


@dataclasses.dataclass(frozen=True)
class NicConfig:
    netdev: str     # the --netdev spec
    device: str     # the --device rtl8139,netdev=ID[,mac=...] spec
    mode: str = "event"
    poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS
    capture: str | None = None  # --object filter-dump,id=..,netdev=..,file=..


def parse_mac(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ConfigError(f"mac={text}: write six hex bytes, e.g. {DEFAULT_MAC}")
    try:
        mac = bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ConfigError(f"mac={text}: write six hex bytes, e.g. {DEFAULT_MAC}") from None
    if mac[0] & 1:
        raise ConfigError(f"mac={text} is a multicast address; a NIC needs a unicast one")
    return mac


def parse_device(spec: str) -> tuple[str, bytes]:
    """`rtl8139,netdev=ID[,mac=..]` -> (netdev id, MAC)."""
    kind, _, rest = spec.partition(",")
    if kind != "rtl8139":
        raise ConfigError(f"--device {kind!r}: only rtl8139 is supported")
    options = dict(item.partition("=")[::2] for item in rest.split(",") if item)
    unknown = set(options) - {"netdev", "mac"}
    if unknown:
        raise ConfigError(f"--device rtl8139: unknown option(s) {', '.join(sorted(unknown))}")
    if not options.get("netdev"):
        raise ConfigError("--device rtl8139 needs netdev=ID naming a --netdev")
    return options["netdev"], parse_mac(options.get("mac", DEFAULT_MAC))


def parse_net_mode(text: str) -> tuple[str, int]:
    """`event` or `poll[,poll-interval=MS]`."""
    mode, _, rest = text.partition(",")
    if mode not in NET_MODES:
        raise ConfigError(f"--net-mode {mode!r}: use event or poll[,poll-interval=MS]")
    interval = DEFAULT_POLL_INTERVAL_MS
    if rest:
        key, _, value = rest.partition("=")
        if mode != "poll" or key != "poll-interval" or not value.isdigit() or \
                not 1 <= int(value) <= 1000:
            raise ConfigError(f"--net-mode {text!r}: poll,poll-interval=MS with MS 1-1000")
        interval = int(value)
    return mode, interval


class Nic:
    """One RTL8139 on the PCI bus, fed by one backend in the chosen placement."""

    def __init__(self, machine: "Machine", config: NicConfig) -> None:
        self.machine = machine
        netdev = parse_netdev(config.netdev)
        netdev_id, mac = parse_device(config.device)
        if netdev.id != netdev_id:
            raise ConfigError(f"--device rtl8139,netdev={netdev_id}: no --netdev with "
                              f"id={netdev_id} (there is id={netdev.id})")
        self.mode = config.mode
        self.interval_ns = config.poll_interval_ms * 1_000_000
        backend: NetBackend = open_backend(netdev)
        if config.capture:
            dump = parse_filter_dump(config.capture)
            if dump.netdev != netdev.id:
                backend.close()
                raise ConfigError(f"--object filter-dump,netdev={dump.netdev}: no such netdev")
            backend = CapturingBackend(backend, PcapWriter(dump.file, snaplen=dump.maxlen),
                                       guest_tx=dump.queue in ("all", "rx"),
                                       guest_rx=dump.queue in ("all", "tx"))
        self.backend = backend
        self.function = Rtl8139Pci(on_bar_change=self._bar_changed)
        self.model = Rtl8139(
            machine.memory, self.function.irq, self._transmit, machine.loop, mac=mac,
            on_tx_pending=self._tx_pending,
            bus_master_enabled=lambda: self.function.bus_master_enabled,
            on_master_abort=self._master_abort)
        self.function.on_command_change = lambda command: self._command_changed()
        chipset = machine.chipset
        chipset.host.attach(NIC_PCI_DEVICE, 0, self.function)
        self.function.connect_intx(chipset.router.line(NIC_PCI_DEVICE,
                                                       self.function.interrupt_pin))
        self._kick_queued = False
        self.backend_dead = False
        self._reading = False      # the backend fd is registered with the event loop
        self.tx_lost = 0           # frames lost in the send that found the backend dead
        self._tx_held: deque[bytes] = deque()  # sent by the chip, not yet taken by the host
        self._tx_progress_ns = 0   # when the host last took a frame (or refused the first)
        self._tx_retry_armed = False
        self.tx_given_up = 0       # held frames dropped: the host took nothing for too long
        recorder = getattr(machine, "recorder", None)
        self._trace = recorder if recorder is not None and recorder.wants("backend") else None
        self._trace_id = 0
        if self._trace is not None:
            from .pc import TRACE_DEVICES  # pc imports this module: look it up late
            self._trace_id = TRACE_DEVICES.index(TRACE_NAME)
        self.firmware_setup()

    def firmware_setup(self) -> None:
        """BARs and decode as firmware leaves them for a directly booted kernel."""
        if getattr(self.machine, "firmware", None) is not None:
            return  # the real firmware assigns BARs itself
        self.function.config_write(0x10, 4, NIC_IO_BASE)
        self.function.config_write(0x14, 4, NIC_MMIO_BASE)
        self.function.config_write(0x04, 2, 0x0007)  # I/O, memory, bus master

    def start(self) -> None:
        """Called in the event loop's thread before the guest runs."""
        loop = self.machine.loop
        if self.mode == "event":
            loop.add_reader(self.backend.fileno(), self._readable)
            self._reading = True
        else:
            loop.call_at(loop.now_ns() + self.interval_ns, self._poll)

    # --- the two placements ------------------------------------------------------------
    def _readable(self) -> None:
        with self.machine.io_lock:
            self._drain_backend()

    def _poll(self) -> None:
        """Poll placement: one tick of the old main loop (runs with the device lock)."""
        self._drain_backend()
        self._run_tx()
        loop = self.machine.loop
        loop.call_at(loop.now_ns() + self.interval_ns, self._poll)

    def _drain_backend(self) -> None:
        if self._trace is None:
            self._drain()
            return
        began, stored = time.monotonic_ns(), self.model.rx_bytes
        self._drain()
        moved = self.model.rx_bytes - stored
        if moved:
            self._trace.record(Kind.BACKEND_IO, time.monotonic_ns() - began, self._trace_id,
                               moved, NET_OP_RX, ts_ns=began)

    def _drain(self) -> None:
        """Up to RX_BUDGET frames a pass (the loop comes back while the fd stays readable);
        frames stay in the backend while the guest's ring is full."""
        if self.backend_dead:
            return
        try:
            for _ in range(RX_BUDGET):
                if self.model.rx_ring_full():
                    self._ring_full()  # leave frames in the backend: the peer is paced
                    return
                frame = self.backend.recv()
                if frame is None:
                    return
                self.model.receive(frame)
        except NetError as err:
            self._backend_died(err)

    def _ring_full(self) -> None:
        """The guest has not freed its RX ring: stop reading the backend for a moment (as
        QEMU's can_receive does) rather than drop frames the guest would take later."""
        if not self._reading:
            return  # poll, or already paused: the next tick (or the retry) looks again
        self._stop_reading()
        loop = self.machine.loop
        loop.call_at(loop.now_ns() + RING_FULL_RETRY_NS, self._resume_reader)

    def _resume_reader(self) -> None:
        if self.backend_dead or self._reading:
            return
        self.machine.loop.add_reader(self.backend.fileno(), self._readable)
        self._reading = True
        self._drain_backend()

    def _stop_reading(self) -> None:
        """Loop thread only (the selector is not thread-safe)."""
        if self._reading:
            self._reading = False
            self.machine.loop.remove_reader(self.backend.fileno())

    def _backend_died(self, err: Exception) -> None:
        """The backend's fd is gone (a deleted TAP): the guest sees the link go down (ISR.
        LinkChg, MSR.LINKB; later frames complete with TSD.CRS and are counted), the VM runs
        on. May run on a vCPU thread (a send), so the fd leaves the loop from the loop."""
        self.backend_dead = True
        log.warning("network backend %s failed: %s; the NIC's link is down",
                    self.backend.name, err)
        if self._reading:
            self.machine.loop.call_soon(self._stop_reading)
        self.model.set_link(False)

    def _tx_pending(self) -> None:
        """The guest posted a TX descriptor (called inside its TSD write)."""
        if self.mode == "event" and not self._kick_queued:
            self._kick_queued = True
            self.machine.loop.call_soon(self._process_tx)

    def _process_tx(self) -> None:
        self._kick_queued = False
        self._run_tx()

    def _tx_retry(self) -> None:
        self._tx_retry_armed = False
        self._run_tx()

    def _run_tx(self) -> None:
        """Offer held frames first; the chip takes new descriptors only once none is held."""
        if self._tx_held and not self._flush_held():
            self._arm_tx_retry()
            return
        self._process_descriptors()
        if self._tx_held:
            self._arm_tx_retry()

    def _arm_tx_retry(self) -> None:
        if self.mode != "event" or self._tx_retry_armed:
            return  # poll: the next tick offers them again
        self._tx_retry_armed = True
        loop = self.machine.loop
        loop.call_at(loop.now_ns() + TX_FULL_RETRY_NS, self._tx_retry)

    def _flush_held(self) -> bool:
        """Offer the held frames in order; True once none is left."""
        while self._tx_held:
            if self.backend_dead:
                self.tx_lost += len(self._tx_held)
                break
            if not self._offer(self._tx_held[0]):
                if self.machine.loop.now_ns() - self._tx_progress_ns < TX_FULL_GIVE_UP_NS:
                    return False
                log.warning("network backend %s took no frame for %.1f s: %d held frames "
                            "dropped", self.backend.name, TX_FULL_GIVE_UP_NS / 1e9,
                            len(self._tx_held))
                self.tx_given_up += len(self._tx_held)
                self.backend.counters.tx_dropped += len(self._tx_held)
                break
            self._tx_held.popleft()
        self._tx_held.clear()
        return True

    def _offer(self, frame: bytes) -> bool:
        """One frame to the backend: False if its queue is full (the frame is kept)."""
        try:
            offered = self.backend.offer(frame)
        except NetError as err:
            self.tx_lost += 1
            self._backend_died(err)
            return True
        if offered is Offered.FULL:
            return False
        self._tx_progress_ns = self.machine.loop.now_ns()
        return True

    def _process_descriptors(self) -> None:
        if self._trace is None:
            self.model.process_tx()
            return
        began, sent = time.monotonic_ns(), self.model.tx_bytes
        self.model.process_tx()
        moved = self.model.tx_bytes - sent
        if moved:
            self._trace.record(Kind.BACKEND_IO, time.monotonic_ns() - began, self._trace_id,
                               moved, NET_OP_TX, ts_ns=began)

    def _transmit(self, frame: bytes) -> None:
        """The chip's output (inside process_tx): to the backend, or held behind a full
        queue, in order."""
        if self.backend_dead:
            return
        if self._tx_held:
            self._tx_held.append(frame)
        elif not self._offer(frame):
            self._tx_progress_ns = self.machine.loop.now_ns()
            self._tx_held.append(frame)

    def _command_changed(self) -> None:
        if self.function.bus_master_enabled and self.mode == "event":
            self._run_tx()  # requests held while bus mastering was off

    def _master_abort(self) -> None:
        self.function.set_status(STATUS_RECEIVED_MASTER_ABORT)

    def _bar_changed(self, index: int, old: int | None, new: int | None) -> None:
        bus = self.machine.buses.pio if index == 0 else self.machine.buses.mmio
        name = "rtl8139" if index == 0 else "rtl8139-mmio"
        bus.move(old, new, 256, self.model.register_port, name)

    def reset(self) -> None:
        self.model.reset()
        self._tx_held.clear()  # what the chip sent before the reset is gone with it
        self.firmware_setup()

    def stats(self) -> dict[str, object]:
        model = self.model
        return {"mode": self.mode, "rx_frames": model.rx_frames, "tx_frames": model.tx_frames,
                "rx_dropped": dict(model.rx_dropped), "tx_errors": model.tx_errors,
                "tx_dropped": dict(model.tx_dropped), "tx_lost": self.tx_lost,
                "tx_held": len(self._tx_held), "tx_given_up": self.tx_given_up,
                "backend_dead": self.backend_dead,
                "backend": self.backend.counters.as_dict()}

    def close(self) -> None:
        try:
            self.backend.close()
        except OSError:
            pass


def open_nic(machine: "Machine", config: NicConfig) -> Nic:
    try:
        return Nic(machine, config)
    except HostError:
        raise
    except OSError as err:
        raise ConfigError(f"network backend: {os.strerror(err.errno) if err.errno else err}")
