"""Tracing end to end: a traced guest, `pyhvm report` on its trace, the Perfetto export, and
`pyhvm stat`. The counts must match what the guest did, exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.guestkit import BOOT_TIMEOUT, REPO_ROOT, STATUS_OK, boot_pyhvm

pytestmark = pytest.mark.kvm
N_EXITS = 1000
PORT = 0x404


def _pyhvm(*args: str, timeout: float = BOOT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyhvm", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO_ROOT, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module", params=["user", "kernel"])
def exits_trace(request: pytest.FixtureRequest, guestkit: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A trace of `scenario=exits n=1000 port=0x404` under each irqchip placement."""
    path = tmp_path_factory.mktemp("trace") / f"exits-{request.param}.trc"
    run = boot_pyhvm(guestkit, f"scenario=exits n={N_EXITS} port={PORT:#x}",
                     "--irqchip", request.param, "--trace", str(path))
    assert run.status == STATUS_OK, run.describe()
    assert run.result("exits").num("n") == N_EXITS
    yield path
    path.unlink(missing_ok=True)
    Path(str(path) + ".json").unlink(missing_ok=True)


def test_report_counts_exactly_the_guests_port_writes(exits_trace: Path) -> None:
    proc = _pyhvm("report", str(exits_trace), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    port = next(p for p in report["ports"] if p["port"] == PORT)
    assert port["count"] == N_EXITS and port["writes"] == N_EXITS and port["reads"] == 0
    assert port["device"] == "unclaimed"
    assert port["total_ns"] > 0 and port["mean_ns"] > 0
    pio = next(r for r in report["exits"]["by_reason"] if r["reason"] == "PIO")
    assert pio["count"] >= N_EXITS
    debug_exit = [p for p in report["ports"] if p["port"] == 0xF4]
    assert debug_exit and debug_exit[0]["name"] == "debug-exit+0x0"  # named from the header
    assert report["summary"]["vcpus"] == 1 and report["summary"]["duration_ns"] > 0
    assert 0 < report["time"]["guest_share"] <= 1


def test_text_report_runs(exits_trace: Path) -> None:
    proc = _pyhvm("report", str(exits_trace), "--plain")
    assert proc.returncode == 0, proc.stderr
    assert "Exits by reason" in proc.stdout and "0x0404" in proc.stdout


def test_perfetto_export_is_valid_json(exits_trace: Path) -> None:
    proc = _pyhvm("report", str(exits_trace), "--format", "perfetto")
    assert proc.returncode == 0, proc.stderr
    out = Path(str(exits_trace) + ".json")
    events = json.loads(out.read_text())["traceEvents"]
    vcpu_tid = next(e["tid"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"
                    and e["args"]["name"] == "vCPU 0")
    writes = [e for e in events if e["ph"] == "X" and e["tid"] == vcpu_tid
              and e["args"].get("port") == f"{PORT:#06x}"]
    assert len(writes) == N_EXITS
    assert all(e["dur"] > 0 for e in writes)


def _stat_leftovers() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("pyhvm-stat-")}


def test_stat_prints_a_summary_and_exits_with_the_guests_status(guestkit: Path) -> None:
    before = _stat_leftovers()
    proc = _pyhvm("stat", "--", "--kernel", str(guestkit), "--append", "scenario=hello",
                  "--max-seconds", str(BOOT_TIMEOUT - 5))
    assert proc.returncode == 1, proc.stderr  # the guest wrote 0: (0 << 1) | 1
    assert "RESULT hello ok=1" in proc.stdout  # the guest's console stays on stdout
    assert "VM exits by reason" in proc.stderr and "Top ports" in proc.stderr
    assert "com1" in proc.stderr and "pyhvm stat: status 1" in proc.stderr
    assert _stat_leftovers() - before == set(), "the temporary trace was left behind"


def test_stat_passes_a_failing_guest_status_through(guestkit: Path) -> None:
    proc = _pyhvm("stat", "--", "--kernel", str(guestkit), "--append", "scenario=nosuch",
                  "--irqchip", "user", "--max-seconds", str(BOOT_TIMEOUT - 5))
    assert proc.returncode == (2 << 1) | 1, proc.stderr  # STATUS_USAGE
    assert "VM exits by reason" in proc.stderr


def test_kernel_trace_sees_every_port_write(guestkit: Path) -> None:
    """tracefs (root only): the kernel's kvm_pio events for the guest's N writes to the
    unclaimed port, on the monotonic clock pyhvm uses; nothing left enabled or mounted."""
    from pyhvm.trace import tracefs

    reason = tracefs.unavailable_reason(mount=True)
    if reason:
        pytest.skip(f"kernel tracing unavailable: {reason}")
    mounts_before = Path("/proc/mounts").read_text().count(" tracefs ")
    capture = tracefs.KernelTrace([os.getpid()], mount=True)  # children follow
    start = time.monotonic_ns()
    try:
        capture.start()
    except tracefs.KernelTraceUnavailable as err:
        pytest.skip(f"kernel tracing unavailable: {err}")
    instance = capture.instance
    try:
        run = boot_pyhvm(guestkit, f"scenario=exits n={N_EXITS} port={PORT:#x}")
    finally:
        capture.stop()
    end = time.monotonic_ns()
    assert run.status == STATUS_OK, run.describe()
    assert "kvm_pio" in capture.enabled
    events = capture.events()
    assert capture.lost == 0
    assert tracefs.count(events, "kvm_pio", port=PORT, write=1, count=1) == N_EXITS
    if "kvm_userspace_exit" in capture.enabled:  # an unclaimed port exits to pyhvm
        assert tracefs.count(events, "kvm_userspace_exit", reason="KVM_EXIT_IO") >= N_EXITS
    assert all(e.tid != os.getpid() for e in events)  # the child's vCPU thread, not us
    if capture.clock_used == "mono":  # the clock of time.monotonic_ns()
        assert all(start <= e.ts_ns <= end for e in events)
    records = capture.records()
    assert sum(1 for r in records if r.kind is tracefs.KernelKind.KVM_PIO
               and r.a == PORT) >= N_EXITS
    assert instance is not None and not os.path.exists(instance)
    assert capture.instance is None and capture.mountpoint is None and not capture.leftover
    assert Path("/proc/mounts").read_text().count(" tracefs ") == mounts_before


def test_rip_samples_show_where_the_guest_computes(guestkit: Path, tmp_path: Path) -> None:
    """With 'rip' on, the sampler records guest RIPs; a CPL 3 compute loop dominates them."""
    from pyhvm.trace.records import Kind, read_trace

    trace = tmp_path / "rip.trc"
    run = boot_pyhvm(guestkit, "scenario=compute ms=400", "--trace", str(trace),
                     "--trace-events", "exits,rip")
    assert run.status == STATUS_OK, run.describe()
    _, records = read_trace(str(trace))
    samples = [r for r in records if r.kind is Kind.RIP_SAMPLE]
    assert len(samples) >= 20
    assert sum(1 for r in samples if r.c == 3) > len(samples) // 2
    assert all(0x100000 <= r.b < 0x400000 for r in samples)  # inside the kit's image


@pytest.mark.parametrize("placement", ["sync", "concurrent"])
def test_disk_dma_is_traced_once_per_command(guestkit: Path, tmp_path: Path,
                                             placement: str) -> None:
    from pyhvm.trace.records import Kind, read_trace

    image, trace = tmp_path / "disk.img", tmp_path / "dma.trc"
    with open(image, "wb") as f:
        f.truncate(8 << 20)
    run = boot_pyhvm(guestkit, "scenario=disk-seq op=read size=64 mb=1",
                     "--drive", f"file={image},if=ide,format=raw", "--ide-dma", placement,
                     "--trace", str(trace))
    assert run.status == STATUS_OK, run.describe()
    header, records = read_trace(str(trace))
    ide = header["devices"].index("ide")
    done = [r for r in records if r.kind is Kind.DMA and r.c == 2 and r.a == ide]
    commands = run.result("disk-seq").num("commands")
    assert len(done) >= commands  # the timed commands, plus the scenario's warm-up
    assert all(r.b == 64 * 1024 for r in done)
