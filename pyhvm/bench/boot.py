"""`pyhvm bench boot`: process start to the guest kit's first RESULT line through the firmware
chain (SeaBIOS -> GRUB 2 -> guest kit) from an IDE disk, pyhvm vs QEMU with the same ROM,
and the exit profile of the firmware phase under pyhvm.

Timed from outside with the monotonic clock, like `bench startup`: the moment each milestone
first shows on the guest's COM1 (both VMMs show SeaBIOS's console there, see
machine/firmware.py): the SeaBIOS banner, "Booting from Hard Disk", GRUB's "GRUB loading",
the first RESULT line, and the process's exit. The firmware phase's exit profile is pyhvm's
own exit counters (QMP `x-pyhvm-stats`) read when "Booting from Hard Disk" appears: which
devices SeaBIOS spends its exits on before the boot loader takes over.

The disk is the one tests/disk_image_builder.py builds (`--disk`); neither VMM changes it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import common
from .common import BenchError

DEFAULT_REPS = 1
RUN_TIMEOUT = 900.0  # the chain runs in KVM's instruction emulator on VT-less hosts
SEABIOS = "/usr/share/seabios/bios.bin"
MEMORY_MIB = 128
VMMS = ("pyhvm", "qemu")
# (name, text on COM1) in the order they appear.
MILESTONES = (("banner", "SeaBIOS (version"), ("boot", "Booting from Hard Disk"),
              ("grub", "GRUB loading"), ("result", "RESULT "))
FIRMWARE_DONE = "boot"  # the milestone that ends the firmware phase
PROFILE_TOP = 12
QMP_TIMEOUT = 10.0


@dataclass
class Timing:
    milestones_s: dict[str, float]
    exit_s: float
    status: int
    output: str
    stderr: str
    firmware_stats: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)


def pyhvm_command(disk: Path, qmp: Path | None) -> list[str]:
    command = [*common.pyhvm_command(), "run", "--bios", SEABIOS, "-m", f"{MEMORY_MIB}M",
               "--drive", f"file={disk},if=ide,format=raw,readonly=on", "--vga", "none",
               "--serial", "stdio", "--max-seconds", str(int(RUN_TIMEOUT - 30))]
    if qmp is not None:
        command += ["--qmp", f"unix:{qmp},server,wait=off"]
    return command


def qemu_command(disk: Path) -> list[str]:
    """The same machine under QEMU: i440FX, SeaBIOS, the disk untouched (QEMU refuses a
    read-only IDE disk: writes go to a snapshot), COM1 on stdio,
    SeaBIOS's console on COM1 (graphics=off), no VGA, the debug-exit port."""
    return [common.QEMU, "-enable-kvm", "-cpu", "qemu64", "-m", str(MEMORY_MIB),
            "-machine", "pc,graphics=off", "-nodefaults", "-display", "none", "-vga", "none",
            "-bios", SEABIOS, "-drive", f"file={disk},if=ide,format=raw,snapshot=on",
            "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
            "-no-reboot"]


