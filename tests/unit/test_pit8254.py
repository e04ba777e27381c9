"""The 8254 model driven port by port on a fake clock; sections cite the Intel 8254 datasheet
(231164), plus the PC/AT's port 0x61 and Linux's PIT calibration sequence."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhvm.devices.pit8254 import (
    CATCHUP_NS,
    CONTROL_OFFSET,
    DELAY_BACKLOG_LIMIT,
    MIN_IRQ_PERIOD_NS,
    PORT61_GATE2,
    PORT61_OUT2,
    PORT61_REFRESH,
    PORT61_SPEAKER,
    REFRESH_TOGGLE_TICKS,
    RW_LSB,
    RW_LSB_MSB,
    RW_MSB,
    STATUS_NULL_COUNT,
    STATUS_OUT,
    CounterState,
    Pit8254,
    PitState,
    TickStats,
    ns_of_tick,
    tick_at,
)
from tests.fakes import FakeClock, FakeIrq

PERIOD_1KHZ = 1193  # the count Linux programs for HZ=1000


class StrictClock(FakeClock):
    """A FakeClock that fails the test if a device asks for a deadline not in the future."""

    def call_at(self, deadline_ns, callback):  # type: ignore[no-untyped-def]
        assert deadline_ns > self.now, f"deadline {deadline_ns} not after now {self.now}"
        return super().call_at(deadline_ns, callback)


def make(policy: str = "delay") -> tuple[Pit8254, StrictClock, FakeIrq]:
    clock, irq = StrictClock(), FakeIrq()
    return Pit8254(clock, irq, lost_tick_policy=policy), clock, irq


def program(pit: Pit8254, channel: int, mode: int, count: int | None = None, *,
            rw: int = RW_LSB_MSB, bcd: bool = False) -> None:
    """Control word, then the count bytes the access mode calls for (Write Operations)."""
    pit.write(CONTROL_OFFSET, 1, channel << 6 | rw << 4 | mode << 1 | int(bcd))
    if count is None:
        return
    if rw in (RW_LSB, RW_LSB_MSB):
        pit.write(channel, 1, count & 0xFF)
    if rw in (RW_MSB, RW_LSB_MSB):
        pit.write(channel, 1, count >> 8 & 0xFF)


def latched(pit: Pit8254, channel: int) -> int:
    """Counter latch command, then LSB and MSB (Counter Latch Command)."""
    pit.write(CONTROL_OFFSET, 1, channel << 6)
    return pit.read(channel, 1) | pit.read(channel, 1) << 8


def goto(clock: FakeClock, tick: int) -> None:
    """Move to the first nanosecond of input pulse `tick`, running due callbacks."""
    clock.advance(ns_of_tick(tick) - clock.now)


def gate2(pit: Pit8254, level: bool) -> None:
    pit.port61.write(0, 1, PORT61_GATE2 if level else 0)


def out_over(pit: Pit8254, clock: FakeClock, channel: int, ticks: range) -> list[int]:
    levels = []
    for tick in ticks:
        goto(clock, tick)
        levels.append(int(pit.out(channel)))
    return levels


# -- modes (each written at pulse 0, so the count loads on pulse 1) ----------------------------


def test_mode0_out_rises_n_plus_one_pulses_after_the_count_and_interrupts_once() -> None:
    """Mode 0: OUT low after the control word, high N+1 CLK pulses after the count is written."""
    pit, clock, irq = make()
    program(pit, 0, 0, 100)
    assert irq.changes == [False]
    goto(clock, 100)
    assert not pit.out(0) and latched(pit, 0) == 1
    goto(clock, 101)
    assert pit.out(0) and latched(pit, 0) == 0
    assert irq.rising_edges == 1 and clock.scheduled == [ns_of_tick(101)]
    goto(clock, 102)
    assert latched(pit, 0) == 0xFFFF  # the element wraps and keeps counting
    assert clock.pending() == 0 and pit.tick_stats.delivered == 1


def test_mode0_new_count_lowers_out_and_rearms_the_interrupt() -> None:
    """Mode 0: OUT stays high 'until a new count or a new Mode 0 control word is written'."""
    pit, clock, irq = make()
    program(pit, 0, 0, 10)
    goto(clock, 50)
    pit.write(0, 1, 20)
    pit.write(0, 1, 0)
    assert not pit.out(0) and not irq.level
    goto(clock, 50 + 1 + 20)
    assert irq.rising_edges == 2 and clock.pending() == 0


def test_mode0_first_byte_of_two_stops_counting_and_lowers_out_at_once() -> None:
    """Mode 0: 'writing the first byte disables counting; OUT is set low immediately'."""
    pit, clock, _ = make()
    gate2(pit, True)
    program(pit, 2, 0, 5)
    goto(clock, 20)
    assert pit.out(2)
    pit.write(2, 1, 0x00)
    held = latched(pit, 2)
    goto(clock, 40)
    assert not pit.out(2) and latched(pit, 2) == held
    pit.write(2, 1, 0x01)  # count 0x0100 loads on the next pulse
    goto(clock, 41 + 0x100)
    assert pit.out(2)


def test_mode1_one_shot_starts_on_the_gate_rising_edge_and_retriggers() -> None:
    """Mode 1: OUT low on the pulse after a trigger, high at terminal count; a new trigger
    reloads the count (channel 2, whose gate is port 0x61 bit 0)."""
    pit, clock, _ = make()
    program(pit, 2, 1, 50)
    goto(clock, 10)
    assert pit.out(2)  # armed, waiting for a trigger
    gate2(pit, True)
    assert out_over(pit, clock, 2, range(10, 13)) == [1, 0, 0]
    goto(clock, 30)
    gate2(pit, False)
    gate2(pit, True)  # retrigger at pulse 30: low until 31 + 50
    assert out_over(pit, clock, 2, range(80, 83)) == [0, 1, 1]


def test_mode2_rate_generator_is_low_for_one_pulse_per_period() -> None:
    """Mode 2: the element counts N..1, OUT is low while it holds 1, then it reloads."""
    pit, clock, _ = make()
    gate2(pit, True)
    program(pit, 2, 2, 5)
    assert out_over(pit, clock, 2, range(1, 12)) == [1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1]
    values = []
    for tick in range(11, 17):
        goto(clock, tick)
        values.append(latched(pit, 2))
    assert values == [5, 4, 3, 2, 1, 5]


def test_mode2_on_channel0_gives_one_irq_edge_per_period() -> None:
    pit, clock, irq = make()
    program(pit, 0, 2, 1000)
    goto(clock, 1 + 50 * 1000)
    assert irq.rising_edges == 50 and pit.tick_stats.delivered == 50
    assert clock.pending() == 1
    assert clock.scheduled[:3] == [ns_of_tick(1 + k * 1000) for k in (1, 2, 3)]


def test_mode3_square_wave_even_count_is_half_high_half_low() -> None:
    """Mode 3, even N: high N/2 pulses, low N/2; the element steps down by two each half."""
    pit, clock, _ = make()
    gate2(pit, True)
    program(pit, 2, 3, 10)
    assert out_over(pit, clock, 2, range(1, 12)) == [1] * 5 + [0] * 5 + [1]
    values = []
    for tick in range(1, 7):
        goto(clock, tick)
        values.append(latched(pit, 2))
    assert values == [10, 8, 6, 4, 2, 10]


def test_mode3_odd_count_is_high_one_pulse_longer() -> None:
    """Mode 3, odd N: OUT high for (N+1)/2 counts and low for (N-1)/2."""
    pit, clock, _ = make()
    gate2(pit, True)
    program(pit, 2, 3, 7)
    assert out_over(pit, clock, 2, range(1, 16)) == ([1] * 4 + [0] * 3) * 2 + [1]


def test_mode4_strobe_is_one_pulse_low_at_terminal_count() -> None:
    """Mode 4: OUT high, low for one CLK pulse N+1 pulses after the write, then high again."""
    pit, clock, irq = make()
    program(pit, 0, 4, 20)
    assert out_over(pit, clock, 0, range(20, 24)) == [1, 0, 1, 1]
    assert irq.rising_edges == 1 and clock.scheduled == [ns_of_tick(22)]
    goto(clock, 100_000)
    assert irq.rising_edges == 1 and clock.pending() == 0


def test_mode5_strobe_follows_a_gate_trigger() -> None:
    """Mode 5: counting starts on the pulse after the gate's rising edge."""
    pit, clock, _ = make()
    program(pit, 2, 5, 8)
    goto(clock, 30)
    assert pit.out(2)
    gate2(pit, True)
    assert out_over(pit, clock, 2, range(38, 42)) == [1, 0, 1, 1]  # low at 30 + 1 + 8


