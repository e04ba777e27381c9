"""The report of `pyhvm bench paper`, from its bundle (paper.json) alone: report.html
(self-contained), summary.md and plots/*.png. Nothing here measures; a bundle recorded
elsewhere renders the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import html, markdown
from .model import OVERVIEW_PROBLEMS
from .plots import Plot, overview, section_plots


def build(bundle: dict[str, Any]) -> tuple[Plot | None, dict[str, tuple[list[Plot], list[str]]]]:
    """Every plot of the bundle: the overview, and each section's (plots, problems)."""
    quick = bool(bundle.get("quick"))
    sections = {e["name"]: section_plots(e, quick) for e in bundle["sections"]
                if e["status"] == "ok"}
    try:
        top = overview(bundle)
    except Exception as err:  # noqa: BLE001  (the report goes on without the picture)
        top = None
        sections[OVERVIEW_PROBLEMS] = ([], [f"the overview plot could not be drawn: "
                                            f"{type(err).__name__}: {err}"])
    return top, sections


def write_report(bundle: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write report.html, summary.md and plots/ into `out`; the paths written."""
    top, sections = build(bundle)
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    every = ([top] if top else []) + [p for plots, _ in sections.values() for p in plots]
    for plot in every:
        path = plots_dir / f"{plot.name}.png"
        path.write_bytes(plot.png)
        written[f"plot {plot.name}"] = path
    written["html"] = out / "report.html"
    written["html"].write_text(html.render(bundle, top, sections), encoding="utf-8")
    written["markdown"] = out / "summary.md"
    written["markdown"].write_text(markdown.render(bundle, top, sections), encoding="utf-8")
    return written


__all__ = ["write_report", "build"]
