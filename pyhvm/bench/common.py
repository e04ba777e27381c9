"""What every benchmark shares: finding the guest kit, running it under pyhvm, reading its
RESULT lines, medians and ratios, host facts, the JSON envelope and the plain-text table.

Benchmarks compare configurations measured in one process, interleaved, and report medians
(architecture.md, "Benchmarks"); nothing here holds a measured figure.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Generic, TypeVar

PACKAGE_PARENT = Path(__file__).resolve().parent.parent.parent
GUESTKIT_RELATIVE = Path("guest") / "build" / "guestkit.elf"
QEMU = "qemu-system-x86_64"
KVM_MODULES = ("kvm_pvm", "kvm_intel", "kvm_amd")
GUEST_OK_STATUS = 1  # debug-exit write of 0 (STATUS_OK): (0 << 1) | 1, on pyhvm and QEMU
STDERR_TAIL = 300

T = TypeVar("T")
C = TypeVar("C")


class BenchError(Exception):
    """The benchmark cannot run or a run failed; the message is one line for the user."""


# --- what the host must offer -----------------------------------------------------------
def guestkit_path(explicit: str | None = None) -> Path:
    """The guest kit ELF: the one named, else the source tree's build, else ./guest/build."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise BenchError(f"guest kit {explicit!r} does not exist")
        return path
    candidates = [PACKAGE_PARENT / GUESTKIT_RELATIVE, Path.cwd() / GUESTKIT_RELATIVE]
    for path in candidates:
        if path.is_file():
            return path
    guest_dir = candidates[0].parent.parent
    hint = guest_dir if guest_dir.is_dir() else Path("guest")
    raise BenchError(f"the guest kit is not built ({candidates[0]} is missing): "
                     f"run `make -C {hint}`")


def require_kvm() -> None:
    if not os.path.exists("/dev/kvm"):
        raise BenchError("/dev/kvm does not exist: this host offers no KVM")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise BenchError("no permission to open /dev/kvm (run as root or join group kvm)")


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BenchError(f"{name} is not installed (apt-get install {package})")
    return path


# --- the guest kit's output ---------------------------------------------------------------
@dataclass(frozen=True)
class ResultLine:
    """One `RESULT <scenario> key=value ...` line."""

    scenario: str
    words: tuple[str, ...]
    fields: dict[str, str] = field(hash=False)

    def number(self, key: str) -> int:
        """An integer field (decimal or 0x-hex); BenchError if missing or malformed."""
        value = self.fields.get(key)
        if value is None:
            raise BenchError(f"RESULT {self.scenario} has no {key}=")
        try:
            return int(value, 0)
        except ValueError:
            raise BenchError(f"RESULT {self.scenario} {key}={value!r} is not a number") \
                from None


def parse_results(text: str) -> list[ResultLine]:
    """Every RESULT line in guest output, in order. Split on blanks, not shell rules: a
    stray quote in a value must not hide the rest of the line."""
    results = []
    for line in text.splitlines():
        tokens = line.strip().split()
        if len(tokens) < 2 or tokens[0] != "RESULT":
            continue
        words = tuple(t for t in tokens[2:] if "=" not in t)
        fields = dict(t.split("=", 1) for t in tokens[2:] if "=" in t)
        results.append(ResultLine(tokens[1], words, fields))
    return results


def find_result(text: str, scenario: str) -> ResultLine:
    """The last RESULT line of `scenario`; BenchError naming the guest's error if absent."""
    results = parse_results(text)
    for result in reversed(results):
        if result.scenario == scenario:
            return result
    for result in results:
        if result.scenario == "error":
            detail = " ".join([*result.words, *(f"{k}={v}" for k, v in result.fields.items())])
            raise BenchError(f"the guest reported an error: {detail}")
    raise BenchError(f"the guest printed no RESULT {scenario} line")


# --- statistics ---------------------------------------------------------------------------
def median(values: Iterable[float]) -> float:
    data = list(values)
    if not data:
        raise ValueError("median of no values")
    return float(statistics.median(data))


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None where the denominator is not positive."""
    if denominator <= 0:
        return None
    return numerator / denominator


def metric(name: str, values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """`{name: median, name_reps: [...]}`: the summary and what it summarizes."""
    return {name: round(median(values), digits),
            f"{name}_reps": [round(v, digits) for v in values]}


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def ratio_of(numerator: float | None, denominator: float | None) -> float | None:
    """`ratio` rounded to 3 digits, None where either side is missing."""
    if numerator is None or denominator is None:
        return None
    return rounded(ratio(numerator, denominator))


def loadavg() -> float | None:
    """The 1-minute load average: how busy the host was, to judge the spread by."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


@dataclass
class Outcome(Generic[T]):
    """A configuration's repetitions, or why it stopped: a failure ends its runs only."""

    samples: list[T] = field(default_factory=list)
    error: str | None = None


