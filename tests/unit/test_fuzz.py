"""The fuzzer itself: its op grammar, its checking memory and clock, that each oracle catches
the bug it is for (planted in small broken devices), minimization, replay and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyhvm.cli import main
from pyhvm.devices.base import GuestError
from pyhvm.fuzz import ops as o
from pyhvm.runtime.eventloop import MIN_CANCELLED_TO_PURGE
from pyhvm.fuzz.clock import TimerStorm, VirtualClock
from pyhvm.fuzz.configs import CONFIGS
from pyhvm.fuzz.engine import Campaign, minimize, replay, write_reproducer
from pyhvm.fuzz.harness import Event, Runner, Target, run_program
from pyhvm.fuzz.memory import CheckedMemory, MemoryFinding
from pyhvm.fuzz.oracles import GROWTH_LIMIT, Violation, footprint
from pyhvm.memory import GuestMemoryError

# -- the op grammar ------------------------------------------------------------------------


def test_every_op_kind_survives_a_text_round_trip() -> None:
    program = [o.port_out(4, 0xCF8, 0x80000810), o.port_in(1, 0x64), o.port_in(2, 0x1F0),
               o.mmio_write(8, 0xFEBF1000, 0x1122334455667788), o.mmio_read(1, 0xFEBF1037),
               o.fill(0x1000, bytes.fromhex("0000100000800000")), o.fill(0x2000, b""),
               o.fill_repeat(0x3000, 0x800, b"\xff\x00"), o.step(1_000_000), o.lag(5),
               o.repeat(0x1000, 2), o.event("rx", b"AB"), o.event("irq", 9, 1), o.event("ack")]
    text = o.format_program(program, "pc", ["a comment"])
    assert text.splitlines()[:3] == ["# a comment", "config pc", "outl 0xcf8 0x80000810"]
    assert o.parse_program(text) == ("pc", program)


@pytest.mark.parametrize("line, complaint", [
    ("outb 0x10000 1", "outside"),           # past the port space
    ("outb 0x60 0x100", "outside"),          # a value wider than the access
    ("inq 0x60", "unknown op"),              # no 8-byte port access on x86
    ("fill 0x0 abcd", "byte string"),        # data must be h:HEX
    ("fill 0x0 h:abc", "valid hex"),
    ("step 20000000000", "outside"),         # more than 10 s of virtual time
    ("repeat 0 1", "outside"),
    ("repeat 2 65", "outside"),              # a repeat covers at most 64 ops
    ("writel 0x10", "takes 2"),
    ("frobnicate 1", "unknown op"),
])
def test_bad_reproducer_lines_are_refused_with_the_line_named(line: str, complaint: str) -> None:
    with pytest.raises(o.ProgramError, match=complaint) as error:
        o.parse_program(f"config pc\n{line}\n", "r.txt")
    assert "r.txt:2" in str(error.value)


def test_config_line_must_come_first() -> None:
    with pytest.raises(o.ProgramError, match="must come first"):
        o.parse_program("inb 0x60\nconfig pc\n")


def test_op_builders_mask_values_to_the_access_size() -> None:
    assert o.port_out(1, 0x60, 0x1FF).args == (1, 0x60, 0xFF)
    assert o.step(1 << 60).args == (o.STEP_LIMIT,)
    assert o.repeat(1 << 40, 500).args == (o.REPEAT_LIMIT, o.REPEAT_SPAN_LIMIT)


# -- checking memory and virtual clock ------------------------------------------------------


def test_checked_memory_counts_refused_accesses_outside_ram() -> None:
    memory = CheckedMemory()
    try:
        top = memory.ram_top
        for gpa, size in ((top - 4, 8), (0x100000, 1), (0xFFFF0, 0x20), (-1, 1), (0, -1)):
            with pytest.raises(GuestMemoryError):
                memory.read(gpa, size)
        assert memory.rejected["read"] == 5 and memory.findings == []
        memory.write(0x100000 - 4, b"abcd")  # the last dword before the hole
        assert memory.view(0x100000 - 4, 4) == b"abcd"
    finally:
        memory.close()


def test_checked_memory_flags_a_memory_layer_that_lets_an_access_through() -> None:
    memory = CheckedMemory()
    try:
        memory.inner.read = lambda gpa, size: bytes(size)  # a broken layer: no bounds check
        with pytest.raises(MemoryFinding):
            memory.read(0x100000, 4)  # in the hole
        assert "outside guest RAM was accepted" in memory.findings[0]
    finally:
        memory.close()


def test_guest_stores_are_clipped_to_ram() -> None:
    memory = CheckedMemory()
    try:
        memory.guest_store(0x100000 - 2, b"\x11\x22\x33\x44")  # runs into the hole
        assert memory.read(0x100000 - 2, 2) == b"\x11\x22"
        assert memory.accesses == 1
    finally:
        memory.close()


def test_virtual_clock_keeps_cancelled_timers_until_due_like_the_event_loop() -> None:
    clock = VirtualClock(start_ns=0)
    ran: list[int] = []
    for i in range(3):
        clock.call_at(10 ** 10, lambda: ran.append(1)).cancel()
    clock.call_at(5, lambda: ran.append(5))
    assert (clock.live(), clock.queued(), clock.stale()) == (1, 4, 3)
    assert clock.advance(10, lambda callback: callback()) == 1
    assert ran == [5] and clock.now_ns() == 10


def test_a_late_advance_runs_the_due_callbacks_after_the_jump() -> None:
    clock = VirtualClock(start_ns=0)
    seen: list[int] = []
    clock.call_at(5, lambda: seen.append(clock.now_ns()))
    clock.advance(10, lambda callback: callback(), late=True)
    assert seen == [10]


def test_a_timer_that_rearms_at_now_is_a_storm() -> None:
    clock = VirtualClock(start_ns=0)

    def again() -> None:
        clock.call_at(clock.now_ns(), again)

    clock.call_at(1, again)
    with pytest.raises(TimerStorm):
        clock.advance(10, lambda callback: callback())


# -- each oracle catches its bug ------------------------------------------------------------

class Planted:
    """A one-port device with a bug chosen by the value written."""

    def __init__(self, target: Target) -> None:
        self.t = target
        self.kept: list[int] = []

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if value == 1:
            raise IndexError("a register index the model forgot to check")
        if value == 2:
            raise GuestError("not caught: the vCPU loop has no handler for it")
        if value == 3:
            self.t.memory.read(0x200, 4)  # fine
            try:
                self.t.memory.read(self.t.memory.ram_top, 4)
            except GuestMemoryError:
                pass  # refused and handled: counted, not a violation
        if value == 4:
            self.t.pio.read(0x500, 1)  # into itself through the bus
        if value == 5:
            self.kept.append(value)  # grows with every write
        if value == 6:
            self.t.clock.call_at(self.t.clock.now_ns(), lambda: self.write(0, 1, 6))
        if value == 7:
            for _ in range(100):
                self.t.clock.call_at(self.t.clock.now_ns() + 10 ** 12, lambda: None).cancel()
        if value == 8:
            self.kept.extend(range(GROWTH_LIMIT))


def planted_target() -> Target:
    target = Target("planted")
    device = Planted(target)
    target.pio.register(0x500, 1, device, "planted")
    target.roots["planted"] = device
    target.events["poke"] = Event("i", lambda v: device.write(0, 1, v))
    return target


def run_planted(*program: o.Op, budget_ns: int | None = None) -> Violation | None:
    """Untimed unless a budget is given: a busy host must not turn a finding into 'slow'."""
    return run_program(planted_target, list(program), time_ops=budget_ns is not None,
                       budget_ns=budget_ns or 0).violation


@pytest.mark.parametrize("poke, kind, signature", [
    (1, "exception", "exception:IndexError@"),
    (2, "exception", "exception:GuestError@"),
    (4, "reentry", "reentry:planted"),
    (6, "timers", "timers:storm"),
])
def test_each_oracle_reports_its_bug(poke: int, kind: str, signature: str) -> None:
    violation = run_planted(o.port_in(1, 0x500), o.port_out(1, 0x500, poke))
    assert violation is not None
    assert (violation.kind, violation.op_index) == (kind, 1)
    assert violation.signature.startswith(signature)


def test_a_refused_out_of_ram_access_is_counted_not_reported() -> None:
    result = run_program(planted_target, [o.port_out(1, 0x500, 3)], time_ops=False)
    assert result.violation is None and result.rejected == 1


def test_an_exception_from_a_backend_event_is_reported_too() -> None:
    violation = run_planted(o.event("poke", 1))
    assert violation is not None and violation.message.startswith("IndexError escaped event")


def test_state_grown_past_the_limit_is_reported_after_the_program() -> None:
    violation = run_planted(o.port_out(1, 0x500, 8))
    assert violation is not None
    assert (violation.signature, violation.op_index) == ("growth:planted", -1)


def test_growth_with_every_repetition_is_unbounded_growth() -> None:
    violation = run_planted(o.port_out(1, 0x500, 5), o.repeat(1024, 1))
    assert violation is not None and violation.signature == "growth:per-op"


def test_cancelled_far_future_timers_are_purged_as_the_event_loop_does() -> None:
    """A device cancelling and re-arming far-future timers no longer grows the heap (the
    event loop purges cancelled entries, and the virtual clock follows the same rule)."""
    assert run_planted(o.port_out(1, 0x500, 7), o.repeat(200, 1)) is None
    clock = VirtualClock(start_ns=0)
    for _ in range(20_000):
        clock.call_at(10 ** 12, lambda: None).cancel()
    assert clock.queued() < 2 * MIN_CANCELLED_TO_PURGE


def test_an_op_over_budget_on_the_cpu_clock_is_slow() -> None:
    program = [o.port_out(1, 0x500, 0), o.port_in(1, 0x500)]
    result = run_program(planted_target, program, budget_ns=-1, cpu_clock=True)
    assert result.violation is not None and result.violation.signature == "slow:outb"
    assert result.ops == 1  # the program stopped there


def test_an_op_over_budget_on_the_wall_clock_is_only_a_candidate() -> None:
    """Another process may have had the CPU: the program runs on, the engine re-checks."""
    program = [o.port_out(1, 0x500, 0), o.port_in(1, 0x500)]
    result = run_program(planted_target, program, budget_ns=-1)
    assert result.violation is None and result.ops == 2
    assert result.slow is not None and (result.slow.op_index, result.slow.executed) == (0, 1)


def test_footprint_counts_bytes_and_container_slots_not_shared_objects() -> None:
    class Model:
        __module__ = "pyhvm.devices.fake"

        def __init__(self, shared: bytearray) -> None:
            self.buffer = bytearray(100)
            self.queue = [1, 2, 3]
            self.shared = shared

    shared = bytearray(10 ** 6)
    assert footprint({"m": Model(shared)}, skip=(shared,)).units == {"m": 100 + 24}


# -- campaigns, minimization, replay --------------------------------------------------------


def test_a_campaign_is_deterministic_from_its_seed() -> None:
    first = Campaign("uart", seed=7).run(3000)
    second = Campaign("uart", seed=7).run(3000)
    assert (first.ops, first.programs) == (second.ops, second.programs)
    assert Campaign("uart", seed=8).run(3000).ops != first.ops


def test_minimization_keeps_only_the_ops_the_failure_needs() -> None:
    noise = [o.port_in(1, 0x500), o.port_out(1, 0x500, 0), o.step(1000), o.fill(0, b"x")]
    program = noise * 5 + [o.port_out(1, 0x500, 1)] + noise
    violation = run_planted(*program)
    assert violation is not None
    assert minimize(planted_target, program, violation) == [o.port_out(1, 0x500, 1)]


def test_a_written_reproducer_replays_to_the_same_violation(tmp_path: Path) -> None:
    CONFIGS["planted"] = planted_target
    try:
        violation = run_planted(o.port_out(1, 0x500, 1))
        assert violation is not None
        path = write_reproducer(tmp_path, "planted", [o.port_out(1, 0x500, 1)], violation, 3)
        assert "found by: pyhvm fuzz --config planted --seed 3" in path.read_text()
        config, result = replay(path)
        assert config == "planted" and result.violation == violation
    finally:
        del CONFIGS["planted"]


def test_cli_lists_configurations(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--list"]) == 0
    assert set(capsys.readouterr().out.split()) == set(CONFIGS)


def test_cli_replays_a_clean_reproducer_as_json(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "clean.txt"
    path.write_text("config pic\noutb 0x20 0x11\noutb 0x21 0x20\nevent irq 0x1 0x1\n")
    assert main(["fuzz", "--replay", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"] == "pic" and report["violation"] is None and report["ops"] == 3


def test_cli_campaign_json_has_ops_rate_violations_and_coverage(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--config", "pic", "--ops", "500", "--engine", "random",
                 "--json", "--save", ""]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"] == "pic" and report["ops"] >= 500
    assert report["violations"] == [] and report["ops_per_s"] > 0
    assert "coverage" in report


@pytest.mark.parametrize("argv, complaint", [
    (["fuzz", "--config", "nosuch"], "--config nosuch"),
    (["fuzz", "--replay", "/nonexistent/r.txt"], "cannot read"),
])
def test_cli_refuses_bad_arguments_in_one_line(argv: list[str], complaint: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 4
    err = capsys.readouterr().err
    assert complaint in err and "Traceback" not in err


def _have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _have_atheris(), reason="atheris is an optional extra ('.[fuzz]')")
def test_atheris_engine_runs_its_budget_and_reports_json(tmp_path: Path) -> None:
    """libFuzzer owns the process (it exits it), so this runs `pyhvm fuzz` in a child."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    child = subprocess.run(
        [sys.executable, "-m", "pyhvm", "fuzz", "--engine", "atheris", "--config", "uart",
         "--ops", "100", "--json", "--save", str(tmp_path)],
        cwd=root, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    report = json.loads(child.stdout)
    assert report["engine"] == "atheris" and report["ops"] >= 100


