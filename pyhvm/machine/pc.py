"""A PC: memory, buses, devices and vCPUs wired from a `MachineConfig`; owns its lifetime."""

from __future__ import annotations

import dataclasses
import functools
import logging
import mmap
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Callable

from .. import __version__
from ..backends.blockexec import ConcurrentDiskExecutor, SyncDiskExecutor
from ..backends.console import Console, open_console
from ..backends.disk import RawImage
from ..boot.image import BootEntry, BootImageError, read_file
from ..boot.loader import load_kernel
from ..bus import mmio_bus, pio_bus
from ..devices.base import IrqLine
from ..devices.debug_exit import DebugExit
from ..devices.i8042 import AUX_IRQ, KBD_IRQ, I8042
from ..devices.misc import PostCode
from ..devices.port92 import PORT as PORT92, Port92
from ..devices.ata_disk import AtaDisk
from ..devices.ide import PiixIde
from ..devices.pci_chipset import I440fxHostBridge, Piix3Ide, build_pc_chipset
from ..devices.rtc import CmosRtc, pc_cmos_bytes
from ..devices.uart16550 import Uart16550
from ..kvm import Kvm, KvmError
from ..kvm import constants as kc
from ..kvm.vcpu import Vcpu
from ..memory import LOW_RAM_TOP, GuestMemory
from ..memory_backing import BackingSpec
from ..runtime.diagnostics import register_dump
from ..runtime.dispatch import Buses
from ..runtime.eventloop import EventLoop
from ..runtime.vcpu_runner import VcpuRunner, install_kick_handler
from ..runtime.workers import WorkerPool
from ..trace.irq import TracedIrqLine
from ..trace.recorder import Recorder
from ..trace.records import EVENT_GROUPS
from . import cpu
from .config import ConfigError, MachineConfig
from .firmware import Firmware
from .interrupts import IRQCHIP_MODES, LOST_TICK_POLICIES, IrqChip, create_irqchip
from .nic import open_nic
from .display import open_vga, parse_vga, ram_memslots
from .displays import Displays

if TYPE_CHECKING:
    from ..devproc.proxy import RemoteIde, RemoteUart

log = logging.getLogger("pyhvm")

COM1_BASE = 0x3F8
COM1_IRQ = 4
RTC_IRQ = 8
IDE_IRQS = (14, 15)
IDE_DMA_MODES = ("sync", "concurrent")
IDE_BUS_MASTER_PORT = 0xC000
BMIBA_BAR = 4
# Guest-physical pages KVM may claim for its own use on VMX hosts (real-mode TSS and the
# EPT identity map), just below the 16 MiB flash window under 4 GiB, where QEMU puts them;
# the firmware's e820 table reserves them (machine/firmware.py).
KVM_TSS_ADDR = 0xFEFFD000
KVM_IDENTITY_MAP_ADDR = 0xFEFFC000
KERNEL_SIZE_LIMIT = 256 << 20
CONSOLE_FLUSH_NS = 5_000_000  # console bytes without a newline wait at most this long
TRACE_DEVICES = ("ide", "rtl8139")  # index = the device id in trace records
RIP_SAMPLE_NS = 2_000_000  # 500 guest RIP samples a second when tracing 'rip'

# Process exit statuses of `pyhvm run`: all even, so the guest's debug-exit statuses (always
# odd) never collide with them.
EXIT_POWER_OFF = 0
EXIT_GUEST_DIED = 2        # triple fault, emulation failure, failed entry
EXIT_HOST_ERROR = 4        # pyhvm could not run the guest (configuration, host, or a bug)
EXIT_TIMEOUT = 124         # --max-seconds ran out (the `timeout` command's convention)
EXIT_INTERRUPTED = 130     # Ctrl-C (128 + SIGINT)
EXIT_DEVICE_FAILED = 6     # a device process died or hung, under --device-process-failure=stop

PAUSE_TIMEOUT_S = 2.0      # how long pause() waits for the vCPUs to leave the guest
# A machine event's listener: (QMP event name, its data). Called from any thread, even a
# signal handler, so it must only queue (see control/qmp.py).
Listener = Callable[[str, dict[str, object]], None]


