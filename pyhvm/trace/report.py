"""`pyhvm report`: where did the guest's time go, and why?

Two halves kept apart so the arithmetic can be tested on hand-built traces:
- `analyze(header, records)` is pure: it returns one JSON-ready dict of numbers (the same
  object `pyhvm report --json` prints);
- `report_sections` + `render_plain` / `render_rich` turn that dict into tables, with `rich`
  when it is importable and plain aligned text otherwise.

Time conventions (see records.py): every record covers [ts_ns, ts_ns + dur_ns). An exit's
ts is when KVM_RUN returned and its dur the host time spent handling it; a HALT's dur is the
time the vCPU slept in HLT. "Guest time" is what is left of each vCPU's share of the run
once handling and halted time are taken out: it also holds KVM's own entry/exit cost and
whatever pyhvm did between exits that no record covers.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence, TextIO

from .records import NO_CPU, Kind, Record

NS_PER_S = 1_000_000_000
_EXIT_KINDS = (Kind.EXIT_PIO, Kind.EXIT_MMIO, Kind.EXIT_OTHER)
MMIO_PAGE = 4096  # unclaimed MMIO is grouped by page: there is no range to name it by
_FRIENDLY_REASONS = {"IRQ_WINDOW_OPEN": "IRQ window", "INTR": "INTR (signal)"}


def _exit_reason_names() -> dict[int, str]:
    """KVM exit reason numbers -> short names, from the one table in kvm/constants."""
    from ..kvm import constants

    names: dict[int, str] = {}
    for key, value in vars(constants).items():
        if key.startswith("KVM_EXIT_") and key not in ("KVM_EXIT_IO_IN", "KVM_EXIT_IO_OUT") \
                and isinstance(value, int):
            short = key[len("KVM_EXIT_"):]
            names[value] = _FRIENDLY_REASONS.get(short, short)
    return names


EXIT_REASONS = _exit_reason_names()


def exit_reason(record: Record) -> str:
    """The name an exit record is counted under in the by-reason table."""
    if record.kind is Kind.EXIT_PIO:
        return "PIO"
    if record.kind is Kind.EXIT_MMIO:
        return "MMIO"
    return EXIT_REASONS.get(record.a, f"reason {record.a}")


class AddressMap:
    """The header's [[base, size, name], ...] bus map: address -> (name, base, offset)."""

    def __init__(self, entries: Iterable[Sequence[Any]]) -> None:
        rows = sorted((int(base), int(size), str(name)) for base, size, name in entries)
        self._bases = [base for base, _, _ in rows]
        self._rows = rows

    def lookup(self, address: int) -> tuple[str, int, int] | None:
        i = bisect.bisect_right(self._bases, address) - 1
        if i >= 0:
            base, size, name = self._rows[i]
            if address < base + size:
                return name, base, address - base
        return None

    def size_of(self, base: int) -> int:
        i = bisect.bisect_left(self._bases, base)
        return self._rows[i][1] if i < len(self._rows) and self._bases[i] == base else 0


def port_name(pio_map: AddressMap, port: int) -> tuple[str, str]:
    """(device, label) for a port: ("com1", "com1+0x5"), or ("unclaimed", "unclaimed")."""
    hit = pio_map.lookup(port)
    if hit is None:
        return "unclaimed", "unclaimed"
    name, base, offset = hit
    if pio_map.size_of(base) == 1:
        return name, name
    return name, f"{name}+{offset:#x}"


def device_name(header: dict[str, Any], device_id: int) -> str:
    """Name of the device id carried by DMA, BACKEND_IO and DEVICE records: from the
    header's "devices" (a list indexed by id, or a {"id": name} map) when it has one."""
    devices = header.get("devices")
    if isinstance(devices, list) and 0 <= device_id < len(devices):
        return str(devices[device_id])
    if isinstance(devices, dict) and str(device_id) in devices:
        return str(devices[str(device_id)])
    return f"device {device_id}"


# --- statistics helpers --------------------------------------------------------------------

def log2_bucket(value_ns: int) -> int:
    """Bucket k holds [2**k, 2**(k+1)) ns; bucket 0 also holds 0."""
    return max(int(value_ns), 1).bit_length() - 1


