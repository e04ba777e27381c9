"""The 16550A model driven register by register; sections cite the National PC16550D datasheet."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhvm.devices.uart16550 import (
    FCR_CLEAR_RX,
    FCR_ENABLE,
    IER_MS,
    IER_RDA,
    IER_RLS,
    IER_THRE,
    IIR_CTI,
    IIR_MS,
    IIR_NONE,
    IIR_RDA,
    IIR_RLS,
    IIR_THRE,
    LCR_DLAB,
    LSR_BI,
    LSR_DR,
    LSR_FIFO_ERROR,
    LSR_OE,
    LSR_TEMT,
    LSR_THRE,
    MCR_DTR,
    MCR_LOOP,
    MCR_OUT1,
    MCR_OUT2,
    MCR_RTS,
    MSR_CTS,
    MSR_DCD,
    MSR_DCTS,
    MSR_DDCD,
    MSR_DDSR,
    MSR_DSR,
    MSR_RI,
    MSR_TERI,
    Uart16550,
    UartState,
)

RBR, IER, IIR, LCR, MCR, LSR, MSR, SCR = 0, 1, 2, 3, 4, 5, 6, 7
FCR = IIR


class FakeIrq:
    """Records every level the device drives onto its line."""

    def __init__(self) -> None:
        self.changes: list[bool] = []

    @property
    def level(self) -> bool:
        return self.changes[-1] if self.changes else False

    def set_level(self, level: bool) -> None:
        self.changes.append(level)


def make_uart(mcr: int = MCR_OUT2) -> tuple[Uart16550, FakeIrq, list[bytes]]:
    irq = FakeIrq()
    out: list[bytes] = []
    uart = Uart16550(irq, out.append)
    uart.write(MCR, 1, mcr)
    return uart, irq, out


def rb(uart: Uart16550, reg: int) -> int:
    return uart.read(reg, 1)


def wb(uart: Uart16550, reg: int, value: int) -> None:
    uart.write(reg, 1, value)


def test_reset_values_match_table_iv() -> None:
    """Table IV (UART reset configuration); MSR reports a ready line with no modem."""
    uart = Uart16550(FakeIrq(), lambda data: None)
    assert [rb(uart, r) for r in (IER, IIR, LCR, MCR, LSR, MSR, SCR)] == [
        0x00, 0x01, 0x00, 0x00, 0x60, 0xB0, 0x00,
    ]


def test_divisor_latch_round_trips_under_dlab() -> None:
    """§8.3: with LCR.DLAB set, offsets 0 and 1 are DLL and DLM."""
    uart, _, out = make_uart()
    wb(uart, IER, IER_RDA)
    wb(uart, LCR, LCR_DLAB | 0x03)
    wb(uart, RBR, 0x01)
    wb(uart, IER, 0x02)
    assert (rb(uart, RBR), rb(uart, IER)) == (0x01, 0x02)
    assert uart.divisor == 0x0201
    assert out == []  # the DLL write is not a THR write
    wb(uart, LCR, 0x03)
    assert rb(uart, IER) == IER_RDA  # IER kept its value behind the latch
    assert rb(uart, LCR) == 0x03


def test_thr_write_reaches_output_and_transmitter_stays_empty() -> None:
    """§8.4: the infinitely fast line leaves THRE and TEMT set after every byte."""
    uart, _, out = make_uart()
    for byte in b"hi\n":
        wb(uart, RBR, byte)
    assert out == [b"h", b"i", b"\n"]
    assert rb(uart, LSR) & (LSR_THRE | LSR_TEMT) == LSR_THRE | LSR_TEMT


def test_enabling_thri_with_thr_empty_interrupts_at_once() -> None:
    """§8.7: setting ETBEI while THR is empty raises the THRE interrupt."""
    uart, irq, _ = make_uart()
    wb(uart, IER, IER_THRE)
    assert irq.level
    assert rb(uart, IIR) == IIR_THRE


def test_iir_read_clears_thri_when_it_is_the_source() -> None:
    """Table V: THRE is reset by reading IIR when it is the source."""
    uart, irq, _ = make_uart()
    wb(uart, IER, IER_THRE)
    assert rb(uart, IIR) == IIR_THRE
    assert not irq.level
    assert rb(uart, IIR) == IIR_NONE


def test_thr_write_clears_and_reraises_thri_as_a_fresh_edge() -> None:
    """Table V: writing THR resets THRE; the byte leaves at once so THRE rises again."""
    uart, irq, out = make_uart()
    wb(uart, IER, IER_THRE)
    irq.changes.clear()
    wb(uart, RBR, 0x41)
    assert irq.changes == [False, True]
    assert out == [b"A"]


def test_iir_read_keeps_thri_when_a_higher_priority_source_is_reported() -> None:
    """Table V: reading IIR clears THRE only if THRE is what IIR showed."""
    uart, irq, _ = make_uart()
    wb(uart, IER, IER_THRE | IER_RDA)
    uart.receive(b"x")
    assert rb(uart, IIR) == IIR_RDA
    rb(uart, RBR)
    assert rb(uart, IIR) == IIR_THRE


def test_rx_data_available_in_16450_mode() -> None:
    """§8.6: without FIFOs, one byte in RBR is 'received data available'."""
    uart, irq, _ = make_uart()
    wb(uart, IER, IER_RDA)
    assert uart.receive(b"a") == 1
    assert irq.level and rb(uart, IIR) == IIR_RDA
    assert rb(uart, RBR) == ord("a")
    assert not irq.level and rb(uart, IIR) == IIR_NONE


@pytest.mark.parametrize("fcr_bits, trigger", [(0x00, 1), (0x40, 4), (0x80, 8), (0xC0, 14)])
def test_rx_data_available_follows_fifo_trigger_level(fcr_bits: int, trigger: int) -> None:
    """§8.5/§8.11: RDA fires when the FIFO reaches the trigger level, clears below it."""
    uart, irq, _ = make_uart()
    wb(uart, FCR, FCR_ENABLE | fcr_bits)
    wb(uart, IER, IER_RDA)
    uart.receive(bytes(trigger - 1))
    assert not irq.level
    uart.receive(b"\x01")
    assert irq.level
    assert rb(uart, IIR) == 0xC0 | IIR_RDA
    rb(uart, RBR)
    assert not irq.level


def test_lsr_data_ready_set_by_receive_and_cleared_when_drained() -> None:
    """§8.4: DR is set while any byte waits and cleared when the last one is read."""
    uart, _, _ = make_uart()
    wb(uart, FCR, FCR_ENABLE)
    assert not rb(uart, LSR) & LSR_DR
    uart.receive(b"ab")
    assert rb(uart, LSR) & LSR_DR
    assert bytes([rb(uart, RBR), rb(uart, RBR)]) == b"ab"
    assert not rb(uart, LSR) & LSR_DR


def test_receive_accepts_only_what_fits_so_host_keeps_the_rest() -> None:
    """§8.5: 16 bytes in FIFO mode, one holding register in 16450 mode; nothing is lost."""
    uart, _, _ = make_uart()
    assert uart.can_receive() == 1
    assert uart.receive(b"xyz") == 1
    wb(uart, FCR, FCR_ENABLE)  # mode switch empties the FIFO
    assert uart.can_receive() == 16
    assert uart.receive(bytes(range(20))) == 16
    assert uart.receive(b"more") == 0
    assert not rb(uart, LSR) & LSR_OE
    assert [rb(uart, RBR) for _ in range(16)] == list(range(16))


def test_receive_is_refused_in_loopback() -> None:
    """§8.8: loopback disconnects the serial input from the receiver."""
    uart, _, _ = make_uart(MCR_LOOP)
    assert uart.can_receive() == 0
    assert uart.receive(b"a") == 0
    assert not uart.receive_break()


def test_loopback_overrun_in_fifo_mode_loses_the_new_byte() -> None:
    """§8.4: with the FIFO full, the byte in the shift register is lost and OE set."""
    uart, _, out = make_uart(MCR_LOOP)
    wb(uart, FCR, FCR_ENABLE)
    for byte in range(17):
        wb(uart, RBR, byte)
    assert out == []
    assert rb(uart, LSR) & LSR_OE
    assert [rb(uart, RBR) for _ in range(16)] == list(range(16))
    assert uart.rx_count == 0


def test_loopback_overrun_in_16450_mode_overwrites_rbr() -> None:
    """§8.4: in 16450 mode the next character destroys the unread one."""
    uart, _, _ = make_uart(MCR_LOOP)
    wb(uart, RBR, 0x11)
    wb(uart, RBR, 0x22)
    assert rb(uart, LSR) & LSR_OE
    assert rb(uart, RBR) == 0x22


def test_lsr_read_clears_error_bits_and_line_status_interrupt() -> None:
    """§8.4: OE/PE/FE/BI reset when the CPU reads LSR; Table V: that clears RLS."""
    uart, irq, _ = make_uart(MCR_LOOP)
    wb(uart, IER, IER_RLS)
    wb(uart, RBR, 1)
    wb(uart, RBR, 2)
    assert rb(uart, IIR) == IIR_RLS
    assert rb(uart, LSR) & LSR_OE
    assert not rb(uart, LSR) & LSR_OE
    assert rb(uart, IIR) == IIR_NONE


def test_break_is_a_zero_byte_with_bi_shown_when_it_reaches_the_top() -> None:
    """§8.4: a break loads one zero byte; in FIFO mode BI shows when it is at the top and
    bit 7 flags an error anywhere in the FIFO."""
    uart, irq, _ = make_uart()
    wb(uart, FCR, FCR_ENABLE)
    wb(uart, IER, IER_RLS)
    uart.receive(b"a")
    assert uart.receive_break()
    assert not irq.level
    assert rb(uart, LSR) == LSR_FIFO_ERROR | LSR_THRE | LSR_TEMT | LSR_DR
    assert rb(uart, RBR) == ord("a")
    assert irq.level and rb(uart, IIR) == 0xC0 | IIR_RLS
    assert rb(uart, LSR) == LSR_FIFO_ERROR | LSR_BI | LSR_THRE | LSR_TEMT | LSR_DR
    assert rb(uart, LSR) == LSR_THRE | LSR_TEMT | LSR_DR  # no later error: bit 7 clears
    assert rb(uart, RBR) == 0
    assert rb(uart, LSR) == LSR_THRE | LSR_TEMT


def test_fcr_clear_rx_empties_the_fifo() -> None:
    """§8.5: FCR bit 1 clears the receive FIFO; bits 7:6 of IIR show FIFO mode."""
    uart, irq, _ = make_uart()
    wb(uart, FCR, FCR_ENABLE)
    wb(uart, IER, IER_RDA)
    uart.receive(b"abc")
    assert irq.level
    wb(uart, FCR, FCR_ENABLE | FCR_CLEAR_RX)
    assert uart.rx_count == 0
    assert not irq.level
    assert rb(uart, IIR) == 0xC0 | IIR_NONE
    assert not rb(uart, LSR) & LSR_DR


def test_fcr_other_bits_are_ignored_without_the_enable_bit() -> None:
    """§8.5: FCR0 must be 1 for the other bits to be programmed; clearing it empties FIFOs."""
    uart, _, _ = make_uart()
    wb(uart, FCR, FCR_ENABLE)
    uart.receive(b"abc")
    wb(uart, FCR, FCR_CLEAR_RX | 0xC0)
    assert uart.rx_count == 0
    assert rb(uart, IIR) == IIR_NONE
    assert uart.can_receive() == 1


def test_loopback_echoes_thr_into_rx_instead_of_output() -> None:
    """§8.8: in loopback the transmitter output is connected to the receiver input."""
    uart, irq, out = make_uart(MCR_LOOP | MCR_OUT2)
    wb(uart, IER, IER_RDA)
    wb(uart, RBR, 0x5A)
    assert out == []
    assert rb(uart, LSR) & LSR_DR
    assert rb(uart, RBR) == 0x5A
    assert irq.changes == []  # loopback forces OUT2 inactive, so the PC gate stays shut


def test_loopback_msr_reflects_mcr_outputs() -> None:
    """§8.8: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD in loopback."""
    uart, _, _ = make_uart(MCR_LOOP)
    rb(uart, MSR)
    for mcr, status in [
        (MCR_RTS, MSR_CTS), (MCR_DTR, MSR_DSR), (MCR_OUT1, MSR_RI), (MCR_OUT2, MSR_DCD),
    ]:
        wb(uart, MCR, MCR_LOOP | mcr)
        assert rb(uart, MSR) & 0xF0 == status
    wb(uart, MCR, MCR_LOOP | MCR_OUT2 | MCR_RTS)
    assert rb(uart, MSR) & 0xF0 == 0x90  # the value Linux's 8250 probe looks for


def test_msr_delta_bits_latch_and_clear_on_read() -> None:
    """§8.9: DCTS/DDSR/DDCD latch a change and reset when MSR is read; Table V: MS interrupt."""
    uart, irq, _ = make_uart(MCR_LOOP)
    rb(uart, MSR)
    wb(uart, IER, IER_MS)
    wb(uart, MCR, MCR_LOOP | MCR_RTS | MCR_DTR | MCR_OUT2)
    assert rb(uart, IIR) == IIR_MS
    assert rb(uart, MSR) & 0x0F == MSR_DCTS | MSR_DDSR | MSR_DDCD
    assert rb(uart, MSR) & 0x0F == 0
    assert rb(uart, IIR) == IIR_NONE
    assert irq.changes == []


def test_teri_latches_only_on_the_trailing_edge_of_ri() -> None:
    """§8.9: TERI is set when RI goes from on to off, not when it comes on."""
    uart, _, _ = make_uart(MCR_LOOP)
    rb(uart, MSR)
    wb(uart, MCR, MCR_LOOP | MCR_OUT1)
    assert not rb(uart, MSR) & MSR_TERI
    wb(uart, MCR, MCR_LOOP)
    assert rb(uart, MSR) & MSR_TERI


def test_iir_reports_sources_in_priority_order() -> None:
    """Table V: line status > data available > THR empty > modem status."""
    uart, _, _ = make_uart(MCR_LOOP)
    rb(uart, MSR)
    wb(uart, MCR, MCR_LOOP | MCR_RTS)  # DCTS pending
    wb(uart, RBR, 1)
    wb(uart, RBR, 2)  # overrun in 16450 mode, RBR full, THRE pending
    wb(uart, IER, IER_RDA | IER_THRE | IER_RLS | IER_MS)
    assert rb(uart, IIR) == IIR_RLS
    rb(uart, LSR)
    assert rb(uart, IIR) == IIR_RDA
    rb(uart, RBR)
    assert rb(uart, IIR) == IIR_THRE
    assert rb(uart, IIR) == IIR_MS
    rb(uart, MSR)
    assert rb(uart, IIR) == IIR_NONE


def test_out2_gates_the_line_as_on_a_pc() -> None:
    """§8.8 with PC wiring: OUT2 enables the buffer that drives the ISA IRQ line."""
    uart, irq, _ = make_uart(mcr=0)
    wb(uart, IER, IER_THRE)
    assert irq.changes == []
    assert rb(uart, IIR) == IIR_THRE  # pending inside the chip all the same
    wb(uart, IER, 0)
    wb(uart, IER, IER_THRE)
    wb(uart, MCR, MCR_OUT2)
    assert irq.changes == [True]
    wb(uart, MCR, 0)
    assert irq.changes == [True, False]


def test_scratch_register_holds_any_byte() -> None:
    """§8.10: SCR is a plain read/write byte with no effect on the UART."""
    uart, irq, out = make_uart()
    for value in (0x00, 0x5A, 0xFF):
        wb(uart, SCR, value)
        assert rb(uart, SCR) == value
    assert out == [] and irq.changes == []


def test_character_timeout_after_a_quiet_tick() -> None:
    """§8.11: data below the trigger level and no activity for four characters -> IIR 0x0C,
    cleared by reading RBR."""
    uart, irq, _ = make_uart()
    wb(uart, FCR, FCR_ENABLE | 0xC0)
    wb(uart, IER, IER_RDA)
    uart.receive(b"ab")
    assert not uart.rx_timeout()  # activity since the last tick: the timer restarts
    assert not irq.level
    assert uart.rx_timeout()
    assert irq.level and rb(uart, IIR) == 0xC0 | IIR_CTI
    rb(uart, RBR)
    assert not irq.level
    assert not uart.rx_timeout()
    assert uart.rx_timeout()  # one byte still waits: a second timeout in due course
    rb(uart, RBR)
    assert not uart.rx_timeout() and not uart.rx_timeout()  # nothing left to time out


def test_no_character_timeout_in_16450_mode() -> None:
    """§8.6: the timeout indication exists only in FIFO mode."""
    uart, irq, _ = make_uart()
    wb(uart, IER, IER_RDA)
    uart.receive(b"a")
    assert not uart.rx_timeout() and not uart.rx_timeout()
    assert rb(uart, IIR) == IIR_RDA


def test_char_timeout_ns_is_four_characters_at_the_programmed_rate() -> None:
    """§8.3: divisor 1 is 115200 baud; 8N1 is 10 bits per character."""
    uart, _, _ = make_uart()
    wb(uart, LCR, LCR_DLAB | 0x03)
    wb(uart, RBR, 1)
    wb(uart, IER, 0)
    wb(uart, LCR, 0x03)
    assert uart.char_timeout_ns() == 4 * 10 * 1_000_000_000 // 115_200


def test_word_access_is_successive_byte_cycles() -> None:
    """ISA splits a 16-bit access to an 8-bit device into byte cycles on consecutive ports."""
    uart, _, out = make_uart()
    uart.write(LCR, 2, 0x0B03)  # LCR=0x03, MCR=0x0B
    assert (rb(uart, LCR), rb(uart, MCR)) == (0x03, 0x0B)
    uart.write(RBR, 2, 0x0041)
    assert out == [b"A"]
    assert uart.read(SCR, 2) == 0xFF00  # the lane past the chip floats high


def test_master_reset_keeps_divisor_and_scratch() -> None:
    """Table IV: master reset leaves the divisor latches and SCR alone."""
    uart, irq, _ = make_uart()
    wb(uart, LCR, LCR_DLAB)
    wb(uart, RBR, 3)
    wb(uart, LCR, 0)
    wb(uart, SCR, 0x77)
    wb(uart, IER, IER_THRE)
    uart.reset()
    assert uart.divisor == 3 and rb(uart, SCR) == 0x77
    assert rb(uart, MCR) == 0 and rb(uart, IER) == 0 and not irq.level


def test_state_round_trip_restores_registers_fifo_and_line() -> None:
    """Snapshot: from_state(state()) behaves like the original, pending interrupt included."""
    uart, _, _ = make_uart()
    wb(uart, FCR, FCR_ENABLE | 0x80)
    wb(uart, SCR, 0x42)
    wb(uart, IER, IER_RDA)
    uart.receive(bytes(range(9)))
    uart.receive_break()
    state = uart.state()
    irq = FakeIrq()
    clone = Uart16550.from_state(state, irq, lambda data: None)
    assert clone.state() == state
    assert irq.changes == [True]
    assert rb(clone, IIR) == 0xC0 | IIR_RDA
    assert [rb(clone, RBR) for _ in range(10)] == list(range(9)) + [0]


@pytest.mark.parametrize(
    "change",
    [
        {"divisor": 0x10000},
        {"ier": 0x10},
        {"mcr": 0x20},
        {"fcr": 0x40},  # trigger bits without the enable bit
        {"rx_fifo": b"ab", "rx_errors": b"\0\0"},  # two bytes in 16450 mode
        {"rx_fifo": b"a"},  # no error entry for the byte
        {"lsr_errors": LSR_DR},
        {"timeout_pending": True},
        {"lcr": -1},
    ],
)
def test_from_state_rejects_impossible_states(change: dict[str, object]) -> None:
    """A corrupt snapshot is refused with a message, never loaded half-way."""
    with pytest.raises(ValueError):
        Uart16550.from_state(dataclasses.replace(UartState(), **change), FakeIrq(), print)


_ops = st.one_of(
    st.tuples(st.just("read"), st.integers(0, 9), st.sampled_from([1, 2, 4])),
    st.tuples(
        st.just("write"), st.integers(0, 9), st.sampled_from([1, 2, 4]),
        st.integers(0, 0xFFFFFFFF),
    ),
    st.tuples(st.just("receive"), st.binary(max_size=20)),
    st.tuples(st.just("break")),
    st.tuples(st.just("timeout")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ops, max_size=60))
def test_random_register_traffic_keeps_invariants(ops: list[tuple]) -> None:
    """No access sequence raises, the FIFO never exceeds 16, the line changes only when it
    must, and with the PC gate open the line matches IIR bit 0."""
    irq = FakeIrq()
    uart = Uart16550(irq, lambda data: None)
    for op in ops:
        if op[0] == "read":
            uart.read(op[1], op[2])
        elif op[0] == "write":
            uart.write(op[1], op[2], op[3])
        elif op[0] == "receive":
            assert uart.receive(op[1]) <= len(op[1])
        elif op[0] == "break":
            uart.receive_break()
        else:
            uart.rx_timeout()
        assert uart.rx_count <= 16
        assert all(a != b for a, b in zip(irq.changes, irq.changes[1:]))
        mcr = rb(uart, MCR)
        level = irq.level
        pending = not rb(uart, IIR) & 0x01
        if mcr & MCR_OUT2 and not mcr & MCR_LOOP:
            assert level == pending
        else:
            assert not level
    Uart16550.from_state(uart.state(), FakeIrq(), print)
