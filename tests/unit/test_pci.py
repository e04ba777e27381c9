"""PCI configuration space and mechanism #1, driven through ports 0xCF8-0xCFF on a port bus.

Sections cite the PCI Local Bus Specification 3.0 (2.2 numbers the same sections); the reset
control register is the 82371SB (PIIX3) RC register at 0xCF9.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhvm.bus import pio_bus
from pyhvm.devices.pci import (
    CLASS_CODE,
    COMMAND,
    COMMAND_BUS_MASTER,
    COMMAND_INTX_DISABLE,
    COMMAND_IO,
    COMMAND_MEMORY,
    CONFIG_ADDRESS_PORT,
    CONFIG_DATA_PORT,
    DEVICE_ID,
    EXPANSION_ROM,
    HEADER_TYPE,
    HEADER_TYPE_MULTI_FUNCTION,
    INTA,
    INTERRUPT_LINE,
    INTERRUPT_PIN,
    PORT_WINDOW,
    RESET_CONTROL_PORT,
    REVISION_ID,
    ROM_BAR_INDEX,
    STATUS,
    STATUS_INTERRUPT,
    STATUS_RECEIVED_MASTER_ABORT,
    STATUS_RECEIVED_TARGET_ABORT,
    STATUS_SIGNALED_SYSTEM_ERROR,
    SUBSYSTEM_ID,
    SUBSYSTEM_VENDOR_ID,
    VENDOR_ID,
    PciFunction,
    PciHost,
    PciHostState,
)
from tests.fakes import FakeIrq

SCRATCH = 0x40  # a fully writable dword the test function defines
BAR0, BAR1, BAR2, BAR3 = 0x10, 0x14, 0x18, 0x1C


def make_function(**kwargs: object) -> PciFunction:
    """A NIC-like function: a 256-byte I/O BAR, a 4 KiB memory BAR, a 64-bit prefetchable
    16 KiB BAR in slots 2-3, and a scratch dword."""
    function = PciFunction(0x1234, 0x5678, 0x020000, revision=0x01,
                           subsystem_vendor_id=0x1AF4, subsystem_id=0x1100,
                           interrupt_pin=INTA, **kwargs)  # type: ignore[arg-type]
    function.add_bar(0, 0x100, "io")
    function.add_bar(1, 0x1000, "mem")
    function.add_bar(2, 0x4000, "mem", prefetchable=True, mem64=True)
    function.define_register(SCRATCH, 4, 0, writable=0xFFFFFFFF)
    return function


class Board:
    """A host on a port bus mapped exactly as the module docstring tells the machine to."""

    def __init__(self, host: PciHost | None = None) -> None:
        self.host = host or PciHost()
        self.bus = pio_bus()
        self.bus.register(CONFIG_ADDRESS_PORT, PORT_WINDOW, self.host.address_port, "pci-addr")
        self.bus.register(CONFIG_DATA_PORT, PORT_WINDOW, self.host.data_port, "pci-data")

    def select(self, device: int, function: int, register: int, bus: int = 0,
               enable: bool = True) -> None:
        address = (enable << 31) | bus << 16 | device << 11 | function << 8 | (register & 0xFC)
        self.bus.write(CONFIG_ADDRESS_PORT, 4, address)

    def read(self, device: int, function: int, register: int, size: int) -> int:
        self.select(device, function, register)
        return self.bus.read(CONFIG_DATA_PORT + (register & 3), size)

    def write(self, device: int, function: int, register: int, size: int, value: int) -> None:
        self.select(device, function, register)
        self.bus.write(CONFIG_DATA_PORT + (register & 3), size, value)


@pytest.fixture
def board() -> Board:
    board = Board()
    board.host.attach(3, 0, make_function())
    return board


# -- mechanism #1 (section 3.2.2.3.2) ------------------------------------------------------

def test_config_address_reads_back_with_reserved_bits_zero(board: Board) -> None:
    board.bus.write(CONFIG_ADDRESS_PORT, 4, 0xFFFFFFFF)
    assert board.bus.read(CONFIG_ADDRESS_PORT, 4) == 0x80FFFFFC


@pytest.mark.parametrize("size,lane", [(size, lane) for size in (1, 2, 4)
                                       for lane in range(4) if lane + size <= 4])
def test_config_data_round_trips_every_size_at_every_lane(board: Board, size: int,
                                                          lane: int) -> None:
    board.write(3, 0, SCRATCH, 4, 0x44332211)
    value = {1: 0xA5, 2: 0xBEEF, 4: 0xCAFEF00D}[size]
    board.write(3, 0, SCRATCH + lane, size, value)
    expected = bytearray(b"\x11\x22\x33\x44")
    expected[lane:lane + size] = value.to_bytes(size, "little")
    assert board.read(3, 0, SCRATCH, 4) == int.from_bytes(expected, "little")
    assert board.read(3, 0, SCRATCH + lane, size) == value
    for byte_lane in range(4):
        assert board.read(3, 0, SCRATCH + byte_lane, 1) == expected[byte_lane]


def test_lanes_past_0xcff_are_another_port_and_read_all_ones(board: Board) -> None:
    board.write(3, 0, SCRATCH, 4, 0x44332211)
    board.select(3, 0, SCRATCH)
    assert board.bus.read(CONFIG_DATA_PORT + 3, 2) == 0xFF44
    assert board.bus.read(CONFIG_DATA_PORT + 1, 4) == 0xFF443322
    board.bus.write(CONFIG_DATA_PORT + 3, 2, 0x77AA)
    assert board.read(3, 0, SCRATCH, 4) == 0xAA332211


def test_vendor_and_device_ids_read_as_one_dword(board: Board) -> None:
    assert board.read(3, 0, VENDOR_ID, 4) == 0x56781234
    assert board.read(3, 0, DEVICE_ID, 2) == 0x5678
    assert board.read(3, 0, VENDOR_ID + 1, 1) == 0x12


@pytest.mark.parametrize("size,ones", [(1, 0xFF), (2, 0xFFFF), (4, 0xFFFFFFFF)])
def test_absent_device_reads_all_ones_and_drops_writes(board: Board, size: int,
                                                      ones: int) -> None:
    for register in (VENDOR_ID, COMMAND, SCRATCH):
        board.write(7, 0, register, size, 0)
        assert board.read(7, 0, register, size) == ones


def test_other_bus_numbers_master_abort(board: Board) -> None:
    board.select(3, 0, VENDOR_ID, bus=1)
    assert board.bus.read(CONFIG_DATA_PORT, 4) == 0xFFFFFFFF


def test_enable_bit_clear_reads_all_ones_and_drops_writes(board: Board) -> None:
    board.select(3, 0, SCRATCH, enable=False)
    board.bus.write(CONFIG_DATA_PORT, 4, 0x12345678)
    assert board.bus.read(CONFIG_DATA_PORT, 4) == 0xFFFFFFFF
    assert board.read(3, 0, SCRATCH, 4) == 0


def test_byte_and_word_writes_to_0xcf8_leave_config_address_alone(board: Board) -> None:
    board.select(3, 0, SCRATCH)
    latched = board.bus.read(CONFIG_ADDRESS_PORT, 4)
    board.bus.write(CONFIG_ADDRESS_PORT, 1, 0x00)
    board.bus.write(CONFIG_ADDRESS_PORT + 2, 2, 0x0000)
    assert board.bus.read(CONFIG_ADDRESS_PORT, 4) == latched
    assert board.bus.read(CONFIG_ADDRESS_PORT, 1) == 0xFF  # nobody decodes the byte at 0xCF8
    assert board.bus.read(CONFIG_ADDRESS_PORT + 2, 2) == 0xFFFF


# -- the header (sections 6.1, 6.2) ---------------------------------------------------------

@pytest.mark.parametrize("register,size,value", [
    (VENDOR_ID, 2, 0x1234), (DEVICE_ID, 2, 0x5678), (REVISION_ID, 1, 0x01),
    (CLASS_CODE, 1, 0x00), (CLASS_CODE + 2, 1, 0x02), (HEADER_TYPE, 1, 0x00),
    (SUBSYSTEM_VENDOR_ID, 2, 0x1AF4), (SUBSYSTEM_ID, 2, 0x1100), (INTERRUPT_PIN, 1, INTA),
    (EXPANSION_ROM, 4, 0), (0x80, 4, 0),
])
def test_read_only_fields_ignore_writes(board: Board, register: int, size: int,
                                        value: int) -> None:
    for attempt in (0, (1 << (8 * size)) - 1, 0x5A5A5A5A & ((1 << (8 * size)) - 1)):
        board.write(3, 0, register, size, attempt)
        assert board.read(3, 0, register, size) == value


def test_interrupt_line_is_writable_and_pin_is_not(board: Board) -> None:
    board.write(3, 0, INTERRUPT_LINE, 2, 0xFF0B)
    assert board.read(3, 0, INTERRUPT_LINE, 2) == (INTA << 8) | 0x0B


def test_command_register_takes_only_its_writable_bits(board: Board) -> None:
    board.write(3, 0, COMMAND, 2, 0xFFFF)
    assert board.read(3, 0, COMMAND, 2) == (COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER
                                            | COMMAND_INTX_DISABLE)
    board.write(3, 0, COMMAND, 2, 0)
    assert board.read(3, 0, COMMAND, 2) == 0


def test_status_error_bits_are_write_one_to_clear() -> None:
    board = Board()
    function = make_function()
    board.host.attach(3, 0, function)
    function.set_status(STATUS_RECEIVED_MASTER_ABORT | STATUS_RECEIVED_TARGET_ABORT)
    board.write(3, 0, STATUS, 2, 0)  # writing 0 changes nothing (section 6.2.3)
    assert board.read(3, 0, STATUS, 2) == 0x3000
    board.write(3, 0, STATUS, 2, STATUS_RECEIVED_MASTER_ABORT | STATUS_SIGNALED_SYSTEM_ERROR)
    assert board.read(3, 0, STATUS, 2) == STATUS_RECEIVED_TARGET_ABORT
    board.write(3, 0, COMMAND, 4, 0xFFFF0000)  # a dword write to command+status
    assert board.read(3, 0, STATUS, 2) == 0


def test_status_interrupt_bit_is_read_only(board: Board) -> None:
    board.write(3, 0, STATUS, 2, 0xFFFF)
    assert board.read(3, 0, STATUS, 2) & STATUS_INTERRUPT == 0


# -- BARs (section 6.2.5.1) ----------------------------------------------------------------

def size_bar(board: Board, register: int, device: int = 3) -> int:
    """The driver's sizing dance: save, write ~0, read the mask, restore."""
    saved = board.read(device, 0, register, 4)
    board.write(device, 0, register, 4, 0xFFFFFFFF)
    mask = board.read(device, 0, register, 4)
    board.write(device, 0, register, 4, saved)
    return mask


