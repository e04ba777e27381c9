"""Guest-controlled lengths, addresses, offsets and counts of the RTL8139
(pyhvm/devices/rtl8139.py) and its EEPROM, each driven through the register window and
guest RAM at 0, its maximum, maximum + 1 and 2^32 - 1 (or the register's full width).
docs/security/guest-lengths.md lists every value with the test that proves it; edges
test_rtl8139.py or the history replays already cover are cited there, not repeated.

Guest RAM is the fuzzer's `CheckedMemory` (1 MiB at 0, a 64 KiB hole, 1 MiB above), which
judges each DMA on its own; the subclass here also records every access, so a test can
check that receive DMA stays inside the ring the guest programmed."""

from __future__ import annotations

import struct

import pytest

from pyhvm.devices.rtl8139 import (CAPR, CBR, CR, CR_BUFE, CR_RE, CR_RST, CR_TE, CR9346,
                                   EE_CS, EE_DI, EE_DO, EE_SK, EEM_PROGRAM, IMR, INT_MASK,
                                   INT_ROK, INT_RXOVW, INT_SERR, INT_TER, INT_TIMEOUT,
                                   INT_TOK, ISR, MAX_TX_SIZE, MPC, RBSTART, RCR, RCR_AB,
                                   RCR_APM, RCR_WRAP, RCR_WRITABLE, RING_BASE_SIZE,
                                   RX_WRAP_SLACK, TCTR_TICK_NS, TIMERINT, TSAD0, TSD0,
                                   TSD_OWN, TSD_SIZE, TSD_TOK, TSD_TUN, TSD_WRITABLE, Rtl8139)
from pyhvm.fuzz.memory import CheckedMemory
from tests.fakes import FakeClock, FakeIrq

MAC = bytes.fromhex("525400123456")
PEER = bytes.fromhex("52540065432a")
LOW_TOP = 0x100000
FILL = 0xEE
U32_MAX = 0xFFFF_FFFF


