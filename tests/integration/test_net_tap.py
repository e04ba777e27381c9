"""The guest kit's net scenarios over a real TAP, with the host peer in a network namespace.

Each test makes its own namespace and, in it, a TAP that carries the peer's MAC and no
IPv6 (so the kernel stays silent on it); the peer (tests/netpeer.py) binds an AF_PACKET
socket to the TAP there, and pyhvm runs in the same namespace with `--netdev tap,ifname=`,
attaching to that TAP. Names are unique per test; processes, the TAP and the namespace are
removed whatever happens, and the test checks they are gone.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyhvm.bench.common import run_watching
from tests import netpeer
from tests.guestkit import REPO_ROOT, STATUS_OK, GuestRun

pytestmark = pytest.mark.kvm

GUEST_MAC = "52:54:00:12:34:56"
BOOT_TIMEOUT = 60       # seconds per guest run
PEER_TIMEOUT = 15       # seconds for the peer to start or to print its summary
DRAIN_S = 0.5           # the sink's grace for frames still in the TAP when the guest ends


def _tap_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "a TAP in a network namespace needs root"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun does not exist (modprobe tun)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Netns:
    name: str
    tap: str

    def exec(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]


@pytest.fixture
def netns(guestkit: Path) -> Iterator[Netns]:
    """A fresh namespace holding a persistent TAP (up, the peer's MAC, IPv6 off)."""
    reason = _tap_unavailable()
    if reason:
        pytest.skip(reason)
    tag = f"{os.getpid() % 100000}{secrets.token_hex(2)}"
    ns = Netns(f"pyhvm-tap-{tag}", f"pyt{tag}"[:15])
    try:
        _ip("netns", "add", ns.name)
        for knob in ("all", "default"):
            _ip("netns", "exec", ns.name, "sysctl", "-qw", f"net.ipv6.conf.{knob}.disable_ipv6=1")
        _ip("-n", ns.name, "tuntap", "add", "dev", ns.tap, "mode", "tap")
        _ip("-n", ns.name, "link", "set", "dev", ns.tap, "address",
            netpeer.mac_str(netpeer.PEER_MAC))
        _ip("-n", ns.name, "link", "set", "dev", ns.tap, "up")
        yield ns
    finally:
        subprocess.run(["ip", "-n", ns.name, "link", "del", ns.tap], capture_output=True,
                       timeout=20)
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, timeout=20)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert ns.name not in listed, f"namespace {ns.name} left behind"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert ns.tap not in links, f"TAP {ns.tap} left behind"


class Peer:
    """tests/netpeer.py as a process inside the namespace."""

    def __init__(self, ns: Netns, mode: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            ns.exec(sys.executable, str(REPO_ROOT / "tests" / "netpeer.py"), "--mode", mode,
                    "--ifname", ns.tap, "--guest-mac", GUEST_MAC, *args),
            cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bound before the VMM starts
        if line.strip() != "netpeer: ready":
            self.proc.kill()
            _, err = self.proc.communicate(timeout=PEER_TIMEOUT)
            raise AssertionError(f"the peer did not start: {line!r} {err}")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def summary(self, stop: bool) -> dict[str, object]:
        """Stop it (sink, echo) or let it finish (source); its JSON summary."""
        if stop:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=PEER_TIMEOUT)
        assert self.proc.returncode == 0, f"peer failed ({self.proc.returncode}): {err}"
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        """Whatever happened: the peer is gone afterwards."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=PEER_TIMEOUT)


def boot_in(ns: Netns, elf: Path, cmdline: str, on_ready=None) -> GuestRun:
    command = ns.exec(sys.executable, "-m", "pyhvm", "run", "--kernel", str(elf),
                      "--append", cmdline, "--max-seconds", str(BOOT_TIMEOUT - 10),
                      "--netdev", f"tap,id=n0,ifname={ns.tap}",
                      "--device", f"rtl8139,netdev=n0,mac={GUEST_MAC}")
    proc = run_watching(command, BOOT_TIMEOUT, marker="net-rx: ready" if on_ready else None,
                        on_marker=on_ready, cwd=REPO_ROOT)
    return GuestRun(cmdline, proc.returncode, proc.stdout.decode("utf-8", "replace"),
                    proc.stderr.decode("utf-8", "replace"))


def test_tx_over_a_tap_reaches_the_peer_in_its_namespace(netns: Netns, guestkit: Path) -> None:
    n = 200
    peer = Peer(netns, "sink")
    try:
        run = boot_in(netns, guestkit, f"scenario=net-tx n={n} size=1514")
        time.sleep(DRAIN_S)
        stats = peer.summary(stop=True)
    finally:
        peer.kill()
    assert run.status == STATUS_OK, run.describe()
    r = run.result("net-tx")
    assert r["ok"] == "1" and r.num("sent") == n
    assert stats["received"] == stats["good"] == n, stats
    assert stats["in_order"] and stats["distinct_seqs"] == n and stats["sizes"] == {"1514": n}


def test_rx_over_a_tap_the_guest_gets_every_frame(netns: Netns, guestkit: Path) -> None:
    n = 300
    peer = Peer(netns, "source", "-n", str(n), "--size", "1514", "--pps", "2000",
                "--go-on-stdin")
    try:
        run = boot_in(netns, guestkit, f"scenario=net-rx n={n} ms=20000", on_ready=peer.go)
        stats = peer.summary(stop=False)
    finally:
        peer.kill()
    assert run.status == STATUS_OK, run.describe()
    r = run.result("net-rx")
    assert r.num("got") == n and r.num("bad") == 0 and r.num("lost") == 0, run.describe()
    assert stats["sent"] == n


def test_echo_over_a_tap_every_frame_comes_back(netns: Netns, guestkit: Path) -> None:
    n = 100
    peer = Peer(netns, "echo")
    try:
        run = boot_in(netns, guestkit, f"scenario=net-echo n={n} size=64")
        stats = peer.summary(stop=True)
    finally:
        peer.kill()
    assert run.status == STATUS_OK, run.describe()
    r = run.result("net-echo")
    assert r.num("got") == n and r.num("lost") == 0 and r.num("bad") == 0
    assert 0 < r.num("rtt_p50_us") <= r.num("rtt_p99_us")
    assert stats["good"] == stats["sent"] == n, stats
