"""The guest kit's RTL8139 driver against QEMU's `-device rtl8139` (the reference), and the
same runs under pyhvm (its RTL8139 model, expected to fail until it is wired).

The NIC's backend is `-netdev dgram` over two Unix datagram sockets in a temporary
directory made here (short path: sun_path holds 107 bytes) and removed afterwards; the
other end is tests/netpeer.py in this process (threads): a sink for net-tx, a source for
net-rx (started when the guest prints "net-rx: ready"), an echo for net-echo. These tests
pin semantics (counts, payloads, sequence numbers), not rates; the rates are printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import guestkit
from tests import netpeer
from pyhvm.bench.common import run_watching
from tests.guestkit import STATUS_OK, GuestRun, Result

GUEST_MAC = "52:54:00:12:34:56"
BOOT_TIMEOUT = 90       # seconds per boot; SeaBIOS first under QEMU, CPL 0 is emulated here
DRAIN_TIMEOUT = 5.0     # seconds the sink waits for the last frames after the guest stopped
RX_PPS = 2000           # paced source for net-rx: the guest keeps up (~4000/s at 1514 bytes)

VMMS = [
    pytest.param("qemu", marks=pytest.mark.qemu, id="qemu"),
    pytest.param("pyhvm", marks=[pytest.mark.kvm], id="pyhvm"),
    # The paper's "before": frames move only on a 10 ms timer (slow, but nothing is lost).
    pytest.param("pyhvm-poll", marks=[pytest.mark.kvm], id="pyhvm-poll"),
]


@dataclass(frozen=True)
class Sockets:
    vmm: str            # the VMM binds it (its local.path), the peer sends there
    peer: str           # the peer binds it (the VMM's remote.path)


@contextmanager
def socket_dir() -> Iterator[Sockets]:
    d = tempfile.mkdtemp(prefix="gk-net-", dir="/tmp")
    try:
        yield Sockets(os.path.join(d, "vmm.sock"), os.path.join(d, "peer.sock"))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def nic_options(s: Sockets) -> tuple[str, str]:
    """The -netdev and -device values: QEMU's syntax, which `pyhvm run` takes as well."""
    return (f"dgram,id=n0,local.type=unix,local.path={s.vmm},"
            f"remote.type=unix,remote.path={s.peer}",
            f"rtl8139,netdev=n0,mac={GUEST_MAC}")


def vmm_command(vmm: str, elf: Path, cmdline: str, s: Sockets) -> list[str]:
    netdev, device = nic_options(s)
    if vmm == "qemu":
        return guestkit.qemu_command(elf, cmdline,
                                     extra_args=("-netdev", netdev, "-device", device))
    mode = ["--net-mode", "poll"] if vmm == "pyhvm-poll" else []
    return [sys.executable, "-m", "pyhvm", "run", "--kernel", str(elf), "--append", cmdline,
            "--max-seconds", str(BOOT_TIMEOUT - 5), "--netdev", netdev, "--device", device,
            *mode]


