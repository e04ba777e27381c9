"""`pyhvm bench mem`: what guest RAM's host backing and the guest's page size cost, on
pyhvm and on QEMU with the matching options, and the kernel MMU events that explain it.

Workloads are the guest kit's CPL 3 memory scenarios, each timed in the guest:
- `touch-4k`, `touch-2m`: mem-touch, the first write to each 4 KiB page of fresh RAM
  mapped with 4 KiB or 2 MiB guest pages (ns per page);
- `random-4k`, `random-2m`: mem-random, dependent random reads over a working set far
  beyond the TLB's reach (ns per read);
- `ptchurn`: mem-ptchurn, address-space switches, page-table writes and invlpg (ns per
  operation; the switch is the headline figure).
Backings: anon with and without THP, memfd, memfd with huge pages and hugetlbfs (when the
host has huge pages reserved; skipped with the reason otherwise), each with and without
--mem-prealloc. QEMU runs the backings it can express: its anonymous RAM is always
THP-advised (so it matches `anon+thp`), `-mem-prealloc`, `memory-backend-memfd`
(`hugetlb=on`), `memory-backend-file` on the hugetlbfs mount.

Every (workload, backing, VMM) runs `reps` times, interleaved, medians reported. Ratios:
each configuration against the best one for its workload, and pyhvm against QEMU with the
same backing. Where tracefs works (root), each run's kvmmmu events are counted
(trace/kvmmmu.py): faults by host mapping size, page-table pages built and thrown away,
resyncs; they say why one configuration is faster. A last section times the dirty-log
fetch (KVM_GET_DIRTY_LOG) on clean slots of growing size, in this process.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import memory_backing as mb
from . import common
from .common import BenchError, GuestRun, Outcome, fmt_value, rounded, succeeded

DEFAULT_REPS = 3
QUICK_REPS = 1
MIB = 1 << 20
GIB = 1 << 30
POOL_SLACK_MIB = 64           # the kernel, page-table pools, alignment
SLACK_S = 60.0                # beyond the guest's own work: boot, prealloc, a loaded host
QEMU_SLACK_S = 90.0
DIRTY_SLOT_SIZES = (64 * MIB, GIB, 4 * GIB)
DIRTY_FETCHES = 20
GOAL_VS_QEMU = 1.05           # the goal: pyhvm within 5 % of QEMU, same backing
SHOWN_COUNTS = ("faults_4k", "faults_2m", "mmu_pages_created", "mmu_pages_zapped",
                "unsyncs", "syncs", "guest_dirty_bits", "emulated_instructions")


@dataclass(frozen=True)
class Params:
    """The workloads' sizes (the guest's arguments)."""

    touch_mb: int = 256
    random_mb: int = 512
    reads: int = 2_000_000
    churn_n: int = 2000

    @property
    def ram_mib(self) -> int:
        """Guest RAM for every run: the largest working set and room for the kernel."""
        need = max(self.touch_mb, self.random_mb) + POOL_SLACK_MIB
        return need + need % 2


QUICK = Params(touch_mb=16, random_mb=32, reads=100_000, churn_n=50)


@dataclass(frozen=True)
class Workload:
    name: str
    scenario: str
    pages: str | None
    metric: str                          # the headline RESULT field (ns)
    extra: tuple[str, ...] = ()          # other ns fields reported

    def append(self, params: Params) -> str:
        if self.scenario == "mem-touch":
            return f"scenario=mem-touch mb={params.touch_mb} pages={self.pages}"
        if self.scenario == "mem-random":
            return (f"scenario=mem-random mb={params.random_mb} pages={self.pages} "
                    f"reads={params.reads}")
        return f"scenario=mem-ptchurn n={params.churn_n}"


WORKLOADS = (
    Workload("touch-4k", "mem-touch", "4k", "ns_per_page", ("retouch_ns_per_page",)),
    Workload("touch-2m", "mem-touch", "2m", "ns_per_page", ("retouch_ns_per_page",)),
    Workload("random-4k", "mem-random", "4k", "ns_per_read"),
    Workload("random-2m", "mem-random", "2m", "ns_per_read"),
    Workload("ptchurn", "mem-ptchurn", None, "switch_ns",
             ("syscall_ns", "pte_write_ns", "map_cycle_ns", "invlpg_ns")),
)
WORKLOAD_NAMES = tuple(w.name for w in WORKLOADS)


@dataclass(frozen=True)
class Backing:
    """Host memory behind guest RAM, as `pyhvm run` options name it."""

    name: str
    kind: str          # anon, memfd, memfd-huge, hugetlbfs
    thp: bool
    prealloc: bool

    @property
    def hugetlb(self) -> bool:
        return self.kind in ("memfd-huge", "hugetlbfs")


BACKINGS = tuple(
    Backing(f"{name}{'+prealloc' if pre else ''}", kind, thp, pre)
    for name, kind, thp in (("anon", "anon", False), ("anon+thp", "anon", True),
                            ("memfd", "memfd", True), ("memfd-huge", "memfd-huge", False),
                            ("hugetlbfs", "hugetlbfs", False))
    for pre in (False, True))
BACKING_NAMES = tuple(b.name for b in BACKINGS)


@dataclass(frozen=True)
class Config:
    vmm: str           # "pyhvm" or "qemu"
    backing: Backing
    workload: Workload

    @property
    def label(self) -> str:
        return f"{self.workload.name} {self.vmm} {self.backing.name}"


@dataclass(frozen=True)
class Sample:
    """One guest run: its ns figures as the guest computed them, and what explains them."""

    values: dict[str, float]
    tsc_khz: int
    tsc_source: str
    wall_s: float
    mmu: dict[str, int] | None = None          # kvmmmu counts (trace/kvmmmu.py)
    memory: dict[str, Any] | None = None       # pyhvm --stats "memory": host pages used


# --- command lines ----------------------------------------------------------------------------
def pyhvm_backing_args(backing: Backing, hugetlbfs: str | None) -> list[str]:
    """`pyhvm run` options for `backing`."""
    spec = {"anon": "anon", "memfd": "memfd", "memfd-huge": "memfd,hugepages=on",
            "hugetlbfs": f"hugetlbfs:{hugetlbfs}"}[backing.kind]
    args = ["--mem-backing", spec]
    if not backing.hugetlb:
        args += ["--mem-thp", "on" if backing.thp else "off"]
    if backing.prealloc:
        args.append("--mem-prealloc")
    return args


def qemu_backing_args(backing: Backing, ram_mib: int, hugetlbfs: str | None
                      ) -> list[str] | None:
    """QEMU's options for the same backing, or None where QEMU has no match (anonymous
    RAM without THP: QEMU advises THP on all its RAM)."""
    pre = ",prealloc=on" if backing.prealloc else ""
    if backing.kind == "anon":
        if not backing.thp:
            return None
        return ["-mem-prealloc"] if backing.prealloc else []
    if backing.kind == "memfd":
        obj = f"memory-backend-memfd,id=ram0,size={ram_mib}M{pre}"
    elif backing.kind == "memfd-huge":
        obj = f"memory-backend-memfd,id=ram0,size={ram_mib}M,hugetlb=on{pre}"
    else:
        obj = f"memory-backend-file,id=ram0,size={ram_mib}M,mem-path={hugetlbfs},share=on{pre}"
    return ["-object", obj, "-machine", "memory-backend=ram0"]


def pyhvm_command(kernel: Path, append: str, backing: Backing, ram_mib: int,
                  hugetlbfs: str | None) -> list[str]:
    return [*common.pyhvm_command(), "run", "--kernel", str(kernel), "--append", append,
            "-m", f"{ram_mib}M", *pyhvm_backing_args(backing, hugetlbfs)]


def qemu_command(kernel: Path, append: str, backing: Backing, ram_mib: int,
                 hugetlbfs: str | None) -> list[str]:
    args = qemu_backing_args(backing, ram_mib, hugetlbfs)
    if args is None:
        raise BenchError(f"QEMU has no equivalent of the {backing.name} backing")
    return [common.QEMU, "-enable-kvm", "-cpu", "qemu64", "-m", f"{ram_mib}M", *args,
            "-kernel", str(kernel), "-append", append,
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-serial", "stdio",
            "-display", "none", "-no-reboot"]


def command_text(config: Config, kernel: Path, params: Params, hugetlbfs: str | None) -> str:
    build = pyhvm_command if config.vmm == "pyhvm" else qemu_command
    command = build(kernel, config.workload.append(params), config.backing, params.ram_mib,
                    hugetlbfs)
    return shlex.join([Path(command[0]).name, *command[1:]])


# --- what the host offers ---------------------------------------------------------------------
def find_hugetlbfs(mounts: str = mb.MOUNTS) -> str | None:
    """A hugetlbfs mount point of the default huge page size, from /proc/mounts."""
    try:
        with open(mounts) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "hugetlbfs":
                    return parts[1]
    except OSError:
        pass
    return None


def unavailable(backing: Backing, ram_bytes: int, hugetlbfs: str | None) -> str | None:
    """Why `backing` cannot run here (one line), or None."""
    try:
        if backing.kind == "hugetlbfs" and hugetlbfs is None:
            return ("no hugetlbfs is mounted (mount -t hugetlbfs none /dev/hugepages, or "
                    "give --hugetlbfs DIR)")
        if backing.hugetlb:
            size = (os.statvfs(hugetlbfs).f_bsize if backing.kind == "hugetlbfs" and hugetlbfs
                    else mb.default_huge_page_size())
            mb.check_huge_pages(ram_bytes, size)
        spec = mb.BackingSpec("anon", prealloc=backing.prealloc)
        mb.check_host_memory(ram_bytes, spec)
    except mb.BackingError as err:
        return str(err)
    except OSError as err:
        return f"{hugetlbfs}: {err.strerror or err}"
    return None


def configurations(workloads: Sequence[Workload], backings: Sequence[Backing], qemu: bool
                   ) -> list[Config]:
    """Workload by workload, so the runs compared with each other run close in time."""
    configs = []
    for workload in workloads:
        for backing in backings:
            configs.append(Config("pyhvm", backing, workload))
            if qemu and qemu_backing_args(backing, 0, "/x") is not None:
                configs.append(Config("qemu", backing, workload))
    return configs


def parse_list(text: str, known: Sequence[str], what: str) -> tuple[str, ...]:
    """`a,b` -> ('a', 'b') in the order `known` lists them; ValueError for unknown names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"unknown {what} {', '.join(unknown) or '(none given)'}: choose "
                         f"from {','.join(known)}")
    return tuple(n for n in known if n in names)


