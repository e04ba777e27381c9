"""`pyhvm bench pic`: what the timer interrupt costs a compute-bound guest with the PIC and
PIT in pyhvm (`--irqchip user`) and in KVM (`--irqchip kernel`), beside QEMU's two
placements (`-machine kernel-irqchip=off|on`): the paper's virtual-PIC experiment.

Every run is the guest kit's `compute` scenario: CPL 3 work for `ms` of TSC time while the
PIT ticks at `hz` (the guest's IRQ 0 handler masks, acknowledges and unmasks the 8259 as
Linux does). The guest counts its own work and ticks, so start-up stays out of the figures.
From the medians, per Hz and configuration:
- overhead: the share of compute lost against the same configuration at 0 Hz,
  `1 - rate_hz / rate_0` where rate is work per TSC cycle;
- cost per interrupt: that loss spread over the ticks the guest took,
  `overhead * ms * 1000 / ticks` microseconds, where `ms` is the timed part measured with
  the TSC rate the VMM told the guest (see `reference_tsc_khz`: QEMU's qemu64 guest
  calibrates against the PIT, which a loaded host can throw far off).
Ratio names: `_work_` compares work, `_cost_` compares the compute lost (overhead) and
`_cost_per_irq_` the microseconds per interrupt.

pyhvm runs write their exit profile (`pyhvm run --stats`); the one at the profile Hz, less
the one at 0 Hz, shows which exits the timer brings in each placement (the "why").
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import common
from .common import (BenchError, GuestRun, Outcome, fmt_value, ratio_of, rounded,
                     succeeded)

DEFAULT_REPS = 3
DEFAULT_MS = 1000
DEFAULT_HZ = (0, 100, 250, 1000)
PROFILE_HZ = 1000             # the paper's rate; else the highest Hz asked for
MAX_HZ = 1193182 // 2         # the guest rejects more (PIT input clock / 2)
RAM_MIB = 128                 # the same RAM on both VMMs
PLACEMENTS = ("user", "kernel")
QEMU_IRQCHIP = {"user": "kernel-irqchip=off", "kernel": "kernel-irqchip=on"}
SLACK_S = 30.0                # beyond ms: boot and exit, generous for a loaded host
QEMU_SLACK_S = 60.0
TOP_EXITS = 5
TSC_TOLERANCE = 0.01          # a guest's own TSC rate further off than this is reported


@dataclass(frozen=True)
class Config:
    """One thing measured: a VMM, where its PIC and PIT live, and the timer rate."""

    vmm: str       # "pyhvm" or "qemu"
    irqchip: str   # "user" or "kernel"
    hz: int

    @property
    def label(self) -> str:
        return f"{self.vmm} {self.irqchip} {self.hz} Hz"


@dataclass(frozen=True)
class Sample:
    """One guest run's own account of its timed part, and pyhvm's exit profile of it."""

    work: int
    cycles: int
    ticks: int
    tsc_khz: int
    tsc_source: str
    wall_s: float
    stats: dict[str, Any] | None = None

    @property
    def rate(self) -> float:
        """Work per TSC cycle: independent of how each VMM's guest calibrated its TSC."""
        return self.work / self.cycles


def guest_append(ms: int, hz: int) -> str:
    return f"scenario=compute ms={ms} hz={hz}"


def pyhvm_command(kernel: Path, append: str, irqchip: str) -> list[str]:
    """As a user would type it; the benchmark adds COM1 to a file, --max-seconds and
    --stats (common.run_guest_pyhvm)."""
    return [*common.pyhvm_command(), "run", "--kernel", str(kernel), "--append", append,
            "-m", f"{RAM_MIB}M", "--irqchip", irqchip]


