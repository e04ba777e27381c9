"""`pyhvm bench placement`: what it costs to run device models in their own process
(`--device-process`, Xen's qemu-dm placement) against the VMM process and the kernel.

Three experiments, every configuration run interleaved, medians of the repetitions, all
timed in the guest with the TSC:
- exit cost: the guest kit's `exits` scenario writing the UART's THR (port 0x3F8) N times,
  with the UART in the VMM, in a device process with posted writes (the default), and in a
  device process with every write waiting for its answer (`post=off`: the full round trip
  a read takes), optionally with the VMM spinning on the ring before it sleeps
  (`spin=US`). The boundary's cost per access is the difference to the VMM's exit.
- the interrupt experiment (the paper's virtual PIC): `compute` at 0 and `hz` Hz with the
  8259 pair and PIT in a device process (`--irqchip user --device-process pic`), in the
  VMM process (`--irqchip user`) and in the kernel (`--irqchip kernel`); compute lost and
  microseconds per interrupt, as `pyhvm bench pic` computes them.
- IDE throughput: `disk-seq` DMA reads of one command size with the IDE model in the VMM
  and in a device process, both on memfd RAM (which the device process needs), so only
  the process boundary differs.

The goal this measures: an out-of-process round trip at most GOAL_RATIO times the
in-process exit. `boundary` in the JSON gives the microseconds each boundary adds and
`goal` says whether, and by how much, the round trip misses it.
"""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import common
from . import exits as exits_bench
from . import ide as ide_bench
from . import pic as pic_bench
from .common import BenchError, GuestRun, Outcome

DEFAULT_REPS = 3
DEFAULT_N = 20_000
DEFAULT_MS = 1000
DEFAULT_HZ = 1000
DEFAULT_MB = 16
DEFAULT_KIB = 64
DEFAULT_SPIN_US = 20
QUICK = {"n": 2000, "ms": 200, "mb": 2, "reps": 1}
GOAL_RATIO = 2.0
RAM_MIB = 256
SLACK_S = 60.0
S_PER_EXIT_BOUND = 1e-3     # a timeout only: far above any round trip seen here
SECTIONS = ("exit", "irq", "ide")
EXIT_KIND = next(k for k in exits_bench.KINDS if k.name == "pio_uart")


@dataclass(frozen=True)
class Config:
    """One configuration: the experiment, where the device lives, the timer rate."""

    test: str           # "exit", "irq" or "ide"
    placement: str      # exit: vmm, process-posted, process-sync, process-spin;
                        # irq: process, vmm, kernel; ide: vmm, process
    hz: int = 0

    @property
    def label(self) -> str:
        return f"{self.test} {self.placement}" + (f" {self.hz} Hz" if self.test == "irq"
                                                  else "")


@dataclass(frozen=True)
class Params:
    n: int = DEFAULT_N
    ms: int = DEFAULT_MS
    hz: int = DEFAULT_HZ
    mb: int = DEFAULT_MB
    kib: int = DEFAULT_KIB
    spin_us: int = DEFAULT_SPIN_US


def configurations(params: Params, sections: Sequence[str] = SECTIONS) -> list[Config]:
    configs: list[Config] = []
    if "exit" in sections:
        placements = ["vmm", "process-posted", "process-sync"]
        if params.spin_us:
            placements.append("process-spin")
        configs += [Config("exit", p) for p in placements]
    if "irq" in sections:
        configs += [Config("irq", p, hz) for hz in (0, params.hz)
                    for p in ("process", "vmm", "kernel")]
    if "ide" in sections:
        configs += [Config("ide", p) for p in ("vmm", "process")]
    return configs


def _ide_config(params: Params) -> ide_bench.Config:
    return ide_bench.Config("concurrent", "seq", "read", params.kib)


def pyhvm_args(config: Config, params: Params, image: str = "IMAGE") -> list[str]:
    """What `pyhvm run` gets beyond kernel and command line."""
    if config.test == "exit":
        process = {"vmm": None, "process-posted": "uart", "process-sync": "uart,post=off",
                   "process-spin": f"uart,post=off,spin={params.spin_us}"}[config.placement]
        return ["-m", f"{RAM_MIB}M"] + (["--device-process", process] if process else [])
    if config.test == "irq":
        irqchip = "kernel" if config.placement == "kernel" else "user"
        return (["-m", f"{RAM_MIB}M", "--irqchip", irqchip]
                + (["--device-process", "pic"] if config.placement == "process" else []))
    return (["-m", f"{RAM_MIB}M", "--mem-backing", "memfd", "--drive", ide_bench.drive(image)]
            + (["--device-process", "ide"] if config.placement == "process" else []))


