"""Running the guest kit and reading what it prints.

The guest kit (guest/, built into guest/build/guestkit.elf) prints a banner, free-form
lines, and lines ``RESULT <scenario> key=value ... [word ...]`` on COM1, then writes its
status to the debug-exit port (QEMU's isa-debug-exit: VMM exit code = status * 2 + 1).
These helpers are VMM-neutral except for the QEMU runner at the end, so pyhvm
integration tests can parse the same output.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyhvm.bench.common import run_watching

REPO_ROOT = Path(__file__).resolve().parents[1]
ROOT = REPO_ROOT
GUEST_DIR = REPO_ROOT / "guest"
GUESTKIT_ELF = GUEST_DIR / "build" / "guestkit.elf"

BANNER_PREFIX = "pyhvm guest kit "
DEBUG_EXIT_PORT = 0xF4

# Statuses the guest writes to the debug-exit port (guest/src/kit.h).
STATUS_OK = 0
STATUS_FAIL = 1
STATUS_USAGE = 2
STATUS_PANIC = 3
STATUS_NO_LONG_MODE = 4

_RESULT_RE = re.compile(r"RESULT (\S+)(.*)$")
_PANIC_RE = re.compile(r"PANIC ((?:\S+=\S+ ?)+)")


BOOT_TIMEOUT = 60  # seconds: every test that boots a guest stops it by then


def build_guestkit() -> Path:
    """Run ``make -C guest`` (incremental) and return the ELF's path."""
    proc = subprocess.run(["make", "-C", str(GUEST_DIR)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"make -C guest failed:\n{proc.stdout}\n{proc.stderr}")
    return GUESTKIT_ELF


def kvm_skip_reason() -> str | None:
    """Why KVM tests cannot run here, or None. With PYHVM_REQUIRE_KVM=1 (CI) they must."""
    reason = None
    if not os.path.exists("/dev/kvm"):
        reason = "/dev/kvm does not exist"
    elif not os.access("/dev/kvm", os.R_OK | os.W_OK):
        reason = "no permission to open /dev/kvm"
    if reason and os.environ.get("PYHVM_REQUIRE_KVM") == "1":
        raise AssertionError(f"PYHVM_REQUIRE_KVM=1 but {reason}")
    return reason


@dataclass(frozen=True)
class Result:
    """One RESULT line: its scenario slot, key=value fields, and bare words."""

    scenario: str
    fields: dict[str, str] = field(default_factory=dict)
    words: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> str:
        return self.fields[key]

    def __contains__(self, key: str) -> bool:
        return key in self.fields

    def num(self, key: str) -> int:
        """A field as an integer (decimal or 0x hex)."""
        return int(self.fields[key], 0)


def parse_result_line(line: str) -> Result | None:
    """Parse one line; None unless it holds a RESULT record.

    The record may follow other bytes on the same line (a scenario that wrote raw bytes
    to the console), so the match is not anchored at the start.
    """
    m = _RESULT_RE.search(line.rstrip("\r\n"))
    if not m:
        return None
    fields: dict[str, str] = {}
    words: list[str] = []
    for tok in m.group(2).split():
        key, sep, value = tok.partition("=")
        if sep and key:
            fields[key] = value
        else:
            words.append(tok)
    return Result(m.group(1), fields, tuple(words))


def parse_results(text: str) -> list[Result]:
    """Every RESULT record in a console transcript, in order."""
    return [r for r in map(parse_result_line, text.splitlines()) if r is not None]


def parse_panic(text: str) -> dict[str, str] | None:
    """The fields of the first ``PANIC vector=N rip=0x... err=0x...`` line, if any."""
    for line in text.splitlines():
        m = _PANIC_RE.search(line)
        if m:
            return dict(tok.split("=", 1) for tok in m.group(1).split())
    return None


def status_from_exit_code(code: int) -> int | None:
    """Guest status from a debug-exit exit code ((status << 1) | 1); None if not one."""
    if code > 0 and code & 1:
        return code >> 1
    return None


@dataclass(frozen=True)
class GuestRun:
    cmdline: str
    returncode: int
    console: str        # guest serial output (stdout), decoded leniently
    stderr: str

    @property
    def status(self) -> int | None:
        return status_from_exit_code(self.returncode)

    @property
    def results(self) -> list[Result]:
        return parse_results(self.console)

    def result(self, scenario: str) -> Result:
        """The single RESULT record for scenario (AssertionError if not exactly one)."""
        found = [r for r in self.results if r.scenario == scenario]
        assert len(found) == 1, f"expected one RESULT {scenario}, got {found}\n{self.describe()}"
        return found[0]

    def lines(self) -> list[str]:
        return self.console.splitlines()

    def describe(self) -> str:
        return (f"cmdline={self.cmdline!r} rc={self.returncode}\n--- console ---\n"
                f"{self.console}\n--- stderr ---\n{self.stderr}")


# --- pyhvm ---------------------------------------------------------------------------

def run_pyhvm(*args: str, timeout: float = BOOT_TIMEOUT,
              input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m pyhvm run ...` in a child process (so a guest can never hang pytest)."""
    return subprocess.run([sys.executable, "-m", "pyhvm", "run", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
                          input=input.decode() if input is not None else None,
                          stdin=None if input is not None else subprocess.DEVNULL)


def boot_pyhvm(elf: Path, cmdline: str, *extra: str, timeout: float = BOOT_TIMEOUT,
               input: bytes | None = None, input_after: str | None = None) -> GuestRun:
    """Boot the kit under pyhvm with cmdline; the guest's COM1 is pyhvm's stdout.

    With input_after, `input` goes to the guest's COM1 only once the console has shown
    that text (see run_with_console_input); otherwise it is there from the start.
    """
    args = ["--kernel", str(elf), "--append", cmdline, "--max-seconds", str(int(timeout) - 5),
            *extra]
    if input is not None and input_after is not None:
        proc = run_with_console_input([sys.executable, "-m", "pyhvm", "run", *args], input,
                                      input_after, timeout, cwd=REPO_ROOT)
        return GuestRun(cmdline, proc.returncode, proc.stdout.decode("utf-8", "replace"),
                        proc.stderr.decode("utf-8", "replace"))
    proc = run_pyhvm(*args, timeout=timeout, input=input)
    return GuestRun(cmdline, proc.returncode, proc.stdout, proc.stderr)


def run_with_console_input(command: Sequence[str], input: bytes, after: str | None,
                           timeout: float, cwd: Path | None = None
                           ) -> subprocess.CompletedProcess[bytes]:
    """Run a VMM whose stdout is the guest console; write `input` to its stdin once stdout
    has shown `after` (at once if None). See pyhvm.bench.common.run_watching."""
    return run_watching(command, timeout, marker=after, input=input, cwd=cwd)


# --- QEMU ---------------------------------------------------------------------------

QEMU = "qemu-system-x86_64"


def qemu_missing_reason() -> str | None:
    """Why QEMU cross-checks cannot run here, or None if they can."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found (apt-get install qemu-system-x86)"
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm does not exist"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not readable and writable by this user"
    return None


# QEMU's i8259 and i8254 in QEMU itself instead of KVM's (the local APIC moves too).
QEMU_KERNEL_IRQCHIP_OFF = ("-machine", "kernel-irqchip=off")


def qemu_command(elf: Path, cmdline: str, memory_mib: int = 128,
                 extra_args: Sequence[str] = ()) -> list[str]:
    return [
        QEMU, "-enable-kvm", "-cpu", "qemu64", "-m", str(memory_mib),
        "-kernel", str(elf), "-append", cmdline,
        "-device", f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=4",
        "-serial", "stdio", "-display", "none", "-no-reboot", *extra_args,
    ]


def run_qemu(elf: Path, cmdline: str, timeout: float = 60, extra_args: Sequence[str] = (),
             input: bytes | None = None, input_after: str | None = None) -> GuestRun:
    """Boot the kit under QEMU with cmdline; the guest's COM1 is QEMU's stdout.

    extra_args go at the end of QEMU's command line (e.g. QEMU_KERNEL_IRQCHIP_OFF).
    input goes to COM1 through stdin, once the console shows input_after if given.
    """
    command = qemu_command(elf, cmdline, extra_args=extra_args)
    if input is None:
        proc = subprocess.run(command, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    else:
        proc = run_with_console_input(command, input, input_after, timeout)
    return GuestRun(cmdline, proc.returncode, proc.stdout.decode("utf-8", "replace"),
                    proc.stderr.decode("utf-8", "replace"))


# --- screenshots over QMP (QEMU and pyhvm alike) --------------------------------------

SCREENDUMP_STEP_TIMEOUT = 20.0  # seconds for connecting, the screendump, and quit


class ScreendumpUnsupported(Exception):
    """The VMM answered `screendump` with CommandNotFound."""


def run_with_screendump(command: Sequence[str], cmdline: str, qmp_socket: Path, marker: str,
                        image: Path, timeout: float = BOOT_TIMEOUT,
                        image_format: str = "ppm") -> GuestRun:
    """Run a VMM whose stdout is the guest console and that serves QMP on qmp_socket; once
    the console shows `marker` (a scenario's "READY <name>" line, after which the guest
    halts), take a `screendump` into `image` and `quit`. The screenshot's failure, if any,
    is raised after the VMM has ended (ScreendumpUnsupported if the VMM has no such
    command); the run's console is in the GuestRun either way."""
    from qemu.qmp import ExecuteError, QMPClient  # a test dependency (.[test]), not pyhvm's

    failure: list[BaseException] = []

    async def session() -> None:
        client = QMPClient("guestkit-screendump")
        await asyncio.wait_for(client.connect(str(qmp_socket)), SCREENDUMP_STEP_TIMEOUT)
        try:
            await asyncio.wait_for(client.execute("screendump", {
                "filename": str(image), "format": image_format}), SCREENDUMP_STEP_TIMEOUT)
        finally:
            try:
                await asyncio.wait_for(client.execute("quit"), SCREENDUMP_STEP_TIMEOUT)
                await asyncio.wait_for(client.disconnect(), SCREENDUMP_STEP_TIMEOUT)
            except EOFError:  # the VMM hangs up first after quit, as documented
                pass

    def on_marker() -> None:
        try:
            asyncio.run(session())
        except BaseException as exc:  # reported by the caller's thread, below
            failure.append(exc)

    proc = run_watching(command, timeout, marker=marker, on_marker=on_marker)
    run = GuestRun(cmdline, proc.returncode, proc.stdout.decode("utf-8", "replace"),
                   proc.stderr.decode("utf-8", "replace"))
    if failure and isinstance(failure[0], ExecuteError) \
            and failure[0].error_class == "CommandNotFound":
        raise ScreendumpUnsupported(str(failure[0]))
    if failure:
        raise AssertionError(f"screendump failed: {failure[0]!r}\n{run.describe()}")
    return run
