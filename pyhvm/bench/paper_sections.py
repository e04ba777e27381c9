"""The table behind `pyhvm bench paper`: one entry per section (a benchmark module, what
the paper claims, the parameters of a quick and a full run, how to pick the headline ratio
from that benchmark's JSON, and the traced runs that show why).

A section is data, so adding a benchmark is adding one entry: the runner imports the
module by name when the section runs (a module that does not exist yet makes the section
"not run", with the reason), calls its `measure(**params)` with the parameters its
signature accepts, and hands the JSON it returns to the entry's `headline`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from . import common

HeadlineFn = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Claim:
    """What the paper (or its Xen commit) says about this optimization."""

    text: str
    figure: str | None = None        # "+10 %", "> 10x", ... None: the paper gives none
    threshold: float | None = None   # the headline ratio at which the figure is reached


@dataclass(frozen=True)
class FromModule:
    """A parameter taken from the benchmark module when it runs (its QUICK sizes, say):
    the table is read before the module is imported, and the module may not exist."""

    attr: str


@dataclass(frozen=True)
class TracePlan:
    """Two short traced pyhvm runs of one guest scenario, "before" and "after".
    `setup` says what else a run needs: "plain", "disk" (an IDE image) or "net" (a host
    echo peer on a -netdev dgram socket)."""

    append: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    events: str = "exits,irq"
    setup: str = "plain"
    append_attr: str | None = None   # take `append` from this attribute of the module


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    kind: str                        # "optimization" (a placement switch) or "context"
    module: str                      # imported when the section runs
    claim: Claim
    before: str                      # the placement labels, as a user types them
    after: str
    quick: dict[str, Any]            # keyword arguments of module.measure
    full: dict[str, Any]
    headline: HeadlineFn
    estimate_s: tuple[float, float]  # rough seconds (quick, full) on the project's hosts
    trace: TracePlan | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def params(self, quick: bool) -> dict[str, Any]:
        return dict(self.quick if quick else self.full)

    def estimate(self, quick: bool) -> float:
        return self.estimate_s[0 if quick else 1]


# --- picking numbers out of a benchmark's JSON -----------------------------------------------
def find_run(result: dict[str, Any], **config: Any) -> dict[str, Any] | None:
    """The metrics of the first run whose config has every key=value given."""
    for run in result.get("runs", []):
        if all(run.get("config", {}).get(k) == v for k, v in config.items()):
            return run.get("metrics")
    return None


def per_rep(numerator: dict[str, Any] | None, denominator: dict[str, Any] | None,
            key: str) -> list[float]:
    """The ratio of one figure, repetition by repetition: configurations measured in the
    same round (interleaved) are paired. Empty where either side lacks the repetitions."""
    if not numerator or not denominator:
        return []
    top, bottom = numerator.get(f"{key}_reps") or [], denominator.get(f"{key}_reps") or []
    if len(top) != len(bottom):
        return []
    return [round(a / b, 4) for a, b in zip(top, bottom)
            if a is not None and b is not None and b > 0]


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    value = common.ratio(float(a), float(b))
    return None if value is None else round(value, 4)


def headline(what: str, key: str, value: float | None, reps: Sequence[float], style: str,
             qemu: dict[str, Any] | None = None, also: Sequence[dict[str, Any]] = (),
             note: str | None = None, noise: float | None = None) -> dict[str, Any]:
    """The JSON form of a headline: `style` is "x" (times) or "gain" (+x %); `noise`, where
    the benchmark measures it, the ratio (>= 1) that runs doing the same work differed by."""
    return {"what": what, "key": key, "value": value, "reps": list(reps), "style": style,
            "qemu": qemu, "also": list(also), "note": note, "noise": noise}


def qemu_beside(what: str, pyhvm: float | None, qemu: float | None, unit: str,
                pyhvm_reps: Sequence[float] = (), qemu_reps: Sequence[float] = ()
                ) -> dict[str, Any]:
    """The same figure for pyhvm's "after" and for QEMU, side by side."""
    return {"what": what, "pyhvm": pyhvm, "qemu": qemu, "unit": unit,
            "pyhvm_reps": list(pyhvm_reps), "qemu_reps": list(qemu_reps)}