def guest_append(config: Config, params: Params) -> str:
    if config.test == "exit":
        return exits_bench.guest_append(EXIT_KIND, params.n)
    if config.test == "irq":
        return pic_bench.guest_append(params.ms, config.hz)
    return ide_bench.guest_append(_ide_config(params), params.mb)


def command_text(config: Config, params: Params, kernel: Path) -> str:
    command = [*common.pyhvm_command(), "run", "--kernel", str(kernel), "--append",
               guest_append(config, params), *pyhvm_args(config, params)]
    return shlex.join([Path(command[0]).name, *command[1:]])


def run_timeout(config: Config, params: Params) -> float:
    if config.test == "exit":
        return SLACK_S + params.n * S_PER_EXIT_BOUND
    if config.test == "irq":
        return SLACK_S + params.ms / 1000
    return SLACK_S + ide_bench.run_timeout(_ide_config(params), params.mb)


def sample(kernel: Path, config: Config, params: Params, image: Path) -> Any:
    """One guest run of `config`: its own measurement (BenchError if it failed)."""
    run: GuestRun = common.run_guest_pyhvm(
        kernel, guest_append(config, params), max_seconds=run_timeout(config, params),
        extra_args=pyhvm_args(config, params, str(image)))
    if config.test == "exit":
        return exits_bench.sample_from(run, params.n)
    if config.test == "irq":
        return pic_bench.sample_from(run, params.ms, config.hz)
    return ide_bench.seq_sample(run, _ide_config(params), params.mb)


def measure(params: Params = Params(), reps: int = DEFAULT_REPS, kernel: str | None = None,
            sections: Sequence[str] = SECTIONS, show_progress: bool = False) -> dict[str, Any]:
    """Every configuration, interleaved; the JSON envelope with the boundary costs."""
    if reps < 1 or min(params.n, params.ms, params.hz, params.mb, params.kib) < 1:
        raise BenchError("--reps, --n, --ms, --hz, --mb and --kib must be at least 1")
    common.require_kvm()
    elf = common.guestkit_path(kernel)
    configs = configurations(params, sections)
    outcomes: dict[Any, Outcome[Any]] = {config: Outcome() for config in configs}
    progress = common.stderr_progress(show_progress, "bench placement")
    load_before = common.loadavg()
    with tempfile.TemporaryDirectory(prefix="pyhvm-bench-placement-") as tmp:
        image = Path(tmp) / "disk.img"
        if "ide" in sections:
            ide_bench.fill_image(image, ide_bench.image_mib((params.kib,), params.mb))

        def one(config: Config, rep: int) -> None:
            common.measure_into(outcomes[config], rep,
                                lambda: sample(elf, config, params, image))

        try:
            common.interleave(configs, reps, one, progress, label=lambda c: c.label)
        finally:
            common.clear_progress(progress)
    if all(outcome.error is not None for outcome in outcomes.values()):
        first = outcomes[configs[0]].error
        raise BenchError(f"every configuration failed; {configs[0].label}: {first}")
    host = common.host_info(loadavg_1m_start=load_before, loadavg_1m_end=common.loadavg())
    return summarize(outcomes, params, reps=reps, kernel=elf, host=host)


# --- the figures (no KVM: unit-tested) ----------------------------------------------------
def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 2)


