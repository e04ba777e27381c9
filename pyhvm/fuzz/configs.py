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
from ..devices import fw_cfg as fwc
from ..devices.debug_exit import DebugExit
from ..devices.debugcon import SEABIOS_PORT, DebugCon
from ..devices.ide import PiixIde
from ..devices.i8042 import I8042
from ..devices.misc import PostCode
from ..devices.pci import STATUS_RECEIVED_MASTER_ABORT, PciHost
from ..devices.pci_chipset import IDETIM, IDETIM_DECODE_ENABLE, PcChipset, build_pc_chipset
from ..devices.pic8259 import DualPic
from ..devices.port92 import PORT as PORT92, Port92
from ..devices.pit8254 import Pit8254
from ..devices.rtc import CmosRtc, pc_cmos_bytes
from ..devices.rtl8139 import Rtl8139, Rtl8139Pci
from ..devices import vbe, vga_regs
from ..devices.uart16550 import Uart16550
from ..devices.vga_bios import set_text_mode3
from ..devices.vga import LFB_BAR, MMIO_SIZE, StdVga, StdVgaPci
from ..devices.vga_memory import WINDOW_BASE, WINDOW_SIZE
from ..boot.firmware import ISA_BIOS_SIZE, Rom
from ..machine.firmware import (CMOS_SMP_COUNT, SHADOW_BASE, SHADOW_SIZE, BootOptions,
                                RomWindow, ShadowWindow, build_fw_cfg, cmos_boot_bytes)
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

def add_rtc(t: Target, p: Profile, irq8: object | None = None,
            firmware: dict[int, int] | None = None) -> CmosRtc:
    cmos = pc_cmos_bytes(t.memory.size, pci_hole_start=3 << 30)
    cmos.update(firmware or {})
    rtc = CmosRtc(t.clock, irq8 or Line(), base_time=RTC_BASE_TIME,  # type: ignore[arg-type]
                  cmos=cmos)
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


def add_port92(t: Target, p: Profile) -> Port92:
    """System control port A: its fast reset is a machine reset (`Machine._guest_reset`)."""
    port92 = Port92(t.request_reset)
    t.pio.register(PORT92, 1, port92, "port92")
    t.roots["port92"] = port92
    p.ports.append((PORT92, 1))
    return port92


def add_debugcon(t: Target, p: Profile) -> DebugCon:
    """SeaBIOS's debug console (`Firmware.attach` maps it when a sink is asked for)."""
    written = [0]

    def sink(data: bytes) -> None:
        written[0] += len(data)

    debugcon = DebugCon(sink)
    t.pio.register(SEABIOS_PORT, 1, debugcon, "debugcon")
    p.ports.append((SEABIOS_PORT, 1))
    return debugcon


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


def add_vga(t: Target, p: Profile, host: PciHost, text_mode: bool = False) -> StdVga:
    """The std VGA in the trap placement (every framebuffer access reaches the model), with
    `VgaDisplay`'s BAR handling (pyhvm/machine/display.py) reduced to bus mappings. With
    `text_mode`, set up as `VgaDisplay.firmware_setup` leaves it for a directly booted
    kernel (mode 03h; no font, so a run does not depend on the host's font files);
    without, the registers stay as at power-on. `vga.firmware_setup` redoes it (a reset)."""
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

    def firmware_setup() -> None:
        vga.reset()
        if text_mode:
            set_text_mode3(vga, None)
        function.config_write(0x10, 4, templates.VGA_LFB_BASE)
        function.config_write(0x18, 4, templates.VGA_MMIO_BASE)
        function.config_write(0x04, 2, 0x0003)

    firmware_setup()
    vga.firmware_setup = firmware_setup  # type: ignore[attr-defined]
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


# -- the firmware configuration device ----------------------------------------------------

