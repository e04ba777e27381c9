"""The RTL8139C(L) model. Sections cite the Realtek RTL8139C(L) data sheet ("Register
Descriptions", "Transmit Operation", "Receive Operation", "EEPROM (93C46) Contents") and the
93C46 data sheet's instruction set."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhvm.devices.eeprom93c46 import Eeprom93c46
from pyhvm.devices.pci import BAR0, COMMAND, INTA, INTERRUPT_PIN, STATUS_RECEIVED_MASTER_ABORT
from pyhvm.devices.rtl8139 import (
    ANLPAR,
    BMCR,
    BMCR_ANE,
    BMCR_SPEED_100,
    BMSR,
    BMSR_AN_COMPLETE,
    BMSR_LINK,
    CAPR,
    CBR,
    CONFIG1,
    CR,
    CR9346,
    CR_BUFE,
    CR_RE,
    CR_RST,
    CR_TE,
    EE_CS,
    EE_DI,
    EE_DO,
    EE_SK,
    EEM_AUTOLOAD,
    EEM_CONFIG_WRITE,
    EEM_PROGRAM,
    IDR0,
    IMR,
    INT_LINKCHG,
    INT_MASK,
    INT_ROK,
    INT_RXOVW,
    INT_SERR,
    INT_TER,
    INT_TIMEOUT,
    INT_TOK,
    ISR,
    MAR0,
    MAX_FRAME,
    MPC,
    MSR,
    MSR_LINKB,
    MSR_SPEED_10,
    RBSTART,
    RCR,
    RCR_AAP,
    RCR_AB,
    RCR_AM,
    RCR_APM,
    RCR_WRAP,
    RX_BAR,
    RX_MAR,
    RX_PAM,
    RX_ROK,
    RX_WRAP_SLACK,
    TCR,
    TCR_LOOPBACK,
    TCTR,
    TIMERINT,
    TSAD,
    TSAD0,
    TSD0,
    TSD_OWN,
    TSD_TOK,
    TSD_TUN,
    Rtl8139,
    Rtl8139Pci,
    Rtl8139State,
    eeprom_image,
    multicast_hash_index,
)
from pyhvm.memory import GuestMemoryError
from tests.fakes import FakeClock, FakeIrq

MAC = bytes.fromhex("525400123456")
OTHER = bytes.fromhex("52540065432a")
RAM = 0x30000
RING = 0x10000  # where the tests put the receive ring
TXBUF = 0x1000
RING_8K = 8192
FILL = 0xEE
FCS_RESIDUE = 0x2144DF1C  # CRC-32 over a frame followed by its own FCS


class TrackingMemory:
    """RAM of `size` bytes at gpa 0. An access outside RAM raises GuestMemoryError (the
    model's check) and is counted. `judge(kind, gpa, size)` may be set to flag accesses
    outside what the model is allowed to touch."""

    def __init__(self, size: int = RAM) -> None:
        self.data = bytearray([FILL]) * size
        self.refused = 0
        self.accesses: list[tuple[str, int, int]] = []
        self.judge: Any = None

    def _check(self, kind: str, gpa: int, size: int) -> None:
        self.accesses.append((kind, gpa, size))
        if self.judge is not None:
            self.judge(kind, gpa, size)
        if gpa < 0 or size < 0 or gpa + size > len(self.data):
            self.refused += 1
            raise GuestMemoryError(f"{gpa:#x}+{size:#x} outside {len(self.data):#x}")

    def read(self, gpa: int, size: int) -> bytes:
        self._check("read", gpa, size)
        return bytes(self.data[gpa:gpa + size])

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        self._check("write", gpa, len(data))
        self.data[gpa:gpa + len(data)] = data

    def view(self, gpa: int, size: int) -> memoryview:
        self._check("view", gpa, size)
        return memoryview(self.data)[gpa:gpa + size]


class Rig:
    def __init__(self, *, kick: bool = False, ram: int = RAM) -> None:
        self.memory = TrackingMemory(ram)
        self.irq = FakeIrq()
        self.sent: list[bytes] = []
        self.clock = FakeClock(1_000_000)
        self.kicks = 0
        self.master = True
        self.aborts = 0
        self.nic = Rtl8139(self.memory, self.irq, self.sent.append, self.clock, mac=MAC,
                           on_tx_pending=self._kick if kick else None,
                           bus_master_enabled=lambda: self.master,
                           on_master_abort=self._abort)

    def _kick(self) -> None:
        self.kicks += 1

    def _abort(self) -> None:
        self.aborts += 1

    def r(self, offset: int, size: int) -> int:
        return self.nic.read(offset, size)

    def w(self, offset: int, size: int, value: int) -> None:
        self.nic.write(offset, size, value)

    def start(self, rcr: int = RCR_APM | RCR_AB, *, rblen: int = 0, ring: int = RING,
              imr: int = INT_MASK) -> None:
        """What a driver's open does: reset, ring, receive config, enables, interrupt mask."""
        self.w(CR, 1, CR_RST)
        self.w(RBSTART, 4, ring)
        self.w(CR, 1, CR_RE | CR_TE)
        self.w(RCR, 4, rcr | rblen << 11)
        self.w(IMR, 2, imr)

    def packet(self, offset: int, ring: int = RING) -> tuple[int, int, bytes]:
        """(status, length, data including CRC) of the packet at ring `offset`, contiguous."""
        status, length = struct.unpack_from("<HH", self.memory.data, ring + offset)
        return status, length, bytes(self.memory.data[ring + offset + 4:
                                                      ring + offset + 4 + length])

    def consume_to(self, offset: int) -> None:
        """The driver read up to ring `offset`: CAPR = read pointer - 16."""
        self.w(CAPR, 2, (offset - 16) & 0xFFFF)


def frame(dest: bytes = MAC, size: int = 64, fill: int = 0x5A) -> bytes:
    body = dest + OTHER + b"\x08\x00"
    return body + bytes([fill]) * (size - len(body))


def span(frame_length: int) -> int:
    return (4 + max(frame_length, 60) + 4 + 3) & ~3


# -- PCI function ------------------------------------------------------------------------------

def test_pci_function_is_an_8139c_with_io_and_memory_bars() -> None:
    """PCI configuration space table: 10EC:8139, class 020000, INTA, 256-byte BARs."""
    fn = Rtl8139Pci()
    assert fn.config_read(0, 4) == 0x813910EC
    assert fn.config_read(0x08, 4) == 0x02000010
    assert fn.config_read(INTERRUPT_PIN, 1) == INTA
    assert fn.config_read(0x2C, 4) == 0x813910EC
    for index, flags in ((0, 0x1), (1, 0x0)):
        fn.config_write(BAR0 + 4 * index, 4, 0xFFFFFFFF)
        assert fn.config_read(BAR0 + 4 * index, 4) == 0xFFFFFF00 | flags
    fn.config_write(BAR0, 4, 0xC000)
    fn.config_write(BAR0 + 4, 4, 0xFEB00000)
    fn.config_write(COMMAND, 2, 0x3)
    assert fn.bar_address(0) == 0xC000 and fn.bar_address(1) == 0xFEB00000


# -- EEPROM ------------------------------------------------------------------------------------

def _pins(rig: Rig, bits: int) -> None:
    rig.w(CR9346, 1, EEM_PROGRAM << 6 | bits)


def eeprom_read(rig: Rig, address: int, address_bits: int = 6) -> int:
    """A 93C46 READ bit-banged through 9346CR the way 8139too does it: programming mode,
    CS, two zeros then start bit 1, opcode 10, the address MSB first (DI set up, then SK
    raised), then 16 clocks sampling EEDO while SK is high; ends by writing ~EECS."""
    _pins(rig, 0)
    _pins(rig, EE_CS)
    command = (0b110 << address_bits) | address
    for i in reversed(range(address_bits + 5)):
        di = EE_DI if command >> i & 1 else 0
        _pins(rig, EE_CS | di)
        _pins(rig, EE_CS | di | EE_SK)
    _pins(rig, EE_CS)
    word = 0
    for _ in range(16):
        _pins(rig, EE_CS | EE_SK)
        word = word << 1 | (rig.r(CR9346, 1) & EE_DO)
        _pins(rig, EE_CS)
    rig.w(CR9346, 1, ~EE_CS & 0xFF)
    return word


def eeprom_command(rig: Rig, bits: str, data: int | None = None) -> bool:
    """Clock start bit + `bits` (+ 16 data bits), drop CS, raise it again: DO = READY."""
    _pins(rig, 0)
    _pins(rig, EE_CS)
    stream = "1" + bits + (f"{data:016b}" if data is not None else "")
    for char in stream:
        di = EE_DI if char == "1" else 0
        _pins(rig, EE_CS | di)
        _pins(rig, EE_CS | di | EE_SK)
    _pins(rig, 0)  # CS low starts the programming cycle
    _pins(rig, EE_CS)
    ready = bool(rig.r(CR9346, 1) & EE_DO)
    rig.w(CR9346, 1, 0)
    return ready


def test_eeprom_bit_bang_reads_mac_ids_and_signature() -> None:
    """EEPROM contents: 8129h at word 0, vendor and device at 1-2, the MAC at words 7-9."""
    rig = Rig()
    words = [eeprom_read(rig, i) for i in range(10)]
    assert words[0] == 0x8129 and words[1] == 0x10EC and words[2] == 0x8139
    assert b"".join(struct.pack("<H", w) for w in words[7:10]) == MAC


def test_eeprom_8bit_address_probe_does_not_find_the_93c56_signature() -> None:
    """8139too reads word 0 with 8 address bits: a 93C46 answers early, so not 8129h."""
    rig = Rig()
    assert eeprom_read(rig, 0, address_bits=8) != 0x8129
    assert eeprom_read(rig, 0) == 0x8129  # the interface recovered


def test_eeprom_sequential_read_continues_into_the_next_word() -> None:
    chip = Eeprom93c46([i * 0x0101 for i in range(64)])
    stream = "110" + "111111"  # READ word 63, then word 0 follows
    chip.set_pins(True, False, False)
    for char in stream:
        chip.set_pins(True, False, char == "1")
        chip.set_pins(True, True, char == "1")
    assert chip.data_out is False  # the dummy zero
    bits = []
    for _ in range(32):
        chip.set_pins(True, False, False)
        chip.set_pins(True, True, False)
        bits.append("1" if chip.data_out else "0")
    assert int("".join(bits), 2) == (63 * 0x0101) << 16 | 0


def test_eeprom_write_needs_ewen_and_autoload_takes_the_new_mac() -> None:
    """93C46 WRITE is ignored after power-on (EWDS) until EWEN; 9346CR autoload (EEM=01)
    reloads IDR0-5 from the EEPROM and returns to normal mode."""
    rig = Rig()
    assert eeprom_command(rig, "01" + "000111", 0xBEEF) is False
    assert eeprom_read(rig, 7) == 0x5452
    assert eeprom_command(rig, "00" + "110000") is False  # EWEN
    assert eeprom_command(rig, "01" + "000111", 0x0002) is True  # READY after the write
    assert eeprom_read(rig, 7) == 0x0002
    rig.w(CR9346, 1, EEM_AUTOLOAD << 6)
    assert rig.r(CR9346, 1) == 0x00
    assert rig.nic.mac == b"\x02\x00" + MAC[2:]
    assert eeprom_command(rig, "11" + "000111") is True  # ERASE
    assert eeprom_read(rig, 7) == 0xFFFF
    eeprom_command(rig, "00" + "000000")  # EWDS
    eeprom_command(rig, "00" + "100000")  # ERAL, refused
    assert eeprom_read(rig, 1) == 0x10EC


# -- registers ---------------------------------------------------------------------------------

def test_idr_reads_the_mac_and_takes_writes_only_with_config_write_enabled() -> None:
    """IDR0-5 and 9346CR: the ID registers are written only with EEM = 11."""
    rig = Rig()
    assert rig.r(IDR0, 4) == struct.unpack("<I", MAC[:4])[0]
    assert rig.r(IDR0 + 4, 2) == struct.unpack("<H", MAC[4:])[0]
    rig.w(IDR0, 4, 0x44332211)
    assert rig.nic.mac == MAC
    rig.w(CR9346, 1, EEM_CONFIG_WRITE << 6)
    rig.w(IDR0, 4, 0x44332200)
    rig.w(IDR0 + 4, 4, 0xFFFF6655)  # bytes 6-7 are reserved
    rig.w(CR9346, 1, 0)
    assert rig.nic.mac == bytes.fromhex("002233445566")
    assert rig.r(IDR0 + 6, 2) == 0


def test_config1_is_locked_like_idr() -> None:
    rig = Rig()
    rig.w(CONFIG1, 1, 0xFF)
    assert rig.r(CONFIG1, 1) == 0x0C
    rig.w(CR9346, 1, EEM_CONFIG_WRITE << 6)
    rig.w(CONFIG1, 1, 0x01)
    assert rig.r(CONFIG1, 1) == 0x0D  # IOMAP/MEMMAP stay


def test_cr_rst_self_clears_and_resets_pointers_but_keeps_idr_and_mar() -> None:
    """CR.RST: RX/TX disabled, buffer pointers to their start; IDR and MAR unchanged."""
    rig = Rig()
    rig.start()
    rig.w(MAR0, 4, 0x12345678)
    rig.nic.receive(frame())
    rig.w(TSAD0, 4, TXBUF)
    rig.w(TSD0, 4, 60)
    assert rig.r(CBR, 2) != 0 and rig.irq.level
    rig.w(CR, 1, CR_RST)
    assert rig.r(CR, 1) == CR_BUFE  # RST read back 0, RE/TE off, ring empty
    assert rig.r(CAPR, 2) == 0xFFF0 and rig.r(CBR, 2) == 0
    assert rig.r(TSD0, 4) == TSD_OWN and rig.r(ISR, 2) == 0 and rig.r(IMR, 2) == 0
    assert rig.r(MAR0, 4) == 0x12345678 and rig.nic.mac == MAC
    assert rig.r(RBSTART, 4) == RING
    assert not rig.irq.level


def test_reset_returns_every_register_to_its_default_and_the_eeprom_mac() -> None:
    rig = Rig()
    rig.start()
    rig.w(CR9346, 1, EEM_CONFIG_WRITE << 6)
    rig.w(IDR0, 4, 0)
    rig.nic.reset()
    assert rig.nic.mac == MAC
    assert rig.r(RCR, 4) == 0 and rig.r(RBSTART, 4) == 0 and rig.r(CR9346, 1) == 0
    assert rig.r(TCR, 4) == 0x74000000 and rig.r(CR, 1) == CR_BUFE


def test_tcr_reports_the_rtl8139c_hardware_version() -> None:
    """TCR bits 30:26 = 11101 and 23:22 = 00: RTL8139C; read-only."""
    rig = Rig()
    assert rig.r(TCR, 4) & 0x7CC00000 == 0x74000000
    rig.w(TCR, 4, 0xFFFFFFFF)
    assert rig.r(TCR, 4) & 0x7CC00000 == 0x74000000
    assert rig.r(TCR, 4) & 1 == 0  # CLRABT self-clears


def test_link_registers_report_100_mbit_link_up_and_follow_the_cable() -> None:
    """MSR: LINKB = 0 means link OK, SPEED_10 = 0 means 100 Mbit/s; BMSR link and AN."""
    rig = Rig()
    rig.start()
    assert rig.r(MSR, 1) & (MSR_LINKB | MSR_SPEED_10) == 0
    assert rig.r(BMSR, 2) & (BMSR_LINK | BMSR_AN_COMPLETE) == BMSR_LINK | BMSR_AN_COMPLETE
    assert rig.r(BMCR, 2) & (BMCR_ANE | BMCR_SPEED_100) == BMCR_ANE | BMCR_SPEED_100
    assert rig.r(ANLPAR, 2) & 0x01E0
    rig.nic.set_link(False)
    assert rig.r(MSR, 1) & MSR_LINKB and not rig.r(BMSR, 2) & BMSR_LINK
    assert rig.r(ISR, 2) & INT_LINKCHG and rig.irq.level
    assert rig.nic.receive(frame()) is False
    assert rig.nic.rx_dropped["link-down"] == 1
    rig.nic.set_link(True)
    assert not rig.r(MSR, 1) & MSR_LINKB


def test_wide_and_straddling_accesses_reach_each_register() -> None:
    rig = Rig()
    assert rig.r(IDR0, 8) == int.from_bytes(MAC + b"\0\0", "little")
    assert rig.r(CR - 1, 4) == CR_BUFE << 8 | 0xFFF0 << 16  # ERSR, CR, CAPR
    assert rig.r(0xFE, 4) == 0xFFFF0000  # past the window floats high
    rig.w(0xFF, 4, 0xFFFFFFFF)  # harmless


# -- interrupts and timer ----------------------------------------------------------------------

def test_isr_is_write_one_to_clear_and_the_line_follows_isr_and_imr() -> None:
    """ISR: writing 1 to a bit clears it; INTA is asserted while ISR & IMR != 0."""
    rig = Rig()
    rig.start(imr=0)
    rig.nic.receive(frame())
    rig.nic.set_link(False)
    assert rig.r(ISR, 2) == INT_ROK | INT_LINKCHG and not rig.irq.level
    rig.w(IMR, 2, INT_ROK)
    assert rig.irq.level
    rig.w(ISR, 2, INT_LINKCHG)
    assert rig.irq.level and rig.r(ISR, 2) == INT_ROK
    rig.w(ISR, 1, INT_ROK)
    assert not rig.irq.level and rig.r(ISR, 2) == 0
    rig.w(IMR, 2, 0xFFFF)
    assert rig.r(IMR, 2) == INT_MASK
    assert rig.irq.changes == [True, False]


def test_tctr_counts_pci_clocks_and_timerint_raises_timeout() -> None:
    """TCTR counts from the last write; ISR.TimeOut when it reaches TimerInt."""
    rig = Rig()
    rig.w(IMR, 2, INT_TIMEOUT)
    rig.w(TCTR, 4, 0)
    rig.clock.advance(3000)
    assert rig.r(TCTR, 4) == 100
    rig.w(TIMERINT, 4, 1000)  # 30 us after the TCTR write
    rig.clock.advance(26_000)
    assert not rig.irq.level
    rig.clock.advance(1_000)
    assert rig.r(ISR, 2) & INT_TIMEOUT and rig.irq.level
    rig.w(ISR, 2, INT_TIMEOUT)
    rig.w(TIMERINT, 4, 0)
    rig.clock.advance(1 << 40)
    assert not rig.r(ISR, 2)


# -- transmit ----------------------------------------------------------------------------------

def test_tx_through_all_four_descriptors_in_order() -> None:
    """Transmit Operation: TSADn/TSDn round robin; OWN then TOK set, ISR.TOK, interrupt."""
    rig = Rig()
    rig.start()
    for n in range(6):
        d = n % 4
        data = frame(OTHER, 60 + n, fill=n)
        rig.memory.data[TXBUF + 0x800 * d:TXBUF + 0x800 * d + len(data)] = data
        rig.w(TSAD0 + 4 * d, 4, TXBUF + 0x800 * d)
        rig.w(TSD0 + 4 * d, 4, len(data) | 0x3F << 16)
        assert rig.sent[-1] == data
        assert rig.r(TSD0 + 4 * d, 4) == TSD_TOK | TSD_OWN | 0x3F << 16 | len(data)
        assert rig.r(ISR, 2) == INT_TOK and rig.irq.level
        assert rig.r(TSAD, 2) >> 12 & (1 << d)
        rig.w(ISR, 2, INT_TOK)
    assert len(rig.sent) == 6 and rig.nic.tx_frames == 6


def test_tx_is_two_step_when_the_machine_takes_the_kick() -> None:
    """The TSD write only records the request; process_tx sends in ring order from the
    current descriptor and stops at the first one not handed over."""
    rig = Rig(kick=True)
    rig.start()
    for d in (0, 1, 3):
        rig.w(TSAD0 + 4 * d, 4, TXBUF + 0x100 * d)
        rig.memory.data[TXBUF + 0x100 * d] = d
        rig.w(TSD0 + 4 * d, 4, 60)
    assert rig.kicks == 3 and rig.sent == []
    assert rig.r(TSD0, 4) & TSD_OWN == 0 and rig.r(TSAD, 2) & 0xF == 0b0100
    assert rig.nic.process_tx() == 2
    assert [f[0] for f in rig.sent] == [0, 1]
    assert rig.r(TSD0 + 12, 4) & TSD_OWN == 0  # descriptor 3 waits for 2
    rig.w(TSAD0 + 8, 4, TXBUF + 0x200)
    rig.memory.data[TXBUF + 0x200] = 2
    rig.w(TSD0 + 8, 4, 60)
    assert rig.nic.process_tx() == 2
    assert [f[0] for f in rig.sent] == [0, 1, 2, 3]
    assert rig.nic.process_tx() == 0


def test_tx_waits_for_te_and_for_bus_mastering() -> None:
    rig = Rig()
    rig.start()
    rig.w(CR, 1, CR_RE)
    rig.w(TSAD0, 4, TXBUF)
    rig.w(TSD0, 4, 60)
    assert rig.sent == [] and rig.r(TSD0, 4) & TSD_OWN == 0
    rig.master = False
    rig.w(CR, 1, CR_RE | CR_TE)
    assert rig.sent == [] and rig.nic.process_tx() == 0
    rig.master = True
    assert rig.nic.process_tx() == 1 and len(rig.sent) == 1


@pytest.mark.parametrize("size", [0, 1793, 0x1FFF])
def test_tx_of_a_bad_size_completes_with_an_underrun_and_sends_nothing(size: int) -> None:
    """Maximum TX size is 1792 bytes: anything else ends OWN=1 TUN=1 TOK=0, ISR.TER."""
    rig = Rig()
    rig.start()
    rig.w(TSAD0, 4, TXBUF)
    rig.w(TSD0, 4, size)
    assert rig.sent == []
    assert rig.r(TSD0, 4) & (TSD_OWN | TSD_TUN | TSD_TOK) == TSD_OWN | TSD_TUN
    assert rig.r(ISR, 2) == INT_TER and rig.irq.level and rig.nic.tx_errors == 1
    rig.w(TSAD0 + 4, 4, TXBUF)
    rig.w(TSD0 + 4, 4, 1792)
    assert len(rig.sent[0]) == 1792


@pytest.mark.parametrize("address", [RAM - 59, 0xFFFFFFC0])
def test_tx_from_outside_ram_moves_nothing_and_reports_a_bus_error(address: int) -> None:
    rig = Rig()
    rig.start()
    rig.w(TSAD0, 4, address)
    rig.w(TSD0, 4, 60)
    assert rig.sent == [] and rig.aborts == 1
    assert rig.r(TSD0, 4) & (TSD_OWN | TSD_TUN | TSD_TOK) == TSD_OWN | TSD_TUN
    assert rig.r(ISR, 2) == INT_TER | INT_SERR
    rig.w(TSAD0 + 4, 4, TXBUF)
    rig.w(TSD0 + 4, 4, 60)
    assert len(rig.sent) == 1


def test_loopback_mode_sends_the_frame_to_our_own_receiver() -> None:
    """TCR.LBK = 11: the transmitter's output is looped back to the receiver."""
    rig = Rig()
    rig.start()
    rig.w(TCR, 4, TCR_LOOPBACK)
    data = frame(MAC, 100)
    rig.memory.data[TXBUF:TXBUF + 100] = data
    rig.w(TSAD0, 4, TXBUF)
    rig.w(TSD0, 4, 100)
    assert rig.sent == []
    assert rig.r(ISR, 2) == INT_TOK | INT_ROK
    assert rig.packet(0)[2][:100] == data


# -- receive -----------------------------------------------------------------------------------

def test_rx_packet_header_length_crc_and_alignment() -> None:
    """Receive Operation: status and length (frame + 4-byte CRC) lead each packet, the next
    one starts on a dword boundary; CBR follows; ISR.ROK and the interrupt."""
    rig = Rig()
    rig.start()
    offset = 0
    for size in (61, 62, 63, 64, 1514, MAX_FRAME):
        data = frame(MAC, size)
        assert rig.nic.receive(data)
        status, length, stored = rig.packet(offset)
        assert status == RX_ROK | RX_PAM and length == size + 4
        assert stored[:size] == data and zlib.crc32(stored) == FCS_RESIDUE
        offset += span(size)
        assert rig.r(CBR, 2) == offset and offset % 4 == 0
    assert rig.r(ISR, 2) == INT_ROK and rig.irq.level
    assert rig.nic.rx_frames == 6


def test_short_frames_are_padded_to_60_bytes() -> None:
    rig = Rig()
    rig.start()
    assert rig.nic.receive(frame(MAC, 20))
    status, length, stored = rig.packet(0)
    assert length == 64 and stored[20:60] == bytes(40)
    assert rig.r(CBR, 2) == 68


@pytest.mark.parametrize("size,reason", [(0, "runt"), (13, "runt"), (MAX_FRAME + 1, "oversize"),
                                         (9000, "oversize")])
def test_runt_and_oversized_frames_are_dropped_and_counted(size: int, reason: str) -> None:
    rig = Rig()
    rig.start()
    assert rig.nic.receive((MAC * 2000)[:size]) is False
    assert rig.nic.rx_dropped[reason] == 1 and rig.r(ISR, 2) == 0 and rig.r(CBR, 2) == 0


def test_rx_is_dropped_while_the_receiver_is_off() -> None:
    rig = Rig()
    assert rig.nic.receive(frame()) is False
    assert rig.nic.rx_dropped["disabled"] == 1
    assert rig.memory.accesses == []


def test_bufe_follows_capr_and_cbr() -> None:
    """CR.BUFE: set while the read pointer (CAPR + 16) equals CBR."""
    rig = Rig()
    rig.start()
    assert rig.r(CR, 1) & CR_BUFE
    rig.nic.receive(frame())
    assert not rig.r(CR, 1) & CR_BUFE
    rig.consume_to(span(64))
    assert rig.r(CR, 1) & CR_BUFE


def _advance_to(rig: Rig, target: int) -> None:
    """Move the empty ring's pointers to `target` with frames sized to land exactly."""
    while rig.r(CBR, 2) != target:
        left = target - rig.r(CBR, 2)
        size = min(left - 8, 1500) if left >= 68 + 68 or left == 68 else 1000
        assert rig.nic.receive(frame(MAC, size))
        rig.consume_to(rig.r(CBR, 2))


def test_rx_wraps_to_the_ring_start_with_wrap_clear() -> None:
    """RCR.WRAP = 0: a packet reaching the end of the ring continues at its start."""
    rig = Rig()
    rig.start()
    _advance_to(rig, RING_8K - 40)
    data = frame(MAC, 100)
    assert rig.nic.receive(data)
    packet = bytes(rig.memory.data[RING + RING_8K - 40:RING + RING_8K]) + \
        bytes(rig.memory.data[RING:RING + 68])
    assert struct.unpack_from("<HH", packet) == (RX_ROK | RX_PAM, 104)
    assert packet[4:104] == data and zlib.crc32(packet[4:108]) == FCS_RESIDUE
    assert rig.memory.data[RING + RING_8K] == FILL  # nothing written past the end
    assert rig.r(CBR, 2) == 68
    # The driver's read pointer wraps too: CAPR = (68 - 16) after it consumed it.
    assert not rig.r(CR, 1) & CR_BUFE
    rig.consume_to(68)
    assert rig.r(CR, 1) & CR_BUFE


def test_rx_runs_past_the_ring_end_with_wrap_set() -> None:
    """RCR.WRAP = 1: the rest of the packet goes past the end of the buffer, and the next
    packet starts at the offset where the overflow stopped."""
    rig = Rig()
    rig.start(RCR_APM | RCR_AB | RCR_WRAP)
    _advance_to(rig, RING_8K - 40)
    data = frame(MAC, 1500)
    assert rig.nic.receive(data)
    status, length, stored = rig.packet(RING_8K - 40)
    assert status == RX_ROK | RX_PAM and stored[:1500] == data
    assert zlib.crc32(stored) == FCS_RESIDUE
    end = RING_8K - 40 + 4 + 1504
    assert end - RING_8K <= RX_WRAP_SLACK
    assert rig.memory.data[RING:RING + 16] != data[:16]
    assert rig.r(CBR, 2) == (RING_8K - 40 + span(1500)) % RING_8K
    rig.consume_to(RING_8K + rig.r(CBR, 2))  # the driver's counter runs on past the end
    assert rig.r(CR, 1) & CR_BUFE


def test_wrap_is_ignored_for_the_64k_ring() -> None:
    """RBLEN = 11 (64K + 16): the WRAP bit is invalid, packets wrap to the start."""
    rig = Rig(ram=0x30000)
    rig.start(RCR_APM | RCR_WRAP, rblen=3, ring=0x10000)
    _advance_to(rig, 0x10000 - 40)
    assert rig.nic.receive(frame(MAC, 100))
    assert rig.memory.data[0x20000] == FILL and rig.r(CBR, 2) == 68


def test_full_ring_sets_rxovw_counts_mpc_and_never_overwrites_unread_data() -> None:
    """ISR.RxBufOvw and MPC when the ring has no room; unread packets are left intact."""
    rig = Rig()
    rig.start()
    stored = 0
    while rig.nic.receive(frame(MAC, 1000, fill=stored)):
        stored += 1
    assert stored == RING_8K // span(1000) - (RING_8K % span(1000) == 0)
    snapshot = bytes(rig.memory.data)
    assert rig.r(ISR, 2) & INT_RXOVW and rig.r(MPC, 4) == 1
    assert rig.nic.receive(frame(MAC, 60)) is True  # a small one still fits
    assert rig.nic.receive(frame(MAC, 1000)) is False
    assert rig.r(MPC, 4) == 2 and rig.nic.rx_dropped["overflow"] == 2
    assert rig.memory.data[RING:RING + stored * span(1000)] == snapshot[RING:RING + stored *
                                                                       span(1000)]
    assert not rig.nic.can_receive()
    rig.w(MPC, 4, 0x1234)
    assert rig.r(MPC, 4) == 0
    rig.consume_to(span(1000))  # one packet read: room again
    assert rig.nic.can_receive(1000) and not rig.nic.can_receive(MAX_FRAME)
    assert rig.nic.receive(frame(MAC, 1000))


def test_rx_ring_outside_ram_drops_the_frame_and_keeps_running() -> None:
    """A ring the guest put outside RAM: nothing moves, ISR.SERR, master abort reported."""
    rig = Rig()
    rig.start(ring=RAM - 0x40)
    before = bytes(rig.memory.data)
    assert rig.nic.receive(frame(MAC, 100)) is False
    assert bytes(rig.memory.data) == before
    assert rig.r(ISR, 2) == INT_SERR and rig.aborts == 1 and rig.r(CBR, 2) == 0
    assert rig.nic.rx_dropped["dma-error"] == 1
    rig.w(RBSTART, 4, RING)
    assert rig.nic.receive(frame(MAC, 100))


def test_master_abort_can_set_the_pci_status_bit() -> None:
    fn = Rtl8139Pci()
    memory = TrackingMemory()
    nic = Rtl8139(memory, fn.irq, lambda f: None, FakeClock(), mac=MAC,
                  on_master_abort=lambda: fn.set_status(STATUS_RECEIVED_MASTER_ABORT))
    nic.write(CR, 1, CR_TE)
    nic.write(TSAD0, 4, RAM)
    nic.write(TSD0, 4, 60)
    assert fn.status & STATUS_RECEIVED_MASTER_ABORT


# -- the address filter ------------------------------------------------------------------------

def ether_crc_msb_first(data: bytes) -> int:
    """Reference: the CRC-32 register shifted left (polynomial 04C11DB7), bits fed LSB first
    as Ethernet sends them, no final inversion."""
    crc = 0xFFFFFFFF
    for byte in data:
        for bit in range(8):
            feedback = (crc >> 31) ^ (byte >> bit & 1)
            crc = (crc << 1) & 0xFFFFFFFF
            if feedback:
                crc ^= 0x04C11DB7
    return crc


@given(st.binary(min_size=6, max_size=6))
def test_multicast_hash_is_the_top_six_bits_of_the_big_endian_crc(address: bytes) -> None:
    assert multicast_hash_index(address) == ether_crc_msb_first(address) >> 26


@pytest.mark.parametrize("rcr,dest,accepted,status", [
    (RCR_APM, MAC, True, RX_PAM),
    (RCR_APM, OTHER, False, 0),
    (RCR_AB, MAC, False, 0),
    (RCR_AB, b"\xff" * 6, True, RX_BAR),
    (RCR_APM, b"\xff" * 6, False, 0),
    (RCR_AAP, OTHER, True, 0),
    (RCR_AAP, MAC, True, RX_PAM),
    (RCR_AAP, b"\xff" * 6, False, 0),  # AAP is "all physical-address packets"
])
def test_address_filter(rcr: int, dest: bytes, accepted: bool, status: int) -> None:
    """RCR: AAP, APM, AB select what reaches the ring; PAM/BAR report why."""
    rig = Rig()
    rig.start(rcr)
    assert rig.nic.receive(frame(dest)) is accepted
    if accepted:
        assert rig.packet(0)[0] == RX_ROK | status
    else:
        assert rig.nic.rx_dropped["filtered"] == 1 and rig.r(ISR, 2) == 0


def test_multicast_passes_with_am_and_its_hash_bit_only() -> None:
    """RCR.AM and MAR0-7: bit n of the 64-bit filter is the destination's hash."""
    group = bytes.fromhex("01005e000001")
    bit = multicast_hash_index(group)
    rig = Rig()
    rig.start(RCR_AM)
    assert rig.nic.receive(frame(group)) is False  # filter all zeros
    rig.w(MAR0 + bit // 8, 1, 1 << bit % 8)
    assert rig.nic.receive(frame(group))
    assert rig.packet(0)[0] == RX_ROK | RX_MAR
    rig.w(RCR, 4, RCR_APM)
    assert rig.nic.receive(frame(group)) is False


# -- robustness --------------------------------------------------------------------------------

REGISTER_OFFSETS = st.one_of(st.integers(0, 255),
                             st.sampled_from([CR, RCR, RBSTART, CAPR, ISR, IMR, TCR, TSD0,
                                              TSD0 + 4, TSAD0, CR9346, TIMERINT, TCTR]))
FUZZ_RAM = 0x14000  # small, so rings and buffers often run off the end of RAM
DESTS = st.sampled_from([MAC, OTHER, b"\xff" * 6, bytes.fromhex("01005e000001")])


@st.composite
def operations(draw: Any) -> list[tuple[Any, ...]]:
    ops: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["write", "read", "rx", "tx", "setup", "poke", "time"]))
        if kind == "write":
            ops.append((kind, draw(REGISTER_OFFSETS), draw(st.sampled_from([1, 2, 4])),
                        draw(st.integers(0, 0xFFFFFFFF))))
        elif kind == "read":
            ops.append((kind, draw(REGISTER_OFFSETS), draw(st.sampled_from([1, 2, 4]))))
        elif kind == "rx":
            size = draw(st.integers(0, 1600))
            ops.append((kind, draw(DESTS) + draw(st.binary(min_size=size, max_size=size))))
        elif kind == "tx":
            ops.append((kind, draw(st.integers(0, 3)),
                        draw(st.integers(0, FUZZ_RAM + 0x100) | st.integers(FUZZ_RAM - 1800,
                                                                          FUZZ_RAM)),
                        draw(st.integers(0, 0x3FFF) | st.integers(1, 1800))))
        elif kind == "setup":
            ops.append((kind, draw(st.integers(0, FUZZ_RAM)) & ~3,
                        draw(st.integers(0, 0xFFFFFFFF)), draw(st.integers(0, 0xFFFF))))
        elif kind == "poke":
            ops.append((kind, draw(st.integers(0, FUZZ_RAM - 16)), draw(st.binary(max_size=16))))
        else:
            ops.append((kind, draw(st.integers(0, 1 << 33))))
    return ops


