"""`pyhvm bench trace` without KVM: the untraced loop made from the runner's source, the
site counts, the check micro-benchmark, trace-file reading, the summary and its table."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyhvm.bench import exits, trace
from pyhvm.bench.common import BenchError
from pyhvm.cli import build_parser
from pyhvm.runtime.vcpu_runner import VcpuRunner
from pyhvm.trace.recorder import Recorder
from pyhvm.trace.records import RECORD, Kind

REPO = Path(__file__).resolve().parents[2]


def _sample_loop(trace, items):  # type: ignore[no-untyped-def]
    total = 0
    for item in items:
        if trace is not None:
            trace.append(("start", item))
        if item == "io":
            total += 1
            if trace is not None:
                trace.append(("io", item))
            continue
        elif item == "mmio":
            if trace is not None:
                trace.append(("mmio", item))
    return total


def _loop_with_while(trace, items):  # type: ignore[no-untyped-def]
    i = 0
    while i < len(items):
        reason = items[i]
        i += 1
        if trace is not None:
            trace.append("exit")
        if reason == KVM_EXIT_IO:
            if trace is not None:
                trace.append("pio")
            continue
        if trace is not None:
            trace.append("other")
    return i


KVM_EXIT_IO = "io"


def test_strip_removes_every_site_and_keeps_the_behaviour() -> None:
    stripped, removed = trace.strip_trace_sites(_sample_loop)
    assert removed == 3
    log: list = []
    assert stripped(log, ["io", "mmio", "io", "x"]) == 2
    assert log == []  # nothing recorded: the sites are gone, not just skipped
    assert _sample_loop(log, ["io"]) == 1 and log  # the original is untouched
    source = ast.unparse(ast.parse(textwrap.dedent(inspect.getsource(_sample_loop))))
    assert "trace.append" in source


def test_strip_fills_a_block_left_empty() -> None:
    def only_sites(trace, x):  # type: ignore[no-untyped-def]
        if x:
            if trace is not None:
                trace.append(x)
        return x

    stripped, removed = trace.strip_trace_sites(only_sites)
    assert removed == 1 and stripped(None, 5) == 5


def test_strip_without_sites_is_an_error() -> None:
    def plain(x: int) -> int:
        return x

    with pytest.raises(BenchError, match="no `if trace is not None:` sites"):
        trace.strip_trace_sites(plain)


def test_strip_leaves_other_none_checks_alone() -> None:
    def other(trace, injector):  # type: ignore[no-untyped-def]
        if injector is not None:
            injector.append(1)
        if trace is not None:
            trace.append(2)
        if trace is not None:
            trace.append(3)
        else:  # an else arm is not a trace site's shape: kept
            injector.append(4)

    stripped, removed = trace.strip_trace_sites(other)
    assert removed == 1
    log: list = []
    stripped(None, log)
    assert log == [1, 4]


def test_the_runners_loop_strips_and_counts() -> None:
    stripped, removed = trace.strip_trace_sites(VcpuRunner._loop)
    sites = trace.count_trace_sites(VcpuRunner._loop)
    assert removed == sites.in_loop >= 1
    assert 1 <= sites.per_pio_exit <= sites.in_loop
    assert stripped.__qualname__ == VcpuRunner._loop.__qualname__
    assert stripped.__globals__ is VcpuRunner._loop.__globals__
    names = set(stripped.__code__.co_names)
    assert "add" not in names  # no trace.add left in the hot loop
    assert "add" in set(VcpuRunner._loop.__code__.co_names)
    # Line numbers follow the real file, so a traceback from the variant reads right.
    assert stripped.__code__.co_firstlineno == VcpuRunner._loop.__code__.co_firstlineno


def test_count_sites_follows_the_port_branch() -> None:
    assert trace.count_trace_sites(_loop_with_while) == trace.SiteCounts(3, 2)


def test_untraced_main_patches_the_loop_and_runs_the_cli() -> None:
    proc = subprocess.run([sys.executable, "-c", trace._UNTRACED_SNIPPET, "run", "--help"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert trace.UNTRACED_MARKER in proc.stderr and "--trace-events" in proc.stdout


def test_check_cost_is_small_and_positive() -> None:
    costs = trace.check_cost_ns(repeat=3, number=20_000)
    assert len(costs) == 3
    assert all(c >= 0 for c in costs) and min(costs) < 1000


def test_the_on_path_code_comes_from_the_loop_and_times() -> None:
    code = trace.pio_site_code(VcpuRunner._loop)
    assert "trace.add(" in code and "if trace" not in code
    costs = trace.on_cost_ns(code, repeat=2, number=5_000)
    assert len(costs) == 2 and min(costs) > 0


def test_the_on_path_code_of_a_small_loop() -> None:
    assert trace.pio_site_code(_loop_with_while) == \
        "trace.append('exit')\ntrace.append('pio')"


def test_on_cost_refuses_names_it_cannot_supply() -> None:
    with pytest.raises(BenchError, match="mystery"):
        trace.on_cost_ns("trace.add(mystery)", repeat=1, number=1)


def _write_trace(path: Path, port: int, n: int) -> None:
    with open(path, "wb") as f:
        recorder = Recorder(f, ("exits",))
        recorder.start({"test": True})
        buf = recorder.buffer(0)
        for i in range(n):
            buf.add(Kind.EXIT_PIO, 1000 + i, 10, port, i, 1 | 1 << 8 | 1 << 16)
        buf.add(Kind.EXIT_PIO, 5000, 10, 0xF4, 0, 1 | 1 << 8 | 1 << 16)
        buf.add(Kind.HALT, 6000, 10)
        recorder.close()


def test_read_trace_file_counts_kinds_and_the_port(tmp_path: Path) -> None:
    path = tmp_path / "t.trc"
    _write_trace(path, 0x404, 50)
    got = trace.read_trace_file(path, 0x404)
    assert got.records == 52 and got.port_records == 50
    assert got.by_kind == {"EXIT_PIO": 51, "HALT": 1}
    assert got.size == path.stat().st_size > 52 * RECORD.size


def test_read_trace_file_rejects_garbage(tmp_path: Path) -> None:
    path = tmp_path / "bad.trc"
    path.write_bytes(b"not a trace at all")
    with pytest.raises(BenchError, match="unreadable"):
        trace.read_trace_file(path, 0x404)


def _outcome(ns: float, traced: bool = False, counted: int | None = None) -> trace.Outcome:
    khz = 2_000_000
    n = 1000
    sample = exits.Sample(n, int(ns * n * khz / 1e6), khz, "cpuid", 1.0)
    tf = trace.TraceFile(40_000, 1100, {"EXIT_PIO": 1100}, n) if traced else None
    return trace.Outcome(sample, tf, counted)


def _result() -> dict:
    kinds = trace.KINDS
    figures = {"c": 5000, "untraced": 10000, "off": 10010, "exits": 10500, "all": 10600}
    configs, results = [], []
    for kind in kinds:
        for vmm in ("c", *trace.MODES):
            configs.append((kind, vmm))
            results.append([_outcome(figures[vmm] + d, vmm in trace.TRACE_EVENTS,
                                     1000 if vmm == "c" else None) for d in (0, 40, -40)])
    micro = trace.Micro(trace.SiteCounts(4, 2), [2.0, 2.5, 3.0], [700.0, 650.0, 800.0],
                        "t_exit = now()\ntrace.add(1, t_exit)")
    return trace._summarize(kinds, configs, results, 1000, 3, micro)


def test_summary_has_the_envelope_ratios_and_goals() -> None:
    result = _result()
    assert list(result) == ["bench", "host", "runs", "ratios", "overhead"]
    json.dumps(result)
    assert result["bench"] == "trace"
    assert result["ratios"]["pio_unclaimed_off_over_untraced"] == pytest.approx(1.001, abs=1e-3)
    assert result["ratios"]["pio_uart_exits_over_off"] == pytest.approx(10500 / 10010, abs=1e-3)
    assert result["ratios"]["pio_uart_off_over_c"] == pytest.approx(2.002, abs=1e-3)
    runs = {(r["config"]["exit"], r["config"]["tracing"]): r for r in result["runs"]}
    exits_run = runs[("pio_unclaimed", "exits")]
    assert exits_run["config"]["trace_events"] == "exits"
    assert exits_run["metrics"]["trace_bytes_per_exit"] == 40.0
    assert exits_run["metrics"]["trace_records_per_exit"] == 1.1
    assert "trace_bytes" not in runs[("pio_unclaimed", "off")]["metrics"]
    assert runs[("pio_unclaimed", None)]["metrics"]["exits_counted"] == 1000
    overhead = result["overhead"]
    assert overhead["check"]["ns_per_check_min"] == 2.0
    assert overhead["check"]["sites_in_loop"] == 4
    goals = overhead["goals"]
    assert len(goals) == 4 and all(g["met"] is True for g in goals)
    off_goal, on_goal = goals[0], goals[1]
    assert off_goal["estimate_pct"] == pytest.approx(4 * 2.0 / 10010 * 100, abs=1e-3)
    assert off_goal["estimate_pio_path_pct"] == pytest.approx(2 * 2.0 / 10010 * 100, abs=1e-3)
    assert off_goal["measured_pct"] == pytest.approx(0.1, abs=1e-3)
    assert on_goal["estimate_pct"] == pytest.approx(650 / 10010 * 100, abs=1e-3)
    assert on_goal["measured_pct"] == pytest.approx((10500 / 10010 - 1) * 100, abs=1e-3)
    assert overhead["on_exits"]["ns_per_exit_min"] == 650.0


def test_verdicts_say_what_decided_them() -> None:
    assert trace._verdict(0.01, 0.001, (0.002, 0.005, 0.05)) == (True, "met")
    assert trace._verdict(0.01, 0.02, None)[0] is False  # the estimate alone is over
    assert trace._verdict(0.01, 0.001, None) == (True, "met (estimate only)")
    met, why = trace._verdict(0.10, 0.05, (0.127, 0.108, 0.036))
    assert met is None and why.startswith("unresolved")
    met, why = trace._verdict(0.10, 0.05, (0.25, 0.20, 0.03))
    assert met is False and "beyond their resolution" in why
    assert trace._verdict(0.10, 0.05, (-0.2, 0.01, 0.5)) == (True, "met")


def test_resolution_is_the_typical_rep_over_the_fastest() -> None:
    assert trace._resolution([100.0, 110.0, 130.0]) == pytest.approx(0.10)
    assert trace._resolution([0.0]) == 0.0


def test_render_shows_every_mode_the_sizes_and_the_method() -> None:
    text = trace.render(_result())
    for label in trace.MODE_LABELS.values():
        assert label in text
    assert "pio out 0x404 (nobody)" in text and "pio out 0x3f8 (UART THR)" in text
    assert "+4.9%" in text  # on: exits against off for the unclaimed port
    assert "40.0" in text and "1.100" in text
    assert "`if trace is not None:` costs 2.00 ns" in text
    assert "cost a port exit 650 ns" in text and "t_exit = now(); trace.add" in text
    assert "method:" in text and "goals:" in text and "host:" in text


def test_cli_parses_bench_trace() -> None:
    args = build_parser().parse_args(["bench", "trace", "--n", "100", "--reps", "2", "--json"])
    assert (args.bench, args.n, args.reps, args.json) == ("trace", 100, 2, True)
    defaults = build_parser().parse_args(["bench", "trace"])
    assert defaults.n == trace.DEFAULT_N and defaults.reps == trace.DEFAULT_REPS


def test_measure_rejects_bad_counts() -> None:
    with pytest.raises(BenchError, match="at least 1"):
        trace.measure(n=0)