def qemu_command(kernel: Path, append: str, irqchip: str) -> list[str]:
    """The guest kit's QEMU line (as in tests/guestkit.py), with the placement chosen."""
    return [common.QEMU, "-enable-kvm", "-cpu", "qemu64", "-m", str(RAM_MIB),
            "-machine", QEMU_IRQCHIP[irqchip], "-kernel", str(kernel), "-append", append,
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-serial", "stdio",
            "-display", "none", "-no-reboot", "-nodefaults"]


def command_text(config: Config, kernel: Path, ms: int) -> str:
    append = guest_append(ms, config.hz)
    build = pyhvm_command if config.vmm == "pyhvm" else qemu_command
    command = build(kernel, append, config.irqchip)
    return shlex.join([Path(command[0]).name, *command[1:]])


def sample_from(run: GuestRun, ms: int, hz: int, stats: dict[str, Any] | None = None) -> Sample:
    """The guest's RESULT compute line, checked against what was asked for."""
    result = common.find_result(run.output, "compute")
    if result.number("ms") != ms:
        raise BenchError(f"the guest ran ms={result.fields.get('ms')}, not {ms}")
    if "hz" in result.fields and result.number("hz") != hz:
        raise BenchError(f"the guest ran hz={result.fields.get('hz')}, not {hz}")
    cycles = result.number("cycles")
    if cycles <= 0:
        raise BenchError("the guest reported cycles=0")
    return Sample(result.number("work"), cycles, result.number("ticks"),
                  result.number("tsc_khz"), result.fields.get("tsc_source", "?"), run.wall_s,
                  stats)


# --- running ------------------------------------------------------------------------------
def run_pyhvm(kernel: Path, config: Config, ms: int, tmp: Path) -> Sample:
    append = guest_append(ms, config.hz)
    stats_path = tmp / f"stats-{config.irqchip}-{config.hz}.json"
    stats_path.unlink(missing_ok=True)
    run = common.run_guest_pyhvm(kernel, append, max_seconds=ms / 1000 + SLACK_S,
                                 extra_args=["-m", f"{RAM_MIB}M", "--irqchip", config.irqchip,
                                             "--stats", str(stats_path)])
    try:
        stats = json.loads(stats_path.read_text())
    except (OSError, ValueError):
        stats = None  # the figures stand without it; the profile says it is missing
    return sample_from(run, ms, config.hz, stats)


def run_qemu(kernel: Path, config: Config, ms: int) -> Sample:
    append = guest_append(ms, config.hz)
    command = qemu_command(kernel, append, config.irqchip)
    who = f"qemu {QEMU_IRQCHIP[config.irqchip]}"
    timeout = ms / 1000 + QEMU_SLACK_S
    start = time.monotonic()
    try:
        proc = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{who} did not end within {timeout:.0f} s") from None
    run = GuestRun(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                   proc.stderr.decode("utf-8", "replace"), time.monotonic() - start)
    common.check_guest_run(who, run, append)
    if not common.parse_results(run.output):
        # QEMU's own errors (a bad -machine option) exit with 1, the guest's OK status too
        tail = " ".join(run.stderr.strip().split())[-common.STDERR_TAIL:]
        raise BenchError(f"{who} ended with status {run.status} and no RESULT line"
                         + (f": {tail}" if tail else ""))
    return sample_from(run, ms, config.hz)


