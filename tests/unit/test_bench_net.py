"""`pyhvm bench net`: derived metrics, ratios, goals, the JSON shape and the per-frame
breakdown from fake samples and a synthetic trace (no KVM, no guest)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from pyhvm.bench import net
from pyhvm.bench.common import BenchError
from pyhvm.bench.netpeer import ETHERTYPE, GUEST_MAC, PEER_MAC, HostPeer, rx_frame
from pyhvm.trace.records import NO_CPU, Kind, Record

HOST = {"kernel": "6.1", "cpu_model": "cpu", "cpus": 4, "kvm_module": "kvm_intel",
        "kvm_pvm": False, "python": "CPython 3.11", "qemu": "7.2"}

FAKE = {
    "event": {"tx64": [{"mbps": 2.5, "pps": 4800}, {"mbps": 2.7, "pps": 5000}],
              "tx1514": [{"mbps": 44.0, "pps": 3600}, {"mbps": 46.0, "pps": 3800}],
              "rx64": [{"pps": 4000, "got": 6000, "loss_pct": 20.0}] * 2,
              "rx": [{"pps": 3000, "got": 1000, "lost": 0}, {"pps": 3200, "got": 1000,
                                                             "lost": 0}],
              "echo": [{"rtt_p50_us": 300, "rtt_p99_us": 500},
                       {"rtt_p50_us": 340, "rtt_p99_us": 600}]},
    "poll": {"tx64": [{"mbps": 0.2, "pps": 380}] * 2,
             "tx1514": [{"mbps": 4.6, "pps": 380}] * 2,
             "rx64": [{"pps": 800, "got": 1200, "loss_pct": 84.0}] * 2,
             "rx": [{"pps": 310, "got": 900, "lost": 100}] * 2,
             "echo": [{"rtt_p50_us": 20000, "rtt_p99_us": 21000}] * 2},
    "qemu": {"tx64": [{"mbps": 3.7, "pps": 7200}] * 2,
             "tx1514": [{"mbps": 88.0, "pps": 7300}] * 2,
             "rx64": [{"pps": 4500, "got": 6750, "loss_pct": 10.0}] * 2,
             "rx": [{"pps": 4000, "got": 1000, "lost": 0}] * 2,
             "echo": [{"rtt_p50_us": 200, "rtt_p99_us": 250}] * 2},
}


def fake_result(qemu: bool = True) -> dict:
    configs = net.configurations(qemu)
    outcomes = [net.Outcome(samples=list(FAKE[c.variant][c.test])) for c in configs]
    return net.build_result(configs, outcomes, HOST)


def test_configurations_interleave_variants_per_test() -> None:
    configs = net.configurations(True)
    assert [c.variant for c in configs[:3]] == ["event", "poll", "qemu"]
    assert {c.test for c in configs} == set(net.TESTS)
    assert all(c.variant != "qemu" for c in net.configurations(False))


def test_summarize_takes_medians_and_keeps_reps() -> None:
    m = net.summarize(net.Config("event", "echo"), net.Outcome(samples=FAKE["event"]["echo"]))
    assert m["rtt_p50_us"] == 320 and m["rtt_p50_us_reps"] == [300, 340]
    assert m["rtt_p99_us"] == 550


def test_ratios_event_poll_and_qemu() -> None:
    r = fake_result()["ratios"]
    assert r["rtt_p50_us_poll_over_event"] == pytest.approx(20000 / 320, rel=1e-3)
    assert r["rtt_p99_us_poll_over_event"] == pytest.approx(21000 / 550, rel=1e-3)
    assert r["rx_pps_event_over_poll"] == pytest.approx(3100 / 310, rel=1e-3)
    assert r["tx1514_mbps_event_over_qemu"] == pytest.approx(45 / 88, rel=1e-3)
    assert r["echo_rtt_p50_us_event_over_qemu"] == pytest.approx(320 / 200, rel=1e-3)
    assert "rx_got_event_over_qemu" not in r


def test_ratios_without_qemu_are_none() -> None:
    r = fake_result(qemu=False)["ratios"]
    assert r["tx64_pps_event_over_qemu"] is None
    assert r["rx_pps_event_over_poll"] is not None


def test_goals_are_printed_honestly() -> None:
    result = fake_result()
    lines = net.goals(result)
    assert "met" in lines[0] and "NOT" not in lines[0]           # 62x
    assert "met" in lines[1] and "NOT" not in lines[1]           # 38x
    assert "NOT met" in lines[2]                                 # RX 64 B: 5x
    assert "met" in lines[3] and "NOT" not in lines[3]           # RX 1514 B: 10x exactly
    result["ratios"]["rx_pps_event_over_poll"] = 2.0
    assert "NOT met" in net.goals(result)[3]
    result["ratios"]["rx64_pps_event_over_poll"] = None
    assert "not measured" in net.goals(result)[2]


def test_json_shape_and_table() -> None:
    result = fake_result()
    again = json.loads(json.dumps(result))
    assert set(again) == {"bench", "host", "runs", "ratios"} and again["bench"] == "net"
    assert len(again["runs"]) == 15
    run = again["runs"][0]
    assert set(run) == {"config", "metrics"}
    assert run["config"]["variant"] == "event" and run["config"]["reps"] == 2
    text = net.render(result)
    assert "RTT p50, us" in text and "goals:" in text and "event/QEMU" in text


def test_a_failed_config_shows_its_error() -> None:
    configs = net.configurations(False)
    outcomes = [net.Outcome(samples=list(FAKE[c.variant][c.test])) for c in configs]
    outcomes[-1] = net.Outcome(error="the guest printed no RESULT net-echo line")
    result = net.build_result(configs, outcomes, HOST)
    assert result["ratios"]["rtt_p50_us_poll_over_event"] is None
    assert "FAILED" in net.render(result) and "no RESULT net-echo" in net.render(result)


def test_sample_from_result_lines() -> None:
    tx = net.sample_from(net.Config("event", "tx64"),
                         "RESULT net-tx ok=1 n=10 size=64 sent=10 pps=4884 mbps=2.50\n")
    assert tx["mbps"] == 2.5 and tx["pps"] == 4884
    rx = net.sample_from(net.Config("poll", "rx"),
                         "RESULT net-rx ok=0 n=10 got=8 lost=2 pps=300 mbps=3.6 irqs=5 "
                         "missed=1\n")
    assert rx["got"] == 8 and rx["lost"] == 2 and rx["loss_pct"] == 20.0
    assert rx["nic_missed"] == 1 and rx["irqs"] == 5
    with pytest.raises(BenchError):
        net.sample_from(net.Config("event", "echo"), "nothing here\n")


def test_peer_frames_and_modes(tmp_path) -> None:
    frame = rx_frame(3, 60)
    assert len(frame) == 60 and frame[:6] == GUEST_MAC and frame[6:12] == PEER_MAC
    assert frame[12:14] == ETHERTYPE and frame[14:18] == (3).to_bytes(4, "big")
    assert frame[18] == (18 + 37 * 3) & 0xFF
    with pytest.raises(ValueError):
        HostPeer(str(tmp_path / "a"), str(tmp_path / "b"), "nope")


def test_rx_tests_offer_a_fixed_rate_for_rx_seconds() -> None:
    configs = {(c.variant, c.test): c for c in net.configurations(False, {"rx64": 8000})}
    rx64, rx = configs[("poll", "rx64")], configs[("event", "rx")]
    assert rx64.pps == 8000 and rx.pps == net.DEFAULT_RX_PPS["rx"]
    assert f"n={int(8000 * net.RX_SECONDS)}" in net.guest_append(rx64)
    assert net.guest_append(rx).startswith("scenario=net-rx ")
    assert net.Config("event", "echo").pps == 0  # others build echo configs this way


@pytest.mark.parametrize("text,expected", [("64=5000,1514=2000", {"rx64": 5000, "rx": 2000}),
                                           ("1514=300", {"rx": 300}), ("", {})])
def test_parse_rx_pps(text: str, expected: dict) -> None:
    assert net.parse_rx_pps(text) == expected


@pytest.mark.parametrize("text", ["60=5000", "64=fast", "64=0", "64"])
def test_parse_rx_pps_refuses_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="64=5000"):
        net.parse_rx_pps(text)


def test_lossy_source_drops_what_the_socket_cannot_queue(tmp_path) -> None:
    """A receiver that never reads: a Unix datagram queue holds a few frames, the rest of
    an unpaced burst is dropped and counted, and the peer never waits."""
    vmm_path, peer_path = str(tmp_path / "v"), str(tmp_path / "p")
    vmm = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    vmm.bind(vmm_path)
    try:
        peer = HostPeer(peer_path, vmm_path, "source", n=200, size=64, lossy=True).start()
        peer.go()
        deadline = time.monotonic() + 10
        while peer.counts.sent + peer.counts.dropped < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        counts = peer.stop()
    finally:
        vmm.close()
    assert peer.error is None
    assert counts.sent + counts.dropped == 200 and counts.sent >= 1 and counts.dropped >= 1
    assert counts.offered_seconds > 0


# --- the per-frame breakdown -------------------------------------------------------------
NIC_BASE = 0xC100
HEADER = {"devices": ["ide", "rtl8139"],
          "pio_map": [[0x20, 2, "pic-master"], [NIC_BASE, 256, "rtl8139"]]}


def rec(ts: int, kind: Kind, dur: int = 0, cpu: int = 0, a: int = 0, b: int = 0,
        c: int = 0) -> Record:
    return Record(ts, dur, kind, cpu, a, b, c)


def pio(ts: int, port: int, dur: int, write: bool) -> Record:
    return rec(ts, Kind.EXIT_PIO, dur, 0, port, 0, 1 | write << 8 | 1 << 16)


def synthetic_trace() -> list[Record]:
    """Two received frames between t=1000 and t=101000 ns (one pass each on the loop
    thread), the driver's exits in between, and records outside the window."""
    return [
        pio(10, NIC_BASE + 0x37, 500, False),                      # before: not counted
        rec(1_000, Kind.BACKEND_IO, 4_000, NO_CPU, 1, 64, 1),      # RX pass, 4 us
        rec(2_000, Kind.IRQ_LEVEL, 0, NO_CPU, 11, 1),              # NIC line up
        pio(10_000, NIC_BASE + 0x3E, 2_000, False),                # ISR read
        pio(12_000, NIC_BASE + 0x3E, 3_000, True),                 # ISR write
        rec(12_500, Kind.IRQ_LEVEL, 0, 0, 11, 0),                  # NIC line down
        pio(20_000, NIC_BASE + 0x38, 1_000, True),                 # CAPR write
        pio(21_000, NIC_BASE + 0x37, 1_000, False),                # CR read
        pio(22_000, 0x20, 5_000, True),                            # PIC (not the NIC)
        rec(50_000, Kind.IRQ_LEVEL, 0, NO_CPU, 4, 1),              # another line
        rec(97_000, Kind.BACKEND_IO, 4_000, NO_CPU, 1, 64, 1),     # RX pass, ends 101000
        pio(60_000, NIC_BASE + 0x38, 1_000, True),                 # CAPR write
        pio(200_000, NIC_BASE + 0x38, 1_000, True),                # after: not counted
    ]