def measure_into(outcome: Outcome[T], rep: int, take: Callable[[], T]) -> None:
    """One repetition of a configuration: its sample joins `outcome`, or a BenchError or
    OSError becomes the error that ends that configuration's runs (the others go on)."""
    if outcome.error is not None:
        return
    try:
        outcome.samples.append(take())
    except (BenchError, OSError) as err:
        outcome.error = f"rep {rep + 1}: {err}"


def succeeded(outcome: Outcome[Any] | None) -> bool:
    """It ran, did not fail, and left samples to summarize."""
    return outcome is not None and outcome.error is None and bool(outcome.samples)


def interleave(configs: Sequence[C], reps: int, measure: Callable[[C, int], T],
               progress: Callable[[str], None] | None = None,
               label: Callable[[C], str] = str) -> list[list[T]]:
    """Measure every config once per repetition, in order, so that drift in the host (other
    load, frequency, caches) spreads over all of them; results[config index][rep]."""
    results: list[list[T]] = [[] for _ in configs]
    for rep in range(reps):
        for index, config in enumerate(configs):
            if progress:
                progress(f"rep {rep + 1}/{reps}: {label(config)}")
            results[index].append(measure(config, rep))
    return results


# Where progress goes while a caller that shows its own display (`pyhvm bench paper`) runs
# benchmarks in-process: every message of theirs, whatever their show_progress says.
_progress_sink: ContextVar[Callable[[str], None] | None] = ContextVar("progress_sink",
                                                                     default=None)


@contextmanager
def progress_to(sink: Callable[[str], None]) -> Iterator[None]:
    """Send the progress messages of benchmarks run inside this block to `sink`."""
    token = _progress_sink.set(sink)
    try:
        yield
    finally:
        _progress_sink.reset(token)


def stderr_progress(enabled: bool, prefix: str) -> Callable[[str], None] | None:
    """A progress printer for a terminal, or None (pipes and --json stay quiet); inside
    `progress_to`, that block's sink."""
    sink = _progress_sink.get()
    if sink is not None:
        return sink
    if not enabled or not sys.stderr.isatty():
        return None

    def show(message: str) -> None:
        sys.stderr.write(f"\r\033[K{prefix} {message}")
        sys.stderr.flush()
    return show


def rep_progress(enabled: bool, bench: str, first_label: str,
                 also: Sequence[str] = ()) -> Callable[[str], None] | None:
    """The common progress line on a terminal; elsewhere (a log, CI) one line a repetition
    (when the first configuration's run starts, or one of `also`), since a run takes
    minutes."""
    if not enabled or sys.stderr.isatty():
        return stderr_progress(enabled, bench)

    def show(message: str) -> None:
        if message.endswith(first_label) or message in also:
            print(f"pyhvm {bench}: {message.rsplit(':', 1)[0]}", file=sys.stderr, flush=True)
    return show


def clear_progress(progress: Callable[[str], None] | None) -> None:
    if progress and progress is not _progress_sink.get():
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


# --- host facts ---------------------------------------------------------------------------
def first_line(command: list[str]) -> str | None:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=20,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None


@lru_cache(maxsize=1)
def qemu_version() -> str | None:
    """`7.2.22 (Debian ...)` from `qemu-system-x86_64 --version`, or None if absent."""
    if shutil.which(QEMU) is None:
        return None
    line = first_line([QEMU, "--version"])
    if line and "version " in line:
        return line.split("version ", 1)[1]
    return line


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def kvm_module() -> str | None:
    for name in KVM_MODULES:
        if os.path.isdir(f"/sys/module/{name}"):
            return name
    return "kvm" if os.path.isdir("/sys/module/kvm") else None


