"""Guest-controlled indices and addresses of PCI: mechanism #1's CONFIG_ADDRESS fields, the
base address registers (and how the machine maps what the guest programs: the NIC's BARs
through pyhvm/machine/nic.py, the VGA's through pyhvm/machine/display.py, the IDE's BAR4 as
the function reports it) and the PIIX3's PIRQ route registers, each at 0, its maximum,
maximum + 1 and 2^32 - 1 (or the field's full width). docs/security/guest-lengths.md lists
every value with the test that proves it.

Everything goes through the host's ports 0xCF8/0xCFC and the machine's buses, as a guest
reaches it; a BAR the guest puts somewhere impossible must leave the device not decoding
(one log line), never raise, and never unmap another device."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from pyhvm.bus import mmio_bus, pio_bus
from pyhvm.devices.pci import (CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT, PORT_WINDOW, PciHost)
from pyhvm.devices.pci_chipset import (PIRQRC, Piix3Ide, PciInterruptRouter, Piix3IsaBridge,
                                       build_pc_chipset)
from pyhvm.devices.rtl8139 import IDR0
from pyhvm.kvm import KvmError
from pyhvm.machine.display import LFB_SLOT, VgaConfig, VgaDisplay
from tests.fakes import FakeIrq
from tests.unit.test_rtl8139 import MAC
from tests.unit.test_rtl8139_nic import NicRig

U32_MAX = 0xFFFF_FFFF
MiB = 1 << 20


class Ports:
    """The host's two port windows on a port bus, as the machine maps them."""

    def __init__(self, host: PciHost) -> None:
        self.host = host
        self.bus = pio_bus()
        self.bus.register(CONFIG_ADDRESS_PORT, PORT_WINDOW, host.address_port, "pci-addr")
        self.bus.register(CONFIG_DATA_PORT, PORT_WINDOW, host.data_port, "pci-data")

    def address(self, value: int) -> None:
        self.bus.write(CONFIG_ADDRESS_PORT, 4, value)

    def config(self, bus: int, device: int, function: int, register: int) -> int:
        return 1 << 31 | bus << 16 | device << 11 | function << 8 | register

    def read(self, device: int, function: int, register: int, size: int = 4,
             bus: int = 0) -> int:
        self.address(self.config(bus, device, function, register & 0xFC))
        return self.bus.read(CONFIG_DATA_PORT + (register & 3), size)

    def write(self, device: int, function: int, register: int, size: int, value: int) -> None:
        self.address(self.config(0, device, function, register & 0xFC))
        self.bus.write(CONFIG_DATA_PORT + (register & 3), size, value)


def pc_ports() -> Ports:
    return Ports(build_pc_chipset(isa_line=lambda irq: FakeIrq()).host)


# -- CONFIG_ADDRESS: register (bits 7:2), function (3 bits), device (5), bus (8) ------------

@pytest.mark.parametrize("address,expect", [
    (0x8000_0000, 0x1237_8086),          # register 0 of 00.0: the i440FX's IDs
    (0x8000_00FC, 0),                    # register max (0xFC): the last dword, zero
    (0x8000_00FF, 0),                    # bits 1:0 are not register bits: still 0xFC
    (0x8001_0000, U32_MAX),              # bus 1 (no bridges): master abort
    (0x80FF_0000, U32_MAX),              # bus 0xFF
    (0x8000_F800, U32_MAX),              # device 31 (max), absent
    (0x8000_0900, 0x7010_8086),          # 01.1: PIIX3 IDE, a function of a multi-function device
    (0x8000_0F00, U32_MAX),              # function 7 (max) of 01: absent
    (0x8000_0100, U32_MAX),              # function 1 of 00, which is single-function
    (U32_MAX, U32_MAX),                  # 2^32-1: reserved bits dropped, bus 0xFF
])
def test_config_address_field_edges(address: int, expect: int) -> None:
    ports = pc_ports()
    ports.address(address)
    assert ports.bus.read(CONFIG_ADDRESS_PORT, 4) == address & 0x80FF_FFFC
    assert ports.bus.read(CONFIG_DATA_PORT, 4) == expect
    ports.bus.write(CONFIG_DATA_PORT, 4, U32_MAX)  # a write there changes nothing readable
    assert ports.bus.read(CONFIG_DATA_PORT, 4) == expect


