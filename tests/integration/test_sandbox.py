"""`pyhvm run --sandbox` around a real guest: forbidden calls are refused inside the run,
every thread carries the filter, a root run goes on as `nobody`, and what the run writes
later (console, trace, stats, screendumps, socket removal) still works.

The refusal is shown with PYHVM_SANDBOX_PROBE (read by pyhvm/runtime/sandbox.py only once
the sandbox is in place): the run then tries `execve` and `socket(AF_INET)` on its main
thread and on a thread that predates the filter, and prints what the kernel answered.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.guestkit import BOOT_TIMEOUT, REPO_ROOT, STATUS_OK, parse_results, \
    status_from_exit_code

pytestmark = pytest.mark.kvm

NOBODY = 65534
STEP_TIMEOUT = 15.0
GUEST_MAC = "52:54:00:12:34:56"


def run(guestkit: Path, cmdline: str, *extra: str, env: dict[str, str] | None = None,
        seconds: float = BOOT_TIMEOUT - 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyhvm", "run", "--kernel", str(guestkit),
                           "--append", cmdline, "--max-seconds", str(seconds), *extra],
                          capture_output=True, text=True, timeout=BOOT_TIMEOUT, cwd=REPO_ROOT,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def sandbox_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("pyhvm: sandbox: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_forbidden_calls_are_refused_inside_a_sandboxed_run(guestkit: Path) -> None:
    proc = run(guestkit, "scenario=hello", "-v", "--sandbox-limits", "files=300",
               env={"PYHVM_SANDBOX_PROBE": "execve,socket"})
    assert status_from_exit_code(proc.returncode) == STATUS_OK, proc.stderr
    assert "pyhvm: sandbox probe: execve main=EPERM thread=EPERM" in proc.stderr
    assert "pyhvm: sandbox probe: socket main=EPERM thread=EPERM" in proc.stderr
    line = sandbox_line(proc.stderr)
    assert "seccomp (" in line and "no_new_privs" in line and "files 300" in line
    assert "imported after the sandbox" not in proc.stderr


@pytest.mark.parametrize("cmdline, extra", [
    ("scenario=hello", ()),
    ("scenario=disk-verify mode=both mb=1", ("--ide-dma", "concurrent")),
    ("scenario=disk-verify mode=both mb=1", ("--ide-dma", "sync")),
    ("scenario=compute ms=200 hz=1000", ("--irqchip", "user", "--cpus", "2")),
], ids=["hello", "disk-concurrent", "disk-sync", "irqchip-user"])
def test_strict_mode_kills_on_any_unlisted_call_and_these_runs_make_none(
        guestkit: Path, tmp_path: Path, cmdline: str, extra: tuple[str, ...]) -> None:
    args = list(extra)
    if "disk" in cmdline:
        disk = tmp_path / "disk.img"
        disk.write_bytes(bytes(4 << 20))
        args += ["--drive", f"file={disk},if=ide,format=raw"]
    proc = run(guestkit, cmdline, "--sandbox", "strict", "-v", *args)
    assert proc.returncode != -31, f"killed by SIGSYS: a call is missing\n{proc.stderr}"
    assert "else kill" in sandbox_line(proc.stderr)
    assert status_from_exit_code(proc.returncode) == STATUS_OK, proc.stderr
    assert parse_results(proc.stdout), proc.stdout


@pytest.mark.parametrize("backing", ["anon", "memfd", "file"])
def test_strict_mode_survives_reboots(guestkit: Path, tmp_path: Path, backing: str) -> None:
    """A reboot rereads the kernel, clears RAM (madvise, or a punched hole and fallocate
    for file-backed RAM) and starts a new vCPU thread, all under the filter."""
    spec = f"file:{tmp_path}" if backing == "file" else backing
    proc = run(guestkit, "scenario=reset", "--sandbox", "strict", "-v", "--mem-backing", spec,
               "--mem-prealloc", seconds=3)
    assert proc.returncode != -31, f"killed by SIGSYS: a call is missing\n{proc.stderr}"
    assert proc.returncode == 124, proc.stderr  # rebooting until --max-seconds
    assert proc.stdout.count("pyhvm guest kit") >= 2, proc.stdout
    assert "Traceback" not in proc.stderr


def test_files_opened_at_setup_are_written_after_the_user_change(guestkit: Path,
                                                                 tmp_path: Path) -> None:
    """tmp_path is root's alone: the console, trace and stats files still fill, opened
    before the sandbox; the report says whether the user changed."""
    console, trace, stats = tmp_path / "com1.txt", tmp_path / "run.trc", tmp_path / "s.json"
    proc = run(guestkit, "scenario=hello", "-v", "--serial", f"file:{console}",
               "--trace", str(trace), "--stats", str(stats))
    assert status_from_exit_code(proc.returncode) == STATUS_OK, proc.stderr
    if os.geteuid() == 0 and _nobody_reads(guestkit):
        assert f"uid {NOBODY}" in sandbox_line(proc.stderr)
    assert parse_results(console.read_text())[0].scenario == "hello"
    assert json.loads(stats.read_text())["exits"] > 0
    report = subprocess.run([sys.executable, "-m", "pyhvm", "report", str(trace), "--json"],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert report.returncode == 0, report.stderr


def test_a_socket_the_sandbox_user_could_not_remove_keeps_root_and_says_why(
        guestkit: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the user change happens only in root runs")
    sock = tmp_path / "q.sock"
    proc = run(guestkit, "scenario=hello", "-v", "--qmp", f"unix:{sock},server,wait=off")
    assert status_from_exit_code(proc.returncode) == STATUS_OK, proc.stderr
    line = sandbox_line(proc.stderr)
    assert f"user (uid {NOBODY} could not write in the directory of the QMP socket {sock})" \
        in line
    assert not sock.exists()


# --- a root run as nobody, driven over QMP --------------------------------------------------------
def _nobody_reads(path: Path) -> bool:
    from pyhvm.runtime.sandbox import user_can_read

    return user_can_read(str(path), NOBODY, NOBODY)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory `nobody` may write in (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="pyhvm-sandbox-", dir="/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Qmp:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(STEP_TIMEOUT)
        self.sock.connect(str(path))
        self.buffer = b""
        self.read()  # greeting
        self.execute("qmp_capabilities")

    def read(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "QMP connection closed"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command: str, **arguments: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self.sock.sendall(json.dumps(message).encode())
        while True:
            reply = self.read()
            if "event" not in reply:
                return reply

    def close(self) -> None:
        self.sock.close()


def _status(pid: int, tid: int | None = None) -> dict[str, str]:
    path = f"/proc/{pid}/task/{tid}/status" if tid else f"/proc/{pid}/status"
    with open(path) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_frames_flow_and_are_captured_after_the_user_change(guestkit: Path, shared_dir: Path,
                                                           tmp_path: Path) -> None:
    """net-echo over Unix datagram sockets: the VMM sends to the peer and removes its own
    socket file at exit as nobody; the pcap, in root's directory, was opened before."""
    if os.geteuid() != 0 or not _nobody_reads(guestkit):
        pytest.skip("the user change happens only in root runs that nobody can finish")
    from pyhvm.backends.pcap import read_pcap
    from tests.netpeer import NetPeer, parse_mac

    vmm, peer_path, pcap = shared_dir / "vmm.sock", shared_dir / "peer.sock", tmp_path / "n.pcap"
    peer = NetPeer(str(peer_path), str(vmm), "echo", guest_mac=parse_mac(GUEST_MAC)).start()
    try:
        peer_path.chmod(0o777)  # nobody must be allowed to send to it
        proc = run(guestkit, "scenario=net-echo n=8 size=64", "-v", "--sandbox", "strict",
                   "--netdev", f"dgram,id=n0,local.type=unix,local.path={vmm},"
                   f"remote.type=unix,remote.path={peer_path}",
                   "--device", f"rtl8139,netdev=n0,mac={GUEST_MAC}",
                   "--object", f"filter-dump,id=f0,netdev=n0,file={pcap}")
    finally:
        peer.stop()
    assert proc.returncode != -31, f"killed by SIGSYS: a call is missing\n{proc.stderr}"
    assert f"uid {NOBODY}" in sandbox_line(proc.stderr), proc.stderr
    assert status_from_exit_code(proc.returncode) == STATUS_OK, proc.stdout + proc.stderr
    _, records = read_pcap(str(pcap))
    assert len(records) >= 16  # every frame out and back
    assert not vmm.exists(), "the VMM's socket file was left behind"


