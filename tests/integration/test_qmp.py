"""QMP against a running guest: QEMU's own client library drives pyhvm's control socket.

Each test boots the guest kit in a subprocess with `--qmp unix:<tmp>/qmp.sock,server,...`
and `--max-seconds`, talks to it with `qemu.qmp` (asyncio) or a raw socket, and leaves no
process or socket file behind, whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.guestkit import BANNER_PREFIX, REPO_ROOT

pytestmark = pytest.mark.kvm

STEP_TIMEOUT = 10.0   # seconds for any one QMP exchange or wait
SOCKET_WAIT = 20.0    # seconds for pyhvm to start and create its socket
EXIT_TIMEOUT = 15.0   # seconds for the process to end after quit
# A guest that keeps the userspace PIC busy: ~1 kHz timer interrupts, each acknowledged
# with port writes, so its exit counters grow for as long as (and only while) it runs.
BUSY_GUEST = ("scenario=compute seconds=30 hz=1000", "--irqchip", "user")


def qemu_qmp() -> Any:
    return pytest.importorskip(
        "qemu.qmp", reason="qemu.qmp is not installed (pip install qemu.qmp, or .[test])")


class Vm:
    """A `pyhvm run --qmp` subprocess; its console and log go to files for diagnosis."""

    def __init__(self, guestkit: Path, tmp: Path, cmdline: str, *extra: str,
                 qmp_options: str = "server,wait=off") -> None:
        self.socket = tmp / "qmp.sock"
        self.stdout_path, self.stderr_path = tmp / "console.txt", tmp / "stderr.txt"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pyhvm", "run", "--kernel", str(guestkit),
                 "--append", cmdline, *extra, "--qmp", f"unix:{self.socket},{qmp_options}",
                 "--max-seconds", "60"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=REPO_ROOT)

    def console(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def describe(self) -> str:
        return (f"status={self.proc.poll()}\n--- console ---\n{self.console()}"
                f"\n--- stderr ---\n{self.stderr_path.read_text(errors='replace')}")

    def wait_for_socket(self) -> None:
        deadline = time.monotonic() + SOCKET_WAIT
        while not self.socket.exists():
            assert self.proc.poll() is None, f"pyhvm exited early\n{self.describe()}"
            assert time.monotonic() < deadline, f"no QMP socket\n{self.describe()}"
            time.sleep(0.05)

    def wait_for_console(self, text: str, count: int = 1) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT
        while self.console().count(text) < count:
            assert time.monotonic() < deadline, f"{text!r} x{count} not seen\n{self.describe()}"
            time.sleep(0.05)

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"pyhvm did not exit\n{self.describe()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=EXIT_TIMEOUT)


@pytest.fixture
def vm_factory(guestkit: Path, tmp_path: Path) -> Iterator[Any]:
    vms: list[Vm] = []

    def start(cmdline: str, *extra: str, **kwargs: str) -> Vm:
        vm = Vm(guestkit, tmp_path, cmdline, *extra, **kwargs)
        vms.append(vm)
        return vm

    yield start
    for vm in vms:
        vm.kill()
        vm.socket.unlink(missing_ok=True)


class RawClient:
    """A line-reading socket client, for what a well-behaved library never sends."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(STEP_TIMEOUT)
        self.sock.connect(str(path))
        self.buf = b""

    def line(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        self.sock.close()


async def step(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, STEP_TIMEOUT)


async def hang_up(client: Any) -> None:
    """Disconnect; after `quit` the server hangs up first, which qemu.qmp reports (as
    documented) as EOFError from disconnect(), exactly as with QEMU."""
    try:
        await step(client.disconnect())
    except EOFError:
        pass


async def next_event(client: Any, name: str) -> dict[str, Any]:
    while True:
        event = await step(client.events.get())
        if event["event"] == name:
            return event


def test_qemu_qmp_client_pauses_resumes_inspects_and_quits_a_running_guest(
        vm_factory: Any) -> None:
    qmp = qemu_qmp()
    vm = vm_factory(*BUSY_GUEST)
    vm.wait_for_socket()
    vm.wait_for_console(BANNER_PREFIX)

    async def session() -> None:
        client = qmp.QMPClient("pyhvm-test")
        await step(client.connect(str(vm.socket)))
        try:
            assert client.greeting.QMP.version["package"].startswith("pyhvm")
            assert await step(client.execute("query-status")) == {
                "status": "running", "running": True, "singlestep": False}

            first = await step(client.execute("x-pyhvm-exit-counters"))
            await asyncio.sleep(0.5)
            running = await step(client.execute("x-pyhvm-exit-counters"))
            assert running["exits"] > first["exits"], "the busy guest made no exits"

            assert await step(client.execute("stop")) == {}
            await next_event(client, "STOP")
            status = await step(client.execute("query-status"))
            assert status["status"] == "paused" and status["running"] is False
            paused = await step(client.execute("x-pyhvm-exit-counters"))
            assert {v["state"] for v in paused["vcpus"]} <= {"paused", "halted"}
            await asyncio.sleep(0.5)
            still = await step(client.execute("x-pyhvm-exit-counters"))
            assert still["exits"] == paused["exits"], "the guest ran while paused"
            assert still["by_reason"] == paused["by_reason"]

            assert await step(client.execute("cont")) == {}
            await next_event(client, "RESUME")
            await asyncio.sleep(0.5)
            resumed = await step(client.execute("x-pyhvm-exit-counters"))
            assert resumed["exits"] > still["exits"], "the guest did not resume"
            assert (await step(client.execute("query-status")))["status"] == "running"

            stats = await step(client.execute("x-pyhvm-stats"))
            assert stats["irqchip"] == "user"
            for key in ("exits", "pio_exits", "mmio_exits", "other_exits", "timer_callbacks"):
                assert key in stats
            assert any("pic-master" in port for port in stats["pio_exits"])

            # A client that sends garbage gets an error; the VM and this client go on.
            raw = RawClient(vm.socket)
            try:
                assert "QMP" in raw.line()
                raw.sock.sendall(b"{ this is not json }\n")
                assert raw.line()["error"]["class"] == "GenericError"
                raw.sock.sendall(b'{"execute": "query-status", "id": 5}')
                reply = raw.line()
                assert reply["error"]["class"] == "CommandNotFound" and reply["id"] == 5
            finally:
                raw.close()
            assert (await step(client.execute("query-status")))["status"] == "running"
            assert vm.proc.poll() is None

            top = subprocess.run(
                [sys.executable, "-m", "pyhvm", "top", "--once", "-d", "0.5",
                 f"unix:{vm.socket}"],
                capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)
            assert top.returncode == 0, top.stderr
            assert "exits" in top.stdout and "pic-master" in top.stdout
            assert "interrupts" in top.stdout

            assert await step(client.execute("quit")) == {}
            shutdown = await next_event(client, "SHUTDOWN")
            assert shutdown["data"] == {"guest": False, "reason": "host-qmp-quit"}
        finally:
            await hang_up(client)

    asyncio.run(session())
    assert vm.wait() == 0, vm.describe()
    assert not vm.socket.exists(), "the QMP socket file was left behind"
    assert "Traceback" not in vm.describe()


def test_pause_takes_a_vcpu_out_of_kvm_run_under_the_kernel_irqchip(vm_factory: Any) -> None:
    """With KVM's irqchip the guest never leaves KVM_RUN on its own: only the kick can
    park it, and x-pyhvm-exit-counters shows where the vCPU is."""
    vm = vm_factory("scenario=compute seconds=30")
    vm.wait_for_socket()
    client = RawClient(vm.socket)
    try:
        assert "QMP" in client.line()
        client.sock.sendall(b'{"execute": "qmp_capabilities"}')
        assert client.line() == {"return": {}}

        def execute(command: str) -> Any:
            client.sock.sendall(json.dumps({"execute": command, "id": command}).encode())
            while True:
                message = client.line()
                if message.get("id") == command:
                    return message["return"]

        assert execute("stop") == {}
        counters = execute("x-pyhvm-exit-counters")
        assert counters["status"] == "paused" and counters["irqchip"] == "kernel"
        assert [v["state"] for v in counters["vcpus"]] == ["paused"]
        assert execute("cont") == {}
        assert execute("query-status")["status"] == "running"
        deadline = time.monotonic() + STEP_TIMEOUT  # cont wakes the vCPU, it does not wait
        while [v["state"] for v in execute("x-pyhvm-exit-counters")["vcpus"]] != ["running"]:
            assert time.monotonic() < deadline, "the vCPU stayed parked after cont"
            time.sleep(0.01)
        assert execute("quit") == {}
    finally:
        client.close()
    assert vm.wait() == 0, vm.describe()
    assert not vm.socket.exists()


def test_system_reset_reboots_the_guest_and_keeps_counting(vm_factory: Any) -> None:
    # KVM's irqchip: under --irqchip user a reboot (i8042 or QMP alike) does not reset the
    # PIC and PIT yet, so a guest that left its timer running gets a stale IRQ 0 at entry.
    qmp = qemu_qmp()
    vm = vm_factory("scenario=compute seconds=30 hz=1000")
    vm.wait_for_socket()
    vm.wait_for_console(BANNER_PREFIX)

    async def session() -> None:
        client = qmp.QMPClient("pyhvm-test")
        await step(client.connect(str(vm.socket)))
        try:
            before = await step(client.execute("x-pyhvm-exit-counters"))
            assert await step(client.execute("system_reset")) == {}
            reset = await next_event(client, "RESET")
            assert reset["data"] == {"guest": False, "reason": "host-qmp-system-reset"}
            await asyncio.get_running_loop().run_in_executor(
                None, vm.wait_for_console, BANNER_PREFIX, 2)  # booted again
            after = await step(client.execute("x-pyhvm-exit-counters"))
            assert after["exits"] >= before["exits"], "counters went back after a reboot"
            assert (await step(client.execute("query-status")))["status"] == "running"
            await step(client.execute("quit"))
        finally:
            await hang_up(client)

    asyncio.run(session())
    assert vm.wait() == 0, vm.describe()


def test_wait_on_holds_the_guest_until_a_client_connects(vm_factory: Any) -> None:
    vm = vm_factory("scenario=hello", qmp_options="server")  # QEMU's default: wait=on
    vm.wait_for_socket()
    time.sleep(1.0)
    assert vm.proc.poll() is None and BANNER_PREFIX not in vm.console(), vm.describe()
    client = RawClient(vm.socket)
    try:
        assert "QMP" in client.line()
        assert vm.wait() == 1, vm.describe()  # hello ran, and wrote 0 to debug-exit
    finally:
        client.close()
    assert BANNER_PREFIX in vm.console()
    assert not vm.socket.exists()
