"""`pyhvm bench net`: the paper's network experiment. pyhvm's RTL8139 with event-driven
frame delivery (`--net-mode event`, the "after") against delivery on a 10 ms poll timer
(`--net-mode poll`, the "before"), beside QEMU's `-device rtl8139` on the same `-netdev
dgram` backend and guest.

Guest kit scenarios, timed in the guest (its RESULT lines):
- `net-tx`: the guest sends 64- and 1514-byte frames to a sink; Mbit/s and frames/s.
- `net-rx`: the host peer sends frames unpaced; the guest's got/lost and frames/s.
- `net-echo`: round trips through an echo peer; RTT p50 and p99 in microseconds.
The host peer (pyhvm/bench/netpeer.py) runs in this process; its sockets live in a
temporary directory, removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from . import common
from .common import BenchError
from .netpeer import HostPeer

DEFAULT_REPS = 2
VARIANTS = ("event", "poll", "qemu")
PYHVM_VARIANTS = ("event", "poll")
GUEST_MAC = "52:54:00:12:34:56"
TX_FRAMES = 1000
RX_FRAMES = 1000
RX_SIZE = 1514
ECHO_FRAMES = 200
ECHO_SIZE = 64
RUN_TIMEOUT_S = 90.0
DRAIN_S = 2.0              # the sink waits this long for frames still in flight
RATIO_GOAL = 10.0          # event vs poll, RTT and RX frames/s
READY_MARKER = "net-rx: ready"


@dataclass(frozen=True)
class Config:
    """One thing measured: who runs the NIC and which scenario."""

    variant: str     # "event", "poll" (pyhvm --net-mode) or "qemu"
    test: str        # "tx64", "tx1514", "rx" or "echo"

    @property
    def label(self) -> str:
        who = "qemu" if self.variant == "qemu" else f"pyhvm {self.variant}"
        return f"{who} {self.test}"

    @property
    def scenario(self) -> str:
        return {"tx64": "net-tx", "tx1514": "net-tx", "rx": "net-rx",
                "echo": "net-echo"}[self.test]


TESTS = ("tx64", "tx1514", "rx", "echo")


@dataclass
class Outcome:
    """A configuration's samples (metric dicts), or why it stopped."""

    samples: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None


def configurations(qemu: bool) -> list[Config]:
    """Test by test, the variants side by side."""
    variants = VARIANTS if qemu else PYHVM_VARIANTS
    return [Config(v, t) for t in TESTS for v in variants]


def guest_append(config: Config) -> str:
    if config.test == "tx64":
        return f"scenario=net-tx n={TX_FRAMES} size=64"
    if config.test == "tx1514":
        return f"scenario=net-tx n={TX_FRAMES} size=1514"
    if config.test == "rx":
        return f"scenario=net-rx n={RX_FRAMES} ms=20000 idle_ms=2000"
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
        return {"pps": result.number("pps"), "mbps": float(result.fields.get("mbps", "0")),
                "got": result.number("got"), "lost": result.number("lost"),
                "ok": result.number("ok")}
    if result.number("got") < 1:
        raise BenchError("no echo came back")
    return {"rtt_p50_us": result.number("rtt_p50_us"),
            "rtt_p99_us": result.number("rtt_p99_us"), "got": result.number("got"),
            "lost": result.number("lost"), "ok": result.number("ok")}


def run_config(kernel: Path, config: Config) -> dict[str, float]:
    """One guest run of `config` with a fresh peer and socket directory."""
    directory = tempfile.mkdtemp(prefix="pyhvm-net-", dir="/tmp")  # sun_path is short
    try:
        vmm_sock = os.path.join(directory, "vmm.sock")
        peer_sock = os.path.join(directory, "peer.sock")
        mode = peer_mode(config)
        peer = HostPeer(peer_sock, vmm_sock, mode, n=RX_FRAMES, size=RX_SIZE).start()
        try:
            run = run_with_marker(vmm_command(config, kernel, vmm_sock, peer_sock),
                                  RUN_TIMEOUT_S, peer.go if mode == "source" else None,
                                  guest_append(config))
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
        sample["peer_received" if mode != "source" else "peer_sent"] = \
            counts.received if mode != "source" else counts.sent
        return sample
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- summaries ----------------------------------------------------------------------------
FIGURES = {"tx64": ("mbps", "pps"), "tx1514": ("mbps", "pps"), "rx": ("pps", "got", "lost"),
           "echo": ("rtt_p50_us", "rtt_p99_us")}


