"""The PC's programmable interval timer: an Intel 8254 at ports 0x40-0x43, plus port 0x61.

Time: every counter value and OUT level is computed from `clock.now_ns()` and the clock pulse
at which the count was loaded; nothing ticks. Clock pulse k of the 1.193182 MHz input falls at
the first nanosecond t with t * PIT_HZ >= k * 10**9 (integer arithmetic on the Clock's own
timeline, so no drift). A write at pulse k loads the count on pulse k + 1, as the datasheet
says ("the count is loaded on the next CLK pulse"), so mode 0 with count N raises OUT N + 1
pulses after the write.

Interrupts: only channel 0 interrupts (its OUT is IRQ0, edge-triggered on the PIC), and only
through one pending `clock.call_at` at a time, aimed at the next edge that matters:
- mode 0 (and 1): the rising edge at terminal count drives the line high;
- mode 4 (and 5): the strobe, one callback at its end: the line is pulsed low then high;
- modes 2 and 3: one pulse (low then high) per period, at the reload, on the grid
  load + j * stride. The line stays high between pulses: the 8259 only sees rising edges, and
  OUT read back through the read-back status or port 0x61 is computed exactly from time instead.
  Register writes drive the line to OUT's exact level, so reprogramming mode 0 lowers it.
At power-on the line is taken to be at OUT's default (high) without being driven, so the first
programming of a periodic mode makes no spurious edge.

Rate clamp: the interrupt stride is the programmed period but at least MIN_IRQ_PERIOD_TICKS
(60 pulses, 50.3 us, ~19.9 kHz), and in any mode no callback is set less than
MIN_IRQ_PERIOD_NS after the previous delivery. Counts 1..59 in modes 2/3 therefore interrupt
every 60 pulses (not exactly on OUT's own edges) while reads still show the programmed rate
(KVM's in-kernel PIT clamps its period in the same spirit).

Lost ticks: when a periodic callback runs late, it first counts the grid edges now due (D >= 1).
D == 1 is an on-time tick (late by less than one period) and is delivered under every policy.
With D >= 2 the host slept through at least one whole period, and `lost_tick_policy` decides:
- "delay": every edge is delivered, one pulse per callback; while a backlog remains the next
  callback is set CATCHUP_NS (50 us) later, so the guest catches up at up to 20 kHz, then the
  original grid resumes. The backlog is capped at DELAY_BACKLOG_LIMIT ticks; the excess is
  discarded (counted as discarded).
- "merge": one pulse now stands for all D edges (D - 1 counted as merged); the grid resumes.
- "discard": all D edges are dropped, including the one that woke the callback, and delivery
  resumes at the next grid edge. A host that is always more than a period late gets no ticks.
`tick_stats` counts delivered, delayed, merged and discarded ticks.

What the guest can make it do: program any mode, count and access sequence, read counts and
status, toggle channel 2's gate and the speaker bit. What it cannot: hold more than one timer
callback, make callbacks faster than 20 kHz or in the past, or grow the delay backlog beyond
DELAY_BACKLOG_LIMIT.

Not emulated: the gates of channels 0 and 1 (tied high, so modes 1 and 5 never trigger there);
channel 1's DRAM refresh (port 0x61 bit 4 toggles every REFRESH_TOGGLE_TICKS pulses of clock
time instead); sound (the speaker bit is stored only); port 0x61 bits 2-3 are stored only and
bits 6-7 (parity and channel check) read 0. Simplifications: a gate change takes effect at the
pulse on which the write lands; the counting element keeps its old value until a new count is
loaded (the datasheet leaves it undefined); a count written during mode 3 takes effect at the
end of the current period, not half-cycle; the read and write byte flip-flops are separate;
count 1 in mode 2 (illegal on the chip) counts a one-pulse period with OUT held high; invalid
BCD digits are weighted as written, modulo 10000. Reads of the control word port return 0xFF.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from pyhvm.devices.base import ByteRegisters, Clock, Device, IrqLine, TimerHandle, check_access_size

PIT_HZ = 1_193_182  # input clock of every counter on a PC (14.31818 MHz / 12)
NS_PER_S = 1_000_000_000
PIT_BASE_PORT = 0x40  # map the Pit8254 at 0x40, REGISTER_COUNT ports
SYSTEM_CONTROL_PORT = 0x61  # "port B" of the PC/AT: map `port61` here, one port

# Offsets from the base port (8254 datasheet Table 1, A1:A0).
COUNTER0_OFFSET = 0  # channel 0: system timer, OUT drives IRQ0
COUNTER1_OFFSET = 1  # channel 1: DRAM refresh on old PCs, nothing attached here
COUNTER2_OFFSET = 2  # channel 2: speaker / calibration, gate and OUT via port 0x61
CONTROL_OFFSET = 3  # control word register, write only
REGISTER_COUNT = 4
UNMAPPED_BYTE = 0xFF  # unreadable or absent byte lanes float high on ISA

# Control word fields ("Control Word Format").
CW_SC_SHIFT = 6  # SC1:SC0 select the counter; 3 means read-back
CW_RW_SHIFT = 4  # RW1:RW0
CW_MODE_SHIFT = 1  # M2:M0; 6 and 7 are aliases of 2 and 3
CW_BCD = 0x01  # count in BCD (4 decades) instead of 16-bit binary
SC_READ_BACK = 3
RW_LATCH = 0  # counter latch command
RW_LSB = 1  # read/write the least significant byte only
RW_MSB = 2  # read/write the most significant byte only
RW_LSB_MSB = 3  # least significant byte first, then most significant

# Read-back command ("Read-Back Command"): 11 /COUNT /STATUS CNT2 CNT1 CNT0 0.
RB_NOT_COUNT = 0x20  # 0 = latch the count of each selected counter
RB_NOT_STATUS = 0x10  # 0 = latch the status of each selected counter
RB_COUNTER0 = 0x02
RB_COUNTER1 = 0x04
RB_COUNTER2 = 0x08

# Status byte ("Status Byte"): OUT, NULL COUNT, then the control word's RW, M and BCD bits.
STATUS_OUT = 0x80
STATUS_NULL_COUNT = 0x40  # the last count written has not yet reached the counting element

# Port 0x61 bits (PC/AT technical reference, system control port B).
PORT61_GATE2 = 0x01  # timer 2 gate, read/write
PORT61_SPEAKER = 0x02  # speaker data enable (OUT2 AND this drive the speaker), stored
PORT61_STORED = 0x0F  # bits 0-3 are latched; 2-3 are parity/channel-check disables
PORT61_REFRESH = 0x10  # read only: toggles on each DRAM refresh request
PORT61_OUT2 = 0x20  # read only: timer 2 OUT

REFRESH_TOGGLE_TICKS = 18  # channel 1 at count 18 on a PC: a refresh every ~15.09 us

MIN_IRQ_PERIOD_NS = 50_000  # 20 kHz: the fastest periodic interrupt we deliver
MIN_IRQ_PERIOD_TICKS = -(-MIN_IRQ_PERIOD_NS * PIT_HZ // NS_PER_S)  # 60 input pulses
CATCHUP_NS = MIN_IRQ_PERIOD_NS  # spacing of backlog deliveries under "delay"
DELAY_BACKLOG_LIMIT = 1000  # ticks owed under "delay" beyond this are discarded
LOST_TICK_POLICIES = ("delay", "discard", "merge")

BINARY_MODULUS = 0x10000  # a binary count of 0 means 65536
BCD_MODULUS = 10_000  # a BCD count of 0 means 10000

# Power-on state: the datasheet leaves mode, count and OUT undefined. We pick mode 3 with no
# count written: OUT high (as after any non-zero mode word), null count set, nothing running.
DEFAULT_MODE = 3
DEFAULT_RW = RW_LSB_MSB
DEFAULT_OUT = True
DEFAULT_PORT61 = 0x00  # gate 2 low, speaker off


@dataclass(frozen=True)
class TickStats:
    """Channel 0 interrupt accounting (see the module docstring for the policies)."""

    delivered: int = 0  # rising edges given to IRQ0
    delayed: int = 0  # edges that waited behind another in the "delay" backlog
    merged: int = 0  # edges folded into another delivery under "merge"
    discarded: int = 0  # edges dropped ("discard", or past the "delay" backlog limit)


@dataclass(frozen=True)
class CounterState:
    """One counter; ticks are input pulses on the Clock's timeline (ns * PIT_HZ // 10**9)."""

    mode: int = DEFAULT_MODE  # M2:M0 as written, 0-7
    rw: int = DEFAULT_RW  # 1-3
    bcd: bool = False
    gate: bool = True
    cr: int = 0  # count register as last written, raw 16 bits
    cr_ready: bool = False  # a complete count was written since the control word
    write_lsb: int | None = None  # first byte of a two-byte count, awaiting the second
    read_msb_next: bool = False  # unlatched two-byte reads alternate LSB, MSB
    latch: tuple[int, ...] = ()  # latched count bytes still to be read
    status_latch: int | None = None
    count: int = 0  # the count N in the counting element (1..65536, 1..10000 in BCD)
    load_tick: int | None = None  # pulse that loaded N; None while nothing is loaded
    pause_tick: int | None = None  # gate went low at this pulse (modes 0, 2, 3, 4)
    skipped: int = 0  # pulses spent paused since load_tick
    hold: int = 0  # counting element (raw pattern) before load_tick
    hold_out: bool = DEFAULT_OUT  # OUT before load_tick
    pending_count: int | None = None  # modes 2/3: count that reloads at transfer_tick
    transfer_tick: int | None = None  # when CR reaches the element; None = waits (null count)

    def validate(self) -> None:
        _check("mode", self.mode, 0, 7)
        _check("rw", self.rw, RW_LSB, RW_LSB_MSB)
        _check("cr", self.cr, 0, 0xFFFF)
        _check("hold", self.hold, 0, 0xFFFF)
        _check("skipped", self.skipped, 0, None)
        if self.write_lsb is not None:
            _check("write_lsb", self.write_lsb, 0, 0xFF)
        if self.status_latch is not None:
            _check("status_latch", self.status_latch, 0, 0xFF)
        if len(self.latch) > 2:
            raise ValueError(f"latch holds {len(self.latch)} bytes, at most 2")
        for byte in self.latch:
            _check("latch byte", byte, 0, 0xFF)
        top = BCD_MODULUS if self.bcd else BINARY_MODULUS
        for name in ("load_tick", "pause_tick", "transfer_tick"):
            value = getattr(self, name)
            if value is not None:
                _check(name, value, 0, None)
        if self.load_tick is None:  # a stale count from before the control word
            _check("count", self.count, 0, BINARY_MODULUS)
        else:
            _check("count", self.count, 1, top)
        if self.gate and self.pause_tick is not None:
            raise ValueError("pause_tick is set while the gate is high")
        if self.pending_count is not None:
            _check("pending_count", self.pending_count, 1, top)
            if (self.mode & 3 not in (2, 3) or self.pause_tick is not None
                    or self.transfer_tick is None or self.load_tick is None):
                raise ValueError("pending_count needs a running mode 2/3 and a transfer_tick")


