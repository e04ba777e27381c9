"""The i440FX/PIIX3 functions as a guest enumerates and programs them through 0xCF8/0xCFC.

Sections cite the Intel 82441FX PMC datasheet (PAM, SMRAM), the 82371SB PIIX3 datasheet
(PIRQ route control, IDE timing, BMIBA) and the PCI Local Bus Specification 3.0.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhvm.devices.pci import (
    COMMAND,
    COMMAND_INTX_DISABLE,
    COMMAND_IO,
    CONFIG_DATA_PORT,
    INTA,
    INTB,
    INTD,
    STATUS,
    STATUS_INTERRUPT,
    PciFunction,
)
from pyhvm.devices.pci_chipset import (
    IDETIM,
    PAM0,
    PIRQRC,
    SIDETIM,
    SMRAM,
    SMRAM_D_LCK,
    SMRAM_D_OPEN,
    SMRAM_G_SMRAME,
    PamRegion,
    PcChipset,
    build_pc_chipset,
    pirq_for,
)
from tests.fakes import FakeIrq
from tests.unit.test_pci import Board


class IsaIrqs:
    """ISA IRQ lines 0-15 as FakeIrqs, handed out like an irqchip's `line(irq)`."""

    def __init__(self) -> None:
        self.lines = {irq: FakeIrq() for irq in range(16)}
        self.asked: list[int] = []

    def __call__(self, irq: int) -> FakeIrq:
        self.asked.append(irq)
        return self.lines[irq]

    def high(self) -> set[int]:
        return {irq for irq, line in self.lines.items() if line.level}


class Pc:
    def __init__(self, **kwargs: object) -> None:
        self.irqs = IsaIrqs()
        self.resets: list[bool] = []
        self.chipset: PcChipset = build_pc_chipset(self.irqs, self.resets.append,
                                                   **kwargs)  # type: ignore[arg-type]
        self.board = Board(self.chipset.host)

    def read(self, device: int, function: int, register: int, size: int) -> int:
        return self.board.read(device, function, register, size)

    def write(self, device: int, function: int, register: int, size: int, value: int) -> None:
        self.board.write(device, function, register, size, value)


@pytest.fixture
def pc() -> Pc:
    return Pc()


# -- enumeration (PCI 3.0 section 6.2.1; the datasheets' ID registers) ---------------------

def test_bus_scan_finds_exactly_host_bridge_isa_bridge_and_ide(pc: Pc) -> None:
    found = {}
    for device in range(32):
        if pc.read(device, 0, 0x00, 2) == 0xFFFF:
            continue
        functions = range(8) if pc.read(device, 0, 0x0E, 1) & 0x80 else range(1)
        for function in functions:
            ids = pc.read(device, function, 0x00, 4)
            if ids & 0xFFFF != 0xFFFF:
                found[(device, function)] = (ids, pc.read(device, function, 0x08, 4))
    assert found == {
        (0, 0): (0x12378086, 0x06000002),  # 82441FX, host bridge, revision 2
        (1, 0): (0x70008086, 0x06010000),  # PIIX3 ISA bridge
        (1, 1): (0x70108086, 0x01018000),  # PIIX3 IDE, prog-if 0x80
    }
    assert pc.read(0, 0, 0x0E, 1) == 0x00 and pc.read(1, 0, 0x0E, 1) == 0x80


def test_reset_values_of_command_and_status(pc: Pc) -> None:
    assert pc.read(0, 0, COMMAND, 4) == 0x02800006
    assert pc.read(1, 0, COMMAND, 4) == 0x02000007
    assert pc.read(1, 1, COMMAND, 4) == 0x02800000


def test_chipset_decode_enables_are_hardwired(pc: Pc) -> None:
    pc.write(0, 0, COMMAND, 2, 0)
    pc.write(1, 0, COMMAND, 2, 0)
    assert pc.read(0, 0, COMMAND, 2) == 0x0006
    assert pc.read(1, 0, COMMAND, 2) == 0x0007


# -- i440FX PAM and SMRAM (82441FX PAM0-6, SMRAM) ---------------------------------------------

def test_pam_registers_store_only_read_and_write_enable_bits(pc: Pc) -> None:
    pc.write(0, 0, PAM0, 1, 0xFF)
    pc.write(0, 0, PAM0 + 1, 2, 0xFFFF)  # PAM1-2 at 0x5A (lanes 2-3 of 0x58)
    pc.write(0, 0, PAM0 + 3, 4, 0xFFFFFFFF)  # PAM3-6 at 0x5C
    assert pc.read(0, 0, PAM0, 1) == 0x30
    assert pc.read(0, 0, PAM0 + 1, 2) == 0x3333
    assert pc.read(0, 0, PAM0 + 3, 4) == 0x33333333


