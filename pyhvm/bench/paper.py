"""`pyhvm bench paper`: the paper's method as one command. Every placement benchmark runs
in-process, in its "before" and "after" placements and on QEMU with the same guest (each
benchmark interleaves its configurations, repetition by repetition); then two short traced
runs per optimization show why the ratio is what it is. Out come a self-contained HTML
report, a Markdown summary and the raw JSON of every run (`pyhvm.bench.report`).

A section that cannot run here (its benchmark is not built yet, QEMU is missing, the
benchmark failed) is reported as "not run" with the reason, never left out.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import inspect
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import __version__
from . import common
from .common import BenchError
from .paper_progress import Progress
from .paper_sections import SECTIONS, FromModule, Section, verdict
from .paper_traces import trace_section

DEFAULT_OUT = "paper-report"
QUICK_WARNING = ("quick smoke run (--quick): a few seconds per section, one repetition; "
                 "it shows that everything runs, and is not fit for figures")


class Interrupted(Exception):
    """Ctrl-C during a section: the sections after it are reported as not run."""


# --- one section ------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    if isinstance(value, FromModule):
        return f"the benchmark's {value.attr}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def resolve(params: dict[str, Any], module: Any) -> dict[str, Any]:
    """The parameters with every FromModule replaced by that attribute of `module`."""
    out = {}
    for key, value in params.items():
        if isinstance(value, FromModule):
            if not hasattr(module, value.attr):
                raise BenchError(f"{module.__name__} has no {value.attr} (wanted for {key}=)")
            value = getattr(module, value.attr)
        out[key] = value
    return out


def call_measure(measure: Callable[..., dict[str, Any]], params: dict[str, Any],
                 kernel: str | None) -> dict[str, Any]:
    """`measure(**params)` with only the keywords its signature takes (a benchmark that
    has no `qemu=` or `quick=` simply does not get one), progress off (the caller shows
    it), the guest kit passed on."""
    wanted = {**params, "kernel": kernel, "show_progress": False}
    signature = inspect.signature(measure)
    if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        wanted = {k: v for k, v in wanted.items() if k in signature.parameters}
    return measure(**wanted)


def _module_path(module: str) -> str:
    return module.replace(".", "/") + ".py"


def measure_section(section: Section, quick: bool, kernel: str | None,
                    sink: Callable[[str], None]) -> tuple[str, str | None, Any, Any]:
    """(status, reason, benchmark JSON, module): status "ok", "not run" (this host or
    checkout cannot run it: the reason says why) or "failed" (a bug: the reason names the
    exception)."""
    try:
        module = importlib.import_module(section.module)
    except ModuleNotFoundError as err:
        if err.name == section.module:
            return ("not run", f"{_module_path(section.module)} does not exist in this "
                    f"checkout (bench {section.name} is not built yet)", None, None)
        return "not run", f"importing {section.module} failed: {err}", None, None
    except ImportError as err:
        return "not run", f"importing {section.module} failed: {err}", None, None
    measure = getattr(module, "measure", None)
    if not callable(measure):
        return "not run", f"{section.module} has no measure() function", None, module
    try:
        with common.progress_to(sink):
            result = call_measure(measure, resolve(section.params(quick), module), kernel)
    except KeyboardInterrupt:
        raise Interrupted() from None
    except (BenchError, OSError) as err:
        return "not run", str(err) or type(err).__name__, None, module
    except Exception as err:  # a bug in the benchmark: say so, keep the other sections
        return "failed", f"{type(err).__name__}: {err}", None, module
    if not isinstance(result, dict) or not isinstance(result.get("runs"), list) \
            or not isinstance(result.get("ratios"), dict):
        return "failed", "measure() returned no benchmark JSON (runs, ratios)", None, module
    return "ok", None, result, module


def section_entry(section: Section, quick: bool, status: str, reason: str | None,
                  result: dict[str, Any] | None,
                  trace: dict[str, Any] | None = None) -> dict[str, Any]:
    """A section's JSON entry from what happened: its claim and placements, the
    benchmark's JSON, the headline picked from it with the verdict, and the traces.
    Pure (the report tests build bundles from recorded JSON with it)."""
    entry: dict[str, Any] = {
        "name": section.name, "title": section.title, "kind": section.kind,
        "module": section.module, "claim": {"text": section.claim.text,
                                            "figure": section.claim.figure,
                                            "threshold": section.claim.threshold},
        "before": section.before, "after": section.after,
        "params": _jsonable(section.params(quick)), "notes": list(section.notes),
        "status": status, "reason": reason, "result": result, "duration_s": 0.0}
    if status == "ok" and result is not None:
        try:
            head = section.headline(result)
        except Exception as err:  # the JSON is not what the table expects: say so
            head = {"what": "headline", "key": "none", "value": None, "reps": [],
                    "style": "x", "qemu": None, "also": [],
                    "note": f"could not read the headline: {type(err).__name__}: {err}"}
        entry["headline"] = head
        entry["verdict"] = verdict(section, head)
        entry["trace"] = trace
    return entry


def run_section(section: Section, quick: bool, kernel: Path, out: Path,
                progress: Progress) -> dict[str, Any]:
    """Measure one section, pick its headline, trace both placements; the JSON entry."""
    start = time.monotonic()
    status, reason, result, module = measure_section(section, quick, str(kernel),
                                                     progress.message)
    trace = traces(section, module, kernel, out, progress) if status == "ok" else None
    entry = section_entry(section, quick, status, reason, result, trace)
    entry["duration_s"] = round(time.monotonic() - start, 1)
    return entry


def traces(section: Section, module: Any, kernel: Path, out: Path,
           progress: Progress) -> dict[str, Any] | None:
    plan = section.trace
    if plan is None:
        return None
    append = plan.append
    if plan.append_attr:
        append = getattr(module, plan.append_attr, None) or ""
        if not append:
            return {"skipped": f"{section.module} names no guest scenario to trace "
                               f"({plan.append_attr} = 'scenario=... ')"}
    progress.message(f"tracing {section.before} and {section.after}")
    try:
        found = trace_section(kernel, plan, append, (section.before, section.after),
                              out / "traces" / section.name)
    except KeyboardInterrupt:
        raise Interrupted() from None
    except Exception as err:  # a bug in reading the traces: the measurement still stands
        return {"skipped": f"reading the traces failed: {type(err).__name__}: {err}"}
    for mode in ("before", "after"):
        path = found.get(mode, {}).get("analysis_file")
        if path:
            found[mode]["analysis_file"] = os.path.relpath(path, out)
    return found


# --- the whole run ----------------------------------------------------------------------------
def _commit() -> str | None:
    """The checkout's commit (and whether it had local changes), to say what was run."""
    try:
        head = subprocess.run(["git", "-C", str(common.PACKAGE_PARENT), "rev-parse",
                               "--short=12", "HEAD"], capture_output=True, text=True,
                              timeout=10, stdin=subprocess.DEVNULL)
        dirty = subprocess.run(["git", "-C", str(common.PACKAGE_PARENT), "status",
                                "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + (" (with local changes)" if dirty.stdout.strip() else "")


def preflight(out: Path, kernel: str | None) -> Path:
    """What every section needs; BenchError (one line) before anything is measured."""
    common.require_kvm()
    elf = common.guestkit_path(kernel)
    try:
        import matplotlib  # noqa: F401  (the report's plots; fail before the long part)
    except ImportError:
        raise BenchError("matplotlib is not installed (python3 -m pip install -e .)") \
            from None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BenchError(f"cannot create {out}: {err.strerror or err}") from None
    if not os.access(out, os.W_OK):
        raise BenchError(f"cannot write into {out}")
    return elf


def run(quick: bool, out: Path, kernel: str | None = None,
        only: Sequence[str] | None = None, progress: Progress | None = None,
        command: str = "pyhvm bench paper") -> dict[str, Any]:
    """Every section (or those in `only`), in the table's order; the bundle (JSON)."""
    elf = preflight(out, kernel)
    chosen = [s for s in SECTIONS if not only or s.name in only]
    progress = progress or Progress([s.title for s in chosen],
                                    [s.estimate(quick) for s in chosen], quick)
    started = time.monotonic()
    started_utc = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load_start = common.loadavg()
    entries: list[dict[str, Any]] = []
    interrupted = False
    with progress:
        for index, section in enumerate(chosen):
            if interrupted:
                entries.append(_not_run(section, quick, "interrupted (Ctrl-C) before it ran"))
                continue
            progress.section(index, f"bench {section.name}")
            try:
                entry = run_section(section, quick, elf, out, progress)
            except Interrupted:
                interrupted = True
                entries.append(_not_run(section, quick, "interrupted (Ctrl-C) while it ran"))
                progress.finish_section("interrupted", ran=False)
                continue
            entries.append(entry)
            ran = entry["status"] == "ok"
            progress.finish_section("done" if ran else f"{entry['status']}: {entry['reason']}",
                                    ran=ran)
    host = common.host_info(loadavg_1m_start=load_start, loadavg_1m_end=common.loadavg(),
                            pyhvm=__version__, commit=_commit())
    return assemble(entries, host, quick=quick, command=command, started_utc=started_utc,
                    duration_s=time.monotonic() - started, interrupted=interrupted)


def _not_run(section: Section, quick: bool, reason: str) -> dict[str, Any]:
    return section_entry(section, quick, "not run", reason, None)


def assemble(entries: list[dict[str, Any]], host: dict[str, Any], *, quick: bool,
             command: str, started_utc: str, duration_s: float,
             interrupted: bool = False) -> dict[str, Any]:
    """The paper bundle: the benchmark envelope (one run per section, its headline as
    the metric) plus every section in full."""
    runs, ratios = [], {}
    for entry in entries:
        head = entry.get("headline") or {}
        config = {"section": entry["name"], "status": entry["status"],
                  "params": entry["params"]}
        metrics: dict[str, Any] = {"headline": head.get("value"),
                                   "headline_reps": head.get("reps", [])}
        if entry["status"] != "ok":
            metrics = {"error": f"{entry['status']}: {entry['reason']}"}
        runs.append(common.run_entry(config, metrics))
        ratios[entry["name"]] = head.get("value")
    bundle = common.envelope("paper", host, runs, ratios)
    bundle.update(quick=quick, fit_for_figures=not quick,
                  warning=QUICK_WARNING if quick else None, command=command,
                  started_utc=started_utc, duration_s=round(duration_s, 1),
                  interrupted=interrupted, sections=entries)
    return bundle


def write_outputs(bundle: dict[str, Any], out: Path) -> dict[str, Path]:
    """paper.json, runs/<section>.json (each benchmark's own JSON), then the report."""
    from .report import write_report

    out.mkdir(parents=True, exist_ok=True)
    runs = out / "runs"
    runs.mkdir(exist_ok=True)
    written = {"json": out / "paper.json"}
    for entry in bundle["sections"]:
        if entry.get("result") is not None:
            path = runs / f"{entry['name']}.json"
            path.write_text(json.dumps(entry["result"], indent=2) + "\n")
            written[f"run {entry['name']}"] = path
    # compact: the traces' timelines would put each number on a line of its own
    written["json"].write_text(json.dumps(bundle, separators=(",", ":")) + "\n")
    written.update(write_report(bundle, out))
    return written


__all__ = ["run", "assemble", "section_entry", "write_outputs", "measure_section", "call_measure",
           "DEFAULT_OUT", "QUICK_WARNING"]
