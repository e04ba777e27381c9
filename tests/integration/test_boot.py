"""Boot the guest kit under KVM and check what it prints and how it exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.guestkit import STATUS_OK, STATUS_PANIC, STATUS_USAGE, boot_pyhvm, run_pyhvm

pytestmark = pytest.mark.kvm


def test_hello_prints_banner_and_cmdline_and_exits_with_debug_exit_status(
        guestkit: Path) -> None:
    run = boot_pyhvm(guestkit, "scenario=hello x=1 y=2")
    assert run.returncode == 1, run.describe()  # guest wrote 0: (0 << 1) | 1
    assert run.lines()[0].startswith("pyhvm guest kit")
    assert "cmdline: scenario=hello x=1 y=2" in run.lines()
    assert run.result("hello").fields == {"ok": "1", "args": "3"}


def test_unknown_scenario_reports_error_and_exits_with_usage_status(guestkit: Path) -> None:
    run = boot_pyhvm(guestkit, "scenario=nosuch")
    assert run.status == STATUS_USAGE, run.describe()
    assert run.result("error").fields == {"name": "nosuch"}
    assert run.result("error").words == ("unknown-scenario",)


def test_string_io_rep_outsb_reaches_console_and_rep_insb_reads_floating_bus(
        guestkit: Path) -> None:
    run = boot_pyhvm(guestkit, "scenario=strio")
    assert run.status == STATUS_OK, run.describe()
    assert "strio: rep outsb of 64 bytes to COM1 0123456789abcdefghijklmnop" in run.lines()
    assert run.result("strio").fields == {"ok": "1", "insb": "ff" * 16}


def test_triple_fault_stops_with_register_dump_and_status_2(guestkit: Path) -> None:
    run = boot_pyhvm(guestkit, "scenario=triple")
    assert run.returncode == 2, run.describe()
    assert "triple fault" in run.stderr
    assert "rip=" in run.stderr and "cr0=" in run.stderr and "code at rip:" in run.stderr
    assert "Traceback" not in run.stderr


def test_exits_scenario_counts_port_writes(guestkit: Path) -> None:
    run = boot_pyhvm(guestkit, "scenario=exits n=500 port=0x404")
    assert run.status == STATUS_OK, run.describe()
    result = run.result("exits")
    assert result["kind"] == "pio" and result.num("n") == 500
    assert result.num("cycles_per_exit") > 0


def test_compute_runs_at_cpl3_and_reports_work(guestkit: Path) -> None:
    run = boot_pyhvm(guestkit, "scenario=compute ms=300")
    assert run.status == STATUS_OK, run.describe()
    result = run.result("compute")
    assert result.num("work") > 0 and result.num("cycles") > 0 and result["cpl"] == "3"
    # pyhvm tells the guest its TSC frequency through CPUID leaf 0x40000010.
    assert result["tsc_source"] == "cpuid-40000010"


def test_max_seconds_stops_a_runaway_guest_with_status_124(guestkit: Path) -> None:
    result = run_pyhvm("--kernel", str(guestkit), "--append", "scenario=compute seconds=600",
                       "--max-seconds", "1")
    assert result.returncode == 124
    assert "Traceback" not in result.stderr


def test_sigint_stops_the_vm_cleanly_with_status_130(guestkit: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyhvm", "run", "--kernel", str(guestkit), "--append",
         "scenario=compute seconds=600", "--max-seconds", "60"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"pyhvm guest kit")  # the guest is running
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert b"Traceback" not in stderr


@pytest.mark.parametrize("args,message", [
    (["--kernel", "/nonexistent/kernel.elf"], "does not exist"),
    (["--kernel", "/etc/hostname"], "Multiboot header"),
    (["--kernel", "GUESTKIT", "-m", "lots"], "memory size"),
    (["--kernel", "GUESTKIT", "-m", "100T"], "more than this host's memory"),
    (["--kernel", "GUESTKIT", "--serial", "tcp:1"], "unknown --serial"),
])
def test_host_side_misuse_gives_one_line_error(guestkit: Path, args: list[str],
                                               message: str) -> None:
    args = [str(guestkit) if a == "GUESTKIT" else a for a in args]
    result = run_pyhvm(*args, "--max-seconds", "10")
    assert result.returncode == 4  # even: never mistaken for a guest's debug-exit status
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("irqchip", ["kernel", "user"])
@pytest.mark.parametrize("cpus", ["1", "2"])
def test_compute_runs_in_both_irqchip_placements_and_with_a_second_vcpu(
        guestkit: Path, irqchip: str, cpus: str) -> None:
    """The second vCPU stays halted (kernel: waits for INIT/SIPI; user: never entered)."""
    run = boot_pyhvm(guestkit, "scenario=compute ms=200", "--irqchip", irqchip,
                     "--cpus", cpus)
    assert run.status == STATUS_OK, run.describe()
    assert run.result("compute").num("work") > 0


@pytest.mark.parametrize("irqchip", ["kernel", "user"])
def test_fastest_pit_rate_does_not_starve_ctrl_c(guestkit: Path, irqchip: str) -> None:
    """A guest programming the PIT at its fastest rate (divisor 2) still lets SIGINT stop
    the VM promptly: timers are clamped and the event loop serves signals between passes."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyhvm", "run", "--kernel", str(guestkit), "--append",
         "scenario=compute seconds=600 hz=596591", "--irqchip", irqchip, "--max-seconds", "60"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"pyhvm guest kit")
        time.sleep(1.0)  # let the timer storm start
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert b"Traceback" not in stderr