def test_a_corpus_is_kept_and_replayed_by_the_next_campaign(tmp_path: Path) -> None:
    arcs = iter(range(10 ** 6))  # every program "reaches new branches"
    first = Campaign("uart", seed=1, engine="cov", arcs=lambda: next(arcs), corpus_dir=tmp_path)
    first.run(2000)
    kept = sorted((tmp_path / "uart").glob("*.txt"))
    assert kept and len(kept) <= first.stats.programs
    second = Campaign("uart", seed=2, engine="cov", arcs=lambda: next(arcs),
                      corpus_dir=tmp_path)
    assert second.load_corpus() == len(kept)
    assert second.stats.programs == len(kept) and len(second.corpus) == len(kept)


def test_a_guest_bar_move_unmaps_the_old_range_in_the_fuzzed_pc(
        caplog: pytest.LogCaptureFixture) -> None:
    """The harness guards every mapped device; a BAR move must still unmap the old range, as
    the machine's bus does, or the fuzzer runs a machine whose BARs never leave."""
    target = CONFIGS["pc"]()
    old = target.pio.find(0xC000)
    assert old is not None and old.name == "ide-bus-master"
    for _ in range(2):  # twice: the second move starts from a range the first one placed
        target.pio.write(0xCF8, 4, 0x80000920)  # 00:01.1 (PIIX3 IDE), BAR4
        target.pio.write(0xCFC, 4, 0xD001)
    moved = target.pio.find(0xD000)
    assert target.pio.find(0xC000) is None
    assert moved is not None and moved.name == "ide-bus-master"
    assert "cannot decode" not in caplog.text


