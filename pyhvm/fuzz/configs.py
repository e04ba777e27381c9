"""Fuzz configurations: each device alone, and the whole PC, wired without KVM.

A configuration is a function that builds a fresh `Target` and fills in its `Profile`. The
pieces below (`add_pic`, `add_uart`, ...) each map one device on the target's buses, give it
the target's checked memory and virtual clock, and declare its events, footprint roots,
invariants and op templates; a configuration is a few of them. The PC wiring mirrors
`Machine._wire_devices` (pyhvm/machine/pc.py) with the userspace irqchip, and the NIC wiring
mirrors `Nic` (pyhvm/machine/nic.py): BAR moves re-map the same way, so guest-driven
re-mapping is fuzzed as the machine does it.

To add a configuration: write an `add_<device>(target, ...)` piece and register
`CONFIGS["name"] = lambda: _build("name", add_<device>)`.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from ..backends.blockexec import SyncDiskExecutor, perform
from ..bus import BusError
from ..devices.ata_disk import AtaDisk
from ..devices.blockio import BlockIOError, DiskCompletion, DiskRequest, MemoryBackend
from ..devices.debug_exit import DebugExit
from ..devices.ide import PiixIde
from ..devices.i8042 import I8042
from ..devices.misc import PostCode
from ..devices.pci import STATUS_RECEIVED_MASTER_ABORT, PciHost
from ..devices.pci_chipset import PcChipset, build_pc_chipset
from ..devices.pic8259 import DualPic
from ..devices.pit8254 import Pit8254
from ..devices.rtc import CmosRtc, pc_cmos_bytes
from ..devices.rtl8139 import Rtl8139, Rtl8139Pci
from ..devices import vbe, vga_regs
from ..devices.uart16550 import Uart16550
from ..devices.vga import LFB_BAR, MMIO_SIZE, StdVga, StdVgaPci
from ..devices.vga_memory import WINDOW_BASE, WINDOW_SIZE
from . import templates
from .generate import Profile
from .harness import Event, Target
from .templates import IDE_BUS_MASTER_PORT, NIC_IO_BASE, NIC_MAC, NIC_MMIO_BASE

RTC_BASE_TIME = 1_700_000_000  # a fixed epoch: the same program sees the same dates
NIC_PCI_DEVICE = 3
IDE_DEVICE, IDE_FUNCTION = 1, 1


class Line:
    """An interrupt line to nowhere that remembers its level (and counts edges)."""

    def __init__(self) -> None:
        self.level = False
        self.edges = 0

    def set_level(self, level: bool) -> None:
        level = bool(level)
        self.edges += level and not self.level
        self.level = level


# -- the interrupt controller and timer ---------------------------------------------------

def add_pic(t: Target, p: Profile) -> DualPic:
    pic = DualPic(Line())
    t.pio.register(0x20, 2, pic.master_port, "pic-master")
    t.pio.register(0xA0, 2, pic.slave_port, "pic-slave")
    t.pio.register(0x4D0, 2, pic.elcr_port, "elcr")
    t.roots["pic"] = pic
    t.invariants += [("pic-master", lambda: pic.master.state().validate()),
                     ("pic-slave", lambda: pic.slave.state().validate())]

    def irq(number: int, level: int) -> None:
        number %= 16
        pic.set_irq(9 if number == 2 else number, bool(level))

    def ack() -> None:  # the vCPU's INTA, only when INTR is up (UserspaceInjector)
        if pic.has_interrupt():
            pic.acknowledge()

    t.events["irq"] = Event("ii", irq)
    t.events["ack"] = Event("", ack)
    p.ports += [(0x20, 2), (0xA0, 2), (0x4D0, 2)]
    p.events["irq"] = lambda r: (r.randrange(16), r.randrange(2))
    p.events["ack"] = lambda r: ()
    p.templates += [templates.pic_init, templates.pic_command]
    return pic


def add_pit(t: Target, p: Profile, irq0: object | None = None,
            policy: str = "delay") -> Pit8254:
    pit = Pit8254(t.clock, irq0 or Line(), lost_tick_policy=policy)  # type: ignore[arg-type]
    t.pio.register(0x40, 4, pit, "pit")
    t.pio.register(0x61, 1, pit.port61, "port61")
    t.roots["pit"] = pit
    t.invariants.append(("pit", lambda: pit.state().validate()))
    p.ports += [(0x40, 4), (0x61, 1)]
    p.templates += [templates.pit_program, templates.pit_readback]
    return pit


# -- ISA devices ---------------------------------------------------------------------------

def add_rtc(t: Target, p: Profile, irq8: object | None = None) -> CmosRtc:
    rtc = CmosRtc(t.clock, irq8 or Line(), base_time=RTC_BASE_TIME,  # type: ignore[arg-type]
                  cmos=pc_cmos_bytes(t.memory.size, pci_hole_start=3 << 30))
    t.pio.register(0x70, 2, rtc, "rtc")
    t.roots["rtc"] = rtc
    t.invariants.append(("rtc", lambda: rtc.state().validate()))
    p.ports.append((0x70, 2))
    p.templates.append(templates.rtc_access)
    return rtc


def add_uart(t: Target, p: Profile, irq: object | None = None) -> Uart16550:
    sent = [0]

    def output(data: bytes) -> None:
        sent[0] += len(data)

    uart = Uart16550(irq or Line(), output)  # type: ignore[arg-type]
    t.pio.register(0x3F8, 8, uart, "com1")
    t.roots["uart"] = uart
    t.invariants.append(("uart", lambda: uart.state().validate()))
    t.events["rx"] = Event("b", lambda data: uart.receive(data))
    t.events["break"] = Event("", lambda: uart.receive_break())
    t.events["rxtimeout"] = Event("", lambda: uart.rx_timeout())
    p.ports.append((0x3F8, 8))
    p.events["rx"] = lambda r: (r.randbytes(r.choice((1, 1, 4, 16, 17, 64))),)
    p.events["break"] = lambda r: ()
    p.events["rxtimeout"] = lambda r: ()
    p.templates.append(templates.uart_setup)
    return uart


def add_i8042(t: Target, p: Profile, kbd_irq: object | None = None,
              aux_irq: object | None = None) -> I8042:
    controller = I8042(t.request_reset, kbd_irq or Line(),  # type: ignore[arg-type]
                       aux_irq or Line())  # type: ignore[arg-type]
    t.pio.register(0x60, 1, controller.data_port, "i8042-data")
    t.pio.register(0x64, 1, controller.command_port, "i8042-cmd")
    t.roots["i8042"] = controller
    t.events["key"] = Event("ii", lambda code, down: controller.key(code & 0xE0FF, bool(down)))
    p.ports += [(0x60, 1), (0x64, 1)]
    p.events["key"] = lambda r: (r.choice((0x1C, 0x5A, 0x12, 0xE075, 0xE01F, 0x77, 0xE0F0,
                                           r.getrandbits(8))), r.randrange(2))
    p.templates.append(templates.i8042_command)
    return controller


def add_debug_ports(t: Target, p: Profile) -> None:
    exits = [0]

    def on_exit(status: int) -> None:
        exits[0] += 1

    t.pio.register(0xF4, 4, DebugExit(on_exit), "debug-exit")
    t.pio.register(0x80, 1, PostCode(lambda code: None), "post")
    p.ports += [(0xF4, 4), (0x80, 1)]


# -- PCI ----------------------------------------------------------------------------------

def add_pci_host(t: Target, p: Profile, host: PciHost) -> None:
    t.pio.register(0xCF8, 4, host.address_port, "pci-addr")
    t.pio.register(0xCFC, 4, host.data_port, "pci-data")
    t.roots["pci"] = host
    p.ports += [(0xCF8, 8)]
    p.templates.append(templates.pci_bar_sizing)


def add_chipset(t: Target, p: Profile, isa_line: Callable[[int], object] | None = None,
                ide_decode_at_reset: bool = False) -> PcChipset:
    lines: dict[int, Line] = {}
    chipset = build_pc_chipset(
        isa_line=isa_line or (lambda irq: lines.setdefault(irq, Line())),  # type: ignore[arg-type]
        on_reset=lambda hard: t.request_reset(), ide_decode_at_reset=ide_decode_at_reset)
    add_pci_host(t, p, chipset.host)
    t.roots["chipset"] = chipset
    p.pci += [(0, 0), (1, 0), (1, 1)]
    return chipset


# -- IDE ----------------------------------------------------------------------------------

class BadSectorBackend(MemoryBackend):
    """A disk whose sectors in [bad, bad + 4) fail: the I/O-error paths."""

    def __init__(self, sectors: int, bad: int) -> None:
        super().__init__(sectors * 512)
        self._bad = range(bad * 512, (bad + 4) * 512)

    def _check(self, offset: int, length: int) -> None:
        super()._check(offset, length)
        if offset < self._bad.stop and self._bad.start < offset + length:
            raise BlockIOError(f"bad sector in {offset}+{length}")


class QueuedExecutor:
    """The concurrent placement without threads: requests wait until an `event complete`,
    then run through the same `perform` the workers use."""

    def __init__(self, memory: object) -> None:
        self._memory = memory
        self.queue: deque[tuple[DiskRequest, DiskCompletion]] = deque()

    def __call__(self, request: DiskRequest, complete: DiskCompletion) -> None:
        self.queue.append((request, complete))

    def complete(self) -> None:
        if self.queue:
            request, complete = self.queue.popleft()
            complete(perform(self._memory, request))  # type: ignore[arg-type]


def _disks() -> dict[tuple[int, int], AtaDisk]:
    return {(0, 0): AtaDisk(MemoryBackend(2048 * 512), serial="FUZZ0"),
            (1, 0): AtaDisk(MemoryBackend(128 * 512, readonly=True), serial="FUZZ2"),
            (1, 1): AtaDisk(BadSectorBackend(64, 13), serial="FUZZ3")}


def add_ide(t: Target, p: Profile, chipset: PcChipset, lines: tuple[object, object],
            concurrent: bool = True) -> PiixIde:
    """`Machine._wire_ide`: drives, executor, the PCI function's decode and BAR4 moves."""
    if concurrent:
        executor: QueuedExecutor | SyncDiskExecutor = QueuedExecutor(t.memory)
        t.events["complete"] = Event("", executor.complete)  # type: ignore[union-attr]
        p.events["complete"] = lambda r: ()
    else:
        executor = SyncDiskExecutor(t.memory)  # type: ignore[arg-type]
    function = chipset.ide
    ide = PiixIde(t.memory, executor, lines[0], lines[1], _disks(),  # type: ignore[arg-type]
                  bus_master_enabled=lambda: function.bus_master_enabled)
    function.on_command_change = lambda command: ide.bus_master_changed()
    legacy = ide.legacy_ports()
    pio = t.pio

    def decode_changed(channel: int, enabled: bool) -> None:
        for base, size, device, name in legacy[2 * channel:2 * channel + 2]:
            if enabled:
                pio.place(base, size, device, name)
            else:
                pio.unplace(base, device)

    def bar_changed(index: int, old: int | None, new: int | None) -> None:
        if index == 4:
            pio.move(old, new, 16, ide.bmide_port, "ide-bus-master")

    function.on_decode_change = decode_changed
    function.on_bar_change = bar_changed

    def firmware_setup() -> None:
        function.config_write(0x20, 4, IDE_BUS_MASTER_PORT)
        function.config_write(0x04, 2, 0x0005)

    firmware_setup()  # enables I/O decode: the legacy ports get mapped through the callback
    t.roots["ide"] = ide
    t.roots["ide-executor"] = executor
    p.ports += [(0x1F0, 8), (0x3F6, 1), (0x170, 8), (0x376, 1), (IDE_BUS_MASTER_PORT, 16)]
    p.templates += [templates.ata_command, templates.ata_dma, templates.ata_dma,
                    templates.ata_pio_transfer, templates.prd_setup, templates.ata_pio,
                    templates.ata_control]
    ide.firmware_setup = firmware_setup  # type: ignore[attr-defined]
    return ide