def test_io_bar_sizing_returns_mask_with_io_indicator(board: Board) -> None:
    assert board.read(3, 0, BAR0, 4) == 0x00000001
    assert size_bar(board, BAR0) == 0xFFFFFF01  # 256 bytes, all 32 address bits decoded


def test_mem32_bar_sizing_returns_mask_with_type_bits(board: Board) -> None:
    assert size_bar(board, BAR1) == 0xFFFFF000


def test_mem64_prefetchable_bar_sizes_both_dwords(board: Board) -> None:
    assert board.read(3, 0, BAR2, 4) == 0x0000000C  # 64-bit, prefetchable
    assert size_bar(board, BAR2) == 0xFFFFC00C
    assert size_bar(board, BAR3) == 0xFFFFFFFF


def test_bar_keeps_only_aligned_address_bits(board: Board) -> None:
    board.write(3, 0, BAR0, 4, 0xC0DE)
    board.write(3, 0, BAR1, 4, 0xFEBF_1234)
    assert board.read(3, 0, BAR0, 4) == 0xC001
    assert board.read(3, 0, BAR1, 4) == 0xFEBF_1000


def test_unused_bar_slots_read_zero_and_ignore_sizing(board: Board) -> None:
    for register in (0x20, 0x24):
        assert size_bar(board, register) == 0