@settings(max_examples=150, deadline=None)
@given(operations())
def test_random_guests_and_frames_never_break_the_model(ops: list[tuple[Any, ...]]) -> None:
    """Whatever the guest programs and whatever arrives: nothing raises, ISR/IMR stay within
    their 16 defined bits, the line follows them, every DMA stays inside the ring (plus the
    WRAP slack) or a programmed TX buffer, a dropped frame leaves memory untouched, and CBR
    stays dword aligned inside the ring."""
    rig = Rig(ram=FUZZ_RAM)
    nic = rig.nic
    flagged: list[tuple[str, int, int]] = []

    def judge(kind: str, gpa: int, size: int) -> None:
        if kind == "read":
            ok = any(nic.read(TSAD0 + 4 * d, 4) == gpa and 0 < size <= 1792
                     for d in range(4))
        else:
            base = nic.read(RBSTART, 4)
            ring = 8192 << (nic.read(RCR, 4) >> 11 & 3)
            ok = kind == "view" and base <= gpa and gpa + size <= base + ring + MAX_FRAME + 4
        if not ok:
            flagged.append((kind, gpa, size))

    rig.memory.judge = judge
    for op in ops:
        kind = op[0]
        if kind == "write":
            nic.write(op[1], op[2], op[3] & ((1 << 8 * op[2]) - 1))
        elif kind == "read":
            assert 0 <= nic.read(op[1], op[2]) < 1 << 8 * op[2]
        elif kind == "rx":
            before = bytes(rig.memory.data)
            if nic.receive(op[1]):
                ring = 8192 << (nic.read(RCR, 4) >> 11 & 3)
                assert nic.read(CBR, 2) < ring
            else:
                assert bytes(rig.memory.data) == before
        elif kind == "tx":
            nic.write(TSAD0 + 4 * op[1], 4, op[2])
            nic.write(TSD0 + 4 * op[1], 4, op[3])
            nic.process_tx()
        elif kind == "setup":
            nic.write(RBSTART, 4, op[1])
            nic.write(RCR, 4, op[2])
            nic.write(CR, 1, CR_RE | CR_TE)
            nic.write(IMR, 2, op[3])
        elif kind == "poke":
            rig.memory.data[op[1]:op[1] + len(op[2])] = op[2]
        else:
            rig.clock.advance(op[1], max_callbacks=1000)
        isr, imr = nic.read(ISR, 2), nic.read(IMR, 2)
        assert isr & ~INT_MASK == 0 and imr & ~INT_MASK == 0
        assert rig.irq.level == bool(isr & imr)
        assert nic.read(CBR, 2) % 4 == 0
        for sent in rig.sent:
            assert 0 < len(sent) <= 1792
    assert flagged == []
    copy = Rtl8139.from_state(nic.state(), rig.memory, FakeIrq(), rig.sent.append, rig.clock)
    assert copy.state() == nic.state()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(14, MAX_FRAME), min_size=1, max_size=60),
       st.sampled_from([0, RCR_WRAP]), st.integers(0, 3))
