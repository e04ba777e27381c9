"""`pyhvm report` arithmetic and the Chrome/Perfetto export, on a hand-built trace whose
every number is known: two vCPUs, 2.5 s, exits of known durations, halts across second
boundaries, interrupts, DMA and RIP samples."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from pyhvm.cli import main
from pyhvm.trace.perfetto import chrome_trace, write_chrome_trace
from pyhvm.trace.records import NO_CPU, RECORD, Kind, Record, write_preamble
from pyhvm.trace.report import (AddressMap, analyze, log2_bucket, log2_histogram,
                                percentile, port_name, render_plain, report_sections,
                                rich_available, write_text)
from pyhvm.trace.stat import parse_run_args, render_stat

T0 = 10_000_000_000
MS = 1_000_000
S = 1_000_000_000
OUT, IN = 1 << 8, 0

HEADER: dict[str, Any] = {
    "pyhvm": "0.1.0",
    "vcpus": 2,
    "config": {"irqchip": "user", "memory": 64 << 20, "kernel": "k.elf", "append": "x=1",
               "cpus": 2},
    "pio_map": [[0x3F8, 8, "com1"], [0x20, 2, "pic-master"], [0x80, 1, "post"]],
    "mmio_map": [[0xFEBF0000, 0x1000, "nic"]],
    "devices": ["ide"],
    "events": ["exits", "irq", "devices", "rip"],
}


def pio(ts: int, dur: int, port: int, direction: int, cpu: int = 0) -> Record:
    return Record(T0 + ts, dur, Kind.EXIT_PIO, cpu, port, 0x41, 1 | direction | 1 << 16)


def mmio(ts: int, dur: int, addr: int, direction: int, cpu: int = 0) -> Record:
    return Record(T0 + ts, dur, Kind.EXIT_MMIO, cpu, 0, addr, 4 | direction)


def rec(ts: int, dur: int, kind: Kind, cpu: int = 0, a: int = 0, b: int = 0,
        c: int = 0) -> Record:
    return Record(T0 + ts, dur, kind, cpu, a, b, c)


RECORDS = [
    # vCPU 0: seven exits in the first 400 ms, then HLT for one second from 0.5 s.
    pio(0, 1000, 0x3F8, OUT),
    pio(100 * MS, 3000, 0x3FD, IN),
    pio(200 * MS, 5000, 0x3FD, IN),
    pio(250 * MS, 2000, 0x404, OUT),          # unclaimed
    pio(260 * MS, 400, 0x80, OUT),            # a one-port device: named without offset
    mmio(350 * MS, 8000, 0xFEBF0010, OUT),
    mmio(360 * MS, 16000, 0xD0001234, IN),    # unclaimed, grouped by page
    rec(499 * MS, 1000, Kind.EXIT_OTHER, 0, a=5),          # KVM_EXIT_HLT
    rec(500 * MS, 1 * S, Kind.HALT, 0),                    # 0.5 s in second 0, 0.5 s in 1
    rec(1600 * MS, 500, Kind.EXIT_OTHER, 0, a=7),          # IRQ window
    # vCPU 1: one exit, and asleep for the last half second.
    pio(1200 * MS, 7000, 0x20, OUT, cpu=1),
    rec(2000 * MS, 500 * MS, Kind.HALT, 1),                # ends the run at 2.5 s
    # interrupt lines (event loop thread) and injections
    rec(100 * MS, 0, Kind.IRQ_LEVEL, NO_CPU, a=4, b=1),
    rec(200 * MS, 0, Kind.IRQ_LEVEL, NO_CPU, a=4, b=0),
    rec(1100 * MS, 0, Kind.IRQ_LEVEL, NO_CPU, a=4, b=1),
    rec(2100 * MS, 0, Kind.IRQ_LEVEL, NO_CPU, a=0, b=1),
    rec(300 * MS, 0, Kind.IRQ_INJECT, 0, a=0x20, b=3000),
    rec(1300 * MS, 0, Kind.IRQ_INJECT, 0, a=0x24, b=100_000),
    rec(2200 * MS, 0, Kind.IRQ_INJECT, 0, a=0x20, b=5000),
    # a DMA transfer of device 0 ("ide" in the header) and RIP samples
    rec(400 * MS, 0, Kind.DMA, NO_CPU, a=0, b=4096, c=1),
    rec(400 * MS, 50_000, Kind.DMA, NO_CPU, a=0, b=4096, c=2),
    rec(10 * MS, 0, Kind.RIP_SAMPLE, 0, b=0x1000, c=3),
    rec(20 * MS, 0, Kind.RIP_SAMPLE, 0, b=0x1000, c=3),
    rec(30 * MS, 0, Kind.RIP_SAMPLE, 0, b=0x2000, c=0),
    rec(40 * MS, 0, Kind.RIP_SAMPLE, 0, b=0x1000, c=3),
]
DURATION = 2500 * MS
CPU_TIME = 2 * DURATION
HANDLING_CPU0 = 1000 + 3000 + 5000 + 2000 + 400 + 8000 + 16000 + 1000 + 500


@pytest.fixture(scope="module")
def report() -> dict:
    return analyze(HEADER, RECORDS)


def _by(rows: list[dict], key: str) -> dict:
    return {row[key]: row for row in rows}


def test_summary(report: dict) -> None:
    s = report["summary"]
    assert (s["start_ns"], s["end_ns"], s["duration_ns"]) == (T0, T0 + DURATION, DURATION)
    assert s["vcpus"] == 2 and s["records"] == len(RECORDS)
    assert s["records_by_kind"]["EXIT_PIO"] == 6 and s["records_by_kind"]["HALT"] == 2
    assert s["config"]["irqchip"] == "user" and s["config"]["append"] == "x=1"


def test_exits_by_reason_counts_totals_means_shares(report: dict) -> None:
    ex = report["exits"]
    assert ex["count"] == 10
    reasons = _by(ex["by_reason"], "reason")
    assert list(reasons) == ["PIO", "MMIO", "HLT", "IRQ window"]  # by count, then time
    pio_total = 1000 + 3000 + 5000 + 2000 + 400 + 7000
    assert reasons["PIO"]["count"] == 6 and reasons["PIO"]["total_ns"] == pio_total
    assert reasons["PIO"]["mean_ns"] == round(pio_total / 6, 1)
    assert reasons["PIO"]["max_ns"] == 7000
    assert reasons["PIO"]["share"] == round(pio_total / CPU_TIME, 6)
    assert reasons["PIO"]["per_s"] == 6 / 2.5
    assert reasons["MMIO"]["total_ns"] == 24000 and reasons["MMIO"]["mean_ns"] == 12000
    assert reasons["HLT"]["count"] == 1 and reasons["IRQ window"]["total_ns"] == 500


def test_guest_time_is_run_minus_handling_minus_halted_per_vcpu(report: dict) -> None:
    t = report["time"]
    cpu0, cpu1 = t["vcpus"]
    assert (cpu0["exits"], cpu0["handling_ns"], cpu0["halted_ns"]) == (9, HANDLING_CPU0, S)
    assert cpu0["guest_ns"] == DURATION - HANDLING_CPU0 - S
    assert (cpu1["exits"], cpu1["handling_ns"], cpu1["halted_ns"]) == (1, 7000, 500 * MS)
    assert cpu1["guest_ns"] == DURATION - 7000 - 500 * MS
    assert cpu1["halted_share"] == 0.2
    assert t["guest_ns"] == cpu0["guest_ns"] + cpu1["guest_ns"]
    assert t["halted_share"] == round(1.5 * S / CPU_TIME, 6)
    assert t["guest_share"] + t["halted_share"] + t["handling_share"] == pytest.approx(1, abs=1e-5)


def test_ports_are_named_by_the_header_map_and_ranked(report: dict) -> None:
    ports = report["ports"]
    assert [p["port"] for p in ports] == [0x3FD, 0x20, 0x404, 0x3F8, 0x80]
    by_port = _by(ports, "port")
    assert by_port[0x3FD]["name"] == "com1+0x5" and by_port[0x3FD]["device"] == "com1"
    assert (by_port[0x3FD]["count"], by_port[0x3FD]["reads"], by_port[0x3FD]["writes"]) == \
        (2, 2, 0)
    assert by_port[0x3FD]["total_ns"] == 8000 and by_port[0x3FD]["mean_ns"] == 4000
    assert by_port[0x3F8]["name"] == "com1+0x0" and by_port[0x3F8]["writes"] == 1
    assert by_port[0x20]["name"] == "pic-master+0x0"
    assert by_port[0x80]["name"] == "post"
    assert by_port[0x404]["name"] == "unclaimed" and by_port[0x404]["device"] == "unclaimed"


def test_mmio_by_range_and_unclaimed_by_page(report: dict) -> None:
    mmio_rows = _by(report["mmio"], "name")
    assert mmio_rows["nic"]["base"] == 0xFEBF0000 and mmio_rows["nic"]["size"] == 0x1000
    assert mmio_rows["nic"]["writes"] == 1 and mmio_rows["nic"]["total_ns"] == 8000
    unclaimed = mmio_rows["unclaimed 0xd0001000"]
    assert unclaimed["base"] == 0xD0001000 and unclaimed["reads"] == 1


def test_exits_by_device(report: dict) -> None:
    devices = report["devices"]
    assert [d["device"] for d in devices] == ["com1", "unclaimed (mmio)", "nic", "pic-master",
                                              "unclaimed (pio)", "post"]
    com1 = devices[0]
    assert com1["count"] == 3 and com1["total_ns"] == 9000 and com1["mean_ns"] == 3000
    assert com1["share"] == round(9000 / CPU_TIME, 6)


def test_exit_handling_histogram_buckets(report: dict) -> None:
    dist = report["latency"]["exit_handling"]
    buckets = {b["lo_ns"]: b["count"] for b in dist["buckets"]}
    # 400, 500 | 1000, 1000 | 2000 | 3000 | 5000, 7000, 8000 | 16000
    assert buckets == {256: 2, 512: 2, 1024: 1, 2048: 1, 4096: 3, 8192: 1}
    assert dist["buckets"][0]["hi_ns"] == 512
    assert dist["count"] == 10 and dist["min_ns"] == 400 and dist["max_ns"] == 16000
    assert dist["p50_ns"] == 2000 and dist["p90_ns"] == 8000


def test_interrupts_lines_vectors_and_rates(report: dict) -> None:
    irq = report["interrupts"]
    lines = _by(irq["lines"], "irq")
    assert lines[4]["raises"] == 2 and lines[4]["lowers"] == 1 and lines[4]["per_s"] == 0.8
    assert lines[0]["raises"] == 1
    assert irq["raises"] == 3 and irq["injected"] == 3 and irq["injected_per_s"] == 1.2
    vectors = _by(irq["vectors"], "vector")
    assert vectors[0x20]["count"] == 2 and vectors[0x20]["mean_latency_ns"] == 4000
    assert vectors[0x20]["p99_latency_ns"] == 5000 and vectors[0x24]["count"] == 1
    delivery = report["latency"]["irq_delivery"]
    assert delivery["count"] == 3 and delivery["max_ns"] == 100_000


def test_dma_and_device_activity(report: dict) -> None:
    assert report["latency"]["dma"]["count"] == 1
    assert report["latency"]["dma"]["total_ns"] == 50_000
    assert report["device_activity"] == [{"device": "ide", "dma": 1, "dma_bytes": 4096,
                                          "dma_ns": 50_000, "backend_ops": 0,
                                          "backend_bytes": 0, "backend_ns": 0, "events": 0}]


def test_rip_samples(report: dict) -> None:
    rip = report["rip_samples"]
    assert rip["count"] == 4 and rip["cpl"] == {0: 1, 3: 3}
    assert rip["top"][0] == {"rip": 0x1000, "count": 3, "share": 0.75, "cpl": 3}


def test_per_second_timeline(report: dict) -> None:
    tl = report["timeline"]
    assert [r["length_ns"] for r in tl] == [S, S, 500 * MS]
    assert [r["exits"] for r in tl] == [8, 2, 0]
    assert [r["exits_per_s"] for r in tl] == [8, 2, 0]
    assert [r["interrupts"] for r in tl] == [1, 1, 1]       # injections, one per second
    assert tl[2]["interrupts_per_s"] == 2.0                 # one in half a second
    # halted: vCPU 0's second straddles 0 and 1; vCPU 1 sleeps all of the last half second
    assert [r["halted_share"] for r in tl] == [0.25, 0.25, 0.5]
    assert tl[1]["handling_share"] == round((7000 + 500) / (2 * S), 6)


def test_without_injections_interrupts_count_line_raises() -> None:
    records = [r for r in RECORDS if r.kind is not Kind.IRQ_INJECT]
    tl = analyze(HEADER, records)["timeline"]
    assert [r["interrupts"] for r in tl] == [1, 1, 1]       # raises at 0.1, 1.1, 2.1 s


def test_empty_trace_gives_zeros_and_a_note() -> None:
    report = analyze(HEADER, [])
    assert report["summary"]["duration_ns"] == 0 and report["exits"]["count"] == 0
    assert report["timeline"] == [] and report["rip_samples"] is None
    assert any("no records" in n for n in report["notes"])
    render_plain(report_sections(report), report["notes"])  # renders without error


def test_kernel_irqchip_note_and_no_rip_note() -> None:
    header = dict(HEADER, config=dict(HEADER["config"], irqchip="kernel"),
                  events=["exits", "irq"])
    notes = analyze(header, RECORDS[:2])["notes"]
    assert any("irqchip kernel" in n for n in notes) and any("rip" in n for n in notes)


def test_report_is_json_serializable(report: dict) -> None:
    assert json.loads(json.dumps(report))["exits"]["count"] == 10


@pytest.mark.parametrize("value,bucket", [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (1023, 9),
                                          (1024, 10)])
def test_log2_bucket(value: int, bucket: int) -> None:
    assert log2_bucket(value) == bucket


def test_log2_histogram_fills_empty_buckets_between() -> None:
    assert log2_histogram([1, 9]) == [{"lo_ns": 0, "hi_ns": 2, "count": 1},
                                      {"lo_ns": 2, "hi_ns": 4, "count": 0},
                                      {"lo_ns": 4, "hi_ns": 8, "count": 0},
                                      {"lo_ns": 8, "hi_ns": 16, "count": 1}]
    assert log2_histogram([]) == []


def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile(values, 100) == 100 and percentile([], 50) == 0


def test_address_map_lookup() -> None:
    ports = AddressMap([[0x3F8, 8, "com1"], [0x80, 1, "post"]])
    assert ports.lookup(0x3FF) == ("com1", 0x3F8, 7)
    assert ports.lookup(0x400) is None and ports.lookup(0x7F) is None
    assert port_name(ports, 0x3F9) == ("com1", "com1+0x1")
    assert port_name(ports, 0x80) == ("post", "post")


def test_plain_text_report_shows_the_numbers(report: dict) -> None:
    text = render_plain(report_sections(report, top=3), report["notes"])
    for expected in ("Exits by reason", "com1+0x5", "IRQ window", "Busiest guest RIPs",
                     "0x1000", "Timeline", "Interrupt delivery latency", "IRQ 4", "0x24"):
        assert expected in text
    assert "... 2 more" in text  # five ports, top 3


@pytest.mark.skipif(not rich_available(), reason="rich is not installed")
def test_rich_report_renders(report: dict) -> None:
    out = io.StringIO()
    write_text(report, out)
    assert "com1+0x5" in out.getvalue() and "Exits by reason" in out.getvalue()


def test_plain_flag_needs_no_rich(report: dict) -> None:
    out = io.StringIO()
    write_text(report, out, plain=True)
    assert out.getvalue() == render_plain(report_sections(report), report["notes"])


# --- Chrome trace-event JSON -------------------------------------------------------------

def test_chrome_trace_is_valid_json_with_one_track_per_vcpu_and_device() -> None:
    out = io.StringIO()
    count = write_chrome_trace(out, HEADER, RECORDS)
    trace = json.loads(out.getvalue())
    events = trace["traceEvents"]
    assert len(events) == count
    names = {e["tid"]: e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert sorted(names.values()) == sorted(["vCPU 0", "vCPU 1", "interrupt lines", "com1",
                                             "pic-master", "post", "unclaimed (pio)", "nic",
                                             "unclaimed (mmio)", "ide"])
    assert len(set(names)) == len(names)  # one tid per track
    process = [e for e in events if e["ph"] == "M" and e["name"] == "process_name"]
    assert process[0]["args"]["name"] == "pyhvm VM: k.elf x=1"
    tid = {name: t for t, name in names.items()}
    vcpu0 = [e for e in events if e["ph"] == "X" and e["tid"] == tid["vCPU 0"]]
    assert len(vcpu0) == 9 + 1  # nine exits and one halt
    first = vcpu0[0]
    assert first["ts"] == 0 and first["dur"] == 1.0  # 1000 ns, in microseconds
    assert first["name"] == "PIO com1" and first["args"]["port"] == "0x03f8"
    halt = next(e for e in vcpu0 if e["cat"] == "halt")
    assert halt["ts"] == 500_000 and halt["dur"] == 1_000_000
    com1 = [e for e in events if e["ph"] == "X" and e["tid"] == tid["com1"]]
    assert [e["name"] for e in com1] == ["out com1+0x0", "in com1+0x5", "in com1+0x5"]
    assert [e["dur"] for e in com1] == [1.0, 3.0, 5.0]
    dma = next(e for e in events if e.get("cat") == "dma" and e["ph"] == "X")
    assert dma["tid"] == tid["ide"] and dma["dur"] == 50.0
    injects = [e for e in events if e["ph"] == "i" and e["cat"] == "irq"
               and e["tid"] == tid["vCPU 0"]]
    assert len(injects) == 3 and injects[0]["args"]["latency_us"] == 3.0
    lines = [e for e in events if e["ph"] == "i" and e["tid"] == tid["interrupt lines"]]
    assert len(lines) == 4
    counters = [e for e in events if e["ph"] == "C" and e["name"] == "exits/s"]
    assert sum(e["args"]["exits"] for e in counters) == 10 * 100  # 10 ms bins, scaled to /s
    assert trace["otherData"]["config"]["irqchip"] == "user"
    assert chrome_trace(HEADER, RECORDS)["traceEvents"] == events


def test_overlapping_device_slices_take_a_second_lane() -> None:
    """Slices on one track must nest: two vCPUs inside com1 at once get two lanes."""
    records = [pio(0, 10_000, 0x3F8, OUT, cpu=0), pio(5_000, 10_000, 0x3F9, OUT, cpu=1),
               pio(20_000, 1_000, 0x3F8, OUT, cpu=1)]
    events = chrome_trace(HEADER, records)["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "thread_name"}
    lanes = {names[e["tid"]] for e in events if e["ph"] == "X" and e["cat"] == "device"}
    assert lanes == {"com1", "com1 (2)"}
    first_lane = [e for e in events if e["ph"] == "X" and e["cat"] == "device"
                  and names[e["tid"]] == "com1"]
    assert len(first_lane) == 2  # the third slice fits the first lane again


# --- the command line --------------------------------------------------------------------

def _write_trace(path: Path, header: dict, records: list[Record]) -> None:
    with open(path, "wb") as f:
        write_preamble(f, header)
        for r in records:
            f.write(RECORD.pack(r.ts_ns, r.dur_ns, r.kind, r.cpu, r.a, r.b, r.c))


def test_cli_report_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.trc"
    _write_trace(path, HEADER, RECORDS)
    assert main(["report", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(analyze(HEADER,
                                                                                RECORDS)))
    assert main(["report", str(path), "--format", "json", "-o", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["exits"]["count"] == 10


def test_cli_report_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.trc"
    _write_trace(path, HEADER, RECORDS)
    assert main(["report", str(path), "--plain", "--top", "0"]) == 0
    out = capsys.readouterr().out
    assert "pic-master+0x0" in out and "more (--top" not in out


def test_cli_perfetto_defaults_to_file_dot_json(tmp_path: Path) -> None:
    path = tmp_path / "t.trc"
    _write_trace(path, HEADER, RECORDS)
    assert main(["report", str(path), "--format", "perfetto"]) == 0
    assert "traceEvents" in json.loads((tmp_path / "t.trc.json").read_text())
    assert main(["report", str(path), "--format", "chrome", "-o", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["traceEvents"]


def test_cli_report_errors_are_one_line(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing.trc")]) == 1
    bad = tmp_path / "bad.trc"
    bad.write_bytes(b"garbage garbage garbage")
    assert main(["report", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "cannot read trace" in err and "bad magic" in err and "Traceback" not in err


def test_stat_parses_run_arguments_with_the_run_parser() -> None:
    args = parse_run_args(["--", "--kernel", "k.elf", "--append", "scenario=hello",
                           "--irqchip", "user"])
    assert (args.kernel, args.append, args.irqchip, args.trace) == \
        ("k.elf", "scenario=hello", "user", None)
    assert args.func.__name__ == "_cmd_run"


def test_stat_without_run_arguments_says_how(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stat"]) == 2
    assert "after --" in capsys.readouterr().err


def test_stat_summary_text(report: dict) -> None:
    text = render_stat(report, 1)
    assert text.startswith("pyhvm stat: status 1; 10 exits in 2.500s")
    assert "VM exits by reason" in text and "Top ports" in text
    assert "60.0%" in text  # PIO: 6 of 10 exits
    assert "com1+0x5" in text


def test_text_falls_back_to_plain_without_rich(report: dict,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import pyhvm.trace.report as report_module

    monkeypatch.setattr(report_module, "rich_available", lambda: False)
    out = io.StringIO()
    write_text(report, out)
    assert out.getvalue() == render_plain(report_sections(report), report["notes"])
