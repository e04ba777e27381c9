"""The "why" behind each ratio of `pyhvm bench paper`: one short traced pyhvm run of the same
guest work in each placement (`pyhvm run --trace`), read back with the tuning toolkit
(`pyhvm.trace.report.analyze`), reduced to an exit profile, and compared: which exits
disappeared, which got fewer or cheaper.

The reductions (`exit_profile`, `compare`, `dma_timeline`, `echo_rtts`) are pure functions of
a trace's header and records, so they are tested on hand-built records.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any, Sequence

from ..trace.records import Kind, Record, TraceFormatError, read_trace
from ..trace.report import AddressMap, analyze, port_name
from . import common
from .common import BenchError
from .paper_sections import TracePlan

TRACE_MAX_S = 60.0
FEWER = 0.9          # after/before count below this: "fewer"; above 1/FEWER: "more"
CHEAPER = 0.8        # after/before mean cost below this: "cheaper"; above 1/CHEAPER: "costlier"
TIMELINE_MAX = 6000  # intervals kept per lane (a plot, not an archive)
DISK_MIB = 256       # the disk-overlap trace reads the first 256 MiB (size=32768 mb=256)
NIC = "rtl8139"
NIC_TSD = range(0x10, 0x20)   # TSD0-3: the guest's transmit doorbell
NIC_CAPR = 0x38               # CAPR: the guest's handler has consumed a received frame


# --- running ---------------------------------------------------------------------------------
def record(kernel: Path, plan: TracePlan, args: Sequence[str], append: str, trace: Path,
           tmp: Path) -> None:
    """One traced pyhvm run of `append` with the placement `args` (the option and its
    value, e.g. ("--ide-dma", "sync")); BenchError on failure."""
    tracing = ["--trace", str(trace), "--trace-events", plan.events]
    if plan.setup == "plain":
        common.run_guest_pyhvm(kernel, append, max_seconds=TRACE_MAX_S,
                               extra_args=[*args, *tracing])
    elif plan.setup == "disk":
        from . import ide

        image = tmp / "disk.img"
        if not image.exists():
            ide.fill_image(image, DISK_MIB)
        common.run_guest_pyhvm(kernel, append, max_seconds=TRACE_MAX_S,
                               extra_args=[*ide.pyhvm_args(image, args[-1]), *tracing])
    elif plan.setup == "net":
        _record_net(kernel, append, args[-1], tracing)
    else:
        raise BenchError(f"unknown trace setup {plan.setup!r}")


def _record_net(kernel: Path, append: str, mode: str, tracing: Sequence[str]) -> None:
    """net-echo against a host echo peer, as `bench net` runs it (its command line, the
    placement and the trace added; `pyhvm run` takes options in any order)."""
    from . import net
    from .netpeer import HostPeer

    directory = tempfile.mkdtemp(prefix="pyhvm-paper-net-", dir="/tmp")  # sun_path is short
    try:
        vmm_sock, peer_sock = os.path.join(directory, "v.sock"), os.path.join(directory, "p")
        command = net.vmm_command(net.Config(mode, "echo"), kernel, vmm_sock, peer_sock)
        command[command.index("--append") + 1] = append
        peer = HostPeer(peer_sock, vmm_sock, "echo", n=1, size=64).start()
        try:
            run = net.run_with_marker([*command, *tracing], TRACE_MAX_S, None, append)
        finally:
            peer.stop()
        if peer.error is not None:
            raise BenchError(f"the host peer failed: {peer.error!r}")
        common.check_guest_run("pyhvm", run, append)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def trace_section(kernel: Path, plan: TracePlan, append: str, labels: tuple[str, str],
                  raw_dir: Path | None = None) -> dict[str, Any]:
    """Both placements traced and reduced; `raw_dir` gets each run's full analysis JSON.
    A failed run is reported in its place ({"error": ...}), never raised."""
    out: dict[str, Any] = {"append": append, "events": plan.events}
    with tempfile.TemporaryDirectory(prefix="pyhvm-paper-trace-") as tmp_name:
        tmp = Path(tmp_name)
        for mode, args, label in (("before", plan.before, labels[0]),
                                  ("after", plan.after, labels[1])):
            trace = tmp / f"{mode}.trc"
            start = time.monotonic()
            try:
                record(kernel, plan, args, append, trace, tmp)
                header, records = read_trace(str(trace))
            except (BenchError, OSError, TraceFormatError) as err:
                out[mode] = {"label": label, "args": list(args), "error": str(err)}
                continue
            finally:
                trace.unlink(missing_ok=True)
            report = analyze(header, records)
            entry: dict[str, Any] = {"label": label, "args": list(args),
                                     "wall_s": round(time.monotonic() - start, 2),
                                     "profile": exit_profile(report)}
            if plan.setup == "disk":
                entry["timeline"] = dma_timeline(records)
            if plan.setup == "net":
                entry["rtt_us"] = echo_rtts(header, records)
            out[mode] = entry
            if raw_dir is not None:
                entry["analysis_file"] = _write_json(raw_dir, mode, report)
    if "profile" in out["before"] and "profile" in out["after"]:
        out["diff"] = compare(out["before"]["profile"], out["after"]["profile"])
    return out


def _write_json(directory: Path, mode: str, report: dict[str, Any]) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{mode}.json"
    path.write_text(json.dumps(report, indent=1))
    return str(path)


# --- reductions ------------------------------------------------------------------------------
def exit_profile(report: dict[str, Any]) -> dict[str, Any]:
    """One row per kind of exit (a port by its device register, an MMIO range, another
    reason) from `analyze()`'s tables: count, mean and total handling time."""
    rows: dict[str, dict[str, Any]] = {}

    def add(key: str, count: int, total_ns: int) -> None:
        row = rows.setdefault(key, {"exit": key, "count": 0, "total_ns": 0})
        row["count"] += int(count)
        row["total_ns"] += int(total_ns)

    for port in report.get("ports", []):
        label = port["name"] if port["device"] != "unclaimed" \
            else f"unclaimed {port['port']:#x}"
        add(f"pio {label}", port["count"], port["total_ns"])
    for mmio in report.get("mmio", []):
        add(f"mmio {mmio['name']}", mmio["count"], mmio["total_ns"])
    for reason in report.get("exits", {}).get("by_reason", []):
        if reason["reason"] not in ("PIO", "MMIO"):
            add(str(reason["reason"]), reason["count"], reason["total_ns"])
    for row in rows.values():
        row["mean_ns"] = round(row["total_ns"] / row["count"], 1) if row["count"] else 0.0
    ordered = sorted(rows.values(), key=lambda r: (-r["total_ns"], -r["count"], r["exit"]))
    summary = report.get("summary", {})
    time_ = report.get("time", {})
    interrupts = report.get("interrupts", {})
    return {"duration_ns": summary.get("duration_ns", 0),
            "exits": report.get("exits", {}).get("count", 0),
            "exit_ns": report.get("exits", {}).get("total_ns", 0),
            "handling_share": time_.get("handling_share"),
            "halted_share": time_.get("halted_share"),
            "irq_raises": interrupts.get("raises", 0),
            "irq_injected": interrupts.get("injected", 0),
            "rows": ordered}


