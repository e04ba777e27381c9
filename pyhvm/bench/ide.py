"""`pyhvm bench ide`: the paper's IDE DMA experiment. Bus-master transfers done inside the
vCPU's exit (`--ide-dma sync`, the "before") against transfers handed to worker threads
(`--ide-dma concurrent`, the "after"), beside QEMU's `-drive if=ide` on the same guest and
image.

Two guest kit scenarios, both timed in the guest with the TSC (start-up stays out):
- `disk-seq`: back-to-back DMA reads or writes of one command size, each next command
  issued from the IRQ 14 handler; MB/s (10^6 bytes/s) from bytes and cycles.
- `disk-overlap`: DMA reads alone, CPL 3 compute alone, then both at once. Total time of
  the last against max(compute, I/O) (1.0 is perfect overlap) and against their sum (1.0
  is none); with 64 KiB commands, where the guest's own driver work is most of each
  command, and with 32 MiB ones, where the copy is.
Cycles become seconds at one TSC rate for every run (`reference_tsc_khz`), so a guest that
calibrated its TSC badly on a loaded host does not skew its VMM's figures.

The image is made by the benchmark in a temporary directory, filled once with random data
(so reads return real, cached pages, not holes), and removed afterwards: every figure is a
warm page cache, never the disk. A traced pyhvm run per placement then breaks one command
size down (exits per command, the interrupt, the transfer, the host's copy floor).
"""

from __future__ import annotations

import mmap
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..backends.disk import RawImage
from ..trace.records import Kind, Record, TraceFormatError, read_trace
from ..trace.report import AddressMap, port_name
from . import common
from .common import BenchError, GuestRun, Outcome, fmt_value, ratio_of, succeeded

DEFAULT_REPS = 3
DEFAULT_MB = 16
DEFAULT_SIZES = (4, 64, 128, 32768)
MAX_KIB = 32768            # 65536 sectors: the largest LBA48 command (scn_disk_seq.c)
LBA28_MAX_KIB = 128        # 256 sectors: anything larger needs an LBA48 command
MIN_COMMANDS = 2           # a size gets at least this many timed commands (mb grows)
MAX_COMMANDS = 1024        # and at most this many (mb shrinks): enough for a median, and
                           # 4 KiB commands at ~0.5 ms each would otherwise dominate the run
OVERLAP_SIZES = (64, 32768)  # the guest's driver dominates a small command, the copy a
                             # large one: overlap can only show where the copy is long
MIN_OVERLAP_COMMANDS = 8
PROFILE_KIB = 64
RAM_MIB = 256              # the same RAM on both VMMs; the guest's buffer takes up to 32 MiB
VARIANTS = ("sync", "concurrent", "qemu")
DMA_MODES = ("sync", "concurrent")
OPS = ("read", "write")
SLACK_S = 30.0             # beyond the transfer: boot, exit, a loaded host
QEMU_SLACK_S = 60.0
S_PER_COMMAND_BOUND = 5e-3  # timeouts only: far above any command cost seen here
S_PER_MIB_BOUND = 0.05
PRD_BYTES = 64 << 10       # the guest's PRD entries: the segments a transfer is split into
COPY_BUDGET = 256 << 20    # bytes copied to time the host's preadv, per size
COPY_SAMPLES = (3, 64)
IDE_IRQ = 14
BM_DEVICE = "ide-bus-master"
BM_COMMAND_OFFSETS = (0, 8)  # primary and secondary channel's bus-master command register
OVERLAP_GOAL = 1.15        # concurrent: total <= 1.15 x max(compute, I/O)
NEAR_SUM = 0.9             # sync: total >= 0.9 x (compute + I/O) counts as "near the sum"
READ_GOAL_MBPS = 1000.0    # 1 GB/s with the largest LBA48 commands
TOP_PORTS = 8


@dataclass(frozen=True)
class Config:
    """One thing measured: who moves the data, which scenario, and its command size."""

    variant: str      # "sync" or "concurrent" (pyhvm --ide-dma) or "qemu"
    test: str         # "seq" or "overlap"
    op: str = "read"
    kib: int = 64

    @property
    def vmm(self) -> str:
        return "qemu" if self.variant == "qemu" else "pyhvm"

    @property
    def label(self) -> str:
        who = "qemu" if self.variant == "qemu" else f"pyhvm {self.variant}"
        what = f"{self.op} {self.kib} KiB" if self.test == "seq" else "overlap"
        return f"{who} {what}"


@dataclass(frozen=True)
class SeqSample:
    """One disk-seq run's own account of its timed stream."""

    bytes: int
    cycles: int
    commands: int
    flush_cycles: int
    tsc_khz: int
    tsc_source: str
    wall_s: float


@dataclass(frozen=True)
class OverlapSample:
    """One disk-overlap run: the three timed phases, in TSC cycles."""

    io_alone: int
    compute_alone: int
    together: int
    io_cycles: int
    compute_cycles: int
    tsc_khz: int
    tsc_source: str
    wall_s: float

    @property
    def total_over_max(self) -> float:
        return self.together / max(self.io_alone, self.compute_alone)

    @property
    def total_over_sum(self) -> float:
        return self.together / (self.io_alone + self.compute_alone)