def test_root_run_goes_on_as_nobody_and_screendumps_where_nobody_may_write(
        guestkit: Path, shared_dir: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the user change happens only in root runs")
    if not _nobody_reads(guestkit):
        pytest.skip(f"nobody cannot read {guestkit}: the run keeps root")
    sock = shared_dir / "q.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyhvm", "run", "--kernel", str(guestkit), "--append",
         "scenario=vga-text hold=1", "--qmp", f"unix:{sock},server,wait=off",
         "--max-seconds", "60", "--serial", "none"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        cwd=REPO_ROOT, text=True)
    client = None
    try:
        deadline = time.monotonic() + STEP_TIMEOUT
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.05)
        client = Qmp(sock)
        info = client.execute("x-pyhvm-sandbox")["return"]
        assert info["uid"] == NOBODY, info
        assert any(layer.startswith("seccomp") for layer in info["layers"]), info
        status = _status(proc.pid)
        assert status["Uid"].split() == [str(NOBODY)] * 4
        assert status["NoNewPrivs"] == "1" and status["CapEff"] == "0000000000000000"
        for tid in os.listdir(f"/proc/{proc.pid}/task"):  # vCPU, loop and worker threads
            thread = _status(proc.pid, int(tid))
            assert thread["Seccomp"] == "2", tid
            assert thread["Uid"].split() == [str(NOBODY)] * 4, tid
        shot = shared_dir / "screen.png"
        assert client.execute("screendump", filename=str(shot), format="png") == \
            {"return": {}}
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_uid == NOBODY
        refused = client.execute("screendump", filename=str(tmp_path / "screen.png"))
        assert "Permission denied" in refused["error"]["desc"], refused
        assert client.execute("query-status")["return"]["running"] is True
        client.execute("quit")
        assert proc.wait(timeout=STEP_TIMEOUT) == 0
        assert not sock.exists(), "the QMP socket file was left behind"
    finally:
        if client is not None:
            client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
