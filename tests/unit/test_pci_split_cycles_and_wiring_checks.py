"""PCI corners: I/O cycles at 0xCF9-0xCFB that spill into the data window (an unaligned
`outw`/`outl` is split by the CPU at the dword boundary, so bytes past 0xCFB are a
configuration data cycle), and the host-side wiring checks that refuse functions the
configuration space cannot describe (PCI Local Bus Specification 3.0, sections 3.2.2.3.2,
6.1, 6.2)."""

from __future__ import annotations

import pytest

from pyhvm.devices.pci import (CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT, HEADER_TYPE_MULTI_FUNCTION,
                               RESET_CONTROL_PORT, STATUS, STATUS_INTERRUPT,
                               STATUS_RECEIVED_MASTER_ABORT, PciFunction, PciHost,
                               PciHostState)
from tests.unit.test_pci import SCRATCH, Board, make_function


@pytest.fixture
def board() -> Board:
    board = Board()
    board.host.attach(3, 0, make_function())
    return board


def test_word_at_0xcfb_writes_its_high_byte_as_configuration_data(board: Board) -> None:
    board.write(3, 0, SCRATCH, 4, 0x11223344)
    board.select(3, 0, SCRATCH)
    latched = board.bus.read(CONFIG_ADDRESS_PORT, 4)
    board.bus.write(CONFIG_ADDRESS_PORT + 3, 2, 0xAB00)  # 0xCFB: nobody; 0xCFC: data byte 0
    assert board.bus.read(CONFIG_ADDRESS_PORT, 4) == latched
    assert board.read(3, 0, SCRATCH, 4) == 0x112233AB


def test_dword_at_0xcf9_writes_rcr_then_two_data_bytes(board: Board) -> None:
    resets: list[bool] = []
    board.host.on_reset = resets.append
    board.write(3, 0, SCRATCH, 4, 0)
    board.select(3, 0, SCRATCH)
    # 0xCF9 <- 0x00 (RCR, no reset), 0xCFA-0xCFB <- nobody, 0xCFC <- 0x5A (CPU splits there)
    board.bus.write(CONFIG_ADDRESS_PORT + 1, 4, 0x5A_00_00_00)
    assert board.read(3, 0, SCRATCH, 4) == 0x0000005A and resets == []
    board.select(3, 0, SCRATCH)
    assert board.bus.read(CONFIG_ADDRESS_PORT + 3, 2) == 0x5AFF  # 0xCFB floats, 0xCFC data
    assert board.bus.read(RESET_CONTROL_PORT, 1) == 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(vendor_id=0xFFFF), "no function here"),
    (dict(header_type=0x01), "type-0"),
    (dict(header_type=HEADER_TYPE_MULTI_FUNCTION | 0x02), "type-0"),
    (dict(interrupt_pin=5), "interrupt pin"),
    (dict(interrupt_pin=-1), "interrupt pin"),
])
def test_functions_the_header_cannot_describe_are_refused(kwargs: dict[str, int],
                                                          match: str) -> None:
    args = dict(vendor_id=0x1234, device_id=0x0001, class_code=0xFF0000) | kwargs
    with pytest.raises(ValueError, match=match):
        PciFunction(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("offset,size,value,writable,match", [
    (0xFE, 4, 0, 0, "outside configuration space"),
    (-1, 1, 0, 0, "outside configuration space"),
    (0x40, 0, 0, 0, "outside configuration space"),
    (0x40, 1, 0x100, 0, "value"),
    (0x40, 2, 0, 0x10000, "writable"),
    (0x40, 1, -1, 0, "value"),
])
def test_define_register_refuses_registers_that_do_not_fit(offset: int, size: int, value: int,
                                                           writable: int, match: str) -> None:
    function = make_function()
    before = function.state()
    with pytest.raises(ValueError, match=match):
        function.define_register(offset, size, value, writable=writable)
    assert function.state() == before


def test_bar_kind_rom_size_and_status_bits_are_checked() -> None:
    function = make_function()
    with pytest.raises(ValueError, match="'io' or 'mem'"):
        function.add_bar(4, 16, "dma")  # type: ignore[arg-type]
    for size in (1024, 3000, 1 << 32):
        with pytest.raises(ValueError, match="ROM size"):
            function.add_rom_bar(size)
    with pytest.raises(ValueError, match="not error bits"):
        function.set_status(STATUS_INTERRUPT)  # the line's state, not an error a model sets
    function.set_status(STATUS_RECEIVED_MASTER_ABORT)
    assert function.config_read(STATUS, 2) == STATUS_RECEIVED_MASTER_ABORT


def test_host_restore_refuses_reserved_reset_control_bits_and_impossible_sizes() -> None:
    host = PciHost()
    with pytest.raises(ValueError, match="rcr"):
        host.restore(PciHostState(config_address=0, rcr=0x01))  # bit 0 is reserved
    with pytest.raises(ValueError, match="rcr"):
        host.restore(PciHostState(config_address=0, rcr=0x100))
    with pytest.raises(ValueError, match="config_address"):
        host.restore(PciHostState(config_address=1 << 32))
    with pytest.raises(ValueError, match="access size"):
        host.port_read(CONFIG_DATA_PORT, 3)
    assert host.state() == PciHostState(0, 0)
