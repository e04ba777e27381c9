"""`pyhvm bench paper` without KVM: the section table against the benchmark modules it
calls, headline picking and pairing by repetition, the verdicts, how a section that cannot
run is reported, the progress estimate, and the trace reductions (exit profile, before/after
comparison, DMA timeline, echo round trips) on hand-built records."""

from __future__ import annotations

import importlib
import inspect
import io
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from pyhvm.bench import common, paper, paper_sections, paper_traces
from pyhvm.bench.common import BenchError
from pyhvm.bench.paper_progress import Estimator, Progress, fmt_duration
from pyhvm.bench.paper_sections import SECTIONS, Section, by_name, per_rep, verdict
from pyhvm.cli import build_parser
from pyhvm.trace.records import Kind, Record
from pyhvm.trace.report import analyze

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "paper"
T0 = 5_000_000_000
OUT = 1 << 8


def quick_bundle() -> dict[str, Any]:
    return json.loads((FIXTURES / "quick-bundle.json").read_text())


def recorded(name: str) -> dict[str, Any]:
    """A benchmark's JSON as `pyhvm bench paper --quick` recorded it."""
    return next(e for e in quick_bundle()["sections"] if e["name"] == name)["result"]


# --- the section table ------------------------------------------------------------------------
def test_every_section_names_a_claim_and_both_parameter_sets() -> None:
    names = [s.name for s in SECTIONS]
    assert names == ["pic", "ide", "net", "vga", "mem", "exits", "startup"]
    for section in SECTIONS:
        assert section.claim.text and section.title and section.module.startswith("pyhvm.bench.")
        assert section.kind in ("optimization", "context")
        assert section.estimate(True) < section.estimate(False)
        assert section.quick.get("reps") == 1 and section.full.get("reps", 0) >= 3
    optimizations = [s.name for s in SECTIONS if s.kind == "optimization"]
    assert optimizations == ["pic", "ide", "net", "vga"]  # the paper's four claims
    assert all(by_name(n).trace is not None for n in optimizations)


@pytest.mark.parametrize("name", [s.name for s in SECTIONS])
def test_parameters_are_keywords_the_benchmark_takes(name: str) -> None:
    """The table drives the real modules: every parameter it sets must exist there (a
    rename in a benchmark would otherwise be dropped silently by the signature filter),
    and every value it takes from the module must be there too."""
    section = by_name(name)
    try:
        module = importlib.import_module(section.module)
    except ModuleNotFoundError:
        pytest.skip(f"{section.module} is not in this checkout")
    accepted = inspect.signature(module.measure).parameters
    for params in (section.quick, section.full):
        assert set(params) <= set(accepted), set(params) - set(accepted)
        paper.resolve(params, module)


def test_parameters_from_the_module_are_resolved_when_it_runs() -> None:
    module = types.ModuleType("pyhvm.bench.sizes_for_tests")
    module.QUICK = (1, 2)
    params = {"reps": 1, "params": paper_sections.FromModule("QUICK")}
    assert paper.resolve(params, module) == {"reps": 1, "params": (1, 2)}
    assert paper._jsonable(params) == {"reps": 1, "params": "the benchmark's QUICK"}
    with pytest.raises(BenchError, match="has no SMALL"):
        paper.resolve({"params": paper_sections.FromModule("SMALL")}, module)


def test_call_measure_passes_only_what_the_signature_takes() -> None:
    seen: dict[str, Any] = {}

    def measure(reps: int = 1, kernel: str | None = None) -> dict[str, Any]:
        seen.update(reps=reps, kernel=kernel)
        return {}

    paper.call_measure(measure, {"reps": 2, "quick": True, "qemu": False}, "k.elf")
    assert seen == {"reps": 2, "kernel": "k.elf"}

    def flexible(**kwargs: Any) -> dict[str, Any]:
        seen.clear()
        seen.update(kwargs)
        return {}

    paper.call_measure(flexible, {"reps": 1}, None)
    assert seen == {"reps": 1, "kernel": None, "show_progress": False}


# --- a section that cannot run is stated, never hidden ----------------------------------------
def _fake_section(module: str) -> Section:
    return Section(name="fake", title="Fake", kind="optimization", module=module,
                   claim=paper_sections.Claim("a claim", "> 2x", 2.0), before="a", after="b",
                   quick={"reps": 1}, full={"reps": 3},
                   headline=paper_sections.generic_headline((r"b_over_a",), "b over a"),
                   estimate_s=(1, 2))