# -- the NIC ------------------------------------------------------------------------------

def add_nic(t: Target, p: Profile, host: PciHost, intx: object | None = None) -> Rtl8139:
    """`Nic` in the event placement: the TX kick is deferred work, BAR moves re-map."""
    function = Rtl8139Pci()
    sent = [0]
    kick_queued = [False]

    def transmit(frame: bytes) -> None:
        sent[0] += 1

    def tx_pending() -> None:
        if not kick_queued[0]:
            kick_queued[0] = True
            t.call_soon(process_tx)

    def process_tx() -> None:
        kick_queued[0] = False
        model.process_tx()

    model = Rtl8139(t.memory, function.irq, transmit, t.clock, mac=NIC_MAC,
                    on_tx_pending=tx_pending,
                    bus_master_enabled=lambda: function.bus_master_enabled,
                    on_master_abort=lambda: function.set_status(STATUS_RECEIVED_MASTER_ABORT))

    def command_changed() -> None:
        if function.bus_master_enabled:
            model.process_tx()

    def bar_changed(index: int, old: int | None, new: int | None) -> None:
        bus = t.pio if index == 0 else t.mmio
        bus.move(old, new, 256, model.register_port, "rtl8139" if index == 0 else
                 "rtl8139-mmio")

    def firmware_setup() -> None:
        function.config_write(0x10, 4, NIC_IO_BASE)
        function.config_write(0x14, 4, NIC_MMIO_BASE)
        function.config_write(0x04, 2, 0x0007)

    function.on_bar_change = bar_changed
    function.on_command_change = lambda command: command_changed()
    host.attach(NIC_PCI_DEVICE, 0, function)
    function.connect_intx(intx or Line())  # type: ignore[arg-type]
    firmware_setup()

    def frame(data: bytes) -> None:  # Nic._drain_backend: the ring is asked first
        if not model.rx_ring_full():
            model.receive(data)

    t.events["frame"] = Event("b", frame)
    t.events["txkick"] = Event("", lambda: model.process_tx())
    t.events["link"] = Event("i", lambda up: model.set_link(bool(up)))
    t.roots["rtl8139"] = model
    t.invariants.append(("rtl8139", lambda: model.state().validate()))
    p.ports.append((NIC_IO_BASE, 256))
    p.mmio.append((NIC_MMIO_BASE, 256))
    p.pci.append((NIC_PCI_DEVICE, 0))
    p.events["frame"] = templates.frame
    p.events["txkick"] = lambda r: ()
    p.events["link"] = lambda r: (r.randrange(2),)
    p.templates += [templates.nic_rx_setup, templates.nic_tx, templates.nic_traffic,
                    templates.nic_traffic, templates.nic_eeprom, templates.nic_misc]
    model.firmware_setup = firmware_setup  # type: ignore[attr-defined]
    return model


