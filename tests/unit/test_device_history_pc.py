"""Bugs other VMMs shipped in the PC's small devices (PIT, RTC, UART, i8042, PCI host,
fw_cfg), replayed against pyhvm's models: one test per bug class, each playing the guest's
part register by register and checking the rule that keeps pyhvm out of it.
docs/security/device-bugs.md ("PIT, RTC, UART, i8042, PCI host, fw_cfg") says what each
bug was, where, and which rule answers it."""

from __future__ import annotations

import struct

import pytest

from pyhvm.devices import fw_cfg as f
from pyhvm.devices.pit8254 import CONTROL_OFFSET
from pyhvm.devices.ps2kbd import BUFFER_SIZE
from pyhvm.devices.uart16550 import FIFO_SIZE, LSR_OE, MCR_LOOP, Uart16550
from pyhvm.memory import GuestMemory
from tests.fakes import FakeIrq
from tests.unit.test_i8042 import Kbc
from tests.unit.test_pci import SCRATCH, Board, make_function
from tests.unit.test_pit8254 import make as make_pit
from tests.unit.test_rtc import make as make_rtc

RAM = 1 << 20
DESC = 0x1000


# -- PIT: the control port read as a channel (CVE-2015-3214; KVM CVE-2010-0309) ------------

def test_cve_2015_3214_reading_the_control_port_is_not_a_fourth_channel() -> None:
    """QEMU's PIT, after its port I/O conversion, served reads of port 0x43 with the same
    handler as 0x40-0x42 and indexed its three-channel array with 3 (out-of-bounds read,
    fix d4862a8: ignore reads of the mode/command register). KVM's in-kernel PIT had the
    same family (CVE-2010-0309, "cat /dev/port" hung the host). pyhvm's PIT reads 0xFF
    at 0x43, and a control word with select 3 is the read-back command, never a channel."""
    pit, clock, _ = make_pit()
    for _ in range(3):
        assert pit.read(CONTROL_OFFSET, 1) == 0xFF
    for value in range(256):  # every control word, including all read-back forms
        pit.write(CONTROL_OFFSET, 1, value)
        for channel in range(3):
            pit.read(channel, 1)
        assert pit.read(CONTROL_OFFSET, 1) == 0xFF
    for size in (2, 4):  # wide accesses across the block
        pit.read(0, size)
        pit.write(0, size, 0xFFFFFFFF & ((1 << 8 * size) - 1))
    clock.advance(10**9)


# -- RTC: index and register values (no RTC CVE found; the migration-state class) ------

def test_rtc_any_index_and_any_register_value_stay_inside_cmos() -> None:
    """No guest-triggerable RTC CVE was found; the neighbouring class is QEMU devices that
    trusted indices restored from migration streams (the 2013-2014 vmstate batch, and QEMU
    issues 4772/4773 in 2026), plus timers computed from register A as given. pyhvm masks the index to 7 bits (bit 7 is the NMI mask) so 128 bytes of CMOS
    are all a guest can name, and every rate, divider and mode is accepted without a
    zero period or a timer storm."""
    rtc, clock, _ = make_rtc()
    for index in range(256):
        rtc.write(0, 1, index)
        rtc.write(1, 1, 0xFF if index not in (0x0A, 0x0B) else 0x00)
        rtc.read(1, 1)
    for reg_a in range(128):  # every divider and rate
        rtc.write(0, 1, 0x0A)
        rtc.write(1, 1, reg_a)
        rtc.write(0, 1, 0x0B)
        rtc.write(1, 1, 0x40)  # periodic interrupt on
        clock.advance(1_000_000, max_callbacks=10_000)
        assert clock.pending() <= 4


# -- UART: receive FIFO flooded (QEMU issue 4772: Fifo8 state; FIFO push without room) --

def test_uart_flooded_receive_fifo_holds_sixteen_and_reports_overrun() -> None:
    """QEMU's 16550 keeps its FIFOs in Fifo8, whose push asserts when full; QEMU issue
    4772 (2026) shows its head/count restored unchecked from migration, and FIFO overflows
    of this shape are common in QEMU's other devices (issues 1419, 1427; the FDC's
    CVE-2015-3456). pyhvm's receive takes at most the free room
    (the caller keeps the rest); loopback bytes into a full FIFO are dropped with LSR.OE,
    and the FIFO never holds more than 16 bytes."""
    uart = Uart16550(FakeIrq(), lambda data: None)
    uart.write(2, 1, 0x01)  # FCR: FIFOs on
    assert uart.receive(bytes(100_000)) == FIFO_SIZE and uart.rx_count == FIFO_SIZE
    assert uart.receive(b"x") == 0
    uart.write(2, 1, 0x03)  # clear RX
    uart.write(4, 1, MCR_LOOP)
    for _ in range(10_000):
        uart.write(0, 1, 0x41)
    assert uart.rx_count == FIFO_SIZE and uart.read(5, 1) & LSR_OE


