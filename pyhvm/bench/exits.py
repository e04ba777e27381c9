"""`pyhvm bench exits`: what one VM exit costs through pyhvm's run loop, beside a C loop
that runs the same guest code and only counts exits (the floor for a userspace VMM here).

Both sides run the guest kit's `exits` scenario, which times N exits inside the guest with
the TSC; so start-up and the host's clock play no part. The C side gets the very RAM image
pyhvm's loader builds (written to a file, with the entry registers on its command line), so
the two differ only in the VMM.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

from ..boot.image import BootEntry, BootImageError
from ..boot.loader import load_kernel
from ..machine.cpu import host_is_pvm
from ..memory import GuestMemory
from . import common
from .common import BenchError, GuestRun

RAM_BYTES = 128 << 20          # pyhvm run's default -m, given explicitly to both sides
DEFAULT_N = 50_000             # ~0.5 s of exits at ~10 us, plus ~0.3 s of boot: ~1 s a run
DEFAULT_REPS = 5
SECONDS_PER_EXIT_BOUND = 200e-6  # a timeout, far above any exit cost seen here
SCAN_CHUNK = 64 << 10
C_SOURCE = "exits_ref.c"
_C_COUNTS = re.compile(r"exits_ref: exits=(\d+)")


@dataclass(frozen=True)
class ExitKind:
    """One kind of exit: the guest arguments that cause it and how to report it."""

    name: str
    label: str
    args: str
    config: dict[str, Any]


KINDS = (
    ExitKind("pio_unclaimed", "pio out 0x404 (nobody)", "port=0x404",
             {"kind": "pio", "port": "0x404", "device": None}),
    ExitKind("pio_uart", "pio out 0x3f8 (UART THR)", "port=0x3f8",
             {"kind": "pio", "port": "0x3f8", "device": "uart16550"}),
    ExitKind("mmio_unclaimed", "mmio write 0xd0000000 (nobody)", "mmio=0xd0000000",
             {"kind": "mmio", "addr": "0xd0000000", "device": None}),
)


@dataclass(frozen=True)
class Sample:
    """One guest run's own measurement of its loop."""

    n: int
    cycles: int
    tsc_khz: int
    tsc_source: str
    wall_s: float

    @property
    def cycles_per_exit(self) -> float:
        return self.cycles / self.n

    @property
    def us_per_exit(self) -> float:
        return self.cycles / self.n / self.tsc_khz * 1000.0


def sample_from(run: GuestRun, n: int) -> Sample:
    result = common.find_result(run.output, "exits")
    if result.number("n") != n:
        raise BenchError(f"the guest ran n={result.fields.get('n')} exits, not {n}")
    tsc_khz = result.number("tsc_khz")
    if tsc_khz <= 0:
        raise BenchError("the guest reported tsc_khz=0")
    return Sample(n, result.number("cycles"), tsc_khz, result.fields.get("tsc_source", "?"),
                  run.wall_s)


def guest_append(kind: ExitKind, n: int) -> str:
    return f"scenario=exits n={n} {kind.args}"


def run_timeout(n: int) -> float:
    return 30.0 + n * SECONDS_PER_EXIT_BOUND


def run_pyhvm(kernel: Path, kind: ExitKind, n: int) -> Sample:
    run = common.run_guest_pyhvm(kernel, guest_append(kind, n), max_seconds=run_timeout(n),
                                 extra_args=["-m", f"{RAM_BYTES >> 20}M"])
    return sample_from(run, n)


# --- the C reference ----------------------------------------------------------------------
def used_extent(memory: GuestMemory) -> int:
    """Bytes from guest-physical 0 that hold anything but zeros (what the loader wrote),
    rounded up to SCAN_CHUNK: only that much need go to the image file."""
    region = memory.regions[0]
    if region.gpa != 0:
        raise BenchError("guest RAM does not start at 0")
    zero = bytes(SCAN_CHUNK)
    end = region.size - region.size % SCAN_CHUNK
    while end > 0:
        start = end - SCAN_CHUNK
        if region.view[start:end].tobytes() != zero:
            break
        end = start
    return end


def write_ram_image(kernel: Path, append: str, path: Path) -> BootEntry:
    """Load the guest kit exactly as `pyhvm run` does and save the low RAM it filled."""
    memory = GuestMemory.with_size(RAM_BYTES)
    try:
        try:
            entry = load_kernel(memory, kernel.read_bytes(), append, None, [])
        except BootImageError as err:
            raise BenchError(f"{kernel}: {err}") from None
        if entry.mode != "protected32":
            raise BenchError(f"{kernel} is not a Multiboot kernel (the guest kit is)")
        with memory.view(0, used_extent(memory)) as data:
            path.write_bytes(data)
    finally:
        memory.close()
    return entry


