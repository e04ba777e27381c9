"""Booting through firmware (SeaBIOS): ROM and shadow-RAM memory slots, fw_cfg, debug port.

What a PC gives its BIOS, and how pyhvm builds it with KVM:

    0x00000-0x9FFFF   RAM (one slot)
    0xA0000-0xBFFFF   the legacy VGA window: no slot, MMIO for a VGA device (or nothing)
    0xC0000-0xFFFFF   13 PAM segments of the i440FX (twelve 16 KiB, one 64 KiB at 0xF0000),
                      each RAM, read-only RAM, ROM or nothing as its PAM nibble says
    0x100000-...      the rest of low RAM (one slot), RAM above 4 GiB (its own slot)
    4 GiB - size      the ROM, read-only (KVM_MEM_READONLY); reset vector at 0xFFFFFFF0

The shadow RAM behind a PAM segment is the guest RAM buffer at that address (GuestMemory
region 0), so what the firmware copies there survives every remapping. The ROM behind the
segments is the ROM's last 128 KiB (0xE0000-0xFFFFF); 0xC0000-0xDFFFF have no ROM behind
them (reads float high), like a PCI bus with no expansion ROM decoding there.

A segment's four PAM states (82441FX datasheet, PAM registers) map to slots as follows;
`ShadowWindow` on the MMIO bus answers whatever a slot does not:

    RE WE   slot                        exits
    1  1    RAM, read-write             none
    1  0    RAM (see below)             none
    0  0    ROM, read-only (E/F segs)   writes: dropped; C/D segments: reads 0xFF
    0  1    none                        reads from the ROM (or 0xFF), writes to the RAM

Read-only shadow RAM (RE without WE, what SeaBIOS leaves over itself and the option ROMs)
is mapped writable, as QEMU maps it under KVM: KVM's instruction emulator cannot finish a
segment load whose descriptor lives in a read-only slot (the CPU sets the descriptor's
accessed bit; KVM retries the write forever instead of dropping it), and option ROMs keep
their GDTs there (QEMU's multiboot and linuxboot ROMs do). `RE_ONLY_SLOT_WRITABLE` says so;
the window still drops such writes if a segment is ever served by MMIO.

Host-side DMA (IDE, fw_cfg) into 0xC0000-0xFFFFF always reaches the shadow RAM, whatever
PAM says: a PC's DMA goes to DRAM there too only when the segment's write enable is set, a
difference no firmware we know of relies on.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from ..boot.firmware import (DEFAULT_BIOS, FirmwareError, KernelItems, Rom, is_linux_image,
                             linux_fw_cfg_items, load_rom, multiboot_fw_cfg_items)
from ..boot.image import read_file
from ..devices import fw_cfg as f
from ..devices.base import check_access_size
from ..devices.debugcon import SEABIOS_PORT, DebugCon, LineLog
from ..devices.pci_chipset import PAM_LAYOUT, PamRegion
from ..errors import HostError
from ..kvm import constants as kc
from ..memory import GuestMemory, HIGH_RAM_BASE, LOW_RAM_TOP

if TYPE_CHECKING:
    from ..kvm.vm import Vm
    from .pc import Machine

log = logging.getLogger("pyhvm.firmware")

FIRST_SLOT = 32  # the slots used here; GuestMemory numbers its own regions from 0
VGA_WINDOW_BASE = 0xA0000
SHADOW_BASE = 0xC0000
SHADOW_END = 0x100000
SHADOW_SIZE = SHADOW_END - SHADOW_BASE
FLOAT = 0xFF  # a byte nobody drives
E820_RAM = 1
E820_RESERVED = 2
E820_ENTRY = struct.Struct("<QQI")
# KVM's private pages on VMX hosts (the machine sets them there): firmware must keep off.
KVM_PRIVATE_BASE = 0xFEFFC000
KVM_PRIVATE_SIZE = 0x4000
BOOT_FAIL_WAIT_FOREVER = 0xFFFFFFFF  # QEMU's default reboot-timeout -1: never retry
CMOS_SMP_COUNT = 0x5F  # CPUs - 1 (QEMU/SeaBIOS convention)
BOOT_ORDER_LETTERS = {"a": 1, "c": 2, "d": 3, "n": 4}  # QEMU's -boot order= to CMOS codes

VGA_ROM = "vgabios-stdvga.bin"  # SeaVGABIOS for the std VGA (Debian package seabios)
VGA_VENDOR_ID, VGA_DEVICE_ID = 0x1234, 0x1111  # QEMU's std VGA, as pyhvm's VGA is

RE_ONLY_SLOT_WRITABLE = True  # see the module docstring: KVM and descriptors in ROM

# Backings a PAM segment can have.
RAM, RAM_READONLY, ROM, NOTHING = "ram", "ram-readonly", "rom", "none"


class FirmwareConfigError(HostError):
    """Bad --boot syntax and the like."""


@dataclass(frozen=True)
class BootOptions:
    """QEMU's `-boot order=cdn,menu=on|off,reboot-timeout=MS`, the subset pyhvm knows."""

    order: str = "c"
    menu: bool = False
    reboot_timeout_ms: int = -1


