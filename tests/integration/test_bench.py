"""`pyhvm bench exits`, `startup`, `pic` and `ide` end to end, short: the JSON has the
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


def _bench(*args: str, extra_keys: tuple[str, ...] = ()) -> dict:
    # A private TMPDIR: the shared one also holds what concurrent runs make meanwhile.
    with tempfile.TemporaryDirectory(prefix="test-bench-") as tmp:
        proc = subprocess.run([sys.executable, "-m", "pyhvm", "bench", *args, "--json"],
                              capture_output=True, text=True, timeout=BENCH_TIMEOUT, cwd=ROOT,
                              stdin=subprocess.DEVNULL, env={**os.environ, "TMPDIR": tmp})
        leftovers = set(os.listdir(tmp))
    assert proc.returncode == 0, proc.stderr
    assert not leftovers, f"temporary files left behind: {leftovers}"
    result = json.loads(proc.stdout)  # stdout is the one JSON object and nothing else
    assert list(result) == ["bench", "host", "runs", "ratios", *extra_keys]
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


def test_bench_pic_json() -> None:
    """Both placements at 0 and 1000 Hz, pyhvm only: figures positive, the exit profile
    present for both placements (no thresholds: the kernel placement's fewer exits are the
    benchmark's finding, not this test's)."""
    result = _bench("pic", "--reps", "1", "--ms", "200", "--hz", "0,1000", "--no-qemu",
                    extra_keys=("profile",))
    assert result["bench"] == "pic"
    runs = {(r["config"]["irqchip"], r["config"]["hz"]): r for r in result["runs"]}
    assert set(runs) == {(p, hz) for p in ("user", "kernel") for hz in (0, 1000)}
    for (placement, hz), run in runs.items():
        assert run["config"]["vmm"] == "pyhvm" and run["config"]["ms"] == 200
        metrics = run["metrics"]
        assert "error" not in metrics, metrics
        _positive_metric(metrics, "work", 1)
        _positive_metric(metrics, "mwork_per_s", 1)
        _positive_metric(metrics, "timed_ms", 1)
        _positive_metric(metrics, "exits", 1)
        assert metrics["tsc_khz"] > 0
        if hz:
            assert metrics["ticks"] > 0
            assert metrics["overhead_pct"] is not None
            assert metrics["cost_us_per_irq"] is not None
        else:
            assert metrics["ticks"] == 0
    for hz in (0, 1000):
        assert result["ratios"][f"kernel_over_user_work_{hz}hz"] > 0
    assert not any(key.startswith(("qemu", "pyhvm_")) for key in result["ratios"])
    assert result["ratios"]["noise_0hz_max_over_min"] >= 1
    profile = result["profile"]
    assert profile["hz"] == 1000
    for placement in ("user", "kernel"):
        entry = profile["placements"][placement]
        assert "error" not in entry, entry
        assert entry["exits"] > 0 and entry["exits_0hz"] > 0
        assert entry["guest_ticks"] > 0
        assert entry["top_exits"]
    assert profile["placements"]["user"]["interrupts_injected"] > 0
    assert isinstance(profile["difference"], list)


def test_bench_ide_json() -> None:
    """Both --ide-dma placements, 4 KiB and the largest LBA48 command, 4 MiB a run, pyhvm
    only: every figure positive, the overlap and the per-command profile present, the image
    gone afterwards (checked by _bench). No thresholds: the goals are the benchmark's."""
    result = _bench("ide", "--reps", "1", "--mb", "4", "--sizes", "4,32768", "--no-qemu",
                    extra_keys=("profile",))
    assert result["bench"] == "ide"
    runs = {(r["config"]["variant"], r["config"]["scenario"], r["config"]["op"],
             r["config"]["kib"]): r for r in result["runs"]}
    seq = {(v, "disk-seq", op, kib) for v in ("sync", "concurrent") for op in ("read", "write")
           for kib in (4, 32768)}
    overlap = {(v, "disk-overlap", "read", kib) for v in ("sync", "concurrent")
               for kib in (64, 32768)}
    assert set(runs) == seq | overlap
    for key, run in runs.items():
        assert run["config"]["vmm"] == "pyhvm" and run["config"]["page_cache"] == "warm"
        metrics = run["metrics"]
        assert "error" not in metrics, (key, metrics)
        assert metrics["tsc_khz"] > 0
        if key in seq:
            _positive_metric(metrics, "mbps", 1)
            _positive_metric(metrics, "us_per_cmd", 1)
            assert metrics["commands"] >= 2
        else:
            _positive_metric(metrics, "total_over_max", 1)
            _positive_metric(metrics, "total_over_sum", 1)
            _positive_metric(metrics, "io_alone_ms", 1)
    assert runs[("sync", "disk-seq", "read", 32768)]["config"]["lba48"] is True
    for name, value in result["ratios"].items():
        assert "qemu" not in name and value is not None and value > 0, name
    profile = result["profile"]
    assert profile["host_copy_us"] > 0
    for placement in ("sync", "concurrent"):
        entry = profile["placements"][placement]
        assert "error" not in entry, entry
        assert entry["commands"] > 0 and entry["cycle_us"] > 0
        assert entry["exits_per_cmd"] > 0 and entry["irqs_per_cmd"] > 0


def test_bench_trace_json() -> None:
    """Every tracing mode beside the C loop: positive figures, trace sizes for the traced
    modes (every guest write recorded), and the overhead method with its goals."""
    result = _bench("trace", "--n", "2000", "--reps", "1", extra_keys=("overhead",))
    assert result["bench"] == "trace" and result["host"]["gcc"]
    runs = {(r["config"]["exit"], r["config"]["tracing"]): r for r in result["runs"]}
    kinds = ("pio_unclaimed", "pio_uart")
    modes = (None, "untraced", "off", "exits", "all")
    assert set(runs) == {(k, m) for k in kinds for m in modes}
    for (kind, mode), run in runs.items():
        metrics = run["metrics"]
        _positive_metric(metrics, "ns_per_exit", 1)
        _positive_metric(metrics, "cycles_per_exit", 1)
        if mode in ("exits", "all"):
            assert metrics["trace_port_records"] >= 2000
            assert metrics["trace_records_per_exit"] >= 1
            assert metrics["trace_bytes_per_exit"] >= metrics["record_bytes"]
        else:
            assert "trace_bytes" not in metrics
    for kind in kinds:
        for name in ("off_over_untraced", "exits_over_off", "all_over_off", "off_over_c"):
            assert result["ratios"][f"{kind}_{name}"] > 0
    overhead = result["overhead"]
    assert overhead["method"] and overhead["check"]["ns_per_check_min"] >= 0
    assert overhead["check"]["sites_in_loop"] >= overhead["check"]["sites_per_pio_exit"] >= 1
    assert overhead["on_exits"]["ns_per_exit_min"] > 0 and "trace.add(" in \
        overhead["on_exits"]["code"]
    assert {g["exit"] for g in overhead["goals"]} == set(kinds)
    assert all(g["met"] in (True, False, None) and g["verdict"] for g in overhead["goals"])