def parse_hz_list(text: str) -> tuple[int, ...]:
    """`0,100,250,1000` -> (0, 100, 250, 1000): sorted, unique, and 0 is required, since
    every overhead is measured against its own configuration at 0 Hz."""
    try:
        values = sorted({int(part, 0) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of whole numbers") from None
    if not values:
        raise ValueError("no rates given")
    if values[0] < 0 or values[-1] > MAX_HZ:
        raise ValueError(f"rates must lie between 0 and {MAX_HZ}")
    if values[0] != 0:
        raise ValueError("the list must include 0, the baseline every overhead is measured "
                         "against")
    return tuple(values)


def configurations(hzs: Sequence[int], qemu: bool) -> list[Config]:
    """Rate by rate, so that the configurations compared at one rate run close in time."""
    vmms = ("pyhvm", "qemu") if qemu else ("pyhvm",)
    return [Config(vmm, irqchip, hz) for hz in hzs for vmm in vmms for irqchip in PLACEMENTS]


def measure(reps: int = DEFAULT_REPS, ms: int = DEFAULT_MS,
            hzs: Sequence[int] = DEFAULT_HZ, kernel: str | None = None, qemu: bool = True,
            show_progress: bool = False) -> dict[str, Any]:
    """Run every configuration, interleaved; the JSON envelope plus the exit profile."""
    if reps < 1 or ms < 1:
        raise BenchError("--reps and --ms must be at least 1")
    if 0 not in hzs:
        raise BenchError("the rates must include 0 (the baseline)")
    common.require_kvm()
    elf = common.guestkit_path(kernel)
    configs = configurations(hzs, qemu)
    outcomes: dict[Config, Outcome[Sample]] = {config: Outcome() for config in configs}
    if qemu and shutil.which(common.QEMU) is None:
        for config in configs:
            if config.vmm == "qemu":
                outcomes[config].error = (f"{common.QEMU} is not installed "
                                          "(apt-get install qemu-system-x86)")
    progress = common.rep_progress(show_progress, "bench pic", configs[0].label)
    load_before = common.loadavg()
    with tempfile.TemporaryDirectory(prefix="pyhvm-bench-pic-") as tmp:
        def one(config: Config, rep: int) -> None:
            common.measure_into(outcomes[config], rep,
                                lambda: run_pyhvm(elf, config, ms, Path(tmp))
                                if config.vmm == "pyhvm" else run_qemu(elf, config, ms))

        try:
            common.interleave(configs, reps, one, progress, label=lambda c: c.label)
        finally:
            if sys.stderr.isatty():
                common.clear_progress(progress)
    load_after = common.loadavg()
    if all(outcome.error is not None for outcome in outcomes.values()):
        first = outcomes[configs[0]].error
        raise BenchError(f"every configuration failed; {configs[0].label}: {first}")
    host = common.host_info(loadavg_1m_start=load_before, loadavg_1m_end=load_after)
    return summarize(outcomes, ms=ms, reps=reps, kernel=elf, host=host)


# --- the figures --------------------------------------------------------------------------
def overhead(rate_hz: float, rate_0: float) -> float | None:
    """Share of compute lost to the timer: 1 - rate_hz / rate_0 (None without a baseline)."""
    if rate_0 <= 0:
        return None
    return 1.0 - rate_hz / rate_0


def cost_per_irq_us(lost: float | None, seconds: float, ticks: float) -> float | None:
    """Microseconds of compute each interrupt took: the lost share of the timed part
    (`seconds`, i.e. ms / 1000 where the guest's TSC calibration is right), divided by the
    ticks the guest counted (None where it counted none)."""
    if lost is None or ticks <= 0:
        return None
    return lost * seconds * 1e6 / ticks


reference_tsc_khz = common.reference_tsc_khz


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value * 100.0, 2)


def _median_rep(samples: Sequence[Sample]) -> int:
    """Index of the repetition with the median rate: the run to take a profile from."""
    order = sorted(range(len(samples)), key=lambda i: samples[i].rate)
    return order[(len(order) - 1) // 2]


def summarize(outcomes: dict[Config, Outcome], *, ms: int, reps: int, kernel: Path,
              host: dict[str, Any]) -> dict[str, Any]:
    """Runs, ratios and the exit profile from the samples; no KVM needed (unit-tested)."""
    runs = []
    every = [s for outcome in outcomes.values() if succeeded(outcome) for s in outcome.samples]
    ref_khz, ref_source = reference_tsc_khz(every) if every else (0, "none")
    lost: dict[Config, float | None] = {}
    cost: dict[Config, float | None] = {}
    rates: dict[Config, float] = {}
    for config, outcome in outcomes.items():
        entry_config = {"vmm": config.vmm, "irqchip": config.irqchip, "hz": config.hz,
                        "ms": ms, "reps": reps, "command": command_text(config, kernel, ms)}
        if config.vmm == "qemu":
            entry_config["qemu_machine"] = QEMU_IRQCHIP[config.irqchip]
        if not succeeded(outcome):
            runs.append(common.run_entry(entry_config, {
                "error": outcome.error or "no repetition ran",
                "reps_ok": len(outcome.samples)}))
            continue
        samples = outcome.samples
        rates[config] = common.median(s.rate for s in samples)
        seconds = [s.cycles / (ref_khz * 1000.0) for s in samples]
        metrics: dict[str, Any] = {
            "work": int(common.median(s.work for s in samples)),
            "work_reps": [s.work for s in samples],
            **common.metric("mwork_per_s", [s.rate * ref_khz / 1000.0 for s in samples], 2),
            **common.metric("timed_ms", [t * 1000.0 for t in seconds], 2),
            "ticks": int(common.median(s.ticks for s in samples)),
            "ticks_reps": [s.ticks for s in samples],
            "cycles": int(common.median(s.cycles for s in samples)),
            "tsc_khz": int(common.median(s.tsc_khz for s in samples)),
            "tsc_source": samples[0].tsc_source,
        }
        if config.hz:
            base = outcomes.get(Config(config.vmm, config.irqchip, 0))
            ticks = common.median(s.ticks for s in samples)
            if succeeded(base):
                assert base is not None
                lost[config] = overhead(rates[config],
                                        common.median(s.rate for s in base.samples))
                paired = [overhead(s.rate, b.rate) for s, b in zip(samples, base.samples)]
            else:
                lost[config], paired = None, []
            cost[config] = cost_per_irq_us(lost[config], common.median(seconds), ticks)
            metrics["overhead_pct"] = _pct(lost[config])
            metrics["overhead_pct_reps"] = [_pct(p) for p in paired]
            metrics["cost_us_per_irq"] = rounded(cost[config], 2)
            metrics["cost_us_per_irq_reps"] = [
                rounded(cost_per_irq_us(p, t, s.ticks), 2)
                for p, t, s in zip(paired, seconds, samples)]
        metrics.update(common.metric("wall_s", [s.wall_s for s in samples]))
        exits = [s.stats["exits"] for s in samples if s.stats and "exits" in s.stats]
        if exits:
            metrics["exits"] = int(common.median(exits))
            metrics["exits_reps"] = exits
        runs.append(common.run_entry(entry_config, metrics))

    hzs = sorted({config.hz for config in outcomes})
    has_qemu = any(config.vmm == "qemu" for config in outcomes)
    # The noise gauge: every 0 Hz run does the same work, so their spread is the host's.
    idle = [s.rate for c, o in outcomes.items() if c.hz == 0 and succeeded(o) for s in o.samples]
    ratios: dict[str, float | None] = {
        "noise_0hz_max_over_min": ratio_of(max(idle), min(idle)) if idle else None}
    for hz in hzs:
        pair = [rates.get(Config("pyhvm", p, hz)) for p in ("kernel", "user")]
        ratios[f"kernel_over_user_work_{hz}hz"] = ratio_of(*pair)
        if has_qemu:
            pair = [rates.get(Config("qemu", p, hz)) for p in ("kernel", "user")]
            ratios[f"qemu_kernel_over_user_work_{hz}hz"] = ratio_of(*pair)
    if has_qemu:
        for hz in (h for h in hzs if h):
            for placement in ("kernel", "user"):
                ours, theirs = Config("pyhvm", placement, hz), Config("qemu", placement, hz)
                prefix = f"pyhvm_{placement}_vs_qemu_{placement}"
                ratios[f"{prefix}_cost_{hz}hz"] = ratio_of(lost.get(ours), lost.get(theirs))
                ratios[f"{prefix}_cost_per_irq_{hz}hz"] = ratio_of(cost.get(ours),
                                                                     cost.get(theirs))
    host = {**host, "tsc_khz_reference": ref_khz, "tsc_khz_reference_source": ref_source}
    result = common.envelope("pic", host, runs, ratios)
    result["profile"] = exit_profile(outcomes, hzs, ms, ref_khz)
    return result


# --- the exit profile ---------------------------------------------------------------------
def profile_hz(hzs: Sequence[int]) -> int:
    return PROFILE_HZ if PROFILE_HZ in hzs else max(hzs)


def flat_exits(stats: dict[str, Any]) -> dict[str, int]:
    """One count per kind of exit: `pio 0x0021 pic-master`, `mmio`, and other reasons."""
    flat = {f"pio {port}": int(n) for port, n in (stats.get("pio_exits") or {}).items()}
    if stats.get("mmio_exits"):
        flat["mmio"] = int(stats["mmio_exits"])
    flat.update({str(k): int(n) for k, n in (stats.get("other_exits") or {}).items()})
    return flat


def _placement_profile(outcomes: dict[Config, Outcome], placement: str, hz: int,
                       ref_khz: int) -> dict[str, Any]:
    """One placement's exit profile at `hz`, and what the timer added over 0 Hz."""
    outcome = outcomes.get(Config("pyhvm", placement, hz))
    if not succeeded(outcome):
        return {"error": outcome.error if outcome else "not measured"}
    assert outcome is not None
    rep = _median_rep(outcome.samples)
    sample = outcome.samples[rep]
    if sample.stats is None:
        return {"error": "pyhvm wrote no --stats file", "rep": rep + 1}
    stats = sample.stats
    base_outcome = outcomes.get(Config("pyhvm", placement, 0))
    base: dict[str, Any] | None = None
    if succeeded(base_outcome):
        assert base_outcome is not None
        base = base_outcome.samples[_median_rep(base_outcome.samples)].stats
    exits, base_exits = flat_exits(stats), flat_exits(base) if base else {}
    extra = {k: n - base_exits.get(k, 0) for k, n in exits.items()}
    seconds = sample.cycles / (ref_khz * 1000.0)
    total = int(stats.get("exits", sum(exits.values())))
    timer_exits = total - int(base["exits"]) if base and "exits" in base else None
    top = sorted(exits, key=lambda k: (-extra[k], -exits[k], k))[:TOP_EXITS]
    profile: dict[str, Any] = {
        "rep": rep + 1,
        "timed_s": round(seconds, 4),
        "guest_ticks": sample.ticks,
        "exits": total,
        "exits_0hz": int(base["exits"]) if base and "exits" in base else None,
        "timer_exits": timer_exits,
        "timer_exits_per_s": None if timer_exits is None else round(timer_exits / seconds, 1),
        "timer_exits_per_tick": (round(timer_exits / sample.ticks, 2)
                                 if timer_exits is not None and sample.ticks else None),
        "top_exits": [{"exit": k, "exits": exits[k], "over_0hz": extra[k]} for k in top],
        "exits_by_kind": exits,
        "exits_by_kind_0hz": base_exits if base else None,
    }
    for key in ("interrupts_injected", "interrupt_windows", "pit_ticks", "timer_callbacks"):
        if key in stats:
            profile[key] = stats[key]
    return profile


def exit_profile(outcomes: dict[Config, Outcome], hzs: Sequence[int], ms: int,
                 ref_khz: int) -> dict[str, Any]:
    """Both placements' profiles at the profile rate, and the exits the kernel placement
    does without (per second of compute, beyond each placement's own 0 Hz run)."""
    hz = profile_hz(hzs)
    placements = {p: _placement_profile(outcomes, p, hz, ref_khz) for p in PLACEMENTS}
    result: dict[str, Any] = {"hz": hz, "ms": ms, "placements": placements}
    user, kern = placements["user"], placements["kernel"]
    if "error" in user or "error" in kern or user["exits_by_kind_0hz"] is None \
            or kern["exits_by_kind_0hz"] is None:
        result["difference"] = None
        return result

    def extra(profile: dict[str, Any], key: str) -> int:
        return profile["exits_by_kind"].get(key, 0) - profile["exits_by_kind_0hz"].get(key, 0)

    rows = []
    for key in sorted(set(user["exits_by_kind"]) | set(kern["exits_by_kind"])):
        n_user, n_kern = extra(user, key), extra(kern, key)
        if n_user == n_kern:
            continue
        rows.append({"exit": key,
                     "user_per_s": round(n_user / user["timed_s"], 1),
                     "kernel_per_s": round(n_kern / kern["timed_s"], 1),
                     # what each tick the guest took cost in exits, user placement
                     "user_per_tick": (round(n_user / user["guest_ticks"], 2)
                                       if user["guest_ticks"] else None)})
    rows.sort(key=lambda r: (-(r["user_per_s"] - r["kernel_per_s"]), r["exit"]))
    result["difference"] = rows
    return result


# --- the report ---------------------------------------------------------------------------
def _with_range(value: float | None, reps: Sequence[float | None], digits: int) -> str:
    """`figure (min-max)`: the figure from the medians, and how far the repetitions (each
    paired with its own 0 Hz run) strayed; `min to max` where one is negative, so that no
    minus sign reads as a dash (noise can make a small loss negative)."""
    if value is None:
        return "n/a"
    clean = [v for v in reps if v is not None]
    if len(clean) < 2:
        return f"{value:.{digits}f}"
    low, high = min(clean), max(clean)
    between = " to " if low < 0 else "-"
    return f"{value:.{digits}f} ({low:.{digits}f}{between}{high:.{digits}f})"


def goals(result: dict[str, Any]) -> list[str]:
    """The issue's three goals at the profile rate, judged from this run's figures."""
    hz = result["profile"]["hz"]
    by = {(r["config"]["vmm"], r["config"]["irqchip"], r["config"]["hz"]): r["metrics"]
          for r in result["runs"]}
    lines = []

    def compare(what: str, key: str, unit: str, placement: str) -> str:
        ours = by.get(("pyhvm", placement, hz), {})
        theirs = by.get(("qemu", placement, hz), {})
        if ours.get(key) is None or theirs.get(key) is None:
            return f"{what}: not judged (no figure for pyhvm or QEMU at {hz} Hz)"
        met = ours[key] <= theirs[key]
        ours_reps = [v for v in ours.get(f"{key}_reps", []) if v is not None]
        theirs_reps = [v for v in theirs.get(f"{key}_reps", []) if v is not None]
        overlap = bool(ours_reps and theirs_reps) and \
            min(ours_reps) <= max(theirs_reps) and min(theirs_reps) <= max(ours_reps)
        note = "; the repetitions overlap, so within this host's noise" if overlap else ""
        return (f"{what}: {'met' if met else 'NOT met'} (pyhvm {ours[key]:.2f}{unit}, "
                f"QEMU {theirs[key]:.2f}{unit}{note})")

    lines.append(compare(f"in-kernel placement loses no more compute than QEMU's at {hz} Hz",
                         "overhead_pct", " %", "kernel"))
    lines.append(compare(f"userspace path costs no more per interrupt than QEMU's at {hz} Hz",
                         "cost_us_per_irq", " us", "user"))
    gain = result["ratios"].get(f"kernel_over_user_work_{hz}hz")
    qemu_gain = result["ratios"].get(f"qemu_kernel_over_user_work_{hz}hz")
    text = f"gain of in-kernel over userspace at {hz} Hz: "
    text += "n/a" if gain is None else f"{(gain - 1) * 100:+.1f} % work (pyhvm)"
    if qemu_gain is not None:
        text += f", {(qemu_gain - 1) * 100:+.1f} % (QEMU)"
    lines.append(text + "; the paper: +10 % (Xen, PIC moved into the hypervisor)")
    noise = result["ratios"].get("noise_0hz_max_over_min")
    if noise is not None:
        lines.append(f"noise: the 0 Hz runs, all doing the same work, differ by up to "
                     f"{(noise - 1) * 100:.1f} % (fastest over slowest); differences between "
                     f"configurations smaller than that are this host's noise, not a finding")
    return lines


def render_profile(profile: dict[str, Any]) -> list[str]:
    hz = profile["hz"]
    lines = [f"why: exit profile of one pyhvm run per placement at {hz} Hz (the repetition "
             f"with the median work), less its 0 Hz run, per second of compute"]
    placements = profile["placements"]
    for name in PLACEMENTS:
        p = placements[name]
        if "error" in p:
            lines.append(f"  {name}: no profile ({p['error']})")
            continue
        parts = [f"{p['exits']} exits in the run ({fmt_value(p['exits_0hz'], 0)} at 0 Hz)",
                 f"{fmt_value(p['timer_exits_per_s'])} timer exits/s",
                 f"{fmt_value(p['timer_exits_per_tick'], 2)} per guest tick "
                 f"({p['guest_ticks']} ticks in {p['timed_s'] * 1000:.0f} ms)"]
        if "interrupts_injected" in p:
            parts.append(f"{p['interrupts_injected']} injected by KVM_INTERRUPT, "
                         f"{p.get('interrupt_windows', 0)} interrupt windows")
        if "timer_callbacks" in p:
            parts.append(f"{p['timer_callbacks']} host timer callbacks")
        ticks = p.get("pit_ticks")
        if isinstance(ticks, dict):
            parts.append("PIT ticks " + ", ".join(f"{k} {v}" for k, v in ticks.items()))
        lines.append(f"  {name}: " + "; ".join(parts))
        top = ", ".join(f"{t['exit']} {t['exits']} (+{t['over_0hz']})" for t in p["top_exits"])
        lines.append(f"    top exits (run total, +over 0 Hz): {top or 'none'}")
    diff = profile.get("difference")
    if diff is None:
        lines.append("  difference: n/a (a placement or its 0 Hz run has no profile)")
    elif not diff:
        lines.append("  difference: none, both placements exit alike")
    else:
        gone = [d for d in diff if d["kernel_per_s"] <= 0 < d["user_per_s"]]
        lines.append("  exits/s the timer adds, user vs kernel placement:")
        rows = [[d["exit"], fmt_value(d["user_per_s"]), fmt_value(d["user_per_tick"], 2),
                 fmt_value(d["kernel_per_s"])] for d in diff]
        table = common.format_table(["exit", "user /s", "user /tick", "kernel /s"], rows)
        lines += ["    " + line for line in table.splitlines()]
        if gone:
            lines.append("  gone in the kernel placement: "
                         + ", ".join(d["exit"] for d in gone))
    return lines


def render(result: dict[str, Any]) -> str:
    """The plain-text report: figures per rate and configuration, ratios, why, goals."""
    runs = result["runs"]
    first = runs[0]["config"]
    ms, reps = first["ms"], first["reps"]
    sources = sorted({r["metrics"]["tsc_source"] for r in runs if "tsc_source" in r["metrics"]})
    header = (f"pyhvm bench pic: guest kit 'scenario=compute ms={ms} hz=N', CPL 3 work while "
              f"the PIT ticks at N Hz; {reps} repetitions interleaved, median (min-max),\n"
              f"timed in the guest with the TSC ({', '.join(sources) or '?'}); compute lost "
              f"and us per interrupt from the medians (range: each repetition against its "
              f"own 0 Hz run)")
    rows, failures = [], []
    for run in runs:
        c, m = run["config"], run["metrics"]
        where = c.get("qemu_machine", f"--irqchip {c['irqchip']}")
        name = [str(c["hz"]), c["vmm"], where]
        if "error" in m:
            rows.append([*name, "FAILED", "", "", ""])
            failures.append(f"{c['vmm']} {where} {c['hz']} Hz failed: {m['error']}")
            continue
        work = common.fmt_spread(m["mwork_per_s_reps"], 1)
        if c["hz"]:
            over = _with_range(m["overhead_pct"], m["overhead_pct_reps"], 2)
            cost = _with_range(m["cost_us_per_irq"], m["cost_us_per_irq_reps"], 1)
        else:
            over = cost = "baseline"
        rows.append([*name, work, str(m["ticks"]), over, cost])
    table = common.format_table(
        ["Hz", "vmm", "placement", "work (M steps/s)", "ticks", "compute lost %",
         "us per interrupt"], rows)
    ratios = result["ratios"]
    hzs = sorted({r["config"]["hz"] for r in runs})
    has_qemu = any(r["config"]["vmm"] == "qemu" for r in runs)
    ratio_rows = []
    for hz in hzs:
        row = [str(hz), common.fmt_ratio(ratios.get(f"kernel_over_user_work_{hz}hz"))]
        if has_qemu:
            row.append(common.fmt_ratio(ratios.get(f"qemu_kernel_over_user_work_{hz}hz")))
            for key in ("kernel_vs_qemu_kernel_cost", "kernel_vs_qemu_kernel_cost_per_irq",
                        "user_vs_qemu_user_cost", "user_vs_qemu_user_cost_per_irq"):
                row.append(common.fmt_ratio(ratios.get(f"pyhvm_{key}_{hz}hz")) if hz else "")
        ratio_rows.append(row)
    ratio_headers = ["Hz", "pyhvm kernel/user work"]
    if has_qemu:
        ratio_headers += ["QEMU kernel/user work", "kernel: lost pyhvm/QEMU",
                          "kernel: us/irq pyhvm/QEMU", "user: lost pyhvm/QEMU",
                          "user: us/irq pyhvm/QEMU"]
    reference = result["host"].get("tsc_khz_reference")
    for run in runs:
        own = run["metrics"].get("tsc_khz")
        if reference and own and abs(own - reference) > reference * TSC_TOLERANCE:
            c = run["config"]
            failures.append(
                f"note: the guest under {c['vmm']} {c.get('qemu_machine', c['irqchip'])} "
                f"{c['hz']} Hz calibrated its TSC at {own} kHz "
                f"({run['metrics']['tsc_source']}); timed with the {reference} kHz "
                f"{result['host'].get('tsc_khz_reference_source')} told, it ran "
                f"{run['metrics']['timed_ms']:.0f} ms")
    lines = [header, "", table]
    if failures:
        lines += ["", *failures]
    lines += ["", "ratios of medians (at 0 Hz both placements run the same code: the kernel/user "
              "ratio there shows the noise):",
              common.format_table(ratio_headers, ratio_rows), ""]
    lines += render_profile(result["profile"])
    lines += ["", "goals:", *(f"  {g}" for g in goals(result))]
    if not has_qemu:
        lines.append("  (QEMU not measured: --no-qemu)")
    host = result["host"]
    load = [host.get("loadavg_1m_start"), host.get("loadavg_1m_end")]
    load_text = "" if None in load else \
        f"; load average (1 min) {load[0]:.2f} at start, {load[1]:.2f} at end"
    lines += ["", common.host_line(host) + load_text]
    return "\n".join(lines)


__all__ = ["Config", "Outcome", "Sample", "measure", "summarize", "render", "overhead",
           "cost_per_irq_us", "parse_hz_list", "exit_profile", "goals", "qemu_command",
           "pyhvm_command"]