def qmp_stats(path: Path) -> dict[str, Any]:
    """pyhvm's exit counters over its QMP socket (qmp_capabilities, then x-pyhvm-stats)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(QMP_TIMEOUT)
        sock.connect(str(path))
        stream = sock.makefile("rwb")
        stream.readline()  # the greeting
        for command in ("qmp_capabilities", "x-pyhvm-stats"):
            stream.write(json.dumps({"execute": command}).encode() + b"\n")
            stream.flush()
            while True:
                reply = json.loads(stream.readline() or b"{}")
                if "return" in reply or "error" in reply or not reply:
                    break
        if "return" not in reply:
            raise BenchError(f"x-pyhvm-stats failed: {reply.get('error', 'no reply')}")
        return dict(reply["return"])


def time_chain(command: list[str], env: dict[str, str] | None, qmp: Path | None,
               timeout: float = RUN_TIMEOUT) -> Timing:
    """Spawn the VMM; seconds from spawn to each milestone on COM1 and to its exit."""
    start = time.monotonic()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    timing = Timing({}, 0.0, 0, "", "")
    errors_out = bytearray()
    stderr = proc.stderr
    reader = threading.Thread(target=lambda: errors_out.extend(stderr.read()), daemon=True)
    reader.start()
    out = bytearray()
    pending = list(MILESTONES)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            out.extend(chunk)
            now = time.monotonic() - start
            while pending and pending[0][1].encode() in out:
                name, _ = pending.pop(0)
                timing.milestones_s[name] = now
                if name == FIRMWARE_DONE and qmp is not None:
                    try:
                        timing.firmware_stats = qmp_stats(qmp)
                    except (OSError, ValueError, BenchError) as err:
                        timing.errors.append(f"firmware-phase stats: {err}")
        timing.status = proc.wait()
        timing.exit_s = time.monotonic() - start
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        reader.join(5)
    timing.output = out.decode("utf-8", "replace")
    timing.stderr = errors_out.decode("utf-8", "replace")
    if timing.exit_s >= timeout:
        raise BenchError(f"{Path(command[0]).name} did not reach a RESULT line within "
                         f"{timeout:.0f} s")
    return timing


def exit_profile(stats: dict[str, Any], top: int = PROFILE_TOP) -> list[dict[str, Any]]:
    """Exits by device (port exits summed per device name), MMIO and other reasons, most
    first: [{"what": name, "exits": count}, ...]."""
    by_device: dict[str, int] = {}
    for key, count in dict(stats.get("pio_exits", {})).items():
        name = key.split(" ", 1)[1] if " " in key else key
        name = name.split("+", 1)[0]
        by_device[f"pio {name}"] = by_device.get(f"pio {name}", 0) + int(count)
    if stats.get("mmio_exits"):
        by_device["mmio"] = int(stats["mmio_exits"])
    for reason, count in dict(stats.get("other_exits", {})).items():
        by_device[str(reason)] = int(count)
    rows = sorted(by_device.items(), key=lambda item: -item[1])[:top]
    return [{"what": what, "exits": count} for what, count in rows]


def total_exits(stats: dict[str, Any]) -> int:
    """Every exit in a stats snapshot (its `exits` total is only updated now and then)."""
    return (sum(int(c) for c in dict(stats.get("pio_exits", {})).values())
            + int(stats.get("mmio_exits", 0))
            + sum(int(c) for c in dict(stats.get("other_exits", {})).values()))


def default_disk(kernel: Path, directory: Path) -> Path:
    """Build the GRUB disk with the source tree's builder (tests/disk_image_builder.py)."""
    builder = common.PACKAGE_PARENT / "tests" / "disk_image_builder.py"
    if not builder.is_file():
        raise BenchError("give --disk IMG (a disk SeaBIOS boots to the guest kit): this "
                         "installation has no tests/disk_image_builder.py to build one")
    disk = directory / "boot.img"
    proc = subprocess.run([sys.executable, "-m", "tests.disk_image_builder", str(disk),
                           "--kernel", str(kernel), "--cmdline", "scenario=hello"],
                          capture_output=True, text=True, cwd=common.PACKAGE_PARENT)
    if proc.returncode != 0:
        raise BenchError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip()
                         else "building the boot disk failed")
    return disk


