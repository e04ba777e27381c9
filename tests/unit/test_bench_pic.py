"""`pyhvm bench pic` without KVM: the derived figures (compute lost, cost per interrupt,
ratios, the exit profile) from made-up samples, the JSON shape and the report, so that the
arithmetic is pinned down where the real figures are too noisy to check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyhvm.bench import pic
from pyhvm.bench.common import BenchError, GuestRun
from pyhvm.bench.pic import Config, Outcome, Sample
from pyhvm.cli import build_parser

KERNEL = Path("/guest/build/guestkit.elf")
MS = 1000
CYCLES = 2_600_000_000
HOST = {"kernel": "6.1", "cpu_model": "test CPU", "cpus": 2, "kvm_module": "kvm_intel",
        "kvm_pvm": False, "python": "CPython 3.11", "qemu": "7.2",
        "loadavg_1m_start": 0.5, "loadavg_1m_end": 0.7}
COMPUTE_LINE = ("RESULT compute seconds=1 ms=1000 hz=1000 ticks=998 work=712376320 "
                "cycles=2596228000 tsc_khz=2596150 tsc_source=cpuid-40000010 cpl=3 "
                "sys_entry=ud")


def _stats(placement: str, timer: bool) -> dict:
    """An exit profile shaped like `pyhvm run --stats`: console exits always, and in the
    user placement the PIC's port traffic and interrupt windows when the timer runs."""
    pio = {"0x03f8 com1": 190, "0x03fd com1": 190, "0x00f4 debug-exit": 1}
    other: dict[str, int] = {}
    extra: dict = {}
    if placement == "user":
        if timer:
            pio.update({"0x0021 pic-master": 2000, "0x0020 pic-master": 1000,
                        "0x0043 pit": 1, "0x0040 pit": 2})
            other["IrqWindowOpenExit"] = 100
        extra = {"interrupts_injected": 1000 if timer else 0,
                 "interrupt_windows": 110 if timer else 0, "timer_callbacks": 1000,
                 "pit_ticks": {"delivered": 1000, "delayed": 0, "merged": 0, "discarded": 0}}
    exits = sum(pio.values()) + sum(other.values())
    return {"irqchip": placement, "exits": exits, "pio_exits": pio, "mmio_exits": 0,
            "other_exits": other, **extra}


def _sample(work: int, ticks: int, stats: dict | None = None) -> Sample:
    return Sample(work=work, cycles=CYCLES, ticks=ticks, tsc_khz=2_600_000,
                  tsc_source="cpuid-40000010", wall_s=1.3, stats=stats)


def _outcomes(qemu: bool = True) -> dict[Config, Outcome]:
    """Work per configuration: 1000 M steps at 0 Hz; at 1000 Hz pyhvm user loses 10 %,
    pyhvm kernel 5 %, QEMU user 8 %, QEMU kernel 5 %; every run takes 1000 ticks (pyhvm
    user 800). Three repetitions, the middle one the median."""
    lost = {("pyhvm", "user"): 0.10, ("pyhvm", "kernel"): 0.05,
            ("qemu", "user"): 0.08, ("qemu", "kernel"): 0.05}
    outcomes: dict[Config, Outcome] = {}
    for config in pic.configurations((0, 1000), qemu):
        share = lost[(config.vmm, config.irqchip)] if config.hz else 0.0
        ticks = 0 if not config.hz else (800 if (config.vmm, config.irqchip) ==
                                         ("pyhvm", "user") else 1000)
        base = int(1_000_000_000 * (1 - share))
        stats = _stats(config.irqchip, bool(config.hz)) if config.vmm == "pyhvm" else None
        outcomes[config] = Outcome([_sample(base - 1000, ticks, stats),
                                    _sample(base, ticks, stats),
                                    _sample(base + 1000, ticks, stats)])
    return outcomes


def _summary(outcomes: dict[Config, Outcome]) -> dict:
    return pic.summarize(outcomes, ms=MS, reps=3, kernel=KERNEL, host=HOST)


def _metrics(result: dict, vmm: str, irqchip: str, hz: int) -> dict:
    (run,) = [r for r in result["runs"] if r["config"]["vmm"] == vmm
              and r["config"]["irqchip"] == irqchip and r["config"]["hz"] == hz]
    return run["metrics"]