class BarLog:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None, int | None]] = []

    def __call__(self, index: int, old: int | None, new: int | None) -> None:
        self.calls.append((index, old, new))


def logged_board() -> tuple[Board, PciFunction, BarLog]:
    log = BarLog()
    function = make_function(on_bar_change=log)
    board = Board()
    board.host.attach(3, 0, function)
    return board, function, log


def test_sizing_with_decode_disabled_reports_nothing() -> None:
    board, function, log = logged_board()
    for register in (BAR0, BAR1, BAR2, BAR3):
        size_bar(board, register)
    board.write(3, 0, BAR0, 4, 0xC000)
    assert log.calls == []
    assert function.bar_address(0) is None


def test_enabling_decode_reports_the_programmed_base_and_disabling_removes_it() -> None:
    board, function, log = logged_board()
    board.write(3, 0, BAR0, 4, 0xC000)
    board.write(3, 0, BAR1, 4, 0xFEBF0000)
    board.write(3, 0, COMMAND, 2, COMMAND_IO)
    assert log.calls == [(0, None, 0xC000)]
    board.write(3, 0, COMMAND, 2, COMMAND_IO | COMMAND_MEMORY)
    assert log.calls[1:] == [(1, None, 0xFEBF0000)]
    board.write(3, 0, COMMAND, 2, 0)
    assert log.calls[2:] == [(0, 0xC000, None), (1, 0xFEBF0000, None)]


