"""The benchmark plumbing that needs no KVM: RESULT parsing, statistics, the JSON envelope,
tables, the RAM image the C reference loop boots, and the CLI's argument handling."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pyhvm.bench import common, exits, startup
from pyhvm.bench.common import BenchError, GuestRun
from pyhvm.cli import build_parser
from pyhvm.memory import GuestMemory

GUESTKIT = Path(__file__).resolve().parents[2] / "guest" / "build" / "guestkit.elf"
EXITS_LINE = ("RESULT exits n=20000 kind=pio port=0x404 cycles=571449983 "
              "cycles_per_exit=28572 ns_per_exit=11005 tsc_khz=2596150 "
              "tsc_source=cpuid-40000010")


# --- RESULT lines -------------------------------------------------------------------------
def test_parse_results_reads_fields_and_skips_other_lines() -> None:
    text = f"pyhvm guest kit 0.1\r\n{EXITS_LINE}\r\nRESULT hello ok=1 args=1\nRESULTS x=1\n"
    results = common.parse_results(text)
    assert [r.scenario for r in results] == ["exits", "hello"]
    assert results[0].fields["port"] == "0x404"
    assert results[0].number("cycles") == 571449983
    assert results[0].number("port") == 0x404
    assert results[0].fields["tsc_source"] == "cpuid-40000010"


def test_parse_results_keeps_words_and_survives_stray_quotes() -> None:
    (result,) = common.parse_results('RESULT error bad-arg scenario=exits value="x\n')
    assert result.scenario == "error"
    assert result.words == ("bad-arg",)
    assert result.fields == {"scenario": "exits", "value": '"x'}


def test_find_result_takes_the_last_and_reports_guest_errors() -> None:
    text = "RESULT exits n=1 cycles=5\nRESULT exits n=2 cycles=7\n"
    assert common.find_result(text, "exits").number("n") == 2
    with pytest.raises(BenchError, match="bad-arg .*key=port"):
        common.find_result("RESULT error bad-arg scenario=exits key=port\n", "exits")
    with pytest.raises(BenchError, match="no RESULT exits"):
        common.find_result("hello\n", "exits")


def test_result_number_rejects_missing_and_malformed_fields() -> None:
    (result,) = common.parse_results("RESULT exits n=abc\n")
    with pytest.raises(BenchError, match="not a number"):
        result.number("n")
    with pytest.raises(BenchError, match="no cycles="):
        result.number("cycles")


def test_sample_from_converts_cycles_with_the_guests_tsc_rate() -> None:
    sample = exits.sample_from(GuestRun(1, EXITS_LINE + "\n", "", 0.5), 20000)
    assert sample.cycles_per_exit == pytest.approx(571449983 / 20000)
    assert sample.us_per_exit == pytest.approx(571449983 / 20000 / 2596150 * 1000)
    assert sample.tsc_source == "cpuid-40000010"
    with pytest.raises(BenchError, match="not 100"):
        exits.sample_from(GuestRun(1, EXITS_LINE, "", 0.5), 100)


def test_check_guest_run_names_the_failure() -> None:
    common.check_guest_run("pyhvm", GuestRun(1, "", "", 0.1), "scenario=hello")
    with pytest.raises(BenchError, match="status 2: guest stopped"):
        common.check_guest_run("pyhvm", GuestRun(2, "", "guest stopped:\n triple", 0.1), "x")
    with pytest.raises(BenchError, match="reported an error: bad-arg key=mmio"):
        common.check_guest_run("pyhvm", GuestRun(5, "RESULT error bad-arg key=mmio\n", "", 0),
                               "x")


# --- statistics ---------------------------------------------------------------------------
def test_median_odd_even_and_empty() -> None:
    assert common.median([3.0, 1.0, 2.0]) == 2.0
    assert common.median([4, 1, 3, 2]) == 2.5
    assert common.median(x for x in [7]) == 7.0
    with pytest.raises(ValueError):
        common.median([])


def test_ratio_and_metric() -> None:
    assert common.ratio(3.0, 2.0) == 1.5
    assert common.ratio(1.0, 0.0) is None
    assert common.metric("us", [1.23456, 3.0, 2.0]) == {"us": 2.0, "us_reps": [1.235, 3.0, 2.0]}


def test_interleave_runs_every_config_once_per_rep_in_order() -> None:
    calls: list[tuple[str, int]] = []

    def measure(config: str, rep: int) -> str:
        calls.append((config, rep))
        return f"{config}{rep}"

    results = common.interleave(["a", "b", "c"], 2, measure)
    assert calls == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("c", 1)]
    assert results == [["a0", "a1"], ["b0", "b1"], ["c0", "c1"]]


# --- envelope, host, tables ---------------------------------------------------------------
def test_envelope_has_exactly_the_documented_keys_and_is_json() -> None:
    host = common.host_info(gcc="12")
    for key in ("kernel", "cpu_model", "kvm_module", "kvm_pvm", "python", "qemu", "gcc"):
        assert key in host
    runs = [common.run_entry({"vmm": "pyhvm"}, common.metric("us_per_exit", [1.0, 2.0]))]
    result = common.envelope("exits", host, runs, {"x_pyhvm_over_c": 1.2})
    assert list(result) == ["bench", "host", "runs", "ratios"]
    assert list(result["runs"][0]) == ["config", "metrics"]
    assert json.loads(json.dumps(result)) == result


def test_format_table_aligns_columns() -> None:
    table = common.format_table(["name", "value"], [["a", "1.00"], ["longer", "10.00"]])
    lines = table.splitlines()
    assert lines[0].startswith("name") and lines[0].endswith("value")
    assert len({len(line) for line in lines}) == 1
    assert lines[3].endswith("10.00")
    assert common.fmt_spread([2.0, 1.0, 3.0]) == "2.00 (1.00-3.00)"
    assert common.fmt_ratio(None) == "n/a"


def _exits_result() -> dict:
    runs = []
    for kind in exits.KINDS:
        for vmm, us in (("pyhvm", [10.0, 11.0, 12.0]), ("c-reference", [8.0, 8.0, 9.0])):
            runs.append(common.run_entry(
                {"vmm": vmm, "exit": kind.name, **kind.config, "n": 10, "reps": 3},
                {**common.metric("us_per_exit", us), "tsc_source": "cpuid-40000010"}))
    ratios = {f"{k.name}_pyhvm_over_c": 1.25 for k in exits.KINDS}
    return common.envelope("exits", common.host_info(), runs, ratios)


def test_exits_render_shows_every_kind_and_ratio() -> None:
    text = exits.render(_exits_result())
    for kind in exits.KINDS:
        assert kind.label in text
    assert "11.00 (10.00-12.00)" in text and "8.00 (8.00-9.00)" in text
    assert text.count(" 1.25") == 3
    assert "host: " in text


def test_startup_render_with_and_without_qemu() -> None:
    runs = [common.run_entry({"vmm": vmm, "reps": 2}, {
        **common.metric("first_byte_ms", [100.0, 120.0]), **common.metric("exit_ms", ms)})
        for vmm, ms in (("pyhvm", [150.0, 170.0]), ("qemu", [3000.0, 3100.0]))]
    both = common.envelope("startup", common.host_info(), runs,
                           {"first_byte_pyhvm_over_qemu": 0.5, "exit_pyhvm_over_qemu": 0.05})
    text = startup.render(both)
    assert "pyhvm/qemu" in text and "3050.0" in text
    alone = common.envelope("startup", common.host_info(), runs[:1], {})
    assert "is not installed" in startup.render(alone)


# --- what the benchmarks need from the host ------------------------------------------------
def test_guestkit_path_names_make_when_missing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(common, "PACKAGE_PARENT", tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BenchError, match="make -C"):
        common.guestkit_path()
    with pytest.raises(BenchError, match="does not exist"):
        common.guestkit_path(str(tmp_path / "nope.elf"))


def test_require_tool_names_the_package() -> None:
    with pytest.raises(BenchError, match="apt-get install some-pkg"):
        common.require_tool("no-such-tool-pyhvm", "some-pkg")


def test_used_extent_covers_the_last_nonzero_byte() -> None:
    memory = GuestMemory.with_size(4 << 20)
    try:
        assert exits.used_extent(memory) == 0
        memory.write_u8(0x123456, 1)
        extent = exits.used_extent(memory)
        assert 0x123457 <= extent < 0x123457 + exits.SCAN_CHUNK
        assert extent % 4096 == 0
    finally:
        memory.close()


@pytest.mark.skipif(not GUESTKIT.is_file(), reason="guest kit not built (make -C guest)")
def test_ram_image_holds_the_kernel_and_command_line(tmp_path: Path) -> None:
    image = tmp_path / "ram.img"
    entry = exits.write_ram_image(GUESTKIT, "scenario=exits n=7 port=0x404", image)
    data = image.read_bytes()
    assert entry.mode == "protected32"
    assert entry.registers["rax"] == 0x2BADB002
    assert len(data) % 4096 == 0 and len(data) > 0x100000
    assert b"scenario=exits n=7 port=0x404\0" in data
    assert data[entry.rip:entry.rip + 1] != b"\0"


def test_time_process_sees_first_byte_before_exit() -> None:
    code = "import sys, time; sys.stdout.write('x'); sys.stdout.flush(); time.sleep(0.2)"
    timing = startup.time_process([sys.executable, "-c", code])
    assert timing.run.output == "x" and timing.run.status == 0
    assert 0 < timing.first_byte_s < timing.exit_s
    assert timing.exit_s - timing.first_byte_s >= 0.15


def test_time_process_kills_a_child_past_its_timeout() -> None:
    with pytest.raises(BenchError, match="did not end"):
        startup.time_process([sys.executable, "-c", "import time; time.sleep(30)"],
                             timeout=0.5)


def test_cli_parses_bench_options() -> None:
    parser = build_parser()
    args = parser.parse_args(["bench", "exits", "--json", "--n", "0x10", "--reps", "2"])
    assert (args.bench, args.json, args.n, args.reps) == ("exits", True, 16, 2)
    args = parser.parse_args(["bench", "startup"])
    assert (args.json, args.reps) == (False, startup.DEFAULT_REPS)
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "exits", "--n", "0"])


def test_c_reference_source_ships_with_the_package() -> None:
    from importlib import resources

    source = resources.files("pyhvm.bench").joinpath(exits.C_SOURCE).read_text()
    assert "KVM_RUN" in source and "KVM_SET_CPUID2" in source


def test_measure_into_keeps_samples_until_the_first_failure_names_its_repetition() -> None:
    from pyhvm.bench.common import BenchError, Outcome, measure_into

    outcome: Outcome[int] = Outcome()
    measure_into(outcome, 0, lambda: 7)

    def fail() -> int:
        raise BenchError("guest died")

    measure_into(outcome, 1, fail)
    measure_into(outcome, 2, lambda: 9)  # a failed configuration runs no more
    assert outcome.samples == [7] and outcome.error == "rep 2: guest died"