# --- the arithmetic -------------------------------------------------------------------------
def test_overhead_is_the_share_of_compute_lost() -> None:
    assert pic.overhead(90.0, 100.0) == pytest.approx(0.10)
    assert pic.overhead(100.0, 100.0) == 0.0
    assert pic.overhead(101.0, 100.0) == pytest.approx(-0.01)  # noise, reported as it is
    assert pic.overhead(1.0, 0.0) is None


def test_cost_per_interrupt_spreads_the_loss_over_the_guests_ticks() -> None:
    # 10 % of 1 s over 1000 ticks: 100 us each; over 800 ticks: 125 us
    assert pic.cost_per_irq_us(0.10, 1.0, 1000) == pytest.approx(100.0)
    assert pic.cost_per_irq_us(0.10, 1.0, 800) == pytest.approx(125.0)
    assert pic.cost_per_irq_us(0.05, 0.2, 200) == pytest.approx(50.0)
    assert pic.cost_per_irq_us(0.10, 1.0, 0) is None
    assert pic.cost_per_irq_us(None, 1.0, 1000) is None


def test_the_vmm_announced_tsc_rate_times_every_run() -> None:
    """QEMU's qemu64 guest measures its TSC against the PIT and can be far off on a loaded
    host; pyhvm tells it by CPUID. The told rate wins, else the guests' own."""
    told = Sample(1, 1, 0, 2_600_000, "cpuid-40000010", 0.0)
    measured = Sample(1, 1, 0, 2_900_000, "pit", 0.0)
    assert pic.reference_tsc_khz([measured, told, measured]) == (2_600_000, "cpuid")
    assert pic.reference_tsc_khz([measured]) == (2_900_000, "guest calibration")


def test_a_miscalibrated_guest_is_timed_by_the_reference() -> None:
    """A QEMU guest that thinks the TSC runs 25 % fast runs 1.25 s for its "1000 ms": its
    cost per interrupt uses the 1.25 s and its ticks, and the report says so."""
    outcomes = _outcomes()
    for hz in (0, 1000):
        config = Config("qemu", "kernel", hz)
        outcomes[config] = Outcome([
            Sample(int(s.work * 1.25), int(s.cycles * 1.25), int(s.ticks * 1.25), 3_250_000,
                   "pit", 1.5) for s in outcomes[config].samples])
    result = _summary(outcomes)
    metrics = _metrics(result, "qemu", "kernel", 1000)
    assert metrics["timed_ms"] == pytest.approx(1250.0)
    assert metrics["ticks"] == 1250
    assert metrics["overhead_pct"] == pytest.approx(5.0)
    assert metrics["cost_us_per_irq"] == pytest.approx(50.0)
    assert metrics["mwork_per_s"] == pytest.approx(950.0, abs=0.01)
    assert result["host"]["tsc_khz_reference"] == 2_600_000
    assert "calibrated its TSC at 3250000 kHz" in pic.render(result)


def test_the_rate_is_work_per_tsc_cycle() -> None:
    """A guest that calibrated its TSC a little differently runs a little longer: the rate,
    not the raw work, is what compares."""
    assert Sample(1000, 2000, 0, 1, "x", 0.0).rate == 0.5


def test_summary_metrics_per_configuration() -> None:
    result = _summary(_outcomes())
    user = _metrics(result, "pyhvm", "user", 1000)
    assert user["work"] == 900_000_000
    assert user["work_reps"] == [899_999_000, 900_000_000, 900_001_000]
    assert user["ticks"] == 800
    assert user["overhead_pct"] == pytest.approx(10.0)
    assert user["cost_us_per_irq"] == pytest.approx(125.0)
    assert len(user["overhead_pct_reps"]) == 3
    assert user["cost_us_per_irq_reps"][1] == pytest.approx(125.0)
    assert user["exits"] == _stats("user", True)["exits"]
    kern = _metrics(result, "pyhvm", "kernel", 1000)
    assert kern["overhead_pct"] == pytest.approx(5.0)
    assert kern["cost_us_per_irq"] == pytest.approx(50.0)
    baseline = _metrics(result, "pyhvm", "user", 0)
    assert "overhead_pct" not in baseline and baseline["ticks"] == 0
    qemu = _metrics(result, "qemu", "user", 1000)
    assert qemu["cost_us_per_irq"] == pytest.approx(80.0)
    assert "exits" not in qemu  # QEMU gives no exit profile


