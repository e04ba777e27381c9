"""Network backends: frames through socket pairs, UDP, Unix paths and TAP; --netdev parsing.

The TAP tests need root and /dev/net/tun; they move the TAP into a network namespace the test
makes (pyhvm-test-<pid>) and exchange raw Ethernet frames (no IP) with an AF_PACKET socket
there, so nothing touches the host's own network.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pyhvm.backends import net_tap
from pyhvm.backends.net import (MAX_FRAME, MIN_FRAME, DgramBackend, InetAddress, NetBackend,
                                NetdevConfig, NetError, TapBackend, open_backend, parse_netdev)
from pyhvm.backends.net_base import Offered
from pyhvm.errors import HostError
from pyhvm.runtime.eventloop import EventLoop

ETHERTYPE_TEST = 0x88B5  # IEEE 802 "local experimental": nothing else on a link uses it


def frame(payload: bytes, ethertype: int = ETHERTYPE_TEST) -> bytes:
    """A broadcast Ethernet frame from a locally administered address."""
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + ethertype.to_bytes(2, "big") + payload


@pytest.fixture
def pair():
    backend, peer = DgramBackend.pair()
    peer.settimeout(2)
    yield backend, peer
    backend.close()
    peer.close()


def wait_frame(backend: NetBackend, timeout: float = 2.0) -> bytes:
    """The next frame, waiting on the backend's fd as the event loop would."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        received = backend.recv()
        if received is not None:
            return received
        select.select([backend.fileno()], [], [], left)
    raise AssertionError(f"no frame from {backend.name} within {timeout} s")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- socket pair ---------------------------------------------------------------------------
def test_socketpair_carries_frames_both_ways_and_counts_them(pair) -> None:
    backend, peer = pair
    assert isinstance(backend, NetBackend)
    out = frame(b"guest to host" + bytes(50))
    assert backend.send(out) is True
    assert peer.recv(4096) == out
    back = frame(b"host to guest")
    peer.send(back)
    assert wait_frame(backend) == back
    c = backend.counters
    assert (c.tx_frames, c.tx_bytes, c.rx_frames, c.rx_bytes) == (1, len(out), 1, len(back))


def test_recv_returns_none_at_once_when_nothing_waits(pair) -> None:
    backend, _ = pair
    start = time.monotonic()
    assert backend.recv() is None
    assert time.monotonic() - start < 0.1


def test_runt_and_oversize_frames_from_outside_are_dropped_and_counted(pair) -> None:
    backend, peer = pair
    peer.send(b"\x01" * (MIN_FRAME - 1))
    peer.send(frame(bytes(MAX_FRAME + 1 - 14)))  # one byte too many
    peer.send(frame(bytes(9000)))  # jumbo: seen whole thanks to MSG_TRUNC, not cut to fit
    largest = frame(bytes(MAX_FRAME - 14))  # an 802.1Q-tagged maximum still fits
    peer.send(largest)
    assert wait_frame(backend) == largest  # the bad ones were skipped, never handed over
    c = backend.counters
    assert (c.rx_dropped_runt, c.rx_dropped_oversize, c.rx_frames) == (1, 2, 1)
    assert backend.recv() is None


def test_invalid_frames_from_the_guest_are_not_sent(pair) -> None:
    backend, peer = pair
    assert backend.send(b"short") is False
    assert backend.send(frame(bytes(MAX_FRAME))) is False
    assert backend.counters.tx_invalid == 2 and backend.counters.tx_frames == 0
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(4096)


def test_send_to_a_full_peer_returns_false_without_blocking(pair) -> None:
    backend, peer = pair
    sent = 0
    start = time.monotonic()
    while backend.send(frame(bytes(1000))):
        sent += 1
        assert sent < 100_000, "the peer's queue never filled"
    assert time.monotonic() - start < 1.0
    assert sent > 0 and backend.counters.tx_dropped == 1 and backend.counters.tx_frames == sent
    assert backend.send(frame(b"still full")) is False
    assert backend.counters.tx_dropped == 2
    peer.recv(4096)  # the peer takes one: room again
    assert backend.send(frame(b"room again")) is True


def test_offer_to_a_full_peer_says_full_and_counts_nothing(pair) -> None:
    """`offer` tells "full now" (the machine holds the frame) from a drop; only `send`
    counts a full queue as dropped."""
    backend, peer = pair
    while backend.offer(frame(bytes(1000))) is Offered.SENT:
        pass
    counters = dict(backend.counters.as_dict())
    assert backend.offer(frame(b"held")) is Offered.FULL
    assert backend.counters.as_dict() == counters
    assert backend.offer(frame(b"")[:10]) is Offered.DROPPED  # a runt never goes
    assert backend.counters.tx_invalid == counters["tx_invalid"] + 1
    peer.recv(4096)
    assert backend.offer(frame(b"room again")) is Offered.SENT