def test_config_address_with_enable_clear_reaches_nothing() -> None:
    ports = pc_ports()
    ports.address(0x7FFF_FFFF)
    assert ports.bus.read(CONFIG_DATA_PORT, 4) == U32_MAX
    assert ports.bus.read(CONFIG_ADDRESS_PORT, 4) == 0x00FF_FFFC


def test_interrupt_line_is_stored_at_every_width_and_used_for_nothing() -> None:
    ports = pc_ports()
    for value in (0, 0xFF, 0x100, U32_MAX):
        ports.write(1, 1, 0x3C, 1, value & 0xFF)
        assert ports.read(1, 1, 0x3C, 1) == value & 0xFF
    assert ports.read(1, 1, 0x3D, 1) == 0  # the read-only pin beside it stays


# -- PIRQ route control (bits 3:0 an ISA IRQ number, bit 7 disables) ----------------------

@pytest.mark.parametrize("value,irq", [
    (0x00, None),      # 0: IRQ 0 is reserved (the timer): not routed
    (0x0F, 15),        # max: IRQ 15
    (0x10, None),      # max + 1: bit 4 is reserved, reads 0, so IRQ 0: not routed
    (0x0D, None),      # a reserved IRQ inside the range (13: the FPU)
    (0xFF, None),      # the full byte: bit 7 set, routing disabled
])
def test_pirq_route_edges(value: int, irq: int | None) -> None:
    lines: dict[int, FakeIrq] = {}
    isa = Piix3IsaBridge()
    router = PciInterruptRouter(isa, lambda n: lines.setdefault(n, FakeIrq()))
    isa.config_write(PIRQRC, 1, value)
    assert isa.config_read(PIRQRC, 1) == value & 0x8F
    router.line(1, 1).set_level(True)  # device 1 INTA: (1 + 1 - 2) % 4 = PIRQA
    assert isa.pirq_to_irq(0) == irq
    assert {n for n, line in lines.items() if line.level} == ({irq} if irq else set())


def test_pirq_registers_written_as_one_dword_of_ones() -> None:
    ports = pc_ports()
    ports.write(1, 0, PIRQRC, 4, U32_MAX)
    assert ports.read(1, 0, PIRQRC, 4) == 0x8F8F_8F8F


# -- the NIC's BARs through the machine (nic.py moves them on the buses) -------------------

class Dummy:
    def read(self, offset: int, size: int) -> int:
        return 0x5A

    def write(self, offset: int, size: int, value: int) -> None:
        pass


@pytest.mark.parametrize("value,decodes_at", [
    (0, None),               # 0: never assigned, not decoding
    (0xFF00, 0xFF00),        # max: the last 256-byte slot of the 64 KiB port space
    (0x10000, None),         # max + 1: beyond x86 port space, not decoding
    (U32_MAX, None),         # 2^32-1: the sizing pattern, not decoding
])
def test_nic_io_bar_edges(monkeypatch: pytest.MonkeyPatch, value: int,
                          decodes_at: int | None) -> None:
    rig = NicRig(monkeypatch)
    pio, function = rig.machine.buses.pio, rig.nic.function
    function.config_write(0x10, 4, value)
    if value == U32_MAX:
        assert function.config_read(0x10, 4) == 0xFFFF_FF01  # size 256, I/O
    mapped = [(m.base, m.name) for m in pio._mappings if m.name == "rtl8139"]
    assert mapped == ([(decodes_at, "rtl8139")] if decodes_at is not None else [])
    if decodes_at is not None:
        assert pio.read(decodes_at + IDR0, 1) == MAC[0]


def test_nic_io_bar_over_another_device_does_not_decode_and_unmaps_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rig = NicRig(monkeypatch)
    pio, function = rig.machine.buses.pio, rig.nic.function
    pio.register(0xD000, 0x100, Dummy(), "other")
    function.config_write(0x10, 4, 0xD000)  # on top of "other": refused, logged
    assert [m.name for m in pio._mappings] == ["other"]
    function.config_write(0x10, 4, 0xD100)  # moving away must not unmap "other"
    assert [m.name for m in pio._mappings] == ["other", "rtl8139"]
    assert pio.read(0xD000, 1) == 0x5A and pio.read(0xD100 + IDR0, 1) == MAC[0]


