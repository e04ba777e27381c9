"""The guest kit with device models in a device process (`--device-process`): the same
scenarios and results as with the models in the VMM, each group out of process on its own
and all together, the sandbox seen from the host, and a device process killed (or
stopped) while the guest drives it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import guestkit_disk as gd
from tests.guestkit import REPO_ROOT, STATUS_OK, GuestRun, boot_pyhvm

pytestmark = pytest.mark.kvm

TIMEOUT = 90
WAIT_S = 60.0  # bounds for waiting on a guest; never asserted on


def boot(elf: Path, cmdline: str, *extra: str, timeout: float = TIMEOUT) -> GuestRun:
    return boot_pyhvm(elf, cmdline, *extra, timeout=timeout)


@pytest.mark.parametrize("irqchip", ["kernel", "user"])
def test_hello_with_the_uart_in_a_device_process(guestkit: Path, irqchip: str) -> None:
    run = boot(guestkit, "scenario=hello", "--device-process", "uart", "--irqchip", irqchip)
    assert run.status == STATUS_OK, run.describe()
    assert run.result("hello")["ok"] == "1"
    assert run.console.startswith("pyhvm guest kit ")


@pytest.mark.parametrize("irqchip,groups", [("kernel", "uart"), ("user", "uart"),
                                            ("user", "uart,pic")],
                         ids=["irqfd", "ring-events", "pic-alongside"])
def test_uart_interrupts_from_a_device_process(guestkit: Path, irqchip: str,
                                              groups: str) -> None:
    """IRQ 4 reaches the guest through KVM's irqfd, through ring events to the VMM's PIC,
    or inside the device process when the PIC is there too."""
    run = boot(guestkit, "scenario=uart-irq", "--device-process", groups, "--irqchip",
               irqchip)
    assert run.status == STATUS_OK, run.describe()
    assert run.result("uart-irq").num("thre_irqs") >= 1


def test_uart_receive_interrupts_from_a_device_process(guestkit: Path) -> None:
    run = boot_pyhvm(guestkit, "scenario=uart-irq n=3", "--device-process", "uart,pic",
                     "--irqchip", "user", input=b"abc", input_after="waiting for",
                     timeout=TIMEOUT)
    assert run.status == STATUS_OK, run.describe()
    r = run.result("uart-irq")
    assert r.num("thre_irqs") >= 1 and r.num("rx_irqs") >= 1
    assert r.num("got") == 3 and r["hex"] == "616263"


def test_timer_interrupts_with_the_pic_and_pit_in_a_device_process(guestkit: Path,
                                                                   tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    run = boot(guestkit, "scenario=compute ms=300 hz=1000", "--irqchip", "user",
               "--device-process", "pic", "--stats", str(stats))
    assert run.status == STATUS_OK, run.describe()
    r = run.result("compute")
    assert r.num("hz") == 1000 and r.num("ticks") > 0 and r.num("work") > 0
    profile = json.loads(stats.read_text())
    assert profile["interrupts_injected"] >= r.num("ticks")
    assert profile["pit_ticks"]["delivered"] >= r.num("ticks")
    assert profile["device_process"]["sandbox"]["seccomp"] == "kill"
    assert profile["device_process"]["channel"]["failed"] is False


@pytest.mark.parametrize("irqchip,groups,args", [
    ("kernel", "ide", "mode=dma mb=2"),
    ("user", "ide", "mode=dma mb=2 seed=3"),
    ("user", "uart,pic,ide", "mode=both mb=1 seed=5"),
], ids=["irqfd", "ring-events", "everything-out"])
def test_disk_verify_with_the_ide_model_in_a_device_process(
        guestkit: Path, tmp_path: Path, irqchip: str, groups: str, args: str) -> None:
    image = gd.make_image(tmp_path / "disk.img")
    run = boot(guestkit, f"scenario=disk-verify {args}", "--drive", gd.drive_arg(image),
               "--irqchip", irqchip, "--device-process", groups, timeout=120)
    assert run.status == STATUS_OK, run.describe()
    r = run.result("disk-verify")
    assert r["ok"] == "1" and r.num("errors") == 0 and r["checksum"] == r["expected"]
    assert r.num("irqs") > 0 and r.num("no_irq") == 0 and r.num("bm_noint") == 0
    assert "guest RAM moved from --mem-backing anon to memfd" in run.stderr


def test_pic_in_a_device_process_needs_the_user_irqchip(guestkit: Path) -> None:
    run = boot(guestkit, "scenario=hello", "--device-process", "pic", "--irqchip", "kernel")
    assert run.returncode == 4
    assert "add --irqchip user" in run.stderr and "Traceback" not in run.stderr


# --- the process seen from the host, and killing it ----------------------------------------
def device_process_of(vmm: int) -> int:
    """The pid of `vmm`'s device process, once it runs."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmdline = f.read()
            except (OSError, IndexError, ValueError):
                continue
            if ppid == vmm and b"pyhvm.devproc" in cmdline:
                return int(name)
        time.sleep(0.05)
    raise AssertionError(f"no device process under pid {vmm}")


def wait_for_console(path: Path, text: str, vmm: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and vmm.poll() is None:
        if path.exists() and text.encode() in path.read_bytes():
            return
        time.sleep(0.05)
    raise AssertionError(f"the guest never printed {text!r}")


def start_vmm(elf: Path, cmdline: str, console: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pyhvm", "run", "--kernel", str(elf), "--append", cmdline,
         "--serial", f"file:{console}", "--max-seconds", str(TIMEOUT), *extra],
        cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)