def test_breakdown_counts_exits_interrupts_and_time_per_frame() -> None:
    b = net.breakdown_from_trace(HEADER, synthetic_trace(), frames=2, nic_irq=11)
    assert b["window_ms"] == 0.1 and b["frames"] == 2
    assert b["exits_per_frame"] == 3.0 and b["nic_exits_per_frame"] == 2.5
    assert b["exits"]["CAPR write"] == {"per_frame": 1.0, "us_each": 1.0}
    assert b["exits"]["ISR write"] == {"per_frame": 0.5, "us_each": 3.0}
    assert b["exits"]["other: pic-master"]["per_frame"] == 0.5
    assert b["irq_raises_per_frame"] == 0.5 and b["irq_line_changes_per_frame"] == 1.0
    t = b["us_per_frame"]
    assert t["wall"] == 50.0 and t["vcpu_pyhvm_nic_exits"] == 4.0
    assert t["vcpu_pyhvm_other_exits"] == 2.5 and t["loop_pyhvm_rx"] == 4.0
    assert t["vcpu_guest_and_kvm"] == 50.0 - 4.0 - 2.5


def test_breakdown_refuses_a_trace_without_nic_records() -> None:
    with pytest.raises(BenchError, match="backend"):
        net.breakdown_from_trace(HEADER, [pio(10, NIC_BASE, 1, False)], 1, 11)
    with pytest.raises(BenchError, match="no NIC device"):
        net.breakdown_from_trace({"devices": ["ide"]}, synthetic_trace(), 2, 11)


