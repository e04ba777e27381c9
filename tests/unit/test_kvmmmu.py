"""The kernel MMU instruments without a kernel: counting from ring-buffer stats, fault
episodes from kvmmmu event lines (the formats of a kvm_pvm host, 6.18), what the counts
imply, and `pyhvm report`'s memory section from a traced run's data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyhvm.trace import kvmmmu, tracefs
from pyhvm.trace.records import Kind, Record
from pyhvm.trace.report import analyze, render_plain, report_sections

# One first touch of a guest page on a shadow-paging host, then a second one, on the vCPU
# thread; a walk error on another thread; an emulated instruction in between.
FAULTS = """\
 CPU 0/KVM-700  [001] .....  100.000010: kvm_mmu_set_accessed_bit: gpa 116000
 CPU 0/KVM-700  [001] .....  100.000011: kvm_mmu_set_dirty_bit: gpa 116000
 CPU 0/KVM-700  [001] .....  100.000012: kvm_mmu_spte_requested: gfn 401 pfn 22af01 level 1
 CPU 0/KVM-700  [001] .....  100.000013: kvm_mmu_set_spte: gfn 401 spte 22af01e67 (rwxu) level 1 at 105586808
 CPU 0/KVM-700  [001] .....  100.000020: kvm_emulate_insn: 0:1033ba:83 c2 01 (prot64)
 CPU 0/KVM-700  [001] .....  100.000030: kvm_mmu_spte_requested: gfn 402 pfn 22af02 level 1
 CPU 0/KVM-700  [001] .....  100.000031: kvm_mmu_set_spte: gfn 402 spte 22af02e67 (rwxu) level 1 at 105586810
 CPU 1/KVM-701  [000] .....  100.000040: kvm_mmu_set_accessed_bit: gpa 200000
 CPU 1/KVM-701  [000] .....  100.000500: kvm_mmu_walker_error: pferr 4 U
