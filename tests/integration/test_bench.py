"""`pyhvm bench exits` and `pyhvm bench startup` end to end, short: the JSON has the
documented shape and every measured figure is positive. No timing thresholds (the build
machines are noisy); the benchmarks themselves report the figures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.guestkit import ROOT, kvm_skip_reason

pytestmark = pytest.mark.kvm
BENCH_TIMEOUT = 240


@pytest.fixture(autouse=True)
def _needs_kvm(guestkit: Path) -> None:
    """The session fixture skips without /dev/kvm and builds the guest kit."""
    assert kvm_skip_reason() is None


def _bench(*args: str) -> dict:
    before = set(os.listdir(tempfile.gettempdir()))
    proc = subprocess.run([sys.executable, "-m", "pyhvm", "bench", *args, "--json"],
                          capture_output=True, text=True, timeout=BENCH_TIMEOUT, cwd=ROOT,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    leftovers = {name for name in set(os.listdir(tempfile.gettempdir())) - before
                 if name.startswith("pyhvm-bench")}
    assert not leftovers, f"temporary files left behind: {leftovers}"
    result = json.loads(proc.stdout)  # stdout is the one JSON object and nothing else
    assert list(result) == ["bench", "host", "runs", "ratios"]
    host = result["host"]
    for key in ("kernel", "cpu_model", "kvm_module", "kvm_pvm", "python", "qemu"):
        assert key in host
    for run in result["runs"]:
        assert set(run) == {"config", "metrics"}
    return result


def _positive_metric(metrics: dict, name: str, reps: int) -> None:
    assert metrics[name] > 0
    assert len(metrics[f"{name}_reps"]) == reps
    assert all(value > 0 for value in metrics[f"{name}_reps"])


def test_bench_exits_json() -> None:
    result = _bench("exits", "--n", "2000", "--reps", "1")
    assert result["bench"] == "exits"
    assert result["host"]["gcc"]
    configs = {(r["config"]["exit"], r["config"]["vmm"]): r for r in result["runs"]}
    kinds = ("pio_unclaimed", "pio_uart", "mmio_unclaimed")
    assert set(configs) == {(k, v) for k in kinds for v in ("pyhvm", "c-reference")}
    for (kind, vmm), run in configs.items():
        assert run["config"]["n"] == 2000
        metrics = run["metrics"]
        _positive_metric(metrics, "us_per_exit", 1)
        _positive_metric(metrics, "cycles_per_exit", 1)
        assert metrics["tsc_khz"] > 0
        if vmm == "c-reference":
            assert metrics["exits_counted"] >= 2000
    for kind in kinds:
        assert result["ratios"][f"{kind}_pyhvm_over_c"] > 0


def test_bench_startup_json() -> None:
    result = _bench("startup", "--reps", "1")
    assert result["bench"] == "startup"
    vmms = [r["config"]["vmm"] for r in result["runs"]]
    assert vmms[0] == "pyhvm"
    for run in result["runs"]:
        _positive_metric(run["metrics"], "first_byte_ms", 1)
        _positive_metric(run["metrics"], "exit_ms", 1)
        assert run["metrics"]["first_byte_ms"] <= run["metrics"]["exit_ms"]
    if shutil.which("qemu-system-x86_64"):
        assert vmms == ["pyhvm", "qemu"]
        assert result["ratios"]["first_byte_pyhvm_over_qemu"] > 0
        assert result["ratios"]["exit_pyhvm_over_qemu"] > 0
    else:
        assert vmms == ["pyhvm"] and result["ratios"] == {}