class Machine:
    def __init__(self, config: MachineConfig) -> None:
        if config.cpus < 1:
            raise ConfigError("--cpus must be at least 1")
        self.config = config
        self.stopping = False
        self.exit_status: int | None = None
        self.stop_reason = ""
        self.paused = False  # QMP `stop`: vCPUs parked out of the guest until resume()
        self.listeners: list[Listener] = []  # run-state changes: STOP, RESUME, RESET, SHUTDOWN
        self.io_lock = threading.Lock()
        self._reset_requested = False
        self.loop = EventLoop(self.io_lock)
        self.recorder: Recorder | None = None
        # Booting through firmware (--bios): the ROM is checked before any KVM work.
        self.firmware = Firmware.open(config.bios, config.boot, config.debugcon) \
            if config.bios else None
        self.kvm = Kvm()
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # --- construction -------------------------------------------------------------------
    def _build(self) -> None:
        config = self.config
        max_vcpus = self.kvm.check_extension(kc.KVM_CAP_MAX_VCPUS) or \
            self.kvm.check_extension(kc.KVM_CAP_NR_VCPUS) or 1
        if config.cpus > max_vcpus:
            raise ConfigError(f"--cpus {config.cpus} is more than this host's KVM allows "
                              f"({max_vcpus})")
        self.vm = self.kvm.create_vm()
        if self.kvm.check_extension(kc.KVM_CAP_SET_TSS_ADDR):
            self.vm.set_tss_addr(KVM_TSS_ADDR)
        if self.kvm.check_extension(kc.KVM_CAP_SET_IDENTITY_MAP_ADDR):
            self.vm.set_identity_map_addr(KVM_IDENTITY_MAP_ADDR)
        if config.irqchip not in IRQCHIP_MODES:
            raise ConfigError(f"--irqchip {config.irqchip!r}: use one of "
                              f"{', '.join(IRQCHIP_MODES)}")
        if config.lost_tick_policy not in LOST_TICK_POLICIES:
            raise ConfigError(f"--lost-tick-policy {config.lost_tick_policy!r}: use one of "
                              f"{', '.join(LOST_TICK_POLICIES)}")
        self.recorder = _open_recorder(config)
        from ..devproc import host as devproc_host  # --device-process (pyhvm/devproc/)

        devproc = devproc_host.options_from_config(config)
        self.memory = _allocate_memory(config.memory, config.mem_backing if devproc is None else
                                       devproc_host.shared_backing(config.mem_backing,
                                                                   devproc.groups))
        self.vga_config = parse_vga(config.vga, config.vga_mem)
        if self.firmware is not None:  # the first MiB follows the PAM registers
            self.firmware.map_memory(self.vm, self.memory, I440fxHostBridge().pam_regions())
        else:
            for slot, gpa, size, host in ram_memslots(self.memory,
                                                      self.vga_config.kind != "none"):
                self.vm.set_user_memory_region(slot, gpa, size, host)
        self.console = open_console(config.serial)
        self.console.schedule = lambda flush: self.loop.call_at(
            self.loop.now_ns() + CONSOLE_FLUSH_NS, flush)
        self.buses = Buses(pio_bus(), mmio_bus())
        # The irqchip comes before the vCPUs: KVM attaches a LAPIC to each vCPU it creates.
        trace_line = None
        if self.recorder is not None and self.recorder.wants("irq"):
            trace_line = functools.partial(_traced_line, recorder=self.recorder)
        self.devproc = None if devproc is None else \
            devproc_host.for_machine(devproc, self, EXIT_DEVICE_FAILED)
        if self.devproc is not None and self.devproc.hosts("pic"):
            self.irqchip: IrqChip = self.devproc.irqchip(self.buses.pio)
        else:
            self.irqchip = create_irqchip(config.irqchip, self.vm, self.buses.pio, self.loop,
                                          self.io_lock, config.lost_tick_policy, trace_line)
        self._wire_devices()
        if self.devproc is not None:
            self.devproc.start()  # before any vCPU runs; wiring's requests wait in the ring
        self.displays = Displays(self.loop, self.io_lock, self.vga, self.i8042, config.displays)
        self.vcpus = [self._create_vcpu(i) for i in range(config.cpus)]
        self.runners = [self._new_runner(vcpu) for vcpu in self.vcpus]
        self._boot()
        if self.recorder is not None:
            self.recorder.start(self._trace_header())

    def _new_runner(self, vcpu: Vcpu) -> VcpuRunner:
        runner = VcpuRunner(self, vcpu)
        self.irqchip.attach_runner(runner)
        return runner

    def _wire_devices(self) -> None:
        pio = self.buses.pio
        if self.devproc is not None and self.devproc.hosts("uart"):
            self.uart: Uart16550 | RemoteUart = self.devproc.uart(self.console,
                                                                  self._line(COM1_IRQ))
        else:
            self.uart = Uart16550(self._line(COM1_IRQ), self.console.write)
        pio.register(COM1_BASE, 8, self.uart, "com1")
        debug_exit = DebugExit(self._debug_exit)
        pio.register(self.config.debug_exit_port, self.config.debug_exit_size, debug_exit,
                     "debug-exit")
        pio.register(0x80, 1, PostCode(lambda code: log.debug("POST code %#04x", code)),
                     "post")
        self.port92 = Port92(self._guest_reset)  # fast A20 gate and fast reset
        pio.register(PORT92, 1, self.port92, "port92")
        # The RTC keeps UTC, as QEMU's default `-rtc base=utc` does.
        cmos = pc_cmos_bytes(self.config.memory, pci_hole_start=LOW_RAM_TOP)
        if self.firmware is not None:
            cmos.update(self.firmware.cmos_bytes(self.config.cpus))
        self.rtc = CmosRtc(self.loop, self._line(RTC_IRQ), base_time=int(time.time()),
                           cmos=cmos)
        pio.register(0x70, 2, self.rtc, "rtc")
        # A kernel booted without firmware finds the IDE channels decoding, as a BIOS
        # leaves them (Linux's ata_piix skips channels whose decode bit is off).
        self.chipset = build_pc_chipset(isa_line=self._line,
                                        on_reset=lambda hard: self._guest_reset(),
                                        ide_decode_at_reset=self.firmware is None)
        pio.register(0xCF8, 4, self.chipset.host.address_port, "pci-addr")
        pio.register(0xCFC, 4, self.chipset.host.data_port, "pci-data")
        self._wire_ide()
        self.nic = open_nic(self, self.config.nic) if self.config.nic else None
        self.vga = open_vga(self, self.vga_config)  # 00:02.0, or None with --vga none
        self.i8042 = I8042(self._guest_reset, self._line(KBD_IRQ), self._line(AUX_IRQ))
        pio.register(0x60, 1, self.i8042.data_port, "i8042-data")
        pio.register(0x64, 1, self.i8042.command_port, "i8042-cmd")
        if self.firmware is not None:
            self.firmware.attach(self)

    def _wire_ide(self) -> None:
        """PIIX3 IDE: drives, the DMA placement, and the ranges its PCI function decodes."""
        config, pio = self.config, self.buses.pio
        if config.ide_dma not in IDE_DMA_MODES:
            raise ConfigError(f"--ide-dma {config.ide_dma!r}: use sync or concurrent")
        self.disk_images = [RawImage(d.file, readonly=d.readonly) for d in config.drives]
        function = self.chipset.ide
        if self.devproc is not None and self.devproc.hosts("ide"):
            self.ide: PiixIde | RemoteIde = self.devproc.ide(
                self.memory, config.drives, [image.fd for image in self.disk_images],
                [self._line(irq) for irq in IDE_IRQS], lambda: function.bus_master_enabled)
        else:
            self._wire_local_ide(function)
        function.on_command_change = lambda command: self.ide.bus_master_changed()
        legacy = self.ide.legacy_ports()

        def decode_changed(channel: int, enabled: bool) -> None:
            for base, size, device, name in legacy[2 * channel:2 * channel + 2]:
                if enabled:
                    pio.place(base, size, device, name)
                else:
                    pio.unplace(base, device)

        def bar_changed(index: int, old: int | None, new: int | None) -> None:
            if index == BMIBA_BAR:
                pio.move(old, new, 16, self.ide.bmide_port, "ide-bus-master")

        function.on_decode_change = decode_changed
        function.on_bar_change = bar_changed
        self._firmware_pci_setup()

    def _wire_local_ide(self, function: Piix3Ide) -> None:
        """The IDE model in this process, with the --ide-dma placement's executor."""
        config = self.config
        disks = {(d.index // 2, d.index % 2): AtaDisk(image, serial=f"PYHVM{d.index:04d}")
                 for d, image in zip(config.drives, self.disk_images)}
        ide_id = TRACE_DEVICES.index("ide")
        if config.ide_dma == "sync":
            self.disk_executor: SyncDiskExecutor | ConcurrentDiskExecutor = \
                SyncDiskExecutor(self.memory, self.recorder, ide_id)
        else:
            self.disk_executor = ConcurrentDiskExecutor(
                self.memory, WorkerPool(self.io_lock, threads=2, name="ide"), self.recorder,
                ide_id)
        self.ide = PiixIde(self.memory, self.disk_executor, self._line(IDE_IRQS[0]),
                           self._line(IDE_IRQS[1]), disks,
                           bus_master_enabled=lambda: function.bus_master_enabled)

    def _firmware_pci_setup(self) -> None:
        """What firmware leaves for a directly booted kernel (SeaBIOS does the same): the
        IDE bus-master block at a fixed port, I/O decode and bus mastering on."""
        if self.firmware is not None:
            return  # the real firmware assigns BARs itself
        function = self.chipset.ide
        function.config_write(0x20, 4, IDE_BUS_MASTER_PORT)
        function.config_write(0x04, 2, 0x0005)

    def _line(self, irq: int) -> IrqLine:
        """The interrupt line a device gets: traced only when irq tracing is on."""
        line = self.irqchip.line(irq)
        if self.recorder is not None and self.recorder.wants("irq"):
            return TracedIrqLine(line, irq, self.recorder)
        return line

    def _trace_header(self) -> dict[str, object]:
        config = dataclasses.asdict(self.config)
        return {
            "pyhvm": __version__,
            "config": config,
            "host": {"kernel": os.uname().release, "kvm_pvm": cpu.host_is_pvm(),
                     "python": sys.version.split()[0]},
            "pio_map": [[m.base, m.size, m.name] for m in self.buses.pio.mappings],
            "mmio_map": [[m.base, m.size, m.name] for m in self.buses.mmio.mappings],
            "vcpus": len(self.vcpus),
            "devices": list(TRACE_DEVICES),  # device ids of DMA/backend/device records
        }

    def _create_vcpu(self, index: int) -> Vcpu:
        vcpu = self.vm.create_vcpu(index)
        tsc_khz = 0
        if self.kvm.check_extension(kc.KVM_CAP_GET_TSC_KHZ):
            try:
                tsc_khz = vcpu.tsc_khz()
            except KvmError:
                tsc_khz = 0
        entries = cpu.adjust_cpuid(self.kvm.supported_cpuid(), vcpu_id=index,
                                   ncpus=self.config.cpus, tsc_khz=tsc_khz,
                                   limited_host=cpu.host_is_pvm())
        vcpu.set_cpuid2(entries)
        self.irqchip.setup_vcpu(vcpu)
        return vcpu

    def _boot(self) -> None:
        config = self.config
        if self.firmware is not None:  # the BIOS loads whatever it boots
            cpu.set_reset_state(self.vcpus[0])
            return
        if config.kernel is None:
            raise ConfigError("nothing to boot: give --kernel, or --bios to boot a disk")
        image = read_file(config.kernel, "kernel", KERNEL_SIZE_LIMIT)
        initrd = read_file(config.initrd, "initrd", KERNEL_SIZE_LIMIT) if config.initrd else None
        modules = [(read_file(path.split(" ", 1)[0], "module", KERNEL_SIZE_LIMIT), path)
                   for path in config.modules]
        entry = load_kernel(self.memory, image, config.append, initrd, modules)
        self._enter(self.vcpus[0], entry)

    def _enter(self, vcpu: Vcpu, entry: BootEntry) -> None:
        regs = entry.registers
        if entry.mode == "protected32":
            cpu.set_protected_mode_entry(vcpu, eip=entry.rip, eax=regs.get("rax", 0),
                                         ebx=regs.get("rbx", 0))
        else:
            tables = cpu.build_identity_page_tables(self.memory, entry.page_table_base)
            cpu.set_long_mode_entry(vcpu, tables, rip=entry.rip, rsi=regs.get("rsi", 0))

    # --- lifetime -----------------------------------------------------------------------
    def run(self) -> int:
        """Run until the guest exits, dies, times out or the user interrupts; the status."""
        install_kick_handler()
        previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            if self.config.max_seconds:
                deadline = self.loop.now_ns() + int(self.config.max_seconds * 1e9)
                self.loop.call_at(deadline, lambda: self.stop(
                    EXIT_TIMEOUT, f"stopped after --max-seconds {self.config.max_seconds}"))
            self._console_input = _ConsoleInput(self)
            if self.nic is not None:
                self.nic.start()
            if self.recorder is not None and self.recorder.wants("rip"):
                self._sample_rips()
            self._mmu_capture = _start_mmu_capture(self.config)  # --trace-events mmu
            self.runners[0].start()
            if self.irqchip.mode == "kernel":
                # APs wait in KVM_RUN (in the kernel, for INIT/SIPI from the BSP's LAPIC).
                # With the userspace irqchip there is no LAPIC to wake them: they stay
                # parked, never entered, until the APIC issue brings SMP bring-up.
                for runner in self.runners[1:]:
                    runner.start()
            self.loop.run(lambda: self.stopping and not self._reset_requested)
        finally:
            signal.signal(signal.SIGINT, previous_sigint)
        for runner in self.runners:
            if runner.thread.is_alive():
                runner.thread.join(timeout=5)
        capture = getattr(self, "_mmu_capture", None)
        if capture is not None and self.config.trace:
            from ..trace.kvmmmu import finish_for_trace

            finish_for_trace(capture, self.config.trace,
                             {r.thread.native_id: r.vcpu.id for r in self.runners
                              if r.thread.native_id is not None})
        assert self.exit_status is not None
        return self.exit_status

    def stats(self) -> dict[str, object]:
        """Where the guest's exits went: the exit profile of this run, for `--stats`."""
        pio: dict[str, int] = {}
        for runner in self.runners:
            for port, count in enumerate(runner.pio_exits):
                if count:
                    mapping = self.buses.pio.find(port)
                    key = f"{port:#06x} {mapping.name if mapping else 'unclaimed'}"
                    pio[key] = pio.get(key, 0) + count
        other: dict[str, int] = {}
        for runner in self.runners:
            # A snapshot: with the VM live (QMP), a vCPU may add a reason meanwhile.
            for name, count in dict.copy(runner.other_exits).items():
                other[name] = other.get(name, 0) + count
        result: dict[str, object] = {
            "irqchip": self.irqchip.mode,
            "exits": sum(runner.exits for runner in self.runners),
            "pio_exits": dict(sorted(pio.items(), key=lambda item: -item[1])),
            "mmio_exits": sum(runner.mmio_exits for runner in self.runners),
            "other_exits": other,
            "timer_callbacks": self.loop.timer_callbacks,
        }
        result.update(self.irqchip.stats())
        if self.devproc is not None:
            result["device_process"] = self.devproc.stats()
        result["memory"] = self.memory.host_stats()
        if self.nic is not None:
            result["nic"] = self.nic.stats()
        return result

    def _sample_rips(self) -> None:
        """Every RIP_SAMPLE_NS, ask each running vCPU where the guest is (trace 'rip')."""
        for runner in self.runners:
            if runner.thread.is_alive() and runner.state == "running":
                runner.request_rip_sample()
        self.loop.call_at(self.loop.now_ns() + RIP_SAMPLE_NS, self._sample_rips)

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.stop(EXIT_INTERRUPTED, "interrupted (Ctrl-C)", "host-signal")

    def stop(self, status: int, reason: str, cause: str | None = None) -> None:
        """Ask every vCPU to stop; the first status given wins. Any thread may call it, and
        so does the SIGINT handler: nothing here takes a lock. `cause` is QMP's
        ShutdownCause for the SHUTDOWN event (guessed from the status when not given)."""
        first = self.exit_status is None
        if first:
            self.exit_status = status
            self.stop_reason = reason
        self.stopping = True
        for runner in self.runners:
            runner.kick()
        self.loop.wake()
        if first:
            cause = cause or _SHUTDOWN_CAUSES.get(status, "guest-shutdown")
            self._emit("SHUTDOWN", {"guest": cause.startswith("guest-"), "reason": cause})

    def pause(self) -> bool:
        """Take every vCPU out of the guest until `resume` (QMP `stop`); False if paused.

        Each runner, kicked out of KVM_RUN, sees `paused` on its way back in and parks, so
        the hot loop pays nothing for this. Waits until no vCPU is in the guest, so nothing
        the guest does is counted after this returns. Call it without `io_lock`: a vCPU may
        need the lock to finish the exit it is in."""
        if self.paused:
            return False
        self.paused = True
        for runner in self.runners:
            runner.kick()
        deadline = time.monotonic() + PAUSE_TIMEOUT_S
        while any(runner.in_guest() for runner in self.runners):
            if time.monotonic() > deadline:
                log.warning("pause: a vCPU did not leave the guest within %.1f s",
                            PAUSE_TIMEOUT_S)
                break
            time.sleep(0.0005)
        self._emit("STOP", {})
        return True

    def resume(self) -> bool:
        """Let parked vCPUs back into the guest (QMP `cont`); False if it was running."""
        if not self.paused:
            return False
        self.paused = False
        for runner in self.runners:
            runner.wake.set()
        self._emit("RESUME", {})
        return True

    def _emit(self, event: str, data: dict[str, object]) -> None:
        for listener in self.listeners:
            try:
                listener(event, data)
            except Exception:  # a control client's problem is never the guest's
                log.exception("machine event listener failed")

    def fail(self, reason: str) -> None:
        print(f"pyhvm: {reason}", file=sys.stderr)
        self.stop(EXIT_HOST_ERROR, reason)

    def guest_died(self, reason: str, vcpu: Vcpu) -> None:
        try:
            dump = register_dump(vcpu, self.memory)
        except KvmError as err:
            dump = f"(registers unavailable: {err})"
        print(f"pyhvm: guest stopped: {reason}\n{dump}", file=sys.stderr)
        self.stop(EXIT_GUEST_DIED, reason)

    def _debug_exit(self, status: int) -> None:
        self.stop(status, f"guest wrote to debug-exit (status {status})")

    def _guest_reset(self) -> None:
        """The guest reset the machine (i8042 pulse, PIIX3 reset control register)."""
        self.request_reset(guest=True)

    def request_reset(self, guest: bool = False) -> None:
        """Reboot as the i8042 reset line does: the guest's (on its vCPU thread, inside an
        exit) or QMP's `system_reset` (on the loop thread). A paused machine stays paused."""
        cause = "guest-reset" if guest else "host-qmp-system-reset"
        if not self.config.reboot:
            who = "guest" if guest else "QMP system_reset"
            self.stop(EXIT_POWER_OFF, f"{who} reset the machine (--no-reboot)", cause)
            return
        if self.stopping:
            return  # a reset is under way already, or the machine is going down
        # Stop the vCPU, and reboot from the loop.
        self._reset_requested = True
        self.stopping = True
        self.loop.call_soon(self._reset)
        self._emit("RESET", {"guest": guest, "reason": cause})

    def _reset(self) -> None:
        """Reboot: wait for the BSP to leave, reload the kernel into cleared RAM, restart."""
        runner = self.runners[0]
        runner.kick()
        self.io_lock.release()  # the vCPU may be waiting for the lock to finish its exit
        try:
            runner.thread.join()
        finally:
            self.io_lock.acquire()
        self._reset_requested = False
        if self.exit_status is not None:
            return  # something else stopped the machine meanwhile
        self.memory.discard()  # reads zero, whatever the backing
        self.uart.reset()
        self.rtc.reset()
        self.port92.reset()
        self.i8042.reset()
        self.irqchip.reset()
        self.ide.reset()
        self.chipset.host.reset()
        self._firmware_pci_setup()
        if self.firmware is not None:
            self.firmware.reset()
        if self.nic is not None:
            self.nic.reset()
        if self.vga is not None:
            self.vga.reset()
        # KVM rewrites these at the next exit; until then they describe the old guest, whose
        # IF=1 would let the injector deliver into a CPU that has just been reset.
        run_page = self.vcpus[0].run_page
        run_page.ready_for_interrupt_injection = 0
        run_page.if_flag = 0
        self._boot()
        self.stopping = False
        previous, self.runners[0] = self.runners[0], self._new_runner(self.vcpus[0])
        self.runners[0].adopt_counters(previous)  # exit counts stay monotonic across reboots
        self.runners[0].start()

    def close(self) -> None:
        if getattr(self, "displays", None) is not None:
            self.displays.close()  # first: png:PATH writes the last screen
        devproc = getattr(self, "devproc", None)
        if devproc is not None:
            devproc.close()
        if getattr(self, "nic", None) is not None:
            self.nic.close()
        if getattr(self, "vga", None) is not None:
            self.vga.close()
        if hasattr(self, "disk_executor"):
            self.disk_executor.close()
        for image in getattr(self, "disk_images", []):
            image.close()
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
        self.loop.close()
        if hasattr(self, "console"):
            self.console.close()
        if hasattr(self, "vm"):
            self.vm.close()
        if self.firmware is not None:
            self.firmware.close()
        if hasattr(self, "memory"):
            self.memory.close()
        self.kvm.close()


# QMP's ShutdownCause for a stop that did not name one.
_SHUTDOWN_CAUSES = {EXIT_POWER_OFF: "guest-shutdown", EXIT_GUEST_DIED: "guest-panic",
                    EXIT_HOST_ERROR: "host-error", EXIT_TIMEOUT: "host-error",
                    EXIT_INTERRUPTED: "host-signal"}


def _traced_line(line: IrqLine, irq: int, *, recorder: Recorder) -> IrqLine:
    return TracedIrqLine(line, irq, recorder)


def _open_recorder(config: MachineConfig) -> Recorder | None:
    if not config.trace:
        return None
    unknown = set(config.trace_events) - set(EVENT_GROUPS) - {"mmu"}  # mmu: kvmmmu.py
    if unknown:
        raise ConfigError(f"--trace-events {','.join(sorted(unknown))}: choose from "
                          f"{','.join(EVENT_GROUPS)}")
    try:
        f = open(config.trace, "wb")
    except OSError as err:
        raise ConfigError(f"cannot write trace file {config.trace!r}: {err.strerror}") from None
    return Recorder(f, tuple(g for g in config.trace_events if g != "mmu"))


def _start_mmu_capture(config: MachineConfig) -> object | None:
    """The kernel's kvmmmu events for this run (`--trace-events ...,mmu`), or None."""
    if not config.trace or "mmu" not in config.trace_events:
        return None
    from ..trace.kvmmmu import start_for_trace

    return start_for_trace(config.trace, config.trace_events)


def _allocate_memory(size: int, backing: BackingSpec | None) -> GuestMemory:
    """Guest RAM as --mem-backing says; BackingError (one line) when the host cannot."""
    if size < (2 << 20):
        raise ConfigError("-m must be at least 2M")
    if size % mmap.PAGESIZE:
        raise ConfigError(f"-m {size}B is not a whole number of 4 KiB pages")
    return GuestMemory.with_size(size, backing)


class _ConsoleInput:
    """Feeds console bytes into the UART; what does not fit waits (never dropped)."""

    RETRY_NS = 10_000_000

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.fd = machine.console.input_fd
        self.pending = b""
        self._retry: object | None = None
        if self.fd is not None:
            try:
                machine.loop.add_reader(self.fd, self._readable)
            except (ValueError, OSError):
                self.fd = None  # e.g. a regular file as stdin: nothing to wait on

    def _readable(self) -> None:
        assert self.fd is not None
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            data = b""
        if not data:
            self.machine.loop.remove_reader(self.fd)
            self.fd = None
            return
        self.pending += data
        with self.machine.io_lock:
            self._feed()

    def _feed(self) -> None:
        self._retry = None
        self.pending = self.pending[self.machine.uart.receive(self.pending):]
        if self.pending and self._retry is None:
            loop = self.machine.loop
            self._retry = loop.call_at(loop.now_ns() + self.RETRY_NS, self._feed)


__all__ = ["Machine", "BootImageError", "ConfigError"]