def test_backend_fd_wakes_the_event_loop(pair) -> None:
    backend, peer = pair
    loop = EventLoop(threading.Lock())
    got: list[bytes] = []

    def readable() -> None:
        while (received := backend.recv()) is not None:
            got.append(received)

    loop.add_reader(backend.fileno(), readable)
    loop.max_sleep = 0.05
    peer.send(frame(b"one"))
    peer.send(frame(b"two"))
    deadline = time.monotonic() + 2
    loop.run(lambda: len(got) == 2 or time.monotonic() > deadline)
    loop.remove_reader(backend.fileno())
    loop.close()
    assert got == [frame(b"one"), frame(b"two")]


# --- UDP -------------------------------------------------------------------------------------
@pytest.fixture
def udp_pair():
    port_a = free_udp_port()
    b = DgramBackend.udp(("127.0.0.1", 0), ("127.0.0.1", port_a))
    a = open_backend(parse_netdev(f"socket,id=a,udp=127.0.0.1:{b.local_address[1]},"
                                  f"localaddr=127.0.0.1:{port_a}"))
    yield a, b
    a.close()
    b.close()


def test_udp_backends_on_loopback_exchange_frames(udp_pair) -> None:
    a, b = udp_pair
    assert a.send(frame(b"a to b"))
    assert wait_frame(b) == frame(b"a to b")
    assert b.send(frame(b"b to a"))
    assert wait_frame(a) == frame(b"b to a")
    assert a.name.startswith("udp 127.0.0.1:")


def test_udp_ignores_datagrams_from_anyone_but_the_peer(udp_pair) -> None:
    a, _ = udp_pair
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.sendto(frame(b"injected"), a.local_address)
    time.sleep(0.05)
    assert a.recv() is None


def test_udp_to_an_absent_peer_drops_without_raising() -> None:
    port = free_udp_port()  # nobody listens there: loopback answers "port unreachable"
    backend = DgramBackend.udp(("127.0.0.1", 0), ("127.0.0.1", port))
    try:
        results = [backend.send(frame(bytes(i))) for i in range(4)]
        time.sleep(0.05)
        assert backend.recv() is None  # the ICMP error is consumed, not raised
        assert backend.counters.tx_frames + backend.counters.tx_dropped == 4
        assert results.count(False) == backend.counters.tx_dropped
    finally:
        backend.close()


def test_dgram_inet_form_opens_a_udp_backend() -> None:
    port_a, port_b = free_udp_port(), free_udp_port()
    a = open_backend(parse_netdev(
        f"dgram,id=a,local.type=inet,local.host=127.0.0.1,local.port={port_a},"
        f"remote.type=inet,remote.host=127.0.0.1,remote.port={port_b}"))
    b = DgramBackend.udp(("127.0.0.1", port_b), ("localhost", port_a))
    try:
        assert b.send(frame(b"named by host name"))
        assert wait_frame(a) == frame(b"named by host name")
    finally:
        a.close()
        b.close()


def test_udp_port_in_use_is_a_one_line_host_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        with pytest.raises(NetError, match="another process uses that port"):
            DgramBackend.udp(("127.0.0.1", port), ("127.0.0.1", 9))


def test_udp_mixed_families_are_refused() -> None:
    with pytest.raises(NetError, match="same address family"):
        DgramBackend.udp(("127.0.0.1", 0), ("::1", 9))


# --- Unix paths ------------------------------------------------------------------------------
def test_unix_paths_link_two_backends_and_clean_up(tmp_path: Path) -> None:
    p, q = str(tmp_path / "p.sock"), str(tmp_path / "q.sock")
    a = open_backend(parse_netdev(f"dgram,id=a,local.type=unix,local.path={p},"
                                  f"remote.type=unix,remote.path={q}"))
    assert a.send(frame(b"peer not there yet")) is False  # a drop, not an error
    b = DgramBackend.unix(q, p)
    try:
        assert a.send(frame(b"to q")) and wait_frame(b) == frame(b"to q")
        assert b.send(frame(b"to p")) and wait_frame(a) == frame(b"to p")
        assert a.counters.tx_dropped == 1
    finally:
        a.close()
        b.close()
    assert not os.path.exists(p) and not os.path.exists(q)


def test_unix_drops_datagrams_from_other_senders(tmp_path: Path) -> None:
    p, q = str(tmp_path / "p.sock"), str(tmp_path / "q.sock")
    a = DgramBackend.unix(p, q)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as stranger:
            stranger.sendto(frame(b"injected"), p)
        time.sleep(0.02)
        assert a.recv() is None and a.counters.rx_dropped_foreign == 1
    finally:
        a.close()