def parse_boot(spec: str | None) -> BootOptions:
    if not spec:
        return BootOptions()
    options: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            key, value = "order", item  # QEMU accepts a bare order string
        options[key] = value
    order = options.pop("order", "c")
    if not order or len(order) > 3 or any(c not in BOOT_ORDER_LETTERS for c in order):
        raise FirmwareConfigError(f"--boot {spec!r}: order is up to three of a, c, d, n")
    menu_text = options.pop("menu", "off")
    if menu_text not in ("on", "off"):
        raise FirmwareConfigError(f"--boot {spec!r}: menu=on or menu=off")
    try:
        timeout = int(options.pop("reboot-timeout", "-1"))
    except ValueError:
        raise FirmwareConfigError(f"--boot {spec!r}: reboot-timeout is milliseconds") from None
    if options:
        raise FirmwareConfigError(f"--boot {spec!r}: unknown option(s) {', '.join(options)}")
    if not -1 <= timeout <= 0xFFFF:
        raise FirmwareConfigError(f"--boot {spec!r}: reboot-timeout is -1 or 0-65535 ms")
    return BootOptions(order, menu_text == "on", timeout)


def cmos_boot_bytes(order: str, check_floppy_signature: bool = False) -> dict[int, int]:
    """CMOS 0x3D and 0x38 as QEMU sets them for SeaBIOS: boot devices by priority."""
    codes = [BOOT_ORDER_LETTERS[c] for c in order] + [0, 0, 0]
    return {0x3D: codes[1] << 4 | codes[0],
            0x38: codes[2] << 4 | (0 if check_floppy_signature else 1)}


def segment_backing(region: PamRegion, rom: Rom) -> str:
    """Which kind of slot serves a PAM segment in its current state (see the module doc)."""
    if region.read_dram:
        return RAM if region.write_dram else RAM_READONLY
    if region.write_dram:
        return NOTHING  # reads from ROM, writes to RAM: only the window can split them
    if region.base >= rom.isa_base:
        return ROM
    return NOTHING


def e820_table(memory_size: int) -> bytes:
    """`etc/e820` for SeaBIOS: RAM below the PCI hole, RAM above 4 GiB, KVM's pages."""
    low = min(memory_size, LOW_RAM_TOP)
    entries = [(0, low, E820_RAM)]
    if memory_size > low:
        entries.append((HIGH_RAM_BASE, memory_size - low, E820_RAM))
    entries.append((KVM_PRIVATE_BASE, KVM_PRIVATE_SIZE, E820_RESERVED))
    return b"".join(E820_ENTRY.pack(*entry) for entry in entries)


def ide_bootorder(drive_indexes: list[int]) -> bytes:
    """`bootorder` naming the IDE disks (OpenFirmware paths as QEMU writes them)."""
    lines = [f"/pci@i0cf8/ide@1,1/drive@{index // 2}/disk@{index % 2}"
             for index in sorted(drive_indexes)]
    return "".join(line + "\n" for line in lines).encode() + b"\0" if lines else b""


class ShadowWindow:
    """0xC0000-0xFFFFF on the MMIO bus: answers the accesses no memory slot takes.

    Reads of a segment in DRAM come from the shadow RAM, else from the ROM's ISA window (or
    float high where there is no ROM); writes go to the shadow RAM only when the segment's
    write enable is set, and are dropped (and counted) otherwise.
    """

    def __init__(self, memory: GuestMemory, rom: Rom,
                 regions: tuple[PamRegion, ...]) -> None:
        self._memory = memory
        self._rom = rom.isa_window
        self._rom_base = rom.isa_base
        self.dropped_writes = 0
        self.update(regions)

    def update(self, regions: tuple[PamRegion, ...]) -> None:
        self._segments = sorted(regions, key=lambda r: r.base)

    def _segment(self, address: int) -> PamRegion:
        for region in self._segments:
            if region.base <= address < region.base + region.size:
                return region
        raise AssertionError(f"{address:#x} is outside the PAM segments")  # a wiring bug

    def read(self, offset: int, size: int) -> int:
        check_access_size(size)
        value = 0
        for lane in range(size):
            value |= self._read_byte(SHADOW_BASE + offset + lane) << (8 * lane)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        check_access_size(size)
        for lane in range(size):
            self._write_byte(SHADOW_BASE + offset + lane, (value >> (8 * lane)) & 0xFF)

    def _read_byte(self, address: int) -> int:
        if address >= SHADOW_END:
            return FLOAT
        if self._segment(address).read_dram:
            return self._memory.read(address, 1)[0]
        if address >= self._rom_base:
            return self._rom[address - self._rom_base]
        return FLOAT

    def _write_byte(self, address: int, byte: int) -> None:
        if address < SHADOW_END and self._segment(address).write_dram:
            self._memory.write(address, bytes([byte]))
        else:
            self.dropped_writes += 1