def summarize(config: Config, outcome: Outcome) -> dict[str, Any]:
    """Medians (and every repetition) of a configuration's figures, or its error."""
    metrics: dict[str, Any] = {}
    if outcome.samples:
        for name in FIGURES[config.test]:
            metrics.update(common.metric(name, [s[name] for s in outcome.samples], 2))
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
    out["rx_pps_event_over_poll"] = _over(_median_of(by, "event", "rx", "pps"),
                                          _median_of(by, "poll", "rx", "pps"))
    for test, names in FIGURES.items():
        for name in names:
            if name in ("got", "lost"):
                continue
            out[f"{test}_{name}_event_over_qemu"] = _over(
                _median_of(by, "event", test, name), _median_of(by, "qemu", test, name))
    return out


def goals(result: dict[str, Any]) -> list[str]:
    """The paper's goals, met or not, as measured."""
    r = result["ratios"]
    lines = []
    for key, what in (("rtt_p50_us_poll_over_event", "RTT p50 poll/event"),
                      ("rtt_p99_us_poll_over_event", "RTT p99 poll/event"),
                      ("rx_pps_event_over_poll", "RX frames/s event/poll")):
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
        runs.append(common.run_entry({"variant": config.variant, "test": config.test,
                                      "scenario": config.scenario,
                                      "append": guest_append(config),
                                      "reps": len(outcome.samples)}, metrics))
    return common.envelope("net", host, runs, ratios(by))


def measure(reps: int = DEFAULT_REPS, kernel: str | None = None, qemu: bool = True,
            show_progress: bool = False) -> dict[str, Any]:
    """Every configuration `reps` times, interleaved; a failing one stops only itself."""
    common.require_kvm()
    elf = common.guestkit_path(kernel)
    if qemu and common.qemu_version() is None:
        raise BenchError(f"{common.QEMU} is not installed (apt-get install "
                         "qemu-system-x86), or pass --no-qemu")
    configs = configurations(qemu)
    outcomes = [Outcome() for _ in configs]

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
    finally:
        common.clear_progress(progress)
    return build_result(configs, outcomes, common.host_info())


# --- the table ----------------------------------------------------------------------------
ROWS = (("tx64", "mbps", "TX 64 B, Mbit/s"), ("tx64", "pps", "TX 64 B, frames/s"),
        ("tx1514", "mbps", "TX 1514 B, Mbit/s"), ("tx1514", "pps", "TX 1514 B, frames/s"),
        ("rx", "pps", "RX 1514 B unpaced, frames/s"), ("rx", "got", "RX got"),
        ("rx", "lost", "RX lost"), ("echo", "rtt_p50_us", "RTT p50, us"),
        ("echo", "rtt_p99_us", "RTT p99, us"))


def render(result: dict[str, Any]) -> str:
    """A plain-text table of medians, the ratios and the goals."""
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
        ratio_key = {"rx_pps": "rx_pps_event_over_poll",
                     "echo_rtt_p50_us": "rtt_p50_us_poll_over_event",
                     "echo_rtt_p99_us": "rtt_p99_us_poll_over_event"}.get(f"{test}_{name}")
        row = [label, *cells, common.fmt_ratio(r.get(ratio_key)) if ratio_key else ""]
        if "qemu" in variants:
            row.append(common.fmt_ratio(r.get(f"{test}_{name}_event_over_qemu")))
        rows.append(row)
    headers = ["figure (median)", *(v if v == "qemu" else f"pyhvm {v}" for v in variants),
               "event vs poll"]
    if "qemu" in variants:
        headers.append("event/QEMU")
    lines = [f"pyhvm bench net: RTL8139 over -netdev dgram (Unix sockets), guest-timed; "
             f"medians of {max((run['config']['reps'] for run in result['runs']), default=0)}"
             " reps", "",
             common.format_table(headers, rows),
             "(event vs poll: RTT poll/event, RX frames/s event/poll; > 1 favours event)"]
    failures = [f"{run['config']['variant']} {run['config']['test']} failed: "
                f"{run['metrics']['error']}" for run in result["runs"]
                if "error" in run["metrics"]]
    if failures:
        lines += ["", *failures]
    lines += ["", "goals:", *(f"  {g}" for g in goals(result))]
    if "qemu" not in variants:
        lines.append("  (QEMU not measured)")
    lines += ["", common.host_line(result["host"])]
    return "\n".join(lines)


__all__ = ["Config", "Outcome", "configurations", "guest_append", "vmm_command",
           "sample_from", "summarize", "ratios", "goals", "build_result", "measure",
           "render"]