@dataclass(frozen=True)
class PitState:
    """Everything a snapshot needs; the defaults are the power-on state at time 0."""

    counters: tuple[CounterState, ...] = (
        CounterState(), CounterState(), CounterState(gate=False))
    port61: int = DEFAULT_PORT61
    irq_level: bool = DEFAULT_OUT  # what IRQ0 was last driven to
    irq_accounted: int = 0  # channel 0 edges up to this pulse have been counted
    backlog: int = 0  # "delay" ticks owed
    last_fire_ns: int | None = None
    stats: TickStats = TickStats()

    def validate(self) -> None:
        if len(self.counters) != 3:
            raise ValueError(f"an 8254 has 3 counters, got {len(self.counters)}")
        for counter in self.counters:
            counter.validate()
        _check("port61", self.port61, 0, PORT61_STORED)
        if not (self.counters[0].gate and self.counters[1].gate):
            raise ValueError("gates of channels 0 and 1 are tied high")
        if self.counters[2].gate != bool(self.port61 & PORT61_GATE2):
            raise ValueError("channel 2 gate must match port 0x61 bit 0")
        _check("irq_accounted", self.irq_accounted, 0, None)
        _check("backlog", self.backlog, 0, DELAY_BACKLOG_LIMIT)
        for f in fields(TickStats):
            _check(f.name, getattr(self.stats, f.name), 0, None)