def test_a_driver_reading_every_packet_sees_every_frame_in_order(
        sizes: list[int], wrap: int, consume_every: int) -> None:
    """A model 8139too-style reader: walk the ring from the read pointer while BUFE is clear,
    take each packet (contiguous with WRAP=1, wrapping with WRAP=0), advance CAPR."""
    rig = Rig(ram=RING + RING_8K + 16 + RX_WRAP_SLACK)
    rig.start(RCR_APM | wrap)
    cur = 0
    expected: list[bytes] = []
    got: list[bytes] = []

    def drain() -> None:
        nonlocal cur
        while not rig.r(CR, 1) & CR_BUFE:
            offset = cur % RING_8K
            ring = bytes(rig.memory.data[RING:RING + RING_8K + 16 + RX_WRAP_SLACK])
            if not wrap:
                ring = ring[:RING_8K] * 2
            status, length = struct.unpack_from("<HH", ring, offset)
            assert status & RX_ROK
            got.append(ring[offset + 4:offset + 4 + length - 4])
            assert zlib.crc32(ring[offset + 4:offset + 4 + length]) == FCS_RESIDUE
            cur = (cur + length + 4 + 3) & ~3
            rig.w(CAPR, 2, (cur - 16) & 0xFFFF)

    for i, size in enumerate(sizes):
        data = frame(MAC, size, fill=i & 0xFF)
        if rig.nic.receive(data):
            expected.append(data + bytes(max(0, 60 - size)))
        if consume_every and i % consume_every == 0:
            drain()
    drain()
    assert got == expected
    assert rig.nic.rx_frames == len(expected)
    assert rig.nic.rx_dropped["overflow"] == len(sizes) - len(expected)


