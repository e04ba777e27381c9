"""What KVM's MMU did for a guest: the kernel's `kvmmmu` events, counted and timed.

Memory virtualization costs the guest in the kernel, where pyhvm's own trace cannot see:
a guest page touched for the first time, or whose translation KVM has not built yet,
stops the vCPU while KVM walks the guest's page tables (on shadow-paging hosts such as
kvm_pvm, setting their accessed and dirty bits itself), asks for the host page and
installs the mapping (`spte`). Page-table pages KVM builds or throws away, guest page
tables it lets go out of sync and resyncs at CR3 loads and invlpg: all are kvmmmu events.

Two instruments, both from tracefs (root):
- `COUNTERS`: exact counts through tracefs.EventCounter (nothing read while the guest
  runs, so cheap enough for benchmarks). Faults are counted by the host mapping level
  KVM chose (4 KiB, 2 MiB, 1 GiB): the level shows whether huge pages reached the guest.
- timing (`TIMING_EVENTS` through tracefs.KernelTrace): each fault is an episode from its
  first kvmmmu event to the event that ends it (the spte installed, an MMIO fault handled,
  a walk error injected); the sum of episodes is the MMU time. It is a lower bound: the
  exit into KVM before the first event and the entry back after the last are not seen,
  and on these hosts nothing marks them (kvm_pvm emits no kvm_exit/kvm_entry). Timestamps
  have the text format's microsecond resolution; a fault's handful of microseconds is
  rounded either way, so sums over many faults stay fair. An episode longer than
  `MAX_EPISODE_NS` is not a fault (events of unrelated work) and is counted apart.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from .tracefs import (CounterSpec, EventCounter, KernelEvent, KernelTrace,
                      KernelTraceUnavailable)

log = logging.getLogger("pyhvm")

# key, event, filter, what it means (in the order reports list them)
COUNTER_TABLE: tuple[tuple[str, str, str | None, str], ...] = (
    ("faults_4k", "kvmmmu/kvm_mmu_spte_requested", "level == 1",
     "faults KVM mapped with a 4 KiB host page"),
    ("faults_2m", "kvmmmu/kvm_mmu_spte_requested", "level == 2",
     "faults KVM mapped with a 2 MiB host page"),
    ("faults_1g", "kvmmmu/kvm_mmu_spte_requested", "level == 3",
     "faults KVM mapped with a 1 GiB host page"),
    ("fast_faults", "kvmmmu/fast_page_fault", None,
     "faults fixed without the MMU lock (access or dirty tracking)"),
    ("mmio_faults", "kvmmmu/handle_mmio_page_fault", None,
     "accesses to guest-physical addresses with no RAM (MMIO)"),
    ("walker_errors", "kvmmmu/kvm_mmu_walker_error", None,
     "guest page walks that failed: a #PF for the guest"),
    ("guest_accessed_bits", "kvmmmu/kvm_mmu_set_accessed_bit", None,
     "accessed bits KVM set in guest page tables (shadow paging)"),
    ("guest_dirty_bits", "kvmmmu/kvm_mmu_set_dirty_bit", None,
     "dirty bits KVM set in guest page tables (shadow paging)"),
    ("mmu_pages_created", "kvmmmu/kvm_mmu_get_page", "created == 1",
     "page-table pages KVM built (shadow or TDP)"),
    ("mmu_pages_reused", "kvmmmu/kvm_mmu_get_page", "created == 0",
     "page-table pages KVM found already built"),
    ("mmu_pages_zapped", "kvmmmu/kvm_mmu_prepare_zap_page", None,
     "page-table pages KVM threw away"),
    ("zap_all", "kvmmmu/kvm_mmu_zap_all_fast", None, "whole-MMU invalidations"),
    ("unsyncs", "kvmmmu/kvm_mmu_unsync_page", None,
     "guest page tables let out of sync (their writes no longer trap)"),
    ("syncs", "kvmmmu/kvm_mmu_sync_page", None,
     "out-of-sync guest page tables resynced (CR3 load, invlpg)"),
    ("huge_page_splits", "kvmmmu/kvm_mmu_split_huge_page", None,
     "huge mappings split (dirty logging, a change below them)"),
    ("emulated_instructions", "kvm/kvm_emulate_insn", None,
     "instructions KVM emulated (CPL 0 on kvm_pvm, MMIO elsewhere)"),
    ("page_faults", "kvm/kvm_page_fault", None,
     "page-fault exits (VMX and SVM only; kvm_pvm does not emit it)"),
)
COUNTERS = tuple(CounterSpec(key, event, filt) for key, event, filt, _ in COUNTER_TABLE)
DESCRIPTIONS = {key: text for key, _, _, text in COUNTER_TABLE}

TIMING_EVENTS = ("kvmmmu/kvm_mmu_set_accessed_bit", "kvmmmu/kvm_mmu_set_dirty_bit",
                 "kvmmmu/kvm_mmu_walker_error", "kvmmmu/kvm_mmu_spte_requested",
                 "kvmmmu/kvm_mmu_set_spte", "kvmmmu/kvm_mmu_get_page",
                 "kvmmmu/kvm_mmu_prepare_zap_page", "kvmmmu/kvm_mmu_sync_page",
                 "kvmmmu/kvm_mmu_unsync_page", "kvmmmu/fast_page_fault",
                 "kvmmmu/handle_mmio_page_fault")
# The events that end a fault's handling.
EPISODE_END = frozenset({"kvm_mmu_set_spte", "handle_mmio_page_fault", "fast_page_fault",
                         "kvm_mmu_walker_error"})
MAX_EPISODE_NS = 20_000
TIMING_BUFFER_KB = 8192
SIDECAR_SUFFIX = ".mmu.json"


def derived(counts: Mapping[str, int]) -> dict[str, Any]:
    """Totals the counts imply: faults, and the share mapped with huge host pages."""
    faults = sum(counts.get(k, 0) for k in ("faults_4k", "faults_2m", "faults_1g"))
    huge = counts.get("faults_2m", 0) + counts.get("faults_1g", 0)
    return {"faults": faults, "huge_fault_share": round(huge / faults, 4) if faults else None,
            "mmu_pages_churn": counts.get("mmu_pages_created", 0)
            + counts.get("mmu_pages_zapped", 0)}


def episodes(events: Iterable[KernelEvent], max_ns: int = MAX_EPISODE_NS
             ) -> dict[int, dict[str, int]]:
    """Per thread: faults timed (`episodes`), their summed time (`ns`), and spans too long
    to be one fault (`unbounded`). Events must be in time order per thread."""
    out: dict[int, dict[str, int]] = {}
    open_since: dict[int, int] = {}
    for event in sorted(events, key=lambda e: e.ts_ns):
        if not event.name.startswith(("kvm_mmu", "fast_page_fault", "handle_mmio")):
            continue
        tid = event.tid
        start = open_since.setdefault(tid, event.ts_ns)
        if event.name not in EPISODE_END:
            continue
        del open_since[tid]
        row = out.setdefault(tid, {"episodes": 0, "ns": 0, "unbounded": 0})
        span = event.ts_ns - start
        if span > max_ns:
            row["unbounded"] += 1
        else:
            row["episodes"] += 1
            row["ns"] += span
    return out


class MmuCapture:
    """kvmmmu counts, and optionally fault timing, for `pids` and the threads and
    processes they start after start(). `start()` raises KernelTraceUnavailable."""

    def __init__(self, pids: Iterable[int], *, timing: bool = False, mount: bool = True
                 ) -> None:
        self.pids = list(pids)
        self.counter = EventCounter(self.pids, COUNTERS, mount=mount)
        self.trace = (KernelTrace(self.pids, TIMING_EVENTS, mount=mount,
                                  buffer_kb=TIMING_BUFFER_KB) if timing else None)

    def start(self) -> None:
        self.counter.start()
        if self.trace is not None:
            try:
                self.trace.start()
            except KernelTraceUnavailable:
                self.counter.stop()
                raise

    def stop(self) -> None:
        if self.trace is not None:
            self.trace.stop()
        self.counter.stop()

    def result(self, vcpu_tids: Mapping[int, int] | None = None) -> dict[str, Any]:
        """JSON-ready: counts, what they imply, and per vCPU (by thread id) the MMU time."""
        counts = self.counter.counts()
        out: dict[str, Any] = {"counts": counts, "derived": derived(counts),
                               "missing": list(self.counter.missing),
                               "descriptions": {k: DESCRIPTIONS[k] for k in counts}}
        if self.trace is not None:
            per_tid = episodes(self.trace.events())
            tids = dict(vcpu_tids or {})
            out["timing"] = {
                "lost_events": self.trace.lost,
                "max_episode_ns": MAX_EPISODE_NS,
                "threads": [{"tid": tid, "vcpu": tids.get(tid), **row}
                            for tid, row in sorted(per_tid.items())],
            }
        return out


# --- `pyhvm run --trace FILE --trace-events ...,mmu` ------------------------------------------
def sidecar_path(trace_path: str) -> str:
    """Where a traced run keeps its kvmmmu data: beside the trace, FILE.mmu.json."""
    return trace_path + SIDECAR_SUFFIX


def start_for_trace(trace_path: str | None, groups: Iterable[str]) -> MmuCapture | None:
    """A running capture when the run is traced with the `mmu` group and tracefs works
    here; else None (with one warning line saying why, when `mmu` was asked for)."""
    if not trace_path or "mmu" not in groups:
        return None
    capture = MmuCapture([os.getpid()], timing=True)
    try:
        capture.start()
    except KernelTraceUnavailable as err:
        log.warning("--trace-events mmu: %s; the trace has no kernel MMU data", err)
        return None
    return capture


def finish_for_trace(capture: MmuCapture, trace_path: str, vcpu_tids: Mapping[int, int]
                     ) -> None:
    """Stop `capture` and write its result beside the trace (a warning if it cannot)."""
    capture.stop()
    try:
        with open(sidecar_path(trace_path), "w") as f:
            json.dump(capture.result(vcpu_tids), f, indent=2)
            f.write("\n")
    except OSError as err:
        log.warning("cannot write %s: %s", sidecar_path(trace_path), err.strerror or err)


def load_sidecar(trace_path: str) -> dict[str, Any] | None:
    """The kvmmmu data of a traced run, or None where the run recorded none."""
    try:
        with open(sidecar_path(trace_path)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("counts"), dict) else None


__all__ = ["COUNTERS", "DESCRIPTIONS", "MmuCapture", "TIMING_EVENTS", "derived", "episodes",
           "finish_for_trace", "load_sidecar", "sidecar_path", "start_for_trace"]