def test_unix_stale_socket_file_is_reported_not_deleted(tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as old:
        old.bind(str(stale))
    with pytest.raises(NetError, match="stale socket.*remove it"):
        DgramBackend.unix(str(stale), str(tmp_path / "q.sock"))
    assert stale.exists()


# --- parsing -------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,expected", [
    ("tap,id=n1", NetdevConfig("tap", "n1")),
    ("tap,id=n1,ifname=tap7,script=no,downscript=no", NetdevConfig("tap", "n1", ifname="tap7")),
    ("type=tap,id=n1", NetdevConfig("tap", "n1")),
    ("socket,id=s,udp=127.0.0.1:5556,localaddr=127.0.0.1:5555",
     NetdevConfig("udp", "s", local=InetAddress("127.0.0.1", 5555),
                  remote=InetAddress("127.0.0.1", 5556))),
    ("socket,id=s,udp=[::1]:5556,localaddr=:0",
     NetdevConfig("udp", "s", local=InetAddress("", 0), remote=InetAddress("::1", 5556))),
    ("dgram,id=d,local.type=inet,local.host=127.0.0.1,local.port=1,"
     "remote.type=inet,remote.host=localhost,remote.port=2",
     NetdevConfig("udp", "d", local=InetAddress("127.0.0.1", 1),
                  remote=InetAddress("localhost", 2))),
    ("dgram,id=d,local.type=unix,local.path=/tmp/a,,b,remote.type=unix,remote.path=/tmp/q",
     NetdevConfig("unix", "d", local="/tmp/a,b", remote="/tmp/q")),
])
def test_parse_netdev_accepts_each_form(spec: str, expected: NetdevConfig) -> None:
    assert parse_netdev(spec) == expected


@pytest.mark.parametrize("spec,message", [
    ("", "has no type"),
    ("id=n1", "has no type"),
    ("user,id=n1", "slirp.*use tap"),
    ("bogus,id=n1", "unknown --netdev type 'bogus'"),
    ("tap", "has no id="),
    ("tap,id=", "has no id="),
    ("tap,id=1abc", "start with a letter"),
    ("tap,id=n1,id=n2", "given twice"),
    ("tap,id=n1,vhost", "not key=value"),
    ("tap,id=n1,queues=4", "unknown option queues="),
    ("tap,id=n1,script=/etc/qemu-ifup", "never runs scripts"),
    ("tap,id=n1,ifname=waytoolongname123", "1 to 15 bytes"),
    ("tap,id=n1,ifname=a/b", "may not contain"),
    ("socket,id=s,listen=:1234", "TCP.*not implemented"),
    ("socket,id=s,mcast=230.0.0.1:1234", "only udp="),
    ("socket,id=s,udp=127.0.0.1:1", "needs both udp="),
    ("socket,id=s,udp=127.0.0.1,localaddr=127.0.0.1:1", "is not HOST:PORT"),
    ("socket,id=s,udp=127.0.0.1:0,localaddr=127.0.0.1:1", "from 1 to 65535"),
    ("socket,id=s,udp=127.0.0.1:70000,localaddr=127.0.0.1:1", "from 1 to 65535"),
    ("socket,id=s,udp=127.0.0.1:x,localaddr=127.0.0.1:1", "must be a number"),
    ("socket,id=s,udp=:5,localaddr=127.0.0.1:1", "needs a host"),
    ("socket,id=s,udp=bad_host!:5,localaddr=127.0.0.1:1", "neither an IP address"),
    ("socket,id=s,udp=::1:5,localaddr=127.0.0.1:1", r"\[::1\]:5555"),
    ("dgram,id=d,local.type=inet,local.host=127.0.0.1,local.port=1", "remote.type="),
    ("dgram,id=d,local.type=fd,local.str=3,remote.type=inet", "unknown option local.str="),
    ("dgram,id=d,local.type=fd,remote.type=inet", "local.type=fd is not implemented"),
    ("dgram,id=d,local.type=unix,local.path=/a,remote.type=inet,remote.host=h,remote.port=1",
     "both ends must be"),
    ("dgram,id=d,local.type=unix,remote.type=unix,remote.path=/q", "needs local.path="),
    ("dgram,id=d,local.type=unix,local.path=/a,local.port=3,remote.type=unix,remote.path=/q",
     "local.port= does not go with"),
    ("dgram,id=d,local.type=inet,local.host=h,remote.type=inet,remote.host=h,remote.port=1",
     "needs local.host= and local.port="),
])
def test_parse_netdev_refuses_with_a_one_line_reason(spec: str, message: str) -> None:
    with pytest.raises(NetError, match=message) as err:
        parse_netdev(spec)
    assert isinstance(err.value, HostError) and "\n" not in str(err.value)


