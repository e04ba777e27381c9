"""Guest-controlled counts, indices and widths of the PC's small devices: the 16550 UART,
the i8042 and its keyboard, the 8259 pair, the 8254, the CMOS RTC, and the one-port devices
(POST code, debug console and its line log, QEMU's debug exit), each driven through its
ports at 0, its maximum, maximum + 1 and 2^32 - 1 (or the register's full width, said where
narrower). docs/security/guest-lengths.md lists every value with the test that proves it;
the history replays in test_device_history_pc.py cover the flooding classes."""

from __future__ import annotations

import pytest

from pyhvm.devices.debug_exit import DebugExit
from pyhvm.devices.debugcon import LineLog
from pyhvm.devices.misc import PostCode
from pyhvm.devices.pic8259 import DualPic
from pyhvm.devices.pit8254 import (CONTROL_OFFSET, MIN_IRQ_PERIOD_TICKS, PIT_HZ)
from pyhvm.devices.ps2kbd import ACK, BAT_OK, BUFFER_SIZE, RESEND, Ps2Keyboard
from pyhvm.devices.rtc import REG_A, REG_B, REG_C, REG_DAY_OF_MONTH, REG_MONTH
from pyhvm.devices.uart16550 import (IIR_RDA, LSR_DR, LSR_OE, MCR_LOOP, Uart16550)
from tests.fakes import FakeIrq
from tests.unit.test_i8042 import Kbc
from tests.unit.test_pit8254 import make as make_pit
from tests.unit.test_rtc import SEC, make as make_rtc, rd, wr

U32_MAX = 0xFFFF_FFFF


# -- UART: the divisor latch (16 bits) --------------------------------------------------------

def _timeout_8n1(divisor: int) -> int:
    """Four 10-bit characters at 115200 / divisor baud (PC16550D; a divisor of 0 is not
    defined by the data sheet: we take the fastest rate)."""
    return 4 * 20 * max(divisor, 1) * 1_000_000_000 // (2 * 115_200)


@pytest.mark.parametrize("divisor", [0, 1, 0xFFFF])
def test_uart_divisor_edges(divisor: int) -> None:
    uart = Uart16550(FakeIrq(), lambda data: None)
    uart.write(3, 1, 0x83)  # DLAB, 8N1
    uart.write(0, 1, divisor & 0xFF)
    uart.write(1, 1, divisor >> 8)
    assert (uart.read(0, 1), uart.read(1, 1)) == (divisor & 0xFF, divisor >> 8)
    uart.write(3, 1, 0x03)
    assert uart.divisor == divisor and uart.char_timeout_ns() == _timeout_8n1(divisor)


def test_uart_dword_of_ones_at_dll_reaches_four_registers() -> None:
    """2^32-1 at the base with DLAB set: DLL, DLM, FCR and LCR each take 0xFF, so the
    divisor is 0xFFFF, the FIFOs are on with the 14-byte trigger and DLAB stays set."""
    uart = Uart16550(FakeIrq(), lambda data: None)
    uart.write(3, 1, 0x80)
    uart.write(0, 4, U32_MAX)
    assert uart.divisor == 0xFFFF and uart.read(3, 1) == 0xFF
    assert uart.read(2, 1) & 0xC0 == 0xC0  # IIR: FIFOs enabled
    assert uart.read(7, 4) == 0xFFFFFF00 | uart.read(7, 1)  # SCR, then three lanes float


# -- UART: receive FIFO depth (16 with FIFOs, 1 without) and trigger level index -------------

@pytest.mark.parametrize("fcr,capacity", [(0x00, 1), (0x01, 16)])
def test_uart_receive_depth_edges(fcr: int, capacity: int) -> None:
    """Loopback fills exactly `capacity` bytes (max); the next (max + 1) is an overrun
    (OE): in FIFO mode it is lost, in 16450 mode it replaces the unread RBR byte (section
    8.4). A flood of 2^16 more never grows the FIFO. The host's receive takes what fits."""
    uart = Uart16550(FakeIrq(), lambda data: None)
    uart.write(2, 1, fcr)
    assert uart.receive(b"") == 0
    assert uart.receive(bytes(range(40))) == capacity and uart.rx_count == capacity
    if fcr:
        uart.write(2, 1, fcr | 0x02)  # empty it
    else:
        uart.read(0, 1)
    uart.write(4, 1, MCR_LOOP)
    for i in range(capacity):
        uart.write(0, 1, i)
    assert uart.rx_count == capacity and not uart.read(5, 1) & LSR_OE
    for _ in range(1 << 16):
        uart.write(0, 1, 0xEE)
    assert uart.rx_count == capacity and uart.read(5, 1) & (LSR_OE | LSR_DR) == LSR_OE | LSR_DR
    expect = list(range(capacity)) if fcr else [0xEE]
    assert [uart.read(0, 1) for _ in range(capacity)] == expect