def qemu_beside_runs(what: str, ours: dict[str, Any] | None, theirs: dict[str, Any] | None,
                     key: str, unit: str) -> dict[str, Any] | None:
    """`qemu_beside` for metric `key` of pyhvm's "after" run and QEMU's run, with their
    repetitions; None when QEMU did not run."""
    if not theirs:
        return None
    mine = ours or {}
    return qemu_beside(what, mine.get(key), theirs.get(key), unit,
                       mine.get(f"{key}_reps") or [], theirs.get(f"{key}_reps") or [])


def verdict(section: Section, head: dict[str, Any]) -> str:
    """One honest sentence: the measured ratio against the paper's figure, and whether
    the repetitions even agree on the direction."""
    value, reps = head.get("value"), head.get("reps") or []
    if value is None:
        return "not measured"
    straddles = bool(reps) and min(reps) <= 1.0 <= max(reps)
    noise = "; the repetitions straddle 1.0, so this is within the run's noise" \
        if straddles else ""
    gauge = head.get("noise")
    if not noise and gauge and gauge > 1 and value > 0 \
            and abs(math.log(value)) <= math.log(gauge):
        noise = (f"; but runs doing the same work differed by up to {(gauge - 1) * 100:.0f} % "
                 f"in this run, so this is within its noise")
    if section.kind != "optimization":
        return "context for the ratios above, not a claim of the paper" + noise
    claim = section.claim
    if value <= 1.0:
        return "not reproduced: the 'after' placement is not ahead here" + noise
    if claim.threshold is None:
        return "same direction as the paper (which gives no figure)" + noise
    if value >= claim.threshold:
        return f"reproduced: at least the paper's {claim.figure}" + noise
    return f"same direction, smaller than the paper's {claim.figure}" + noise


# --- headlines per benchmark -----------------------------------------------------------------
def pic_headline(result: dict[str, Any]) -> dict[str, Any]:
    hz = (result.get("profile") or {}).get("hz") or max(
        (r["config"].get("hz", 0) for r in result.get("runs", [])), default=0)
    key = f"kernel_over_user_work_{hz}hz"
    kern = find_run(result, vmm="pyhvm", irqchip="kernel", hz=hz)
    user = find_run(result, vmm="pyhvm", irqchip="user", hz=hz)
    q_kern = find_run(result, vmm="qemu", irqchip="kernel", hz=hz)
    q_user = find_run(result, vmm="qemu", irqchip="user", hz=hz)
    qemu = None
    if q_kern or q_user:
        qemu = qemu_beside(f"work gained at {hz} Hz by the in-kernel placement",
                           result["ratios"].get(key),
                           result["ratios"].get(f"qemu_kernel_over_user_work_{hz}hz"), "gain",
                           per_rep(kern, user, "mwork_per_s"),
                           per_rep(q_kern, q_user, "mwork_per_s"))
    also = [{"what": f"compute lost to the timer at {hz} Hz, {p}", "unit": "%",
             "value": (m or {}).get("overhead_pct")}
            for p, m in (("pyhvm --irqchip user", user), ("pyhvm --irqchip kernel", kern),
                         ("QEMU kernel-irqchip=off", q_user),
                         ("QEMU kernel-irqchip=on", q_kern)) if m]
    noise = result["ratios"].get("noise_0hz_max_over_min")
    note = None if noise is None else (
        f"noise gauge: the 0 Hz runs, all doing the same work, differ by up to "
        f"{(noise - 1) * 100:.1f} %")
    return headline(f"guest work done while the PIT ticks at {hz} Hz, PIC/PIT in KVM over "
                    f"PIC/PIT in pyhvm", key, result["ratios"].get(key),
                    per_rep(kern, user, "mwork_per_s"), "gain", qemu, also, note, noise)