class RomWindow:
    """The ROM's range below 4 GiB on the MMIO bus: writes (the slot is read-only) dropped."""

    def __init__(self, rom: Rom) -> None:
        self._data = rom.data
        self.dropped_writes = 0

    def read(self, offset: int, size: int) -> int:
        check_access_size(size)
        chunk = self._data[offset:offset + size] if 0 <= offset < len(self._data) else b""
        return int.from_bytes(chunk.ljust(size, b"\xff"), "little")

    def write(self, offset: int, size: int, value: int) -> None:
        check_access_size(size)
        self.dropped_writes += 1


class FirmwareMemory:
    """The KVM slots of the first MiB and the ROM, kept in step with the PAM registers."""

    def __init__(self, vm: "Vm", memory: GuestMemory, rom: Rom) -> None:
        if not memory.regions or memory.regions[0].gpa != 0 or \
                memory.regions[0].size < 2 << 20:
            raise HostError("firmware needs at least 2 MiB of RAM starting at 0")
        self._vm = vm
        self._memory = memory
        self._rom = rom
        self._low = memory.regions[0]
        self._rom_buffer = mmap.mmap(-1, rom.size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                                     mmap.PROT_READ | mmap.PROT_WRITE)
        self._rom_buffer[:] = rom.data
        anchor = ctypes.c_char.from_buffer(self._rom_buffer)
        self._rom_address = ctypes.addressof(anchor)
        del anchor
        self._segment_slots = {base: FIRST_SLOT + 3 + i
                               for i, (_, _, base, _) in enumerate(PAM_LAYOUT)}
        self._backing: dict[int, str] = {}
        self.remaps = 0

    def map(self, regions: tuple[PamRegion, ...]) -> None:
        """Register every slot: RAM around the first MiB, other RAM regions, ROM, segments."""
        vm, low = self._vm, self._low
        vm.set_user_memory_region(FIRST_SLOT, 0, VGA_WINDOW_BASE, low.host_address)
        vm.set_user_memory_region(FIRST_SLOT + 1, SHADOW_END, low.size - SHADOW_END,
                                  low.host_address + SHADOW_END)
        for region in self._memory.regions[1:]:
            vm.set_user_memory_region(region.slot, region.gpa, region.size,
                                      region.host_address)
        vm.set_user_memory_region(FIRST_SLOT + 2, self._rom.base, self._rom.size,
                                  self._rom_address, kc.KVM_MEM_READONLY)
        self._backing = {}
        self.pam_changed(regions)

    def pam_changed(self, changed: tuple[PamRegion, ...]) -> None:
        """Remap the segments whose backing changed (delete, then create: KVM cannot change
        a slot's flags or host address in place)."""
        for region in changed:
            backing = segment_backing(region, self._rom)
            if self._backing.get(region.base) == backing:
                continue
            slot = self._segment_slots[region.base]
            if region.base in self._backing and self._backing[region.base] != NOTHING:
                self._vm.set_user_memory_region(slot, region.base, 0, 0)
            self._backing[region.base] = backing
            self.remaps += 1
            if backing in (RAM, RAM_READONLY):
                read_only = backing == RAM_READONLY and not RE_ONLY_SLOT_WRITABLE
                flags = kc.KVM_MEM_READONLY if read_only else 0
                self._vm.set_user_memory_region(slot, region.base, region.size,
                                                self._low.host_address + region.base, flags)
            elif backing == ROM:
                offset = self._rom.size - (SHADOW_END - region.base)
                self._vm.set_user_memory_region(slot, region.base, region.size,
                                                self._rom_address + offset,
                                                kc.KVM_MEM_READONLY)
            log.debug("PAM: %#07x-%#07x now %s", region.base, region.base + region.size - 1,
                      backing)

    def backing(self, base: int) -> str | None:
        return self._backing.get(base)

    def close(self) -> None:
        """After the VM is closed (its slots still point here until then)."""
        self._rom_buffer.close()


