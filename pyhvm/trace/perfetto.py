"""Export a trace as Chrome trace-event JSON, which the Perfetto UI and chrome://tracing open.

Written with the standard library only (no Perfetto protobuf dependency). Layout:
- one process (the VM), one thread track per vCPU: exits as complete events ("X", named by
  reason and device), time asleep in HLT, interrupt injections and RIP samples as instants;
- one track per device (by the bus map's names): the exits that reached it, DMA transfers,
  backend I/O, device events. Two vCPUs can be inside one device's exits at once; slices on
  one track must nest, so an overlapping slice goes to a second lane of that device;
- one track for interrupt lines (instants, and a level counter per line);
- counters: exits per second and interrupts per second, over `COUNTER_BIN_NS` bins.
Timestamps are microseconds since the first record (the format's unit), as floats.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator, Sequence, TextIO

from .records import NO_CPU, Kind, Record
from .report import AddressMap, device_name, exit_reason, port_name, run_span

PID = 1
IRQ_TID = 900
DEVICE_TID_BASE = 1000
COUNTER_BIN_NS = 10_000_000  # 10 ms: fine enough to see a burst, coarse enough to stay small
_EXIT_KINDS = (Kind.EXIT_PIO, Kind.EXIT_MMIO, Kind.EXIT_OTHER)


def _us(ns: int) -> float:
    return round(ns / 1000, 3)


def _meta(name: str, tid: int | None, value: Any, key: str = "name") -> dict[str, Any]:
    event: dict[str, Any] = {"ph": "M", "pid": PID, "name": name, "args": {key: value}}
    if tid is not None:
        event["tid"] = tid
    return event


class _DeviceTracks:
    """A tid per device lane; a slice that overlaps the lane's last one takes a new lane."""

    def __init__(self) -> None:
        self.lanes: dict[str, list[tuple[int, int]]] = {}  # device -> [(tid, busy_until)]
        self.names: list[tuple[int, str]] = []

    def tid(self, device: str, start: int = 0, end: int | None = None) -> int:
        """The lane for a slice [start, end); for an instant (no end), the first lane."""
        lanes = self.lanes.setdefault(device, [])
        if end is None:
            if lanes:
                return lanes[0][0]
            start = end = 0
        for i, (tid, busy_until) in enumerate(lanes):
            if start >= busy_until:
                lanes[i] = (tid, max(busy_until, end))
                return tid
        tid = DEVICE_TID_BASE + len(self.names)
        label = device if not lanes else f"{device} ({len(lanes) + 1})"
        self.names.append((tid, label))
        lanes.append((tid, end))
        return tid


