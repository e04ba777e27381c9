"""The Markdown summary: the claims table, each section's headline and why, the host;
plots linked as the PNG files written beside it (plots/NAME.png)."""

from __future__ import annotations

from typing import Any, Sequence

from . import model
from .plots import Plot

SUMMARY_PROFILE_ROWS = 6


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |",
             "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _section(entry: dict[str, Any], plots: list[Plot], problems: list[str]) -> list[str]:
    lines = [f"## {entry['title']} (bench {entry['name']}: {entry['before']} -> "
             f"{entry['after']})", "", f"> {entry['claim']['text']}", ""]
    if entry["status"] != "ok":
        return lines + [f"**{model.status_text(entry)}**", ""]
    head = entry.get("headline") or {}
    lines.append(f"Measured: **{model.fmt_value(head.get('value'), head['style'])}** "
                 f"{head.get('what', '')}; spread: "
                 f"{model.fmt_spread(head.get('reps') or [], head['style'])}. "
                 f"*{entry.get('verdict', '')}*")
    if model.qemu_line(entry):
        lines += ["", model.qemu_line(entry) or ""]
    if head.get("also"):
        lines += [""] + [f"- {a['what']}: {model.fmt_unit(a['value'], a['unit'])}"
                         for a in head["also"]]
    if head.get("note"):
        lines += ["", f"*{head['note']}*"]
    for plot in plots:
        lines += ["", f"![{plot.title}](plots/{plot.name}.png)"]
    lines += [""] + [f"*{p}*" for p in problems]
    trace = entry.get("trace") or {}
    diff = trace.get("diff")
    if diff:
        lines += ["", f"Why (one traced run of `{trace['append']}` per placement): "
                      f"{model.profile_summary(diff)}.", ""]
        lines += _table(model.PROFILE_HEADERS, model.profile_rows(diff, SUMMARY_PROFILE_ROWS))
    lines += [""] + [f"*{n}*" for n in model.trace_notes(entry.get("trace"))]
    lines += ["", f"Parameters: {model.params_text(entry['params'])}; raw JSON: "
                  f"`runs/{entry['name']}.json`", ""]
    return lines


def render(bundle: dict[str, Any], overview: Plot | None,
           sections: dict[str, tuple[list[Plot], list[str]]]) -> str:
    lines = ["# pyhvm: the paper's claims, measured", "",
             f"{model.PAPER}: each optimization measured before and after in one run of "
             "`pyhvm bench paper`, QEMU beside it, and the trace that explains the difference. "
             "The full report with every plot: [report.html](report.html).", ""]
    if bundle.get("quick"):
        lines += [f"> **{bundle.get('warning')}**", ""]
    if bundle.get("interrupted"):
        lines += ["> **This run was interrupted (Ctrl-C): later sections did not run.**", ""]
    rows = [[r["title"], r["placements"], r["claim"], r["measured"], r["spread"], r["qemu"],
             r["verdict"]] for r in model.claim_rows(bundle)]
    lines += _table(["section", "before -> after", "the paper", "measured", "spread",
                     "QEMU beside", "verdict"], rows)
    if overview is not None:
        lines += ["", f"![{overview.title}](plots/{overview.name}.png)"]
    lines += [f"\n*{p}*" for p in sections.get(model.OVERVIEW_PROBLEMS, ([], []))[1]]
    lines.append("")
    for entry in bundle["sections"]:
        plots, problems = sections.get(entry["name"], ([], []))
        lines += _section(entry, plots, problems)
    lines += ["## The host", ""]
    lines += _table(["", ""], [list(r) for r in model.host_rows(bundle)])
    return "\n".join(lines) + "\n"