# -- the display adapter ------------------------------------------------------------------

VGA_PCI_DEVICE = 2
VGA_VRAM = 1 << 20  # the smallest the model takes: every byte of it is reachable quickly


def add_vga(t: Target, p: Profile, host: PciHost) -> StdVga:
    """The std VGA in the trap placement (every framebuffer access reaches the model), with
    `VgaDisplay`'s BAR handling (pyhvm/machine/display.py) reduced to bus mappings."""
    vram = memoryview(bytearray(VGA_VRAM))
    vga = StdVga(vram)
    function = StdVgaPci(VGA_VRAM)

    mapped: dict[int, int] = {}  # BAR index -> where it decodes

    def bar_changed(index: int, old: int | None, new: int | None) -> None:
        """As `VgaDisplay._bar_changed`: a BAR moved over another device does not decode."""
        device, size, name = ((vga.lfb, VGA_VRAM, "vga-lfb") if index == LFB_BAR else
                              (vga.mmio, MMIO_SIZE, "vga-mmio"))
        if index in mapped:
            t.mmio.unregister(mapped.pop(index))
        if new is not None:
            try:
                t.mmio.register(new, size, device, name)
            except BusError:
                return
            mapped[index] = new

    function.on_bar_change = bar_changed
    host.attach(VGA_PCI_DEVICE, 0, function)
    t.pio.register(vga_regs.PORT_BASE, vga_regs.PORT_COUNT, vga.regs, "vga")
    t.pio.register(vbe.INDEX_PORT, vbe.PORT_COUNT, vga.vbe, "vbe")
    t.mmio.register(WINDOW_BASE, WINDOW_SIZE, vga.window, "vga-window")
    vga.reset()
    function.config_write(0x10, 4, templates.VGA_LFB_BASE)
    function.config_write(0x18, 4, templates.VGA_MMIO_BASE)
    function.config_write(0x04, 2, 0x0003)
    t.roots["vga"] = vga
    p.ports += [(vga_regs.PORT_BASE, vga_regs.PORT_COUNT), (vbe.INDEX_PORT, vbe.PORT_COUNT)]
    p.mmio += [(WINDOW_BASE, WINDOW_SIZE), (templates.VGA_LFB_BASE, VGA_VRAM),
               (templates.VGA_MMIO_BASE, MMIO_SIZE)]
    p.pci.append((VGA_PCI_DEVICE, 0))
    p.templates += [templates.vbe_mode, templates.vbe_mode, templates.vga_registers,
                    templates.vga_window]
    return vga


