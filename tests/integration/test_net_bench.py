"""One short smoke run of `pyhvm bench net`'s measuring path: an RX test at a fixed offered
rate with a lossy peer, traced, and broken down per frame. Asserts what must hold whatever
the machine's speed (counts add up, the driver's register exits are there), no rates."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from pyhvm.bench import net
from pyhvm.trace.records import read_trace

pytestmark = pytest.mark.kvm


def test_traced_rx_run_breaks_down_per_frame(guestkit: Path, monkeypatch) -> None:
    monkeypatch.setattr(net, "RX_SECONDS", 0.5)
    config = net.Config("event", "rx64", 2000)
    with tempfile.TemporaryDirectory(prefix="pyhvm-net-smoke-") as tmp:
        trace = str(Path(tmp) / "rx.trc")
        sample, console = net.run_guest(guestkit, config,
                                        ["--trace", trace, "--trace-events", net.TRACE_EVENTS])
        header, records = read_trace(trace)
    n = config.rx_frames
    assert 0 < sample["got"] <= n and sample["peer_sent"] + sample["wire_dropped"] == n
    assert sample["loss_pct"] == pytest.approx(100 * (n - sample["got"]) / n, abs=0.01)
    irq = net.nic_irq_from_console(console)
    assert irq is not None
    b = net.breakdown_from_trace(header, records, net.frames_moved(config, sample), irq)
    assert "CAPR write" in b["exits"] and b["nic_exits_per_frame"] > 0
    assert 0 < b["irq_raises_per_frame"] <= 1
    t = b["us_per_frame"]
    assert t["loop_pyhvm_rx"] > 0 and t["wall"] >= t["vcpu_pyhvm_nic_exits"]