def test_console_input_reaches_the_guest_through_the_uart(guestkit: Path) -> None:
    """Bytes written to pyhvm's stdin arrive in the 16550's receive FIFO, in order, none lost
    (sent once the guest has programmed the UART: bytes that arrive earlier are flushed by
    the guest's own FIFO reset, as on hardware)."""
    message = b"0123456789abcdefghijklmnopqrstuvwxyzABCD"  # more than one 16-byte FIFO
    run = boot_pyhvm(guestkit, "scenario=echo n=40", input=message,
                     input_after="echo: waiting")
    assert run.status == STATUS_OK, run.describe()
    result = run.result("echo")
    assert result.num("got") == 40
    assert bytes.fromhex(result["hex"]) == message


@pytest.mark.parametrize("irqchip", ["kernel", "user"])
def test_i8042_reset_reboots_or_stops_with_no_reboot(guestkit: Path, irqchip: str) -> None:
    stopped = boot_pyhvm(guestkit, "scenario=reset", "--no-reboot", "--irqchip", irqchip)
    assert stopped.returncode == 0, stopped.describe()
    assert stopped.lines().count("RESULT reset writing=0xfe") == 1
    rebooted = run_pyhvm("--kernel", str(guestkit), "--append", "scenario=reset",
                         "--irqchip", irqchip, "--max-seconds", "2")
    assert rebooted.returncode == 124  # it kept rebooting until --max-seconds
    assert rebooted.stdout.count("pyhvm guest kit") >= 2  # booted again after the reset
    assert "Traceback" not in rebooted.stderr


def test_emulation_failure_stops_with_a_diagnostic(guestkit: Path) -> None:
    """int3 at CPL 0: this host's KVM cannot emulate it (host.md) and reports an internal
    error, which pyhvm turns into a register dump with the bytes at RIP; a host with
    hardware VT delivers #BP to the guest, which panics."""
    run = boot_pyhvm(guestkit, "scenario=fault kind=bp")
    assert "Traceback" not in run.stderr
    if os.path.exists("/sys/module/kvm_pvm"):
        assert run.returncode == 2, run.describe()
        assert "instruction emulation failed" in run.stderr
        assert "code at rip: cc" in run.stderr  # the int3 itself
    else:
        assert run.status == STATUS_PANIC, run.describe()


@pytest.mark.parametrize("irqchip", ["kernel", "user"])
def test_uart_interrupts_reach_the_guest_on_irq4(guestkit: Path, irqchip: str) -> None:
    """THR-empty and received-data interrupts of the 16550 arrive through the PIC (IRQ 4,
    gated by MCR.OUT2 as on a PC), in both placements; received bytes are read in the
    guest's interrupt handler."""
    message = b"interrupt-driven rx!"
    run = boot_pyhvm(guestkit, "scenario=uart-irq n=20", "--irqchip", irqchip,
                     input=message, input_after="uart-irq: waiting")
    assert run.status == STATUS_OK, run.describe()
    result = run.result("uart-irq")
    assert result.num("thre_irqs") >= 1 and result.num("rx_irqs") >= 1
    assert bytes.fromhex(result["hex"]) == message