def measure(reps: int = DEFAULT_REPS, disk: str | None = None, kernel: str | None = None,
            show_progress: bool = False, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    """Interleaved pyhvm and QEMU boots of the same disk; the JSON envelope."""
    if reps < 1:
        raise BenchError("--reps must be at least 1")
    common.require_kvm()
    if not os.path.isfile(SEABIOS):
        raise BenchError(f"{SEABIOS} is missing (apt-get install seabios)")
    vmms = [vmm for vmm in VMMS if vmm == "pyhvm" or shutil.which(common.QEMU)]
    progress = common.stderr_progress(show_progress, "bench boot")
    with tempfile.TemporaryDirectory(prefix="pyhvm-bench-boot-") as tmp:
        directory = Path(tmp)
        if disk is None:
            if progress:
                progress("building the GRUB disk")
            disk_path = default_disk(common.guestkit_path(kernel), directory)
        else:
            disk_path = Path(disk)
            if not disk_path.is_file():
                raise BenchError(f"--disk {disk!r} does not exist")
        qmp = directory / "qmp.sock"

        def one(vmm: str, rep: int) -> Timing:
            if vmm == "pyhvm":
                qmp.unlink(missing_ok=True)
                timing = time_chain(pyhvm_command(disk_path, qmp), common.pyhvm_env(), qmp,
                                    timeout)
            else:
                timing = time_chain(qemu_command(disk_path), None, None, timeout)
            if "result" not in timing.milestones_s:
                tail = " ".join(timing.output.split())[-common.STDERR_TAIL:]
                raise BenchError(f"{vmm} printed no RESULT line (status {timing.status}): "
                                 f"{tail or timing.stderr.strip()[-common.STDERR_TAIL:]}")
            return timing

        try:
            results = common.interleave(vmms, reps, one, progress)
        finally:
            common.clear_progress(progress)
    runs = []
    medians: dict[str, float] = {}
    for vmm, timings in zip(vmms, results):
        metrics: dict[str, Any] = {}
        for name, _ in MILESTONES:
            values = [t.milestones_s[name] * 1000 for t in timings if name in t.milestones_s]
            if values:
                metrics.update(common.metric(f"{name}_ms", values, 1))
        metrics.update(common.metric("exit_ms", [t.exit_s * 1000 for t in timings], 1))
        medians[vmm] = metrics["result_ms"]
        config = {"vmm": vmm, "reps": reps, "disk": str(disk) if disk else "built (GRUB)",
                  "memory_mib": MEMORY_MIB, "bios": SEABIOS}
        if vmm == "pyhvm":
            stats = timings[-1].firmware_stats
            metrics["firmware_exit_profile"] = exit_profile(stats) if stats else None
            metrics["firmware_exits"] = total_exits(stats) if stats else None
            errors = sorted({e for t in timings for e in t.errors})
            if errors:
                config["notes"] = errors
        runs.append(common.run_entry(config, metrics))
    ratios: dict[str, float | None] = {}
    if "qemu" in medians:
        value = common.ratio(medians["pyhvm"], medians["qemu"])
        ratios["result_pyhvm_over_qemu"] = None if value is None else round(value, 3)
    return common.envelope("boot", common.host_info(), runs, ratios)


def render(result: dict[str, Any]) -> str:
    """Milestones per VMM (seconds from spawn), then the firmware phase's exit profile."""
    by_vmm = {r["config"]["vmm"]: r["metrics"] for r in result["runs"]}
    reps = result["runs"][0]["config"]["reps"]
    headers = ["vmm", *(name for name, _ in MILESTONES), "exit"]
    rows = []
    for vmm, metrics in by_vmm.items():
        row = [vmm]
        for name in [*(n for n, _ in MILESTONES), "exit"]:
            values = metrics.get(f"{name}_ms_reps")
            row.append(common.fmt_spread([v / 1000 for v in values], 1) if values else "-")
        rows.append(row)
    ratio = result["ratios"].get("result_pyhvm_over_qemu")
    lines = [f"pyhvm bench boot: SeaBIOS -> GRUB -> guest kit from an IDE disk, {reps} "
             "repetition(s) interleaved; seconds from spawn to each milestone on COM1, "
             "median (min-max)", "", common.format_table(headers, rows)]
    if "qemu" in by_vmm:
        lines += ["", f"first RESULT, pyhvm/qemu: {common.fmt_ratio(ratio)}"]
    else:
        lines += ["", f"{common.QEMU} is not installed (apt-get install qemu-system-x86): "
                      "pyhvm only"]
    profile = by_vmm.get("pyhvm", {}).get("firmware_exit_profile")
    if profile:
        total = by_vmm["pyhvm"].get("firmware_exits")
        lines += ["", f"pyhvm, firmware phase (spawn to '{dict(MILESTONES)[FIRMWARE_DONE]}'): "
                      f"{total} exits, by device", "",
                  common.format_table(["exits of", "count"],
                                      [[p["what"], str(p["exits"])] for p in profile])]
    lines += ["", common.host_line(result["host"])]
    return "\n".join(lines)


__all__ = ["exit_profile", "measure", "pyhvm_command", "qemu_command", "render", "time_chain"]