def run_vmm(command: Sequence[str], timeout: float,
            on_marker: tuple[str, Callable[[], None]] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the VMM (its stdout is the guest console) to the end; call on_marker[1]() once
    the console shows on_marker[0]. Killed and TimeoutExpired raised after timeout."""
    marker, callback = on_marker if on_marker else (None, None)
    return run_watching(command, timeout, marker=marker, on_marker=callback, cwd=cwd)


@pytest.fixture
def net_boot(guestkit_elf: Path, request):
    """boot(vmm, cmdline, mode, **peer_args) -> (GuestRun, NetPeer) with a fresh backend."""

    def boot(vmm: str, cmdline: str, mode: str, **peer_args) -> tuple[GuestRun, netpeer.NetPeer]:
        reason = (guestkit.qemu_missing_reason() if vmm == "qemu"
                  else guestkit.kvm_skip_reason())
        if reason:
            pytest.skip(reason)
        with socket_dir() as s:
            peer = netpeer.NetPeer(s.peer, s.vmm, mode, guest_mac=netpeer.parse_mac(GUEST_MAC),
                                   **peer_args)
            peer.start()
            try:
                marker = ("net-rx: ready", peer.go) if mode == "source" else None
                proc = run_vmm(vmm_command(vmm, guestkit_elf, cmdline, s), BOOT_TIMEOUT,
                               marker, cwd=guestkit.REPO_ROOT)
                if mode == "sink":          # frames the VMM sent before it exited
                    deadline = time.monotonic() + DRAIN_TIMEOUT
                    want = int(dict(t.split("=", 1) for t in cmdline.split()
                                    if "=" in t).get("n", 0))
                    while peer.stats.received < want and time.monotonic() < deadline:
                        time.sleep(0.05)
            finally:
                peer.stop()
        run = GuestRun(cmdline, proc.returncode, proc.stdout.decode("utf-8", "replace"),
                       proc.stderr.decode("utf-8", "replace"))
        print(run.console)
        assert peer.error is None, f"peer failed: {peer.error!r}\n{run.describe()}"
        return run, peer

    return boot


def _assert_clean_driver(r: Result, irqs: bool = True) -> None:
    assert (r.num("irqs") > 0) == irqs
    for key in ("rx_bad", "rx_resets", "tx_errors", "tx_timeouts", "rx_err_irqs"):
        assert r.num(key) == 0, key


@pytest.mark.parametrize("vmm", VMMS)
def test_info_reads_the_mac_from_the_eeprom_and_idr(net_boot, vmm: str) -> None:
    run, _ = net_boot(vmm, "scenario=net-info", "sink")
    assert run.status == STATUS_OK, run.describe()
    r = run.result("net-info")
    assert r["ok"] == "1"
    assert r["mac"] == r["eeprom_mac"] == GUEST_MAC
    assert r.num("eeprom_id") == 0x8129
    assert r.num("tcr_version") != 0
    if vmm == "qemu":
        assert r["tcr_version"] == "0x74800000" and r["chip"] == "8139C+"
        assert r["irq_source"] == "firmware"    # SeaBIOS routed INTA and wrote the line


@pytest.mark.parametrize("vmm", VMMS)
@pytest.mark.parametrize("args,n,size", [("n=300 size=1514", 300, 1514),
                                         ("n=500 size=60", 500, 60),
                                         ("n=101 size=777 txirq=0 bcast=1", 101, 777)])
def test_tx_the_peer_gets_every_frame_in_order(net_boot, vmm: str, args: str, n: int,
                                               size: int) -> None:
    run, peer = net_boot(vmm, f"scenario=net-tx {args}", "sink")
    assert run.status == STATUS_OK, run.describe()
    r = run.result("net-tx")
    assert r["ok"] == "1" and r.num("sent") == n and r.num("size") == size
    assert r.num("tx_ok") == r.num("tx_frames") == n
    _assert_clean_driver(r, irqs="txirq=0" not in args)   # nothing else interrupts
    st = peer.stats
    assert st.received == st.good == n, st.summary()
    assert st.seqs == list(range(n))
    assert st.sizes == {size: n}


@pytest.mark.parametrize("vmm", VMMS)
@pytest.mark.parametrize("n,size", [(300, 1514), (500, 60)])
def test_rx_the_guest_gets_every_frame_the_peer_sends(net_boot, vmm: str, n: int,
                                                      size: int) -> None:
    run, peer = net_boot(vmm, f"scenario=net-rx n={n} ms=30000", "source", n=n, size=size,
                         pps=RX_PPS)
    assert run.status == STATUS_OK, run.describe()
    r = run.result("net-rx")
    assert r["ok"] == "1"
    assert r.num("got") == n and r.num("bad") == 0 and r.num("lost") == 0
    assert r.num("dup") == 0 and r["end"] == "done"
    assert r.num("bytes") == n * size
    _assert_clean_driver(r)
    assert peer.stats.sent == n


@pytest.mark.parametrize("vmm", VMMS)
@pytest.mark.parametrize("n,size,copy", [(2000, 1514, 0), (2000, 60, 0), (2000, 1514, 18)])
def test_rx_unpaced_every_frame_is_counted_once(net_boot, vmm: str, n: int, size: int,
                                                copy: int) -> None:
    """The peer sends as fast as the socket takes frames: far faster than the guest's
    emulated handler drains the ring, so the ring fills (RXOVW, MPC) and the handler stalls
    on a full staging queue. Nothing may be bad, duplicated or counted twice; frames may be
    lost only where the NIC drops them. QEMU drops none: with the ring full its rtl8139
    counts the frame in MPC and raises RXOVW but refuses it, so QEMU's net layer keeps it
    queued (and stops reading the socket, which blocks the peer) until CAPR moves."""
    run, peer = net_boot(vmm, f"scenario=net-rx n={n} ms=30000 copy={copy}", "source", n=n,
                         size=size, pps=0)
    r = run.result("net-rx")
    assert r.num("bad") == 0 and r.num("dup") == 0 and r.num("rx_bad") == 0
    assert r.num("got") + r.num("lost") == n
    assert peer.stats.sent == n
    if vmm == "qemu":
        assert run.status == STATUS_OK, run.describe()
        assert r.num("got") == n and r["end"] == "done"
        if size == 1514 and not copy:       # ~4000 frames/s drained: it did overflow
            assert r.num("rx_overflow") > 0 and r.num("missed") > 0


@pytest.mark.parametrize("vmm", VMMS)
@pytest.mark.parametrize("n,size", [(200, 60), (100, 1514)])
def test_echo_every_frame_comes_back(net_boot, vmm: str, n: int, size: int) -> None:
    run, peer = net_boot(vmm, f"scenario=net-echo n={n} size={size}", "echo")
    assert run.status == STATUS_OK, run.describe()
    r = run.result("net-echo")
    assert r["ok"] == "1"
    assert r.num("got") == n and r.num("lost") == 0 and r.num("bad") == 0
    assert 0 < r.num("rtt_min_us") <= r.num("rtt_p50_us") <= r.num("rtt_p99_us") \
        <= r.num("rtt_max_us")
    _assert_clean_driver(r)
    st = peer.stats
    assert st.received == st.good == st.sent == n, st.summary()
    assert st.seqs == list(range(n))