def test_breakdown_helpers() -> None:
    console = "pyhvm guest kit\nnet: pci=00:03.0 id=10ec:8139 io=0xc100 irq=11 pin=1\n"
    assert net.nic_irq_from_console(console) == 11
    assert net.nic_irq_from_console("nothing") is None
    assert net.frames_moved(net.Config("event", "echo"), {"got": 100}) == 200
    assert net.frames_moved(net.Config("event", "rx64"), {"got": 7}) == 7
    assert net.frames_moved(net.Config("event", "tx64"), {"sent": 9}) == 9
    assert net.REGISTER_NAMES[0x3E] == net.REGISTER_NAMES[0x3F] == "ISR"
    assert net.REGISTER_NAMES[0x10] == net.REGISTER_NAMES[0x1C] == "TSD"


def test_render_shows_the_breakdown_and_the_kvm_facilities() -> None:
    result = fake_result()
    entry = net.breakdown_from_trace(HEADER, synthetic_trace(), frames=2, nic_irq=11)
    result["breakdown"] = [dict(entry, variant="event", test="rx64"),
                           {"variant": "poll", "test": "rx64", "error": "no frames moved"}]
    text = net.render(json.loads(json.dumps(result)))
    assert "per-frame cost" in text and "rx64 event" in text and "CAPR write 1 x 1 us" in text
    assert "rx64 poll" in text and "FAILED" in text and "no frames moved" in text
    assert "no ioeventfd" in text and "KVM_IRQ_LINE" in text
    assert "RX 64 B delivered" in text and "RX 1514 B lost, %" in text