# --- TAP -------------------------------------------------------------------------------------
def _tap_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "TAP needs root (CAP_NET_ADMIN)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun does not exist"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    return None


needs_tap = pytest.mark.skipif(_tap_unavailable() is not None,
                               reason=_tap_unavailable() or "")


def test_missing_tun_device_says_modprobe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(net_tap, "TUN_DEVICE", "/nonexistent/net/tun")
    with pytest.raises(NetError, match="modprobe tun"):
        TapBackend(None)


@needs_tap
def test_tap_without_privilege_says_run_as_root() -> None:
    """A child in a fresh user namespace keeps our uid but loses CAP_NET_ADMIN on the host."""
    if shutil.which("unshare") is None:
        pytest.skip("util-linux's `unshare` is not installed")
    code = ("from pyhvm.backends.net import TapBackend, NetError\n"
            "try:\n    TapBackend(None)\nexcept NetError as e:\n    print(e)\n")
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(["unshare", "--user", sys.executable, "-c", code], cwd=root,
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0 and "unshare" in out.stderr:
        pytest.skip(f"cannot make a user namespace: {out.stderr.strip()}")
    assert "CAP_NET_ADMIN" in out.stdout, out.stdout + out.stderr


@needs_tap
def test_tap_with_kernel_picked_name_is_up_and_vanishes_on_close() -> None:
    backend = TapBackend(None)
    try:
        name = backend.ifname
        assert name.startswith("tap") and backend.name == f"tap {name}"
        flags = int(Path(f"/sys/class/net/{name}/flags").read_text(), 16)
        assert flags & net_tap.IFF_UP
        start = time.monotonic()
        while backend.recv() is not None:  # drain whatever the kernel announced on link up
            pass
        assert time.monotonic() - start < 0.5  # an empty TAP answers None at once
    finally:
        backend.close()
    assert not Path(f"/sys/class/net/{name}").exists()


@needs_tap
def test_tap_refuses_a_name_that_is_not_a_tap() -> None:
    with pytest.raises(NetError, match="not a TAP device"):
        TapBackend("lo")


@needs_tap
def test_tap_already_attached_elsewhere_is_refused() -> None:
    first = TapBackend(f"pyhvmb{os.getpid()}"[:15])
    try:
        with pytest.raises(NetError, match="already in use"):
            TapBackend(first.ifname)
    finally:
        first.close()


# The namespace side: an AF_PACKET socket on the TAP sends one frame and waits for one back.
PEER = """
import socket, sys
ifname, ethertype = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((ifname, 0))
s.settimeout(5)
print("ready", flush=True)
sys.stdin.readline()
s.send(b"\\xff" * 6 + b"\\x02\\x00\\x00\\x00\\x00\\x02" + ethertype.to_bytes(2, "big")
       + b"from the namespace")
while True:
    data = s.recv(65536)
    if data[12:14] == ethertype.to_bytes(2, "big"):
        print(data.hex(), flush=True)
        break
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


@needs_tap
def test_tap_passes_raw_frames_both_ways_with_a_peer_in_a_namespace() -> None:
    namespace = f"pyhvm-test-{os.getpid()}"
    ifname = f"pyhvmt{os.getpid()}"[:15]
    backend = TapBackend(ifname)
    peer = None
    try:
        assert backend.ifname == ifname
        _ip("netns", "add", namespace)
        _ip("link", "set", "dev", ifname, "netns", namespace)  # this takes the link down
        _ip("-n", namespace, "link", "set", "dev", ifname, "up")
        peer = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-c", PEER,
                                 ifname, str(ETHERTYPE_TEST)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert peer.stdout is not None and peer.stdin is not None
        assert peer.stdout.readline().strip() == "ready"
        peer.stdin.write("go\n")
        peer.stdin.flush()
        while True:  # the kernel may announce itself (IPv6 MLD, RS): skip other types
            received = wait_frame(backend, timeout=5)
            if received[12:14] == ETHERTYPE_TEST.to_bytes(2, "big"):
                break
        assert received[14:] == b"from the namespace"
        out = frame(b"from the guest" + bytes(40))
        assert backend.send(out) is True
        assert bytes.fromhex(peer.stdout.readline().strip()) == out
        assert peer.wait(timeout=10) == 0
        assert backend.counters.tx_frames == 1 and backend.counters.rx_frames >= 1
    finally:
        if peer is not None and peer.poll() is None:
            peer.kill()
            peer.wait()
        backend.close()
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=20)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert ifname not in links
    assert namespace not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                           text=True).stdout