# --- one run ----------------------------------------------------------------------------------
def sample_from(run: GuestRun, workload: Workload, params: Params,
                mmu: dict[str, int] | None = None, memory: dict[str, Any] | None = None
                ) -> Sample:
    """The guest's RESULT line for `workload`, checked against what was asked."""
    result = common.find_result(run.output, workload.scenario)
    if result.number("cpl") != 3:
        raise BenchError(f"{workload.scenario} did not run at CPL 3")
    if workload.pages and result.fields.get("pages") != workload.pages:
        raise BenchError(f"the guest ran pages={result.fields.get('pages')}, not "
                         f"{workload.pages}")
    if "mismatches" in result.fields and result.number("mismatches"):
        raise BenchError(f"{workload.scenario}: {result.fields['mismatches']} pages did not "
                         "keep what the guest wrote")
    values = {}
    for key in (workload.metric, *workload.extra):
        text = result.fields.get(key)
        try:
            values[key] = float(text) if text is not None else math.nan
        except ValueError:
            raise BenchError(f"RESULT {workload.scenario} {key}={text!r} is not a number") \
                from None
        if not values[key] > 0:
            raise BenchError(f"RESULT {workload.scenario} has no positive {key}=")
    return Sample(values, result.number("tsc_khz"), result.fields.get("tsc_source", "?"),
                  run.wall_s, mmu, memory)


