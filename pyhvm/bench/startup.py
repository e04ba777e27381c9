"""`pyhvm bench startup`: from process start to the guest's first serial byte, and to the
process's exit, for the guest kit's `hello` scenario under pyhvm and under QEMU.

Timed from outside with the monotonic clock: just before the child is spawned, when the
first byte arrives on its stdout (an unbuffered pipe), and when it has exited. Both VMMs
get the same kernel and command line and must print the same RESULT line.
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import common
from .common import BenchError, GuestRun

DEFAULT_REPS = 5
RUN_TIMEOUT = 60.0
APPEND = "scenario=hello"
VMMS = ("pyhvm", "qemu")


@dataclass(frozen=True)
class Timing:
    first_byte_s: float
    exit_s: float
    run: GuestRun


def pyhvm_command(kernel: Path) -> list[str]:
    return [*common.pyhvm_command(), "run", "--kernel", str(kernel), "--append", APPEND,
            "--serial", "stdio"]


def qemu_command(kernel: Path) -> list[str]:
    """QEMU with only what the guest kit needs: KVM, COM1 on stdio and the debug-exit port
    (same port and status rule as pyhvm), no firmware display or default devices."""
    return [common.QEMU, "-enable-kvm", "-cpu", "qemu64", "-m", "128", "-kernel", str(kernel),
            "-append", APPEND, "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
            "-serial", "stdio", "-display", "none", "-no-reboot", "-nodefaults"]


def time_process(command: list[str], env: dict[str, str] | None = None,
                 timeout: float = RUN_TIMEOUT) -> Timing:
    """Spawn `command`; seconds to its first stdout byte and to its exit, and its output."""
    with tempfile.TemporaryFile() as errors:
        start = time.monotonic()
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=errors, bufsize=0, env=env)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        first: float | None = None
        chunks: list[bytes] = []
        deadline = start + timeout
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(fd, selectors.EVENT_READ)
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BenchError(f"{Path(command[0]).name} did not end within "
                                         f"{timeout:.0f} s")
                    if not selector.select(left):
                        continue
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    if first is None:
                        first = time.monotonic()
                    chunks.append(data)
            status = proc.wait(max(deadline - time.monotonic(), 0.1))
            end = time.monotonic()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
    output = b"".join(chunks).decode("utf-8", "replace")
    if first is None:
        first = end
    return Timing(first - start, end - start, GuestRun(status, output, stderr, end - start))


def measure(reps: int = DEFAULT_REPS, kernel: str | None = None,
            show_progress: bool = False) -> dict[str, Any]:
    """Interleaved pyhvm and QEMU runs; the JSON envelope. Without QEMU, pyhvm alone."""
    if reps < 1:
        raise BenchError("--reps must be at least 1")
    common.require_kvm()
    elf = common.guestkit_path(kernel)
    vmms = [vmm for vmm in VMMS if vmm == "pyhvm" or shutil.which(common.QEMU)]
    commands = {"pyhvm": (pyhvm_command(elf), common.pyhvm_env()),
                "qemu": (qemu_command(elf), None)}
    expected: dict[str, str] = {}

    def one(vmm: str, rep: int) -> Timing:
        command, env = commands[vmm]
        timing = time_process(command, env)
        common.check_guest_run(vmm, timing.run, APPEND)
        line = common.find_result(timing.run.output, "hello")
        expected.setdefault(vmm, " ".join(line.words + tuple(
            f"{k}={v}" for k, v in line.fields.items())))
        return timing

    progress = common.stderr_progress(show_progress, "bench startup")
    try:
        results = common.interleave(vmms, reps, one, progress)
    finally:
        common.clear_progress(progress)
    if len(set(expected.values())) > 1:
        raise BenchError("pyhvm and QEMU disagree on the guest's RESULT hello line: "
                         + "; ".join(f"{k}: {v}" for k, v in expected.items()))
    runs = []
    medians: dict[str, tuple[float, float]] = {}
    for vmm, timings in zip(vmms, results):
        first = [t.first_byte_s * 1000 for t in timings]
        exit_ = [t.exit_s * 1000 for t in timings]
        medians[vmm] = (common.median(first), common.median(exit_))
        command, _ = commands[vmm]
        config = {"vmm": vmm, "scenario": "hello", "reps": reps,
                  "command": " ".join([Path(command[0]).name, *command[1:]])}
        metrics = {**common.metric("first_byte_ms", first, 1),
                   **common.metric("exit_ms", exit_, 1)}
        runs.append(common.run_entry(config, metrics))
    ratios: dict[str, float | None] = {}
    if "qemu" in medians:
        for index, name in enumerate(("first_byte", "exit")):
            value = common.ratio(medians["pyhvm"][index], medians["qemu"][index])
            ratios[f"{name}_pyhvm_over_qemu"] = None if value is None else round(value, 3)
    return common.envelope("startup", common.host_info(), runs, ratios)


def qemu_missing_note() -> str:
    return f"{common.QEMU} is not installed (apt-get install qemu-system-x86): pyhvm only"


def render(result: dict[str, Any]) -> str:
    """The plain-text table: per VMM, milliseconds to the first byte and to exit."""
    by_vmm = {r["config"]["vmm"]: r["metrics"] for r in result["runs"]}
    reps = result["runs"][0]["config"]["reps"]
    rows = [[vmm, common.fmt_spread(m["first_byte_ms_reps"], 1),
             common.fmt_spread(m["exit_ms_reps"], 1)] for vmm, m in by_vmm.items()]
    ratios = result["ratios"]
    if "qemu" in by_vmm:
        rows.append(["pyhvm/qemu", common.fmt_ratio(ratios.get("first_byte_pyhvm_over_qemu")),
                     common.fmt_ratio(ratios.get("exit_pyhvm_over_qemu"))])
    header = (f"pyhvm bench startup: guest kit '{APPEND}', {reps} repetitions interleaved; "
              f"milliseconds from spawn, median (min-max)")
    lines = [header, "", common.format_table(["vmm", "first serial byte", "exit"], rows)]
    if "qemu" not in by_vmm:
        lines += ["", qemu_missing_note()]
    lines += ["", common.host_line(result["host"])]
    return "\n".join(lines)


__all__ = ["measure", "render", "time_process", "qemu_command", "pyhvm_command",
           "qemu_missing_note"]
