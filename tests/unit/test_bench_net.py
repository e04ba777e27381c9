"""`pyhvm bench net`: derived metrics, ratios, goals and the JSON shape from fake samples
(no KVM, no guest)."""

from __future__ import annotations

import json

import pytest

from pyhvm.bench import net
from pyhvm.bench.common import BenchError
from pyhvm.bench.netpeer import ETHERTYPE, GUEST_MAC, PEER_MAC, HostPeer, rx_frame

HOST = {"kernel": "6.1", "cpu_model": "cpu", "cpus": 4, "kvm_module": "kvm_intel",
        "kvm_pvm": False, "python": "CPython 3.11", "qemu": "7.2"}

FAKE = {
    "event": {"tx64": [{"mbps": 2.5, "pps": 4800}, {"mbps": 2.7, "pps": 5000}],
              "tx1514": [{"mbps": 44.0, "pps": 3600}, {"mbps": 46.0, "pps": 3800}],
              "rx": [{"pps": 3000, "got": 1000, "lost": 0}, {"pps": 3200, "got": 1000,
                                                             "lost": 0}],
              "echo": [{"rtt_p50_us": 300, "rtt_p99_us": 500},
                       {"rtt_p50_us": 340, "rtt_p99_us": 600}]},
    "poll": {"tx64": [{"mbps": 0.2, "pps": 380}] * 2,
             "tx1514": [{"mbps": 4.6, "pps": 380}] * 2,
             "rx": [{"pps": 310, "got": 900, "lost": 100}] * 2,
             "echo": [{"rtt_p50_us": 20000, "rtt_p99_us": 21000}] * 2},
    "qemu": {"tx64": [{"mbps": 3.7, "pps": 7200}] * 2,
             "tx1514": [{"mbps": 88.0, "pps": 7300}] * 2,
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
    assert "met" in lines[2] and "NOT" not in lines[2]           # 10x exactly
    result["ratios"]["rx_pps_event_over_poll"] = 2.0
    assert "NOT met" in net.goals(result)[2]


def test_json_shape_and_table() -> None:
    result = fake_result()
    again = json.loads(json.dumps(result))
    assert set(again) == {"bench", "host", "runs", "ratios"} and again["bench"] == "net"
    assert len(again["runs"]) == 12
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
                         "RESULT net-rx ok=0 n=10 got=8 lost=2 pps=300 mbps=3.6\n")
    assert rx["got"] == 8 and rx["lost"] == 2
    with pytest.raises(BenchError):
        net.sample_from(net.Config("event", "echo"), "nothing here\n")


def test_peer_frames_and_modes(tmp_path) -> None:
    frame = rx_frame(3, 60)
    assert len(frame) == 60 and frame[:6] == GUEST_MAC and frame[6:12] == PEER_MAC
    assert frame[12:14] == ETHERTYPE and frame[14:18] == (3).to_bytes(4, "big")
    assert frame[18] == (18 + 37 * 3) & 0xFF
    with pytest.raises(ValueError):
        HostPeer(str(tmp_path / "a"), str(tmp_path / "b"), "nope")