def _timeout(workload: Workload, params: Params, slack: float) -> float:
    if workload.scenario == "mem-ptchurn":
        return slack + params.churn_n * 0.002  # a few emulated system calls per operation
    return slack


def run_pyhvm(kernel: Path, config: Config, params: Params, hugetlbfs: str | None,
              tmp: Path) -> tuple[GuestRun, dict[str, Any] | None]:
    stats_path = tmp / "stats.json"
    stats_path.unlink(missing_ok=True)
    run = common.run_guest_pyhvm(
        kernel, config.workload.append(params),
        max_seconds=_timeout(config.workload, params, SLACK_S),
        extra_args=["-m", f"{params.ram_mib}M",
                    *pyhvm_backing_args(config.backing, hugetlbfs),
                    "--stats", str(stats_path)])
    try:
        memory = json.loads(stats_path.read_text()).get("memory")
    except (OSError, ValueError, AttributeError):
        memory = None
    return run, memory


def run_qemu(kernel: Path, config: Config, params: Params, hugetlbfs: str | None
             ) -> GuestRun:
    append = config.workload.append(params)
    command = qemu_command(kernel, append, config.backing, params.ram_mib, hugetlbfs)
    timeout = _timeout(config.workload, params, QEMU_SLACK_S)
    start = time.monotonic()
    try:
        proc = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"qemu did not end within {timeout:.0f} s") from None
    run = GuestRun(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                   proc.stderr.decode("utf-8", "replace"), time.monotonic() - start)
    common.check_guest_run(f"qemu ({config.backing.name})", run, append)
    if not common.parse_results(run.output):
        tail = " ".join(run.stderr.strip().split())[-common.STDERR_TAIL:]
        raise BenchError(f"qemu ended with status {run.status} and no RESULT line"
                         + (f": {tail}" if tail else ""))
    return run