def change(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """What happened to one kind of exit: gone, new, fewer, more, cheaper, costlier."""
    if before and not after:
        return ["gone"]
    if after and not before:
        return ["new"]
    assert before is not None and after is not None
    tags = []
    ratio = after["count"] / before["count"]
    if ratio < FEWER:
        tags.append("fewer")
    elif ratio > 1 / FEWER:
        tags.append("more")
    if before["mean_ns"] > 0:
        cost = after["mean_ns"] / before["mean_ns"]
        if cost < CHEAPER:
            tags.append("cheaper")
        elif cost > 1 / CHEAPER:
            tags.append("costlier")
    return tags or ["alike"]


def compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Both profiles row by row, ordered by the handling time the change saved."""
    b_rows = {r["exit"]: r for r in before["rows"]}
    a_rows = {r["exit"]: r for r in after["rows"]}
    rows = []
    for key in set(b_rows) | set(a_rows):
        b, a = b_rows.get(key), a_rows.get(key)
        rows.append({"exit": key,
                     "before": b["count"] if b else 0, "after": a["count"] if a else 0,
                     "before_mean_ns": b["mean_ns"] if b else None,
                     "after_mean_ns": a["mean_ns"] if a else None,
                     "saved_ns": (b["total_ns"] if b else 0) - (a["total_ns"] if a else 0),
                     "change": change(b, a)})
    rows.sort(key=lambda r: (-r["saved_ns"], r["exit"]))
    return {"exits_before": before["exits"], "exits_after": after["exits"],
            "exit_ns_before": before["exit_ns"], "exit_ns_after": after["exit_ns"],
            "gone": sorted(r["exit"] for r in rows if r["change"] == ["gone"]),
            "new": sorted(r["exit"] for r in rows if r["change"] == ["new"]),
            "rows": rows}


def dma_timeline(records: Sequence[Record]) -> dict[str, Any]:
    """Lanes for a plot of DMA overlapping guest compute, in microseconds from the first
    record: DMA transfers in flight (start to done, on whichever thread did the copy),
    vCPU exits being handled, and guest RIP samples with their CPL (3: the compute loop)."""
    if not records:
        return {"dma": [], "exits": [], "rip": [], "span_us": 0.0}
    t0 = min(r.ts_ns for r in records)

    def us(ns: int) -> float:
        return round((ns - t0) / 1000.0, 1)

    dma = [[us(r.ts_ns), round(r.dur_ns / 1000.0, 1)] for r in records
           if r.kind is Kind.DMA and r.c == 2]
    exits = [[us(r.ts_ns), round(r.dur_ns / 1000.0, 1)] for r in records
             if r.kind in (Kind.EXIT_PIO, Kind.EXIT_MMIO, Kind.EXIT_OTHER)]
    rip = [[us(r.ts_ns), r.c] for r in records if r.kind is Kind.RIP_SAMPLE]
    end = max(r.ts_ns + r.dur_ns for r in records)
    return {"dma": sorted(dma)[:TIMELINE_MAX], "exits": sorted(exits)[:TIMELINE_MAX],
            "rip": sorted(rip)[:TIMELINE_MAX], "span_us": us(end),
            "dma_on_workers": any(r.kind is Kind.DMA and r.c == 2 and r.cpu == 255
                                  for r in records)}


def echo_rtts(header: dict[str, Any], records: Sequence[Record]) -> list[float]:
    """Round trips of net-echo as the trace sees them, microseconds: from the exit that
    writes a transmit doorbell (TSD) to the next exit in which the guest's handler hands
    a received frame back (CAPR), before the next doorbell. The guest's own RTT runs from
    just before the doorbell to the handler: the same span, seen from the host."""
    pio_map = AddressMap(header.get("pio_map", []))
    base = next((int(b) for b, _, name in header.get("pio_map", []) if name == NIC), None)
    if base is None:
        return []
    writes = sorted((r for r in records if r.kind is Kind.EXIT_PIO and (r.c >> 8) & 1
                     and port_name(pio_map, r.a)[0] == NIC), key=lambda r: r.ts_ns)
    doorbells = [r.ts_ns for r in writes if r.a - base in NIC_TSD]
    consumed = [r.ts_ns for r in writes if r.a - base == NIC_CAPR]
    rtts = []
    for i, sent in enumerate(doorbells):
        nxt = doorbells[i + 1] if i + 1 < len(doorbells) else None
        j = bisect_left(consumed, sent)
        if j < len(consumed) and (nxt is None or consumed[j] < nxt):
            rtts.append(round((consumed[j] - sent) / 1000.0, 1))
    return rtts