def _check(name: str, value: int, low: int, high: int | None) -> None:
    if not isinstance(value, int) or value < low or (high is not None and value > high):
        raise ValueError(f"{name} = {value!r} is outside {low}..{high}")



def tick_at(ns: int) -> int:
    """How many input pulses have occurred by time `ns`."""
    return ns * PIT_HZ // NS_PER_S


def ns_of_tick(tick: int) -> int:
    """The first nanosecond at which pulse `tick` has occurred."""
    return -(-tick * NS_PER_S // PIT_HZ)


def _from_bcd(raw: int) -> int:
    return sum(((raw >> (4 * i)) & 0xF) * 10**i for i in range(4))


def _to_bcd(value: int) -> int:
    return sum(((value // 10**i) % 10) << (4 * i) for i in range(4))


def _stride(count: int) -> int:
    """Pulses between delivered interrupts: the period, but at least MIN_IRQ_PERIOD_TICKS."""
    return max(count, MIN_IRQ_PERIOD_TICKS)


def _grid_edges(load: int, stride: int, after: int, upto: int) -> int:
    """How many j >= 1 have after < load + j * stride <= upto."""
    def below(x: int) -> int:
        return max(0, (x - load) // stride)
    return max(0, below(upto) - below(after))


class _Counter:
    """One counter's registers and timeline; attributes mirror CounterState."""

    def __init__(self, state: CounterState) -> None:
        for f in fields(CounterState):
            setattr(self, f.name, getattr(state, f.name))

    def state(self) -> CounterState:
        return CounterState(**{f.name: getattr(self, f.name) for f in fields(CounterState)})

    @property
    def op_mode(self) -> int:
        return self.mode & 3 if self.mode >= 6 else self.mode

    def _modulus(self) -> int:
        return BCD_MODULUS if self.bcd else BINARY_MODULUS

    def _effective(self, raw: int) -> int:
        value = (_from_bcd(raw) if self.bcd else raw) % self._modulus()
        return value or self._modulus()

    def _elapsed(self, t: int) -> tuple[int, int] | None:
        """(N, pulses counted since N was loaded) at pulse t; None before the first load."""
        if self.pending_count is not None and t >= self.transfer_tick:
            return self.pending_count, t - self.transfer_tick
        if self.load_tick is None or t < self.load_tick:
            return None
        end = t if self.pause_tick is None else max(min(t, self.pause_tick), self.load_tick)
        return self.count, end - self.load_tick - self.skipped

    def snapshot(self, t: int) -> tuple[int, bool]:
        """(counting element as read, OUT) at pulse t, per the mode's waveform."""
        elapsed = self._elapsed(t)
        if elapsed is None:
            return self.hold, self.hold_out
        n, e = elapsed
        mode = self.op_mode
        if mode in (0, 1):  # OUT low until terminal count, then high; the element wraps on
            value, out = n - e, e >= n
        elif mode == 2:  # N .. 1 repeating; OUT low while the element is 1
            pos = e % n
            value, out = n - pos, not (n > 1 and pos == n - 1)
        elif mode == 3:  # high for ceil(N/2), low for floor(N/2); element steps by 2
            pos, half = e % n, (n + 1) // 2
            value = (n & ~1) - 2 * (pos if pos < half else pos - half)
            out = pos < half
        else:  # modes 4, 5: OUT low for the one pulse at terminal count
            value, out = n - e, e != n
        if mode in (2, 3) and self.pause_tick is not None and t >= self.pause_tick:
            out = True  # gate low forces OUT high at once in modes 2 and 3
        value %= self._modulus()
        return (_to_bcd(value) if self.bcd else value), out

    def null_count(self, t: int) -> bool:
        return self.transfer_tick is None or t < self.transfer_tick

    def status(self, t: int) -> int:
        value = (self.rw << CW_RW_SHIFT) | (self.mode << CW_MODE_SHIFT) | int(self.bcd)
        if self.snapshot(t)[1]:
            value |= STATUS_OUT
        if self.null_count(t):
            value |= STATUS_NULL_COUNT
        return value

    def sync(self, t: int) -> None:
        """Make a modes 2/3 count that reached the element by pulse t the current one."""
        if self.pending_count is not None and t >= self.transfer_tick:
            self.count, self.load_tick = self.pending_count, self.transfer_tick
            self.pending_count, self.skipped = None, 0

    def _load(self, t: int, n: int, out_before: bool) -> None:
        """Count N reaches the element on the next pulse; until then it holds its value."""
        self.hold, self.hold_out = self.snapshot(t)[0], out_before
        self.count, self.load_tick, self.transfer_tick = n, t + 1, t + 1
        self.skipped, self.pending_count = 0, None
        gated = self.op_mode in (1, 5) or self.gate
        self.pause_tick = None if gated else t

    def _stop(self, t: int, out: bool) -> None:
        self.hold, self.hold_out = self.snapshot(t)[0], out
        self.load_tick, self.pause_tick, self.skipped = None, None, 0
        self.pending_count, self.transfer_tick = None, None

    def control(self, t: int, mode: int, rw: int, bcd: bool) -> None:
        """A control word resets the counter's logic; OUT is low in mode 0, else high."""
        self.sync(t)
        self.mode, self.rw, self.bcd = mode, rw, bcd
        self.write_lsb, self.read_msb_next = None, False
        self.latch, self.status_latch = (), None
        self.cr_ready = False
        self._stop(t, self.op_mode != 0)

    def write_byte(self, t: int, value: int) -> bool:
        """One byte to the count register; True if the counter's timeline restarted."""
        self.sync(t)
        if self.rw == RW_LSB:
            raw = value
        elif self.rw == RW_MSB:
            raw = value << 8
        elif self.write_lsb is None:
            self.write_lsb = value
            if self.op_mode == 0:  # mode 0: the first byte stops counting, OUT low at once
                self._stop(t, False)
                return True
            return False
        else:
            raw, self.write_lsb = self.write_lsb | value << 8, None
        self.cr, self.cr_ready = raw, True
        n, mode = self._effective(raw), self.op_mode
        out = self.snapshot(t)[1]
        if mode == 0:
            self._load(t, n, False)  # a new count in mode 0 sets OUT low
        elif mode == 4:
            self._load(t, n, out)
        elif mode in (1, 5):
            self.transfer_tick = None  # waits for a gate trigger
            return False
        elif self.load_tick is None or t < self.load_tick or self.pause_tick is not None:
            self._load(t, n, out)
        else:  # modes 2/3 while counting: the new count waits for the end of the period
            elapsed = self._elapsed(t)
            assert elapsed is not None
            self.pending_count = n
            self.transfer_tick = self.load_tick + (elapsed[1] // self.count + 1) * self.count
            return False
        return True

    def read_byte(self, t: int) -> int:
        if self.status_latch is not None:  # status comes first (read-back section)
            value, self.status_latch = self.status_latch, None
            return value
        if self.latch:
            value, self.latch = self.latch[0], self.latch[1:]
            return value
        pattern = self.snapshot(t)[0]
        msb = self.rw == RW_MSB or (self.rw == RW_LSB_MSB and self.read_msb_next)
        if self.rw == RW_LSB_MSB:
            self.read_msb_next = not self.read_msb_next
        return (pattern >> 8) if msb else pattern & 0xFF

    def latch_count(self, t: int) -> None:
        if self.latch:
            return  # a second latch before the first is read is ignored
        pattern = self.snapshot(t)[0]
        lsb, msb = pattern & 0xFF, pattern >> 8
        self.latch = {RW_LSB: (lsb,), RW_MSB: (msb,), RW_LSB_MSB: (lsb, msb)}[self.rw]

    def latch_status(self, t: int) -> None:
        if self.status_latch is None:
            self.status_latch = self.status(t)

    def set_gate(self, t: int, level: bool) -> None:
        self.sync(t)
        if level == self.gate:
            return
        self.gate = level
        mode = self.op_mode
        if level:
            if mode in (1, 2, 3, 5) and self.cr_ready:  # rising edge: trigger or reload
                self._load(t, self._effective(self.cr), self.snapshot(t)[1])
            elif self.pause_tick is not None:  # modes 0/4 resume counting
                if self.load_tick is not None:
                    self.skipped += max(0, t - max(self.pause_tick, self.load_tick))
                self.pause_tick = None
        elif mode not in (1, 5):
            self.pause_tick = t
            if self.pending_count is not None:  # the count now waits for the rising edge
                self.pending_count, self.transfer_tick = None, None


class Pit8254(ByteRegisters):
    """An 8254 mapped at 0x40 (offsets 0-3) and `port61` mapped at 0x61."""

    def __init__(self, clock: Clock, irq0: IrqLine, *, lost_tick_policy: str = "delay") -> None:
        if lost_tick_policy not in LOST_TICK_POLICIES:
            raise ValueError(
                f"lost_tick_policy must be one of {LOST_TICK_POLICIES}, got {lost_tick_policy!r}")
        self._clock = clock
        self._irq = irq0
        self._policy = lost_tick_policy
        self._timer: TimerHandle | None = None
        self._generation = 0
        self.port61: Device = _Port61(self)
        self._load_state(PitState(irq_accounted=tick_at(clock.now_ns())))

    # -- host side ---------------------------------------------------------------------------

    @property
    def lost_tick_policy(self) -> str:
        return self._policy

    @property
    def tick_stats(self) -> TickStats:
        return self._stats

    def out(self, channel: int) -> bool:
        """OUT of a channel now, without side effects."""
        return self._counters[channel].snapshot(self._now_tick())[1]

    def reset(self) -> None:
        """Back to the power-on state; statistics are kept."""
        stats = self._stats
        self._load_state(PitState(irq_accounted=self._now_tick(), irq_level=self._line))
        self._stats = stats
        self._drive(DEFAULT_OUT)

    def state(self) -> PitState:
        return PitState(
            counters=tuple(c.state() for c in self._counters), port61=self._port61,
            irq_level=self._line, irq_accounted=self._accounted, backlog=self._backlog,
            last_fire_ns=self._last_fire_ns, stats=self._stats)

    @classmethod
    def from_state(cls, state: PitState, clock: Clock, irq0: IrqLine, *,
                   lost_tick_policy: str = "delay") -> Pit8254:
        """Rebuild a PIT; checks bounds, re-drives IRQ0 to its saved level, re-arms the timer."""
        state.validate()
        pit = cls(clock, irq0, lost_tick_policy=lost_tick_policy)
        pit._load_state(state)
        now = clock.now_ns()
        pit._accounted = min(state.irq_accounted, tick_at(now))
        if state.last_fire_ns is not None:
            pit._last_fire_ns = min(state.last_fire_ns, now)
        irq0.set_level(state.irq_level)
        pit._arm(now)
        return pit

    def _load_state(self, state: PitState) -> None:
        self._cancel()
        self._counters = [_Counter(c) for c in state.counters]
        self._port61 = state.port61
        self._line = state.irq_level
        self._accounted = state.irq_accounted
        self._backlog = state.backlog
        self._last_fire_ns = state.last_fire_ns
        self._stats = state.stats

    # -- guest side --------------------------------------------------------------------------

    def _read_byte(self, offset: int) -> int:
        if COUNTER0_OFFSET <= offset <= COUNTER2_OFFSET:
            return self._counters[offset].read_byte(self._now_tick())
        return UNMAPPED_BYTE  # the control word register cannot be read

    def _write_byte(self, offset: int, value: int) -> None:
        t = self._now_tick()
        if COUNTER0_OFFSET <= offset <= COUNTER2_OFFSET:
            restarted = self._counters[offset].write_byte(t, value)
            if offset == COUNTER0_OFFSET:
                self._retime(restarted)
        elif offset == CONTROL_OFFSET:
            self._control(t, value)

    def _control(self, t: int, value: int) -> None:
        select = value >> CW_SC_SHIFT
        if select == SC_READ_BACK:
            for channel, bit in enumerate((RB_COUNTER0, RB_COUNTER1, RB_COUNTER2)):
                if value & bit:
                    if not value & RB_NOT_STATUS:
                        self._counters[channel].latch_status(t)
                    if not value & RB_NOT_COUNT:
                        self._counters[channel].latch_count(t)
            return
        rw = (value >> CW_RW_SHIFT) & 3
        if rw == RW_LATCH:
            self._counters[select].latch_count(t)
            return
        mode = (value >> CW_MODE_SHIFT) & 7
        self._counters[select].control(t, mode, rw, bool(value & CW_BCD))
        if select == 0:
            self._retime(True)

    def _read_port61(self) -> int:
        t = self._now_tick()
        value = self._port61
        if (t // REFRESH_TOGGLE_TICKS) & 1:
            value |= PORT61_REFRESH
        if self._counters[2].snapshot(t)[1]:
            value |= PORT61_OUT2
        return value

    def _write_port61(self, value: int) -> None:
        self._port61 = value & PORT61_STORED
        self._counters[2].set_gate(self._now_tick(), bool(value & PORT61_GATE2))

    # -- channel 0 and IRQ0 ------------------------------------------------------------------

    def _now_tick(self) -> int:
        return tick_at(self._clock.now_ns())

    def _drive(self, level: bool) -> None:
        if level != self._line:
            self._line = level
            self._irq.set_level(level)

    def _pulse(self) -> None:
        """A rising edge for the PIC: low (if not already) then high."""
        self._drive(False)
        self._drive(True)
        self._stats = _bump(self._stats, delivered=1)

    def _periodic(self) -> bool:
        c = self._counters[0]
        return c.op_mode in (2, 3) and c.pause_tick is None and c.load_tick is not None

    def _retime(self, restarted: bool) -> None:
        """After a guest write to channel 0: follow OUT, restart the grid if the count did."""
        now = self._clock.now_ns()
        t = tick_at(now)
        self._drive(self._counters[0].snapshot(t)[1])
        if restarted:
            self._accounted, self._backlog = t, 0
        self._arm(now)

    def _next_edge(self, after: int) -> int:
        """The first periodic interrupt pulse after pulse `after`."""
        c = self._counters[0]
        assert c.load_tick is not None
        stride = _stride(c.count)
        nxt = c.load_tick + stride * (max(0, (after - c.load_tick) // stride) + 1)
        if c.pending_count is not None:  # its reload is an edge, and starts a new grid
            nxt = min(nxt, max(c.transfer_tick, after + 1))
        return nxt

    def _count_edges(self, after: int, upto: int) -> int:
        """Periodic interrupt edges in (after, upto], moving past a pending count's reload."""
        c = self._counters[0]
        total = 0
        if c.load_tick is None:
            return 0
        if c.pending_count is not None and c.transfer_tick <= upto:
            reload = c.transfer_tick
            total += _grid_edges(c.load_tick, _stride(c.count), after, reload - 1)
            total += int(after < reload)  # the reload itself is a rising edge
            c.sync(reload)
            after = max(after, reload)
        return total + _grid_edges(c.load_tick, _stride(c.count), after, upto)

    def _cancel(self) -> None:
        self._generation += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, now: int) -> None:
        """Set the one callback for channel 0's next edge that matters, if any."""
        self._cancel()
        c = self._counters[0]
        t = tick_at(now)
        if self._periodic():
            if self._backlog:
                deadline = now + CATCHUP_NS
            else:
                deadline = ns_of_tick(self._next_edge(self._accounted))
        elif c.load_tick is None or c.pause_tick is not None:
            return
        else:
            terminal = c.load_tick + c.skipped + c.count  # the pulse at which the element hits 0
            if c.op_mode in (0, 1) and t < terminal:
                deadline = ns_of_tick(terminal)  # OUT rises
            elif c.op_mode in (4, 5) and t <= terminal:
                deadline = ns_of_tick(terminal + 1)  # the strobe ends
            else:
                return
        if self._last_fire_ns is not None:  # whatever the mode, IRQ0 stays under 20 kHz
            deadline = max(deadline, self._last_fire_ns + MIN_IRQ_PERIOD_NS)
        generation = self._generation
        self._timer = self._clock.call_at(max(deadline, now + 1),
                                          lambda: self._fire(generation))

    def _fire(self, generation: int) -> None:
        if generation != self._generation:
            return  # cancelled after the event loop had already picked it up
        self._timer = None
        now = self._clock.now_ns()
        t = tick_at(now)
        c = self._counters[0]
        if self._periodic():
            due = self._count_edges(self._accounted, t)
            self._accounted = max(self._accounted, t)
            self._deliver(due)
            self._last_fire_ns = now
        else:
            c.sync(t)
            out = c.snapshot(t)[1]
            if c.op_mode in (4, 5):
                self._pulse()
                self._last_fire_ns = now
            elif out and not self._line:
                self._drive(True)
                self._stats = _bump(self._stats, delivered=1)
                self._last_fire_ns = now
        self._arm(now)

    def _deliver(self, due: int) -> None:
        """Apply the lost-tick policy to `due` periodic edges found by one callback."""
        if self._policy == "delay":
            waiting = due - (0 if self._backlog else 1)
            self._backlog += due
            excess = max(0, self._backlog - DELAY_BACKLOG_LIMIT)
            self._backlog -= excess
            self._stats = _bump(self._stats, delayed=max(0, waiting), discarded=excess)
            if self._backlog:
                self._backlog -= 1
                self._pulse()
        elif due == 1:
            self._pulse()
        elif due > 1 and self._policy == "merge":
            self._pulse()
            self._stats = _bump(self._stats, merged=due - 1)
        elif due > 1:
            self._stats = _bump(self._stats, discarded=due)


def _bump(stats: TickStats, **add: int) -> TickStats:
    return TickStats(**{f.name: getattr(stats, f.name) + add.get(f.name, 0)
                        for f in fields(TickStats)})


class _Port61:
    """Port 0x61 as its own one-port device; wider lanes belong to other ports and float."""

    def __init__(self, pit: Pit8254) -> None:
        self._pit = pit

    def read(self, offset: int, size: int) -> int:
        check_access_size(size)
        lanes_above = ((1 << (8 * size)) - 1) & ~0xFF
        if offset != 0:
            return (1 << (8 * size)) - 1
        return self._pit._read_port61() | lanes_above

    def write(self, offset: int, size: int, value: int) -> None:
        check_access_size(size)
        if offset == 0:
            self._pit._write_port61(value & 0xFF)