def test_mode6_and_7_are_modes_2_and_3_but_status_reports_the_written_bits() -> None:
    """Control Word Format: M2 is a don't-care for modes 2 and 3."""
    pit, clock, _ = make()
    gate2(pit, True)
    program(pit, 2, 6, 4)
    assert out_over(pit, clock, 2, range(1, 6)) == [1, 1, 1, 0, 1]
    pit.write(CONTROL_OFFSET, 1, 0xE8)  # read-back status of counter 2
    assert (pit.read(2, 1) >> 1) & 7 == 6


# -- gate (Table 3, "Gate Pin Operations Summary") ------------------------------------------


def test_gate_low_suspends_mode0_counting() -> None:
    pit, clock, _ = make()
    gate2(pit, True)
    program(pit, 2, 0, 100)
    goto(clock, 41)
    gate2(pit, False)
    goto(clock, 500)
    assert latched(pit, 2) == 60 and not pit.out(2)
    gate2(pit, True)
    goto(clock, 560)
    assert pit.out(2) and latched(pit, 2) == 0


def test_gate_low_forces_mode2_out_high_and_a_rising_edge_reloads() -> None:
    pit, clock, _ = make()
    gate2(pit, True)
    program(pit, 2, 2, 10)
    goto(clock, 10)  # the element holds 1: OUT low
    assert not pit.out(2)
    gate2(pit, False)
    assert pit.out(2)
    goto(clock, 100)
    gate2(pit, True)
    goto(clock, 101)
    assert latched(pit, 2) == 10


