"""Stand-ins that plug into the VMM's buses and interrupt wiring where a local device model
would, and forward to the device process: the bus never learns where a device lives.

- `ProxyDevice`: one register range (read/write at an offset, like any `Device`);
- `RemoteUart`, `RemoteIde`: what the machine calls besides register accesses (console
  input, reset, the PCI bus-master bit, the IDE function's port ranges);
- `RemoteIrqChip`: the `--irqchip user` placement with the 8259 pair and the PIT in the
  device process. The CPU's INTR pin stays here (`CpuInterruptPin`, set by INTR events);
  the INTA cycle before an injection is a synchronous request, and lines of devices that
  stay in the VMM reach the PIC as posted requests.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from ..devices.base import IrqLine
from ..devices.ide import (PRIMARY_COMMAND_BASE, PRIMARY_CONTROL_BASE, SECONDARY_COMMAND_BASE,
                           SECONDARY_CONTROL_BASE)
from ..machine.interrupts import CpuInterruptPin, UserspaceInjector
from ..trace.records import Kind
from .channel import Channel
from .protocol import (CASCADE_IRQ, CONSOLE_IN_CHUNK, CTL_BUS_MASTER, CTL_CONSOLE_IN, CTL_RESET,
                       GROUP_IDS, ISA_IRQS, RANGE_IDS)

if TYPE_CHECKING:
    from ..bus import Bus
    from ..kvm.vcpu import Vcpu
    from ..runtime.vcpu_runner import VcpuRunner


_IRQ_INJECT = int(Kind.IRQ_INJECT)


class ProxyDevice:
    """A register range of a device in the device process."""

    __slots__ = ("channel", "target")

    def __init__(self, channel: Channel, name: str) -> None:
        self.channel = channel
        self.target = RANGE_IDS[name]

    def read(self, offset: int, size: int) -> int:
        return self.channel.read(self.target, offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.channel.write(self.target, offset, size, value)


class RemoteUart(ProxyDevice):
    """COM1 in the device process; map it at 0x3F8 like a `Uart16550`."""

    __slots__ = ()

    def __init__(self, channel: Channel) -> None:
        super().__init__(channel, "com1")

    def receive(self, data: bytes) -> int:
        """Host console input: all of it goes over; the device process holds what the
        FIFO cannot take yet and feeds it as the guest reads (its own retry timer)."""
        group = GROUP_IDS["uart"]
        for at in range(0, len(data), CONSOLE_IN_CHUNK):
            chunk = data[at:at + CONSOLE_IN_CHUNK]
            self.channel.control(group, CTL_CONSOLE_IN, int.from_bytes(chunk, "little"),
                                 len(chunk))
        return len(data)

    def reset(self) -> None:
        self.channel.control(GROUP_IDS["uart"], CTL_RESET)


class RemoteIde:
    """The PIIX3 IDE function's channels and bus master in the device process. Its PCI
    configuration space stays in the VMM (the chipset), which maps these ranges."""

    def __init__(self, channel: Channel, bus_master_enabled: Callable[[], bool]) -> None:
        self.channel = channel
        self._enabled = bus_master_enabled
        self.bmide_port = ProxyDevice(channel, "ide-bus-master")
        self._legacy = [
            (PRIMARY_COMMAND_BASE, 8, ProxyDevice(channel, "ide0-command"), "ide0-command"),
            (PRIMARY_CONTROL_BASE, 1, ProxyDevice(channel, "ide0-control"), "ide0-control"),
            (SECONDARY_COMMAND_BASE, 8, ProxyDevice(channel, "ide1-command"), "ide1-command"),
            (SECONDARY_CONTROL_BASE, 1, ProxyDevice(channel, "ide1-control"), "ide1-control"),
        ]

    def legacy_ports(self) -> list[tuple[int, int, Any, str]]:
        return list(self._legacy)

    def bus_master_changed(self) -> None:
        self.channel.control(GROUP_IDS["ide"], CTL_BUS_MASTER, int(bool(self._enabled())))

    def reset(self) -> None:
        self.channel.control(GROUP_IDS["ide"], CTL_RESET)


class RemoteIrqLine:
    """A VMM device's line to the PIC in the device process; a request only on a change."""

    def __init__(self, channel: Channel, irq: int) -> None:
        self.channel = channel
        self.irq = irq
        self.level = False

    def set_level(self, level: bool) -> None:
        level = bool(level)
        if level != self.level:
            self.level = level
            self.channel.set_irq(self.irq, level)