def ide_headline(result: dict[str, Any]) -> dict[str, Any]:
    sizes = sorted({r["config"]["kib"] for r in result.get("runs", [])
                    if r["config"].get("scenario") == "disk-overlap"})
    kib = sizes[-1] if sizes else 0
    sync = find_run(result, variant="sync", scenario="disk-overlap", kib=kib)
    conc = find_run(result, variant="concurrent", scenario="disk-overlap", kib=kib)
    qemu_run = find_run(result, variant="qemu", scenario="disk-overlap", kib=kib)
    value = _ratio((sync or {}).get("total_ms"), (conc or {}).get("total_ms"))
    qemu = qemu_beside_runs("time for compute and I/O together over the longer of the two "
                            "alone (1.0: perfect overlap, 2.0: none)", conc, qemu_run,
                            "total_over_max", "x")
    also = []
    reads = sorted({r["config"]["kib"] for r in result.get("runs", [])
                    if r["config"].get("scenario") == "disk-seq"})
    if reads:
        big = reads[-1]
        also.append({"what": f"sequential DMA read, {big} KiB commands, concurrent over sync",
                     "unit": "x",
                     "value": result["ratios"].get(f"read_{big}k_concurrent_over_sync")})
    for name, run in (("sync", sync), ("concurrent", conc), ("QEMU", qemu_run)):
        if run:
            also.append({"what": f"overlap achieved, {name}", "unit": "%",
                         "value": run.get("overlap_pct")})
    return headline(f"time for {kib} KiB DMA reads and the same amount of CPL 3 compute, "
                    f"started together: --ide-dma sync over concurrent",
                    f"derived: total_ms sync / concurrent, disk-overlap {kib} KiB", value,
                    per_rep(sync, conc, "total_ms"), "x", qemu, also)


def net_headline(result: dict[str, Any]) -> dict[str, Any]:
    event = find_run(result, variant="event", test="echo")
    poll = find_run(result, variant="poll", test="echo")
    q = find_run(result, variant="qemu", test="echo")
    key = "rtt_p50_us_poll_over_event"
    qemu = qemu_beside_runs("echo round trip, median", event, q, "rtt_p50_us", "us")
    ratios = result.get("ratios", {})
    also = [{"what": "echo round trip p99, poll over event", "unit": "x",
             "value": ratios.get("rtt_p99_us_poll_over_event")},
            {"what": "RX frames/s (1514 B), event over poll", "unit": "x",
             "value": ratios.get("rx_pps_event_over_poll")}]
    if "rx64_pps_event_over_poll" in ratios:
        also.append({"what": "RX frames/s (64 B), event over poll", "unit": "x",
                     "value": ratios["rx64_pps_event_over_poll"]})
    for name, unit in (("tx64_pps_event_over_qemu", "x"), ("rx_pps_event_over_qemu", "x")):
        if name in ratios:
            also.append({"what": name.replace("_", " "), "unit": unit, "value": ratios[name]})
    return headline("echo round trip (median), --net-mode poll over event", key,
                    ratios.get(key), per_rep(poll, event, "rtt_p50_us"), "x", qemu, also)


def exits_headline(result: dict[str, Any]) -> dict[str, Any]:
    key = "pio_unclaimed_pyhvm_over_c"
    py = find_run(result, vmm="pyhvm", exit="pio_unclaimed")
    c = find_run(result, vmm="c-reference", exit="pio_unclaimed")
    also = [{"what": f"one exit through pyhvm, {r['config']['exit']}", "unit": "us",
             "value": r["metrics"].get("us_per_exit")}
            for r in result.get("runs", []) if r["config"].get("vmm") == "pyhvm"]
    return headline("cost of one port-I/O exit (unclaimed port 0x404), pyhvm's Python loop "
                    "over a C loop", key, result.get("ratios", {}).get(key),
                    per_rep(py, c, "us_per_exit"), "x", None, also)


def startup_headline(result: dict[str, Any]) -> dict[str, Any]:
    key = "exit_pyhvm_over_qemu"
    py, q = find_run(result, vmm="pyhvm"), find_run(result, vmm="qemu")
    qemu = qemu_beside_runs("spawn to exit of the hello guest", py, q, "exit_ms", "ms")
    return headline("spawn to exit of the hello guest, pyhvm over QEMU", key,
                    result.get("ratios", {}).get(key), per_rep(py, q, "exit_ms"), "x", qemu)