def test_pam_change_reports_the_segments_that_changed() -> None:
    pc = Pc()
    seen: list[tuple[PamRegion, ...]] = []
    pc.chipset.host_bridge.on_pam_change = seen.append
    pc.write(0, 0, PAM0, 1, 0x30)  # BIOS segment: reads and writes to DRAM
    pc.write(0, 0, PAM0 + 1, 1, 0x10)  # 0xC4000 read from DRAM, 0xC0000 unchanged
    pc.write(0, 0, PAM0 + 1, 1, 0x10)  # same value: no report
    assert seen == [(PamRegion(0xF0000, 0x10000, True, True),),
                    (PamRegion(0xC4000, 0x4000, True, False),)]
    regions = pc.chipset.host_bridge.pam_regions()
    assert len(regions) == 13 and regions[0].base == 0xC0000 and regions[-1].base == 0xF0000


def test_smram_lock_closes_d_open_until_reset(pc: Pc) -> None:
    assert pc.read(0, 0, SMRAM, 1) == 0x02  # C_BASE_SEG = 010b
    pc.write(0, 0, SMRAM, 1, 0xFF)
    assert pc.read(0, 0, SMRAM, 1) == 0x3A  # D_LCK set clears D_OPEN; bit 7, 2:0 fixed
    pc.write(0, 0, SMRAM, 1, SMRAM_D_OPEN | SMRAM_G_SMRAME)
    assert pc.read(0, 0, SMRAM, 1) == 0x02 | SMRAM_D_LCK | SMRAM_G_SMRAME
    pc.chipset.host.reset()
    pc.write(0, 0, SMRAM, 1, SMRAM_D_OPEN | SMRAM_G_SMRAME)
    assert pc.read(0, 0, SMRAM, 1) == 0x02 | SMRAM_D_OPEN | SMRAM_G_SMRAME


# -- PIIX3 PIRQ route control (82371SB PIRQRC[A:D], 0x60-0x63) -----------------------------

def test_pirq_route_registers_reset_disabled_and_keep_bits_7_and_3_0(pc: Pc) -> None:
    assert pc.read(1, 0, PIRQRC, 4) == 0x80808080
    pc.write(1, 0, PIRQRC, 4, 0xFFFFFFFF)
    assert pc.read(1, 0, PIRQRC, 4) == 0x8F8F8F8F
    assert [pc.chipset.isa_bridge.pirq_to_irq(p) for p in range(4)] == [None] * 4


@pytest.mark.parametrize("value,irq", [(0x0B, 11), (0x03, 3), (0x0F, 15), (0x09, 9),
                                       (0x8B, None), (0x00, None), (0x02, None),
                                       (0x08, None), (0x0D, None)])
def test_pirq_to_irq_honours_disable_bit_and_reserved_values(pc: Pc, value: int,
                                                             irq: int | None) -> None:
    pc.write(1, 0, PIRQRC + 2, 1, value)
    assert pc.chipset.isa_bridge.pirq_to_irq(2) == irq


def test_swizzle_rotates_pins_by_device_with_slot_one_inta_on_pirqa() -> None:
    assert pirq_for(1, INTA) == 0
    assert [pirq_for(2, pin) for pin in range(1, 5)] == [1, 2, 3, 0]
    assert [pirq_for(device, INTA) for device in range(6)] == [3, 0, 1, 2, 3, 0]
    assert pirq_for(3, INTD) == 1
    with pytest.raises(ValueError):
        pirq_for(1, 0)


def test_route_intx_follows_the_registers(pc: Pc) -> None:
    pc.write(1, 0, PIRQRC, 4, 0x0B0B0A0A)  # A, B -> 10; C, D -> 11
    isa = pc.chipset.isa_bridge
    assert isa.route_intx(3, INTA) == 11  # PIRQC
    assert isa.route_intx(3, INTB) == 11  # PIRQD
    assert isa.route_intx(3, 3) == 10  # PIRQA


# -- interrupt routing ---------------------------------------------------------------------