@pytest.fixture
def fake_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("pyhvm.bench.fake_for_tests")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def test_a_missing_benchmark_module_is_not_run_with_its_path() -> None:
    status, reason, result, _ = paper.measure_section(
        _fake_section("pyhvm.bench.no_such_bench"), True, None, lambda m: None)
    assert status == "not run" and result is None
    assert reason == ("pyhvm/bench/no_such_bench.py does not exist in this checkout "
                      "(bench fake is not built yet)")


def test_a_host_error_is_not_run_and_a_bug_is_failed(fake_module: types.ModuleType) -> None:
    section = _fake_section(fake_module.__name__)

    def no_qemu(reps: int) -> dict[str, Any]:
        raise BenchError("qemu-system-x86_64 is not installed")

    fake_module.measure = no_qemu
    assert paper.measure_section(section, True, None, print)[:2] == \
        ("not run", "qemu-system-x86_64 is not installed")

    def buggy(reps: int) -> dict[str, Any]:
        raise KeyError("runs")

    fake_module.measure = buggy
    assert paper.measure_section(section, True, None, print)[:2] == ("failed", "KeyError: 'runs'")
    fake_module.measure = lambda reps: {"bench": "fake"}
    status, reason, _, _ = paper.measure_section(section, True, None, print)
    assert status == "failed" and "no benchmark JSON" in reason


