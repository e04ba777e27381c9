"""Where the interrupt controller and timer live: the `--irqchip` placement switch.

- `user`: our 8259 pair and 8254 models in this process. An interrupt reaches the guest by
  `KVM_INTERRUPT`, using the interrupt-window protocol: before each KVM_RUN the vCPU thread
  injects the PIC's vector when the guest can take it (`ready_for_interrupt_injection` and
  `if_flag` from the last exit), or sets `request_interrupt_window` so KVM exits as soon as it
  can. A line raised by another thread (the event loop's PIT timer) wakes a halted vCPU
  through its event and kicks a running one out of KVM_RUN with `immediate_exit` plus
  SIGUSR1: the only way to interrupt KVM_RUN without an in-kernel irqchip, and what QEMU does
  for its userspace irqchip too. This is the paper's "before": every PIC port access and
  every tick is a trip through this process.
- `kernel`: KVM's in-kernel PIC, IOAPIC, LAPIC and PIT (`KVM_CREATE_IRQCHIP`,
  `KVM_CREATE_PIT2`); PIC port traffic never leaves the kernel. Devices still modelled here
  (UART, RTC, later IDE and NIC) raise their lines with `KVM_IRQ_LINE`. The paper's "after".
"""

from __future__ import annotations

import struct
import threading
import time
from typing import TYPE_CHECKING, Callable, Protocol

from ..bus import Bus
from ..devices.base import Clock, IrqLine
from ..kvm.vcpu import Vcpu
from ..kvm.vm import Vm

from ..trace.records import Kind

if TYPE_CHECKING:
    from ..runtime.vcpu_runner import VcpuRunner
    from ..trace.recorder import ThreadBuffer

_IRQ_INJECT = int(Kind.IRQ_INJECT)

IRQCHIP_MODES = ("kernel", "user")
LOST_TICK_POLICIES = ("delay", "discard", "merge")
KVM_PIT_SPEAKER_DUMMY = 1  # KVM answers port 0x61 itself (gate and OUT of channel 2)

# Local APIC register offsets and values (Intel SDM vol. 3, 11.4 and 11.5.1).
APIC_SVR = 0xF0
APIC_LVT0 = 0x350
APIC_LVT1 = 0x360
APIC_SVR_ENABLE = 1 << 8
APIC_DM_EXTINT = 0x7 << 8
APIC_DM_NMI = 0x4 << 8


class IrqChip(Protocol):
    mode: str

    def line(self, irq: int) -> IrqLine: ...

    def setup_vcpu(self, vcpu: Vcpu) -> None: ...

    def attach_runner(self, runner: "VcpuRunner") -> None: ...

    def stats(self) -> dict[str, object]: ...

    def reset(self) -> None: ...


# --- kernel placement ----------------------------------------------------------------------

class KernelIrqLine:
    """A GSI of KVM's in-kernel irqchip; ioctl only when the level changes."""

    def __init__(self, vm: Vm, gsi: int) -> None:
        self.vm = vm
        self.gsi = gsi
        self.level = False
        self.changes = 0

    def set_level(self, level: bool) -> None:
        level = bool(level)
        if level != self.level:
            self.level = level
            self.changes += 1
            self.vm.irq_line(self.gsi, int(level))


class KernelIrqChip:
    mode = "kernel"

    def __init__(self, vm: Vm) -> None:
        self.vm = vm
        vm.create_irqchip()
        vm.create_pit2(KVM_PIT_SPEAKER_DUMMY)
        self._lines: dict[int, KernelIrqLine] = {}

    def line(self, irq: int) -> IrqLine:
        return self._lines.setdefault(irq, KernelIrqLine(self.vm, irq))

    def setup_vcpu(self, vcpu: Vcpu) -> None:
        """Leave the local APIC as firmware does: enabled, LINT0 ExtINT, LINT1 NMI, so the
        PIC's interrupts reach the CPU (a directly booted kernel expects exactly this)."""
        regs = vcpu.get_lapic()
        _set_u32(regs, APIC_SVR, _get_u32(regs, APIC_SVR) | APIC_SVR_ENABLE | 0xFF)
        _set_u32(regs, APIC_LVT0, APIC_DM_EXTINT)
        _set_u32(regs, APIC_LVT1, APIC_DM_NMI)
        vcpu.set_lapic(bytes(regs))

    def attach_runner(self, runner: "VcpuRunner") -> None:
        runner.injector = None  # KVM delivers interrupts and handles HLT itself

    def stats(self) -> dict[str, object]:
        return {"irq_line_changes": {gsi: line.changes for gsi, line in self._lines.items()}}

    def reset(self) -> None:
        """KVM's PIC and PIT are re-initialised by the guest; nothing is pending for a CPU
        that has interrupts off, which is how every boot protocol enters."""


def _get_u32(regs: bytearray, offset: int) -> int:
    return struct.unpack_from("<I", regs, offset)[0]