def test_asserted_line_reaches_its_irq_only_once_routed(pc: Pc) -> None:
    line = pc.chipset.router.line(2, INTA)  # PIRQB
    line.set_level(True)
    assert pc.irqs.high() == set()
    pc.write(1, 0, PIRQRC + 1, 1, 0x0A)
    assert pc.irqs.high() == {10}
    line.set_level(False)
    assert pc.irqs.high() == set()
    assert pc.irqs.lines[10].changes == [True, False]


def test_shared_irq_is_the_or_of_its_sources(pc: Pc) -> None:
    pc.write(1, 0, PIRQRC, 4, 0x0B0B0B0B)
    a = pc.chipset.router.line(2, INTA)
    b = pc.chipset.router.line(3, INTA)  # another PIRQ, same IRQ
    c = pc.chipset.router.line(2, INTA)  # another function of device 2 on the same pin
    a.set_level(True)
    b.set_level(True)
    c.set_level(True)
    a.set_level(False)
    c.set_level(False)
    assert pc.irqs.high() == {11}
    b.set_level(False)
    assert pc.irqs.lines[11].changes == [True, False]


def test_rerouting_while_asserted_moves_the_level(pc: Pc) -> None:
    pc.write(1, 0, PIRQRC, 1, 0x0A)
    line = pc.chipset.router.line(1, INTA)  # PIRQA
    line.set_level(True)
    pc.write(1, 0, PIRQRC, 1, 0x0B)
    assert pc.irqs.high() == {11}
    assert pc.irqs.lines[10].changes == [True, False]
    pc.write(1, 0, PIRQRC, 1, 0x8B)  # routing disabled: the level goes nowhere
    assert pc.irqs.high() == set()
    pc.write(1, 0, PIRQRC, 1, 0x0B)
    assert pc.irqs.high() == {11}


def test_rerouting_keeps_an_irq_high_that_another_source_still_holds(pc: Pc) -> None:
    pc.write(1, 0, PIRQRC, 4, 0x0A0A0A0A)
    first = pc.chipset.router.line(1, INTA)  # PIRQA
    second = pc.chipset.router.line(2, INTA)  # PIRQB
    first.set_level(True)
    second.set_level(True)
    pc.write(1, 0, PIRQRC, 1, 0x05)
    assert pc.irqs.high() == {5, 10}
    assert pc.irqs.lines[10].changes == [True]


def test_function_intx_disable_drops_the_routed_irq(pc: Pc) -> None:
    pc.write(1, 0, PIRQRC + 1, 1, 0x09)
    nic = PciFunction(0x10EC, 0x8139, 0x020000, interrupt_pin=INTA)
    pc.chipset.host.attach(2, 0, nic)
    nic.connect_intx(pc.chipset.router.line(2, nic.interrupt_pin))
    nic.irq.set_level(True)
    assert pc.irqs.high() == {9}
    pc.write(2, 0, COMMAND, 2, COMMAND_INTX_DISABLE)
    assert pc.irqs.high() == set()
    assert pc.read(2, 0, STATUS, 2) & STATUS_INTERRUPT


def test_isa_lines_are_fetched_only_for_irqs_in_use(pc: Pc) -> None:
    pc.write(1, 0, PIRQRC, 4, 0x0F0E0C0B)
    pc.chipset.router.line(1, INTA).set_level(True)
    assert pc.irqs.asked == [11]


# -- PIIX3 IDE (82371SB IDE function: BMIBA, IDETIM) ---------------------------------------

def test_ide_bar4_is_a_16_byte_io_bar(pc: Pc) -> None:
    assert pc.read(1, 1, 0x20, 4) == 0x00000001
    pc.write(1, 1, 0x20, 4, 0xFFFFFFFF)
    assert pc.read(1, 1, 0x20, 4) == 0xFFFFFFF1
    pc.write(1, 1, 0x20, 4, 0xC000)
    assert pc.chipset.ide.bus_master_base is None
    pc.write(1, 1, COMMAND, 2, 0xFFFF)
    assert pc.read(1, 1, COMMAND, 2) == 0x0005  # I/O space and bus master only
    assert pc.chipset.ide.bus_master_base == 0xC000
    assert pc.chipset.ide.bus_master_enabled


def test_ide_bar_moves_reach_the_callback() -> None:
    pc = Pc()
    moves: list[tuple[int, int | None, int | None]] = []
    pc.chipset.ide.on_bar_change = lambda *args: moves.append(args)
    pc.write(1, 1, 0x20, 4, 0xC040)
    pc.write(1, 1, COMMAND, 2, COMMAND_IO)
    assert moves == [(4, None, 0xC040)]