def build_fw_cfg(memory: GuestMemory, *, memory_size: int, cpus: int, boot: BootOptions,
                 drive_indexes: list[int], graphics: bool, kernel: str | None = None,
                 append: str = "", initrd: str | None = None,
                 modules: list[str] | None = None,
                 kernel_limit: int = 256 << 20) -> f.FwCfg:
    """The fw_cfg items QEMU's PC gives SeaBIOS, for this machine."""
    dev = f.FwCfg(memory)
    dev.add_u64(f.FW_CFG_RAM_SIZE, memory_size)
    dev.add_u16(f.FW_CFG_NOGRAPHIC, 0 if graphics else 1)  # no display: SeaBIOS uses COM1
    dev.add_u16(f.FW_CFG_NB_CPUS, cpus)
    dev.add_u16(f.FW_CFG_MAX_CPUS, cpus)
    dev.add_u16(f.FW_CFG_BOOT_MENU, 1 if boot.menu else 0)
    dev.add_bytes(f.FW_CFG_UUID, bytes(16))
    dev.add_u64(f.FW_CFG_NUMA, 0)
    dev.add_u32(f.FW_CFG_IRQ0_OVERRIDE, 1)  # the PIT's IRQ 0 reaches IOAPIC pin 2
    dev.add_file("etc/e820", e820_table(memory_size))
    dev.add_file("etc/boot-fail-wait",
                 struct.pack("<I", boot.reboot_timeout_ms & 0xFFFFFFFF))
    order = ide_bootorder(drive_indexes) if boot.order.startswith("c") else b""
    if kernel is not None:
        items = kernel_items(kernel, append, initrd, modules or [],
                             min(memory_size, LOW_RAM_TOP), kernel_limit)
        for key, data in items.keys.items():
            dev.add_bytes(key, data)
        for name, data in items.files.items():
            dev.add_file(name, data)
        # The option ROM that boots it comes first, as on QEMU.
        roms = "".join(f"/rom@{name}\n" for name in items.files).encode()
        order = roms + order.rstrip(b"\0") + b"\0"
    if order:
        dev.add_file("bootorder", order)
    return dev


def kernel_items(kernel: str, append: str, initrd: str | None, modules: list[str],
                 low_ram: int, limit: int) -> KernelItems:
    """A bzImage for linuxboot_dma.bin, or a Multiboot kernel for multiboot_dma.bin."""
    image = read_file(kernel, "kernel", limit)
    if not image:
        raise FirmwareError(f"--kernel {kernel!r} is empty")
    initrd_data = read_file(initrd, "initrd", limit) if initrd else None
    if is_linux_image(image):
        if modules:
            raise FirmwareError("modules are a Multiboot feature; a Linux kernel takes "
                                "--initrd")
        return linux_fw_cfg_items(image, append, initrd_data, low_ram)
    loaded = [(read_file(spec.split(" ", 1)[0], "module", limit), spec) for spec in modules]
    if initrd_data is not None:  # like QEMU, the first module
        loaded.insert(0, (initrd_data, initrd or "initrd"))
    return multiboot_fw_cfg_items(image, kernel, append, loaded, low_ram)