def test_benchmark_progress_goes_to_the_paper_display(fake_module: types.ModuleType,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Inside measure_section every benchmark's progress reaches the sink, whatever its
    show_progress says, and nothing is written to stderr behind the display's back."""
    def measure(reps: int, show_progress: bool = True) -> dict[str, Any]:
        progress = common.stderr_progress(show_progress, "bench fake")
        common.interleave(["a", "b"], 2, lambda c, r: None, progress)
        common.clear_progress(progress)
        return {"bench": "fake", "host": {}, "runs": [], "ratios": {"b_over_a": 3.0}}

    fake_module.measure = measure
    messages: list[str] = []
    status, _, result, _ = paper.measure_section(_fake_section(fake_module.__name__), True,
                                                 None, messages.append)
    assert status == "ok" and result["ratios"] == {"b_over_a": 3.0}
    assert messages == ["rep 1/2: a", "rep 1/2: b", "rep 2/2: a", "rep 2/2: b"]
    assert capsys.readouterr().err == ""
    assert common.stderr_progress(False, "x") is None   # the sink is gone afterwards


def test_section_entry_of_a_missing_section_keeps_claim_and_reason() -> None:
    entry = paper.section_entry(by_name("vga"), True, "not run", "no vga", None)
    assert entry["status"] == "not run" and entry["reason"] == "no vga"
    assert entry["claim"]["figure"] == "several x (>= 2x)"
    assert "headline" not in entry
    bundle = paper.assemble([entry], {"kernel": "k"}, quick=True, command="c",
                            started_utc="t", duration_s=1.0)
    assert list(bundle)[:4] == ["bench", "host", "runs", "ratios"]
    assert bundle["runs"][0]["metrics"] == {"error": "not run: no vga"}
    assert bundle["ratios"] == {"vga": None}
    assert bundle["quick"] is True and bundle["fit_for_figures"] is False
    assert "not fit for figures" in bundle["warning"]


# --- headlines --------------------------------------------------------------------------------
def test_per_rep_pairs_repetitions_of_the_same_round() -> None:
    after, before = {"x_reps": [4.0, 6.0, 9.0]}, {"x_reps": [2.0, 3.0, 3.0]}
    assert per_rep(after, before, "x") == [2.0, 2.0, 3.0]
    assert per_rep(after, {"x_reps": [1.0]}, "x") == []      # not paired: no spread
    assert per_rep(None, before, "x") == []


def test_pic_headline_is_the_kernel_over_user_work_ratio_at_the_profile_rate() -> None:
    result = recorded("pic")
    head = by_name("pic").headline(result)
    assert head["key"] == "kernel_over_user_work_1000hz"
    assert head["value"] == result["ratios"]["kernel_over_user_work_1000hz"]
    assert head["style"] == "gain" and len(head["reps"]) == 1
    assert head["reps"][0] == pytest.approx(head["value"], rel=0.01)
    assert head["qemu"]["qemu"] == result["ratios"]["qemu_kernel_over_user_work_1000hz"]


def test_ide_headline_is_derived_from_the_overlap_runs() -> None:
    result = recorded("ide")
    head = by_name("ide").headline(result)
    sync = paper_sections.find_run(result, variant="sync", scenario="disk-overlap", kib=32768)
    conc = paper_sections.find_run(result, variant="concurrent", scenario="disk-overlap",
                                   kib=32768)
    assert head["value"] == pytest.approx(sync["total_ms"] / conc["total_ms"], rel=1e-3)
    assert "32768 KiB" in head["what"] and head["qemu"]["unit"] == "x"


def test_net_headline_is_rtt_poll_over_event() -> None:
    result = recorded("net")
    head = by_name("net").headline(result)
    assert head["value"] == result["ratios"]["rtt_p50_us_poll_over_event"]
    assert head["qemu"]["qemu"] == paper_sections.find_run(result, variant="qemu",
                                                           test="echo")["rtt_p50_us"]


def test_generic_headline_picks_by_pattern_or_says_it_found_none() -> None:
    pick = paper_sections.generic_headline((r"fill.*shared.*trap", r"shared_over_trap"), "fill")
    head = pick({"ratios": {"blit_shared_over_trap": 5.0, "fill_mbps_shared_over_trap": 60.0,
                            "flag": True}})
    assert head["key"] == "fill_mbps_shared_over_trap" and head["value"] == 60.0
    empty = pick({"ratios": {"other": 1.0}})
    assert empty["value"] is None and "no ratio" in empty["note"]


def test_mem_headline_is_pyhvms_slowest_backing_against_the_best() -> None:
    head = by_name("mem").headline({"ratios": {
        "touch-4k:pyhvm:anon_over_best": 1.2, "touch-4k:pyhvm:anon+thp_over_best": 1.0,
        "touch-4k:qemu:anon_over_best": 3.0, "ptchurn:pyhvm:memfd_over_best": 1.4,
        "touch-4k:pyhvm_over_qemu:anon": 0.5}})
    assert (head["key"], head["value"]) == ("ptchurn:pyhvm:memfd_over_best", 1.4)
    other = by_name("mem").headline({"ratios": {"hugetlb_over_anon": 0.8}})
    assert (other["key"], other["value"]) == ("hugetlb_over_anon", 0.8)


@pytest.mark.parametrize("value, reps, expected", [
    (None, [], "not measured"),
    (0.9, [0.9], "not reproduced"),
    (1.05, [1.05], "same direction, smaller than the paper's > 10x"),
    (12.0, [11.0, 13.0], "reproduced: at least the paper's > 10x"),
    (12.0, [0.8, 13.0], "within the run's noise"),
])
def test_verdict_compares_with_the_papers_figure(value: float | None, reps: list[float],
                                                 expected: str) -> None:
    head = {"value": value, "reps": reps}
    assert expected in verdict(by_name("net"), head)


def test_verdict_says_when_the_runs_own_noise_is_larger() -> None:
    """bench pic's noise gauge: its 0 Hz runs do the same work; a ratio closer to 1 than
    they are to each other is no finding, whichever way it points."""
    for value in (0.67, 1.3):
        text = verdict(by_name("pic"), {"value": value, "reps": [value], "noise": 2.76})
        assert text.endswith("differed by up to 176 % in this run, so this is within its noise")
    assert "noise" not in verdict(by_name("pic"), {"value": 1.3, "reps": [], "noise": 1.02})


def test_verdict_of_context_and_figureless_sections() -> None:
    assert verdict(by_name("exits"), {"value": 1.3, "reps": []}).startswith("context")
    assert verdict(by_name("ide"), {"value": 1.5, "reps": []}) == \
        "same direction as the paper (which gives no figure)"


# --- progress ---------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_estimator_uses_estimates_then_what_it_has_seen() -> None:
    clock = Clock()
    est = Estimator([10, 20, 30], clock)
    assert est.left_s() == 60
    est.start(0)
    clock.now = 20.0                       # the first section took twice its estimate
    est.finish()
    assert est.scale() == 2.0 and est.left_s() == 100      # (20 + 30) x 2
    est.start(1)
    for label in ("a", "b"):               # first repetition: counting configurations
        est.step(f"rep 1/2: {label}")
    assert est.fraction == 0.0
    clock.now = 40.0
    est.step("rep 2/2: a")                 # half done after 20 s: about 20 s to go
    assert est.fraction == 0.5
    assert est.left_s() == pytest.approx(20 + 60)


def test_a_section_that_did_not_run_leaves_the_estimate() -> None:
    clock = Clock()
    est = Estimator([10, 20], clock)
    est.start(0)
    est.finish(ran=False)
    assert est.scale() == 1.0 and est.left_s() == 20


def test_plain_progress_prints_one_line_per_step_with_time_left() -> None:
    stream = io.StringIO()
    with Progress(["One", "Two"], [5, 70], quick=True, stream=stream, live=False) as progress:
        progress.section(0, "bench one")
        progress.message("rep 1/1: pyhvm user")
        progress.finish_section()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "pyhvm bench paper: quick smoke run, not for figures; 2 sections, " \
                       "about 1 min 15 s"
    assert lines[2].startswith("pyhvm bench paper: [1/2] One: rep 1/1: pyhvm user (about ")
    assert fmt_duration(59.6) == "1 min 00 s" and fmt_duration(5) == "5 s"


# --- trace reductions -------------------------------------------------------------------------
HEADER: dict[str, Any] = {
    "config": {"irqchip": "user"}, "events": ["exits", "irq", "devices", "rip"],
    "pio_map": [[0x20, 2, "pic-master"], [0x40, 4, "pit"], [0x3F8, 8, "com1"],
                [0xC100, 256, "rtl8139"]],
    "mmio_map": [],
}


def pio(ts_us: float, dur_us: float, port: int, write: bool = True) -> Record:
    return Record(T0 + int(ts_us * 1000), int(dur_us * 1000), Kind.EXIT_PIO, 0, port, 0,
                  1 | (OUT if write else 0))


def profile(records: list[Record]) -> dict[str, Any]:
    return paper_traces.exit_profile(analyze(HEADER, records))


def test_exit_profile_rows_by_device_register_and_reason() -> None:
    records = [pio(0, 4, 0x20), pio(10, 4, 0x20), pio(20, 6, 0x21), pio(30, 2, 0x404),
               Record(T0 + 40_000, 8000, Kind.EXIT_OTHER, 0, 7, 0, 0)]   # 7: IRQ window
    prof = profile(records)
    rows = {r["exit"]: r for r in prof["rows"]}
    assert set(rows) == {"pio pic-master+0x0", "pio pic-master+0x1", "pio unclaimed 0x404",
                         "IRQ window"}
    assert rows["pio pic-master+0x0"] == {"exit": "pio pic-master+0x0", "count": 2,
                                          "total_ns": 8000, "mean_ns": 4000.0}
    assert prof["exits"] == 5 and prof["exit_ns"] == 24000
    assert prof["rows"][0]["exit"] == "pio pic-master+0x0"          # most time first


def test_compare_says_which_exits_went_away_and_which_got_cheaper() -> None:
    before = profile([pio(0, 4, 0x20), pio(10, 4, 0x20), pio(20, 10, 0x3F8),
                      pio(30, 10, 0x3F8), pio(40, 5, 0x40)])
    after = profile([pio(0, 2, 0x3F8), pio(10, 2, 0x3F8), pio(20, 3, 0xC110)])
    diff = paper_traces.compare(before, after)
    changes = {r["exit"]: r["change"] for r in diff["rows"]}
    assert changes == {"pio pic-master+0x0": ["gone"], "pio com1+0x0": ["cheaper"],
                       "pio pit+0x0": ["gone"], "pio rtl8139+0x10": ["new"]}
    assert diff["gone"] == ["pio pic-master+0x0", "pio pit+0x0"]
    assert diff["new"] == ["pio rtl8139+0x10"]
    assert (diff["exits_before"], diff["exits_after"]) == (5, 3)
    assert diff["rows"][0]["exit"] == "pio com1+0x0" and diff["rows"][0]["saved_ns"] == 16000


def test_change_tags_fewer_and_costlier() -> None:
    b = {"count": 100, "mean_ns": 1000.0}
    assert paper_traces.change(b, {"count": 50, "mean_ns": 1500.0}) == ["fewer", "costlier"]
    assert paper_traces.change(b, {"count": 120, "mean_ns": 1000.0}) == ["more"]
    assert paper_traces.change(b, {"count": 98, "mean_ns": 900.0}) == ["alike"]


def test_dma_timeline_lanes() -> None:
    records = [Record(T0, 0, Kind.DMA, 0, 0, 4096, 1),
               Record(T0, 300_000, Kind.DMA, 255, 0, 4096, 2),       # done, on a worker
               pio(50, 5, 0x20), Record(T0 + 100_000, 0, Kind.RIP_SAMPLE, 0, 0, 0x4000, 3)]
    line = paper_traces.dma_timeline(records)
    assert line["dma"] == [[0.0, 300.0]]
    assert line["exits"] == [[50.0, 5.0]]
    assert line["rip"] == [[100.0, 3]]
    assert line["span_us"] == 300.0 and line["dma_on_workers"] is True
    assert paper_traces.dma_timeline([])["dma"] == []


def test_echo_rtts_from_doorbell_to_the_handlers_capr_write() -> None:
    base = 0xC100
    records = [pio(0, 3, base + 0x10), pio(5, 1, base + 0x3E, write=False),
               pio(400, 2, base + 0x38),                  # echo 1 consumed: 400 us
               pio(1000, 3, base + 0x14),                 # echo 2 never comes back
               pio(2000, 3, base + 0x18), pio(2250, 2, base + 0x38)]
    assert paper_traces.echo_rtts(HEADER, records) == [400.0, 250.0]
    assert paper_traces.echo_rtts({"pio_map": []}, records) == []


# --- the command line -------------------------------------------------------------------------
def test_cli_parses_paper_options() -> None:
    args = build_parser().parse_args(["bench", "paper", "--quick", "--out", "/tmp/x",
                                      "--only", "pic,net"])
    assert args.quick and args.out == "/tmp/x" and args.only == ("pic", "net")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "paper", "--only", "pic,nope"])