def test_a_count_written_while_gate2_is_low_waits_for_the_gate() -> None:
    pit, clock, _ = make()
    program(pit, 2, 0, 10)
    goto(clock, 100)
    assert latched(pit, 2) == 10 and not pit.out(2)
    gate2(pit, True)
    goto(clock, 110)
    assert pit.out(2)


# -- counting formats and access (Write/Read Operations) --------------------------------------


def test_bcd_counts_down_in_decimal_digits() -> None:
    pit, clock, _ = make()
    gate2(pit, True)
    program(pit, 2, 0, 0x1000, bcd=True)  # 1000 decimal
    goto(clock, 11)
    assert latched(pit, 2) == 0x0990
    program(pit, 2, 0, 0, bcd=True)  # 0 means 10000 in BCD
    goto(clock, 12)
    assert latched(pit, 2) == 0x0000
    goto(clock, 13)
    assert latched(pit, 2) == 0x9999


def test_binary_count_zero_means_65536() -> None:
    pit, clock, irq = make()
    program(pit, 0, 2, 0)
    assert latched(pit, 0) == 0  # before the load pulse the element still holds 0
    goto(clock, 2)
    assert latched(pit, 0) == 0xFFFF
    goto(clock, 65536)
    assert irq.rising_edges == 0
    goto(clock, 65537)
    assert irq.rising_edges == 1


def test_lsb_only_and_msb_only_access_fill_the_other_byte_with_zero() -> None:
    pit, clock, _ = make()
    gate2(pit, True)
    program(pit, 2, 0, 0x34, rw=RW_LSB)
    goto(clock, 1)
    assert pit.read(2, 1) == 0x34 and pit.read(2, 1) == 0x34
    program(pit, 2, 0, 0x1200, rw=RW_MSB)
    goto(clock, 2)
    assert pit.read(2, 1) == 0x12
    goto(clock, 3)
    assert pit.read(2, 1) == 0x11  # 0x11FF: MSB only


def test_two_byte_reads_alternate_lsb_then_msb() -> None:
    pit, clock, _ = make()
    gate2(pit, True)
    program(pit, 2, 0, 0xABCD)
    goto(clock, 1)
    assert [pit.read(2, 1) for _ in range(4)] == [0xCD, 0xAB, 0xCD, 0xAB]


def test_counter_latch_holds_its_value_while_counting_continues() -> None:
    """Counter Latch Command: the latch holds until read; a second latch is ignored."""
    pit, clock, _ = make()
    program(pit, 0, 2, 1000)
    goto(clock, 101)
    pit.write(CONTROL_OFFSET, 1, 0x00)
    goto(clock, 301)
    pit.write(CONTROL_OFFSET, 1, 0x00)  # ignored: the first latch is still unread
    assert pit.read(0, 1) == 900 & 0xFF
    goto(clock, 501)
    assert pit.read(0, 1) == 900 >> 8
    assert latched(pit, 0) == 500  # the next reads see the live count again