"""


def test_buffer_stats_give_entries_and_overrun() -> None:
    text = ("entries: 120\noverrun: 3456\ncommit overrun: 0\nbytes: 4032\n"
            "oldest event ts:  3225.232935\nnow ts:  3226.000000\ndropped events: 0\n")
    assert tracefs.read_buffer_stats(text) == (120, 3456)
    assert tracefs.read_buffer_stats("") == (0, 0)


def test_event_names_name_their_group() -> None:
    assert tracefs.event_path("kvm_pio") == ("kvm", "kvm_pio")
    assert tracefs.event_path("kvmmmu/kvm_mmu_get_page") == ("kvmmmu", "kvm_mmu_get_page")


def test_every_counter_names_an_event_and_says_what_it_means() -> None:
    keys = [c.key for c in kvmmmu.COUNTERS]
    assert len(keys) == len(set(keys))
    for counter in kvmmmu.COUNTERS:
        group, name = tracefs.event_path(counter.event)
        assert group in ("kvm", "kvmmmu") and name
        assert kvmmmu.DESCRIPTIONS[counter.key]


def test_episodes_time_each_fault_from_its_first_event_to_its_spte() -> None:
    events, _ = tracefs.parse_text(FAULTS)
    per_tid = kvmmmu.episodes(events)
    # 10 -> 13 us and 30 -> 31 us; the emulated instruction is no MMU event.
    assert per_tid[700] == {"episodes": 2, "ns": 4000, "unbounded": 0}
    # 460 us from the accessed bit to the walk error: not one fault.
    assert per_tid[701] == {"episodes": 0, "ns": 0, "unbounded": 1}
    assert kvmmmu.episodes(events, max_ns=1_000_000)[701]["ns"] == 460_000


def test_derived_counts() -> None:
    d = kvmmmu.derived({"faults_4k": 30, "faults_2m": 10, "mmu_pages_created": 4,
                        "mmu_pages_zapped": 1})
    assert d == {"faults": 40, "huge_fault_share": 0.25, "mmu_pages_churn": 5}
    assert kvmmmu.derived({})["huge_fault_share"] is None


def test_no_capture_unless_the_mmu_group_is_asked_for(tmp_path: Path) -> None:
    assert kvmmmu.start_for_trace(None, ["mmu"]) is None
    assert kvmmmu.start_for_trace(str(tmp_path / "t.trc"), ["exits"]) is None


def test_a_missing_or_damaged_sidecar_is_no_data(tmp_path: Path) -> None:
    trace = str(tmp_path / "run.trc")
    assert kvmmmu.load_sidecar(trace) is None
    Path(kvmmmu.sidecar_path(trace)).write_text("{not json")
    assert kvmmmu.load_sidecar(trace) is None
    Path(kvmmmu.sidecar_path(trace)).write_text(json.dumps({"counts": {"faults_4k": 1}}))
    assert kvmmmu.load_sidecar(trace) == {"counts": {"faults_4k": 1}}


SECOND = 1_000_000_000


def _run(memory: dict | None) -> dict:
    header = {"config": {"irqchip": "kernel", "memory": 128 << 20}, "vcpus": 1,
              "events": ["exits"]}
    records = [Record(0, 100_000_000, Kind.EXIT_PIO, 0, 0x3F8, 0x41, 1 | 1 << 8),
               Record(SECOND - 1000, 1000, Kind.EXIT_PIO, 0, 0x3F8, 0x41, 1 | 1 << 8)]
    return analyze(header, records, memory=memory)


MEMORY = {"counts": {"faults_4k": 4000, "faults_2m": 0, "guest_dirty_bits": 4000,
                     "page_faults": 0},
          "derived": {"faults": 4000, "huge_fault_share": 0.0},
          "descriptions": {"faults_4k": "faults KVM mapped with a 4 KiB host page",
                           "guest_dirty_bits": "dirty bits"},
          "missing": ["faults_1g"],
          "timing": {"lost_events": 0, "threads": [
              {"tid": 700, "vcpu": 0, "episodes": 4000, "ns": 200_000_000, "unbounded": 3},
              {"tid": 699, "vcpu": None, "episodes": 1, "ns": 5000, "unbounded": 0}]}}


def test_report_takes_mmu_time_out_of_guest_time() -> None:
    plain, with_memory = _run(None), _run(MEMORY)
    assert plain["memory"] is None and "mmu_ns" not in plain["time"]
    v = with_memory["time"]["vcpus"][0]
    assert v["mmu_ns"] == 200_000_000 and v["mmu_share"] == pytest.approx(0.2)
    assert v["guest_ns"] == plain["time"]["vcpus"][0]["guest_ns"] - 200_000_000
    mem = with_memory["memory"]
    assert mem["mmu_ns"] == 200_000_000 and mem["faults_timed"] == 4001
    assert mem["untimed_spans"] == 3 and mem["mean_fault_ns"] == pytest.approx(49_988.8, 0.01)
    assert [r["event"] for r in mem["rows"]] == ["faults_4k", "guest_dirty_bits"]
    assert mem["rows"][0]["per_s"] == pytest.approx(4000.0)


def test_report_shows_memory_beside_exit_handling() -> None:
    text = render_plain(report_sections(_run(MEMORY)))
    assert "kernel MMU" in text.split("Exits by reason")[0]
    assert "Memory (kernel MMU, kvmmmu events)" in text
    assert "faults KVM mapped with a 4 KiB host page" in text
    assert "a lower bound" in text and "events this kernel lacks: faults_1g" in text
    assert "kernel MMU" not in render_plain(report_sections(_run(None)))


def test_counts_without_timing_leave_the_time_table_alone() -> None:
    report = _run({"counts": {"faults_4k": 5}})
    assert "mmu_ns" not in report["time"] and not report["memory"]["timed"]
    assert "Memory (kernel MMU" in render_plain(report_sections(report))


def test_another_processes_temporary_tracefs_is_not_borrowed(tmp_path: Path) -> None:
    """A pyhvm process that mounted tracefs itself unmounts it when it stops: a second one
    capturing inside that mount would break the unmount and lose its own capture."""
    mounts = tmp_path / "mounts"
    mounts.write_text("nodev /tmp/pyhvm-tracefs-x1y2 tracefs rw,relatime 0 0\n")
    assert tracefs.mounted_tracefs(str(mounts)) is None
    mounts.write_text("nodev /tmp/pyhvm-tracefs-x1y2 tracefs rw,relatime 0 0\n"
                      "tracefs /sys/kernel/tracing tracefs rw 0 0\n")
    assert tracefs.mounted_tracefs(str(mounts)) == "/sys/kernel/tracing"