def test_eeprom_image_puts_the_mac_at_words_7_to_9() -> None:
    words = eeprom_image(MAC)
    assert words[7:10] == [0x5452, 0x1200, 0x5634]


# -- snapshots ---------------------------------------------------------------------------------

def test_state_round_trip_keeps_registers_ring_timer_eeprom_and_the_line() -> None:
    rig = Rig(kick=True)
    rig.start()
    rig.nic.receive(frame())
    rig.w(TSAD0, 4, TXBUF)
    rig.w(TSD0, 4, 60)  # pending, not yet sent
    rig.w(TCTR, 4, 0)
    rig.w(TIMERINT, 4, 1000)
    eeprom_command(rig, "00" + "110000")
    eeprom_command(rig, "01" + "001010", 0xCAFE)
    rig.clock.advance(3000)
    state = rig.nic.state()
    irq, sent = FakeIrq(), list[bytes]()
    copy = Rtl8139.from_state(state, rig.memory, irq, sent.append, rig.clock)
    assert copy.state() == state and irq.level
    assert copy.read(CBR, 2) == span(64) and copy.read(TCTR, 4) == 100
    assert copy.eeprom.word(10) == 0xCAFE and copy.eeprom.write_enabled
    assert copy.process_tx() == 1 and len(sent) == 1
    copy.write(ISR, 2, 0xFFFF)
    rig.clock.advance(27_000)
    assert copy.read(ISR, 2) == INT_TIMEOUT