def test_ratios_compare_placements_and_vmms() -> None:
    ratios = _summary(_outcomes())["ratios"]
    assert ratios["kernel_over_user_work_0hz"] == pytest.approx(1.0)
    assert ratios["kernel_over_user_work_1000hz"] == pytest.approx(0.95 / 0.90, abs=1e-3)
    assert ratios["qemu_kernel_over_user_work_1000hz"] == pytest.approx(0.95 / 0.92, abs=1e-3)
    assert ratios["pyhvm_kernel_vs_qemu_kernel_cost_1000hz"] == pytest.approx(1.0)
    assert ratios["pyhvm_kernel_vs_qemu_kernel_cost_per_irq_1000hz"] == pytest.approx(1.0)
    assert ratios["pyhvm_user_vs_qemu_user_cost_1000hz"] == pytest.approx(0.10 / 0.08, abs=1e-3)
    assert ratios["pyhvm_user_vs_qemu_user_cost_per_irq_1000hz"] == \
        pytest.approx(125 / 80, abs=1e-3)
    assert all(isinstance(v, float) for v in ratios.values())
    assert ratios["noise_0hz_max_over_min"] == 1.0  # the fakes differ by 2 in a million


def test_without_qemu_only_pyhvm_ratios() -> None:
    result = _summary(_outcomes(qemu=False))
    assert {r["config"]["vmm"] for r in result["runs"]} == {"pyhvm"}
    assert set(result["ratios"]) == {"noise_0hz_max_over_min", "kernel_over_user_work_0hz",
                                     "kernel_over_user_work_1000hz"}
    assert "--no-qemu" in pic.render(result)


# --- the exit profile -----------------------------------------------------------------------
def test_profile_shows_the_exits_the_kernel_placement_does_without() -> None:
    profile = _summary(_outcomes())["profile"]
    assert profile["hz"] == 1000 and profile["ms"] == MS
    user, kern = profile["placements"]["user"], profile["placements"]["kernel"]
    assert user["rep"] == 2  # the repetition with the median work
    assert user["timer_exits"] == 2000 + 1000 + 3 + 100
    assert user["timer_exits_per_s"] == pytest.approx(3103.0)
    assert user["timer_exits_per_tick"] == pytest.approx(3103 / 800, abs=0.01)
    assert user["top_exits"][0] == {"exit": "pio 0x0021 pic-master", "exits": 2000,
                                    "over_0hz": 2000}
    assert user["interrupts_injected"] == 1000
    assert kern["timer_exits"] == 0 and kern["timer_exits_per_s"] == 0.0
    rows = {row["exit"]: row for row in profile["difference"]}
    assert rows["pio 0x0021 pic-master"] == {"exit": "pio 0x0021 pic-master",
                                             "user_per_s": 2000.0, "kernel_per_s": 0.0,
                                             "user_per_tick": 2.5}
    assert "IrqWindowOpenExit" in rows
    assert "pio 0x03f8 com1" not in rows  # the same in both placements
    assert profile["difference"][0]["exit"] == "pio 0x0021 pic-master"  # largest first


def test_profile_rate_falls_back_to_the_highest() -> None:
    assert pic.profile_hz((0, 100, 1000)) == 1000
    assert pic.profile_hz((0, 100, 250)) == 250


def test_profile_says_why_it_is_missing() -> None:
    outcomes = _outcomes(qemu=False)
    outcomes[Config("pyhvm", "user", 1000)] = Outcome(
        [_sample(900_000_000, 800, None)])
    profile = _summary(outcomes)["profile"]
    assert "no --stats" in profile["placements"]["user"]["error"]
    assert profile["difference"] is None
    assert "no profile" in pic.render(_summary(outcomes))


# --- failures and the output ----------------------------------------------------------------
def test_a_failed_configuration_is_reported_not_dropped() -> None:
    outcomes = _outcomes()
    failed = Config("qemu", "user", 1000)
    outcomes[failed] = Outcome(error="rep 1: qemu kernel-irqchip=off ended with status 1")
    result = _summary(outcomes)
    metrics = _metrics(result, "qemu", "user", 1000)
    assert metrics == {"error": "rep 1: qemu kernel-irqchip=off ended with status 1",
                       "reps_ok": 0}
    assert result["ratios"]["pyhvm_user_vs_qemu_user_cost_per_irq_1000hz"] is None
    assert result["ratios"]["qemu_kernel_over_user_work_1000hz"] is None
    text = pic.render(result)
    assert "FAILED" in text and "ended with status 1" in text
    assert "userspace path costs no more per interrupt than QEMU's at 1000 Hz: not judged" \
        in text