def test_the_fuzz_command_imports_no_device_model_before_its_coverage_meter() -> None:
    """Modules imported before the meter starts count their definitions as missed lines."""
    import subprocess
    import sys

    probe = ("import sys; from pyhvm.cli import build_parser; build_parser(only='fuzz'); "
             "print(sorted(m for m in sys.modules if m.startswith('pyhvm.devices.')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_a_program_asking_for_hours_of_virtual_time_is_cut_short_not_reported(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Hours of an 8 kHz RTC timer are hundreds of millions of callbacks: the harness stops
    the program at its callback budget (a campaign must move on); the guest did nothing
    wrong, so there is no finding. (A smaller budget here keeps the test quick.)"""
    from pyhvm.fuzz import harness
    from pyhvm.fuzz.ops import parse_program

    budget, per_step = 50_000, 81_920  # 10 s of 8192 Hz
    monkeypatch.setattr(harness, "PROGRAM_CALLBACK_BUDGET", budget)
    _, program = parse_program("outb 0x70 0x0a\noutb 0x71 0x23\n"  # RS=3: 8192 Hz
                               "outb 0x70 0x0b\noutb 0x71 0x42\n"  # PIE, 24-hour
                               "step 10000000000\nrepeat 4096 1\n")
    target = CONFIGS["rtc"]()
    result = run_program(lambda: target, program)
    assert result.violation is None and result.cut_short
    assert budget < target.clock.callbacks <= per_step + 2  # stopped after the first step
    once = run_program(CONFIGS["rtc"], program[:5])  # one step: only ops after it are cut
    assert once.violation is None and not once.cut_short