@pytest.mark.parametrize("offset,size,value", [
    (ISR, 2, 0x0100),  # a reserved ISR bit
    (TCR, 4, 0x78000000),  # another chip's version
    (CBR, 2, 2),  # unaligned write pointer
    (0x06, 1, 1),  # reserved byte
    (CR9346, 1, EEM_AUTOLOAD << 6),
])
def test_from_state_refuses_impossible_registers(offset: int, size: int, value: int) -> None:
    rig = Rig()
    state = rig.nic.state()
    regs = bytearray(state.registers)
    regs[offset:offset + size] = value.to_bytes(size, "little")
    bad = Rtl8139State(bytes(regs), 0, 0, True, state.eeprom_words)
    with pytest.raises(ValueError):
        Rtl8139.from_state(bad, rig.memory, FakeIrq(), rig.sent.append, rig.clock)



def test_rx_ring_full_means_receiving_with_no_room_not_receiver_off() -> None:
    """What a backend asks before taking a frame off the wire: hold it back only while the
    guest's 8 KiB ring is full; with the receiver off the chip drops (and counts) frames."""
    rig = Rig()
    assert not rig.nic.rx_ring_full()  # receiver off: nothing to hold frames for
    rig.start()
    assert not rig.nic.rx_ring_full()
    while rig.nic.receive(frame(size=1514)):
        pass
    assert rig.nic.rx_ring_full()
    rig.consume_to(rig.r(CBR, 2))  # the driver took everything
    assert not rig.nic.rx_ring_full()
