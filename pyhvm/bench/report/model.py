"""What both report formats say, as plain strings and rows: the claims table, the spread of
a ratio across repetitions, the exit-profile comparison and the host. HTML and Markdown only
lay these out, so the two never disagree."""

from __future__ import annotations

from typing import Any, Sequence

PAPER = ("Xiantao Zhang and Yaozu Dong, *Optimizing Xen VMM Based on Intel Virtualization "
         "Technology*, ICICSE 2008 (DOI 10.1109/ICICSE.2008.81)")
PROFILE_ROWS = 12
OVERVIEW_PROBLEMS = "_overview"   # build()'s key for what went wrong with the overview plot


def fmt_value(value: float | None, style: str) -> str:
    """A ratio as the report shows it: "2.35x", or "+6.1 %" for a gain."""
    if value is None:
        return "n/a"
    if style == "gain":
        return f"{(value - 1) * 100:+.1f} %"
    return f"{value:.2f}x" if value < 100 else f"{value:.0f}x"


def fmt_unit(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit in ("x", "gain"):
        return fmt_value(value, unit)
    if unit == "%":
        return f"{value:.1f} %"
    digits = 0 if abs(value) >= 100 else (1 if abs(value) >= 10 else 2)
    return f"{value:.{digits}f} {unit}"


def fmt_spread(reps: Sequence[float], style: str) -> str:
    """min to max of the per-repetition ratios, and how many there were."""
    reps = [r for r in reps if r is not None]
    if not reps:
        return "n/a"
    if len(reps) == 1:
        return "1 repetition (no spread)"
    return f"{fmt_value(min(reps), style)} to {fmt_value(max(reps), style)} " \
           f"({len(reps)} repetitions)"


def fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "-"
    if ns < 1000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1000:.1f} us"
    return f"{ns / 1e6:.2f} ms"


def status_text(entry: dict[str, Any]) -> str:
    if entry["status"] == "ok":
        return "ran"
    return f"{entry['status']}: {entry.get('reason') or 'no reason recorded'}"


def qemu_text(head: dict[str, Any] | None) -> str:
    q = (head or {}).get("qemu")
    if not q:
        return "-"
    return f"{q['what']}: pyhvm {fmt_unit(q.get('pyhvm'), q['unit'])}, " \
           f"QEMU {fmt_unit(q.get('qemu'), q['unit'])}"


def _qemu_cell(entry: dict[str, Any], head: dict[str, Any]) -> str:
    if not head.get("qemu") and entry["params"].get("qemu") is False:
        return "not measured in this run (qemu=False)"
    return qemu_text(head)


def qemu_line(entry: dict[str, Any]) -> str | None:
    """The section's "QEMU beside" sentence, or None where QEMU has no part in it."""
    head = entry.get("headline") or {}
    if head.get("qemu"):
        return f"QEMU beside: {qemu_text(head)}"
    if entry["params"].get("qemu") is False:
        return "QEMU beside: not measured in this run (qemu=False)"
    return None


def claim_rows(bundle: dict[str, Any]) -> list[dict[str, str]]:
    """One row per section, missing ones included: the paper beside the measurement."""
    rows = []
    for entry in bundle["sections"]:
        head = entry.get("headline") or {}
        ran = entry["status"] == "ok"
        rows.append({
            "name": entry["name"], "title": entry["title"], "kind": entry["kind"],
            "placements": f"{entry['before']} -> {entry['after']}",
            "claim": entry["claim"]["figure"] or "no figure",
            "claim_text": entry["claim"]["text"],
            "measured": fmt_value(head.get("value"), head.get("style", "x")) if ran
            else "not run",
            "what": head.get("what", "") if ran else "",
            "spread": fmt_spread(head.get("reps") or [], head.get("style", "x")) if ran
            else "-",
            "qemu": _qemu_cell(entry, head) if ran else "-",
            "verdict": entry.get("verdict", "") if ran else status_text(entry),
        })
    return rows


def profile_summary(diff: dict[str, Any]) -> str:
    """One sentence: exits and their handling time before and after, what went away."""
    before, after = diff["exits_before"], diff["exits_after"]
    change = f" ({(after - before) * 100 / before:+.0f} %)" if before else ""
    text = (f"exits {before:,} -> {after:,}{change}; time handling them "
            f"{fmt_ns(diff['exit_ns_before'])} -> {fmt_ns(diff['exit_ns_after'])}")
    if diff["gone"]:
        shown = diff["gone"][:6]
        more = f" and {len(diff['gone']) - len(shown)} more" if len(diff["gone"]) > 6 else ""
        text += f"; gone: {', '.join(shown)}{more}"
    if diff["new"]:
        text += f"; new: {', '.join(diff['new'][:6])}"
    return text


def profile_rows(diff: dict[str, Any], limit: int = PROFILE_ROWS) -> list[list[str]]:
    """The kinds of exit whose change saved (or cost) the most handling time."""
    rows = []
    for row in diff["rows"][:limit]:
        rows.append([row["exit"], f"{row['before']:,}", f"{row['after']:,}",
                     fmt_ns(row["before_mean_ns"]), fmt_ns(row["after_mean_ns"]),
                     fmt_ns(row["saved_ns"]) if row["saved_ns"] >= 0
                     else "-" + fmt_ns(-row["saved_ns"]),
                     ", ".join(row["change"])])
    return rows


PROFILE_HEADERS = ["exit", "before", "after", "mean before", "mean after",
                   "handling time saved", "change"]


def trace_notes(trace: dict[str, Any] | None) -> list[str]:
    """Why a section has no exit profile, or which of its runs failed."""
    if trace is None:
        return ["no traced runs for this section (no placement switch to compare)"]
    if "skipped" in trace:
        return [f"not traced: {trace['skipped']}"]
    notes = []
    for mode in ("before", "after"):
        run = trace.get(mode) or {}
        if "error" in run:
            notes.append(f"the traced {mode} run ({run.get('label')}) failed: {run['error']}")
    return notes


def host_rows(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    host = bundle.get("host", {})
    module = host.get("kvm_module") or "none"
    if host.get("kvm_pvm"):
        module += " (PVM: CPL 3 guest code runs natively, CPL 0 in KVM's emulator)"
    load = [host.get("loadavg_1m_start"), host.get("loadavg_1m_end")]
    rows = [("CPU", f"{host.get('cpu_model') or 'unknown'} ({host.get('cpus')} CPUs)"),
            ("Linux kernel", str(host.get("kernel"))), ("KVM module", module),
            ("Python", str(host.get("python"))),
            ("QEMU", str(host.get("qemu") or "not installed")),
            ("pyhvm", f"{host.get('pyhvm') or '?'}"
                      + (f", commit {host['commit']}" if host.get("commit") else ""))]
    if None not in load:
        rows.append(("load average (1 min)", f"{load[0]:.2f} at start, {load[1]:.2f} at end"))
    rows.append(("run", f"{bundle.get('started_utc')}, {bundle.get('duration_s')} s, "
                        f"`{bundle.get('command')}`"))
    return rows


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"


def text_lines(bundle: dict[str, Any]) -> list[str]:
    """What the command prints when it is done: one line per section."""
    lines = []
    if bundle.get("quick"):
        lines.append(f"note: {bundle.get('warning')}")
    for row in claim_rows(bundle):
        if row["measured"] == "not run":
            lines.append(f"{row['title']}: {row['verdict']}")
        else:
            lines.append(f"{row['title']} ({row['placements']}): {row['measured']}, spread "
                         f"{row['spread']}; the paper: {row['claim']}; {row['verdict']}")
    return lines