class MmuCounting:
    """kvmmmu counts around each run, where tracefs works; `reason` says why not."""

    def __init__(self, enabled: bool) -> None:
        self.reason: str | None = None if enabled else "not asked for (--no-kvmmmu)"
        if enabled:
            from ..trace import tracefs

            self.reason = tracefs.unavailable_reason(mount=True)

    def around(self, run: Callable[[], Any]) -> tuple[Any, dict[str, int] | None]:
        if self.reason is not None:
            return run(), None
        from ..trace import kvmmmu, tracefs

        capture = kvmmmu.MmuCapture([os.getpid()])
        try:
            capture.start()
        except tracefs.KernelTraceUnavailable as err:
            self.reason = str(err)
            return run(), None
        try:
            result = run()
        finally:
            capture.stop()
        return result, capture.result()["counts"]


def measure(reps: int = DEFAULT_REPS, params: Params = Params(),
            workloads: Sequence[str] = WORKLOAD_NAMES, backings: Sequence[str] = BACKING_NAMES,
            kernel: str | None = None, qemu: bool = True, hugetlbfs: str | None = None,
            kvmmmu: bool = True, dirty_log: bool = True, show_progress: bool = False
            ) -> dict[str, Any]:
    """Run every configuration, interleaved; the JSON envelope with the explanations."""
    if reps < 1:
        raise BenchError("--reps must be at least 1")
    common.require_kvm()
    elf = common.guestkit_path(kernel)
    hugetlbfs = hugetlbfs or find_hugetlbfs()
    chosen_workloads = [w for w in WORKLOADS if w.name in workloads]
    chosen_backings = [b for b in BACKINGS if b.name in backings]
    configs = configurations(chosen_workloads, chosen_backings, qemu)
    outcomes: dict[Config, Outcome[Sample]] = {config: Outcome() for config in configs}
    ram = params.ram_mib * MIB
    skipped = {}
    for backing in chosen_backings:
        reason = unavailable(backing, ram, hugetlbfs)
        if reason:
            skipped[backing.name] = reason
    for config in configs:
        if config.backing.name in skipped:
            outcomes[config].error = f"skipped: {skipped[config.backing.name]}"
        elif config.vmm == "qemu" and shutil.which(common.QEMU) is None:
            outcomes[config].error = (f"{common.QEMU} is not installed "
                                      "(apt-get install qemu-system-x86)")
    counting = MmuCounting(kvmmmu)
    progress = common.stderr_progress(show_progress, "bench mem")
    load_before = common.loadavg()
    with tempfile.TemporaryDirectory(prefix="pyhvm-bench-mem-") as tmp:
        def one(config: Config, rep: int) -> None:
            outcome = outcomes[config]
            if outcome.error is not None:
                return
            try:
                if config.vmm == "pyhvm":
                    (run, memory), mmu = counting.around(
                        lambda: run_pyhvm(elf, config, params, hugetlbfs, Path(tmp)))
                else:
                    run, mmu = counting.around(lambda: run_qemu(elf, config, params,
                                                                hugetlbfs))
                    memory = None
                outcome.samples.append(sample_from(run, config.workload, params, mmu,
                                                   memory))
            except (BenchError, OSError) as err:
                outcome.error = f"rep {rep + 1}: {err}"

        try:
            common.interleave(configs, reps, one, progress, label=lambda c: c.label)
        finally:
            common.clear_progress(progress)
    if configs and all(o.error is not None for o in outcomes.values()):
        first = outcomes[configs[0]]
        raise BenchError(f"every configuration failed; {configs[0].label}: {first.error}")
    dirty = measure_dirty_log() if dirty_log else {"error": "not asked for (--no-dirty-log)"}
    host = common.host_info(
        loadavg_1m_start=load_before, loadavg_1m_end=common.loadavg(),
        thp_enabled=mb.thp_mode("enabled"), thp_defrag=mb.thp_mode("defrag"),
        thp_shmem=mb.thp_mode("shmem_enabled"),
        huge_pages={f"{p.page_size >> 10}kB": {"total": p.total, "free": p.free}
                    for p in (mb.huge_pool(mb.default_huge_page_size()),)},
        hugetlbfs=hugetlbfs, kvmmmu=counting.reason or "counted")
    return summarize(outcomes, params=params, reps=reps, kernel=elf, host=host,
                     hugetlbfs=hugetlbfs, dirty_log=dirty)