@pytest.mark.parametrize("value,decodes_at", [
    (0, None),                  # 0
    (0xFFFF_FE00, 0xFFFF_FE00), # max: the highest 256-byte slot that is not all ones
    (0xFFFF_FF00, None),        # the all-ones slot (what sizing leaves): not decoding
    (U32_MAX, None),            # 2^32-1: the sizing pattern
])
def test_nic_memory_bar_edges(monkeypatch: pytest.MonkeyPatch, value: int,
                              decodes_at: int | None) -> None:
    rig = NicRig(monkeypatch)
    mmio, function = rig.machine.buses.mmio, rig.nic.function
    function.config_write(0x14, 4, value)
    assert function.config_read(0x14, 4) == value & 0xFFFF_FF00
    mapped = [m.base for m in mmio._mappings if m.name == "rtl8139-mmio"]
    assert mapped == ([decodes_at] if decodes_at is not None else [])
    if decodes_at is not None:
        assert mmio.read(decodes_at + IDR0, 1) == MAC[0]


# -- the IDE function's BAR4 (16 bytes of I/O) ----------------------------------------------

@pytest.mark.parametrize("value,base", [(0, None), (0xFFF0, 0xFFF0), (0x10000, None),
                                        (U32_MAX, None)])
def test_ide_bar4_edges(value: int, base: int | None) -> None:
    moves: list[tuple[int, int | None, int | None]] = []
    ide = Piix3Ide(on_bar_change=lambda *move: moves.append(move))
    ide.config_write(0x04, 2, 0x0001)  # I/O decode on
    ide.config_write(0x20, 4, value)
    assert ide.bus_master_base == base
    assert moves == ([(4, None, base)] if base is not None else [])


# -- the VGA's BARs through the machine (display.py: a memslot, or the MMIO bus) -----------

class FakeVm:
    """Memslots as KVM keeps them: a slot overlapping RAM's is refused (EEXIST)."""

    def __init__(self, ram_top: int) -> None:
        self.ram_top = ram_top
        self.slots: dict[int, tuple[int, int]] = {}

    def set_user_memory_region(self, slot: int, gpa: int, size: int, host: int,
                               flags: int = 0) -> None:
        if size and gpa < self.ram_top:
            raise KvmError("KVM_SET_USER_MEMORY_REGION failed: File exists (errno 17)")
        if size:
            self.slots[slot] = (gpa, size)
        else:
            self.slots.pop(slot, None)

    def get_dirty_log(self, slot: int, pages: int) -> bytearray:
        return bytearray(((pages + 63) // 64) * 8)


def vga(placement: str) -> tuple[VgaDisplay, SimpleNamespace]:
    m = SimpleNamespace(vm=FakeVm(ram_top=64 * MiB),
                        chipset=SimpleNamespace(host=PciHost()),
                        buses=SimpleNamespace(pio=pio_bus(), mmio=mmio_bus()),
                        loop=SimpleNamespace(now_ns=lambda: 0), io_lock=threading.Lock())
    return VgaDisplay(m, VgaConfig("std", 1 * MiB, placement), font=bytes(8192)), m


@pytest.mark.parametrize("value,shared_at,trap_at", [
    (0, None, None),                          # 0: never assigned
    (0x0100_0000, None, 0x0100_0000),         # over guest RAM: KVM refuses the memslot
                                              # (logged); trapped, RAM's slot wins anyway
    (0xFFE0_0000, 0xFFE0_0000, 0xFFE0_0000),  # max: the highest slot that is not all ones
    (0xFFF0_0000, None, None),                # the all-ones 1 MiB slot: not decoding
    (U32_MAX, None, None),                    # 2^32-1: sizing
])
def test_vga_framebuffer_bar_edges(value: int, shared_at: int | None,
                                   trap_at: int | None) -> None:
    for placement, at in (("shared", shared_at), ("trap", trap_at)):
        display, m = vga(placement)
        display.function.config_write(0x10, 4, value)
        if placement == "shared":
            expected = {LFB_SLOT: (at, MiB)} if at is not None else {}
            assert {s: v for s, v in m.vm.slots.items() if s == LFB_SLOT} == expected
        mapped = [x.base for x in m.buses.mmio._mappings if x.name == "vga-lfb"]
        assert mapped == ([at] if placement == "trap" and at is not None else [])
        display.close()


@pytest.mark.parametrize("value,decodes_at", [(0, None), (0xFFFF_E000, 0xFFFF_E000),
                                              (0xFFFF_F000, None), (U32_MAX, None)])
def test_vga_register_bar_edges(value: int, decodes_at: int | None) -> None:
    display, m = vga("trap")
    display.function.config_write(0x18, 4, value)
    mapped = [x.base for x in m.buses.mmio._mappings if x.name == "vga-mmio"]
    assert mapped == ([decodes_at] if decodes_at is not None else [])
    display.close()