class Reference:
    """The compiled C loop and one RAM image per exit kind, in a temporary directory that
    is removed on exit, whatever happens."""

    def __init__(self, kernel: Path, kinds: tuple[ExitKind, ...], n: int) -> None:
        self.kernel, self.kinds, self.n = kernel, kinds, n
        self.entries: dict[str, tuple[Path, BootEntry]] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> "Reference":
        gcc = common.require_tool("gcc", "gcc")
        self._tmp = tempfile.TemporaryDirectory(prefix="pyhvm-bench-exits-")
        try:
            tmp = Path(self._tmp.name)
            source = tmp / C_SOURCE
            source.write_text(resources.files(__package__).joinpath(C_SOURCE).read_text())
            self.binary = tmp / "exits_ref"
            built = subprocess.run([gcc, "-O2", "-Wall", "-o", str(self.binary), str(source)],
                                   capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if built.returncode != 0:
                errors = [ln for ln in built.stderr.splitlines() if "error" in ln]
                raise BenchError("gcc could not build the C reference loop: "
                                 + (errors[0] if errors else built.stderr.strip()[-200:]))
            for kind in self.kinds:
                image = tmp / f"ram-{kind.name}.img"
                self.entries[kind.name] = (image, write_ram_image(
                    self.kernel, guest_append(kind, self.n), image))
        except BaseException:
            self._tmp.cleanup()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def run(self, kind: ExitKind) -> tuple[Sample, int]:
        """(the guest's measurement, exits the C loop counted)."""
        image, entry = self.entries[kind.name]
        regs = entry.registers
        command = [str(self.binary), str(image), str(RAM_BYTES), hex(entry.rip),
                   hex(regs.get("rax", 0)), hex(regs.get("rbx", 0)),
                   "1" if host_is_pvm() else "0"]
        start = time.monotonic()
        try:
            proc = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL,
                                  timeout=run_timeout(self.n))
        except subprocess.TimeoutExpired:
            raise BenchError(f"the C reference loop did not end ({kind.label})") from None
        run = GuestRun(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                       proc.stderr.decode("utf-8", "replace"), time.monotonic() - start)
        common.check_guest_run("the C reference loop", run, guest_append(kind, self.n))
        counted = _C_COUNTS.search(run.stderr)
        exits = int(counted.group(1)) if counted else 0
        if exits < self.n:
            raise BenchError(f"the C reference loop counted {exits} exits, fewer than the "
                             f"guest's {self.n}: its loop did not exit every time")
        return sample_from(run, self.n), exits


# --- the benchmark ------------------------------------------------------------------------
def measure(n: int = DEFAULT_N, reps: int = DEFAULT_REPS, kernel: str | None = None,
            kinds: tuple[ExitKind, ...] = KINDS, show_progress: bool = False) -> dict[str, Any]:
    """Run every kind under pyhvm and the C loop, interleaved; the JSON envelope."""
    if n < 1 or reps < 1:
        raise BenchError("--n and --reps must be at least 1")
    common.require_kvm()
    elf = common.guestkit_path(kernel)
    progress = common.stderr_progress(show_progress, "bench exits")
    configs = [(kind, vmm) for kind in kinds for vmm in ("pyhvm", "c")]
    with Reference(elf, kinds, n) as reference:
        def one(config: tuple[ExitKind, str], rep: int) -> tuple[Sample, int | None]:
            kind, vmm = config
            if vmm == "pyhvm":
                return run_pyhvm(elf, kind, n), None
            return reference.run(kind)

        try:
            results = common.interleave(configs, reps, one, progress,
                                        label=lambda c: f"{c[1]} {c[0].label}")
        finally:
            common.clear_progress(progress)
    runs = []
    medians: dict[tuple[str, str], float] = {}
    for (kind, vmm), outcome in zip(configs, results):
        samples = [sample for sample, _ in outcome]
        us = [s.us_per_exit for s in samples]
        medians[(kind.name, vmm)] = common.median(us)
        metrics = {
            **common.metric("us_per_exit", us),
            **common.metric("cycles_per_exit", [s.cycles_per_exit for s in samples], 0),
            "tsc_khz": int(common.median(s.tsc_khz for s in samples)),
            "tsc_source": samples[0].tsc_source,
            **common.metric("wall_s", [s.wall_s for s in samples]),
        }
        counted = [c for _, c in outcome if c is not None]
        if counted:
            metrics["exits_counted"] = int(common.median(counted))
        config = {"vmm": "pyhvm" if vmm == "pyhvm" else "c-reference", "exit": kind.name,
                  **kind.config, "n": n, "reps": reps}
        runs.append(common.run_entry(config, metrics))
    ratios = {f"{kind.name}_pyhvm_over_c": common.rounded(common.ratio(
        medians[(kind.name, "pyhvm")], medians[(kind.name, "c")])) for kind in kinds}
    host = common.host_info(gcc=common.first_line(["gcc", "-dumpfullversion"]))
    return common.envelope("exits", host, runs, ratios)


def render(result: dict[str, Any]) -> str:
    """The plain-text table: per exit kind, pyhvm and C in microseconds, and the ratio."""
    by_key = {(r["config"]["exit"], r["config"]["vmm"]): r for r in result["runs"]}
    kinds = [k for k in KINDS if (k.name, "pyhvm") in by_key]
    first = result["runs"][0]["config"]
    rows = []
    for kind in kinds:
        py = by_key[(kind.name, "pyhvm")]["metrics"]
        ref = by_key[(kind.name, "c-reference")]["metrics"]
        rows.append([kind.label, common.fmt_spread(py["us_per_exit_reps"]),
                     common.fmt_spread(ref["us_per_exit_reps"]),
                     common.fmt_ratio(result["ratios"].get(f"{kind.name}_pyhvm_over_c"))])
    sources = sorted({r["metrics"]["tsc_source"] for r in result["runs"]})
    header = (f"pyhvm bench exits: {first['n']} exits a run, {first['reps']} repetitions "
              f"interleaved; microseconds per exit, median (min-max), timed in the guest "
              f"with the TSC ({', '.join(sources)})")
    table = common.format_table(["exit", "pyhvm", "C reference", "pyhvm/C"], rows)
    return "\n".join([header, "", table, "", common.host_line(result["host"])])


__all__ = ["KINDS", "ExitKind", "Reference", "measure", "render", "used_extent",
           "write_ram_image"]