def test_read_back_status_reports_out_null_count_and_the_control_word() -> None:
    """Read-Back Command and Status Byte: status first, then the count; null count is set
    from the write until the count reaches the counting element."""
    pit, clock, _ = make()
    program(pit, 0, 2, 100)  # control word 0x34
    pit.write(CONTROL_OFFSET, 1, 0xE2)  # latch status of counter 0
    assert pit.read(0, 1) == STATUS_OUT | STATUS_NULL_COUNT | 0x34
    goto(clock, 3)
    pit.write(CONTROL_OFFSET, 1, 0xC2)  # latch status and count of counter 0
    assert pit.read(0, 1) == STATUS_OUT | 0x34
    assert pit.read(0, 1) | pit.read(0, 1) << 8 == 98
    goto(clock, 100)
    pit.write(CONTROL_OFFSET, 1, 0xE2)
    assert pit.read(0, 1) == 0x34  # OUT low: the element holds 1


def test_mode2_new_count_keeps_null_count_until_the_period_ends() -> None:
    """Mode 2: a new count written while counting takes effect at the next reload."""
    pit, clock, irq = make()
    program(pit, 0, 2, 100)
    goto(clock, 50)
    pit.write(0, 1, 200)
    pit.write(0, 1, 0)
    pit.write(CONTROL_OFFSET, 1, 0xE2)
    assert pit.read(0, 1) & STATUS_NULL_COUNT
    goto(clock, 101)
    pit.write(CONTROL_OFFSET, 1, 0xE2)
    assert not pit.read(0, 1) & STATUS_NULL_COUNT and latched(pit, 0) == 200
    goto(clock, 101 + 2 * 200)
    assert irq.rising_edges == 3


def test_control_port_reads_float_and_wide_accesses_are_byte_cycles() -> None:
    pit, clock, _ = make()
    assert pit.read(CONTROL_OFFSET, 1) == 0xFF
    gate2(pit, True)
    pit.write(CONTROL_OFFSET, 1, 0x90)  # counter 2, LSB only, mode 0
    pit.write(2, 2, 0x0012)  # lane 0 -> port 0x42, lane 1 -> port 0x43 (latch counter 0)
    goto(clock, 1)
    assert pit.read(2, 1) == 0x12
    assert pit.read(2, 4) == 0xFFFF_FF12  # LSB only, then 0x43 (write only), then not ours


# -- port 0x61 ----------------------------------------------------------------------------------


def test_port61_stores_gate_and_speaker_and_shows_refresh_and_out2() -> None:
    pit, clock, _ = make()
    pit.port61.write(0, 1, 0xFF)
    value = pit.port61.read(0, 1)
    assert value & 0x0F == 0x0F and not value & 0xC0
    assert value & PORT61_OUT2  # channel 2 OUT is high after power-on
    assert pit.port61.read(0, 2) >> 8 == 0xFF
    pit.port61.write(0, 1, PORT61_SPEAKER)
    assert pit.port61.read(0, 1) & 0x0F == PORT61_SPEAKER
    toggles = []
    for tick in (0, REFRESH_TOGGLE_TICKS, 2 * REFRESH_TOGGLE_TICKS):
        goto(clock, tick)
        toggles.append(bool(pit.port61.read(0, 1) & PORT61_REFRESH))
    assert toggles == [False, True, False]


def test_linux_tsc_calibration_sees_out2_after_exactly_n_plus_one_pulses() -> None:
    """pit_calibrate_tsc: gate high, speaker off, ch2 mode 0 count N, poll port 0x61 bit 5."""
    pit, clock, irq = make()
    clock.advance(123_456_789)  # start anywhere on the timeline
    pit.port61.write(0, 1, (pit.port61.read(0, 1) & ~PORT61_SPEAKER) | PORT61_GATE2)
    start = tick_at(clock.now)
    pit.write(CONTROL_OFFSET, 1, 0xB0)
    latch = 11932  # 10 ms worth, as Linux uses
    pit.write(2, 1, latch & 0xFF)
    pit.write(2, 1, latch >> 8)
    while not pit.port61.read(0, 1) & PORT61_OUT2:
        clock.advance(500)
    assert tick_at(clock.now) == start + 1 + latch
    assert irq.changes == [] and clock.scheduled == []  # channel 2 never interrupts


# -- periodic interrupts, clamping and lost ticks ----------------------------------------------


def test_1000hz_for_one_simulated_second_gives_1000_edges() -> None:
    pit, clock, irq = make()
    program(pit, 0, 2, PERIOD_1KHZ)
    clock.advance(1_000_000_000)
    assert abs(irq.rising_edges - 1000) <= 1
    assert clock.pending() == 1


