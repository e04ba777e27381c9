"""`pyhvm bench paper --quick` end to end, as CI runs it: every section either measured or
reported as not run with a reason, the traced runs of each optimization compared, the report
files written, and nothing left behind in the temporary directory. No timing thresholds:
the figures are the report's, not this test's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pyhvm.bench.paper_sections import SECTION_NAMES, SECTIONS
from tests.guestkit import ROOT, kvm_skip_reason

pytestmark = pytest.mark.kvm
PAPER_TIMEOUT = 600  # --quick takes 1-3 minutes on the project's 2-core hosts, loaded or not


@pytest.fixture(autouse=True)
def _needs_kvm(guestkit: Path) -> None:
    """The session fixture skips without /dev/kvm and builds the guest kit."""
    assert kvm_skip_reason() is None


def test_bench_paper_quick_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    with tempfile.TemporaryDirectory(prefix="test-paper-") as tmp:
        proc = subprocess.run([sys.executable, "-m", "pyhvm", "bench", "paper", "--quick",
                               "--out", str(out)], capture_output=True, text=True,
                              timeout=PAPER_TIMEOUT, cwd=ROOT, stdin=subprocess.DEVNULL,
                              env={**os.environ, "TMPDIR": tmp})
        leftovers = set(os.listdir(tmp))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    assert "not fit for figures" in proc.stdout
    assert "pyhvm bench paper: quick smoke run" in proc.stderr   # the progress lines (no tty)

    bundle = json.loads((out / "paper.json").read_text())
    assert list(bundle)[:4] == ["bench", "host", "runs", "ratios"]
    assert bundle["quick"] is True and bundle["fit_for_figures"] is False
    for key in ("kernel", "cpu_model", "kvm_module", "python", "qemu"):
        assert key in bundle["host"]
    sections = {e["name"]: e for e in bundle["sections"]}
    assert list(sections) == list(SECTION_NAMES)
    for section in SECTIONS:
        entry = sections[section.name]
        if section.name in ("pic", "ide", "net", "exits", "startup"):
            assert entry["status"] == "ok", (section.name, entry.get("reason"))
        else:  # written by others meanwhile: measured, or stated as not run
            assert entry["status"] == "ok" or entry["reason"], entry
        if entry["status"] != "ok":
            continue
        raw = json.loads((out / "runs" / f"{section.name}.json").read_text())
        assert raw["bench"] == section.name and raw["runs"]
        if section.name in ("pic", "ide", "net", "exits") or \
                (section.name == "startup" and bundle["host"]["qemu"]):
            assert entry["headline"]["value"] is not None, (section.name, entry["headline"])
        if section.name in ("pic", "ide", "net"):
            trace = entry["trace"]
            assert "error" not in trace["before"] and "error" not in trace["after"], trace
            assert trace["diff"]["exits_before"] > 0 and trace["diff"]["rows"]
            for mode in ("before", "after"):
                assert (out / trace[mode]["analysis_file"]).is_file()
    assert sections["pic"]["trace"]["diff"]["gone"]      # the 8259 ports stay in KVM
    assert sections["net"]["trace"]["before"]["rtt_us"]
    assert sections["ide"]["trace"]["after"]["timeline"]["dma"]

    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "not fit for figures" in html
    for name in SECTION_NAMES:
        assert f'id="{name}"' in html
    assert (out / "summary.md").read_text().startswith("# pyhvm: the paper's claims")
    assert (out / "plots" / "overview.png").stat().st_size > 0