@pytest.mark.parametrize("fcr,trigger", [(0x01, 1), (0xC1, 14), (0xFF, 14)])
def test_uart_trigger_level_edges(fcr: int, trigger: int) -> None:
    """FCR bits 7:6 index the trigger table: 0 is 1 byte, 3 (max) 14 bytes; 0xFF is the
    full width (also clears both FIFOs). RDA appears at exactly the trigger level."""
    uart = Uart16550(FakeIrq(), lambda data: None)
    uart.write(1, 1, 0x01)  # IER: received data
    uart.write(2, 1, fcr)
    uart.receive(bytes(trigger - 1))
    assert uart.read(2, 1) & 0x0F != IIR_RDA
    uart.receive(b"x")
    assert uart.read(2, 1) & 0x0F == IIR_RDA


# -- i8042: RAM index (5 bits), aux queue (16), keyboard queue (16), data bytes --------------

@pytest.mark.parametrize("index", [0, 0x1F])
def test_i8042_ram_index_edges(index: int) -> None:
    """RAM bytes 0 (the command byte) and 31 (max), through 0x60+i and 0x20+i."""
    kbc = Kbc()
    kbc.cmd(0x60 + index)
    kbc.data(0x5A)
    kbc.cmd(0x20 + index)
    assert kbc.drain() == [0x5A]


@pytest.mark.parametrize("command", [0x40, 0x80, 0xEF, 0xFF])
def test_i8042_commands_past_the_ram_ranges_touch_no_ram(command: int) -> None:
    """0x40 (one past 0x3F), 0x80 (one past 0x7F), 0xEF and 0xFF (not a pulse: bit 0 is
    set) are no commands here: ignored, no reply, no reset, RAM unchanged."""
    kbc = Kbc()
    before = bytes(kbc.dev._ram)  # noqa: SLF001
    kbc.cmd(command)
    kbc.data(0x12)  # if it had been a RAM write, this would land
    assert bytes(kbc.dev._ram) == before and kbc.resets == 0  # noqa: SLF001


@pytest.mark.parametrize("sent", [0, 17, 18, 1000])
def test_i8042_aux_queue_holds_sixteen_bytes(sent: int) -> None:
    """Bytes for a mouse that is not there: each is answered 0xFE. The output buffer holds
    one and the aux queue 16 (max); the 18th (max + 1) and later are dropped."""
    kbc = Kbc()
    kbc.cmd(0xA8)  # aux on
    for _ in range(sent):
        kbc.cmd(0xD4)
        kbc.data(0xF4)
    assert kbc.drain(2000) == [0xFE] * min(sent, 17)


def test_keyboard_key_queue_edges() -> None:
    """15 key bytes fit (BUFFER_SIZE - 1); the 16th event overruns: one overrun code is
    queued and the key is refused; nothing more is queued until the buffer drains."""
    keyboard = Ps2Keyboard()
    assert keyboard.room() == BUFFER_SIZE - 1
    for _ in range(BUFFER_SIZE - 1):
        assert keyboard.key(0x1C, True)
    for _ in range(1000):
        assert not keyboard.key(0x1C, True)
    out = []
    while keyboard.has_output():
        out.append(keyboard.pop())
    assert out == [0x1C] * (BUFFER_SIZE - 1) + [0x00]  # the set 2 overrun code, once
    assert keyboard.key(0x1C, True)


@pytest.mark.parametrize("data,reply", [(0x00, [ACK, 0x02]), (0x02, [ACK]), (0x03, [RESEND]),
                                        (0xEC, [RESEND]), (0xFF, [ACK, BAT_OK])])