# --- the dirty log ----------------------------------------------------------------------------
def measure_dirty_log(sizes: Sequence[int] = DIRTY_SLOT_SIZES, fetches: int = DIRTY_FETCHES
                      ) -> dict[str, Any]:
    """Microseconds per KVM_GET_DIRTY_LOG on a logged slot with nothing dirty, per slot
    size, and for decoding the bitmap (count and dirty ranges) with numpy; in this
    process, on a VM with no vCPU (nothing runs: the figures are the fetch's own cost)."""
    from ..kvm import Kvm, KvmError
    from ..memory import GuestMemory
    from ..memory_dirty import DirtyLog

    rows = []
    try:
        kvm = Kvm()
    except KvmError as err:
        return {"error": str(err)}
    memory = GuestMemory()
    try:
        vm = kvm.create_vm()
        log = DirtyLog(vm)
        gpa = 0
        for size in sizes:
            region = memory.add_region(gpa, size)
            vm.set_user_memory_region(region.slot, region.gpa, region.size,
                                      region.host_address)
            log.enable(region)
            times, decode = [], []
            for _ in range(fetches):
                t0 = time.perf_counter_ns()
                bitmap = log.fetch(region)
                t1 = time.perf_counter_ns()
                bitmap.count()
                bitmap.ranges()
                decode.append(time.perf_counter_ns() - t1)
                times.append(t1 - t0)
            rows.append({"slot_bytes": size, "pages": size // 4096,
                         "fetch_us": round(common.median(times) / 1000, 2),
                         "fetch_us_reps": [round(t / 1000, 2) for t in times],
                         "decode_us": round(common.median(decode) / 1000, 2)})
            gpa += max(size, 4 * GIB)
        log.close()
        vm.close()
    except (KvmError, OSError, mb.BackingError) as err:
        return {"error": str(err), "slots": rows}
    finally:
        memory.close()
        kvm.close()
    return {"fetches": fetches, "slots": rows}


