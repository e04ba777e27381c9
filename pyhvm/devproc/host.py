"""The machine's side of `--device-process`: which device groups run in the device process,
how their interrupts come back, what the guest sees if the process fails.

The machine asks for each hosted group's stand-ins (`uart()`, `irqchip()`, `ide()`) where
it would build the local model, maps them on its buses exactly as it maps local models,
and calls `start()` once wiring is done, before any vCPU runs; requests the machine makes
while wiring (the firmware's PCI setup) wait in the ring until the process takes them.

Interrupts of the UART and the IDE channels:
- PIC in the device process too: wired there, never seen here;
- `--irqchip kernel`: an irqfd per line, registered here with KVM and written by the
  device process (KVM injects; this process is not involved);
- `--irqchip user` with the PIC here: line changes come back as ring events.

Failure (`--device-process-failure`): `fail-device` (default) keeps the VM running with the
devices behaving as absent hardware: reads all ones, writes dropped, lines the process
held raised are lowered, no more interrupts; `stop` stops the VM with EXIT_DEVICE_FAILED.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..devices.base import IrqLine
from ..memory_backing import BackingSpec
from .channel import Channel
from .launcher import DeviceProcess
from .options import DevprocOptionError, DevprocOptions, parse_device_process
from .protocol import GROUP_IRQS, INTR_LINE
from .proxy import RemoteIde, RemoteIrqChip, RemoteUart
from .ring import RingLayout, VmmRing, create_ring_memory

if TYPE_CHECKING:
    from ..backends.console import Console
    from ..bus import Bus
    from ..kvm.vm import Vm
    from ..machine.config import DriveConfig
    from ..memory import GuestMemory
    from ..runtime.eventloop import EventLoop

log = logging.getLogger("pyhvm")

FAIL_DEVICE_CONSEQUENCE = ("; its devices now fail as absent hardware would (reads all ones, "
                           "writes dropped, no interrupts); the VM runs on")


def shared_backing(backing: BackingSpec | None, groups: Sequence[str]) -> BackingSpec | None:
    """The RAM backing to use: the IDE model in a device process does DMA into guest RAM,
    so anonymous memory (which no other process can map) becomes a memfd, and we say so."""
    if "ide" not in groups:
        return backing
    spec = backing if backing is not None else BackingSpec()
    if spec.shared:
        return spec
    log.warning("--device-process ide: guest RAM moved from --mem-backing anon to memfd, so "
                "the device process can map it for DMA")
    return replace(spec, kind="memfd", path=None)


def _eventfd() -> int:
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


class DeviceHost:
    def __init__(self, options: DevprocOptions, *, irqchip_mode: str, lost_tick_policy: str,
                 ide_dma: str, vm: "Vm | None", loop: "EventLoop", lock: threading.Lock,
                 stop_vm: Callable[[str], None], exit_status: int) -> None:
        if "pic" in options.groups and irqchip_mode != "user":
            raise DevprocOptionError("--device-process pic: with --irqchip kernel the PIC and "
                                     "PIT are KVM's; add --irqchip user")
        self.options = options
        self.irqchip_mode = irqchip_mode
        self.vm = vm
        self.loop = loop
        self.lock = lock
        self.stop_vm = stop_vm
        self._fds: list[tuple[str, int]] = []
        self._own_fds: list[int] = []
        self.process: DeviceProcess | None = None
        layout = RingLayout()
        self._ring_fd, self._ring_buf = create_ring_memory(layout)
        self._own_fds.append(self._ring_fd)
        self.ring = VmmRing(self._ring_buf, layout)
        efds = {name: self._own(_eventfd()) for name in ("req", "resp", "evt")}
        self._fds += [("ring", self._ring_fd), *efds.items()]
        self.channel = Channel(self.ring, efds["req"], efds["resp"], efds["evt"],
                               name=",".join(options.groups), deadline_s=options.deadline_s,
                               spin_us=options.spin_us, posted=options.posted)
        self.channel.on_irq = self._on_irq
        self.channel.on_console = self._on_console
        self.channel.on_failure = self._on_failure
        self.channel.consequence = FAIL_DEVICE_CONSEQUENCE if options.failure == "fail-device" \
            else (f"; stopping the VM (--device-process-failure=stop, exit status "
                  f"{exit_status})")
        self._sinks: dict[int, IrqLine] = {}
        self._pin: Any = None
        self._console: "Console | None" = None
        self._setup: dict[str, Any] = {
            "groups": list(options.groups), "spin_us": options.spin_us,
            "lost_tick_policy": lost_tick_policy,
            "sandbox": {"seccomp": options.seccomp, "user": "nobody"},
        }
        self._ide_dma = ide_dma

    def _own(self, fd: int) -> int:
        self._own_fds.append(fd)
        return fd

    def hosts(self, group: str) -> bool:
        return group in self.options.groups

    # -- the stand-ins --------------------------------------------------------------------
    def irqchip(self, pio: "Bus") -> RemoteIrqChip:
        chip = RemoteIrqChip(self.channel, pio, self.lock, self._query_stats)
        self._pin = chip.pin
        self._allow(INTR_LINE)
        return chip

    def uart(self, console: "Console", line: IrqLine) -> RemoteUart:
        self._console = console
        self.channel.console_allowed = True
        for irq in GROUP_IRQS["uart"]:
            self._route(irq, line)
        return RemoteUart(self.channel)

    def ide(self, memory: "GuestMemory", drives: Sequence["DriveConfig"], image_fds: Sequence[int],
            lines: Sequence[IrqLine], bus_master_enabled: Callable[[], bool]) -> RemoteIde:
        share = memory.share()
        fd, shared = share.get("fd"), share.get("regions")
        if not isinstance(fd, int) or not isinstance(shared, list):
            raise DevprocOptionError("--device-process ide needs guest RAM another process can "
                                     "map (--mem-backing memfd or file:PATH)")
        self._fds.append(("memory", fd))
        regions = [{"gpa": r["gpa"], "size": r["size"], "offset": r["offset"]} for r in shared]
        setup_drives = []
        for drive, fd in zip(drives, image_fds):
            self._fds.append((f"disk{drive.index}", fd))
            setup_drives.append({"index": drive.index, "readonly": drive.readonly,
                                 "path": drive.file})
        self._setup["ide"] = {"regions": regions, "drives": setup_drives, "dma": self._ide_dma}
        for irq, line in zip(GROUP_IRQS["ide"], lines):
            self._route(irq, line)
        return RemoteIde(self.channel, bus_master_enabled)

    def _route(self, irq: int, line: IrqLine) -> None:
        """Where the device process's line `irq` goes (see the module docstring)."""
        if self.hosts("pic"):
            return
        if self.irqchip_mode == "kernel" and self.vm is not None:
            fd = self._own(_eventfd())
            self.vm.irqfd(fd, irq)
            self._fds.append((f"irqfd{irq}", fd))
            return
        self._sinks[irq] = line
        self._allow(irq)

    def _allow(self, line: int) -> None:
        self.channel.allowed_lines = self.channel.allowed_lines | {line}

    # -- running --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the process (its setup and descriptors), then watch its events and death."""
        self.process = DeviceProcess(self._setup, self._fds)
        process = self.process
        self.channel.attach_process(process.pidfd, process.describe_exit, process.kill)
        self.loop.add_reader(self.channel.evt_efd, self._on_events)
        self.loop.add_reader(process.pidfd, self._on_death)

    def _on_events(self) -> None:
        with self.lock:
            self.channel.poll_events()

    def _on_death(self) -> None:
        assert self.process is not None
        self.loop.remove_reader(self.process.pidfd)  # it stays readable from now on
        with self.lock:
            self.channel.process_died()

    # -- from the channel (its lock held) -------------------------------------------------
    def _on_irq(self, line: int, level: int) -> None:
        if line == INTR_LINE:
            self._pin.set_level(bool(level))
        else:
            self._sinks[line].set_level(bool(level))

    def _on_console(self, data: bytes) -> None:
        if self._console is not None:
            self._console.write(data)

    def _on_failure(self, reason: str) -> None:
        if self.options.failure == "stop":
            self.stop_vm(f"device process ({self.channel.name}) {reason}")
        else:
            self.loop.call_soon(self._quiesce)

    def _quiesce(self) -> None:
        """Lower every line the failed process held raised (on the loop, device lock)."""
        for line in self._sinks.values():
            line.set_level(False)
        if self._pin is not None:
            self._pin.set_level(False)

    # -- reporting and the end ------------------------------------------------------------
    def _query_stats(self) -> dict[str, Any]:
        if self.process is None or self.channel.failed:
            return {}
        reply = self.process.query("stats", self.options.deadline_s)
        stats = reply.get("stats") if reply else None
        return stats if isinstance(stats, dict) else {}

    def stats(self) -> dict[str, Any]:
        report = self.process.report if self.process is not None else {}
        return {"groups": list(self.options.groups), "pid": report.get("pid"),
                "sandbox": {k: report.get(k) for k in ("uid", "no_new_privs", "seccomp",
                                                       "fds")},
                "channel": self.channel.stats(), "process": self._query_stats()}

    def close(self) -> None:
        if self.process is not None:
            self.process.close()
            self.process = None
        self.ring.close()
        self._ring_buf.close()
        for fd in self._own_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._own_fds.clear()


def options_from_config(config: Any) -> DevprocOptions | None:
    """The machine config's `--device-process` options, or None when nothing moves out."""
    if not getattr(config, "device_process", None):
        return None
    return parse_device_process(config.device_process,
                                getattr(config, "device_process_failure", "fail-device"))


def for_machine(options: DevprocOptions, machine: Any, exit_status: int) -> DeviceHost:
    """A DeviceHost wired to `machine` (a pyhvm.machine.pc.Machine being built)."""
    config = machine.config
    return DeviceHost(options, irqchip_mode=config.irqchip,
                      lost_tick_policy=config.lost_tick_policy, ide_dma=config.ide_dma,
                      vm=machine.vm, loop=machine.loop, lock=machine.io_lock,
                      stop_vm=lambda reason: machine.stop(exit_status, reason),
                      exit_status=exit_status)