def vga_headline(result: dict[str, Any]) -> dict[str, Any]:
    key = "fill_shared_over_trap"
    shared = find_run(result, vmm="pyhvm", placement="shared", test="fill")
    trap = find_run(result, vmm="pyhvm", placement="trap", test="fill")
    q = find_run(result, vmm="qemu", test="fill")
    ratios = result.get("ratios", {})
    qemu = qemu_beside_runs("framebuffer fill", shared, q, "mbps", "MB/s")
    also = [{"what": f"{test} shared over trap", "unit": "x",
             "value": ratios.get(f"{test}_shared_over_trap")}
            for test in ("blit", "scroll") if f"{test}_shared_over_trap" in ratios]
    for run in result.get("runs", []):
        if run["config"].get("test") == "refresh":
            also.append({"what": f"one display refresh at {run['config'].get('mode')}, "
                                 f"{run['config'].get('dirty_percent')} % of the screen dirty",
                         "unit": "ms", "value": run["metrics"].get("ms")})
    return headline("framebuffer fill throughput (CPL 3 stores, 320x200x8), --vga-mem shared "
                    "over trap", key, ratios.get(key), per_rep(shared, trap, "mbps"), "x", qemu,
                    also, "text-mode scroll traps in both placements (odd/even text memory): "
                          "its ratio near 1 is expected; the per-repetition spread uses the "
                          "MB/s as bench vga rounds them (2 decimals), so it is approximate "
                          "where the trapped figure is small")