def chrome_events(header: dict[str, Any], records: Sequence[Record]) -> Iterator[dict[str, Any]]:
    """Every trace event, metadata last (the format allows any order)."""
    ordered = sorted(records, key=lambda r: (r.ts_ns, -r.dur_ns))
    origin, end = run_span(ordered)
    pio_map = AddressMap(header.get("pio_map", []))
    mmio_map = AddressMap(header.get("mmio_map", []))
    devices = _DeviceTracks()
    cpus: set[int] = set()
    irq_track = False
    nbins = max(1, -(-(end - origin) // COUNTER_BIN_NS))
    exit_bins = [0] * nbins
    irq_bins = [0] * nbins
    # With the in-kernel irqchip nothing is injected from userspace: count line raises then.
    injects = any(r.kind is Kind.IRQ_INJECT for r in ordered)

    for r in ordered:
        ts = _us(r.ts_ns - origin)
        kind = r.kind
        on_vcpu = r.cpu != NO_CPU
        if on_vcpu:
            cpus.add(r.cpu)
        vcpu_tid = r.cpu + 1
        if kind in _EXIT_KINDS:
            exit_bins[min(nbins - 1, (r.ts_ns - origin) // COUNTER_BIN_NS)] += 1
            args: dict[str, Any] = {}
            device = None
            if kind is Kind.EXIT_PIO:
                device, label = port_name(pio_map, r.a)
                is_write = (r.c >> 8) & 1
                args = {"port": f"{r.a:#06x}", "register": label,
                        "dir": "out" if is_write else "in", "size": r.c & 0xFF,
                        "value": f"{r.b:#x}", "count": r.c >> 16}
                name = f"PIO {device}"
                device_slice = f"{'out' if is_write else 'in'} {label}"
                if device == "unclaimed":
                    device = "unclaimed (pio)"
            elif kind is Kind.EXIT_MMIO:
                hit = mmio_map.lookup(r.b)
                device = hit[0] if hit else "unclaimed (mmio)"
                is_write = (r.c >> 8) & 1
                args = {"address": f"{r.b:#x}", "dir": "write" if is_write else "read",
                        "size": r.c & 0xFF}
                name = f"MMIO {hit[0] if hit else 'unclaimed'}"
                where = f"+{hit[2]:#x}" if hit else f"{r.b:#x}"
                device_slice = f"{'write' if is_write else 'read'} {where}"
            else:
                name = exit_reason(r)
                args = {"kvm_exit_reason": r.a}
            if on_vcpu:
                yield {"ph": "X", "pid": PID, "tid": vcpu_tid, "ts": ts, "dur": _us(r.dur_ns),
                       "name": name, "cat": "exit", "args": args}
            if device is not None:
                tid = devices.tid(device, r.ts_ns, r.ts_ns + r.dur_ns)
                yield {"ph": "X", "pid": PID, "tid": tid, "ts": ts, "dur": _us(r.dur_ns),
                       "name": device_slice, "cat": "device",
                       "args": dict(args, vcpu=r.cpu)}
        elif kind is Kind.HALT:
            yield {"ph": "X", "pid": PID, "tid": vcpu_tid, "ts": ts, "dur": _us(r.dur_ns),
                   "name": "halted (HLT)", "cat": "halt", "args": {}}
        elif kind is Kind.IRQ_INJECT:
            irq_bins[min(nbins - 1, (r.ts_ns - origin) // COUNTER_BIN_NS)] += 1
            yield {"ph": "i", "s": "t", "pid": PID, "tid": vcpu_tid if on_vcpu else IRQ_TID,
                   "ts": ts, "name": f"inject vector {r.a:#04x}", "cat": "irq",
                   "args": {"vector": r.a, "latency_us": _us(r.b)}}
            irq_track = irq_track or not on_vcpu
        elif kind is Kind.IRQ_LEVEL:
            irq_track = True
            if r.b and not injects:
                irq_bins[min(nbins - 1, (r.ts_ns - origin) // COUNTER_BIN_NS)] += 1
            yield {"ph": "i", "s": "t", "pid": PID, "tid": IRQ_TID, "ts": ts,
                   "name": f"IRQ {r.a} {'raise' if r.b else 'lower'}", "cat": "irq",
                   "args": {"irq": r.a, "level": r.b}}
            yield {"ph": "C", "pid": PID, "ts": ts, "name": f"IRQ {r.a} level",
                   "args": {"level": r.b}}
        elif kind is Kind.RIP_SAMPLE:
            yield {"ph": "i", "s": "t", "pid": PID, "tid": vcpu_tid if on_vcpu else IRQ_TID,
                   "ts": ts, "name": "rip", "cat": "rip",
                   "args": {"rip": f"{r.b:#x}", "cpl": r.c}}
        elif kind in (Kind.DMA, Kind.BACKEND_IO, Kind.DEVICE):
            dev = device_name(header, r.a)
            if kind is Kind.DMA:
                if r.c == 2:
                    yield {"ph": "X", "pid": PID, "tid": devices.tid(dev, r.ts_ns,
                                                                     r.ts_ns + r.dur_ns),
                           "ts": ts, "dur": _us(r.dur_ns), "name": "DMA", "cat": "dma",
                           "args": {"bytes": r.b}}
                else:
                    yield {"ph": "i", "s": "t", "pid": PID, "tid": devices.tid(dev),
                           "ts": ts, "name": "DMA start", "cat": "dma", "args": {"bytes": r.b}}
            elif kind is Kind.BACKEND_IO:
                yield {"ph": "X", "pid": PID, "tid": devices.tid(dev, r.ts_ns,
                                                                 r.ts_ns + r.dur_ns),
                       "ts": ts, "dur": _us(r.dur_ns), "name": f"backend op {r.c}",
                       "cat": "backend", "args": {"bytes": r.b, "op": r.c}}
            else:
                yield {"ph": "i", "s": "t", "pid": PID, "tid": devices.tid(dev),
                       "ts": ts, "name": f"event {r.b}", "cat": "device",
                       "args": {"event": r.b, "value": r.c}}

    if ordered:
        scale = 1_000_000_000 / COUNTER_BIN_NS
        for i in range(nbins):
            ts = _us(i * COUNTER_BIN_NS)
            yield {"ph": "C", "pid": PID, "ts": ts, "name": "exits/s",
                   "args": {"exits": round(exit_bins[i] * scale)}}
            yield {"ph": "C", "pid": PID, "ts": ts, "name": "interrupts/s",
                   "args": {"interrupts": round(irq_bins[i] * scale)}}

    config = header.get("config", {}) or {}
    kernel = os.path.basename(str(config.get("kernel") or "guest"))
    label = f"pyhvm VM: {kernel} {config.get('append') or ''}".rstrip()
    yield _meta("process_name", None, label)
    for cpu in sorted(cpus):
        yield _meta("thread_name", cpu + 1, f"vCPU {cpu}")
        yield _meta("thread_sort_index", cpu + 1, cpu, "sort_index")
    if irq_track:
        yield _meta("thread_name", IRQ_TID, "interrupt lines")
        yield _meta("thread_sort_index", IRQ_TID, IRQ_TID, "sort_index")
    for tid, name in devices.names:
        yield _meta("thread_name", tid, name)
        yield _meta("thread_sort_index", tid, tid, "sort_index")


def _other_data(header: dict[str, Any]) -> dict[str, Any]:
    return {"pyhvm": header.get("pyhvm"), "config": header.get("config", {}),
            "host": header.get("host", {})}


def chrome_trace(header: dict[str, Any], records: Sequence[Record]) -> dict[str, Any]:
    """The whole trace as one dict (for tests and small traces)."""
    return {"traceEvents": list(chrome_events(header, records)), "displayTimeUnit": "ns",
            "otherData": _other_data(header)}


def write_chrome_trace(file: TextIO, header: dict[str, Any], records: Sequence[Record]) -> int:
    """Stream the JSON to `file` one event per line, so a long trace needs no second copy
    in memory; returns the number of events."""
    file.write('{"traceEvents": [\n')
    count = 0
    for event in chrome_events(header, records):
        if count:
            file.write(",\n")
        file.write(json.dumps(event, separators=(",", ":")))
        count += 1
    file.write('\n],\n"displayTimeUnit": "ns",\n"otherData": ')
    file.write(json.dumps(_other_data(header)))
    file.write("}\n")
    return count