def test_bar_write_while_enabled_moves_the_mapping_once() -> None:
    board, function, log = logged_board()
    board.write(3, 0, BAR0, 4, 0xC000)
    board.write(3, 0, COMMAND, 2, COMMAND_IO)
    board.write(3, 0, BAR0, 4, 0xC100)
    board.write(3, 0, BAR0, 4, 0xC100)  # same value: no change, no call
    board.write(3, 0, COMMAND, 2, COMMAND_IO | COMMAND_BUS_MASTER)  # not a decode bit
    assert log.calls == [(0, None, 0xC000), (0, 0xC000, 0xC100)]
    assert function.bar_address(0) == 0xC100


def test_sizing_while_enabled_unmaps_then_remaps() -> None:
    board, function, log = logged_board()
    board.write(3, 0, BAR1, 4, 0xFEBF0000)
    board.write(3, 0, COMMAND, 2, COMMAND_MEMORY)
    assert size_bar(board, BAR1) == 0xFFFFF000
    assert log.calls == [(1, None, 0xFEBF0000), (1, 0xFEBF0000, None), (1, None, 0xFEBF0000)]


def test_mem64_bar_reports_the_full_address() -> None:
    board, function, log = logged_board()
    board.write(3, 0, BAR2, 4, 0x0000C000)
    board.write(3, 0, BAR3, 4, 0x00000008)
    board.write(3, 0, COMMAND, 2, COMMAND_MEMORY)
    assert function.bar_address(2) == 0x8_0000_C000
    assert log.calls == [(2, None, 0x8_0000_C000)]


def test_io_decode_does_not_enable_memory_bars() -> None:
    board, function, _ = logged_board()
    board.write(3, 0, BAR1, 4, 0xFEBF0000)
    board.write(3, 0, COMMAND, 2, COMMAND_IO)
    assert function.bar_address(1) is None


def test_io_bar_above_64k_does_not_decode() -> None:
    board, function, log = logged_board()
    board.write(3, 0, BAR0, 4, 0x1C000)
    board.write(3, 0, COMMAND, 2, COMMAND_IO)
    assert board.read(3, 0, BAR0, 4) == 0x1C001
    assert function.bar_address(0) is None and log.calls == []


def test_rom_bar_is_absent_unless_declared_and_decodes_with_its_enable_bit() -> None:
    log = BarLog()
    function = PciFunction(0x1234, 0x1111, 0x030000, on_bar_change=log)
    function.add_rom_bar(0x10000)
    board = Board()
    board.host.attach(2, 0, function)
    board.host.attach(3, 0, make_function())
    assert size_bar(board, EXPANSION_ROM, device=3) == 0  # no ROM declared: reads 0
    assert size_bar(board, EXPANSION_ROM, device=2) == 0xFFFF0001  # 64 KiB, enable bit R/W
    board.write(2, 0, EXPANSION_ROM, 4, 0xFEB00000)
    board.write(2, 0, COMMAND, 2, COMMAND_MEMORY)
    assert function.bar_address(ROM_BAR_INDEX) is None
    board.write(2, 0, EXPANSION_ROM, 4, 0xFEB00001)
    assert log.calls == [(ROM_BAR_INDEX, None, 0xFEB00000)]


