"""`pyhvm bench net`: the paper's network experiment. pyhvm's RTL8139 with event-driven
frame delivery (`--net-mode event`, the "after") against delivery on a 10 ms poll timer
(`--net-mode poll`, the "before"), beside QEMU's `-device rtl8139` on the same `-netdev
dgram` backend and guest.

Guest kit scenarios, timed in the guest (its RESULT lines):
- `net-tx`: the guest sends 64- and 1514-byte frames to a sink; Mbit/s and frames/s.
- `net-rx`: the host peer offers 64- or 1514-byte frames at a fixed rate for RX_SECONDS and
  never waits: a frame the VMM's socket cannot queue now is lost, as on a wire (a Unix
  datagram socket queues about ten). The guest counts what it got: delivered frames/s and
  the share lost. The poll placement empties the socket only every 10 ms.
- `net-echo`: round trips through an echo peer; RTT p50 and p99 in microseconds.
The host peer (pyhvm/bench/netpeer.py) runs in this process; its sockets live in a
temporary directory, removed afterwards.

`--breakdown` adds one traced run per placement of echo, RX 64 B and TX 64 B and breaks a
frame's cost down from the trace (see `breakdown_from_trace`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from . import common
from .common import BenchError, Outcome
from .netpeer import HostPeer

DEFAULT_REPS = 2
VARIANTS = ("event", "poll", "qemu")
PYHVM_VARIANTS = ("event", "poll")
GUEST_MAC = "52:54:00:12:34:56"
TX_FRAMES = 1000
RX_SIZES = {"rx64": 64, "rx": 1514}
# Offered rates: above what the poll placement can take through a ten-frame socket queue
# emptied every 10 ms (about 1100 frames/s), near what the guest's driver handles here.
DEFAULT_RX_PPS = {"rx64": 5000, "rx": 2000}
RX_SECONDS = 1.5           # how long the peer offers frames
RX_IDLE_MS = 500           # the guest stops this long after the last frame it got
ECHO_FRAMES = 200
ECHO_SIZE = 64
RUN_TIMEOUT_S = 90.0
DRAIN_S = 2.0              # the sink waits this long for frames still in flight
RATIO_GOAL = 10.0          # event vs poll, RTT and RX frames/s
READY_MARKER = "net-rx: ready"
UNIX_QLEN = "/proc/sys/net/unix/max_dgram_qlen"  # frames a Unix datagram socket queues


def unix_dgram_qlen() -> int | None:
    """How many frames the VMM's socket holds between two reads (None if unknown)."""
    try:
        with open(UNIX_QLEN) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Config:
    """One thing measured: who runs the NIC, which test, and (RX) the offered rate."""

    variant: str     # "event", "poll" (pyhvm --net-mode) or "qemu"
    test: str        # "tx64", "tx1514", "rx64", "rx" (1514 B) or "echo"
    pps: int = 0     # RX: frames/s the peer offers

    @property
    def label(self) -> str:
        who = "qemu" if self.variant == "qemu" else f"pyhvm {self.variant}"
        return f"{who} {self.test}"

    @property
    def scenario(self) -> str:
        return {"tx64": "net-tx", "tx1514": "net-tx", "rx64": "net-rx", "rx": "net-rx",
                "echo": "net-echo"}[self.test]

    @property
    def rx_frames(self) -> int:
        return max(2, int(self.pps * RX_SECONDS))


TESTS = ("tx64", "tx1514", "rx64", "rx", "echo")


def configurations(qemu: bool, rx_pps: dict[str, int] | None = None) -> list[Config]:
    """Test by test, the variants side by side."""
    variants = VARIANTS if qemu else PYHVM_VARIANTS
    rates = {**DEFAULT_RX_PPS, **(rx_pps or {})}
    return [Config(v, t, rates.get(t, 0)) for t in TESTS for v in variants]