def test_keyboard_scan_set_data_byte_edges(data: int, reply: list[int]) -> None:
    """After F0: 0 reports the set, 1-2 select one, 3 (max + 1 of what this keyboard has)
    and 0xEC are refused; 0xED and up are commands, so 0xFF is RESET."""
    kbc = Kbc()
    kbc.set_ccb(0x00)  # no translation, so the replies read as sent
    kbc.data(0xF0)
    assert kbc.drain() == [ACK]
    kbc.data(data)
    assert kbc.drain() == reply


@pytest.mark.parametrize("command,resets", [(0xEF, 0), (0xF0, 1), (0xFE, 1), (0xFF, 0)])
def test_i8042_pulse_command_edges(command: int, resets: int) -> None:
    kbc = Kbc()
    kbc.cmd(command)
    assert kbc.resets == resets


@pytest.mark.parametrize("value,resets", [(0x00, 1), (0x01, 0), (0xFF, 0)])
def test_i8042_output_port_edges(value: int, resets: int) -> None:
    kbc = Kbc()
    kbc.cmd(0xD1)
    kbc.data(value)
    assert kbc.resets == resets
    kbc.cmd(0xD0)
    assert kbc.drain() == [value | 0x01]  # the reset line is pulsed, never held low


# -- 8259: vector base (bits 7:3), OCW2 level (3 bits), ELCR ports -------------------------

@pytest.mark.parametrize("icw2,base", [(0x00, 0x00), (0xF8, 0xF8), (0xFF, 0xF8)])
def test_pic_vector_base_edges(icw2: int, base: int) -> None:
    pic = DualPic(FakeIrq())
    for value in (0x11, icw2, 0x04, 0x01):  # ICW1-4
        pic.master.write(0 if value == 0x11 else 1, 1, value)
    pic.master.write(1, 1, 0xFE)  # only IRQ 0
    pic.set_irq(0, True)
    assert pic.acknowledge() == base
    pic.set_irq(7, True)
    pic.master.write(1, 1, 0x7F)
    pic.master.write(0, 1, 0x20)  # EOI 0
    assert pic.acknowledge() == base | 7


@pytest.mark.parametrize("level", [0, 7])
def test_pic_specific_eoi_level_edges(level: int) -> None:
    """Levels 0 and 7 (max) with both in service; at 7 the whole OCW2 byte is used
    (0xE7: rotate on specific EOI): exactly the named ISR bit is cleared."""
    pic = DualPic(FakeIrq())
    for port, value in ((0, 0x11), (1, 0x20), (1, 0x04), (1, 0x01), (1, 0x00)):
        pic.master.write(port, 1, value)
    pic.set_irq(7, True)
    assert pic.acknowledge() == 0x27
    pic.set_irq(0, True)
    assert pic.acknowledge() == 0x20  # nests above 7
    pic.master.write(0, 1, 0x08 | 0x03)  # OCW3: read ISR
    assert pic.master.read(0, 1) == 0x81
    pic.master.write(0, 1, (0xE0 if level == 7 else 0x60) | level)
    assert pic.master.read(0, 1) == 0x81 & ~(1 << level)


def test_elcr_ports_past_the_second_byte_float() -> None:
    pic = DualPic(FakeIrq())
    pic.elcr_port.write(0, 4, U32_MAX)  # 0x4D0, 0x4D1, then two ports that are not ELCR
    assert pic.elcr_port.read(0, 4) == 0xFFFF0000 | pic.slave.elcr << 8 | pic.master.elcr
    assert pic.master.elcr == 0xF8 and pic.slave.elcr == 0xDE  # IRQ 0-2, 8, 13: edge only


# -- 8254: the count (16 bits, 0 = 65536; BCD 0 = 10000) and the latch --------------------

def _irq_edges(count: int, *, seconds: float = 1.0, bcd: bool = False) -> int:
    pit, clock, irq = make_pit()
    pit.write(CONTROL_OFFSET, 1, 0x34 | int(bcd))  # channel 0, LSB then MSB, mode 2
    pit.write(0, 1, count & 0xFF)
    pit.write(0, 1, count >> 8)
    clock.advance(int(seconds * 1e9))
    return irq.rising_edges