FUZZ_BOOT = BootOptions(order="cd", menu=True)
FUZZ_ROM = Rom("fuzz-bios.bin", bytes(range(256)) * (ISA_BIOS_SIZE // 256))  # 128 KiB
# A kernel's items as `kernel_items` makes them for a firmware boot, with made-up bytes: the
# data item is larger than one DMA chunk, so a transfer of it copies in several.
FW_CFG_KERNEL_DATA = bytes(range(256)) * ((fwc.DMA_CHUNK + 0x1000) // 256)
FW_CFG_KERNEL_KEYS = {fwc.FW_CFG_KERNEL_ADDR: 0x100000, fwc.FW_CFG_KERNEL_ENTRY: 0x100000,
                      fwc.FW_CFG_SETUP_ADDR: 0x10000, fwc.FW_CFG_CMDLINE_ADDR: 0x20000,
                      fwc.FW_CFG_INITRD_ADDR: 0x9500}


def add_fw_cfg(t: Target, p: Profile) -> fwc.FwCfg:
    """`Firmware.attach`'s fw_cfg (pyhvm/machine/firmware.py): `build_fw_cfg`'s items for a
    machine with three drives and a display (RAM size, CPUs, e820, boot order, ...), the
    kinds a `--kernel` firmware boot and the VGA add (numbered kernel, setup, command line
    and initrd blobs; option ROM files), and one writable file (the machine has none yet,
    the model takes them). DMA goes through the target's checked memory."""
    dev = build_fw_cfg(t.memory, memory_size=t.memory.size,  # type: ignore[arg-type]
                       cpus=1, boot=FUZZ_BOOT, drive_indexes=[0, 2, 3],
                       graphics=True)
    data = {fwc.FW_CFG_KERNEL_DATA: FW_CFG_KERNEL_DATA, fwc.FW_CFG_SETUP_DATA: b"HdrS" * 128,
            fwc.FW_CFG_CMDLINE_DATA: b"console=ttyS0 scenario=hello\0",
            fwc.FW_CFG_INITRD_DATA: bytes(88)}
    size_of = {fwc.FW_CFG_KERNEL_SIZE: fwc.FW_CFG_KERNEL_DATA, fwc.FW_CFG_SETUP_SIZE:
               fwc.FW_CFG_SETUP_DATA, fwc.FW_CFG_CMDLINE_SIZE: fwc.FW_CFG_CMDLINE_DATA,
               fwc.FW_CFG_INITRD_SIZE: fwc.FW_CFG_INITRD_DATA}
    for key, blob in data.items():
        dev.add_bytes(key, blob)
    for key, of in size_of.items():
        dev.add_u32(key, len(data[of]))
    for key, where in FW_CFG_KERNEL_KEYS.items():
        dev.add_u32(key, where)
    dev.add_file("genroms/linuxboot_dma.bin", b"\x55\xaa\x03" + bytes(range(253)) * 6)
    dev.add_file("pci1234,1111.rom", b"\x55\xaa\x40" + bytes(0x7FFD))
    dev.add_file(templates.FW_CFG_WRITABLE, bytes(templates.FW_CFG_WRITABLE_SIZE),
                 writable=True, on_write=lambda offset, length: None)
    directory = [dev.file_key(name) for name in templates.FW_CFG_FILES]
    if directory != list(range(fwc.FW_CFG_FILE_FIRST, fwc.FW_CFG_FILE_FIRST + len(directory))):
        raise AssertionError("fw_cfg files differ from templates.FW_CFG_FILES")  # wiring bug
    t.pio.register(fwc.IO_PORT_BASE, fwc.IO_PORT_SIZE, dev.io_port, "fw_cfg")
    t.pio.register(fwc.DMA_PORT_BASE, fwc.DMA_PORT_SIZE, dev.dma_port, "fw_cfg-dma")
    t.roots["fw_cfg"] = dev
    sizes = _fw_cfg_sizes(dev)
    t.invariants.append(("fw_cfg", lambda: _check_fw_cfg(dev, sizes)))
    p.ports += [(fwc.IO_PORT_BASE, fwc.IO_PORT_SIZE), (fwc.DMA_PORT_BASE, fwc.DMA_PORT_SIZE)]
    p.templates += [templates.fw_cfg_probe, templates.fw_cfg_read, templates.fw_cfg_directory,
                    templates.fw_cfg_dma, templates.fw_cfg_dma, templates.fw_cfg_dma,
                    templates.fw_cfg_write, templates.fw_cfg_split_address]
    return dev


def _fw_cfg_sizes(dev: fwc.FwCfg) -> dict[int, int]:
    # The item table itself: `item()` copies, and the kernel blob is over a MiB.
    return {key: len(item.data) for key, item in dev._items.items()}  # noqa: SLF001


def _check_fw_cfg(dev: fwc.FwCfg, sizes: dict[int, int]) -> None:
    """No item changes size (writes stay inside writable items), the offset stays inside
    the selected item, and the registers are what a snapshot may hold."""
    if _fw_cfg_sizes(dev) != sizes:
        raise AssertionError("an fw_cfg item changed size")
    state = dev.state()
    dev.restore(state)  # refuses out-of-range registers
    selected = dev._lookup(state.key)  # noqa: SLF001
    if state.offset > (0 if selected is None else len(selected.data)):
        raise AssertionError(f"offset {state.offset} is past item {state.key:#x}")


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


def _pc(t: Target, p: Profile, bios: bool = False) -> None:
    """`Machine._wire_devices` with `--irqchip user`, a NIC, three drives and the std VGA:
    a direct `--kernel` boot, or with `bios` a firmware boot (`--bios`, see `_pc_bios`)."""
    pic = add_pic(t, p)
    add_pit(t, p, pic.line(0))
    add_uart(t, p, pic.line(4))
    add_debug_ports(t, p)
    port92 = add_port92(t, p)
    rtc = add_rtc(t, p, pic.line(8), firmware_cmos() if bios else None)
    chipset = add_chipset(t, p, isa_line=pic.line, ide_decode_at_reset=not bios)
    ide = add_ide(t, p, chipset, (pic.line(14), pic.line(15)))
    if bios:  # what SeaBIOS's IDE setup leaves: both channels' legacy ports decoding
        for channel in (0, 1):
            chipset.ide.config_write(IDETIM + 2 * channel, 2, IDETIM_DECODE_ENABLE)
    nic = add_nic(t, p, chipset.host,
                  chipset.router.line(NIC_PCI_DEVICE, INTA_PIN))
    vga = add_vga(t, p, chipset.host, text_mode=True)
    keyboard = add_i8042(t, p, pic.line(1), pic.line(12))
    fw_cfg = add_firmware(t, p, chipset) if bios else None
    uart, pit = t.roots["uart"], t.roots["pit"]

    def reset() -> None:  # Machine._reset, in its order
        t.memory.clear()
        uart.reset()  # type: ignore[attr-defined]
        rtc.reset()
        port92.reset()
        keyboard.reset()
        pic.reset()
        pit.reset()  # type: ignore[attr-defined]
        ide.reset()
        chipset.host.reset()
        if fw_cfg is None:  # without firmware the machine sets up what SeaBIOS would
            ide.firmware_setup()  # type: ignore[attr-defined]
        else:
            fw_cfg.reset()
        nic.reset()
        if fw_cfg is None:
            nic.firmware_setup()  # type: ignore[attr-defined]
            vga.firmware_setup()  # type: ignore[attr-defined]
        else:
            vga.reset()  # `VgaDisplay.reset` under firmware: SeaBIOS assigns the BARs

    t.on_reset = reset
    t.events["reset"] = Event("", t.request_reset)
    p.events["reset"] = lambda r: ()


def _pc_bios(t: Target, p: Profile) -> None:
    """The PC booted through firmware (`--bios`): the same devices, the IDE channels not
    decoding at reset, and what `Firmware.attach` adds (fw_cfg, the debug console, the PAM
    shadow window and the ROM below 4 GiB; the KVM memory slots behind them are not here).
    A program starts where SeaBIOS leaves the machine (BARs assigned, decoding on, the VGA
    in text mode); a reset leaves what the machine gives the firmware (nothing assigned),
    so programs that reset and then set the BARs up themselves explore what SeaBIOS does."""
    _pc(t, p, bios=True)


def firmware_cmos() -> dict[int, int]:
    """What `Firmware.cmos_bytes` adds to CMOS: boot order and the CPU count."""
    data = cmos_boot_bytes(FUZZ_BOOT.order)
    data[CMOS_SMP_COUNT] = 0
    return data


def add_firmware(t: Target, p: Profile, chipset: PcChipset) -> fwc.FwCfg:
    """`Firmware.attach`: fw_cfg, the debug console, the PAM shadow window over
    0xC0000-0xFFFFF (following the PAM registers) and the ROM's window below 4 GiB."""
    fw_cfg = add_fw_cfg(t, p)
    add_debugcon(t, p)
    host_bridge = chipset.host_bridge
    shadow = ShadowWindow(t.memory, FUZZ_ROM, host_bridge.pam_regions())  # type: ignore[arg-type]
    t.mmio.register(SHADOW_BASE, SHADOW_SIZE, shadow, "pam-shadow")
    t.mmio.register(FUZZ_ROM.base, FUZZ_ROM.size, RomWindow(FUZZ_ROM), "bios-rom")
    host_bridge.on_pam_change = lambda changed: shadow.update(host_bridge.pam_regions())
    t.roots["pam-shadow"] = shadow
    p.mmio += [(SHADOW_BASE, SHADOW_SIZE), (FUZZ_ROM.base, FUZZ_ROM.size)]
    p.templates.append(templates.pam_program)
    return fw_cfg


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
    "fw_cfg": lambda: _build("fw_cfg", add_fw_cfg),
    "pc": lambda: _build("pc", _pc),
    "pc-bios": lambda: _build("pc-bios", _pc_bios),
}