def log2_histogram(values: Iterable[int]) -> list[dict[str, int]]:
    """Contiguous log2 buckets from the smallest to the largest value seen."""
    counts = Counter(log2_bucket(v) for v in values)
    if not counts:
        return []
    return [{"lo_ns": 0 if k == 0 else 1 << k, "hi_ns": 1 << (k + 1), "count": counts.get(k, 0)}
            for k in range(min(counts), max(counts) + 1)]


def percentile(sorted_values: Sequence[int], p: float) -> int:
    """Nearest-rank percentile of an ascending sequence (0 when empty)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def distribution(values: Iterable[int]) -> dict[str, Any]:
    """Count, mean, percentiles and the log2 histogram of a set of durations (ns)."""
    ordered = sorted(values)
    n = len(ordered)
    return {
        "count": n,
        "total_ns": sum(ordered),
        "mean_ns": round(sum(ordered) / n, 1) if n else 0.0,
        "min_ns": ordered[0] if n else 0,
        "p50_ns": percentile(ordered, 50),
        "p90_ns": percentile(ordered, 90),
        "p99_ns": percentile(ordered, 99),
        "max_ns": ordered[-1] if n else 0,
        "buckets": log2_histogram(ordered),
    }


def _share(part: float, whole: float) -> float:
    return round(part / whole, 6) if whole > 0 else 0.0


def _rate(count: int, duration_ns: int) -> float:
    return round(count * NS_PER_S / duration_ns, 3) if duration_ns > 0 else 0.0


def _mean(total: int, count: int) -> float:
    return round(total / count, 1) if count else 0.0


@dataclass
class _Tally:
    """Exits counted under one key: count, reads/writes, handling time."""

    count: int = 0
    reads: int = 0
    writes: int = 0
    total_ns: int = 0
    max_ns: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, record: Record, is_write: bool | None = None) -> None:
        self.count += 1
        self.total_ns += record.dur_ns
        self.max_ns = max(self.max_ns, record.dur_ns)
        if is_write is True:
            self.writes += 1
        elif is_write is False:
            self.reads += 1

    def row(self, cpu_time_ns: int) -> dict[str, Any]:
        return dict(self.extra, count=self.count, reads=self.reads, writes=self.writes,
                    total_ns=self.total_ns, mean_ns=_mean(self.total_ns, self.count),
                    max_ns=self.max_ns,
                    share=_share(self.total_ns, cpu_time_ns))


def _ranked(tallies: dict[Any, _Tally], cpu_time_ns: int) -> list[dict[str, Any]]:
    """Rows by count, then by time, descending."""
    rows = [t.row(cpu_time_ns) for t in tallies.values()]
    rows.sort(key=lambda r: (-r["count"], -r["total_ns"]))
    return rows


def _add_overlap(bins: list[int], start: int, end: int, origin: int, width: int) -> None:
    """Add the part of [start, end) that falls in each bin of `width` ns from `origin`."""
    if end <= start or not bins:
        return
    first = max(0, (start - origin) // width)
    last = min(len(bins) - 1, (end - 1 - origin) // width)
    for i in range(first, last + 1):
        lo = origin + i * width
        bins[i] += min(end, lo + width) - max(start, lo)


# --- the analysis --------------------------------------------------------------------------

def run_span(records: Sequence[Record]) -> tuple[int, int]:
    """(first record's ts, last record's end); (0, 0) for an empty trace."""
    if not records:
        return 0, 0
    return min(r.ts_ns for r in records), max(r.ts_ns + r.dur_ns for r in records)


def memory_report(memory: dict[str, Any], duration_ns: int) -> dict[str, Any]:
    """The kernel MMU's share of the run, from a traced run's kvmmmu data (kvmmmu.py):
    counts with rates, and the MMU time per vCPU where the run timed faults."""
    counts = {str(k): int(v) for k, v in (memory.get("counts") or {}).items()}
    descriptions = memory.get("descriptions") or {}
    rows = [{"event": key, "count": n, "per_s": _rate(n, duration_ns),
             "meaning": str(descriptions.get(key, ""))}
            for key, n in counts.items() if n]
    by_vcpu: dict[int, int] = defaultdict(int)
    episodes = unbounded = 0
    timing = memory.get("timing")
    for thread in (timing or {}).get("threads", []):
        vcpu = thread.get("vcpu")
        if vcpu is not None:
            by_vcpu[int(vcpu)] += int(thread.get("ns", 0))
        episodes += int(thread.get("episodes", 0))
        unbounded += int(thread.get("unbounded", 0))
    total = sum(by_vcpu.values())
    return {"counts": counts, "derived": memory.get("derived") or {}, "rows": rows,
            "missing": list(memory.get("missing") or []),
            "timed": timing is not None, "mmu_ns": total,
            "mmu_ns_by_vcpu": dict(sorted(by_vcpu.items())),
            "faults_timed": episodes, "untimed_spans": unbounded,
            "mean_fault_ns": _mean(total, episodes),
            "lost_events": int((timing or {}).get("lost_events", 0))}


def analyze(header: dict[str, Any], records: Sequence[Record],
            memory: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every number `pyhvm report` shows, as one JSON-ready dict (complete, not top-N).
    `memory` is the run's kvmmmu data (kvmmmu.load_sidecar), where it recorded some."""
    start, end = run_span(records)
    duration = end - start
    config = header.get("config", {}) or {}
    pio_map = AddressMap(header.get("pio_map", []))
    mmio_map = AddressMap(header.get("mmio_map", []))

    by_kind: Counter[str] = Counter(r.kind.name for r in records)
    cpus = sorted({r.cpu for r in records if r.cpu != NO_CPU})
    cpu_time = duration * max(1, len(cpus))

    reasons: dict[str, _Tally] = {}
    ports: dict[int, _Tally] = {}
    mmio: dict[Any, _Tally] = {}
    devices: dict[str, _Tally] = {}
    per_cpu: dict[int, dict[str, int]] = {c: {"exits": 0, "handling_ns": 0, "halted_ns": 0,
                                                "halts": 0} for c in cpus}
    exit_durs: list[int] = []
    halt_durs: list[int] = []
    irq_raises: Counter[int] = Counter()
    irq_lowers: Counter[int] = Counter()
    injections: dict[int, list[int]] = defaultdict(list)
    dma_durs: list[int] = []
    activity: dict[str, dict[str, int]] = {}
    rips: Counter[int] = Counter()
    rip_cpl: dict[int, Counter[int]] = defaultdict(Counter)
    cpl_counts: Counter[int] = Counter()

    nbins = max(1, math.ceil(duration / NS_PER_S)) if records else 0
    tl_exits = [0] * nbins
    tl_irqs = [0] * nbins
    tl_raises = [0] * nbins
    tl_halted = [0] * nbins
    tl_handling = [0] * nbins

    def bin_of(ts: int) -> int:
        return min(nbins - 1, max(0, (ts - start) // NS_PER_S))

    def dev_activity(name: str) -> dict[str, int]:
        return activity.setdefault(name, {"dma": 0, "dma_bytes": 0, "dma_ns": 0,
                                          "backend_ops": 0, "backend_bytes": 0,
                                          "backend_ns": 0, "events": 0})

    for r in records:
        kind = r.kind
        if kind in _EXIT_KINDS:
            reason = exit_reason(r)
            reasons.setdefault(reason, _Tally(extra={"reason": reason})).add(r)
            exit_durs.append(r.dur_ns)
            if r.cpu in per_cpu:
                per_cpu[r.cpu]["exits"] += 1
                per_cpu[r.cpu]["handling_ns"] += r.dur_ns
            tl_exits[bin_of(r.ts_ns)] += 1
            _add_overlap(tl_handling, r.ts_ns, r.ts_ns + r.dur_ns, start, NS_PER_S)
            if kind is Kind.EXIT_PIO:
                is_write = bool((r.c >> 8) & 1)
                port = r.a
                tally = ports.get(port)
                if tally is None:
                    device, label = port_name(pio_map, port)
                    tally = ports[port] = _Tally(extra={"port": port, "device": device,
                                                        "name": label})
                tally.add(r, is_write)
                dev = tally.extra["device"]
                dev_key = dev if dev != "unclaimed" else "unclaimed (pio)"
                devices.setdefault(dev_key, _Tally(extra={"device": dev_key})).add(r, is_write)
            elif kind is Kind.EXIT_MMIO:
                is_write = bool((r.c >> 8) & 1)
                hit = mmio_map.lookup(r.b)
                if hit is None:
                    page = r.b - r.b % MMIO_PAGE
                    key: Any = ("page", page)
                    extra = {"device": "unclaimed", "base": page, "size": MMIO_PAGE,
                             "name": f"unclaimed {page:#x}"}
                    dev_key = "unclaimed (mmio)"
                else:
                    name, base, _ = hit
                    key = ("range", base)
                    extra = {"device": name, "base": base, "size": mmio_map.size_of(base),
                             "name": name}
                    dev_key = name
                mmio.setdefault(key, _Tally(extra=extra)).add(r, is_write)
                devices.setdefault(dev_key, _Tally(extra={"device": dev_key})).add(r, is_write)
        elif kind is Kind.HALT:
            halt_durs.append(r.dur_ns)
            if r.cpu in per_cpu:
                per_cpu[r.cpu]["halted_ns"] += r.dur_ns
                per_cpu[r.cpu]["halts"] += 1
            _add_overlap(tl_halted, r.ts_ns, r.ts_ns + r.dur_ns, start, NS_PER_S)
        elif kind is Kind.IRQ_LEVEL:
            if r.b:
                irq_raises[r.a] += 1
                tl_raises[bin_of(r.ts_ns)] += 1
            else:
                irq_lowers[r.a] += 1
        elif kind is Kind.IRQ_INJECT:
            injections[r.a].append(r.b)
            tl_irqs[bin_of(r.ts_ns)] += 1
        elif kind is Kind.DMA:
            act = dev_activity(device_name(header, r.a))
            if r.c == 2:
                act["dma"] += 1
                act["dma_bytes"] += r.b
                act["dma_ns"] += r.dur_ns
                dma_durs.append(r.dur_ns)
        elif kind is Kind.BACKEND_IO:
            act = dev_activity(device_name(header, r.a))
            act["backend_ops"] += 1
            act["backend_bytes"] += r.b
            act["backend_ns"] += r.dur_ns
        elif kind is Kind.DEVICE:
            dev_activity(device_name(header, r.a))["events"] += 1
        elif kind is Kind.RIP_SAMPLE:
            rips[r.b] += 1
            rip_cpl[r.b][r.c] += 1
            cpl_counts[r.c] += 1

    vcpus: list[dict[str, Any]] = []
    for cpu in cpus:
        stats = per_cpu[cpu]
        cpu_guest = max(0, duration - stats["handling_ns"] - stats["halted_ns"])
        vcpus.append({"cpu": cpu, "exits": stats["exits"], "handling_ns": stats["handling_ns"],
                      "halted_ns": stats["halted_ns"], "halts": stats["halts"],
                      "guest_ns": cpu_guest,
                      "handling_share": _share(stats["handling_ns"], duration),
                      "halted_share": _share(stats["halted_ns"], duration),
                      "guest_share": _share(cpu_guest, duration),
                      "exits_per_s": _rate(stats["exits"], duration)})
    mem = memory_report(memory, duration) if memory else None
    if mem is not None and mem["timed"]:
        # Faults are handled inside KVM_RUN: take their time out of the guest's share.
        for v in vcpus:
            mmu = mem["mmu_ns_by_vcpu"].get(v["cpu"], 0)
            v["mmu_ns"], v["mmu_share"] = mmu, _share(mmu, duration)
            v["guest_ns"] = max(0, v["guest_ns"] - mmu)
            v["guest_share"] = _share(v["guest_ns"], duration)
    total_exits = len(exit_durs)
    handling = sum(v["handling_ns"] for v in vcpus)
    halted = sum(v["halted_ns"] for v in vcpus)
    guest = sum(v["guest_ns"] for v in vcpus)

    reason_rows = _ranked(reasons, cpu_time)
    for row in reason_rows:
        row["per_s"] = _rate(row["count"], duration)
        del row["reads"], row["writes"]
    device_rows = _ranked(devices, cpu_time)

    irq_lines = [{"irq": irq, "raises": irq_raises[irq], "lowers": irq_lowers[irq],
                  "per_s": _rate(irq_raises[irq], duration)}
                 for irq in sorted(set(irq_raises) | set(irq_lowers))]
    vectors = []
    for vector in sorted(injections):
        lat = sorted(injections[vector])
        vectors.append({"vector": vector, "count": len(lat), "per_s": _rate(len(lat), duration),
                        "mean_latency_ns": _mean(sum(lat), len(lat)),
                        "p99_latency_ns": percentile(lat, 99)})
    all_latency = [v for lats in injections.values() for v in lats]
    injected = len(all_latency)

    # With the in-kernel irqchip nothing is injected from userspace: line raises are then
    # the best count of interrupts the trace has.
    use_injections = injected > 0
    timeline = []
    for i in range(nbins):
        lo = start + i * NS_PER_S
        width = min(end, lo + NS_PER_S) - lo
        span = width * max(1, len(cpus))
        irqs = tl_irqs[i] if use_injections else tl_raises[i]
        timeline.append({"second": i, "length_ns": width, "exits": tl_exits[i],
                         "exits_per_s": _rate(tl_exits[i], width), "interrupts": irqs,
                         "interrupts_per_s": _rate(irqs, width),
                         "handling_share": _share(tl_handling[i], span),
                         "halted_share": _share(tl_halted[i], span)})

    rip_rows = [{"rip": rip, "count": n, "share": _share(n, sum(rips.values())),
                 "cpl": rip_cpl[rip].most_common(1)[0][0]} for rip, n in rips.most_common()]

    notes = []
    irqchip = config.get("irqchip")
    if irqchip == "kernel":
        notes.append("irqchip kernel: KVM handles HLT and PIC/PIT traffic itself, so halted "
                     "time is not visible here and counts as guest time")
    events = header.get("events", [])
    if events and "rip" not in events:
        notes.append("no RIP samples: add 'rip' to --trace-events to see the busiest guest code")
    if not records:
        notes.append("the trace holds no records")

    return {
        "summary": {
            "pyhvm": header.get("pyhvm"),
            "start_ns": start, "end_ns": end, "duration_ns": duration,
            "vcpus": len(cpus), "vcpus_configured": header.get("vcpus", config.get("cpus")),
            "records": len(records), "records_by_kind": dict(sorted(by_kind.items())),
            "events": events,
            "config": {key: config.get(key) for key in ("kernel", "append", "irqchip",
                                                         "memory", "cpus",
                                                         "lost_tick_policy")},
            "host": header.get("host", {}),
        },
        "time": {"cpu_time_ns": cpu_time if records else 0, "handling_ns": handling,
                 "halted_ns": halted, "guest_ns": guest,
                 "handling_share": _share(handling, cpu_time),
                 "halted_share": _share(halted, cpu_time), "guest_share": _share(guest, cpu_time),
                 **({"mmu_ns": mem["mmu_ns"], "mmu_share": _share(mem["mmu_ns"], cpu_time)}
                    if mem is not None and mem["timed"] else {}),
                 "vcpus": vcpus},
        "memory": mem,
        "exits": {"count": total_exits, "per_s": _rate(total_exits, duration),
                  "total_ns": sum(exit_durs), "mean_ns": _mean(sum(exit_durs), total_exits),
                  "by_reason": reason_rows},
        "ports": _ranked(ports, cpu_time),
        "mmio": _ranked(mmio, cpu_time),
        "devices": device_rows,
        "device_activity": [dict(device=name, **act) for name, act in sorted(activity.items())],
        "latency": {"exit_handling": distribution(exit_durs),
                    "irq_delivery": distribution(all_latency),
                    "dma": distribution(dma_durs),
                    "halt": distribution(halt_durs)},
        "interrupts": {"raises": sum(irq_raises.values()),
                       "raises_per_s": _rate(sum(irq_raises.values()), duration),
                       "injected": injected, "injected_per_s": _rate(injected, duration),
                       "lines": irq_lines, "vectors": vectors},
        "rip_samples": {"count": sum(rips.values()), "cpl": dict(sorted(cpl_counts.items())),
                        "top": rip_rows} if rips else None,
        "timeline": timeline,
        "notes": notes,
    }


# --- rendering -----------------------------------------------------------------------------

@dataclass
class Section:
    """One titled table; `align` has one 'l' or 'r' per column."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    align: str = ""
    footer: list[str] = field(default_factory=list)


def fmt_ns(ns: float) -> str:
    """A duration in the unit that keeps 3 significant digits readable."""
    ns = float(ns)
    if ns < 1_000:
        return f"{ns:.0f}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.1f}us"
    if ns < NS_PER_S:
        return f"{ns / 1e6:.2f}ms"
    return f"{ns / 1e9:.3f}s"


def fmt_pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def fmt_rate(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.1f}"


def _bucket_label(bucket: dict[str, int]) -> str:
    return f"{fmt_ns(bucket['lo_ns'])} - {fmt_ns(bucket['hi_ns'])}"


def _bar(count: int, peak: int, width: int, char: str) -> str:
    if not count:
        return ""
    return char * max(1, round(width * count / peak))


def _histogram_section(title: str, dist: dict[str, Any], bar_char: str) -> Section:
    peak = max((b["count"] for b in dist["buckets"]), default=0)
    rows = [[_bucket_label(b), str(b["count"]), _bar(b["count"], peak, 40, bar_char)]
            for b in dist["buckets"]]
    footer = [f"n={dist['count']}  mean={fmt_ns(dist['mean_ns'])}  "
              f"p50={fmt_ns(dist['p50_ns'])}  p90={fmt_ns(dist['p90_ns'])}  "
              f"p99={fmt_ns(dist['p99_ns'])}  max={fmt_ns(dist['max_ns'])}"]
    return Section(title, ["bucket", "count", ""], rows, "rrl", footer)


def _more(rows: list[Any], top: int) -> list[str]:
    return [f"... {len(rows) - top} more (--top to show them, --json for all)"] \
        if top and len(rows) > top else []


def report_sections(report: dict[str, Any], top: int = 10,
                    bar_char: str = "#") -> list[Section]:
    """The report's tables in reading order; `top` rows per ranked table (0: all)."""
    cut = (lambda rows: rows[:top]) if top else (lambda rows: rows)
    s = report["summary"]
    cfg = s["config"]
    sections: list[Section] = []
    kinds = ", ".join(f"{k.lower()} {n}" for k, n in s["records_by_kind"].items())
    overview = [
        ["duration", fmt_ns(s["duration_ns"])],
        ["vCPUs", f"{s['vcpus']} traced of {s['vcpus_configured']}"],
        ["irqchip", str(cfg.get("irqchip"))],
        ["memory", f"{(cfg.get('memory') or 0) >> 20} MiB"],
        ["kernel", str(cfg.get("kernel"))],
        ["append", str(cfg.get("append") or "")],
        ["events", ",".join(s["events"]) or "-"],
        ["records", f"{s['records']} ({kinds})" if kinds else str(s["records"])],
    ]
    sections.append(Section("Run", ["", ""], overview, "ll"))

    t = report["time"]
    mmu = "mmu_ns" in t
    rows = [[f"vCPU {v['cpu']}", fmt_pct(v["guest_share"]), fmt_pct(v["handling_share"]),
             *([fmt_pct(v.get("mmu_share", 0.0))] if mmu else []),
             fmt_pct(v["halted_share"]), str(v["exits"]), fmt_rate(v["exits_per_s"])]
            for v in t["vcpus"]]
    if len(t["vcpus"]) > 1:
        rows.append(["all", fmt_pct(t["guest_share"]), fmt_pct(t["handling_share"]),
                     *([fmt_pct(t["mmu_share"])] if mmu else []),
                     fmt_pct(t["halted_share"]), str(report["exits"]["count"]),
                     fmt_rate(report["exits"]["per_s"])])
    columns = ["", "guest", "exit handling", *(["kernel MMU"] if mmu else []), "halted",
               "exits", "exits/s"]
    footer = ["guest = run time - exit handling - halted"
              + (" - kernel MMU (faults KVM handled, a lower bound: see Memory)" if mmu else "")
              + ", per vCPU"]
    sections.append(Section("Where the time went", columns, rows, "l" + "r" * (len(columns) - 1),
                            footer))

    ex = report["exits"]
    rows = [[r["reason"], str(r["count"]), fmt_rate(r["per_s"]), fmt_ns(r["total_ns"]),
             fmt_ns(r["mean_ns"]), fmt_pct(r["share"])] for r in ex["by_reason"]]
    if len(ex["by_reason"]) > 1:
        rows.append(["total", str(ex["count"]), fmt_rate(ex["per_s"]), fmt_ns(ex["total_ns"]),
                     fmt_ns(ex["mean_ns"]), fmt_pct(t["handling_share"])])
    sections.append(Section("Exits by reason", ["reason", "count", "per s", "time", "mean",
                                                "of run"], rows, "lrrrrr"))

    if report["ports"]:
        rows = [[f"{r['port']:#06x}", r["name"], str(r["count"]), str(r["reads"]),
                 str(r["writes"]), fmt_ns(r["total_ns"]), fmt_ns(r["mean_ns"]),
                 fmt_pct(r["share"])] for r in cut(report["ports"])]
        sections.append(Section("Port I/O exits by port", ["port", "device", "count", "in",
                                                           "out", "time", "mean", "of run"],
                                rows, "llrrrrrr", _more(report["ports"], top)))
    if report["mmio"]:
        rows = [[f"{r['base']:#x}+{r['size']:#x}", r["name"], str(r["count"]), str(r["reads"]),
                 str(r["writes"]), fmt_ns(r["total_ns"]), fmt_ns(r["mean_ns"]),
                 fmt_pct(r["share"])] for r in cut(report["mmio"])]
        sections.append(Section("MMIO exits by range", ["range", "device", "count", "reads",
                                                        "writes", "time", "mean", "of run"],
                                rows, "llrrrrrr", _more(report["mmio"], top)))
    if report["devices"]:
        rows = [[r["device"], str(r["count"]), fmt_ns(r["total_ns"]), fmt_ns(r["mean_ns"]),
                 fmt_pct(r["share"])] for r in cut(report["devices"])]
        sections.append(Section("Exits by device", ["device", "count", "time", "mean",
                                                    "of run"], rows, "lrrrr",
                                _more(report["devices"], top)))
    if report["device_activity"]:
        rows = [[a["device"], str(a["dma"]), str(a["dma_bytes"]), fmt_ns(a["dma_ns"]),
                 str(a["backend_ops"]), str(a["backend_bytes"]), fmt_ns(a["backend_ns"]),
                 str(a["events"])] for a in report["device_activity"]]
        sections.append(Section("Device activity", ["device", "DMA", "DMA bytes", "DMA time",
                                                    "backend ops", "bytes", "backend time",
                                                    "events"], rows, "lrrrrrrr"))

    lat = report["latency"]
    titles = (("exit_handling", "Exit handling time"),
              ("irq_delivery", "Interrupt delivery latency (INTR raised -> injected)"),
              ("dma", "DMA transfer time"), ("halt", "Time halted per HLT"))
    for key, title in titles:
        if lat[key]["count"]:
            sections.append(_histogram_section(title, lat[key], bar_char))

    irq = report["interrupts"]
    if irq["lines"]:
        rows = [[f"IRQ {r['irq']}", str(r["raises"]), fmt_rate(r["per_s"])] for r in irq["lines"]]
        sections.append(Section("Interrupt lines", ["line", "raised", "per s"], rows, "lrr"))
    if irq["vectors"]:
        rows = [[f"{r['vector']:#04x}", str(r["count"]), fmt_rate(r["per_s"]),
                 fmt_ns(r["mean_latency_ns"]), fmt_ns(r["p99_latency_ns"])]
                for r in irq["vectors"]]
        sections.append(Section("Interrupts injected by vector", ["vector", "count", "per s",
                                                                 "mean latency", "p99"],
                                rows, "lrrrr"))

    mem = report.get("memory")
    if mem:
        sections.append(_memory_section(mem))

    rip = report["rip_samples"]
    if rip:
        rows = [[f"{r['rip']:#x}", str(r["cpl"]), str(r["count"]), fmt_pct(r["share"])]
                for r in cut(rip["top"])]
        cpl = ", ".join(f"CPL {k}: {n}" for k, n in rip["cpl"].items())
        sections.append(Section("Busiest guest RIPs", ["rip", "cpl", "samples", "share"], rows,
                                "lrrr", [f"{rip['count']} samples ({cpl})",
                                         *_more(rip["top"], top)]))

    if report["timeline"]:
        rows = [[f"{r['second']}", fmt_ns(r["length_ns"]), str(r["exits"]),
                 fmt_rate(r["exits_per_s"]), str(r["interrupts"]),
                 fmt_rate(r["interrupts_per_s"]), fmt_pct(r["handling_share"]),
                 fmt_pct(r["halted_share"])] for r in report["timeline"]]
        source = "injected" if irq["injected"] else "lines raised"
        sections.append(Section("Timeline (per second of the run)",
                                ["s", "length", "exits", "exits/s", "interrupts", "irq/s",
                                 "handling", "halted"], rows, "rrrrrrrr",
                                [f"interrupts = {source}"]))
    return sections


def _memory_section(mem: dict[str, Any]) -> Section:
    """The kvmmmu counts and the MMU time, with what each count means."""
    rows = [[r["event"], str(r["count"]), fmt_rate(r["per_s"]), r["meaning"]]
            for r in mem["rows"]]
    derived = mem.get("derived") or {}
    footer = []
    if derived.get("faults"):
        share = derived.get("huge_fault_share")
        footer.append(f"{derived['faults']} faults, "
                      f"{fmt_pct(share or 0.0)} mapped with huge host pages")
    if mem["timed"]:
        footer.append(f"kernel MMU time {fmt_ns(mem['mmu_ns'])} over {mem['faults_timed']} "
                      f"faults (mean {fmt_ns(mem['mean_fault_ns'])}): a lower bound, from "
                      "each fault's first to last kvmmmu event, entry and exit not seen")
        if mem["untimed_spans"]:
            footer.append(f"{mem['untimed_spans']} spans too long to be one fault not timed")
        if mem["lost_events"]:
            footer.append(f"{mem['lost_events']} kernel events lost: the time is short by "
                          "their faults")
    if mem["missing"]:
        footer.append("events this kernel lacks: " + ", ".join(mem["missing"]))
    return Section("Memory (kernel MMU, kvmmmu events)", ["event", "count", "per s", "meaning"],
                   rows, "lrrl", footer)


def render_plain(sections: list[Section], notes: Sequence[str] = ()) -> str:
    """Sections as aligned plain text (no dependencies)."""
    out: list[str] = []
    for sec in sections:
        out.append(sec.title)
        out.append("-" * len(sec.title))
        align = sec.align or "l" * len(sec.columns)
        table = [sec.columns] + sec.rows if any(sec.columns) else sec.rows
        widths = [max((len(row[i]) for row in table), default=0) for i in range(len(sec.columns))]
        for row in table:
            cells = [cell.rjust(w) if a == "r" else cell.ljust(w)
                     for cell, w, a in zip(row, widths, align)]
            out.append("  " + "  ".join(cells).rstrip())
        out.extend("  " + line for line in sec.footer)
        out.append("")
    out.extend(f"note: {n}" for n in notes)
    return "\n".join(out).rstrip() + "\n"


def rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def render_rich(sections: list[Section], notes: Sequence[str], file: TextIO,
                width: int | None = None) -> None:
    """Sections as rich tables written to `file`."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=file, width=width, highlight=False)
    for sec in sections:
        show_header = any(sec.columns)
        table = Table(title=sec.title, title_justify="left", title_style="bold",
                      box=box.SIMPLE_HEAD if show_header else None, show_header=show_header,
                      caption_justify="left",
                      caption=Text("\n".join(sec.footer)) if sec.footer else None)
        align = sec.align or "l" * len(sec.columns)
        for name, a in zip(sec.columns, align):  # numbers never wrap; names and text may
            table.add_column(name, justify="right" if a == "r" else "left", no_wrap=a == "r")
        for row in sec.rows:
            table.add_row(*(Text(cell) for cell in row))  # cells are data, never markup
        console.print(table)
        console.print()
    for note in notes:
        console.print(Text(f"note: {note}", style="dim"))


def write_text(report: dict[str, Any], file: TextIO, top: int = 10,
               plain: bool = False) -> None:
    """The text report: rich tables when rich is importable (and not `plain`), else plain."""
    if not plain and rich_available():
        width = None if file.isatty() else 120
        render_rich(report_sections(report, top, bar_char="█"), report["notes"], file, width)
    else:
        file.write(render_plain(report_sections(report, top), report["notes"]))