def summarize(outcomes: dict[Config, Outcome], params: Params, *, reps: int, kernel: Path,
              host: dict[str, Any]) -> dict[str, Any]:
    every = [s for c, o in outcomes.items() if common.succeeded(o) and c.test != "exit" for s in o.samples]
    ref_khz, ref_source = common.reference_tsc_khz(every) if every else (0, "none")
    runs = []
    exit_us: dict[str, float] = {}
    irq_cost: dict[str, float | None] = {}
    ide_mbps: dict[str, float] = {}
    ide_cmd_us: dict[str, float] = {}
    for config, outcome in outcomes.items():
        entry = {"test": config.test, "placement": config.placement, "reps": reps,
                 "command": command_text(config, params, kernel)}
        if config.test == "irq":
            entry["hz"] = config.hz
        if not common.succeeded(outcome):
            runs.append(common.run_entry(entry, {"error": outcome.error or "no repetition ran",
                                                 "reps_ok": len(outcome.samples)}))
            continue
        samples = outcome.samples
        if config.test == "exit":
            metrics = {**common.metric("us_per_exit", [s.us_per_exit for s in samples]),
                       "n": params.n}
            exit_us[config.placement] = metrics["us_per_exit"]
        elif config.test == "irq":
            metrics = _irq_metrics(config, samples, outcomes, params, ref_khz)
            if config.hz:
                irq_cost[config.placement] = metrics.get("cost_us_per_irq")
        else:
            khz = ref_khz or samples[0].tsc_khz
            metrics = {**common.metric("mbps", [ide_bench.mbps(s, khz) for s in samples], 2),
                       **common.metric("us_per_cmd", [s.cycles * 1000.0 / khz / s.commands
                                                      for s in samples], 2),
                       "kib": params.kib, "mb": ide_bench.mb_for(params.kib, params.mb)}
            ide_mbps[config.placement] = metrics["mbps"]
            ide_cmd_us[config.placement] = metrics["us_per_cmd"]
        runs.append(common.run_entry(entry, metrics))

    vmm_exit = exit_us.get("vmm")
    ratios: dict[str, float | None] = {
        "exit_process_sync_over_vmm": common.ratio_of(exit_us.get("process-sync"), vmm_exit),
        "exit_process_posted_over_vmm": common.ratio_of(exit_us.get("process-posted"), vmm_exit),
        "exit_process_spin_over_vmm": common.ratio_of(exit_us.get("process-spin"), vmm_exit),
        "irq_cost_process_over_vmm": common.ratio_of(irq_cost.get("process"), irq_cost.get("vmm")),
        "irq_cost_vmm_over_kernel": common.ratio_of(irq_cost.get("vmm"), irq_cost.get("kernel")),
        "irq_cost_process_over_kernel": common.ratio_of(irq_cost.get("process"),
                                               irq_cost.get("kernel")),
        "ide_mbps_process_over_vmm": common.ratio_of(ide_mbps.get("process"), ide_mbps.get("vmm")),
    }
    boundary = {
        "round_trip_us": _minus(exit_us.get("process-sync"), vmm_exit),
        "round_trip_spin_us": _minus(exit_us.get("process-spin"), vmm_exit),
        "posted_write_us": _minus(exit_us.get("process-posted"), vmm_exit),
        "per_irq_process_minus_vmm_us": _minus(irq_cost.get("process"), irq_cost.get("vmm")),
        "per_irq_vmm_minus_kernel_us": _minus(irq_cost.get("vmm"), irq_cost.get("kernel")),
        "per_ide_command_us": _minus(ide_cmd_us.get("process"), ide_cmd_us.get("vmm")),
    }
    host = {**host, "tsc_khz_reference": ref_khz, "tsc_khz_reference_source": ref_source}
    result = common.envelope("placement", host, runs, ratios)
    result["boundary"] = boundary
    result["goal"] = goal(ratios)
    result["params"] = {"n": params.n, "ms": params.ms, "hz": params.hz, "mb": params.mb,
                        "kib": params.kib, "spin_us": params.spin_us, "reps": reps}
    return result


def _irq_metrics(config: Config, samples: list[Any], outcomes: dict[Config, Outcome],
                 params: Params, ref_khz: int) -> dict[str, Any]:
    khz = ref_khz or samples[0].tsc_khz
    seconds = [s.cycles / (khz * 1000.0) for s in samples]
    metrics: dict[str, Any] = {
        **common.metric("mwork_per_s", [s.rate * khz / 1000.0 for s in samples], 2),
        "ticks": int(common.median(s.ticks for s in samples)),
        "ticks_reps": [s.ticks for s in samples],
    }
    if config.hz:
        base = outcomes.get(Config("irq", config.placement, 0))
        if common.succeeded(base):
            assert base is not None
            lost = pic_bench.overhead(common.median(s.rate for s in samples),
                                      common.median(s.rate for s in base.samples))
            ticks = common.median(s.ticks for s in samples)
            metrics["overhead_pct"] = None if lost is None else round(lost * 100.0, 2)
            metrics["cost_us_per_irq"] = common.rounded(pic_bench.cost_per_irq_us(
                lost, common.median(seconds), ticks), 2)
    return metrics


def goal(ratios: dict[str, float | None]) -> dict[str, Any]:
    """Whether the out-of-process round trip costs at most GOAL_RATIO in-process exits."""
    ratio = ratios.get("exit_process_sync_over_vmm")
    best = min((r for r in (ratio, ratios.get("exit_process_spin_over_vmm")) if r is not None),
               default=None)
    return {"goal_ratio": GOAL_RATIO, "round_trip_over_exit": ratio,
            "best_with_spin": best, "met": None if best is None else best <= GOAL_RATIO,
            "missed_by": None if best is None or best <= GOAL_RATIO
            else round(best / GOAL_RATIO, 2)}


# --- the report ---------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return common.fmt_value(value, digits, suffix)