class RemotePic:
    """What the injector asks of the PIC: INTR (known here from events) and INTA."""

    def __init__(self, channel: Channel, pin: CpuInterruptPin) -> None:
        self.channel = channel
        self.pin = pin

    def has_interrupt(self) -> bool:
        return self.pin.level

    def acknowledge(self) -> int | None:
        return self.channel.inta()


class RemoteInjector(UserspaceInjector):
    """`UserspaceInjector` with a PIC that may answer INTA with "nothing pending any more"
    (a request withdrawn by a posted write the device process has just applied): then
    nothing is injected, as the local PIC's `has_interrupt()` check would have decided."""

    nothing_pending = 0

    def before_entry(self) -> None:
        run = self.vcpu.run_page
        if not self.pin.level:
            if run.request_interrupt_window:
                run.request_interrupt_window = 0
            return
        if not (run.ready_for_interrupt_injection and run.if_flag):
            run.request_interrupt_window = 1
            self.windows_requested += 1
            return
        with self.lock:
            vector = self.pic.acknowledge()  # type: ignore[attr-defined]
        run.request_interrupt_window = 0
        if vector is None:
            self.nothing_pending += 1
            return
        self.vcpu.interrupt(vector)
        self.injected += 1
        if self.trace is not None:
            now = time.monotonic_ns()
            self.trace.add(_IRQ_INJECT, now, 0, vector, now - self.pin.raised_at_ns)


def _check_irq(irq: int) -> None:
    if not 0 <= irq < ISA_IRQS or irq == CASCADE_IRQ:
        raise ValueError(f"IRQ {irq!r} is not a PIC input a device can drive")


class RemoteIrqChip:
    """The `user` irqchip placement with the PIC and PIT in the device process."""

    mode = "user"

    def __init__(self, channel: Channel, pio: "Bus", lock: threading.Lock,
                 query_stats: Callable[[], dict[str, Any]]) -> None:
        self.channel = channel
        self.lock = lock
        self.pin = CpuInterruptPin()
        self.pic = RemotePic(channel, self.pin)
        self._query_stats = query_stats
        for base, size, name in ((0x20, 2, "pic-master"), (0xA0, 2, "pic-slave"),
                                 (0x4D0, 2, "elcr"), (0x40, 4, "pit"), (0x61, 1, "port61")):
            pio.register(base, size, ProxyDevice(channel, name), name)
        self._lines: dict[int, RemoteIrqLine] = {}

    def line(self, irq: int) -> IrqLine:
        _check_irq(irq)
        return self._lines.setdefault(irq, RemoteIrqLine(self.channel, irq))

    def setup_vcpu(self, vcpu: "Vcpu") -> None:
        pass  # no LAPIC: INTR goes straight to the CPU, as with the local PIC

    def attach_runner(self, runner: "VcpuRunner") -> None:
        if runner.vcpu.id == 0:
            self.pin.runner = runner
            runner.injector = RemoteInjector(self.pic, self.pin, runner.vcpu, self.lock)
        else:
            runner.injector = None

    def reset(self) -> None:
        self.channel.control(GROUP_IDS["pic"], CTL_RESET)

    def stats(self) -> dict[str, object]:
        runner = self.pin.runner
        injector = runner.injector if runner else None
        remote = self._query_stats()
        return {
            "interrupts_injected": injector.injected if injector else 0,
            "interrupt_windows": injector.windows_requested if injector else 0,
            "inta_nothing_pending": getattr(injector, "nothing_pending", 0),
            "pic_acknowledged": remote.get("pic_acknowledged", []),
            "pic_spurious": remote.get("pic_spurious", 0),
            "pit_ticks": remote.get("pit_ticks", {}),
        }