def finish(vmm: subprocess.Popen[bytes]) -> tuple[int, str]:
    try:
        _, err = vmm.communicate(timeout=TIMEOUT + 30)
    except subprocess.TimeoutExpired:
        vmm.kill()
        vmm.communicate()
        raise
    return vmm.returncode, err.decode("utf-8", "replace")


def gone(pid: int) -> bool:
    """Not running any more (gone, or a zombie its new parent has yet to reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


SERIAL_LOOP = "scenario=exits n=100000 port=0x3f8"   # seconds of UART writes out of process


def test_the_device_process_holds_no_kvm_fd_and_runs_confined(guestkit: Path,
                                                              tmp_path: Path) -> None:
    console = tmp_path / "com1.log"
    vmm = start_vmm(guestkit, SERIAL_LOOP, console, "--device-process", "uart")
    try:
        pid = device_process_of(vmm.pid)
        wait_for_console(console, "pyhvm guest kit", vmm)
        targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        assert targets and not any("kvm" in t for t in targets), targets
        vmm_fds = [os.readlink(f"/proc/{vmm.pid}/fd/{fd}")
                   for fd in os.listdir(f"/proc/{vmm.pid}/fd")]
        assert "/dev/kvm" in vmm_fds  # the VMM does hold one: the check above means something
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2"
        if os.geteuid() == 0:
            assert status["Uid"].split()[0] == "65534"
    finally:
        vmm.send_signal(signal.SIGINT)
        finish(vmm)
    assert gone(pid)


@pytest.mark.parametrize("policy,status", [("fail-device", 1), ("stop", 6)])
def test_killing_the_device_process_during_serial_output(guestkit: Path, tmp_path: Path,
                                                         policy: str, status: int) -> None:
    """fail-device: the UART vanishes (writes dropped), the guest runs to its end and exits
    through the debug-exit port in the VMM; stop: the VM stops with status 6."""
    console = tmp_path / "com1.log"
    vmm = start_vmm(guestkit, SERIAL_LOOP, console, "--device-process", "uart",
                    "--device-process-failure", policy)
    pid = device_process_of(vmm.pid)
    wait_for_console(console, "pyhvm guest kit", vmm)
    time.sleep(0.3)  # into the write loop
    os.kill(pid, signal.SIGKILL)
    returncode, err = finish(vmm)
    assert returncode == status, err
    lines = [line for line in err.splitlines() if "device process (uart)" in line]
    assert len(lines) == 1, err
    assert "device process (uart) died" in lines[0]  # the signal, where the VMM may wait
    if policy == "stop":
        assert "stopping the VM (--device-process-failure=stop, exit status 6)" in lines[0]
    else:
        assert "fail as absent hardware" in lines[0]
    assert b"RESULT exits" not in console.read_bytes()  # the UART was gone before it
    assert "Traceback" not in err
    assert gone(pid)


def test_a_hung_device_process_misses_the_deadline_and_is_killed(guestkit: Path,
                                                                  tmp_path: Path) -> None:
    console = tmp_path / "com1.log"
    vmm = start_vmm(guestkit, SERIAL_LOOP, console, "--device-process", "uart,deadline=0.5")
    pid = device_process_of(vmm.pid)
    wait_for_console(console, "pyhvm guest kit", vmm)
    os.kill(pid, signal.SIGSTOP)
    returncode, err = finish(vmm)
    assert returncode == 1, err  # the guest ran to its end without its UART
    assert "within 0.5 s" in err and "fail as absent hardware" in err
    assert gone(pid)


def test_killing_the_device_process_during_disk_io_stops_the_vm(guestkit: Path,
                                                                tmp_path: Path) -> None:
    image = gd.make_image(tmp_path / "disk.img")
    console = tmp_path / "com1.log"
    vmm = start_vmm(guestkit, "scenario=disk-verify mode=dma mb=32", console,
                    "--drive", gd.drive_arg(image), "--device-process", "ide",
                    "--device-process-failure", "stop")
    pid = device_process_of(vmm.pid)
    wait_for_console(console, "disk: model=", vmm)  # identified: the transfers begin
    os.kill(pid, signal.SIGKILL)
    returncode, err = finish(vmm)
    assert returncode == 6, err
    assert "device process (ide) died" in err and "Traceback" not in err
    assert b"RESULT disk-verify" not in console.read_bytes()
    assert gone(pid)


def test_bench_placement_smoke_run(guestkit: Path) -> None:
    """`pyhvm bench placement --quick` (exit cost only, to stay short): the JSON envelope
    with every configuration measured. Figures are not checked: only that they exist."""
    proc = subprocess.run([sys.executable, "-m", "pyhvm", "bench", "placement", "--quick",
                           "--only", "exit", "--spin", "0", "--json", "--kernel", str(guestkit)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["bench"] == "placement"
    assert {r["config"]["placement"] for r in result["runs"]} == \
        {"vmm", "process-posted", "process-sync"}
    assert all(r["metrics"]["us_per_exit"] > 0 for r in result["runs"])
    assert result["goal"]["round_trip_over_exit"] is not None