def _vga_alone(t: Target, p: Profile) -> None:
    host = PciHost()
    add_pci_host(t, p, host)
    add_vga(t, p, host)


# -- configurations -----------------------------------------------------------------------

def _build(name: str, *pieces: Callable[[Target, Profile], object]) -> Target:
    t = Target(name)
    p = Profile(ram=t.memory.layout)
    for piece in pieces:
        piece(t, p)
    t.profile = p
    return t


def _pci_alone(t: Target, p: Profile) -> None:
    add_chipset(t, p)


def _ide_alone(t: Target, p: Profile, concurrent: bool = True) -> None:
    chipset = add_chipset(t, p, ide_decode_at_reset=True)
    add_ide(t, p, chipset, (Line(), Line()), concurrent)


def _nic_alone(t: Target, p: Profile) -> None:
    host = PciHost()
    add_pci_host(t, p, host)
    add_nic(t, p, host)


def _pc(t: Target, p: Profile) -> None:
    """`Machine._wire_devices` with `--irqchip user`, a NIC and three drives."""
    pic = add_pic(t, p)
    add_pit(t, p, pic.line(0))
    add_uart(t, p, pic.line(4))
    add_debug_ports(t, p)
    rtc = add_rtc(t, p, pic.line(8))
    chipset = add_chipset(t, p, isa_line=pic.line, ide_decode_at_reset=True)
    ide = add_ide(t, p, chipset, (pic.line(14), pic.line(15)))
    nic = add_nic(t, p, chipset.host,
                  chipset.router.line(NIC_PCI_DEVICE, INTA_PIN))
    keyboard = add_i8042(t, p, pic.line(1), pic.line(12))
    uart, pit = t.roots["uart"], t.roots["pit"]

    def reset() -> None:  # Machine._reset, in its order
        t.memory.clear()
        uart.reset()  # type: ignore[attr-defined]
        rtc.reset()
        keyboard.reset()
        pic.reset()
        pit.reset()  # type: ignore[attr-defined]
        ide.reset()
        chipset.host.reset()
        ide.firmware_setup()  # type: ignore[attr-defined]
        nic.reset()
        nic.firmware_setup()  # type: ignore[attr-defined]

    t.on_reset = reset
    t.events["reset"] = Event("", t.request_reset)
    p.events["reset"] = lambda r: ()


INTA_PIN = 1

CONFIGS: dict[str, Callable[[], Target]] = {
    "pic": lambda: _build("pic", add_pic),
    "pit": lambda: _build("pit", add_pit),
    "pit-merge": lambda: _build("pit-merge", lambda t, p: add_pit(t, p, policy="merge")),
    "pit-discard": lambda: _build("pit-discard", lambda t, p: add_pit(t, p, policy="discard")),
    "rtc": lambda: _build("rtc", add_rtc),
    "uart": lambda: _build("uart", add_uart),
    "i8042": lambda: _build("i8042", add_i8042),
    "pci": lambda: _build("pci", _pci_alone),
    "ide": lambda: _build("ide", _ide_alone),
    "ide-sync": lambda: _build("ide-sync", lambda t, p: _ide_alone(t, p, concurrent=False)),
    "rtl8139": lambda: _build("rtl8139", _nic_alone),
    "vga": lambda: _build("vga", _vga_alone),
    "pc": lambda: _build("pc", _pc),
}
