"""Branch coverage of the device models with coverage.py: feedback for the engine, and the
figures `--json` reports.

Start it before `pyhvm.devices` is imported, or the modules' own definition lines count as
missed. The feedback signal is the number of distinct arcs the C tracer has recorded in the
device modules; it reads coverage.py's collector (a pinned version: see pyproject.toml),
which costs about a microsecond, so the engine can ask after every program.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

DEVICE_PACKAGE = "pyhvm.devices"


class CoverageMeter:
    def __init__(self) -> None:
        import coverage  # optional: `pip install coverage` (the test extra pins it)

        self._cov = coverage.Coverage(branch=True, source=[DEVICE_PACKAGE], data_file=None)
        # `pyhvm` itself may have imported pyhvm.devices already: their code still counts.
        self._cov.set_option("run:disable_warnings", ["module-not-measured",
                                                      "already-imported"])
        self._collector: Any = None

    def start(self) -> None:
        self._cov.start()
        self._collector = getattr(self._cov, "_collector", None)

    def arcs(self) -> int:
        """Distinct arcs seen so far (a non-decreasing count while the meter runs)."""
        data = getattr(self._collector, "data", None)
        if not isinstance(data, dict):
            return 0
        return sum(len(arcs) for arcs in data.values())

    def stop(self) -> None:
        self._cov.stop()

    def report(self) -> dict[str, object]:
        """Per module run and in total: branches, covered branches, branch percent."""
        fd, path = tempfile.mkstemp(suffix=".json", prefix="pyhvm-fuzz-cov-")
        os.close(fd)
        try:
            self._cov.json_report(outfile=path)
            with open(path) as f:
                raw = json.load(f)
        except Exception as error:  # noqa: BLE001 - e.g. nothing was measured
            return {"error": str(error)}
        finally:
            os.unlink(path)
        modules: dict[str, dict[str, object]] = {}
        branches = covered = 0
        for filename, entry in sorted(raw.get("files", {}).items()):
            summary = entry["summary"]
            if summary.get("num_branches") and not summary.get("covered_branches"):
                continue  # imported but never run: another configuration's device
            n, c = summary.get("num_branches", 0), summary.get("covered_branches", 0)
            branches, covered = branches + n, covered + c
            modules[os.path.basename(filename)] = {
                "branches": n, "covered_branches": c,
                "branch_percent": round(100 * c / n, 1) if n else 100.0,
                "line_percent": round(100 * summary.get("covered_lines", 0) /
                                      max(1, summary.get("num_statements", 0)), 1)}
        return {"branch_percent": round(100 * covered / branches, 1) if branches else 0.0,
                "branches": branches, "covered_branches": covered, "modules": modules}