def parse_rx_pps(text: str) -> dict[str, int]:
    """`64=5000,1514=2000` (either part may be left out) -> offered frames/s per RX test."""
    tests = {str(size): test for test, size in RX_SIZES.items()}
    rates: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        size, _, value = part.partition("=")
        if size not in tests or not value.isdigit() or not 1 <= int(value) <= 1_000_000:
            raise ValueError(f"{part!r}: write SIZE=FRAMES_PER_S with SIZE 64 or 1514, "
                             "e.g. 64=5000,1514=2000")
        rates[tests[size]] = int(value)
    return rates


def guest_append(config: Config) -> str:
    if config.test == "tx64":
        return f"scenario=net-tx n={TX_FRAMES} size=64"
    if config.test == "tx1514":
        return f"scenario=net-tx n={TX_FRAMES} size=1514"
    if config.test in RX_SIZES:
        return f"scenario=net-rx n={config.rx_frames} ms=30000 idle_ms={RX_IDLE_MS}"
    return f"scenario=net-echo n={ECHO_FRAMES} size={ECHO_SIZE}"


def peer_mode(config: Config) -> str:
    return {"net-tx": "sink", "net-rx": "source", "net-echo": "echo"}[config.scenario]


def nic_options(vmm_sock: str, peer_sock: str) -> tuple[str, str]:
    """-netdev and -device values (QEMU's syntax; `pyhvm run` takes the same)."""
    return (f"dgram,id=n0,local.type=unix,local.path={vmm_sock},"
            f"remote.type=unix,remote.path={peer_sock}",
            f"rtl8139,netdev=n0,mac={GUEST_MAC}")


def vmm_command(config: Config, kernel: Path | str, vmm_sock: str,
                peer_sock: str) -> list[str]:
    netdev, device = nic_options(vmm_sock, peer_sock)
    append = guest_append(config)
    if config.variant == "qemu":
        return [common.QEMU, "-enable-kvm", "-cpu", "qemu64", "-m", "128", "-kernel",
                str(kernel), "-append", append, "-netdev", netdev, "-device", device,
                "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-serial", "stdio",
                "-display", "none", "-no-reboot", "-nodefaults"]
    return [*common.pyhvm_command(), "run", "--kernel", str(kernel), "--append", append,
            "--max-seconds", str(int(RUN_TIMEOUT_S - 10)), "--netdev", netdev,
            "--device", device, "--net-mode", config.variant]


# --- running ------------------------------------------------------------------------------
def run_with_marker(command: Sequence[str], timeout: float,
                    on_ready: Callable[[], None] | None, what: str = "") -> common.GuestRun:
    """Run a VMM whose stdout is the guest console; call on_ready once it shows the
    net-rx ready marker. Killed after `timeout`."""
    start = time.monotonic()
    try:
        proc = common.run_watching(command, timeout,
                                   marker=READY_MARKER if on_ready else None,
                                   on_marker=on_ready, env=common.pyhvm_env())
    except subprocess.TimeoutExpired:
        raise BenchError(f"{Path(command[0]).name} did not end within {timeout:.0f} s "
                         f"({what!r})") from None
    return common.GuestRun(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                           proc.stderr.decode("utf-8", "replace"), time.monotonic() - start)


def sample_from(config: Config, output: str) -> dict[str, float]:
    """The figures of one run from the guest's RESULT line."""
    result = common.find_result(output, config.scenario)
    if config.scenario == "net-tx":
        if result.number("sent") < 1:
            raise BenchError("the guest sent no frames")
        return {"mbps": float(result.fields.get("mbps", "0")), "pps": result.number("pps"),
                "sent": result.number("sent"), "ok": result.number("ok")}
    if config.scenario == "net-rx":
        n, got = result.number("n"), result.number("got")
        return {"pps": result.number("pps"), "mbps": float(result.fields.get("mbps", "0")),
                "got": got, "lost": result.number("lost"), "ok": result.number("ok"),
                "loss_pct": round(100.0 * (n - got) / n, 2) if n else 0.0,
                "nic_missed": int(result.fields.get("missed", "0"), 0),
                "irqs": int(result.fields.get("irqs", "0"), 0)}
    if result.number("got") < 1:
        raise BenchError("no echo came back")
    return {"rtt_p50_us": result.number("rtt_p50_us"),
            "rtt_p99_us": result.number("rtt_p99_us"), "got": result.number("got"),
            "lost": result.number("lost"), "ok": result.number("ok")}