# --- the figures ------------------------------------------------------------------------------
def _median_rep(samples: Sequence[Sample], key: str) -> int:
    order = sorted(range(len(samples)), key=lambda i: samples[i].values[key])
    return order[(len(order) - 1) // 2]


def corrected(sample: Sample, key: str, ref_khz: int) -> float:
    """A guest ns figure re-timed with the reference TSC rate (the guest computed it with
    its own rate, which a QEMU guest calibrates against the PIT)."""
    if ref_khz <= 0 or sample.tsc_khz <= 0:
        return sample.values[key]
    return sample.values[key] * sample.tsc_khz / ref_khz


def summarize(outcomes: dict[Config, Outcome], *, params: Params, reps: int, kernel: Path,
              host: dict[str, Any], hugetlbfs: str | None, dirty_log: dict[str, Any]
              ) -> dict[str, Any]:
    """Runs, ratios, the best configuration per workload and the default's verdict; no
    KVM needed (unit-tested)."""
    every = [s for o in outcomes.values() if succeeded(o) for s in o.samples]
    ref_khz, ref_source = common.reference_tsc_khz(every) if every else (0, "none")
    headline: dict[Config, float] = {}
    headline_reps: dict[Config, list[float]] = {}
    runs = []
    for config, outcome in outcomes.items():
        w = config.workload
        entry = {"vmm": config.vmm, "backing": config.backing.name,
                 "workload": w.name, "metric": w.metric, "reps": reps,
                 "ram_mib": params.ram_mib}
        try:
            entry["command"] = command_text(config, kernel, params, hugetlbfs)
        except BenchError:
            pass
        if not succeeded(outcome):
            runs.append(common.run_entry(entry, {"error": outcome.error or "no repetition ran",
                                                 "reps_ok": len(outcome.samples)}))
            continue
        samples = outcome.samples
        metrics: dict[str, Any] = {}
        for key in (w.metric, *w.extra):
            metrics.update(common.metric(key, [corrected(s, key, ref_khz) for s in samples], 2))
        headline[config] = metrics[w.metric]
        headline_reps[config] = metrics[f"{w.metric}_reps"]
        metrics.update(common.metric("wall_s", [s.wall_s for s in samples], 2))
        median = samples[_median_rep(samples, w.metric)]
        metrics["tsc_khz"] = median.tsc_khz
        metrics["tsc_source"] = median.tsc_source
        if median.mmu is not None:
            metrics["kvmmmu"] = median.mmu
        if median.memory is not None:
            metrics["host_memory"] = {k: median.memory.get(k) for k in
                                      ("backing", "rss_bytes", "anon_huge_bytes",
                                       "shmem_pmd_bytes", "hugetlb_bytes")}
        runs.append(common.run_entry(entry, metrics))

    ratios: dict[str, float | None] = {}
    best: dict[str, dict[str, Any]] = {}
    for workload in {c.workload for c in outcomes}:
        mine = {c: v for c, v in headline.items() if c.workload == workload}
        if not mine:
            continue
        top = min(mine, key=lambda c: mine[c])
        best[workload.name] = {"vmm": top.vmm, "backing": top.backing.name,
                               workload.metric: mine[top]}
        for config, value in mine.items():
            ratios[f"{workload.name}:{config.vmm}:{config.backing.name}_over_best"] = \
                rounded(common.ratio(value, mine[top]))
            if config.vmm == "pyhvm":
                theirs = mine.get(Config("qemu", config.backing, workload))
                if theirs is not None:
                    ratios[f"{workload.name}:pyhvm_over_qemu:{config.backing.name}"] = \
                        rounded(common.ratio(value, theirs))
    for run in runs:
        c = run["config"]
        key = f"{c['workload']}:{c['vmm']}:{c['backing']}_over_best"
        if key in ratios:
            run["metrics"]["over_best"] = ratios[key]
    host = {**host, "tsc_khz_reference": ref_khz, "tsc_khz_reference_source": ref_source}
    result = common.envelope("mem", host, runs, dict(sorted(ratios.items())))
    result["params"] = {"touch_mb": params.touch_mb, "random_mb": params.random_mb,
                        "reads": params.reads, "churn_n": params.churn_n,
                        "ram_mib": params.ram_mib, "reps": reps}
    result["best"] = best
    result["default"] = default_verdict(headline_reps)
    result["dirty_log"] = dirty_log
    return result


def default_verdict(reps: dict[Config, list[float]]) -> dict[str, Any]:
    """Which out-of-the-box backing the figures favour: pyhvm's anon RAM with and without
    THP (no prealloc: a default must not commit all RAM at start). Per workload the ratio
    of medians thp/no-thp (below 1: THP is faster); a workload counts toward the verdict
    only where the two configurations' repetitions do not overlap (a difference the
    host's noise cannot explain). The verdict is the geometric mean of those ratios."""
    ratios, counted = {}, []
    for config, values in reps.items():
        if config.vmm != "pyhvm" or config.backing.name != "anon+thp":
            continue
        plain = reps.get(Config("pyhvm", replace(config.backing, name="anon", thp=False),
                                config.workload))
        if not plain or not values:
            continue
        ratio = common.median(values) / common.median(plain)
        ratios[config.workload.name] = round(ratio, 3)
        if max(values) < min(plain) or max(plain) < min(values):
            counted.append((config.workload.name, ratio))
    out: dict[str, Any] = {"current": "anon thp=on" if mb.DEFAULT_THP else "anon thp=off",
                           "thp_over_no_thp": dict(sorted(ratios.items())),
                           "significant": sorted(name for name, _ in counted)}
    if not counted:
        out["favoured"] = None
        return out
    gmean = math.exp(sum(math.log(r) for _, r in counted) / len(counted))
    out["thp_over_no_thp_gmean"] = round(gmean, 3)
    out["favoured"] = "anon thp=on" if gmean < 1 else "anon thp=off"
    out["agrees"] = out["favoured"] == out["current"]
    return out


# --- the report -------------------------------------------------------------------------------
def _count(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:.1f}M" if value >= 10_000_000 else \
        f"{value / 1e3:.0f}k" if value >= 100_000 else str(value)


def failure_lines(failures: Sequence[tuple[str, str, str, str]]) -> list[str]:
    """(vmm, backing, workload, error) grouped: one line per backing and error, naming
    the VMMs and workloads it hit (a skipped backing is one line, not one per run)."""
    groups: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for vmm, backing, workload, error in failures:
        vmms, workloads = groups.setdefault((backing, error), ([], []))
        if vmm not in vmms:
            vmms.append(vmm)
        if workload not in workloads:
            workloads.append(workload)
    return [f"{backing} ({', '.join(vmms)}; {', '.join(workloads)}): {error}"
            for (backing, error), (vmms, workloads) in groups.items()]


def render(result: dict[str, Any]) -> str:
    p = result["params"]
    lines = [f"pyhvm bench mem: guest kit memory scenarios at CPL 3, {p['reps']} repetitions "
             f"interleaved, medians (min-max), ns per operation timed in the guest; "
             f"{p['ram_mib']} MiB guests",
             f"touch mb={p['touch_mb']}, random mb={p['random_mb']} reads={p['reads']}, "
             f"ptchurn n={p['churn_n']}; x best = the median over the best configuration's "
             "for the workload", ""]
    failures: list[tuple[str, str, str, str]] = []
    by_workload: dict[str, list[dict[str, Any]]] = {}
    for run in result["runs"]:
        by_workload.setdefault(run["config"]["workload"], []).append(run)
    for name in WORKLOAD_NAMES:
        runs = by_workload.get(name)
        if not runs:
            continue
        metric = runs[0]["config"]["metric"]
        rows = []
        ok = [r for r in runs if "error" not in r["metrics"]]
        for run in sorted(ok, key=lambda r: r["metrics"][metric]):
            c, m = run["config"], run["metrics"]
            counts = m.get("kvmmmu") or {}
            mem = m.get("host_memory") or {}
            huge = (mem.get("anon_huge_bytes") or 0) + (mem.get("hugetlb_bytes") or 0) + \
                (mem.get("shmem_pmd_bytes") or 0)
            rows.append([c["vmm"], c["backing"],
                         common.fmt_spread(m[f"{metric}_reps"], 1),
                         fmt_value(m.get("over_best"), 2),
                         fmt_value(m["wall_s"], 1),
                         f"{_count(counts.get('faults_4k'))}/{_count(counts.get('faults_2m'))}"
                         if counts else "-",
                         f"{_count(counts.get('mmu_pages_created'))}/"
                         f"{_count(counts.get('mmu_pages_zapped'))}" if counts else "-",
                         f"{_count(counts.get('unsyncs'))}/{_count(counts.get('syncs'))}"
                         if counts else "-",
                         f"{huge >> 20}M" if mem else "-"])
        for run in runs:
            if "error" in run["metrics"]:
                c = run["config"]
                failures.append((c["vmm"], c["backing"], name, run["metrics"]["error"]))
        lines.append(f"{name} ({metric})")
        if rows:
            table = common.format_table(
                ["vmm", "backing", "ns", "x best", "wall s", "faults 4k/2m",
                 "MMU pages new/zapped", "unsync/sync", "huge host"], rows)
            lines += ["  " + line for line in table.splitlines()]
        else:
            lines.append("  no configuration ran")
        lines.append("")
    churn = [r for r in by_workload.get("ptchurn", []) if "error" not in r["metrics"]]
    if churn:
        keys = ("syscall_ns", "switch_ns", "pte_write_ns", "map_cycle_ns", "invlpg_ns")
        rows = [[r["config"]["vmm"], r["config"]["backing"],
                 *(fmt_value(r["metrics"].get(k), 1) for k in keys)] for r in churn]
        lines.append("ptchurn, every operation (ns; the system call is CPL 0, emulated on "
                     "kvm_pvm hosts: switch, map cycle and invlpg include it)")
        lines += ["  " + line for line in common.format_table(
            ["vmm", "backing", "syscall", "switch", "pte write", "map cycle", "invlpg"],
            rows).splitlines()]
        lines.append("")
    vs = {k: v for k, v in result["ratios"].items() if ":pyhvm_over_qemu:" in k}
    if vs:
        lines.append(f"pyhvm / QEMU, same backing (goal: at most {GOAL_VS_QEMU:.2f})")
        rows = [[k.split(":")[0], k.split(":")[2], fmt_value(v, 3),
                 "" if v is None else ("met" if v <= GOAL_VS_QEMU else "NOT met")]
                for k, v in sorted(vs.items())]
        lines += ["  " + line for line in common.format_table(
            ["workload", "backing", "ratio", "goal"], rows).splitlines()]
        lines.append("")
    d = result["default"]
    per = ", ".join(f"{w} {r:.2f}{'' if w in d['significant'] else ' (within noise)'}"
                    for w, r in d["thp_over_no_thp"].items())
    if d.get("favoured"):
        lines.append(f"default: {d['current']}; anon+thp over anon: {per}; geometric mean of "
                     f"the significant ones {d['thp_over_no_thp_gmean']:.2f} -> the figures "
                     f"favour {d['favoured']}"
                     f"{'' if d['agrees'] else ' (NOT the current default)'}")
    elif per:
        lines.append(f"default: {d['current']}; anon+thp over anon: {per}: no difference "
                     "beyond the noise, not judged")
    else:
        lines.append(f"default: {d['current']} (not judged: anon and anon+thp not both "
                     "measured)")
    dl = result["dirty_log"]
    if dl.get("slots"):
        lines += ["", f"dirty log: KVM_GET_DIRTY_LOG on a logged slot, nothing dirty "
                      f"(median of {dl.get('fetches', '?')}), and decoding its bitmap"]
        rows = [[f"{s['slot_bytes'] >> 20} MiB", str(s["pages"]), fmt_value(s["fetch_us"], 1),
                 fmt_value(s["decode_us"], 1)] for s in dl["slots"]]
        lines += ["  " + line for line in common.format_table(
            ["slot", "pages", "fetch us", "count+ranges us"], rows).splitlines()]
    if dl.get("error"):
        lines.append(f"dirty log: {dl['error']}")
    if failures:
        lines += ["", *failure_lines(failures)]
    host = result["host"]
    lines += ["", common.host_line(host),
              f"THP {host.get('thp_enabled')} (defrag {host.get('thp_defrag')}, shmem "
              f"{host.get('thp_shmem')}); huge pages {host.get('huge_pages')}; hugetlbfs "
              f"{host.get('hugetlbfs') or 'not mounted'}; kvmmmu counts: {host.get('kvmmmu')}; "
              f"load average {host.get('loadavg_1m_start')} -> {host.get('loadavg_1m_end')}"]
    return "\n".join(lines)


__all__ = ["BACKINGS", "Backing", "Config", "Outcome", "Params", "QUICK", "Sample",
           "WORKLOADS", "Workload", "configurations", "default_verdict", "measure",
           "measure_dirty_log", "parse_list", "pyhvm_backing_args", "qemu_backing_args",
           "render", "sample_from", "summarize", "unavailable"]