def _runs(result: dict[str, Any], test: str) -> list[dict[str, Any]]:
    return [r for r in result["runs"] if r["config"]["test"] == test]


def _cell(metrics: dict[str, Any], key: str) -> str:
    if "error" in metrics:
        return "failed"
    values = metrics.get(f"{key}_reps")
    return common.fmt_spread(values) if values else _fmt(metrics.get(key))


def render(result: dict[str, Any]) -> str:
    params, ratios, boundary = result["params"], result["ratios"], result["boundary"]
    lines = [f"pyhvm bench placement: device models in a device process, the VMM process and "
             f"the kernel; {params['reps']} repetitions interleaved, medians (min-max), "
             "timed in the guest", ""]
    rows = [[r["config"]["placement"], _cell(r["metrics"], "us_per_exit")]
            for r in _runs(result, "exit")]
    if rows:
        lines += [f"Exit cost: {params['n']} writes to the UART's THR (port 0x3f8)",
                  common.format_table(["UART", "us per exit"], rows),
                  f"round trip {_fmt(boundary['round_trip_us'])} us more than the VMM's exit "
                  f"({_fmt(ratios['exit_process_sync_over_vmm'])}x; goal <= "
                  f"{GOAL_RATIO:g}x), posted write {_fmt(boundary['posted_write_us'])} us more "
                  f"({_fmt(ratios['exit_process_posted_over_vmm'])}x)", ""]
    rows = []
    for r in _runs(result, "irq"):
        m = r["metrics"]
        rows.append([f"{r['config']['placement']} {r['config']['hz']} Hz",
                     _cell(m, "mwork_per_s"), str(m.get("ticks", "-")),
                     _fmt(m.get("overhead_pct"), 2, " %") if r["config"]["hz"] else "",
                     _fmt(m.get("cost_us_per_irq")) if r["config"]["hz"] else ""])
    if rows:
        lines += [f"Interrupts: compute for {params['ms']} ms with the PIC and PIT in each "
                  "placement",
                  common.format_table(["PIC+PIT", "Mwork/s", "ticks", "lost", "us/irq"], rows),
                  f"per interrupt: device process {_fmt(boundary['per_irq_process_minus_vmm_us'])}"
                  f" us more than the VMM ({_fmt(ratios['irq_cost_process_over_vmm'])}x), VMM "
                  f"{_fmt(boundary['per_irq_vmm_minus_kernel_us'])} us more than the kernel "
                  f"({_fmt(ratios['irq_cost_vmm_over_kernel'])}x)", ""]
    rows = [[r["config"]["placement"], _cell(r["metrics"], "mbps"),
             _cell(r["metrics"], "us_per_cmd")] for r in _runs(result, "ide")]
    if rows:
        lines += [f"IDE: DMA reads of {params['kib']} KiB, memfd RAM on both",
                  common.format_table(["IDE model", "MB/s", "us per command"], rows),
                  f"process/VMM throughput {_fmt(ratios['ide_mbps_process_over_vmm'])}x, "
                  f"{_fmt(boundary['per_ide_command_us'])} us more per command", ""]
    verdict = result["goal"]
    if verdict["met"] is None:
        lines.append("goal: not measured (an exit configuration failed)")
    elif verdict["met"]:
        lines.append(f"goal met: the round trip costs {_fmt(verdict['best_with_spin'])}x the "
                     f"in-process exit (<= {GOAL_RATIO:g}x)")
    else:
        lines.append(f"goal missed by {_fmt(verdict['missed_by'])}x: the round trip costs "
                     f"{_fmt(verdict['best_with_spin'])}x the in-process exit (goal "
                     f"{GOAL_RATIO:g}x); it is two wake-ups through eventfds, each a context "
                     "switch, which a busy host delays most")
    errors = [f"{r['config']['test']} {r['config']['placement']}: {r['metrics']['error']}"
              for r in result["runs"] if "error" in r["metrics"]]
    lines += [f"failed: {e}" for e in errors]
    host = result["host"]
    load = (f"load average {host.get('loadavg_1m_start')} -> {host.get('loadavg_1m_end')}"
            if host.get("loadavg_1m_start") is not None else "")
    lines += ["", common.host_line(host) + (f"; {load}" if load else "")]
    return "\n".join(lines)


def parse_sections(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names or any(name not in SECTIONS for name in names):
        raise ValueError(f"choose sections from {','.join(SECTIONS)}")
    return names


__all__ = ["Config", "Outcome", "Params", "QUICK", "SECTIONS", "configurations", "goal",
           "measure", "parse_sections", "render", "summarize"]