def test_ide_legacy_decode_needs_io_enable_and_idetim_bit_15() -> None:
    pc = Pc()
    changes: list[tuple[int, bool]] = []
    ide = pc.chipset.ide
    ide.on_decode_change = lambda channel, on: changes.append((channel, on))
    pc.write(1, 1, IDETIM, 4, 0xFFFFFFFF)
    assert pc.read(1, 1, IDETIM, 4) == 0xF3FFF3FF
    assert changes == [] and not ide.legacy_decode_enabled(0)
    pc.write(1, 1, COMMAND, 2, COMMAND_IO)
    assert changes == [(0, True), (1, True)]
    pc.write(1, 1, IDETIM + 2, 2, 0x0000)
    assert changes[2:] == [(1, False)]
    pc.write(1, 1, SIDETIM, 1, 0xA5)
    assert pc.read(1, 1, SIDETIM, 1) == 0xA5


def test_ide_decode_at_reset_models_what_a_bios_leaves() -> None:
    pc = Pc(ide_decode_at_reset=True)
    assert pc.read(1, 1, IDETIM, 4) == 0x80008000
    pc.write(1, 1, COMMAND, 2, COMMAND_IO)
    assert pc.chipset.ide.legacy_decode_enabled(1)


# -- reset and snapshots -------------------------------------------------------------------

def test_chipset_reset_restores_routing_and_lowers_routed_irqs(pc: Pc) -> None:
    pc.write(1, 0, PIRQRC, 1, 0x0A)
    pc.chipset.router.line(1, INTA).set_level(True)
    pc.chipset.host.reset()
    assert pc.read(1, 0, PIRQRC, 4) == 0x80808080
    assert pc.irqs.high() == set()


def test_snapshot_restore_reroutes_asserted_lines(pc: Pc) -> None:
    pc.write(1, 0, PIRQRC, 1, 0x0A)
    pc.write(0, 0, PAM0, 1, 0x10)
    pc.chipset.router.line(1, INTA).set_level(True)
    saved = {name: getattr(pc.chipset, name).state()
             for name in ("host_bridge", "isa_bridge", "ide")}
    other = Pc()
    other.chipset.router.line(1, INTA).set_level(True)
    for name, state in saved.items():
        getattr(other.chipset, name).restore(state)
    assert other.irqs.high() == {10}
    assert other.chipset.host_bridge.pam_regions()[-1].read_dram


def test_restore_refuses_a_locked_smram_with_d_open() -> None:
    bridge = Pc().chipset.host_bridge
    config = bytearray(bridge.state().config)
    config[SMRAM] |= SMRAM_D_LCK | SMRAM_D_OPEN
    with pytest.raises(ValueError, match="D_OPEN"):
        bridge.restore(type(bridge.state())(config=bytes(config)))


# -- anything the guest does ---------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([(0, 0), (1, 0), (1, 1), (1, 2), (2, 0)]),
                          st.integers(0, 255), st.sampled_from([1, 2, 4]),
                          st.integers(0, 0xFFFFFFFF), st.booleans()), max_size=60))
def test_random_config_traffic_never_raises_nor_changes_read_only_bits(
        ops: list[tuple[tuple[int, int], int, int, int, bool]]) -> None:
    pc = Pc()
    line = pc.chipset.router.line(2, INTA)
    functions = {(0, 0): pc.chipset.host_bridge, (1, 0): pc.chipset.isa_bridge,
                 (1, 1): pc.chipset.ide}
    before = {key: fn.state().config for key, fn in functions.items()}
    for (device, function), register, size, value, level in ops:
        register -= register % size
        line.set_level(level)
        pc.write(device, function, register, size, value & ((1 << (8 * size)) - 1))
        read = pc.read(device, function, register, size)
        assert 0 <= read < 1 << (8 * size)
        pc.board.select(device, function, register)
        assert 0 <= pc.board.bus.read(CONFIG_DATA_PORT + (register & 3), 1) <= 0xFF
    for key, fn in functions.items():
        after = fn.state().config
        for index in range(256):
            fixed = ~(fn._writable[index] | fn._w1c[index]) & 0xFF
            if index == STATUS:
                fixed &= ~STATUS_INTERRUPT
            assert (before[key][index] ^ after[index]) & fixed == 0, (key, hex(index))
    # Whatever the routing, the ISA lines show exactly what the router says it drives.
    assert pc.irqs.high() == {irq for irq in range(16) if pc.chipset.router.irq_level(irq)}
