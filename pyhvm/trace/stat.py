"""`pyhvm stat -- <run args>`: run a guest with tracing on and print a `perf kvm stat`-like
summary when it stops (on stderr, so the guest's console on stdout stays clean).

The VM is the one `pyhvm run` would build from the same arguments (parsed by the same
parser, run by the same command function), traced into a temporary file that is removed
afterwards, unless the arguments name a --trace file themselves, which is then kept.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from typing import Any, TextIO

from .records import TraceFormatError, read_trace
from .report import Section, analyze, fmt_ns, fmt_pct, render_plain


def parse_run_args(run_args: list[str]) -> argparse.Namespace:
    """`pyhvm run`'s own parser applied to run_args (a leading "--" is dropped)."""
    from ..cli import build_parser

    if run_args and run_args[0] == "--":
        run_args = run_args[1:]
    return build_parser().parse_args(["run", *run_args])


def stat_sections(report: dict[str, Any], top: int = 10) -> list[Section]:
    """Exits by reason and the busiest ports: count, share of exits, time, mean, max."""
    exits = report["exits"]
    total = exits["count"]
    rows = [[r["reason"], str(r["count"]), fmt_pct(r["count"] / total if total else 0),
             fmt_pct(r["share"]), fmt_ns(r["mean_ns"]), fmt_ns(r["max_ns"])]
            for r in exits["by_reason"]]
    sections = [Section("VM exits by reason", ["reason", "samples", "samples%", "time%",
                                               "mean time", "max time"], rows, "lrrrrr")]
    ports = report["ports"][:top] if top else report["ports"]
    if ports:
        rows = [[f"{r['port']:#06x}", r["name"], str(r["count"]),
                 fmt_pct(r["count"] / total if total else 0), fmt_pct(r["share"]),
                 fmt_ns(r["mean_ns"]), fmt_ns(r["max_ns"])] for r in ports]
        sections.append(Section("Top ports", ["port", "device", "samples", "samples%",
                                              "time%", "mean time", "max time"], rows,
                                "llrrrrr"))
    return sections


def render_stat(report: dict[str, Any], status: int, top: int = 10) -> str:
    s = report["summary"]
    t = report["time"]
    head = (f"pyhvm stat: status {status}; {report['exits']['count']} exits in "
            f"{fmt_ns(s['duration_ns'])} ({report['exits']['per_s']:,.0f}/s), "
            f"{s['vcpus']} vCPU(s), irqchip {s['config'].get('irqchip')}\n"
            f"time: guest {fmt_pct(t['guest_share'])}, exit handling "
            f"{fmt_pct(t['handling_share'])}, halted {fmt_pct(t['halted_share'])}"
            f"  (time% = share of vCPU time)\n\n")
    notes = [n for n in report["notes"] if n.startswith("irqchip")]  # the one that matters
    return head + render_plain(stat_sections(report, top), notes)


def run_stat(run_args: list[str], top: int = 10, out: TextIO | None = None) -> int:
    """Run the guest traced, print the summary to `out` (stderr), return the run's status."""
    args = parse_run_args(run_args)
    if getattr(args, "verbose", False):
        logging.getLogger().setLevel(logging.DEBUG)
    keep = args.trace is not None
    if args.sandbox is None:  # this process reads and removes the trace after the run
        args.sandbox = "off"
    if not keep:
        fd, args.trace = tempfile.mkstemp(prefix="pyhvm-stat-", suffix=".trc")
        os.close(fd)
    try:
        status = args.func(args)
        try:
            header, records = read_trace(args.trace)
        except (OSError, TraceFormatError):
            return status  # the VM never started (the run already said why)
        text = render_stat(analyze(header, records), status, top)
        (out or sys.stderr).write(text)
        return status
    finally:
        if not keep:
            try:
                os.unlink(args.trace)
            except FileNotFoundError:
                pass