class Firmware:
    """Everything a firmware boot adds to the machine, in the order the machine needs it:
    `open` (checks the ROM before any KVM work), `map_memory` (instead of one slot per RAM
    region), `attach` (devices and the PAM hook, once the chipset exists), `reset`, `close`.
    """

    def __init__(self, rom: Rom, boot: BootOptions, debugcon: str | None) -> None:
        self.rom = rom
        self.boot = boot
        self.debugcon_spec = debugcon
        self.memory_map: FirmwareMemory | None = None
        self.fw_cfg: f.FwCfg | None = None
        self.shadow: ShadowWindow | None = None
        self._debug_file: BinaryIO | None = None
        self._debug_log: LineLog | None = None

    @classmethod
    def open(cls, bios: str, boot: str | None = None,
             debugcon: str | None = None) -> "Firmware":
        if debugcon not in (None, "none", "stdio") and not debugcon.startswith("file:"):
            raise FirmwareConfigError(f"--debugcon {debugcon!r}: use file:PATH, stdio or none")
        return cls(load_rom(bios), parse_boot(boot), debugcon)

    def cmos_bytes(self, cpus: int) -> dict[int, int]:
        """What QEMU adds to CMOS for SeaBIOS: boot order and the CPU count."""
        data = cmos_boot_bytes(self.boot.order)
        data[CMOS_SMP_COUNT] = max(cpus - 1, 0)
        return data

    def map_memory(self, vm: "Vm", memory: GuestMemory, pam: tuple[PamRegion, ...]) -> None:
        self.memory_map = FirmwareMemory(vm, memory, self.rom)
        self.memory_map.map(pam)

    def attach(self, machine: "Machine") -> None:
        """fw_cfg, the debug console, the MMIO windows, and PAM changes remapping slots."""
        config = machine.config
        assert self.memory_map is not None
        cpus = config.cpus if config.irqchip == "kernel" else 1  # no LAPIC: no APs to start
        if cpus != config.cpus:
            log.warning("--irqchip user has no local APIC: the firmware sees one CPU")
        self.fw_cfg = build_fw_cfg(
            machine.memory, memory_size=config.memory, cpus=cpus, boot=self.boot,
            drive_indexes=[d.index for d in config.drives],
            graphics=bool(getattr(config, "displays", None)),
            kernel=config.kernel, append=config.append, initrd=config.initrd,
            modules=list(config.modules))
        if getattr(machine, "vga", None) is not None:
            self._add_vga_rom(self.fw_cfg)
        pio, mmio = machine.buses.pio, machine.buses.mmio
        pio.register(f.IO_PORT_BASE, f.IO_PORT_SIZE, self.fw_cfg.io_port, "fw_cfg")
        pio.register(f.DMA_PORT_BASE, f.DMA_PORT_SIZE, self.fw_cfg.dma_port, "fw_cfg-dma")
        sink = self._debug_sink()
        if sink is not None:
            pio.register(SEABIOS_PORT, 1, DebugCon(sink), "debugcon")
        host_bridge = machine.chipset.host_bridge
        self.shadow = ShadowWindow(machine.memory, self.rom, host_bridge.pam_regions())
        mmio.register(SHADOW_BASE, SHADOW_SIZE, self.shadow, "pam-shadow")
        mmio.register(self.rom.base, self.rom.size, RomWindow(self.rom), "bios-rom")
        memory_map, shadow = self.memory_map, self.shadow

        def pam_changed(changed: tuple[PamRegion, ...]) -> None:
            shadow.update(host_bridge.pam_regions())
            memory_map.pam_changed(changed)

        host_bridge.on_pam_change = pam_changed

    @staticmethod
    def _add_vga_rom(dev: f.FwCfg) -> None:
        """The std VGA's BIOS as `pci1234,1111.rom`: SeaBIOS runs a file of that name as the
        PCI device's own option ROM (optionroms.c init_pcirom), so the VGA BIOS learns its
        device's address, as with a ROM BAR, without one."""
        path = os.path.join(os.path.dirname(DEFAULT_BIOS), VGA_ROM)
        if not os.path.isfile(path):
            log.warning("no %s (apt-get install seabios): the VGA stays blank", path)
            return
        dev.add_file(f"pci{VGA_VENDOR_ID:04x},{VGA_DEVICE_ID:04x}.rom",
                     read_file(path, "VGA BIOS", 1 << 20))

    def _debug_sink(self) -> "Callable[[bytes], None] | None":
        spec = self.debugcon_spec
        if spec is None:
            if not logging.getLogger("pyhvm").isEnabledFor(logging.DEBUG):
                return None  # SeaBIOS reads 0xFF there and keeps quiet, as on QEMU
            self._debug_log = LineLog(lambda line: log.debug("firmware: %s", line))
            return self._debug_log
        if spec == "none":
            return None
        if spec == "stdio":
            return _write_stderr
        path = spec[len("file:"):]
        try:
            debug_file = self._debug_file = open(path, "wb", buffering=0)
        except OSError as err:
            raise FirmwareConfigError(f"--debugcon {spec!r}: {err.strerror}") from None

        def write(data: bytes) -> None:
            debug_file.write(data)
        return write

    def reset(self) -> None:
        """A reboot: fw_cfg back to its reset state (PAM follows the chipset's reset)."""
        if self.fw_cfg is not None:
            self.fw_cfg.reset()

    def close(self) -> None:
        """After the VM is closed."""
        if self._debug_log is not None:
            self._debug_log.flush()
        if self._debug_file is not None:
            self._debug_file.close()
        if self.memory_map is not None:
            self.memory_map.close()


def _write_stderr(data: bytes) -> None:
    sys.stderr.buffer.write(data)
    sys.stderr.buffer.flush()


__all__ = ["BootOptions", "Firmware", "FirmwareMemory", "RomWindow", "ShadowWindow", "build_fw_cfg",
           "cmos_boot_bytes", "e820_table", "parse_boot", "segment_backing"]