def host_info(**extra: Any) -> dict[str, Any]:
    """Facts that explain a number measured here, plus what the caller adds (e.g. gcc)."""
    info: dict[str, Any] = {
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "kvm_module": kvm_module(),
        "kvm_pvm": os.path.isdir("/sys/module/kvm_pvm"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "qemu": qemu_version(),
    }
    info.update(extra)
    return info


def host_line(host: dict[str, Any]) -> str:
    parts = [f"Linux {host['kernel']}", str(host.get("cpu_model") or "unknown CPU"),
             f"{host.get('cpus')} CPUs", f"KVM module {host.get('kvm_module') or 'none'}",
             str(host["python"])]
    if host.get("qemu"):
        parts.append(f"QEMU {host['qemu']}")
    if host.get("gcc"):
        parts.append(f"gcc {host['gcc']}")
    return "host: " + ", ".join(parts)


# --- output -------------------------------------------------------------------------------
def run_entry(config: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    return {"config": config, "metrics": metrics}


def envelope(bench: str, host: dict[str, Any], runs: list[dict[str, Any]],
             ratios: dict[str, float | None]) -> dict[str, Any]:
    """The one JSON object every `pyhvm bench NAME --json` prints (architecture.md)."""
    return {"bench": bench, "host": host, "runs": runs, "ratios": ratios}


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the first left-aligned, the rest right."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        out = [str(cells[0]).ljust(widths[0])]
        out += [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join(out).rstrip()
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def fmt_spread(values: Sequence[float], digits: int = 2) -> str:
    """`median (min-max)`, the figure and how far repetitions strayed."""
    return f"{median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def fmt_value(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


# --- running pyhvm ------------------------------------------------------------------------
def pyhvm_command() -> list[str]:
    """This interpreter running this checkout's pyhvm (not some other installed copy)."""
    return [sys.executable, "-m", "pyhvm"]


def pyhvm_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PACKAGE_PARENT) + (os.pathsep + path if path else "")
    return env


@dataclass(frozen=True)
class GuestRun:
    status: int
    output: str        # what the guest wrote to COM1
    stderr: str
    wall_s: float


def run_guest_pyhvm(kernel: Path, append: str, *, max_seconds: float,
                    extra_args: Sequence[str] = ()) -> GuestRun:
    """Boot the guest kit under `pyhvm run` in a child process, COM1 to a temporary file
    (real console work, as a user sees it); BenchError unless the guest ended with OK."""
    with tempfile.TemporaryDirectory(prefix="pyhvm-bench-") as tmp:
        log = Path(tmp) / "com1.log"
        command = [*pyhvm_command(), "run", "--kernel", str(kernel), "--append", append,
                   "--serial", f"file:{log}", "--max-seconds", str(max_seconds), *extra_args]
        start = time.monotonic()
        try:
            proc = subprocess.run(command, capture_output=True, text=True, env=pyhvm_env(),
                                  stdin=subprocess.DEVNULL, timeout=max_seconds + 30)
        except subprocess.TimeoutExpired:
            raise BenchError(f"pyhvm run did not end ({append!r})") from None
        wall = time.monotonic() - start
        output = log.read_bytes().decode("utf-8", "replace") if log.exists() else ""
    run = GuestRun(proc.returncode, output, proc.stderr, wall)
    check_guest_run("pyhvm", run, append)
    return run


def check_guest_run(who: str, run: GuestRun, append: str) -> None:
    if run.status != GUEST_OK_STATUS:
        errors = [r for r in parse_results(run.output) if r.scenario == "error"]
        if errors:
            words = [*errors[0].words, *(f"{k}={v}" for k, v in errors[0].fields.items())]
            raise BenchError(f"the guest under {who} reported an error: {' '.join(words)}")
        tail = " ".join(run.stderr.strip().split())[-STDERR_TAIL:]
        raise BenchError(f"{who} ({append!r}) ended with status {run.status}"
                         + (f": {tail}" if tail else ""))


def reference_tsc_khz(samples: Iterable[Any]) -> tuple[int, str]:
    """The TSC rate to turn cycles into seconds, and where it came from. A guest told the
    rate by its VMM (CPUID leaf 0x40000010, which pyhvm offers) knows it exactly; one that
    measured it against the PIT (QEMU's qemu64 CPU) can be far off on a loaded host. Both
    guests read the same host TSC, so the announced rate serves every run. `samples` have
    `tsc_khz` and `tsc_source`."""
    samples = list(samples)
    told = [s.tsc_khz for s in samples if s.tsc_source.startswith("cpuid")]
    if told:
        return int(median(told)), "cpuid"
    return int(median(s.tsc_khz for s in samples)), "guest calibration"


def run_watching(command: Sequence[str], timeout: float, *, marker: str | None = None,
                 on_marker: Callable[[], None] | None = None, input: bytes | None = None,
                 cwd: str | Path | None = None, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[bytes]:
    """Run a VMM whose stdout is the guest console, reading stdout and stderr as they come;
    once stdout shows `marker` (at once if None), write `input` to its stdin (then close
    it) and call `on_marker`. A guest that wants input or a peer says when it is ready: a
    UART's init clears its receive FIFO, so earlier bytes would be lost, on hardware too.
    On timeout the process is killed and subprocess.TimeoutExpired raised."""
    proc = subprocess.Popen(list(command), stdin=subprocess.PIPE if input is not None
                            else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
    out, err = bytearray(), bytearray()
    wanted = marker.encode() if marker is not None else b""
    fired = False

    def fire() -> None:
        nonlocal fired
        fired = True
        if stdin is not None:
            try:
                stdin.write(input or b"")
                stdin.close()
            except OSError:  # the VMM is gone already; its status says why
                pass
        if on_marker is not None:
            on_marker()

    def pump_stdout() -> None:
        while chunk := os.read(stdout.fileno(), 65536):
            out.extend(chunk)
            if not fired and wanted in out:
                fire()

    def pump_stderr() -> None:
        while chunk := os.read(stderr.fileno(), 65536):
            err.extend(chunk)

    if not wanted:
        fire()
    readers = [threading.Thread(target=pump_stdout, daemon=True),
               threading.Thread(target=pump_stderr, daemon=True)]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise subprocess.TimeoutExpired(list(command), timeout, bytes(out), bytes(err))
    finally:
        for reader in readers:
            reader.join(timeout=5)
        for f in (stdin, stdout, stderr):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
    return subprocess.CompletedProcess(list(command), proc.returncode, bytes(out), bytes(err))