@pytest.mark.parametrize("mode", [2, 3])
@pytest.mark.parametrize("count", [1, 2, 3, 59])
def test_fastest_rates_are_clamped_to_20khz_while_reads_keep_the_programmed_rate(
    mode: int, count: int
) -> None:
    pit, clock, irq = make()
    program(pit, 0, mode, count)
    clock.advance(10_000_000, max_callbacks=10_000)
    deadlines = clock.scheduled
    assert all(b - a >= MIN_IRQ_PERIOD_NS for a, b in zip(deadlines, deadlines[1:]))
    assert 150 <= irq.rising_edges <= 10_000_000 // MIN_IRQ_PERIOD_NS
    seen = set()
    for _ in range(count):
        seen.add((latched(pit, 0), pit.out(0)))
        clock.advance(ns_of_tick(tick_at(clock.now) + 1) - clock.now, max_callbacks=2)
    if mode == 2:  # the element visits every value of the programmed period
        assert {value for value, _ in seen} == set(range(1, count + 1))
    else:  # and OUT takes both levels within one period
        assert {out for _, out in seen} == ({True} if count == 1 else {True, False})


def _late_by_ten_periods(policy: str) -> tuple[Pit8254, StrictClock, FakeIrq, int]:
    """1 kHz on channel 0; the host sleeps from before edge 1 until edge 10, then wakes."""
    pit, clock, irq = make(policy)
    program(pit, 0, 2, PERIOD_1KHZ)
    clock.now = ns_of_tick(1 + 10 * PERIOD_1KHZ)  # time passes, no callback runs
    clock.advance(0)
    return pit, clock, irq, clock.now


def test_delay_policy_delivers_every_missed_tick_one_per_callback() -> None:
    pit, clock, irq, woke = _late_by_ten_periods("delay")
    assert irq.rising_edges == 1
    assert clock.scheduled[-1] == woke + CATCHUP_NS
    clock.advance(9 * CATCHUP_NS)
    assert irq.rising_edges == 10
    assert clock.scheduled[-9:-1] == [woke + k * CATCHUP_NS for k in range(2, 10)]
    assert clock.scheduled[-1] == ns_of_tick(1 + 11 * PERIOD_1KHZ)  # back on the grid
    goto(clock, 1 + 11 * PERIOD_1KHZ)
    assert irq.rising_edges == 11
    assert pit.tick_stats == TickStats(delivered=11, delayed=9)


def test_merge_policy_delivers_one_tick_for_all_missed() -> None:
    pit, clock, irq, _ = _late_by_ten_periods("merge")
    assert irq.rising_edges == 1
    assert clock.scheduled[-1] == ns_of_tick(1 + 11 * PERIOD_1KHZ)
    goto(clock, 1 + 11 * PERIOD_1KHZ)
    assert irq.rising_edges == 2
    assert pit.tick_stats == TickStats(delivered=2, merged=9)


def test_discard_policy_drops_missed_ticks_and_resumes_on_the_grid() -> None:
    pit, clock, irq, _ = _late_by_ten_periods("discard")
    assert irq.rising_edges == 0
    assert clock.scheduled[-1] == ns_of_tick(1 + 11 * PERIOD_1KHZ)
    goto(clock, 1 + 11 * PERIOD_1KHZ)
    assert irq.rising_edges == 1
    assert pit.tick_stats == TickStats(delivered=1, discarded=10)


@pytest.mark.parametrize("policy", ["delay", "discard", "merge"])
def test_a_tick_late_by_less_than_a_period_is_delivered_under_every_policy(
    policy: str
) -> None:
    pit, clock, irq = make(policy)
    program(pit, 0, 2, PERIOD_1KHZ)
    clock.now = ns_of_tick(1 + PERIOD_1KHZ) + 900_000
    clock.advance(0)
    assert irq.rising_edges == 1 and pit.tick_stats == TickStats(delivered=1)


def test_delay_backlog_is_capped() -> None:
    pit, clock, irq = make("delay")
    program(pit, 0, 2, PERIOD_1KHZ)
    clock.now = ns_of_tick(1 + 5000 * PERIOD_1KHZ)
    clock.advance(0)
    assert pit.tick_stats.discarded == 5000 - DELAY_BACKLOG_LIMIT
    assert pit.state().backlog == DELAY_BACKLOG_LIMIT - 1


def test_reprogramming_channel0_keeps_one_pending_callback() -> None:
    pit, clock, _ = make()
    for mode in (2, 3, 0, 4, 2):
        program(pit, 0, mode, 500)
        assert clock.pending() == 1
    program(pit, 0, 1, 500)  # mode 1 waits for a gate edge channel 0 never gets
    assert clock.pending() == 0