def run_guest(kernel: Path, config: Config,
              extra_args: Sequence[str] = ()) -> tuple[dict[str, float], str]:
    """One guest run of `config` with a fresh peer and socket directory: its sample and
    the guest console. `extra_args` go to `pyhvm run` (a trace)."""
    directory = tempfile.mkdtemp(prefix="pyhvm-net-", dir="/tmp")  # sun_path is short
    try:
        vmm_sock = os.path.join(directory, "vmm.sock")
        peer_sock = os.path.join(directory, "peer.sock")
        mode = peer_mode(config)
        if mode == "source":
            peer = HostPeer(peer_sock, vmm_sock, mode, n=config.rx_frames,
                            size=RX_SIZES[config.test], pps=config.pps, lossy=True).start()
        else:
            peer = HostPeer(peer_sock, vmm_sock, mode).start()
        try:
            run = run_with_marker([*vmm_command(config, kernel, vmm_sock, peer_sock),
                                   *extra_args], RUN_TIMEOUT_S,
                                  peer.go if mode == "source" else None, guest_append(config))
            if mode == "sink":
                deadline = time.monotonic() + DRAIN_S
                while peer.counts.received < TX_FRAMES and time.monotonic() < deadline:
                    time.sleep(0.02)
        finally:
            counts = peer.stop()
        if peer.error is not None:
            raise BenchError(f"the host peer failed: {peer.error!r}")
        results = common.parse_results(run.output)
        if not any(r.scenario == config.scenario for r in results):
            common.check_guest_run(config.variant if config.variant == "qemu" else "pyhvm",
                                   run, guest_append(config))
        sample = sample_from(config, run.output)
        if mode == "source":
            sample["peer_sent"] = counts.sent
            sample["wire_dropped"] = counts.dropped  # the VMM's socket was full
            seconds = counts.offered_seconds
            sample["offered_pps"] = round((config.rx_frames - 1) / seconds) if seconds else 0
        else:
            sample["peer_received"] = counts.received
            if mode == "sink":  # every frame the guest sent should reach the peer
                sample["lost_pct"] = round(100.0 * max(0, sample["sent"] - counts.received)
                                           / sample["sent"], 2)
        return sample, run.output
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_config(kernel: Path, config: Config) -> dict[str, float]:
    return run_guest(kernel, config)[0]


# --- summaries ----------------------------------------------------------------------------
RX_FIGURES = ("pps", "loss_pct", "got", "offered_pps", "wire_dropped", "nic_missed")
TX_FIGURES = ("mbps", "pps", "lost_pct")
FIGURES = {"tx64": TX_FIGURES, "tx1514": TX_FIGURES, "rx64": RX_FIGURES,
           "rx": RX_FIGURES, "echo": ("rtt_p50_us", "rtt_p99_us")}
RATIO_FIGURES = ("mbps", "pps", "rtt_p50_us", "rtt_p99_us")  # compared with QEMU


def summarize(config: Config, outcome: Outcome) -> dict[str, Any]:
    """Medians (and every repetition) of a configuration's figures, or its error."""
    metrics: dict[str, Any] = {}
    if outcome.samples:
        for name in FIGURES[config.test]:
            values = [s[name] for s in outcome.samples if name in s]
            if values:
                metrics.update(common.metric(name, values, 2))
    if outcome.error is not None:
        metrics["error"] = outcome.error
    return metrics


