"""`pyhvm bench ide` without KVM: MB/s, the overlap figures, ratios, goals, the per-command
profile from a made-up trace, the JSON shape and the report, so that the arithmetic is
pinned down where the real figures are too noisy to check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyhvm.bench import ide
from pyhvm.bench.common import BenchError, GuestRun
from pyhvm.bench.ide import Config, OverlapSample, Outcome, SeqSample
from pyhvm.cli import build_parser
from pyhvm.trace.records import Kind, Record

KERNEL = Path("/guest/build/guestkit.elf")
KHZ = 2_000_000                     # 2 GHz: 2000 cycles a microsecond
HOST = {"kernel": "6.1", "cpu_model": "test CPU", "cpus": 2, "kvm_module": "kvm_intel",
        "kvm_pvm": False, "python": "CPython 3.11", "qemu": "7.2",
        "loadavg_1m_start": 0.5, "loadavg_1m_end": 0.7}
SIZES = (4, 64, 32768)
MB = 16
# MB/s per (variant, op) at every size, before the per-size factor below
SPEED = {("sync", "read"): 100.0, ("concurrent", "read"): 200.0, ("qemu", "read"): 150.0,
         ("sync", "write"): 80.0, ("concurrent", "write"): 160.0, ("qemu", "write"): 170.0}
SIZE_FACTOR = {4: 0.1, 64: 1.0, 32768: 20.0}
SEQ_LINE = ("RESULT disk-seq ok=1 op=read size=64 mb=16 bytes=16777216 cycles=400000000 "
            "mbps=83.88 commands=256 us_per_cmd=781 mode=dma lba48=0 flush_cycles=0 "
            "tsc_khz=2000000 tsc_source=cpuid-40000010 irqs=258 no_irq=0")
OVERLAP_LINE = ("RESULT disk-overlap ok=1 io_alone_cycles=300 compute_alone_cycles=200 "
                "together_cycles=450 io_cycles=440 compute_cycles=450 total_cycles=450 "
                "serial_cycles=500 ideal_cycles=300 overlap_pct=25 work=1 bytes=1 "
                "commands=1 size=64 mb=16 tsc_khz=2000000 tsc_source=cpuid-40000010")


def _seq(mbps: float, kib: int, source: str = "cpuid-40000010",
         tsc_khz: int = KHZ) -> SeqSample:
    """A run that moved mb_for(kib) MiB at `mbps` (at the KHZ reference rate)."""
    moved = ide.mb_for(kib, MB) << 20
    cycles = int(moved / (mbps * 1e6) * KHZ * 1000)
    return SeqSample(bytes=moved, cycles=cycles, commands=moved // (kib * 1024),
                     flush_cycles=KHZ, tsc_khz=tsc_khz, tsc_source=source, wall_s=1.0)


def _overlap(io: int, compute: int, together: int, source: str = "cpuid-40000010"
             ) -> OverlapSample:
    return OverlapSample(io_alone=io, compute_alone=compute, together=together,
                         io_cycles=together, compute_cycles=together, tsc_khz=KHZ,
                         tsc_source=source, wall_s=1.0)


# total cycles of the together phase with io 1000 and compute 900: sync none; with large
# commands concurrent near perfect and QEMU half-way, with small ones hardly any overlap
TOGETHER = {("sync", 64): 1900, ("concurrent", 64): 1800, ("qemu", 64): 1850,
            ("sync", 32768): 1900, ("concurrent", 32768): 1100, ("qemu", 32768): 1450}


def _outcomes(qemu: bool = True) -> dict[Config, Outcome]:
    """Three repetitions each, the middle one the median (+-1 %)."""
    outcomes: dict[Config, Outcome] = {}
    for config in ide.configurations(SIZES, qemu):
        # QEMU's guest calibrated its TSC 10 % high: the reference rate must win
        source, khz = ("pit", KHZ * 11 // 10) if config.vmm == "qemu" \
            else ("cpuid-40000010", KHZ)
        if config.test == "seq":
            speed = SPEED[(config.variant, config.op)] * SIZE_FACTOR[config.kib]
            outcomes[config] = Outcome([_seq(speed * f, config.kib, source, khz)
                                        for f in (0.99, 1.0, 1.01)])
        else:
            total = TOGETHER[(config.variant, config.kib)]
            outcomes[config] = Outcome([_overlap(1000, 900, total + d, source)
                                        for d in (-10, 0, 10)])
    return outcomes


def _profile() -> dict:
    return {"kib": 64, "mb": MB, "op": "read",
            "placements": {"sync": {"commands": 3, "cycle_us": 500.0, "exits_per_cmd": 11.0,
                                    "exits_by_port_per_cmd": {"ide0-command+0x7": 2.0}},
                           "concurrent": {"error": "pyhvm run failed"}}}


def _summary(outcomes: dict[Config, Outcome] | None = None) -> dict:
    return ide.summarize(outcomes if outcomes is not None else _outcomes(),
                         {4: [2.0, 2.0, 2.0], 64: [6.0, 7.0, 8.0], 32768: [3000.0]},
                         _profile(), reps=3, mb=MB, kernel=KERNEL, image_mib=64, host=HOST)


def _metrics(result: dict, variant: str, scenario: str, op: str = "read",
             kib: int = 64) -> dict:
    (run,) = [r for r in result["runs"] if r["config"]["variant"] == variant
              and r["config"]["scenario"] == scenario and r["config"]["op"] == op
              and r["config"]["kib"] == kib]
    return run["metrics"]


# --- sizes and runs -----------------------------------------------------------------------
def test_parse_sizes() -> None:
    assert ide.parse_sizes("128, 4,64,4") == (4, 64, 128)
    assert ide.parse_sizes("32768") == (ide.MAX_KIB,)
    for bad in ("", "0", "32769", "4,x"):
        with pytest.raises(ValueError):
            ide.parse_sizes(bad)


def test_a_huge_command_gets_at_least_two_commands_of_data() -> None:
    assert ide.mb_for(64, 16) == 16
    assert ide.mb_for(32768, 16) == 64      # 2 x 32 MiB
    assert ide.mb_for(32768, 100) == 100
    assert ide.mb_for(1024, 1) == 2


def test_a_tiny_command_gets_at_most_1024_commands_of_data() -> None:
    assert ide.mb_for(4, 16) == 4           # 1024 x 4 KiB
    assert ide.mb_for(4, 2) == 2
    assert ide.mb_for(1, 16) == 1
    # the overlap run with 32 MiB commands sets the image size: 8 commands
    assert ide.image_mib((4, 64), 16) == 256
    assert ide.image_mib((4,), 300) == 300


def test_configurations_put_the_variants_of_one_size_side_by_side() -> None:
    configs = ide.configurations((4, 64), qemu=True)
    assert configs[:3] == [Config(v, "seq", "read", 4) for v in ("sync", "concurrent", "qemu")]
    assert len(configs) == 2 * 2 * 3 + 2 * 3
    assert configs[-6:] == [Config(v, "overlap", "read", kib) for kib in (64, 32768)
                            for v in ide.VARIANTS]
    assert all(c.vmm == "pyhvm" for c in ide.configurations((4,), qemu=False))


def test_guest_command_lines() -> None:
    assert ide.guest_append(Config("sync", "seq", "write", 32768), 16) == \
        "scenario=disk-seq op=write size=32768 mb=64"
    assert ide.guest_append(Config("qemu", "overlap"), 8) == \
        "scenario=disk-overlap size=64 mb=8"
    assert ide.guest_append(Config("sync", "overlap", "read", 32768), 16) == \
        "scenario=disk-overlap size=32768 mb=256"           # 8 commands at least
    command = ide.qemu_command(KERNEL, "scenario=disk-seq", "/tmp/x.img")
    assert command[command.index("-drive") + 1] == "file=/tmp/x.img,if=ide,format=raw"
    assert "-enable-kvm" in command and command[command.index("-m") + 1] == "256"
    text = ide.command_text(Config("concurrent", "seq", "read", 64), KERNEL, 16)
    assert "--ide-dma concurrent" in text and "file=IMAGE,if=ide,format=raw" in text


def test_seq_sample_reads_the_guests_result_and_checks_it() -> None:
    config = Config("sync", "seq", "read", 64)
    sample = ide.seq_sample(GuestRun(1, "banner\n" + SEQ_LINE + "\n", "", 0.8), config, MB)
    assert (sample.bytes, sample.cycles, sample.commands) == (16 << 20, 400_000_000, 256)
    assert ide.mbps(sample, KHZ) == pytest.approx(16 * 1048576 / 0.2 / 1e6)
    with pytest.raises(BenchError, match="op=read size=64"):
        ide.seq_sample(GuestRun(1, SEQ_LINE, "", 0.8), Config("sync", "seq", "write", 64),
                       MB)
    with pytest.raises(BenchError, match="MiB"):
        ide.seq_sample(GuestRun(1, SEQ_LINE, "", 0.8), config, 4)
    with pytest.raises(BenchError, match="failed"):
        ide.seq_sample(GuestRun(1, SEQ_LINE.replace("ok=1", "ok=0"), "", 0.8), config, MB)


def test_overlap_sample_reads_the_three_phases() -> None:
    sample = ide.overlap_sample(GuestRun(1, OVERLAP_LINE, "", 1.0))
    assert (sample.io_alone, sample.compute_alone, sample.together) == (300, 200, 450)
    assert sample.total_over_max == pytest.approx(1.5)
    assert sample.total_over_sum == pytest.approx(0.9)


# --- the figures --------------------------------------------------------------------------
def test_mbps_is_timed_at_the_reference_rate_for_every_vmm() -> None:
    result = _summary()
    assert result["host"]["tsc_khz_reference"] == KHZ
    assert result["host"]["tsc_khz_reference_source"] == "cpuid"
    qemu = _metrics(result, "qemu", "disk-seq", "read", 64)
    assert qemu["mbps"] == pytest.approx(150.0, rel=1e-3)
    assert qemu["tsc_khz"] == KHZ * 11 // 10      # what the guest thought, reported
    sync = _metrics(result, "sync", "disk-seq", "read", 4)
    assert sync["mbps"] == pytest.approx(10.0, rel=1e-3)
    assert sync["commands"] == 1024                 # 4 MiB of 4 KiB commands
    assert sync["mbps_reps"] == sorted(sync["mbps_reps"]) and len(sync["mbps_reps"]) == 3
    assert sync["us_per_cmd"] == pytest.approx(4096 / 10.0, rel=1e-3)
    assert sync["flush_ms"] == pytest.approx(1.0)  # KHZ cycles
    assert sync["host_copy_us"] == 2.0


def test_ratios_compare_placements_and_qemu_per_size() -> None:
    ratios = _summary()["ratios"]
    for kib in SIZES:
        assert ratios[f"read_{kib}k_concurrent_over_sync"] == pytest.approx(2.0, abs=1e-3)
        assert ratios[f"read_{kib}k_concurrent_over_qemu"] == pytest.approx(4 / 3, abs=1e-3)
        assert ratios[f"write_{kib}k_sync_over_qemu"] == pytest.approx(80 / 170, abs=1e-3)
    assert ratios["overlap_32768k_total_over_max_sync"] == pytest.approx(1900 / 1000)
    assert ratios["overlap_32768k_total_over_sum_sync"] == pytest.approx(1.0)
    assert ratios["overlap_32768k_total_over_max_concurrent"] == pytest.approx(1.1)
    assert ratios["overlap_32768k_total_over_max_qemu"] == pytest.approx(1.45)
    assert ratios["overlap_64k_total_over_max_concurrent"] == pytest.approx(1.8)


def test_overlap_metrics() -> None:
    m = _metrics(_summary(), "concurrent", "disk-overlap", kib=32768)
    assert m["io_alone_ms"] == pytest.approx(1000 / KHZ, abs=0.01)
    assert m["total_over_sum"] == pytest.approx(1100 / 1900, abs=1e-3)
    assert m["overlap_pct"] == pytest.approx((1900 - 1100) * 100 / (1900 - 1000), abs=0.1)


def test_without_qemu_only_pyhvm_ratios() -> None:
    ratios = _summary(_outcomes(qemu=False))["ratios"]
    assert ratios and not any("qemu" in key for key in ratios)


def test_a_failed_configuration_is_reported_not_dropped() -> None:
    outcomes = _outcomes()
    outcomes[Config("qemu", "seq", "write", 64)] = Outcome(error="rep 1: qemu died")
    result = _summary(outcomes)
    assert _metrics(result, "qemu", "disk-seq", "write", 64) == \
        {"error": "rep 1: qemu died", "reps_ok": 0}
    assert result["ratios"]["write_64k_concurrent_over_qemu"] is None
    assert "qemu disk-seq write 64 KiB failed: rep 1: qemu died" in ide.render(result)


def test_json_shape() -> None:
    result = _summary()
    assert list(result) == ["bench", "host", "runs", "ratios", "profile"]
    assert result["bench"] == "ide"
    json.dumps(result)
    config = result["runs"][0]["config"]
    assert config["page_cache"] == "warm" and config["image_mib"] == 64
    lba48 = {r["config"]["kib"]: r["config"]["lba48"] for r in result["runs"]}
    assert lba48 == {4: False, 64: False, 32768: True}
    assert result["profile"]["host_copy_us"] == 7.0


# --- goals and the report -----------------------------------------------------------------
def test_goals_judge_each_target() -> None:
    lines = ide.goals(_summary())
    assert lines[0].startswith("overlap with 64 KiB commands: NOT met")       # 1.80
    assert lines[1].startswith("overlap with 32768 KiB commands: met")  # 1.10, sync 1.00
    lines = lines[1:]
    assert "with the largest LBA48 command, 32768 KiB: met" in lines[1]  # 4000 MB/s
    assert lines[2].startswith(">= QEMU") and "NOT met" in lines[2]      # writes lose
    assert "write 4 KiB" in lines[2] and "read" not in lines[2].split("behind at")[1]


def test_goals_not_met() -> None:
    outcomes = _outcomes()
    outcomes[Config("concurrent", "overlap", "read", 32768)] = \
        Outcome([_overlap(1000, 900, 1500)])
    outcomes[Config("concurrent", "seq", "read", 32768)] = Outcome([_seq(500.0, 32768)])
    lines = ide.goals(_summary(outcomes))
    assert lines[1].startswith("overlap with 32768 KiB commands: NOT met")
    assert "1.50 x max" in lines[1] and "near the sum, >= 0.90: yes" in lines[1]
    lines = lines[1:]
    assert "32768 KiB: NOT met (concurrent 500 MB/s" in lines[1]


def test_render_reports_figures_profile_and_goals() -> None:
    text = ide.render(_summary())
    assert "page cache warm" in text
    assert "conc/QEMU" in text and "total/max" in text
    assert "32768 (LBA48)" in text
    assert "(MiB a run: 16 as asked, but 4 KiB 4, 32768 KiB 64:" in text
    assert "concurrent: no profile (pyhvm run failed)" in text
    assert "preadv of 64 KiB" in text and "goals:" in text
    assert "(QEMU not measured: --no-qemu)" in ide.render(_summary(_outcomes(qemu=False)))
    no_qemu = _summary(_outcomes(qemu=False))
    no_qemu["host"]["qemu"] = None
    assert "qemu-system-x86_64 is not installed" in ide.render(no_qemu)


# --- the per-command profile --------------------------------------------------------------
PIO_MAP = [[496, 8, "ide0-command"], [1016, 8, "com1"], [49152, 16, "ide-bus-master"]]
WRITE = 1 << 8


def _pio(ts: int, port: int, value: int = 0, write: bool = True, dur: int = 1000) -> Record:
    return Record(ts, dur, Kind.EXIT_PIO, 0, port, value, 1 | (WRITE if write else 0) | 1 << 16)


def _irq(ts: int, level: int) -> Record:
    return Record(ts, 0, Kind.IRQ_LEVEL, 255, 14, level, 0)


def _command(t: int, start_dur: int, irq_after: int) -> list[Record]:
    """A command at t (us -> ns): the BM start exit, IRQ 14 `irq_after` later, then the
    handler: status read, BM status read, BM stop, and a COM1 write."""
    us = 1000
    return [_pio(t * us, 0xC000, 0x09, dur=start_dur * us),
            _irq((t + irq_after) * us, 1),
            _pio((t + irq_after + 50) * us, 0x1F7, write=False),
            _irq((t + irq_after + 51) * us, 0),
            _pio((t + irq_after + 60) * us, 0xC002, write=False),
            _pio((t + irq_after + 70) * us, 0xC000, 0x08),
            _pio((t + irq_after + 80) * us, 0x3F8, 0x41)]


def test_profile_breaks_a_command_down() -> None:
    records = [r for t in (0, 500, 1000) for r in _command(t, 10, 100)]
    profile = ide.command_profile({"pio_map": PIO_MAP}, records[::-1])  # any order
    assert profile["commands"] == 2
    assert profile["cycle_us"] == 500.0 and profile["cycle_mean_us"] == 500.0
    assert profile["start_exit_us"] == 10.0
    assert profile["other_exits_us"] == 4.0
    assert profile["guest_us"] == 486.0
    assert profile["transfer_us"] == 100.0
    assert profile["interrupt_us"] == 50.0
    assert profile["exits_per_cmd"] == 5.0 and profile["ide_exits_per_cmd"] == 4.0
    assert profile["irqs_per_cmd"] == 1.0
    assert profile["exits_by_port_per_cmd"]["ide-bus-master+0x0"] == 2.0
    assert profile["exits_by_port_per_cmd"]["com1+0x0"] == 1.0


def test_profile_of_a_transfer_inside_the_exit_times_the_interrupt_from_its_end() -> None:
    """sync: IRQ 14 rises during the start exit; the handler can only run after it."""
    records = [r for t in (0, 500, 1000) for r in _command(t, 30, 20)]
    profile = ide.command_profile({"pio_map": PIO_MAP}, records)
    assert profile["transfer_us"] == 20.0
    assert profile["interrupt_us"] == 40.0          # from the exit's end at +30 to +70


def test_profile_needs_two_commands() -> None:
    profile = ide.command_profile({"pio_map": PIO_MAP}, _command(0, 10, 100))
    assert "error" in profile


# --- the host side ------------------------------------------------------------------------
def test_copy_floor_times_preadv_of_one_command(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    ide.fill_image(image, 1)
    assert image.stat().st_size == 1 << 20
    times = ide.copy_us(image, 64)
    assert len(times) == ide.COPY_SAMPLES[1] and all(t > 0 for t in times)
    assert len(ide.copy_us(image, 1024)) >= ide.COPY_SAMPLES[0]


def test_cli_options() -> None:
    parser = build_parser()
    args = parser.parse_args(["bench", "ide"])
    assert (args.reps, args.mb, args.sizes, args.no_qemu, args.json) == \
        (ide.DEFAULT_REPS, ide.DEFAULT_MB, ide.DEFAULT_SIZES, False, False)
    args = parser.parse_args(["bench", "ide", "--json", "--reps", "1", "--mb", "4",
                              "--sizes", "64,4", "--no-qemu"])
    assert (args.reps, args.mb, args.sizes, args.no_qemu, args.json) == (1, 4, (4, 64),
                                                                         True, True)
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "ide", "--sizes", "65536"])


def test_measure_rejects_bad_arguments() -> None:
    with pytest.raises(BenchError):
        ide.measure(reps=0)
    with pytest.raises(BenchError, match="--sizes"):
        ide.measure(sizes=(0,))
