"""Runs a program on a target and checks the oracles after every op.

A `Target` is one configuration built fresh (configs.py): buses whose devices sit behind
re-entry guards, checked guest memory, a virtual clock, backend events, and the roots and
invariants the probes look at. `run_program` executes ops in order, as the machine would:
each I/O op lets 1 us of virtual time pass (the event loop runs due timers meanwhile), work
a device deferred to the event loop (`Target.soon`) runs after the op, a reset the guest
requested happens after the op. The first violation ends the program.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..bus import Bus
from ..devices.base import Device
from .clock import TimerStorm, VirtualClock
from .memory import CheckedMemory, MemoryFinding
from .oracles import (GROWTH_LIMIT, LIVE_TIMER_LIMIT, OP_BUDGET_NS, PROBE_EVERY,
                      STALE_TIMER_LIMIT, Violation, exception_violation, footprint)
from .ops import Op, ProgramError

IO_TICK_NS = 1_000  # virtual time one guest I/O op takes
# Ops are timed on the wall clock (a thread CPU clock read costs ~2 us here, as much as a
# small op); an op over budget is then confirmed on the thread's CPU clock by a re-run.
WALL_CLOCK, CPU_CLOCK = time.perf_counter_ns, time.thread_time_ns
TREND_MIN_REPEATS = 512  # repetitions before per-repetition growth is judged
# Timer callbacks one program may cause before it is cut short. Virtual time costs host time
# (10 s steps of an 8 kHz RTC timer, repeated 4096 times, are 335M callbacks: hours), and a
# campaign must move on. Not a finding: the guest only asked for that much time to pass.
PROGRAM_CALLBACK_BUDGET = 1_000_000


class _Guard:
    """A bus-mapped device behind a re-entry check; the harness sees who does DMA."""

    def __init__(self, device: Device, name: str, target: "Target") -> None:
        self.device = device
        self.name = name
        self._target = target

    def read(self, offset: int, size: int) -> int:
        target = self._target
        target.enter(self.name, self.device)
        try:
            return self.device.read(offset, size)
        finally:
            target.leave()

    def write(self, offset: int, size: int, value: int) -> None:
        target = self._target
        target.enter(self.name, self.device)
        try:
            self.device.write(offset, size, value)
        finally:
            target.leave()


class GuardedBus(Bus):
    """A bus that puts every device it maps behind a `_Guard` of its target."""

    def __init__(self, name: str, limit: int, target: "Target") -> None:
        super().__init__(name, limit)
        self._target = target

    def register(self, base: int, size: int, device: Device, name: str = "") -> None:
        label = name or type(device).__name__
        super().register(base, size, _Guard(device, label, self._target), label)

    def unplace(self, base: int, device: Device) -> None:
        """`Bus.unplace` matches the mapped device, which here is the guard around it: without
        this a BAR move would leave its old range mapped, and the machine's wiring would be
        fuzzed with a bus the real one never has."""
        mapping = self.find(base)
        if (mapping is not None and mapping.base == base and isinstance(mapping.device, _Guard)
                and mapping.device.device == device):
            self.unregister(base)


@dataclass
class Event:
    """A backend event: `kinds` lists its arguments ('i' int, 'b' bytes)."""

    kinds: str
    run: Callable[..., object]


@dataclass
class Target:
    name: str
    memory: CheckedMemory = field(default_factory=CheckedMemory)
    clock: VirtualClock = field(default_factory=VirtualClock)
    events: dict[str, Event] = field(default_factory=dict)
    roots: dict[str, object] = field(default_factory=dict)
    invariants: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    soon: list[Callable[[], None]] = field(default_factory=list)
    reset_requested: bool = False
    on_reset: Callable[[], None] | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    profile: Any = None  # the generation Profile its configuration filled in

    def __post_init__(self) -> None:
        self.pio = GuardedBus("pio", 0x10000, self)
        self.mmio = GuardedBus("mmio", 1 << 52, self)
        self._active: list[tuple[str, object]] = []
        self.reentries: list[str] = []
        self.memory.active = lambda: self._active[-1][0] if self._active else "event loop"

    # re-entry bookkeeping, called by the guards
    def enter(self, name: str, device: object) -> None:
        if any(other is device for _, other in self._active):
            self.reentries.append(f"{name} entered again while handling an access "
                                  f"(stack: {' > '.join(n for n, _ in self._active)})")
        self._active.append((name, device))

    def leave(self) -> None:
        self._active.pop()

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.soon.append(callback)

    def request_reset(self) -> None:
        self.reset_requested = True

    def close(self) -> None:
        for closer in self.closers:
            closer()
        self.memory.close()


@dataclass
class RunResult:
    ops: int  # ops executed, repeats expanded
    violation: Violation | None
    rejected: int  # out-of-RAM DMA refused by the memory layer
    slow: Violation | None = None  # an op over budget on the wall clock, to be re-checked
    cut_short: bool = False  # stopped at PROGRAM_CALLBACK_BUDGET (not a finding)


class _Stop(Exception):
    def __init__(self, violation: Violation) -> None:
        self.violation = violation


class _OutOfTime(Exception):
    """The program used up PROGRAM_CALLBACK_BUDGET: it ends here, clean."""


class Runner:
    """One program on one target."""

    def __init__(self, target: Target, budget_ns: int = OP_BUDGET_NS,
                 time_ops: bool = True, clock: Callable[[], int] = WALL_CLOCK,
                 timed_op: int | None = None) -> None:
        self.t = target
        self.budget_ns = budget_ns
        self.time_ops = time_ops
        self._clock = clock if time_ops else _no_clock
        self.timed_op = timed_op  # only the op executed this many-th is timed (a re-check)
        self.slow: Violation | None = None
        self.index = 0
        self.executed = 0
        self.baseline = footprint(target.roots, self._skip()).units
        self._callback_limit = target.clock.callbacks + PROGRAM_CALLBACK_BUDGET

    def _skip(self) -> tuple[object, ...]:
        t = self.t
        return (t, t.memory, t.memory.inner, t.clock, t.pio, t.mmio)

    # -- the oracles -----------------------------------------------------------------------
    def _timed(self, what: object, call: Callable[[], object], budget: bool = True) -> None:
        """Run one op (or callback); `what` is turned into text only for a finding."""
        clock = self._clock if self.timed_op in (None, self.executed) else _no_clock
        start = clock()
        try:
            call()
        except _Stop:
            raise
        except TimerStorm as error:
            raise _Stop(Violation("timers", f"timers:storm:{str(what).split()[0]}",
                                  str(error), self.index)) from None
        except MemoryFinding:
            pass  # recorded in memory.findings, reported below
        except Exception as error:  # noqa: BLE001 - every escape is the finding
            raise _Stop(exception_violation(error, self.index, str(what))) from None
        finally:
            elapsed = clock() - start
        self._after(what, elapsed if budget else 0)

    def _after(self, what: object, elapsed: int) -> None:
        t = self.t
        if t.memory.findings:
            message = t.memory.findings[0]
            raise _Stop(Violation("memory", "memory:" + _shape(message), message, self.index))
        if t.reentries:
            raise _Stop(Violation("reentry", "reentry:" + t.reentries[0].split()[0],
                                  t.reentries[0], self.index))
        if self.time_ops and elapsed > self.budget_ns:
            slow = Violation("slow", f"slow:{str(what).split()[0]}",
                             f"{what} took {elapsed / 1e6:.1f} ms", self.index, self.executed)
            if self._clock is not WALL_CLOCK:
                raise _Stop(slow)
            # On the wall clock another process may have had the CPU: the program goes on
            # (so a campaign stays deterministic) and the engine re-checks this op later.
            if self.slow is None:
                self.slow = slow

    def probe(self) -> None:
        t = self.t
        clock = t.clock
        if clock.live() > LIVE_TIMER_LIMIT:
            raise _Stop(Violation("timers", "timers:live", f"{clock.live()} timers armed at once",
                                  self.index))
        if clock.stale() > STALE_TIMER_LIMIT:
            raise _Stop(Violation("timers", "timers:stale",
                                  f"{clock.stale()} cancelled far-future timers queued",
                                  self.index))
        now = footprint(t.roots, self._skip())
        for name, units in now.units.items():
            if units - self.baseline.get(name, 0) > GROWTH_LIMIT:
                raise _Stop(Violation("growth", f"growth:{name}",
                                      f"{name} grew by {units - self.baseline[name]} units "
                                      f"(largest: {now.largest})", self.index))
        for name, check in t.invariants:
            try:
                check()
            except Exception as error:  # noqa: BLE001
                raise _Stop(Violation("invariant", f"invariant:{name}",
                                      f"{name}: {type(error).__name__}: {error}",
                                      self.index)) from None

    # -- executing ---------------------------------------------------------------------------
    def _callback(self, callback: Callable[[], None]) -> None:
        self._timed("timer callback", callback)

    def _tick(self, ns: int, late: bool = False) -> None:
        # Each callback has the op budget; a long step may run many of them.
        self._timed("step", lambda: self.t.clock.advance(ns, self._callback, late), False)

    def _one(self, op: Op) -> None:
        t = self.t
        if t.clock.callbacks > self._callback_limit:
            raise _OutOfTime
        kind, args = op.kind, op.args
        self.executed += 1
        if kind == "in":
            self._timed(op, lambda: t.pio.read(args[1], args[0]))
        elif kind == "out":
            self._timed(op, lambda: t.pio.write(args[1], args[0], args[2]))
        elif kind == "read":
            self._timed(op, lambda: t.mmio.read(args[1], args[0]))
        elif kind == "write":
            self._timed(op, lambda: t.mmio.write(args[1], args[0], args[2]))
        elif kind == "fill":
            t.memory.guest_store(args[0], args[1])
        elif kind == "fillrep":
            length, pattern = args[1], args[2]
            data = (pattern * (length // len(pattern) + 1))[:length]
            t.memory.guest_store(args[0], data)
        elif kind in ("step", "lag"):
            self._tick(args[0], kind == "lag")
        elif kind == "event":
            name, *rest = args
            spec = t.events.get(name)
            if spec is None or len(rest) != len(spec.kinds) or any(
                    isinstance(a, bytes) != (k == "b") for a, k in zip(rest, spec.kinds)):
                raise ProgramError(f"configuration {t.name} has no event `{op}`")
            self._timed(op, lambda: spec.run(*rest))
        else:
            raise ProgramError(f"op {op} cannot run here")
        if kind in ("in", "out", "read", "write", "event"):
            self._tick(IO_TICK_NS)
        while t.soon:
            callback = t.soon.pop(0)
            self._timed("deferred work", callback)
        if t.reset_requested:
            t.reset_requested = False
            if t.on_reset is not None:
                self._timed("machine reset", t.on_reset)

    def _repeat(self, ops: list[Op], count: int, last: int) -> None:
        """Run the previous `last` ops `count` more times, in two halves: state that grows
        by a unit or more per repetition in both halves grows without bound (a one-time
        allocation, such as a transfer buffer, grows in the first half only)."""
        span = [o for o in ops[max(0, self.index - last):self.index] if o.kind != "repeat"]
        if not span:
            return
        skip = self._skip()
        sizes = [sum(footprint(self.t.roots, skip).units.values())]
        for half in (count // 2, count - count // 2):
            for _ in range(half):
                for inner in span:
                    self._one(inner)
            sizes.append(sum(footprint(self.t.roots, skip).units.values()))
        first, second = sizes[1] - sizes[0], sizes[2] - sizes[1]
        if count >= TREND_MIN_REPEATS and min(first, second) >= count // 2:
            raise _Stop(Violation("growth", "growth:per-op",
                                  f"state grew by {first} then {second} units over two runs of "
                                  f"{count // 2} repetitions of: {'; '.join(map(str, span))}",
                                  self.index))
        self.probe()

    def run(self, ops: list[Op]) -> RunResult:
        violation = None
        try:
            for self.index, op in enumerate(ops):
                if op.kind == "repeat":
                    self._repeat(ops, *op.args)
                else:
                    self._one(op)
                    if self.executed % PROBE_EVERY == 0:
                        self.probe()
            self.index = -1  # found after the last op
            self.probe()
        except _Stop as stop:
            violation = stop.violation
        except _OutOfTime:
            return RunResult(self.executed, None, sum(self.t.memory.rejected.values()),
                             self.slow, cut_short=True)
        return RunResult(self.executed, violation, sum(self.t.memory.rejected.values()),
                         self.slow)


def _no_clock() -> int:
    return 0


def _shape(message: str) -> str:
    """A memory finding's message without its addresses, for deduplication."""
    words = [w for w in message.split() if not w.startswith("0x") and "+0x" not in w]
    return " ".join(words)[:80]


def run_program(build: Callable[[], Target], ops: list[Op], *, time_ops: bool = True,
                budget_ns: int = OP_BUDGET_NS, cpu_clock: bool = False,
                timed_op: int | None = None) -> RunResult:
    """Build a fresh target, run `ops` on it, close it. On the CPU clock (a definitive
    timing) the garbage collector is off, so a collection cannot land inside one op."""
    target = build()
    collecting = gc.isenabled() and cpu_clock and time_ops
    if collecting:
        gc.disable()
    try:
        clock = CPU_CLOCK if cpu_clock else WALL_CLOCK
        return Runner(target, budget_ns, time_ops, clock, timed_op).run(ops)
    finally:
        target.close()
        if collecting:
            gc.enable()