def _set_u32(regs: bytearray, offset: int, value: int) -> None:
    struct.pack_into("<I", regs, offset, value)


# --- user placement ------------------------------------------------------------------------

class CpuInterruptPin:
    """The CPU's INTR input as the PIC drives it: wakes or kicks the BSP on a rising level."""

    def __init__(self) -> None:
        self.level = False
        self.raised_at_ns = 0  # when INTR last rose: the start of the delivery latency
        self.runner: "VcpuRunner | None" = None

    def set_level(self, level: bool) -> None:
        if level and not self.level:
            self.raised_at_ns = time.monotonic_ns()
        self.level = bool(level)
        runner = self.runner
        if level and runner is not None:
            runner.wake.set()
            if threading.get_ident() != runner.thread.ident:
                runner.kick_for_interrupt()


class UserspaceInjector:
    """Runs on the vCPU thread before each KVM_RUN (see the module docstring)."""

    def __init__(self, pic: object, pin: CpuInterruptPin, vcpu: Vcpu,
                 lock: threading.Lock) -> None:
        self.pic = pic
        self.pin = pin
        self.vcpu = vcpu
        self.lock = lock
        self.injected = 0
        self.windows_requested = 0
        self.trace: "ThreadBuffer | None" = None  # the vCPU's trace buffer, when tracing

    def before_entry(self) -> None:
        run = self.vcpu.run_page
        if not self.pin.level:
            if run.request_interrupt_window:
                run.request_interrupt_window = 0
            return
        with self.lock:
            if not self.pic.has_interrupt():  # type: ignore[attr-defined]
                run.request_interrupt_window = 0
                return
            if run.ready_for_interrupt_injection and run.if_flag:
                vector = self.pic.acknowledge()  # type: ignore[attr-defined]
                self.vcpu.interrupt(vector)
                self.injected += 1
                if self.trace is not None:
                    now = time.monotonic_ns()
                    self.trace.add(_IRQ_INJECT, now, 0, vector, now - self.pin.raised_at_ns)
                run.request_interrupt_window = 0
            else:
                run.request_interrupt_window = 1
                self.windows_requested += 1

    def interrupt_pending(self) -> bool:
        return self.pin.level


class UserIrqChip:
    mode = "user"

    def __init__(self, pio: Bus, clock: Clock, lock: threading.Lock, *,
                 lost_tick_policy: str = "delay",
                 trace_line: Callable[[IrqLine, int], IrqLine] | None = None) -> None:
        from ..devices.pic8259 import DualPic
        from ..devices.pit8254 import Pit8254

        self.lock = lock
        self.pin = CpuInterruptPin()
        self.pic = DualPic(self.pin)
        pio.register(0x20, 2, self.pic.master_port, "pic-master")
        pio.register(0xA0, 2, self.pic.slave_port, "pic-slave")
        pio.register(0x4D0, 2, self.pic.elcr_port, "elcr")
        irq0 = self.pic.line(0)
        if trace_line is not None:  # the PIT's OUT pin is wired inside this placement
            irq0 = trace_line(irq0, 0)
        self.pit = Pit8254(clock, irq0, lost_tick_policy=lost_tick_policy)
        pio.register(0x40, 4, self.pit, "pit")
        pio.register(0x61, 1, self.pit.port61, "port61")

    def line(self, irq: int) -> IrqLine:
        return self.pic.line(irq)

    def setup_vcpu(self, vcpu: Vcpu) -> None:
        pass  # no LAPIC in this placement: the PIC's INTR goes straight to the CPU

    def attach_runner(self, runner: "VcpuRunner") -> None:
        if runner.vcpu.id == 0:  # the PIC's INTR is wired to the BSP only, as on a PC
            self.pin.runner = runner
            runner.injector = UserspaceInjector(self.pic, self.pin, runner.vcpu, self.lock)
        else:
            runner.injector = None

    def reset(self) -> None:
        self.pic.reset()
        self.pit.reset()

    def stats(self) -> dict[str, object]:
        injector = self.pin.runner.injector if self.pin.runner else None
        ticks = self.pit.tick_stats
        return {
            "interrupts_injected": injector.injected if injector else 0,
            "interrupt_windows": injector.windows_requested if injector else 0,
            "pic_acknowledged": list(self.pic.acknowledged),
            "pic_spurious": self.pic.spurious,
            "pit_ticks": {"delivered": ticks.delivered, "delayed": ticks.delayed,
                          "merged": ticks.merged, "discarded": ticks.discarded},
        }


def create_irqchip(mode: str, vm: Vm, pio: Bus, clock: Clock, lock: threading.Lock,
                   lost_tick_policy: str,
                   trace_line: Callable[[IrqLine, int], IrqLine] | None = None) -> IrqChip:
    if mode == "kernel":
        return KernelIrqChip(vm)
    return UserIrqChip(pio, clock, lock, lost_tick_policy=lost_tick_policy,
                       trace_line=trace_line)