def test_a_failed_baseline_leaves_no_overhead() -> None:
    outcomes = _outcomes(qemu=False)
    outcomes[Config("pyhvm", "kernel", 0)] = Outcome(error="rep 2: boom")
    metrics = _metrics(_summary(outcomes), "pyhvm", "kernel", 1000)
    assert metrics["overhead_pct"] is None and metrics["cost_us_per_irq"] is None


def test_json_shape() -> None:
    result = json.loads(json.dumps(_summary(_outcomes())))
    assert list(result) == ["bench", "host", "runs", "ratios", "profile"]
    assert result["bench"] == "pic"
    assert len(result["runs"]) == 8
    for run in result["runs"]:
        assert set(run) == {"config", "metrics"}
        config = run["config"]
        assert set(config) >= {"vmm", "irqchip", "hz", "ms", "reps", "command"}
        if config["vmm"] == "qemu":
            assert config["qemu_machine"] in config["command"]
        else:
            assert f"--irqchip {config['irqchip']}" in config["command"]
    assert list(result["profile"]["placements"]) == ["user", "kernel"]


def test_render_reports_goals_and_figures() -> None:
    text = pic.render(_summary(_outcomes()))
    assert "in-kernel placement loses no more compute than QEMU's at 1000 Hz: met" in text
    assert "userspace path costs no more per interrupt than QEMU's at 1000 Hz: NOT met" in text
    assert "+5.6 % work (pyhvm)" in text
    assert "125.0 (" in text          # the user placement's microseconds per interrupt
    assert "pio 0x0021 pic-master" in text
    assert "gone in the kernel placement" in text
    assert "load average (1 min) 0.50 at start, 0.70 at end" in text
    assert "differ by up to 0.0 %" in text


# --- guest output and arguments -------------------------------------------------------------
def test_sample_from_reads_the_guests_result_and_checks_it() -> None:
    sample = pic.sample_from(GuestRun(1, COMPUTE_LINE + "\n", "", 1.2), 1000, 1000)
    assert (sample.work, sample.ticks, sample.cycles) == (712376320, 998, 2596228000)
    assert sample.tsc_source == "cpuid-40000010"
    with pytest.raises(BenchError, match="hz=1000, not 250"):
        pic.sample_from(GuestRun(1, COMPUTE_LINE, "", 1.0), 1000, 250)
    with pytest.raises(BenchError, match="ms=1000, not 200"):
        pic.sample_from(GuestRun(1, COMPUTE_LINE, "", 1.0), 200, 1000)


def test_qemu_command_picks_the_placement() -> None:
    for placement, flag in (("user", "kernel-irqchip=off"), ("kernel", "kernel-irqchip=on")):
        command = pic.qemu_command(KERNEL, "scenario=compute ms=5 hz=100", placement)
        assert command[command.index("-machine") + 1] == flag
        assert "-enable-kvm" in command and "isa-debug-exit,iobase=0xf4,iosize=4" in command


def test_parse_hz_list() -> None:
    assert pic.parse_hz_list("1000,0,250,100,250") == (0, 100, 250, 1000)
    for bad in ("100,1000", "", "0,x", "0,-5", "0,999999"):
        with pytest.raises(ValueError):
            pic.parse_hz_list(bad)


def test_cli_options() -> None:
    parser = build_parser()
    args = parser.parse_args(["bench", "pic"])
    assert (args.reps, args.ms, args.hz, args.no_qemu, args.json) == \
        (pic.DEFAULT_REPS, pic.DEFAULT_MS, pic.DEFAULT_HZ, False, False)
    args = parser.parse_args(["bench", "pic", "--json", "--reps", "1", "--ms", "200",
                              "--hz", "0,1000", "--no-qemu"])
    assert (args.reps, args.ms, args.hz, args.no_qemu, args.json) == (1, 200, (0, 1000),
                                                                      True, True)
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "pic", "--hz", "100,1000"])


def test_measure_rejects_a_list_without_its_baseline() -> None:
    with pytest.raises(BenchError, match="include 0"):
        pic.measure(hzs=(100,))