@pytest.mark.parametrize("count,period", [
    (0, 65536),                      # 0 means 65536: the slowest rate
    (1, MIN_IRQ_PERIOD_TICKS),       # the smallest counts are clamped to 20 kHz
    (MIN_IRQ_PERIOD_TICKS, MIN_IRQ_PERIOD_TICKS),
    (0xFFFF, 0xFFFF),                # max
])
def test_pit_count_edges_give_the_period_and_never_a_storm(count: int, period: int) -> None:
    edges = _irq_edges(count)
    assert abs(edges - PIT_HZ // period) <= 1


@pytest.mark.parametrize("count,period", [(0x0000, 10_000), (0x9999, 9_999),
                                          (0xFFFF, 6_665)])
def test_pit_bcd_count_edges(count: int, period: int) -> None:
    """BCD: 0 is 10000, 9999 the maximum, 0xFFFF (invalid digits) weighs as written
    modulo 10000: 15*1000 + 15*100 + 15*10 + 15 = 16665, so 6665."""
    edges = _irq_edges(count, bcd=True, seconds=0.1)
    assert abs(edges - PIT_HZ // 10 // period) <= 1


def test_pit_repeated_latch_commands_hold_one_latched_count() -> None:
    pit, clock, _ = make_pit()
    pit.write(CONTROL_OFFSET, 1, 0x34)
    pit.write(0, 1, 0x00)
    pit.write(0, 1, 0x10)  # 4096
    clock.advance(1_000_000)
    pit.write(CONTROL_OFFSET, 1, 0x00)  # latch channel 0
    first = pit.read(0, 1) | pit.read(0, 1) << 8
    pit.write(CONTROL_OFFSET, 1, 0x00)
    clock.advance(500_000)
    for _ in range(10_000):  # a second latch before the first is read is ignored
        pit.write(CONTROL_OFFSET, 1, 0x00)
    latched = pit.read(0, 1) | pit.read(0, 1) << 8
    assert 0 < first <= 4096 and latched == first  # the value of the first latch
    live = pit.read(0, 1) | pit.read(0, 1) << 8
    assert 0 < live <= 4096 and live != first


# -- CMOS RTC: index (7 bits + NMI), rate select (4 bits), calendar fields -----------------

@pytest.mark.parametrize("value,index,nmi", [(0x00, 0x00, False), (0x7F, 0x7F, False),
                                             (0x80, 0x00, True), (0xFF, 0x7F, True)])
def test_rtc_index_edges(value: int, index: int, nmi: bool) -> None:
    rtc, _, _ = make_rtc()
    rtc.write(0, 1, value)
    assert rtc.index == index and rtc.nmi_disabled is nmi
    if index:
        rtc.write(1, 1, 0xA5)
        rtc.write(0, 1, 0x7F)
        assert rtc.read(1, 1) == 0xA5


def test_rtc_dword_of_ones_at_the_index_port() -> None:
    """2^32-1 at 0x70: index 0x7F with NMI off, data 0xFF into byte 0x7F, then 0x72 and
    0x73, which are not the RTC's."""
    rtc, _, _ = make_rtc()
    rtc.write(0, 4, U32_MAX)
    assert rtc.index == 0x7F and rtc.nmi_disabled
    assert rtc.read(1, 1) == 0xFF
    assert rtc.read(0, 4) == U32_MAX  # 0x70 floats, 0x71 is byte 0x7F, two ports past


@pytest.mark.parametrize("rs,per_second", [(0, 0), (1, 256), (3, 8192), (15, 2)])
def test_rtc_rate_select_edges(rs: int, per_second: int) -> None:
    """RS 0 is off; 1 and 2 are the slow aliases (256 and 128 Hz); 3 the fastest, 8192 Hz;
    15 (max) 2 Hz. One timer at a time, one callback per periodic edge."""
    rtc, clock, _ = make_rtc()
    wr(rtc, REG_A, 0x20 | rs)
    wr(rtc, REG_B, 0x42)  # PIE, 24-hour
    clock.advance(SEC // 10)  # let the divider settle past its first 500 ms
    clock.advance(SEC // 2)
    ran = clock.advance(SEC, max_callbacks=20_000)
    assert abs(ran - per_second) <= 1 and clock.pending() <= 2


@pytest.mark.parametrize("dv,runs", [(0x0, False), (0x2, True), (0x7, False)])
def test_rtc_divider_field_edges(dv: int, runs: bool) -> None:
    rtc, clock, _ = make_rtc()
    wr(rtc, REG_A, dv << 4 | 0x03)
    wr(rtc, REG_B, 0x42)
    ran = clock.advance(SEC, max_callbacks=20_000)
    assert (ran > 0) is runs
    rd(rtc, REG_C)


@pytest.mark.parametrize("month,day,shown", [
    (0x00, 0x15, (0x01, 0x15)),      # month 0: the first month
    (0x12, 0x31, (0x12, 0x31)),      # max: December 31
    (0x13, 0x31, (0x12, 0x31)),      # month max + 1: December
    (0x02, 0x30, (0x02, 0x29)),      # day max + 1 in February 2024: the 29th
    (0xFF, 0xFF, (0x12, 0x31)),      # every bit: invalid BCD digits weigh 165, clamped
])
def test_rtc_calendar_fields_are_clamped_when_the_clock_restarts(
        month: int, day: int, shown: tuple[int, int]) -> None:
    rtc, _, _ = make_rtc()
    wr(rtc, REG_B, 0x82)  # SET: the clock stops, the bytes are the guest's
    wr(rtc, REG_MONTH, month)
    wr(rtc, REG_DAY_OF_MONTH, day)
    wr(rtc, REG_B, 0x02)  # counting resumes from the bytes, each field clamped
    assert (rd(rtc, REG_MONTH), rd(rtc, REG_DAY_OF_MONTH)) == shown


# -- one-port devices: POST code, debug console line log, debug exit ------------------------

def test_post_code_lanes_and_offsets() -> None:
    codes: list[int] = []
    post = PostCode(codes.append)
    post.write(0, 4, U32_MAX)
    assert codes == [0xFF] and post.read(0, 4) == U32_MAX and post.read(0, 1) == 0xFF
    post.write(1, 1, 0x12)  # not port 0x80
    assert codes == [0xFF] and post.read(1, 2) == 0xFFFF


@pytest.mark.parametrize("length,lines", [(0, 0), (LineLog.MAX_LINE, 0),
                                          (LineLog.MAX_LINE + 1, 1),
                                          (3 * LineLog.MAX_LINE + 1, 3)])
def test_debug_console_line_length_edges(length: int, lines: int) -> None:
    """A guest that never writes a newline: the pending line never holds more than
    MAX_LINE bytes; each byte past it sends the line on first."""
    emitted: list[str] = []
    log = LineLog(emitted.append)
    log(b"A" * length)
    assert len(emitted) == lines and all(len(line) == LineLog.MAX_LINE for line in emitted)
    assert len(log._pending) <= LineLog.MAX_LINE  # noqa: SLF001


@pytest.mark.parametrize("size,value,status", [(1, 0, 1), (1, 0xFF, 0x1FF),
                                               (1, 0x100, 1), (4, U32_MAX, 0x1_FFFF_FFFF)])
def test_debug_exit_value_width_edges(size: int, value: int, status: int) -> None:
    """The exit status is (value masked to the access width) * 2 + 1: 0, the byte max,
    one more (masked to 0) and 2^32-1 from a dword."""
    got: list[int] = []
    DebugExit(got.append).write(0, size, value)
    assert got == [status]


@pytest.mark.parametrize("mode,same_as", [(6, 2), (7, 3)])
def test_pit_mode_field_aliases_past_mode_5(mode: int, same_as: int) -> None:
    """The mode field is 3 bits: 5 is the last mode, 6 and 7 (max + 1 on, the full
    width) are modes 2 and 3 again; the read-back status shows the bits as written."""
    def run(m: int) -> tuple[int, int]:
        pit, clock, irq = make_pit()
        pit.write(CONTROL_OFFSET, 1, 0x30 | m << 1)
        pit.write(0, 1, 0x00)
        pit.write(0, 1, 0x10)
        clock.advance(10_000_000)
        pit.write(CONTROL_OFFSET, 1, 0xE2)  # read back channel 0's status only
        return irq.rising_edges, pit.read(0, 1)

    edges, status = run(mode)
    alias_edges, _ = run(same_as)
    assert edges == alias_edges > 0 and status >> 1 & 7 == mode