def pick_ratio(result: dict[str, Any], patterns: Sequence[str]) -> tuple[str, float] | None:
    """The first ratio whose name matches a pattern (in the order given), else None."""
    ratios = {k: v for k, v in (result.get("ratios") or {}).items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for pattern in patterns:
        for key in sorted(ratios):
            if re.search(pattern, key):
                return key, float(ratios[key])
    return None


def generic_headline(patterns: Sequence[str], what: str, style: str = "x") -> HeadlineFn:
    """For a benchmark whose JSON this table does not know in detail: the first ratio
    matching `patterns`, named in the report, with no per-repetition spread."""
    def pick(result: dict[str, Any]) -> dict[str, Any]:
        found = pick_ratio(result, patterns)
        if found is None:
            return headline(what, "none", None, [], style,
                            note=f"no ratio in this benchmark's JSON matches "
                                 f"{' or '.join(patterns)}")
        key, value = found
        return headline(f"{what} (ratio '{key}')", key, value, [], style,
                        note="spread across repetitions not derived for this benchmark")
    return pick


def mem_headline(result: dict[str, Any]) -> dict[str, Any]:
    """How far pyhvm's slowest RAM backing falls behind the best configuration of its
    workload: the largest `WORKLOAD:pyhvm:BACKING_over_best` ratio (bench mem reports each
    configuration against the best one); else the first ratio it has."""
    ratios = {k: v for k, v in (result.get("ratios") or {}).items()
              if k.endswith("_over_best") and isinstance(v, (int, float))
              and not isinstance(v, bool)}
    ours = {k: v for k, v in ratios.items() if ":pyhvm:" in k} or ratios
    if not ours:
        return generic_headline((r".",), "RAM backing")(result)
    key = max(ours, key=lambda k: (ours[k], k))
    return headline(f"pyhvm's slowest RAM backing against the best configuration of its "
                    f"workload ({key})", key, float(ours[key]), [], "x",
                    note="spread across repetitions not derived for this benchmark; its "
                         "own report (runs/mem.json) has the kernel MMU counts that "
                         "explain each figure")


# --- the sections -----------------------------------------------------------------------------
SECTIONS: tuple[Section, ...] = (
    Section(
        name="pic", title="Interrupt controller and timer", kind="optimization",
        module="pyhvm.bench.pic",
        claim=Claim("The virtual 8259 PIC moved from the device-model process into the "
                    "hypervisor: +10 % on compute-bound benchmarks (Xen's commit: +7 % SPEC "
                    "CPU2000, +14 % kernel build, +12 % cyclesoak).", "+10 %", 1.10),
        before="--irqchip user", after="--irqchip kernel",
        quick={"reps": 1, "ms": 200, "hzs": (0, 1000), "qemu": True},
        full={"reps": 3, "ms": 500, "hzs": (0, 100, 250, 1000), "qemu": True},
        headline=pic_headline, estimate_s=(15, 110),
        trace=TracePlan("scenario=compute ms=300 hz=1000", ("--irqchip", "user"),
                        ("--irqchip", "kernel"))),
    Section(
        name="ide", title="IDE DMA", kind="optimization", module="pyhvm.bench.ide",
        claim=Claim("A write of the bus-master start bit no longer blocks the device model "
                    "until the transfer ends: the transfer runs in another thread and the "
                    "vCPU resumes at once (the paper gives no figure)."),
        before="--ide-dma sync", after="--ide-dma concurrent",
        # quick: no QEMU here, its eight slow boots would double CI's smoke run
        quick={"reps": 1, "mb": 1, "sizes": (64,), "qemu": False},
        full={"reps": 3, "mb": 8, "sizes": (64, 32768), "qemu": True},
        headline=ide_headline, estimate_s=(8, 120),
        trace=TracePlan("scenario=disk-overlap size=32768 mb=256", ("--ide-dma", "sync"),
                        ("--ide-dma", "concurrent"), "exits,irq,devices,rip", "disk")),
    Section(
        name="net", title="NIC (RTL8139)", kind="optimization", module="pyhvm.bench.net",
        claim=Claim("The device model's main loop waits on the TAP descriptors too, and "
                    "handles a frame the moment it arrives instead of on a timer: \"more "
                    "than ten times\" faster.", "> 10x", 10.0),
        before="--net-mode poll", after="--net-mode event",
        # quick: no QEMU here either (five slow boots), to keep CI's smoke run short
        quick={"reps": 1, "qemu": False}, full={"reps": 3, "qemu": True},
        headline=net_headline, estimate_s=(20, 100),
        trace=TracePlan("scenario=net-echo n=100 size=64", ("--net-mode", "poll"),
                        ("--net-mode", "event"), "exits,irq", "net")),
    Section(
        name="vga", title="Video memory", kind="optimization", module="pyhvm.bench.vga",
        claim=Claim("In linear-framebuffer modes the video memory is mapped into the guest "
                    "and the device model scans it, instead of trapping every write: "
                    "\"several times\" faster.", "several x (>= 2x)", 2.0),
        before="--vga-mem trap", after="--vga-mem shared",
        quick={"reps": 1, "qemu": True, "quick": True},
        full={"reps": 3, "qemu": True, "ms": 500},
        headline=vga_headline, estimate_s=(15, 90),
        trace=TracePlan("", ("--vga-mem", "trap"), ("--vga-mem", "shared"),
                        append_attr="PAPER_TRACE_APPEND")),
    Section(
        name="mem", title="Memory backing", kind="context", module="pyhvm.bench.mem",
        claim=Claim("The tuning data showed memory virtualization (then shadow page tables) "
                    "as one of the two main costs of a fully virtualized guest; the paper "
                    "gives no figure for it."),
        before="each RAM backing", after="the best one",
        quick={"reps": 1, "params": FromModule("QUICK"), "workloads": ("touch-4k", "ptchurn"),
               "backings": ("anon", "anon+thp"), "qemu": False, "dirty_log": False},
        full={"reps": 3, "workloads": ("touch-4k", "ptchurn"),
              "backings": ("anon", "anon+thp"), "qemu": True},
        headline=mem_headline, estimate_s=(12, 100)),
    Section(
        name="exits", title="Exit cost", kind="context", module="pyhvm.bench.exits",
        claim=Claim("The paper's tools recorded every VM exit with its reason and cost; "
                    "most were I/O instructions. Here: what one exit costs pyhvm, the floor "
                    "under every ratio above."),
        before="C reference loop", after="pyhvm",
        quick={"reps": 1, "n": 2000}, full={"reps": 3, "n": 20000},
        headline=exits_headline, estimate_s=(3, 25)),
    Section(
        name="startup", title="Start-up", kind="context", module="pyhvm.bench.startup",
        claim=Claim("Not in the paper: how long pyhvm takes to start and stop a guest, "
                    "beside QEMU, so the other figures can be read with it in mind."),
        before="QEMU", after="pyhvm",
        quick={"reps": 1}, full={"reps": 5}, headline=startup_headline,
        estimate_s=(4, 18)),
)

SECTION_NAMES = tuple(s.name for s in SECTIONS)


def by_name(name: str) -> Section:
    for section in SECTIONS:
        if section.name == name:
            return section
    raise KeyError(name)