def test_cli_without_kvm_or_guest_kit_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    def no_kvm() -> None:
        raise BenchError("/dev/kvm does not exist: this host offers no KVM")

    monkeypatch.setattr(common, "require_kvm", no_kvm)
    args = build_parser().parse_args(["bench", "paper", "--quick", "--out",
                                      str(tmp_path / "out")])
    assert args.func(args) == 4
    assert capsys.readouterr().err == \
        "pyhvm bench paper: /dev/kvm does not exist: this host offers no KVM\n"
    assert not (tmp_path / "out").exists()


# --- the whole run, with fake benchmarks ------------------------------------------------------
def test_run_goes_through_every_section_and_stops_at_ctrl_c(
        monkeypatch: pytest.MonkeyPatch, fake_module: types.ModuleType, tmp_path: Path) -> None:
    """Sections run in the table's order; one that is missing is stated; Ctrl-C in one marks
    it and every later one as not run, and the bundle says the run was interrupted."""
    calls: list[int] = []

    def measure(reps: int) -> dict[str, Any]:
        calls.append(reps)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return {"bench": "fake", "host": {}, "runs": [], "ratios": {"b_over_a": 2.5}}

    fake_module.measure = measure
    fake = _fake_section(fake_module.__name__)
    sections = (fake, _fake_section("pyhvm.bench.not_there"),
                *(Section(**{**fake.__dict__, "name": n}) for n in ("second", "third")))
    monkeypatch.setattr(paper, "SECTIONS", sections)
    monkeypatch.setattr(common, "require_kvm", lambda: None)
    monkeypatch.setattr(common, "guestkit_path", lambda kernel: Path("guest.elf"))
    stream = io.StringIO()
    progress = Progress([s.title for s in sections], [1] * 4, quick=False, stream=stream,
                        live=False)
    bundle = paper.run(False, tmp_path / "out", progress=progress, command="cmd")
    states = [(e["name"], e["status"], e["reason"]) for e in bundle["sections"]]
    assert states == [
        ("fake", "ok", None),
        ("fake", "not run", "pyhvm/bench/not_there.py does not exist in this checkout "
                            "(bench fake is not built yet)"),
        ("second", "not run", "interrupted (Ctrl-C) while it ran"),
        ("third", "not run", "interrupted (Ctrl-C) before it ran")]
    assert calls == [3, 3]                     # the full run's parameters, twice
    assert bundle["interrupted"] is True and bundle["quick"] is False
    assert bundle["sections"][0]["headline"]["value"] == 2.5
    assert bundle["sections"][0]["verdict"] == "reproduced: at least the paper's > 2x"
    assert "pyhvm bench paper: [2/4] Fake: not run: pyhvm/bench/not_there.py" in \
        stream.getvalue()
    written = paper.write_outputs(bundle, tmp_path / "out")
    assert "interrupted" in written["html"].read_text()


def test_a_bug_in_reading_traces_keeps_the_measurement(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    def broken(*args: Any) -> dict[str, Any]:
        raise ValueError("bad record")

    monkeypatch.setattr(paper, "trace_section", broken)
    stream = io.StringIO()
    progress = Progress(["PIC"], [1], quick=True, stream=stream, live=False)
    found = paper.traces(by_name("pic"), None, Path("k.elf"), tmp_path, progress)
    assert found == {"skipped": "reading the traces failed: ValueError: bad record"}
