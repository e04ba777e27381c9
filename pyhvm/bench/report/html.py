"""The HTML report: one file, nothing fetched to view it (inline CSS, plots as data: URIs,
no script). Every string from the run is escaped."""

from __future__ import annotations

from html import escape
from typing import Any, Sequence

from . import model
from .plots import Plot

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       max-width: 1040px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.7em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { margin-bottom: .3em; } .sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: .6em 0; width: 100%; font-size: .92em; }
th, td { border: 1px solid #d8d8d8; padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: #f3f4f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.banner { background: #fff3cd; border: 2px solid #b00020; color: #6b0010; padding: .7em 1em;
          font-weight: 600; margin: 1em 0; }
.notrun { background: #f8f0f0; border-left: 4px solid #b00020; padding: .4em .8em; }
.verdict { font-weight: 600; } .muted { color: #666; font-size: .9em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .88em; } code { background: #f3f4f6; padding: 0 .2em; }
.claim { border-left: 4px solid #2f6690; padding: .2em .8em; background: #f5f8fb; }
"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]],
           numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{escape(c)}</td>' if i in numeric
                        else f"<td>{escape(c)}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(plot: Plot) -> str:
    return (f'<figure id="plot-{escape(plot.name)}"><img src="{plot.data_uri()}" '
            f'alt="{escape(plot.title)}"><figcaption><b>{escape(plot.title)}.</b> '
            f"{escape(plot.caption)}</figcaption></figure>")


def _claims(bundle: dict[str, Any]) -> str:
    rows = [[r["title"], r["placements"], r["claim"], r["measured"], r["spread"], r["qemu"],
             r["verdict"]] for r in model.claim_rows(bundle)]
    return _table(["section", "before -> after", "the paper", "measured", "spread",
                   "QEMU beside", "verdict"], rows)


def _section(entry: dict[str, Any], plots: list[Plot], problems: list[str]) -> str:
    parts = [f'<h2 id="{escape(entry["name"])}">{escape(entry["title"])} '
             f'<span class="muted">(bench {escape(entry["name"])}: '
             f'{escape(entry["before"])} -> {escape(entry["after"])})</span></h2>',
             f'<p class="claim">{escape(entry["claim"]["text"])}</p>']
    if entry["status"] != "ok":
        parts.append(f'<p class="notrun">{escape(model.status_text(entry))}</p>')
        return "\n".join(parts)
    head = entry.get("headline") or {}
    parts.append(f"<p>Measured: <b>{escape(model.fmt_value(head.get('value'), head['style']))}"
                 f"</b> {escape(head.get('what', ''))}; spread across repetitions: "
                 f"{escape(model.fmt_spread(head.get('reps') or [], head['style']))}. "
                 f'<span class="verdict">{escape(entry.get("verdict", ""))}</span></p>')
    if model.qemu_line(entry):
        parts.append(f"<p>{escape(model.qemu_line(entry) or '')}</p>")
    if head.get("also"):
        items = "".join(f"<li>{escape(a['what'])}: {escape(model.fmt_unit(a['value'], a['unit']))}"
                        f"</li>" for a in head["also"])
        parts.append(f"<ul>{items}</ul>")
    if head.get("note"):
        parts.append(f'<p class="muted">{escape(head["note"])}</p>')
    parts += [_figure(p) for p in plots]
    parts += [f'<p class="muted">{escape(p)}</p>' for p in problems]
    parts.append(_why(entry))
    parts.append(f'<p class="muted">Parameters: {escape(model.params_text(entry["params"]))}; '
                 f'{entry.get("duration_s")} s; raw JSON: <code>runs/{escape(entry["name"])}'
                 f".json</code></p>")
    return "\n".join(parts)


def _why(entry: dict[str, Any]) -> str:
    trace = entry.get("trace") or {}
    parts = ["<h3>Why: the exit profile before and after</h3>"]
    diff = trace.get("diff")
    if diff:
        before, after = trace["before"], trace["after"]
        parts.append(f"<p>One traced run of <code>{escape(trace['append'])}</code> per "
                     f"placement ({escape(before['label'])}, then {escape(after['label'])}), "
                     f"the same guest work in both: {escape(model.profile_summary(diff))}.</p>")
        parts.append(_table(model.PROFILE_HEADERS, model.profile_rows(diff), (1, 2, 3, 4, 5)))
        parts.append('<p class="muted">Counts are whole runs; tracing adds a little to every '
                     "exit. Full analyses (as <code>pyhvm report --json</code>): "
                     + ", ".join(f"<code>{escape(run['analysis_file'])}</code>"
                                 for run in (before, after) if run.get("analysis_file"))
                     + "</p>")
    for note in model.trace_notes(entry.get("trace")):
        parts.append(f'<p class="muted">{escape(note)}</p>')
    return "\n".join(parts)


def render(bundle: dict[str, Any], overview: Plot | None,
           sections: dict[str, tuple[list[Plot], list[str]]]) -> str:
    quick = bundle.get("quick", False)
    title = "pyhvm: the paper's claims, measured"
    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="sub">{escape(model.PAPER.replace("*", ""))}: each optimization '
            "measured before and after in one run of <code>pyhvm bench paper</code>, QEMU "
            "beside it, and the trace that explains the difference.</p>"]
    if quick:
        body.append(f'<p class="banner">{escape(bundle.get("warning") or "quick run")}</p>')
    if bundle.get("interrupted"):
        body.append('<p class="banner">This run was interrupted (Ctrl-C): the sections after '
                    "that point did not run.</p>")
    missing = [e for e in bundle["sections"] if e["status"] != "ok"]
    body += ["<h2 id=\"claims\">The claims</h2>", _claims(bundle)]
    if missing:
        body.append('<p class="notrun">Not run in this report: '
                    + "; ".join(escape(f"{e['title']} ({model.status_text(e)})")
                                for e in missing) + "</p>")
    if overview is not None:
        body.append(_figure(overview))
    body += [f'<p class="muted">{escape(p)}</p>'
             for p in sections.get(model.OVERVIEW_PROBLEMS, ([], []))[1]]
    for entry in bundle["sections"]:
        plots, problems = sections.get(entry["name"], ([], []))
        body.append(_section(entry, plots, problems))
    body += ['<h2 id="host">The host</h2>',
             _table(["", ""], [list(r) for r in model.host_rows(bundle)]),
             '<p class="muted">Reproduce with <code>pyhvm bench paper --out DIR</code> (see '
             "README, \"Reproducing the paper\"); every figure here was measured in this run, "
             "nothing is copied from elsewhere.</p>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}{' (quick run)' if quick else ''}</title>"
            f"<style>{CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