class RecordingMemory(CheckedMemory):
    """CheckedMemory that also lists (operation, gpa, size) of every DMA it served."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, int, int]] = []
        for base, size in self.layout:
            self.inner.fill(base, size, FILL)

    def read(self, gpa: int, size: int) -> bytes:
        data = super().read(gpa, size)
        self.log.append(("read", gpa, size))
        return data

    def view(self, gpa: int, size: int) -> memoryview:
        view = super().view(gpa, size)
        self.log.append(("view", gpa, size))
        return view


class Rig:
    def __init__(self) -> None:
        self.memory = RecordingMemory()
        self.clock = FakeClock(1_000_000)
        self.irq = FakeIrq()
        self.sent: list[bytes] = []
        self.aborts = 0
        self.nic = Rtl8139(self.memory, self.irq, self.sent.append, self.clock, mac=MAC,
                           on_master_abort=self._abort)

    def _abort(self) -> None:
        self.aborts += 1

    def r(self, offset: int, size: int) -> int:
        return self.nic.read(offset, size)

    def w(self, offset: int, size: int, value: int) -> None:
        self.nic.write(offset, size, value)

    def open(self, ring: int = 0x10000, rcr: int = RCR_APM | RCR_AB) -> None:
        self.w(CR, 1, CR_RST)
        self.w(RBSTART, 4, ring)
        self.w(CR, 1, CR_RE | CR_TE)
        self.w(RCR, 4, rcr)
        self.w(IMR, 2, INT_MASK)

    def clean(self) -> bool:
        return self.memory.findings == []


def frame(size: int = 64, fill: int = 0x5A) -> bytes:
    body = MAC + PEER + b"\x08\x00"
    return body + bytes([fill]) * (size - len(body))


def span(length: int) -> int:
    return (4 + max(length, 60) + 4 + 3) & ~3


# -- TSD.SIZE (13 bits; 1-1792) ----------------------------------------------------------

def test_tsd_size_max_sends_exactly_1792_bytes_from_the_buffer() -> None:
    """0, 1793 and 0x1FFF end in TUN without a read (test_rtl8139, the CVE-2018-17958
    replay); the maximum reads and sends exactly 1792 bytes."""
    rig = Rig()
    rig.open()
    payload = bytes((i * 13) & 0xFF for i in range(MAX_TX_SIZE))
    rig.memory.write(0x3000, payload)
    rig.w(TSAD0, 4, 0x3000)
    rig.w(TSD0, 4, MAX_TX_SIZE)
    assert rig.sent == [payload] and rig.memory.log[-1] == ("read", 0x3000, MAX_TX_SIZE)
    assert rig.r(TSD0, 4) & (TSD_OWN | TSD_TOK | TSD_TUN) == TSD_OWN | TSD_TOK


def test_tsd_written_with_all_ones_keeps_own_and_sends_nothing() -> None:
    """2^32-1: only the writable bits (SIZE, OWN, ERTXTH) are taken, and OWN = 1 means the
    driver has not handed the buffer over: nothing is read or sent."""
    rig = Rig()
    rig.open()
    rig.w(TSAD0, 4, 0x3000)
    rig.w(TSD0, 4, U32_MAX)
    assert rig.sent == [] and rig.memory.log == [] and rig.r(ISR, 2) == 0
    assert rig.r(TSD0, 4) == TSD_WRITABLE
    rig.w(TSD0, 4, U32_MAX & ~TSD_OWN)  # now handed over with SIZE 0x1FFF: an underrun
    assert rig.sent == [] and rig.memory.log == [] and rig.r(ISR, 2) == INT_TER
    assert rig.r(TSD0, 4) & (TSD_OWN | TSD_TUN | TSD_SIZE) == TSD_OWN | TSD_TUN | TSD_SIZE


# -- TSAD (32 bits) ------------------------------------------------------------------------

@pytest.mark.parametrize("address,ok", [
    (0, True),                        # 0
    (LOW_TOP - 64, True),             # max: the frame ends exactly at the RAM end
    (LOW_TOP - 63, False),            # max + 1: its last byte is in the hole
    (U32_MAX, False),                 # 2^32-1: past 4 GiB, not even asked of the memory
])
def test_tsad_edges(address: int, ok: bool) -> None:
    rig = Rig()
    rig.open()
    if ok:
        rig.memory.write(address, frame())
    rig.w(TSAD0, 4, address)
    rig.w(TSD0, 4, 64)
    if ok:
        assert rig.sent == [frame()] and rig.r(ISR, 2) == INT_TOK
    else:
        assert rig.sent == [] and rig.r(ISR, 2) == INT_TER | INT_SERR and rig.aborts == 1
        assert rig.r(TSD0, 4) & (TSD_OWN | TSD_TUN | TSD_TOK) == TSD_OWN | TSD_TUN
    assert rig.clean()


# -- RBSTART (32 bits) -----------------------------------------------------------------------

@pytest.mark.parametrize("ring,ok", [
    (0, True),                             # 0: a ring at guest address 0
    (LOW_TOP - span(64), True),            # max: the first packet ends at the RAM end
    (LOW_TOP - span(64) + 4, False),       # max + 1 (dword step): it would cross into the hole
    (U32_MAX, False),                      # 2^32-1: past 4 GiB
])
def test_rbstart_edges(ring: int, ok: bool) -> None:
    rig = Rig()
    rig.open(ring)
    assert rig.nic.receive(frame()) is ok
    assert all(op == "view" and gpa >= ring for op, gpa, _ in rig.memory.log)
    if ok:
        assert rig.r(ISR, 2) == INT_ROK and rig.r(CBR, 2) == span(64)
        assert rig.memory.read(ring + 4, 64) == frame()
    else:
        assert rig.r(ISR, 2) == INT_SERR and rig.aborts == 1 and rig.r(CBR, 2) == 0
        assert rig.nic.rx_dropped["dma-error"] == 1
    assert rig.clean()


# -- RCR.RBLEN (2 bits) and RCR written with all ones ----------------------------------------

@pytest.mark.parametrize("rblen", [0, 3])
def test_rblen_edges_every_packet_stays_inside_the_ring(rblen: int) -> None:
    """8 KiB (0) and 64 KiB (3): 200 full-size frames consumed one by one wrap round the
    ring; every receive DMA lies inside [RBSTART, RBSTART + ring)."""
    ring_size = RING_BASE_SIZE << rblen
    rig = Rig()
    rig.open(0x20000, RCR_APM | rblen << 11)
    for i in range(200):
        assert rig.nic.receive(frame(1514, fill=i))
        rig.w(CAPR, 2, (rig.r(CBR, 2) - 16) & 0xFFFF)
        assert rig.r(CBR, 2) < ring_size and rig.r(CBR, 2) % 4 == 0
    assert all(0x20000 <= gpa and gpa + size <= 0x20000 + ring_size
               for _, gpa, size in rig.memory.log)
    assert rig.clean()


def test_rcr_written_with_all_ones_is_a_64k_ring_that_still_wraps_at_its_end() -> None:
    """2^32-1 keeps the writable bits: RBLEN 3 (64 KiB) and WRAP, which is invalid for the
    64 KiB ring, so packets wrap at its end instead of running past it."""
    rig = Rig()
    rig.open(0x20000)
    rig.w(RCR, 4, U32_MAX)
    assert rig.r(RCR, 4) == RCR_WRITABLE and rig.r(RCR, 4) & RCR_WRAP
    for i in range(100):
        assert rig.nic.receive(frame(1514, fill=i))
        rig.w(CAPR, 2, (rig.r(CBR, 2) - 16) & 0xFFFF)
    assert max(gpa + size for _, gpa, size in rig.memory.log) <= 0x20000 + 0x10000
    assert rig.clean()


def test_wrap_slack_is_the_most_a_packet_runs_past_an_8k_ring() -> None:
    rig = Rig()
    rig.open(0x20000, RCR_APM | RCR_WRAP)
    for i in range(40):
        assert rig.nic.receive(frame(1514, fill=i))
        rig.w(CAPR, 2, (rig.r(CBR, 2) - 16) & 0xFFFF)
    end = max(gpa + size for _, gpa, size in rig.memory.log)
    assert 0x20000 + RING_BASE_SIZE < end <= 0x20000 + RING_BASE_SIZE + RX_WRAP_SLACK


# -- CAPR (16 bits; the read pointer is CAPR + 16 modulo the ring) ----------------------------

@pytest.mark.parametrize("capr,size", [(0, 2), (0xFFF0, 2), (0xFFFF, 2), (U32_MAX, 4)])
def test_capr_edges_never_let_a_packet_over_unread_data(capr: int, size: int) -> None:
    """CAPR 0 (read pointer 16), 0xFFF0 (read pointer 0: the default), 0xFFFF (15, not
    even dword aligned) and 2^32-1 as a dword (which also hits the read-only CBR, kept):
    a flood of frames stops at the read pointer, the bytes from there to the old CBR are
    never overwritten, CBR stays dword aligned inside the ring."""
    rig = Rig()
    ring = 0x20000
    rig.open(ring)
    for i in range(3):
        assert rig.nic.receive(frame(1000, fill=i))
    cbr = rig.r(CBR, 2)
    rig.w(CAPR, size, capr)
    read = ((capr & 0xFFFF) + 16) % RING_BASE_SIZE
    assert rig.r(CAPR, 2) == capr & 0xFFFF and rig.r(CBR, 2) == cbr
    unread = (cbr - read) % RING_BASE_SIZE
    snapshot = rig.memory.read(ring, RING_BASE_SIZE)
    stored = 0
    while rig.nic.receive(frame(60, fill=0x99)):
        stored += 1
        assert stored < 200
    assert rig.r(ISR, 2) & INT_RXOVW and rig.r(MPC, 4) == 1
    after = rig.memory.read(ring, RING_BASE_SIZE)
    for k in range(unread):
        at = (read + k) % RING_BASE_SIZE
        assert after[at] == snapshot[at], f"unread byte {at:#x} overwritten"
    assert rig.r(CBR, 2) % 4 == 0 and rig.r(CBR, 2) < RING_BASE_SIZE
    assert not rig.r(CR, 1) & CR_BUFE
    assert rig.clean()


# -- TimerInt (32 bits; 0 disables) ----------------------------------------------------------

@pytest.mark.parametrize("value", [0, 1, U32_MAX])
def test_timerint_edges(value: int) -> None:
    """0 arms nothing; 1 fires after one PCI clock; 2^32-1 after 2^32-1 clocks (about
    129 s), then once per 2^32 clocks: never a storm, never more than one timer."""
    rig = Rig()
    rig.open()
    rig.w(TIMERINT, 4, value)
    assert rig.r(TIMERINT, 4) == value
    if value == 0:
        assert rig.clock.pending() == 0
        rig.clock.advance(1 << 40)
        assert not rig.r(ISR, 2) & INT_TIMEOUT
        return
    assert rig.clock.pending() == 1
    start = rig.clock.now
    rig.clock.advance(value * TCTR_TICK_NS - 1)
    assert not rig.r(ISR, 2) & INT_TIMEOUT
    rig.clock.advance(TCTR_TICK_NS)
    assert rig.r(ISR, 2) & INT_TIMEOUT and rig.clock.pending() == 1
    rig.w(ISR, 2, INT_TIMEOUT)
    assert rig.clock.scheduled[-1] - start == (value + (1 << 32)) * TCTR_TICK_NS


# -- MPC (24 bits) ---------------------------------------------------------------------------

def test_mpc_wraps_at_24_bits_and_any_write_clears_it() -> None:
    rig = Rig()
    rig.open()
    state = rig.nic.state()
    registers = bytearray(state.registers)
    registers[MPC:MPC + 4] = (0xFFFFFF).to_bytes(4, "little")
    nic = Rtl8139.from_state(type(state)(bytes(registers), state.current_tx, state.tctr,
                                         state.link_up, state.eeprom_words,
                                         state.eeprom_write_enabled),
                             rig.memory, FakeIrq(), rig.sent.append, rig.clock)
    while nic.receive(frame(1000)):
        pass
    assert nic.read(MPC, 4) == 0  # max + 1 wraps to 0 (24-bit counter)
    nic.receive(frame(1000))
    assert nic.read(MPC, 4) == 1
    nic.write(MPC, 4, U32_MAX)
    assert nic.read(MPC, 4) == 0


# -- register window offsets (0-255) ---------------------------------------------------------

@pytest.mark.parametrize("offset,size,expect", [
    (0, 8, int.from_bytes(MAC + bytes(2), "little")),  # offset 0: IDR0-5, two reserved
    (0xF8, 8, 0),                                     # the window's last 8 bytes: reserved
    (0xFC, 8, 0xFFFF_FFFF_0000_0000),                 # 0xFC-0xFF, then 4 lanes past 255
    (0xFF, 4, 0xFFFF_FF00),                           # offset 255, then 3 lanes past
    (0xFF, 8, 0xFFFF_FFFF_FFFF_FF00),
])
def test_window_accesses_past_offset_255_float_and_drop(offset: int, size: int,
                                                        expect: int) -> None:
    rig = Rig()
    rig.open()
    assert rig.r(offset, size) == expect
    before = rig.nic.state().registers
    rig.w(offset, size, (1 << 8 * size) - 1)  # all ones: IDR is locked, the rest reserved
    assert rig.nic.state().registers == before and rig.r(offset, size) == expect
    assert rig.clean()


# -- the EEPROM's word address (6 bits) ------------------------------------------------------

def _pins(rig: Rig, bits: int) -> None:
    rig.w(CR9346, 1, EEM_PROGRAM << 6 | bits)


def _clock_in(rig: Rig, bits: str) -> None:
    for char in bits:
        di = EE_DI if char == "1" else 0
        _pins(rig, EE_CS | di)
        _pins(rig, EE_CS | di | EE_SK)


def _read_words(rig: Rig, address: int, count: int) -> list[int]:
    """READ at `address` (6 bits), then `count` words of sequential read."""
    _pins(rig, 0)
    _pins(rig, EE_CS)
    _clock_in(rig, "110" + f"{address:06b}")
    _pins(rig, EE_CS)  # SK low: each rise from here shifts out one data bit
    words = []
    for _ in range(count):
        word = 0
        for _ in range(16):
            _pins(rig, EE_CS | EE_SK)
            word = word << 1 | (rig.r(CR9346, 1) & EE_DO)
            _pins(rig, EE_CS)
        words.append(word)
    rig.w(CR9346, 1, 0)
    return words


@pytest.mark.parametrize("address", [0, 63])
def test_eeprom_address_edges_and_the_wrap_after_word_63(address: int) -> None:
    """Word 0 (the signature) and word 63 (max); the sequential read past 63 (max + 1)
    continues at word 0, never outside the 64 words."""
    rig = Rig()
    words = rig.nic.eeprom.words
    got = _read_words(rig, address, 3)
    assert got == [words[(address + i) % 64] for i in range(3)]


def test_eeprom_write_at_word_63_and_a_full_width_program_stream() -> None:
    """EWEN, WRITE 63 (max address), then 64 ones clocked in a row (the 2^32-1 of a bit
    stream): the chip takes what an instruction says and ignores the rest until CS drops."""
    rig = Rig()
    for bits in ("100110000", "101111111" + f"{0xBEEF:016b}"):  # EWEN, WRITE 63 0xBEEF
        _pins(rig, 0)
        _pins(rig, EE_CS)
        _clock_in(rig, bits)
        _pins(rig, 0)
    assert rig.nic.eeprom.words[63] == 0xBEEF
    _pins(rig, EE_CS)
    _clock_in(rig, "1" * 64)  # ERASE 63, then 55 clocks that mean nothing
    _pins(rig, 0)
    assert rig.nic.eeprom.words[63] == 0xFFFF
    assert len(rig.nic.eeprom.words) == 64
    assert _read_words(rig, 0, 1) == [0x8129]