def test_unknown_lost_tick_policy_is_refused() -> None:
    with pytest.raises(ValueError):
        Pit8254(FakeClock(), FakeIrq(), lost_tick_policy="slew")


# -- reset and snapshots ------------------------------------------------------------------------


def test_reset_returns_to_power_on_and_cancels_the_timer() -> None:
    pit, clock, irq = make()
    program(pit, 0, 0, 1000)
    gate2(pit, True)
    pit.reset()
    assert clock.pending() == 0 and irq.level
    assert pit.state() == dataclasses.replace(
        PitState(), irq_accounted=tick_at(clock.now), stats=pit.tick_stats)


def test_state_round_trip_continues_counting_and_rearms_the_timer() -> None:
    pit, clock, irq = make("merge")
    program(pit, 0, 2, PERIOD_1KHZ)
    gate2(pit, True)
    program(pit, 2, 0, 30_000)
    goto(clock, 5000)
    pit.write(CONTROL_OFFSET, 1, 0x80)  # latch counter 2, leave it unread
    saved = pit.state()
    clock2, irq2 = StrictClock(clock.now), FakeIrq()
    copy = Pit8254.from_state(saved, clock2, irq2, lost_tick_policy="merge")
    assert copy.state() == saved and clock2.pending() == 1
    assert irq2.level == irq.level
    for device, clk in ((pit, clock), (copy, clock2)):
        goto(clk, 40_000)
    assert [latched(p, 2) for p in (pit, copy)] == [30_000 - 4999] * 2
    assert copy.tick_stats.delivered == pit.tick_stats.delivered
    assert latched(pit, 0) == latched(copy, 0)


@pytest.mark.parametrize(
    "change",
    [
        {"port61": 0x10},
        {"counters": (CounterState(),) * 2},
        {"counters": (CounterState(), CounterState(), CounterState(gate=True))},
        {"counters": (CounterState(mode=8), CounterState(), CounterState(gate=False))},
        {"counters": (CounterState(cr=0x10000), CounterState(), CounterState(gate=False))},
        {"counters": (CounterState(latch=(1, 2, 3)), CounterState(),
                      CounterState(gate=False))},
        {"counters": (CounterState(load_tick=5, count=0), CounterState(),
                      CounterState(gate=False))},
        {"counters": (CounterState(pause_tick=3), CounterState(), CounterState(gate=False))},
        {"backlog": DELAY_BACKLOG_LIMIT + 1},
        {"stats": TickStats(delivered=-1)},
    ],
)
def test_from_state_rejects_impossible_states(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Pit8254.from_state(dataclasses.replace(PitState(), **change), FakeClock(), FakeIrq())


# -- random traffic --------------------------------------------------------------------------------

_ops = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 3), st.integers(0, 255)),
    st.tuples(st.just("control"), st.integers(0, 3), st.integers(0, 7), st.integers(0, 3)),
    st.tuples(st.just("read"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("port61"), st.integers(0, 255), st.just(0)),
    st.tuples(st.just("advance"), st.integers(0, 3_000_000), st.just(0)),
    st.tuples(st.just("sleep"), st.integers(0, 30_000_000), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["delay", "discard", "merge"]), st.lists(_ops, max_size=60))
def test_random_port_traffic_keeps_invariants(policy: str, ops: list[tuple]) -> None:
    """No sequence raises, schedules a callback in the past, keeps more than one callback
    pending, or reads outside a byte; a snapshot always validates."""
    pit, clock, _ = make(policy)
    for op in ops:
        kind = op[0]
        if kind == "write":
            pit.write(op[1], 1, op[2])
        elif kind == "control":
            # a whole control word and a tiny count: the fastest rates, the most callbacks
            pit.write(CONTROL_OFFSET, 1, op[1] << 6 | 3 << 4 | op[2] << 1)
            pit.write(min(op[1], 2), 2, op[3])
        elif kind == "read":
            assert 0 <= pit.read(op[1], 1) <= 0xFF
        elif kind == "port61":
            pit.port61.write(0, 1, op[1])
            assert 0 <= pit.port61.read(0, 1) <= 0xFF
        elif kind == "advance":
            clock.advance(op[1], max_callbacks=1000)
        else:
            clock.now += op[1]  # the host was descheduled: callbacks run late
        assert clock.pending() <= 1
    pit.state().validate()
