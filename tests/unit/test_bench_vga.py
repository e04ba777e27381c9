"""`pyhvm bench vga` without KVM: configurations, parsing the guest's lines, the in-process
refresh measurement, and the table."""

from __future__ import annotations

import pytest

from pyhvm.bench import vga
from pyhvm.bench.common import BenchError


def test_configurations_interleave_placements_and_qemu_per_test() -> None:
    configs = vga.configurations(qemu=True)
    assert [c.label for c in configs[:3]] == ["fill pyhvm shared", "fill pyhvm trap",
                                              "fill qemu std"]
    assert len(configs) == 3 * len(vga.TESTS)
    assert all(c.vmm == "pyhvm" for c in vga.configurations(qemu=False))


def test_guest_append_names_the_scenario_mode_and_duration() -> None:
    assert vga.guest_append("fill", 250) == "scenario=fb-fill mode=320x200x8 ms=250"
    assert vga.guest_append("scroll", 100) == "scenario=fb-scroll kind=text ms=100"


def test_sample_from_reads_bytes_or_frames_and_cycles() -> None:
    fill = ("RESULT fb-fill ok=1 mode=320x200x8 frames=3 bytes=192000 cycles=2000000 "
            "mbps=1.00 fps=1.0 tsc_khz=2000000 tsc_source=cpuid-40000010\n")
    sample = vga.sample_from("fill", fill)
    assert (sample.units, sample.cycles, sample.tsc_khz) == (192000, 2000000, 2000000)
    scroll = "RESULT fb-scroll ok=1 kind=text frames=7 bytes=1 cycles=9 tsc_khz=1 tsc_source=x"
    assert vga.sample_from("scroll", scroll).units == 7
    with pytest.raises(BenchError):
        vga.sample_from("fill", fill.replace("ok=1", "ok=0"))
    with pytest.raises(BenchError):
        vga.sample_from("fill", fill.replace("cycles=2000000", "cycles=0"))


def test_refresh_costs_measure_each_dirty_fraction() -> None:
    costs = vga.refresh_costs(reps=1, frames=1)
    assert set(costs) == set(vga.REFRESH_DIRTY)
    assert all(len(v) == 1 and v[0] > 0 for v in costs.values())


def test_render_prints_every_run_and_the_goals() -> None:
    runs = [{"config": {"vmm": "pyhvm", "placement": p, "test": "fill"},
             "metrics": {"mbps": m, "mbps_reps": [m]}} for p, m in (("shared", 500.0),
                                                                    ("trap", 0.1))]
    runs.append({"config": {"vmm": "pyhvm", "placement": "renderer", "test": "refresh",
                            "dirty_percent": 10}, "metrics": {"ms": 0.5, "ms_reps": [0.5]}})
    result = {"bench": "vga", "host": {"kernel": "k", "python": "p", "qemu_run": False},
              "runs": runs, "ratios": {"fill_shared_over_trap": 5000.0,
                                       "refresh10_goal_ms_over_measured": 10.0}}
    text = vga.render(result)
    assert "500.00 MB/s" in text and "0.10 MB/s" in text and "0.50 ms" in text
    assert "fill shared >= 50x trap: met" in text and "<= 5 ms: met" in text
    assert "pyhvm only" in text


def test_quick_configurations_are_the_fill_only() -> None:
    assert {c.test for c in vga.configurations(True, vga.QUICK_TESTS)} == {"fill"}