@pytest.mark.parametrize("args", [
    dict(index=0, size=2, kind="io"), dict(index=0, size=512, kind="io"),
    dict(index=0, size=24, kind="io"), dict(index=0, size=8, kind="mem"),
    dict(index=6, size=16, kind="io"), dict(index=5, size=16, kind="mem", mem64=True),
    dict(index=2, size=16, kind="mem"),  # already taken by the 64-bit BAR
    dict(index=3, size=16, kind="mem"), dict(index=0, size=16, kind="io", prefetchable=True),
])
def test_add_bar_refuses_impossible_declarations(args: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_function().add_bar(**args)  # type: ignore[arg-type]


# -- multi-function devices (section 6.2.1) ------------------------------------------------

def test_functions_above_zero_need_a_multi_function_function_zero() -> None:
    board = Board()
    single = PciFunction(0x1234, 0x0001, 0xFF0000)
    board.host.attach(4, 0, single)
    with pytest.raises(ValueError, match="multi-function"):
        board.host.attach(4, 1, PciFunction(0x1234, 0x0002, 0xFF0000))
    board.host.attach(5, 0, PciFunction(0x1234, 0x0003, 0xFF0000,
                                        header_type=HEADER_TYPE_MULTI_FUNCTION))
    board.host.attach(5, 2, PciFunction(0x1234, 0x0004, 0xFF0000))
    assert board.read(5, 2, VENDOR_ID, 4) == 0x00041234
    assert board.read(5, 1, VENDOR_ID, 4) == 0xFFFFFFFF
    assert board.read(4, 1, VENDOR_ID, 4) == 0xFFFFFFFF
    assert board.read(5, 0, HEADER_TYPE, 1) == HEADER_TYPE_MULTI_FUNCTION


def test_a_device_without_function_zero_is_absent() -> None:
    board = Board()
    board.host.attach(6, 1, PciFunction(0x1234, 0x0005, 0xFF0000))
    assert board.read(6, 1, VENDOR_ID, 4) == 0xFFFFFFFF
    assert board.read(6, 0, VENDOR_ID, 4) == 0xFFFFFFFF


def test_attach_refuses_taken_slots_and_impossible_numbers() -> None:
    host = PciHost()
    host.attach(1, 0, make_function())
    for device, function in ((1, 0), (32, 0), (0, 8), (-1, 0)):
        with pytest.raises(ValueError):
            host.attach(device, function, make_function())


# -- reset control register at 0xCF9 (82371SB, RC) -----------------------------------------

def test_cf9_reset_cpu_rising_edge_requests_hard_or_soft_reset() -> None:
    requests: list[bool] = []
    board = Board(PciHost(on_reset=requests.append))
    board.bus.write(RESET_CONTROL_PORT, 1, 0x02)  # pick hard reset: nothing yet
    assert requests == []
    board.bus.write(RESET_CONTROL_PORT, 1, 0x06)  # RCPU 0 -> 1
    assert requests == [True]
    board.bus.write(RESET_CONTROL_PORT, 1, 0x06)  # no transition
    assert requests == [True]
    assert board.bus.read(RESET_CONTROL_PORT, 1) == 0x06
    board.host.reset()
    board.bus.write(RESET_CONTROL_PORT, 1, 0x04)  # soft reset (INIT)
    assert requests == [True, False]


def test_cf9_reserved_bits_read_zero_and_leave_config_address_alone() -> None:
    board = Board()
    board.select(0, 0, 0)
    board.bus.write(RESET_CONTROL_PORT, 1, 0xF9)
    assert board.bus.read(RESET_CONTROL_PORT, 1) == 0x00
    assert board.bus.read(CONFIG_ADDRESS_PORT, 4) == 0x80000000


# -- INTx (sections 6.2.2 bit 10, 6.2.3 bit 3) ---------------------------------------------

def test_intx_level_shows_in_status_and_disable_bit_masks_the_pin() -> None:
    board, function, _ = logged_board()
    line = FakeIrq()
    function.connect_intx(line)
    function.irq.set_level(True)
    assert line.level and board.read(3, 0, STATUS, 2) & STATUS_INTERRUPT
    board.write(3, 0, COMMAND, 2, COMMAND_INTX_DISABLE)
    assert not line.level and board.read(3, 0, STATUS, 2) & STATUS_INTERRUPT
    board.write(3, 0, COMMAND, 2, 0)
    assert line.level
    function.irq.set_level(False)
    assert line.changes == [True, False, True, False]
    assert board.read(3, 0, STATUS, 2) & STATUS_INTERRUPT == 0


def test_command_changes_reach_the_device_model_once_per_change(board: Board) -> None:
    function = board.host.function_at(3, 0)
    assert isinstance(function, PciFunction)
    seen: list[int] = []
    function.on_command_change = seen.append
    board.write(3, 0, COMMAND, 2, COMMAND_BUS_MASTER)
    board.write(3, 0, COMMAND, 2, COMMAND_BUS_MASTER)
    board.write(3, 0, STATUS, 2, 0xFFFF)
    board.write(3, 0, COMMAND, 4, 0)
    assert seen == [COMMAND_BUS_MASTER, 0]
    assert not function.bus_master_enabled


# -- reset and snapshots -------------------------------------------------------------------

def test_function_reset_restores_defaults_and_unmaps_bars() -> None:
    board, function, log = logged_board()
    board.write(3, 0, BAR0, 4, 0xC000)
    board.write(3, 0, COMMAND, 2, COMMAND_IO)
    board.write(3, 0, SCRATCH, 4, 0x12345678)
    board.host.reset()
    assert board.bus.read(CONFIG_ADDRESS_PORT, 4) == 0
    assert log.calls[-1] == (0, 0xC000, None)
    assert board.read(3, 0, BAR0, 4) == 1 and board.read(3, 0, SCRATCH, 4) == 0


def test_snapshot_round_trip_remaps_bars_and_redrives_intx() -> None:
    board, function, _ = logged_board()
    board.write(3, 0, BAR0, 4, 0xC000)
    board.write(3, 0, COMMAND, 2, COMMAND_IO)
    function.irq.set_level(True)
    saved, host_saved = function.state(), board.host.state()
    log, line = BarLog(), FakeIrq()
    copy = make_function(on_bar_change=log)
    copy.connect_intx(line)
    copy.restore(saved)
    assert copy.state() == saved
    assert log.calls == [(0, None, 0xC000)] and line.level
    other = PciHost()
    other.restore(host_saved)
    assert other.state() == host_saved


def test_restore_refuses_a_snapshot_of_another_device() -> None:
    config = bytearray(make_function().state().config)
    config[DEVICE_ID] ^= 1
    with pytest.raises(ValueError, match="read-only"):
        make_function().restore(type(make_function().state())(config=bytes(config)))
    with pytest.raises(ValueError):
        make_function().restore(type(make_function().state())(config=b"\0" * 64))
    with pytest.raises(ValueError):
        PciHost().restore(PciHostState(config_address=0x7F000000))


@pytest.mark.parametrize("offset,size", [(0x3F, 2), (0x42, 4), (0xFF, 2), (0x100, 1), (0, 3)])
def test_direct_config_access_crossing_a_dword_is_a_caller_bug(offset: int, size: int) -> None:
    with pytest.raises(ValueError):
        make_function().config_read(offset, size)


# -- anything the guest does ---------------------------------------------------------------

accesses = st.lists(st.tuples(
    st.sampled_from(["addr", "data", "read"]),
    st.integers(0, PORT_WINDOW - 1), st.sampled_from([1, 2, 4]),
    st.integers(0, 0xFFFFFFFF)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(accesses)
def test_random_port_accesses_never_raise_nor_change_read_only_bits(
        ops: list[tuple[str, int, int, int]]) -> None:
    board = Board(PciHost(on_reset=lambda hard: None))
    function = make_function(on_bar_change=lambda *args: None)
    board.host.attach(0, 0, function)
    before = function.state().config
    for kind, lane, size, value in ops:
        if kind == "addr":
            # Mostly point at our function, sometimes anywhere.
            value = value if value & 1 else 0x80000000 | (value & 0xFC)
            board.bus.write(CONFIG_ADDRESS_PORT + (lane if size == 1 else 0), size, value)
        elif kind == "data":
            board.bus.write(CONFIG_DATA_PORT + lane, size, value & ((1 << (8 * size)) - 1))
        else:
            port = (CONFIG_DATA_PORT if value & 1 else CONFIG_ADDRESS_PORT) + lane
            assert 0 <= board.bus.read(port, size) < 1 << (8 * size)
    after = function.state().config
    for index in range(256):
        fixed = ~(function._writable[index] | function._w1c[index]) & 0xFF
        if index == STATUS:
            fixed &= ~STATUS_INTERRUPT
        assert (before[index] ^ after[index]) & fixed == 0, hex(index)
    for index in range(6):
        address = function.bar_address(index)
        bar = function.bar(index)
        assert address is None or (bar is not None and address % bar.size == 0)