Sample = SeqSample | OverlapSample


# --- what runs ----------------------------------------------------------------------------
def parse_sizes(text: str) -> tuple[int, ...]:
    """`4,64,128,32768` (KiB per command) -> sorted, unique, each 1..MAX_KIB."""
    try:
        values = sorted({int(part, 0) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of whole numbers") from None
    if not values:
        raise ValueError("no sizes given")
    if values[0] < 1 or values[-1] > MAX_KIB:
        raise ValueError(f"sizes must lie between 1 and {MAX_KIB} KiB (65536 sectors, the "
                         "largest LBA48 command)")
    return tuple(values)


def mb_for(kib: int, mb: int) -> int:
    """MiB one run moves: `mb`, less where that would take more than MAX_COMMANDS small
    commands, more where it would hold fewer than MIN_COMMANDS large ones (the guest
    times whole commands only)."""
    most = max(1, MAX_COMMANDS * kib // 1024)
    return max(min(mb, most), -(-MIN_COMMANDS * kib // 1024))


def moved_mb(config: Config, mb: int) -> int:
    """MiB a run of `config` moves; an overlap run at least MIN_OVERLAP_COMMANDS commands,
    so that its I/O phase lasts long beside the host's scheduling noise."""
    if config.test == "overlap":
        return max(mb_for(config.kib, mb), -(-MIN_OVERLAP_COMMANDS * config.kib // 1024))
    return mb_for(config.kib, mb)


def image_mib(sizes: Sequence[int], mb: int) -> int:
    """The image must hold the longest run: the guest reads and writes from LBA 0 on."""
    runs = [Config("sync", "seq", "read", kib) for kib in (*sizes, PROFILE_KIB)]
    runs += [Config("sync", "overlap", "read", kib) for kib in OVERLAP_SIZES]
    return max(moved_mb(config, mb) for config in runs)


def configurations(sizes: Sequence[int], qemu: bool) -> list[Config]:
    """Size by size, read then write, the variants side by side (so that what is compared
    runs close in time), then the overlap runs."""
    variants = VARIANTS if qemu else DMA_MODES
    seq = [Config(v, "seq", op, kib) for kib in sizes for op in OPS for v in variants]
    return seq + [Config(v, "overlap", "read", kib) for kib in OVERLAP_SIZES
                  for v in variants]


def guest_append(config: Config, mb: int) -> str:
    if config.test == "seq":
        return (f"scenario=disk-seq op={config.op} size={config.kib} "
                f"mb={moved_mb(config, mb)}")
    return f"scenario=disk-overlap size={config.kib} mb={moved_mb(config, mb)}"


def drive(image: Path | str) -> str:
    return f"file={image},if=ide,format=raw"


def pyhvm_args(image: Path | str, dma: str) -> list[str]:
    """What `pyhvm run` gets beyond kernel and command line."""
    return ["-m", f"{RAM_MIB}M", "--drive", drive(image), "--ide-dma", dma]


def qemu_command(kernel: Path, append: str, image: Path | str) -> list[str]:
    """The guest kit's QEMU line (tests/guestkit.py) with the image on the first IDE
    slot; -nodefaults leaves the PIIX3 IDE function, which is part of the i440FX board."""
    return [common.QEMU, "-enable-kvm", "-cpu", "qemu64", "-m", str(RAM_MIB),
            "-kernel", str(kernel), "-append", append, "-drive", drive(image),
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-serial", "stdio",
            "-display", "none", "-no-reboot", "-nodefaults"]


def command_text(config: Config, kernel: Path, mb: int) -> str:
    """The command as a user would type it, the temporary image shown as IMAGE."""
    append = guest_append(config, mb)
    if config.vmm == "qemu":
        command = qemu_command(kernel, append, "IMAGE")
    else:
        command = [*common.pyhvm_command(), "run", "--kernel", str(kernel), "--append",
                   append, *pyhvm_args("IMAGE", config.variant)]
    return shlex.join([Path(command[0]).name, *command[1:]])


def run_timeout(config: Config, mb: int) -> float:
    moved = moved_mb(config, mb)
    commands = moved * 1024 // config.kib
    passes = 1 if config.test == "seq" else 4  # overlap: warm-up, alone, compute, together
    return passes * (commands * S_PER_COMMAND_BOUND + moved * S_PER_MIB_BOUND)


# --- the image and the host's copy floor --------------------------------------------------
def fill_image(path: Path, mib: int) -> None:
    """`mib` MiB of data, every page written (so in the page cache, no holes): one random
    MiB, each copy stamped with its index (a fresh random MiB each costs seconds)."""
    block = bytearray(os.urandom(1 << 20))
    with open(path, "wb") as f:
        for index in range(mib):
            block[:8] = index.to_bytes(8, "little")
            f.write(block)


def copy_us(image: Path, kib: int) -> list[float]:
    """Microseconds the host's preadv takes to move one command's bytes from the (cached)
    image into anonymous memory in PRD-sized segments, as pyhvm's DMA does: the floor
    under any transfer, several samples over successive offsets."""
    size = kib * 1024
    low, high = COPY_SAMPLES
    samples = max(low, min(high, COPY_BUDGET // size))
    disk = RawImage(str(image), readonly=True)
    buffer = mmap.mmap(-1, size)
    whole = memoryview(buffer)
    views = [whole[at:at + PRD_BYTES] for at in range(0, size, PRD_BYTES)]
    try:
        span = max(disk.size // size, 1)
        times = []
        for n in range(samples):
            start = time.perf_counter_ns()
            disk.readinto((n % span) * size, views)
            times.append((time.perf_counter_ns() - start) / 1000.0)
        return times
    finally:
        for view in (*views, whole):
            view.release()
        buffer.close()
        disk.close()


# --- running ------------------------------------------------------------------------------
def seq_sample(run: GuestRun, config: Config, mb: int) -> SeqSample:
    """The guest's RESULT disk-seq line, checked against what was asked for."""
    result = common.find_result(run.output, "disk-seq")
    if result.number("ok") != 1:
        raise BenchError(f"the guest's disk-seq run failed: {result.fields.get('error', '?')}")
    if result.fields.get("op") != config.op or result.number("size") != config.kib:
        raise BenchError(f"the guest ran op={result.fields.get('op')} "
                         f"size={result.fields.get('size')}, not {config.op} {config.kib}")
    commands, moved = result.number("commands"), result.number("bytes")
    if commands < 1 or moved != commands * config.kib * 1024 \
            or result.number("mb") != mb_for(config.kib, mb):
        raise BenchError(f"the guest moved bytes={moved} in commands={commands}, not "
                         f"{mb_for(config.kib, mb)} MiB in {config.kib} KiB commands")
    cycles = result.number("cycles")
    if cycles <= 0 or result.number("tsc_khz") <= 0:
        raise BenchError("the guest reported no TSC time for its disk-seq run")
    return SeqSample(moved, cycles, commands, result.number("flush_cycles"),
                     result.number("tsc_khz"), result.fields.get("tsc_source", "?"),
                     run.wall_s)


def overlap_sample(run: GuestRun) -> OverlapSample:
    """The guest's RESULT disk-overlap line."""
    result = common.find_result(run.output, "disk-overlap")
    if result.number("ok") != 1:
        raise BenchError("the guest's disk-overlap run failed")
    sample = OverlapSample(
        io_alone=result.number("io_alone_cycles"),
        compute_alone=result.number("compute_alone_cycles"),
        together=result.number("together_cycles"), io_cycles=result.number("io_cycles"),
        compute_cycles=result.number("compute_cycles"), tsc_khz=result.number("tsc_khz"),
        tsc_source=result.fields.get("tsc_source", "?"), wall_s=run.wall_s)
    if min(sample.io_alone, sample.compute_alone, sample.together, sample.tsc_khz) <= 0:
        raise BenchError("the guest reported an empty disk-overlap phase")
    return sample


def run_qemu(kernel: Path, append: str, image: Path, timeout: float) -> GuestRun:
    command = qemu_command(kernel, append, image)
    start = time.monotonic()
    try:
        proc = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"qemu did not end within {timeout:.0f} s ({append!r})") from None
    run = GuestRun(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                   proc.stderr.decode("utf-8", "replace"), time.monotonic() - start)
    common.check_guest_run("qemu", run, append)
    if not common.parse_results(run.output):
        # QEMU's own errors exit with 1, which is also the guest's OK status
        tail = " ".join(run.stderr.strip().split())[-common.STDERR_TAIL:]
        raise BenchError(f"qemu ended with status {run.status} and no RESULT line"
                         + (f": {tail}" if tail else ""))
    return run


def run_config(kernel: Path, config: Config, image: Path, mb: int,
               extra: Sequence[str] = ()) -> GuestRun:
    """One guest run of `config`; BenchError unless the guest ended OK."""
    append = guest_append(config, mb)
    bound = run_timeout(config, mb)
    if config.vmm == "qemu":
        return run_qemu(kernel, append, image, bound + QEMU_SLACK_S)
    return common.run_guest_pyhvm(kernel, append, max_seconds=bound + SLACK_S,
                                  extra_args=[*pyhvm_args(image, config.variant), *extra])


def sample_config(kernel: Path, config: Config, image: Path, mb: int) -> Sample:
    run = run_config(kernel, config, image, mb)
    return seq_sample(run, config, mb) if config.test == "seq" else overlap_sample(run)


# --- the per-command profile --------------------------------------------------------------
def _exit_kinds() -> tuple[Kind, ...]:
    return (Kind.EXIT_PIO, Kind.EXIT_MMIO, Kind.EXIT_OTHER)


def command_profile(header: dict[str, Any], records: Sequence[Record]) -> dict[str, Any]:
    """Per DMA command of a traced pyhvm run, from one bus-master start to the next:
    - cycle: start to next start (what one command costs, all in);
    - start exit: the exit that writes the start bit (sync: the transfer is inside it);
    - other exits: the rest of the exit handling (taskfile, status, bus-master status);
    - transfer: start exit to IRQ 14 raised (the copy and, concurrent, the hand-off to a
      worker and back to the event loop);
    - interrupt: IRQ 14 raised (or the start exit's end, whichever is later) to the
      handler's first IDE register access: delivery by KVM and the handler's entry;
    - guest: cycle less exit handling, i.e. guest code, KVM and waiting.
    Medians over the commands (and the cycle's mean, which the guest's own figure is);
    counts are means."""
    pio_map = AddressMap(header.get("pio_map", []))
    ordered = sorted(records, key=lambda r: r.ts_ns)
    exits = [r for r in ordered if r.kind in _exit_kinds()]
    names: dict[int, tuple[str, str]] = {}

    def name(port: int) -> tuple[str, str]:
        if port not in names:
            names[port] = port_name(pio_map, port)
        return names[port]

    def is_start(r: Record) -> bool:
        if r.kind is not Kind.EXIT_PIO or not (r.c >> 8) & 1 or not r.b & 1:
            return False
        hit = pio_map.lookup(r.a)
        return hit is not None and hit[0] == BM_DEVICE and hit[2] in BM_COMMAND_OFFSETS

    def is_ide(r: Record) -> bool:
        return r.kind is Kind.EXIT_PIO and name(r.a)[0].startswith("ide")

    starts = [r for r in exits if is_start(r)]
    if len(starts) < 2:
        return {"error": f"{len(starts)} DMA command(s) in the trace, two needed"}
    raises = [r.ts_ns for r in ordered
              if r.kind is Kind.IRQ_LEVEL and r.a == IDE_IRQ and r.b]
    exit_ts = [r.ts_ns for r in exits]
    cycle: list[int] = []
    start_exit: list[int] = []
    other: list[int] = []
    transfer: list[int] = []
    entry: list[int] = []
    guest: list[int] = []
    n_exits = n_ide = n_irqs = 0
    ports: Counter[str] = Counter()
    for first, nxt in zip(starts, starts[1:]):
        inside = exits[bisect_left(exit_ts, first.ts_ns):bisect_left(exit_ts, nxt.ts_ns)]
        handling = sum(r.dur_ns for r in inside)
        span = nxt.ts_ns - first.ts_ns
        cycle.append(span)
        start_exit.append(first.dur_ns)
        other.append(handling - first.dur_ns)
        guest.append(span - handling)
        n_exits += len(inside)
        n_ide += sum(1 for r in inside if is_ide(r))
        for r in inside:
            ports[name(r.a)[1] if r.kind is Kind.EXIT_PIO else r.kind.name.lower()] += 1
        irqs = raises[bisect_left(raises, first.ts_ns):bisect_left(raises, nxt.ts_ns)]
        n_irqs += len(irqs)
        if not irqs:
            continue
        transfer.append(irqs[0] - first.ts_ns)
        ready = max(irqs[0], first.ts_ns + first.dur_ns)
        handler = next((r for r in inside if r.ts_ns >= ready and is_ide(r)), None)
        if handler is not None:
            entry.append(handler.ts_ns - ready)
    commands = len(starts) - 1

    def us(values: list[int]) -> float | None:
        return round(common.median(values) / 1000.0, 2) if values else None

    return {
        "commands": commands,
        "cycle_us": us(cycle),
        "cycle_mean_us": round(sum(cycle) / len(cycle) / 1000.0, 2),
        "start_exit_us": us(start_exit),
        "other_exits_us": us(other),
        "transfer_us": us(transfer),
        "interrupt_us": us(entry),
        "guest_us": us(guest),
        "exits_per_cmd": round(n_exits / commands, 2),
        "ide_exits_per_cmd": round(n_ide / commands, 2),
        "irqs_per_cmd": round(n_irqs / commands, 2),
        "exits_by_port_per_cmd": {k: round(n / commands, 2) for k, n in ports.most_common()},
    }


def profile_run(kernel: Path, image: Path, mb: int, dma: str, tmp: Path) -> dict[str, Any]:
    """One traced pyhvm run of PROFILE_KIB reads; its per-command profile, or the error."""
    config = Config(dma, "seq", "read", PROFILE_KIB)
    trace = tmp / f"profile-{dma}.trace"
    try:
        run = run_config(kernel, config, image, mb, ["--trace", str(trace),
                                                     "--trace-events", "exits,irq"])
        sample = seq_sample(run, config, mb)
        header, records = read_trace(str(trace))
    except (BenchError, OSError, TraceFormatError) as err:
        return {"error": str(err)}
    finally:
        trace.unlink(missing_ok=True)
    profile = command_profile(header, records)
    profile["guest_us_per_cmd"] = round(sample.cycles / sample.commands / sample.tsc_khz
                                        * 1000.0, 2)
    return profile


# --- the benchmark ------------------------------------------------------------------------
def measure(reps: int = DEFAULT_REPS, mb: int = DEFAULT_MB,
            sizes: Sequence[int] = DEFAULT_SIZES, kernel: str | None = None,
            qemu: bool = True, show_progress: bool = False) -> dict[str, Any]:
    """Every configuration, interleaved, then the profile; the JSON envelope."""
    if reps < 1 or mb < 1:
        raise BenchError("--reps and --mb must be at least 1")
    try:
        sizes = parse_sizes(",".join(map(str, sizes)))
    except ValueError as err:
        raise BenchError(f"--sizes: {err}") from None
    common.require_kvm()
    elf = common.guestkit_path(kernel)
    configs = configurations(sizes, qemu and shutil.which(common.QEMU) is not None)
    outcomes: dict[Config, Outcome[Any]] = {config: Outcome() for config in configs}
    mib = image_mib(sizes, mb)
    progress = common.rep_progress(show_progress, "bench ide", configs[0].label, also=("profile",))
    load_before = common.loadavg()
    with tempfile.TemporaryDirectory(prefix="pyhvm-bench-ide-") as tmp_name:
        tmp = Path(tmp_name)
        image = tmp / "disk.img"
        fill_image(image, mib)

        def one(config: Config, rep: int) -> None:
            common.measure_into(outcomes[config], rep,
                                lambda: sample_config(elf, config, image, mb))

        try:
            common.interleave(configs, reps, one, progress, label=lambda c: c.label)
            if all(o.error is not None for o in outcomes.values()):
                first = outcomes[configs[0]].error
                raise BenchError(f"every configuration failed; {configs[0].label}: {first}")
            if progress:
                progress("profile")
            copies = {kib: copy_us(image, kib) for kib in sorted({*sizes, PROFILE_KIB})}
            placements = {dma: profile_run(elf, image, mb, dma, tmp) for dma in DMA_MODES}
        finally:
            if sys.stderr.isatty():
                common.clear_progress(progress)
    host = common.host_info(loadavg_1m_start=load_before, loadavg_1m_end=common.loadavg())
    profile = {"kib": PROFILE_KIB, "mb": mb_for(PROFILE_KIB, mb), "op": "read",
               "placements": placements}
    return summarize(outcomes, copies, profile, reps=reps, mb=mb, kernel=elf,
                     image_mib=mib, host=host)


# --- the figures --------------------------------------------------------------------------
reference_tsc_khz = common.reference_tsc_khz


def mbps(sample: SeqSample, khz: int) -> float:
    """10^6 bytes per second of the timed stream."""
    return sample.bytes * khz * 1000.0 / sample.cycles / 1e6


def _seq_metrics(samples: list[SeqSample], khz: int) -> dict[str, Any]:
    ms = [s.cycles / khz for s in samples]
    return {
        **common.metric("mbps", [mbps(s, khz) for s in samples], 2),
        **common.metric("us_per_cmd", [s.cycles * 1000.0 / khz / s.commands
                                       for s in samples], 2),
        **common.metric("timed_ms", ms, 2),
        "commands": samples[0].commands,
        "bytes": samples[0].bytes,
        "flush_ms": round(common.median(s.flush_cycles / khz for s in samples), 2),
        "tsc_khz": int(common.median(s.tsc_khz for s in samples)),
        "tsc_source": samples[0].tsc_source,
        **common.metric("wall_s", [s.wall_s for s in samples], 2),
    }


def _overlap_metrics(samples: list[OverlapSample], khz: int) -> dict[str, Any]:
    def ms(cycles: Sequence[int]) -> list[float]:
        return [c / khz for c in cycles]

    serial = [s.io_alone + s.compute_alone for s in samples]
    ideal = [max(s.io_alone, s.compute_alone) for s in samples]
    pct = [(a - s.together) * 100.0 / (a - b) if a > b else 0.0
           for s, a, b in zip(samples, serial, ideal)]
    return {
        **common.metric("total_over_max", [s.total_over_max for s in samples]),
        **common.metric("total_over_sum", [s.total_over_sum for s in samples]),
        **common.metric("overlap_pct", pct, 1),
        **common.metric("io_alone_ms", ms([s.io_alone for s in samples]), 2),
        **common.metric("compute_alone_ms", ms([s.compute_alone for s in samples]), 2),
        **common.metric("total_ms", ms([s.together for s in samples]), 2),
        **common.metric("io_done_ms", ms([s.io_cycles for s in samples]), 2),
        **common.metric("compute_done_ms", ms([s.compute_cycles for s in samples]), 2),
        "tsc_khz": int(common.median(s.tsc_khz for s in samples)),
        "tsc_source": samples[0].tsc_source,
        **common.metric("wall_s", [s.wall_s for s in samples], 2),
    }


def summarize(outcomes: dict[Config, Outcome], copies: dict[int, list[float]],
              profile: dict[str, Any], *, reps: int, mb: int, kernel: Path, image_mib: int,
              host: dict[str, Any]) -> dict[str, Any]:
    """Runs, ratios and the profile from the samples; no KVM needed (unit-tested)."""
    every = [s for o in outcomes.values() if succeeded(o) for s in o.samples]
    khz, source = reference_tsc_khz(every) if every else (0, "none")
    runs = []
    medians: dict[Config, dict[str, Any]] = {}
    for config, outcome in outcomes.items():
        entry = {"vmm": config.vmm, "variant": config.variant,
                 "ide_dma": None if config.vmm == "qemu" else config.variant,
                 "scenario": "disk-seq" if config.test == "seq" else "disk-overlap",
                 "op": config.op, "kib": config.kib, "mb": moved_mb(config, mb),
                 "mb_asked": mb,
                 "lba48": config.kib > LBA28_MAX_KIB, "reps": reps, "image_mib": image_mib,
                 "page_cache": "warm", "command": command_text(config, kernel, mb)}
        if not succeeded(outcome):
            runs.append(common.run_entry(entry, {"error": outcome.error or "no repetition ran",
                                                 "reps_ok": len(outcome.samples)}))
            continue
        build = _seq_metrics if config.test == "seq" else _overlap_metrics
        metrics = build(outcome.samples, khz)
        if config.test == "seq" and config.kib in copies:
            metrics["host_copy_us"] = round(common.median(copies[config.kib]), 2)
        medians[config] = metrics
        runs.append(common.run_entry(entry, metrics))
    ratios: dict[str, float | None] = {}
    seq = sorted({(c.op, c.kib) for c in outcomes if c.test == "seq"},
                 key=lambda k: (OPS.index(k[0]), k[1]))
    has_qemu = any(c.vmm == "qemu" for c in outcomes)

    def figure(variant: str, test: str, key: str, op: str, kib: int) -> float | None:
        metrics = medians.get(Config(variant, test, op, kib))
        return None if metrics is None else metrics[key]

    for op, kib in seq:
        conc, sync = figure("concurrent", "seq", "mbps", op, kib), \
            figure("sync", "seq", "mbps", op, kib)
        ratios[f"{op}_{kib}k_concurrent_over_sync"] = ratio_of(conc, sync)
        if has_qemu:
            qemu = figure("qemu", "seq", "mbps", op, kib)
            ratios[f"{op}_{kib}k_concurrent_over_qemu"] = ratio_of(conc, qemu)
            ratios[f"{op}_{kib}k_sync_over_qemu"] = ratio_of(sync, qemu)
    for kib in sorted({c.kib for c in outcomes if c.test == "overlap"}):
        for variant in (VARIANTS if has_qemu else DMA_MODES):
            for key in ("total_over_max", "total_over_sum"):
                ratios[f"overlap_{kib}k_{key}_{variant}"] = figure(variant, "overlap", key,
                                                                   "read", kib)
    host = {**host, "tsc_khz_reference": khz, "tsc_khz_reference_source": source}
    result = common.envelope("ide", host, runs, ratios)
    copy_floor = copies.get(profile["kib"])
    result["profile"] = {**profile, "host_copy_us": None if not copy_floor
                         else round(common.median(copy_floor), 2)}
    return result


# --- the report ---------------------------------------------------------------------------
def qemu_missing_note() -> str:
    return f"{common.QEMU} is not installed (apt-get install qemu-system-x86): pyhvm only"


def _spread(metrics: dict[str, Any] | None, key: str, digits: int = 1) -> str:
    if metrics is None:
        return "-"
    if "error" in metrics:
        return "FAILED"
    return common.fmt_spread(metrics[f"{key}_reps"], digits)


def _by_config(result: dict[str, Any]) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    return {(c["variant"], c["scenario"], c["op"], c["kib"]): r["metrics"]
            for r in result["runs"] for c in [r["config"]]}


def _reps_overlap(a: dict[str, Any], b: dict[str, Any], key: str) -> bool:
    ra, rb = a.get(f"{key}_reps") or [], b.get(f"{key}_reps") or []
    return bool(ra and rb) and min(ra) <= max(rb) and min(rb) <= max(ra)


def goals(result: dict[str, Any]) -> list[str]:
    """The issue's three goals, judged from this run's medians."""
    by = _by_config(result)
    lines = []
    for kib in sorted({k for (_, s, _, k) in by if s == "disk-overlap"}):
        conc = by.get(("concurrent", "disk-overlap", "read", kib), {})
        sync = by.get(("sync", "disk-overlap", "read", kib), {})
        what = f"overlap with {kib} KiB commands"
        if "total_over_max" not in conc or "total_over_sum" not in sync:
            lines.append(f"{what}: not judged (a disk-overlap configuration failed)")
            continue
        met_c = conc["total_over_max"] <= OVERLAP_GOAL
        met_s = sync["total_over_sum"] >= NEAR_SUM
        lines.append(
            f"{what}: {'met' if met_c and met_s else 'NOT met'}: concurrent total = "
            f"{conc['total_over_max']:.2f} x max(compute, I/O) (goal <= {OVERLAP_GOAL:.2f}: "
            f"{'met' if met_c else 'not met'}); sync total = {sync['total_over_sum']:.2f} x "
            f"(compute + I/O) (near the sum, >= {NEAR_SUM:.2f}: "
            f"{'yes' if met_s else 'no'})")
    reads = sorted(kib for (v, s, op, kib) in by if s == "disk-seq" and op == "read")
    if reads:
        largest = reads[-1]
        m = by.get(("concurrent", "disk-seq", "read", largest), {})
        s = by.get(("sync", "disk-seq", "read", largest), {})
        which = ("the largest LBA48 command" if largest == MAX_KIB else
                 f"the largest size measured (not the largest LBA48 command, {MAX_KIB} KiB)")
        if "mbps" in m:
            lines.append(
                f"sequential DMA read >= {READ_GOAL_MBPS:.0f} MB/s with {which}, "
                f"{largest} KiB: {'met' if m['mbps'] >= READ_GOAL_MBPS else 'NOT met'} "
                f"(concurrent {m['mbps']:.0f} MB/s"
                + (f", sync {s['mbps']:.0f} MB/s" if "mbps" in s else "") + ")")
        else:
            lines.append(f"sequential DMA read at {largest} KiB: not judged (failed)")
    seq = sorted({(op, kib) for (v, s, op, kib) in by if s == "disk-seq"},
                 key=lambda k: (OPS.index(k[0]), k[1]))
    if any(v == "qemu" for (v, _, _, _) in by):
        behind, noisy, judged = [], [], 0
        for op, kib in seq:
            ours = by.get(("concurrent", "disk-seq", op, kib), {})
            theirs = by.get(("qemu", "disk-seq", op, kib), {})
            if "mbps" not in ours or "mbps" not in theirs:
                continue
            judged += 1
            if ours["mbps"] < theirs["mbps"]:
                text = f"{op} {kib} KiB ({ours['mbps']:.0f} vs {theirs['mbps']:.0f} MB/s)"
                behind.append(text)
                if _reps_overlap(ours, theirs, "mbps"):
                    noisy.append(f"{op} {kib} KiB")
        if not judged:
            lines.append(">= QEMU at every command size: not judged (no pair measured)")
        elif not behind:
            lines.append(f">= QEMU at every command size (concurrent, read and write): met "
                         f"({judged} of {judged})")
        else:
            note = (f"; within this host's noise (repetitions overlap): {', '.join(noisy)}"
                    if noisy else "")
            lines.append(f">= QEMU at every command size (concurrent, read and write): NOT "
                         f"met, behind at {', '.join(behind)}{note}")
    else:
        lines.append(">= QEMU at every command size: not judged (QEMU not measured)")
    return lines


PROFILE_ROWS = (
    ("command cycle, start to next start", "cycle_us", "us"),
    ("  its mean (outliers: host preemption)", "cycle_mean_us", "us"),
    ("  mean timed in the guest (TSC)", "guest_us_per_cmd", "us"),
    ("  bus-master start exit", "start_exit_us", "us"),
    ("  other exit handling", "other_exits_us", "us"),
    ("  in the guest and KVM (cycle - exits)", "guest_us", "us"),
    ("start -> IRQ 14 raised (transfer)", "transfer_us", "us"),
    ("IRQ 14 -> handler's first IDE access", "interrupt_us", "us"),
    ("exits per command", "exits_per_cmd", ""),
    ("  of which IDE registers", "ide_exits_per_cmd", ""),
    ("IRQ 14 raised per command", "irqs_per_cmd", ""),
)


def render_profile(profile: dict[str, Any], host_pvm: bool = False) -> list[str]:
    placements = profile["placements"]
    lines = [f"why: one traced pyhvm run per placement, {profile['op']} {profile['kib']} KiB "
             f"commands ({profile['mb']} MiB); per command, medians (counts: means); tracing "
             f"adds a little to every exit"]
    good = {k: p for k, p in placements.items() if "error" not in p}
    for name, p in placements.items():
        if "error" in p:
            lines.append(f"  {name}: no profile ({p['error']})")
    if not good:
        return lines
    rows = []
    for label, key, unit in PROFILE_ROWS:
        digits = 1 if unit else 2
        rows.append([label + (f" ({unit})" if unit else ""),
                     *(fmt_value(p.get(key), digits) for p in good.values())])
    table = common.format_table(["per command", *good], rows)
    lines += ["  " + line for line in table.splitlines()]
    if host_pvm:
        lines.append("  (on this kvm_pvm host the guest's CPL 0 driver and IRQ 14 handler run "
                     "in KVM's instruction emulator: part of 'in the guest and KVM')")
    copy = profile.get("host_copy_us")
    if copy is not None:
        lines.append(f"  host floor: preadv of {profile['kib']} KiB from the cached image into "
                     f"anonymous memory takes {copy:.1f} us")
    for name, p in good.items():
        top = list(p["exits_by_port_per_cmd"].items())[:TOP_PORTS]
        lines.append(f"  {name} exits per command: "
                     + ", ".join(f"{port} {n:g}" for port, n in top))
    return lines


def render(result: dict[str, Any]) -> str:
    """The plain-text report: MB/s per size, overlap, ratios, the profile, the goals."""
    runs = result["runs"]
    by = _by_config(result)
    first = runs[0]["config"]
    has_qemu = any(r["config"]["vmm"] == "qemu" for r in runs)
    variants = VARIANTS if has_qemu else DMA_MODES
    sources = sorted({r["metrics"]["tsc_source"] for r in runs if "tsc_source" in r["metrics"]})
    host = result["host"]
    header = (f"pyhvm bench ide: {first['reps']} repetitions interleaved, median (min-max), timed "
              f"in the guest with the TSC ({', '.join(sources) or '?'}; seconds at the "
              f"{host.get('tsc_khz_reference')} kHz {host.get('tsc_khz_reference_source')} "
              f"rate)\nimage: {first['image_mib']} MiB of random data in a temporary file, "
              f"page cache warm (no read reaches the disk; writes are timed before the "
              f"FLUSH CACHE), removed afterwards")
    ratios = result["ratios"]
    rows, failures = [], []
    seq = sorted({(op, kib) for (v, s, op, kib) in by if s == "disk-seq"},
                 key=lambda k: (OPS.index(k[0]), k[1]))
    for op, kib in seq:
        cells = [_spread(by.get((v, "disk-seq", op, kib)), "mbps") for v in variants]
        some = next((by[(v, "disk-seq", op, kib)] for v in variants
                     if "mbps" in by.get((v, "disk-seq", op, kib), {})), {})
        row = [op, str(kib) + (" (LBA48)" if kib > LBA28_MAX_KIB else ""),
               str(some.get("commands", "?")), *cells,
               common.fmt_ratio(ratios.get(f"{op}_{kib}k_concurrent_over_sync"))]
        if has_qemu:
            row += [common.fmt_ratio(ratios.get(f"{op}_{kib}k_concurrent_over_qemu")),
                    common.fmt_ratio(ratios.get(f"{op}_{kib}k_sync_over_qemu"))]
        if op == "read":
            copy = some.get("host_copy_us")
            row.append(fmt_value(kib * 1024 / copy, 0) if copy else "")
        else:
            row.append("")
        rows.append(row)
    for run in runs:
        if "error" in run["metrics"]:
            c = run["config"]
            failures.append(f"{c['variant']} {c['scenario']} {c['op']} {c['kib']} KiB failed: "
                            f"{run['metrics']['error']}")
    headers = ["op", "KiB/cmd", "cmds", *(f"{v} MB/s" for v in variants), "conc/sync"]
    if has_qemu:
        headers += ["conc/QEMU", "sync/QEMU"]
    headers.append("host preadv MB/s")
    lines = [header, "", "sequential DMA (disk-seq), MB/s = 10^6 bytes/s:",
             common.format_table(headers, rows)]
    asked = first["mb_asked"]
    other = [f"{kib} KiB {mb_for(kib, asked)}" for kib in sorted({k for _, k in seq})
             if mb_for(kib, asked) != asked]
    if other:
        lines.append(f"(MiB a run: {asked} as asked, but {', '.join(other)}: between "
                     f"{MIN_COMMANDS} and {MAX_COMMANDS} commands a run)")
    orows = []
    for run in runs:
        c, m = run["config"], run["metrics"]
        if c["scenario"] != "disk-overlap":
            continue
        name = [f"{c['kib']} KiB x {c['mb'] * 1024 // c['kib']}", c["variant"]]
        if "error" in m:
            orows.append([*name, "FAILED", "", "", "", "", ""])
            continue
        orows.append([*name, fmt_value(m["io_alone_ms"]), fmt_value(m["compute_alone_ms"]),
                      fmt_value(m["total_ms"]), _spread(m, "total_over_max", 2),
                      _spread(m, "total_over_sum", 2), fmt_value(m["overlap_pct"], 0)])
    lines += ["", "overlap (disk-overlap: DMA reads, then CPL 3 compute of the same length, "
              "then both at once; medians, ms):",
              common.format_table(["commands", "config", "I/O alone", "compute alone",
                                   "together", "total/max", "total/sum", "overlap %"], orows),
              "(total/max 1.00: perfect overlap; total/sum 1.00: none)"]
    if failures:
        lines += ["", *failures]
    lines += [""] + render_profile(result["profile"], bool(host.get("kvm_pvm")))
    lines += ["", "goals:", *(f"  {g}" for g in goals(result))]
    if not has_qemu:
        lines.append(f"  ({qemu_missing_note()})" if host.get("qemu") is None
                     else "  (QEMU not measured: --no-qemu)")
    load = [host.get("loadavg_1m_start"), host.get("loadavg_1m_end")]
    load_text = "" if None in load else \
        f"; load average (1 min) {load[0]:.2f} at start, {load[1]:.2f} at end"
    lines += ["", common.host_line(host) + load_text]
    return "\n".join(lines)


__all__ = ["Config", "Outcome", "SeqSample", "OverlapSample", "measure", "summarize",
           "render", "goals", "command_profile", "parse_sizes", "mb_for", "image_mib",
           "configurations", "qemu_command", "copy_us", "reference_tsc_khz"]