# -- i8042 / PS/2: queues the guest fills (CVE-2017-16845 family) ---------------------------

def test_i8042_command_floods_keep_every_queue_bounded() -> None:
    """QEMU's PS/2 queue indices (rptr, count) were trusted from migration
    (CVE-2017-16845) and its keyboard queue could be overfilled by commands that answer
    with several bytes. pyhvm's keyboard queues at most BUFFER_SIZE bytes plus one reply
    whatever the guest writes, and the controller's output buffer is one byte."""
    kbc = Kbc()
    for _ in range(5000):
        kbc.data(0xF2)  # READ ID: two bytes of reply each
        kbc.data(0xEE)  # ECHO
        kbc.cmd(0xD2)   # write keyboard output buffer
        kbc.data(0xAA)
    out = kbc.drain(limit=10_000)
    assert len(out) <= BUFFER_SIZE + 3


# -- PCI host: configuration accesses beyond the header -------------------------------------

def test_pci_config_accesses_never_leave_the_256_byte_space() -> None:
    """QEMU's PCI config accessors have repeatedly needed clamping where a register plus
    access size ran past the configuration space (e.g. the emulated PCIe extended space and
    passthrough quirks). Mechanism #1 names registers 0-0xFC and lanes 0-3, so pyhvm's host
    can never form an offset past 255; a dword at any lane is split or floats."""
    board = Board()
    board.host.attach(3, 0, make_function())
    for register in range(0, 256):
        for size in (1, 2, 4):  # lane 3 with a dword too: the host splits or floats it
            board.read(3, 0, register, size)
            board.write(3, 0, register, size, 0xFFFFFFFF & ((1 << 8 * size) - 1))
    board.write(3, 0, SCRATCH, 4, 0x12345678)
    assert board.read(3, 0, SCRATCH, 4) == 0x12345678  # the function still works
    for device in (0, 4, 31):  # absent functions float
        assert board.read(device, 7, 0, 4) == 0xFFFFFFFF
    function = make_function()
    for offset, size in ((256, 1), (255, 2), (253, 4), (-1, 1)):
        with pytest.raises(ValueError):  # host-side misuse is refused, never served
            function.config_read(offset, size)


# -- fw_cfg: selector and DMA (CVE-2016-1714; DMA interface) --------------------------------

def test_cve_2016_1714_selector_and_dma_stay_inside_items_and_ram() -> None:
    """CVE-2016-1714, QEMU fw_cfg_read / fw_cfg_write: an invalid current entry (a selector
    past the table) indexed the entry array out of bounds. QEMU issue 4773 (2026) is the same
    invariant broken through migration. pyhvm keeps no index into a table: a key past the
    table selects nothing (reads 0). The DMA interface checks the whole guest range before
    moving anything, an address past RAM ends in the error bit, and huge lengths move in
    bounded chunks without allocating the length."""
    memory = GuestMemory.with_size(RAM)
    try:
        dev = f.FwCfg(memory)
        for key in (0x3FFF, 0x7FFF, 0xBFFF, 0xFFFF, f.MAX_ENTRY, 0x4000 | f.MAX_ENTRY):
            dev.io_port.write(0, 2, key)
            assert all(dev.io_port.read(1, 1) == 0 for _ in range(64))
        cases = (
            (f.DMA_CTL_READ | f.FW_CFG_SIGNATURE << 16 | f.DMA_CTL_SELECT, 4, RAM - 2),
            (f.DMA_CTL_READ | f.FW_CFG_SIGNATURE << 16 | f.DMA_CTL_SELECT, 0xFFFFFFFF, 0x2000),
            (f.DMA_CTL_READ | 0xFFFF << 16 | f.DMA_CTL_SELECT, 0xFFFFFFFF, 0x2000),
            (f.DMA_CTL_WRITE | f.DMA_CTL_SELECT, 16, 0xFFFF_FFFF_FFFF_FFF0),
            (f.DMA_CTL_SKIP, 0xFFFFFFFF, 0),
        )
        for control, length, address in cases:
            memory.write(DESC, f.DMA_DESCRIPTOR.pack(control, length, address))
            dev.dma_port.write(4, 4, int.from_bytes(DESC.to_bytes(4, "big"), "little"))
            written = struct.unpack(">I", memory.read(DESC, 4))[0]
            assert written in (0, f.DMA_CTL_ERROR)
            if address == RAM - 2:
                assert written == f.DMA_CTL_ERROR  # the range runs past RAM: nothing moved
        # A descriptor itself past RAM: the error has nowhere to go and nothing raises.
        dev.dma_port.write(4, 4, int.from_bytes((RAM - 8).to_bytes(4, "big"), "little"))
        dev.dma_port.write(0, 4, 0xFFFFFFFF)
        dev.dma_port.write(4, 4, 0xFFFFFFFF)
    finally:
        memory.close()