def _median_of(by: dict[tuple[str, str], dict[str, Any]], variant: str, test: str,
               name: str) -> float | None:
    value = by.get((variant, test), {}).get(name)
    return None if value is None else float(value)


def _over(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    value = common.ratio(a, b)
    return None if value is None else round(value, 3)


def ratios(by: dict[tuple[str, str], dict[str, Any]]) -> dict[str, float | None]:
    """Event against poll (the paper's goal: RTT 10x lower, RX frames/s 10x higher; each
    ratio is written so that > 1 favours event) and event against QEMU per figure."""
    out: dict[str, float | None] = {}
    for name in ("rtt_p50_us", "rtt_p99_us"):
        out[f"{name}_poll_over_event"] = _over(_median_of(by, "poll", "echo", name),
                                               _median_of(by, "event", "echo", name))
    for test in RX_SIZES:
        out[f"{test}_pps_event_over_poll"] = _over(_median_of(by, "event", test, "pps"),
                                                   _median_of(by, "poll", test, "pps"))
    for test, names in FIGURES.items():
        for name in names:
            if name in RATIO_FIGURES:
                out[f"{test}_{name}_event_over_qemu"] = _over(
                    _median_of(by, "event", test, name), _median_of(by, "qemu", test, name))
    return out


GOALS = (("rtt_p50_us_poll_over_event", "RTT p50 poll/event"),
         ("rtt_p99_us_poll_over_event", "RTT p99 poll/event"),
         ("rx64_pps_event_over_poll", "RX 64 B frames/s event/poll"),
         ("rx_pps_event_over_poll", "RX 1514 B frames/s event/poll"))


def goals(result: dict[str, Any]) -> list[str]:
    """The paper's goals, met or not, as measured."""
    r = result["ratios"]
    lines = []
    for key, what in GOALS:
        value = r.get(key)
        verdict = "not measured" if value is None else \
            ("met" if value >= RATIO_GOAL else "NOT met")
        lines.append(f"{what} >= {RATIO_GOAL:.0f}x: {common.fmt_ratio(value)}x, {verdict}")
    return lines


def build_result(configs: Sequence[Config], outcomes: Sequence[Outcome],
                 host: dict[str, Any]) -> dict[str, Any]:
    """The JSON envelope: one run entry per configuration, and the ratios."""
    runs, by = [], {}
    for config, outcome in zip(configs, outcomes):
        metrics = summarize(config, outcome)
        by[(config.variant, config.test)] = metrics
        entry = {"variant": config.variant, "test": config.test,
                 "scenario": config.scenario, "append": guest_append(config),
                 "reps": len(outcome.samples)}
        if config.test in RX_SIZES:
            entry.update(size=RX_SIZES[config.test], offered_pps=config.pps,
                         offered_seconds=RX_SECONDS)
        runs.append(common.run_entry(entry, metrics))
    return common.envelope("net", host, runs, ratios(by))


def measure(reps: int = DEFAULT_REPS, kernel: str | None = None, qemu: bool = True,
            show_progress: bool = False, rx_pps: dict[str, int] | None = None,
            breakdown: bool = False) -> dict[str, Any]:
    """Every configuration `reps` times, interleaved; a failing one stops only itself.
    With `breakdown`, one traced run per placement of each BREAKDOWN_TESTS test follows."""
    common.require_kvm()
    elf = common.guestkit_path(kernel)
    if qemu and common.qemu_version() is None:
        raise BenchError(f"{common.QEMU} is not installed (apt-get install "
                         "qemu-system-x86), or pass --no-qemu")
    configs = configurations(qemu, rx_pps)
    outcomes: list[Outcome[dict[str, float]]] = [Outcome() for _ in configs]

    def one(config: Config, rep: int) -> None:
        outcome = outcomes[configs.index(config)]
        if outcome.error is not None:
            return
        try:
            outcome.samples.append(run_config(elf, config))
        except BenchError as err:
            outcome.error = str(err)

    progress = common.stderr_progress(show_progress, "bench net")
    try:
        common.interleave(configs, reps, one, progress, label=lambda c: c.label)
        result = build_result(configs, outcomes,
                              common.host_info(unix_max_dgram_qlen=unix_dgram_qlen()))
        if breakdown:
            result["breakdown"] = measure_breakdown(elf, configs, progress)
    finally:
        common.clear_progress(progress)
    return result


# --- per-frame cost breakdown from a trace -------------------------------------------------
BREAKDOWN_TESTS = ("echo", "rx64", "tx64")
TRACE_EVENTS = "exits,irq,backend"
NIC_TRACE_NAME = "rtl8139"  # the NIC's name in the trace header (devices, pio_map)


def _register_names() -> dict[int, str]:
    """Register window offset -> the name of the register the byte belongs to."""
    from ..devices import rtl8139 as chip

    layout = [(chip.IDR0, 6, "IDR"), (chip.MAR0, 8, "MAR"), (chip.TSD0, 16, "TSD"),
              (chip.TSAD0, 16, "TSAD"), (chip.RBSTART, 4, "RBSTART"), (chip.CR, 1, "CR"),
              (chip.CAPR, 2, "CAPR"), (chip.CBR, 2, "CBR"), (chip.IMR, 2, "IMR"),
              (chip.ISR, 2, "ISR"), (chip.TCR, 4, "TCR"), (chip.RCR, 4, "RCR"),
              (chip.TCTR, 4, "TCTR"), (chip.MPC, 4, "MPC"), (chip.CR9346, 1, "9346CR"),
              (chip.MSR, 1, "MSR"), (chip.TSAD, 2, "TSAD summary"), (chip.BMCR, 2, "BMCR"),
              (chip.BMSR, 2, "BMSR")]
    return {offset + i: name for offset, size, name in layout for i in range(size)}


REGISTER_NAMES = _register_names()


def nic_irq_from_console(console: str) -> int | None:
    """The IRQ the guest's driver found for the NIC ("net: pci=... irq=N" line)."""
    match = re.search(r"^net: pci=.*? irq=(\d+)", console, re.MULTILINE)
    return int(match.group(1)) if match else None


def frames_moved(config: Config, sample: dict[str, float]) -> int:
    """Frames through the NIC in a run: both directions of every echo."""
    if config.test == "echo":
        return int(2 * sample["got"])
    return int(sample["got"] if config.test in RX_SIZES else sample["sent"])


def breakdown_from_trace(header: dict[str, Any], records: Sequence[Any], frames: int,
                         nic_irq: int | None) -> dict[str, Any]:
    """One frame's cost, from the first to the last NIC backend pass of a traced run:
    exits by kind (the NIC's registers by name and direction, other devices by name),
    NIC interrupt line raises, and where the time went. vCPU time splits into pyhvm's
    exit handling (Python dispatch and the register model) and the rest, which is the
    guest (its driver and interrupt handler run at CPL 0, which this host's KVM executes
    in its instruction emulator) and KVM's own entry and exit; the event loop thread's
    NIC passes (ring stores, descriptor reads, backend calls: pyhvm) run beside it."""
    from ..trace.records import NO_CPU, Kind
    from ..trace.report import AddressMap, exit_reason, port_name

    if frames < 1:
        raise BenchError("no frames moved")
    devices = list(header.get("devices", []))
    if NIC_TRACE_NAME not in devices:
        raise BenchError("the trace has no NIC device (a pyhvm without NIC trace records?)")
    nic_id = devices.index(NIC_TRACE_NAME)
    passes = [r for r in records if r.kind is Kind.BACKEND_IO and r.a == nic_id]
    if not passes:
        raise BenchError("the trace has no NIC backend records (trace the 'backend' group)")
    lo = min(r.ts_ns for r in passes)
    hi = max(r.ts_ns + r.dur_ns for r in passes)
    nic_base, nic_size = next(((base, size) for base, size, name in header.get("pio_map", [])
                               if name == NIC_TRACE_NAME), (-1, 0))
    pio_map = AddressMap(header.get("pio_map", []))
    counts: Counter[str] = Counter()
    spent: Counter[str] = Counter()
    nic_exits = nic_ns = other_ns = halted_ns = raises = changes = 0
    loop_ns: Counter[str] = Counter()
    cpus: set[int] = set()
    for r in records:
        if not lo <= r.ts_ns <= hi:
            continue
        kind = r.kind
        if kind in (Kind.EXIT_PIO, Kind.EXIT_MMIO, Kind.EXIT_OTHER):
            cpus.add(r.cpu)
            if kind is Kind.EXIT_PIO and nic_base <= r.a < nic_base + nic_size:
                register = REGISTER_NAMES.get(r.a - nic_base, f"{r.a - nic_base:#04x}")
                key = f"{register} {'write' if r.c >> 8 & 1 else 'read'}"
                nic_exits += 1
                nic_ns += r.dur_ns
            else:
                key = port_name(pio_map, r.a)[0] if kind is Kind.EXIT_PIO else exit_reason(r)
                key = f"other: {key}"
                other_ns += r.dur_ns
            counts[key] += 1
            spent[key] += r.dur_ns
        elif kind is Kind.HALT:
            halted_ns += r.dur_ns
        elif kind is Kind.IRQ_LEVEL and r.a == nic_irq:
            changes += 1
            raises += bool(r.b)
        elif kind is Kind.BACKEND_IO and r.a == nic_id and r.cpu == NO_CPU:
            loop_ns["rx" if r.c == 1 else "tx"] += r.dur_ns
    vcpu_ns = (hi - lo) * max(1, len(cpus))
    guest_ns = max(0, vcpu_ns - nic_ns - other_ns - halted_ns)

    def us(ns: float) -> float:
        return round(ns / frames / 1000, 2)

    return {
        "frames": frames, "window_ms": round((hi - lo) / 1e6, 2),
        "exits_per_frame": round(sum(counts.values()) / frames, 2),
        "nic_exits_per_frame": round(nic_exits / frames, 2),
        "exits": {key: {"per_frame": round(n / frames, 3),
                        "us_each": round(spent[key] / n / 1000, 2)}
                  for key, n in counts.most_common()},
        "irq_raises_per_frame": round(raises / frames, 3),
        "irq_line_changes_per_frame": round(changes / frames, 3),
        "us_per_frame": {"wall": us(hi - lo), "vcpu_pyhvm_nic_exits": us(nic_ns),
                         "vcpu_pyhvm_other_exits": us(other_ns), "vcpu_halted": us(halted_ns),
                         "vcpu_guest_and_kvm": us(guest_ns),
                         "loop_pyhvm_rx": us(loop_ns["rx"]), "loop_pyhvm_tx": us(loop_ns["tx"])},
    }


def measure_breakdown(kernel: Path, configs: Sequence[Config],
                      progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One traced run per pyhvm placement of each BREAKDOWN_TESTS test (the offered RX
    rate as in `configs`); a failing one reports its error in its place."""
    from ..trace.records import TraceFormatError, read_trace

    rates = {c.test: c.pps for c in configs}
    out = []
    for test in BREAKDOWN_TESTS:
        for variant in PYHVM_VARIANTS:
            config = Config(variant, test, rates.get(test, DEFAULT_RX_PPS.get(test, 0)))
            if progress:
                progress(f"breakdown: {config.label} (traced)")
            entry: dict[str, Any] = {"variant": variant, "test": test,
                                     "append": guest_append(config)}
            with tempfile.TemporaryDirectory(prefix="pyhvm-net-trace-") as tmp:
                trace = os.path.join(tmp, "net.trc")
                try:
                    sample, console = run_guest(kernel, config, ["--trace", trace,
                                                                 "--trace-events",
                                                                 TRACE_EVENTS])
                    header, records = read_trace(trace)
                    entry.update(breakdown_from_trace(header, records,
                                                      frames_moved(config, sample),
                                                      nic_irq_from_console(console)))
                    entry["traced_sample"] = {k: v for k, v in sample.items()
                                              if k in ("pps", "loss_pct", "rtt_p50_us")}
                except (BenchError, OSError, TraceFormatError) as err:
                    entry["error"] = str(err)
            out.append(entry)
    return out


KVM_FACILITIES = (
    "KVM facilities in the event placement: the TX kick (the TSD write) is an ordinary "
    "port-I/O exit whose handler queues the work to the event loop: no ioeventfd, because "
    "the write carries the frame size, which an ioeventfd drops (datamatch would need an "
    "eventfd per size). The interrupt is the PCI INTx line set with KVM_IRQ_LINE on the "
    "in-kernel irqchip, from whichever thread changes it: no irqfd, because a level INTx "
    "through irqfd needs the resample eventfd and costs no fewer system calls. Neither "
    "facility is used, so neither can be switched off and measured; the TSD write exits "
    "listed above (event placement) are what an ioeventfd could at most save per "
    "transmitted frame.")


def render_breakdown(entries: Sequence[dict[str, Any]]) -> list[str]:
    """The breakdown as text: one row per traced run, then each run's NIC register exits."""
    rows, details = [], []
    for e in entries:
        label = f"{e['test']} {e['variant']}"
        if "error" in e:
            rows.append([label, "FAILED", "", "", "", "", "", ""])
            details.append(f"  {label}: {e['error']}")
            continue
        t = e["us_per_frame"]
        rows.append([label, str(e["frames"]), f"{e['exits_per_frame']:g}",
                     f"{e['irq_raises_per_frame']:g}", f"{t['wall']:g}",
                     f"{t['vcpu_pyhvm_nic_exits'] + t['vcpu_pyhvm_other_exits']:.1f}",
                     f"{t['vcpu_guest_and_kvm']:g}",
                     f"{t['loop_pyhvm_rx'] + t['loop_pyhvm_tx']:.1f}"])
        nic = [f"{key} {v['per_frame']:g} x {v['us_each']:g} us"
               for key, v in e["exits"].items() if not key.startswith("other")]
        other = [f"{key[7:]} {v['per_frame']:g}" for key, v in e["exits"].items()
                 if key.startswith("other")]
        details.append(f"  {label}: NIC registers per frame: {', '.join(nic) or 'none'}"
                       + (f"; other exits per frame: {', '.join(other)}" if other else ""))
    headers = ["traced run", "frames", "exits/frame", "NIC IRQs/frame", "us/frame",
               "vCPU in pyhvm", "vCPU in guest/KVM", "loop in pyhvm"]
    return ["per-frame cost (one traced run each; tracing adds about 1-2 us per exit; "
            "echo counts both directions):", common.format_table(headers, rows),
            "  vCPU in pyhvm: exit handling (Python dispatch and the RTL8139 register "
            "model) - ours;", "  vCPU in guest/KVM: the rest of the vCPU's time - the guest "
            "kit's driver and interrupt handler (CPL 0, so KVM's instruction emulator on "
            "this host), KVM's entry and exit, and the guest waiting for frames - not ours;", "  loop in pyhvm: the event loop's "
            "NIC passes (ring stores, descriptor reads, backend calls), beside the vCPU.",
            *details, "", KVM_FACILITIES]


# --- the table ----------------------------------------------------------------------------
ROWS = (("tx64", "mbps", "TX 64 B, Mbit/s"), ("tx64", "pps", "TX 64 B, frames/s"),
        ("tx64", "lost_pct", "TX 64 B lost before the peer, %"),
        ("tx1514", "mbps", "TX 1514 B, Mbit/s"), ("tx1514", "pps", "TX 1514 B, frames/s"),
        ("tx1514", "lost_pct", "TX 1514 B lost before the peer, %"),
        ("rx64", "offered_pps", "RX 64 B offered, frames/s"),
        ("rx64", "pps", "RX 64 B delivered, frames/s"), ("rx64", "loss_pct", "RX 64 B lost, %"),
        ("rx", "offered_pps", "RX 1514 B offered, frames/s"),
        ("rx", "pps", "RX 1514 B delivered, frames/s"), ("rx", "loss_pct", "RX 1514 B lost, %"),
        ("echo", "rtt_p50_us", "RTT p50, us"), ("echo", "rtt_p99_us", "RTT p99, us"))
EVENT_VS_POLL = {"rx64_pps": "rx64_pps_event_over_poll", "rx_pps": "rx_pps_event_over_poll",
                 "echo_rtt_p50_us": "rtt_p50_us_poll_over_event",
                 "echo_rtt_p99_us": "rtt_p99_us_poll_over_event"}


def render(result: dict[str, Any]) -> str:
    """A plain-text table of medians, the ratios and the goals (and the breakdown)."""
    variants = [v for v in VARIANTS
                if any(run["config"]["variant"] == v for run in result["runs"])]
    by = {(run["config"]["variant"], run["config"]["test"]): run["metrics"]
          for run in result["runs"]}
    r = result["ratios"]
    rows = []
    for test, name, label in ROWS:
        cells = []
        for v in variants:
            m = by.get((v, test), {})
            cells.append("FAILED" if name not in m and "error" in m
                         else ("n/a" if name not in m else f"{m[name]:g}"))
        ratio_key = EVENT_VS_POLL.get(f"{test}_{name}")
        row = [label, *cells, common.fmt_ratio(r.get(ratio_key)) if ratio_key else ""]
        if "qemu" in variants:
            qemu_key = f"{test}_{name}_event_over_qemu"
            row.append(common.fmt_ratio(r.get(qemu_key)) if qemu_key in r else "")
        rows.append(row)
    headers = ["figure (median)", *(v if v == "qemu" else f"pyhvm {v}" for v in variants),
               "event vs poll"]
    if "qemu" in variants:
        headers.append("event/QEMU")
    lines = [f"pyhvm bench net: RTL8139 over -netdev dgram (Unix sockets), guest-timed; "
             f"medians of {max((run['config']['reps'] for run in result['runs']), default=0)}"
             " reps", "",
             common.format_table(headers, rows),
             "(event vs poll: RTT poll/event, RX delivered frames/s event/poll; > 1 favours "
             "event)",
             f"(RX: the peer offers frames at a fixed rate for {RX_SECONDS:g} s and never "
             "waits; a frame the VMM's socket cannot queue is lost, as on a wire"
             + (f"; the socket queues {qlen} frames, net.unix.max_dgram_qlen, and the poll "
                "placement empties it every 10 ms" if (qlen := result["host"].get(
                    "unix_max_dgram_qlen")) else "") + ")"]
    failures = [f"{run['config']['variant']} {run['config']['test']} failed: "
                f"{run['metrics']['error']}" for run in result["runs"]
                if "error" in run["metrics"]]
    if failures:
        lines += ["", *failures]
    lines += ["", "goals:", *(f"  {g}" for g in goals(result))]
    if "qemu" not in variants:
        lines.append("  (QEMU not measured)")
    if result.get("breakdown"):
        lines += ["", *render_breakdown(result["breakdown"])]
    lines += ["", common.host_line(result["host"])]
    return "\n".join(lines)


__all__ = ["Config", "Outcome", "configurations", "parse_rx_pps", "guest_append",
           "vmm_command", "sample_from", "summarize", "ratios", "goals", "build_result",
           "measure", "render", "breakdown_from_trace", "measure_breakdown",
           "render_breakdown"]
