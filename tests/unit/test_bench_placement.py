"""`pyhvm bench placement` without KVM: the boundary costs, ratios and goal verdict from
made-up samples, the configurations and commands, the report and the CLI options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyhvm.bench import exits as exits_bench
from pyhvm.bench import ide as ide_bench
from pyhvm.bench import pic as pic_bench
from pyhvm.bench import placement as pb
from pyhvm.cli import build_parser

KERNEL = Path("/guest/build/guestkit.elf")
KHZ = 2_000_000                    # 2 GHz: 2000 cycles per microsecond
HOST = {"kernel": "6.1", "cpu_model": "test CPU", "cpus": 2, "kvm_module": "kvm_intel",
        "kvm_pvm": False, "python": "CPython 3.11", "qemu": None,
        "loadavg_1m_start": 0.5, "loadavg_1m_end": 0.6}
PARAMS = pb.Params(n=1000, ms=1000, hz=1000, mb=16, kib=64, spin_us=20)


def exit_sample(us: float) -> exits_bench.Sample:
    return exits_bench.Sample(1000, int(us * 2000 * 1000), KHZ, "cpuid-40000010", 1.0)


def irq_sample(lost: float, ticks: int) -> pic_bench.Sample:
    """One second of compute (2e9 cycles) that did 1e9 work at 0 Hz, less `lost`."""
    return pic_bench.Sample(int(1_000_000_000 * (1 - lost)), 2_000_000_000, ticks, KHZ,
                            "cpuid-40000010", 1.2)


def ide_sample(us_per_cmd: float) -> ide_bench.SeqSample:
    commands = 256
    return ide_bench.SeqSample(commands * 64 * 1024, int(us_per_cmd * 2000 * commands),
                               commands, 0, KHZ, "cpuid-40000010", 1.0)


def outcomes(exit_us: dict[str, float] | None = None) -> dict[pb.Config, pb.Outcome]:
    exit_us = exit_us or {"vmm": 10.0, "process-posted": 12.0, "process-sync": 30.0,
                          "process-spin": 18.0}
    lost = {"process": 0.15, "vmm": 0.10, "kernel": 0.05}
    made: dict[pb.Config, pb.Outcome] = {}
    for config in pb.configurations(PARAMS):
        if config.test == "exit":
            us = exit_us[config.placement]
            made[config] = pb.Outcome([exit_sample(us * 0.9), exit_sample(us),
                                       exit_sample(us * 1.1)])
        elif config.test == "irq":
            share = lost[config.placement] if config.hz else 0.0
            made[config] = pb.Outcome([irq_sample(share, 1000 if config.hz else 0)] * 3)
        else:
            us = {"vmm": 100.0, "process": 250.0}[config.placement]
            made[config] = pb.Outcome([ide_sample(us)] * 3)
    return made


def summary(made: dict[pb.Config, pb.Outcome]) -> dict:
    return pb.summarize(made, PARAMS, reps=3, kernel=KERNEL, host=HOST)


def test_the_boundary_costs_and_ratios_come_from_the_medians() -> None:
    result = summary(outcomes())
    assert result["bench"] == "placement"
    assert result["boundary"]["round_trip_us"] == 20.0        # 30 - 10
    assert result["boundary"]["round_trip_spin_us"] == 8.0
    assert result["boundary"]["posted_write_us"] == 2.0
    assert result["ratios"]["exit_process_sync_over_vmm"] == 3.0
    assert result["ratios"]["exit_process_posted_over_vmm"] == 1.2
    # 15 %, 10 % and 5 % of one second lost over 1000 interrupts: 150, 100 and 50 us each.
    assert result["boundary"]["per_irq_process_minus_vmm_us"] == 50.0
    assert result["boundary"]["per_irq_vmm_minus_kernel_us"] == 50.0
    assert result["ratios"]["irq_cost_process_over_vmm"] == 1.5
    assert result["ratios"]["irq_cost_process_over_kernel"] == 3.0
    assert result["boundary"]["per_ide_command_us"] == 150.0
    assert result["ratios"]["ide_mbps_process_over_vmm"] == 0.4
    json.dumps(result)  # the JSON envelope is plain data


def test_the_goal_counts_the_best_round_trip_and_says_by_how_much_it_is_missed() -> None:
    met = summary(outcomes())["goal"]  # 3x without spinning, 1.8x with
    assert met == {"goal_ratio": 2.0, "round_trip_over_exit": 3.0, "best_with_spin": 1.8,
                      "met": True, "missed_by": None}
    slow = summary(outcomes({"vmm": 10.0, "process-posted": 12.0, "process-sync": 50.0,
                             "process-spin": 45.0}))["goal"]
    assert slow["met"] is False and slow["missed_by"] == 2.25


def test_a_failed_configuration_is_reported_and_its_ratios_are_none() -> None:
    made = outcomes()
    made[pb.Config("exit", "process-sync")] = pb.Outcome(error="rep 1: it died")
    made[pb.Config("exit", "process-spin")] = pb.Outcome(error="rep 1: it died")
    result = summary(made)
    assert result["ratios"]["exit_process_sync_over_vmm"] is None
    assert result["goal"]["met"] is None
    failed = [r for r in result["runs"] if "error" in r["metrics"]]
    assert len(failed) == 2 and "failed: exit process-sync: rep 1: it died" in pb.render(result)


def test_the_report_shows_each_experiment_and_the_verdict() -> None:
    text = pb.render(summary(outcomes({"vmm": 10.0, "process-posted": 12.0,
                                        "process-sync": 50.0, "process-spin": 45.0})))
    assert "Exit cost: 1000 writes" in text and "process-sync" in text
    assert "Interrupts: compute for 1000 ms" in text and "kernel 1000 Hz" in text
    assert "IDE: DMA reads of 64 KiB" in text
    assert "goal missed by 2.25x" in text


def test_configurations_and_commands_name_each_placement() -> None:
    configs = pb.configurations(PARAMS)
    assert [c.placement for c in configs if c.test == "exit"] == \
        ["vmm", "process-posted", "process-sync", "process-spin"]
    assert len([c for c in configs if c.test == "irq"]) == 6
    assert pb.configurations(pb.Params(spin_us=0), ("exit",)) == [
        pb.Config("exit", p) for p in ("vmm", "process-posted", "process-sync")]
    text = pb.command_text(pb.Config("irq", "process", 1000), PARAMS, KERNEL)
    assert "--irqchip user --device-process pic" in text and "hz=1000" in text
    text = pb.command_text(pb.Config("exit", "process-spin"), PARAMS, KERNEL)
    assert "uart,post=off,spin=20" in text and "port=0x3f8" in text
    text = pb.command_text(pb.Config("ide", "vmm"), PARAMS, KERNEL)
    assert "--mem-backing memfd" in text and "--device-process" not in text


def test_cli_options() -> None:
    parser = build_parser()
    args = parser.parse_args(["bench", "placement", "--json", "--quick", "--only", "exit,irq",
                              "--spin", "0"])
    assert args.json and args.quick and args.only == ("exit", "irq") and args.spin == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "placement", "--only", "net"])
