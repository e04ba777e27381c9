"""The host end of a guest NIC for the guest kit's net-* scenarios.

The VMM's network backend is QEMU's ``-netdev dgram`` over Unix datagram sockets (pyhvm
takes the same option): every Ethernet frame (no CRC, no length prefix, no vnet header) is
one datagram. The VMM binds ``local.path`` and sends to ``remote.path``; the peer binds
``remote.path`` and sends to the VMM's ``local.path``::

    -netdev dgram,id=n0,local.type=unix,local.path=VMM,remote.type=unix,remote.path=PEER
    -device rtl8139,netdev=n0,mac=52:54:00:12:34:56

Frame layout (guest/src/net.h)::

     0  destination MAC    6  source MAC    12  ethertype 0x88B5 (local experimental 1)
    14  seq, u32 big-endian, 0, 1, 2, ...
    18  pattern: byte k of the frame (k >= 18) = (k + 37 * seq) mod 256
    net-echo: bytes 18-25 hold the guest's TSC at send (the peer leaves them alone)

Modes:
  sink    count and check what the guest sends (net-tx): seqs, sizes, payloads.
  source  send n frames of `size` bytes to the guest (net-rx), once start() is called
          (after the guest printed "net-rx: ready"), at `pps` frames per second (0: as
          fast as the socket takes them).
  echo    send every frame back with the MACs swapped (net-echo), checking it first.

Over a TAP instead (tests/integration/test_net_tap.py): ``ifname=`` puts the peer on an
AF_PACKET socket bound to that interface (in the network namespace the TAP lives in), for
the test ethertype only; frames the peer sends itself, which the kernel also shows the
socket, are skipped.

Use it as a module (NetPeer, threads; tests/crosscheck/test_guestkit_net.py) or as a
program: ``python3 tests/netpeer.py --mode sink --local PEER --remote VMM --seconds 30``
(or ``--ifname TAP``) prints "netpeer: ready" once its socket is bound, then a JSON summary
when it stops (after --seconds, on SIGINT/SIGTERM, or in source mode once all frames went
out). ``--go-on-stdin``: a source waits for a line on stdin before sending.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

ETHERTYPE = 0x88B5
SEQ_OFFSET = 14
PATTERN_OFFSET = 18
STAMP_OFFSET = 18
STAMP_BYTES = 8
PATTERN_MUL = 37
MIN_FRAME = 60
MAX_FRAME = 1514

PEER_MAC = bytes.fromhex("02707968766d")  # 02, then "pyhvm" in ASCII
GUEST_MAC = bytes.fromhex("525400123456")
BROADCAST = b"\xff" * 6

# pattern(seq)[k] for k in [0, MAX_FRAME): a slice of this with offset (37 * seq) mod 256.
_BASE = bytes(i & 0xFF for i in range(256 + MAX_FRAME))


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return raw


def pattern(seq: int, start: int, end: int) -> bytes:
    """Bytes start..end-1 of the pattern of frame `seq`."""
    shift = (PATTERN_MUL * seq) & 0xFF
    return _BASE[start + shift:end + shift]


def build_frame(seq: int, size: int, dst: bytes, src: bytes) -> bytes:
    """The test frame of `seq`, `size` bytes (60..1514)."""
    if not MIN_FRAME <= size <= MAX_FRAME:
        raise ValueError(f"frame size {size} is outside {MIN_FRAME}..{MAX_FRAME}")
    header = dst + src + ETHERTYPE.to_bytes(2, "big") + (seq & 0xFFFFFFFF).to_bytes(4, "big")
    return header + pattern(seq, PATTERN_OFFSET, size)


def check_frame(frame: bytes, *, dst: bytes | None = None, src: bytes | None = None,
                pattern_from: int = PATTERN_OFFSET) -> tuple[int | None, str | None]:
    """(seq, None) for a good frame, (seq or None, why) otherwise."""
    if len(frame) < MIN_FRAME:
        return None, f"short ({len(frame)} bytes)"
    if int.from_bytes(frame[12:14], "big") != ETHERTYPE:
        return None, f"ethertype 0x{int.from_bytes(frame[12:14], 'big'):04x}"
    seq = int.from_bytes(frame[SEQ_OFFSET:SEQ_OFFSET + 4], "big")
    if dst is not None and frame[0:6] != dst:
        return seq, f"destination {mac_str(frame[0:6])}"
    if src is not None and frame[6:12] != src:
        return seq, f"source {mac_str(frame[6:12])}"
    if frame[pattern_from:] != pattern(seq, pattern_from, len(frame)):
        return seq, "pattern"
    return seq, None


@dataclass
class PeerStats:
    """What a peer saw and did; `seqs` in arrival order (sink and echo modes)."""

    received: int = 0
    good: int = 0
    bad: int = 0
    sent: int = 0
    send_errors: int = 0
    bytes_received: int = 0
    sizes: dict[int, int] = field(default_factory=dict)
    seqs: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)      # first few bad frames
    first_time: float | None = None
    last_time: float | None = None

    def summary(self) -> dict[str, object]:
        seqs = self.seqs
        return {
            "received": self.received, "good": self.good, "bad": self.bad,
            "sent": self.sent, "send_errors": self.send_errors,
            "bytes_received": self.bytes_received, "sizes": self.sizes,
            "in_order": seqs == sorted(seqs), "distinct_seqs": len(set(seqs)),
            "first_seq": seqs[0] if seqs else None, "last_seq": seqs[-1] if seqs else None,
            "problems": self.problems,
            "seconds": (self.last_time - self.first_time
                        if self.first_time is not None and self.last_time is not None
                        else None),
        }


class NetPeer:
    """One end of a dgram backend: binds `local_path`, talks to `remote_path` (the VMM's);
    or, with `ifname`, a raw AF_PACKET socket on that interface (a TAP).

    start() binds at once (before the VMM starts: the VMM sends to this path) and runs the
    mode in a thread; stop() ends it, closes the socket and removes local_path. The VMM's
    own socket file (remote_path) is the VMM's to leave behind; callers use a temporary
    directory for both.
    """

    def __init__(self, local_path: str | None, remote_path: str | None, mode: str, *,
                 n: int = 0, size: int = MAX_FRAME, pps: float = 0,
                 guest_mac: bytes = GUEST_MAC, peer_mac: bytes = PEER_MAC,
                 send_timeout: float = 5.0, ifname: str | None = None) -> None:
        if mode not in ("sink", "source", "echo"):
            raise ValueError(f"unknown mode {mode!r}")
        if (ifname is None) == (local_path is None or remote_path is None):
            raise ValueError("give local_path and remote_path, or ifname")
        self.ifname = ifname
        self.local_path, self.remote_path, self.mode = local_path, remote_path, mode
        self.n, self.size, self.pps = n, size, pps
        self.guest_mac, self.peer_mac = guest_mac, peer_mac
        self.send_timeout = send_timeout
        self.stats = PeerStats()
        self.error: BaseException | None = None
        self._go = threading.Event()
        self._stop = threading.Event()
        self.done = threading.Event()       # source: every frame sent
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> NetPeer:
        if self.ifname is not None:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
            sock.bind((self.ifname, ETHERTYPE))
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(self.local_path)
        sock.settimeout(0.1)                # recv wakes up to look at the stop flag
        self._sock = sock
        target = {"sink": self._run_sink, "source": self._run_source,
                  "echo": self._run_echo}[self.mode]
        self._thread = threading.Thread(target=self._guard, args=(target,),
                                        name=f"netpeer-{self.mode}", daemon=True)
        self._thread.start()
        return self

    def go(self) -> None:
        """Source mode: start sending (the guest is ready)."""
        self._go.set()

    def stop(self, timeout: float = 5.0) -> PeerStats:
        self._stop.set()
        self._go.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.local_path is not None:
            try:
                os.unlink(self.local_path)
            except FileNotFoundError:
                pass
        return self.stats

    def __enter__(self) -> NetPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _guard(self, target) -> None:
        try:
            target()
        except BaseException as exc:        # reported by the caller through .error
            self.error = exc
        finally:
            self.done.set()

    # --- I/O ----------------------------------------------------------------------------

    def _recv(self) -> bytes | None:
        assert self._sock is not None
        try:
            frame, address = self._sock.recvfrom(65536)
        except socket.timeout:
            return None
        if self.ifname is not None and address[2] == socket.PACKET_OUTGOING:
            return None                     # our own send, as the packet socket sees it
        now = time.monotonic()
        st = self.stats
        st.received += 1
        st.bytes_received += len(frame)
        st.sizes[len(frame)] = st.sizes.get(len(frame), 0) + 1
        if st.first_time is None:
            st.first_time = now
        st.last_time = now
        return frame

    def _send(self, frame: bytes) -> bool:
        """Send to the VMM; blocks while its queue is full, up to send_timeout. A VMM that
        is not there yet (no socket file) is retried for as long."""
        assert self._sock is not None
        deadline = time.monotonic() + self.send_timeout
        while not self._stop.is_set():
            try:
                if self.remote_path is None:
                    self._sock.send(frame)
                else:
                    self._sock.sendto(frame, self.remote_path)
                self.stats.sent += 1
                return True
            except (socket.timeout, BlockingIOError):
                pass
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN,
                                     errno.ENOBUFS):
                    raise
                time.sleep(0.001)
            if time.monotonic() > deadline:
                break
        self.stats.send_errors += 1
        return False

    def _note(self, frame: bytes, why: str | None, seq: int | None) -> None:
        st = self.stats
        if why is None:
            st.good += 1
        else:
            st.bad += 1
            if len(st.problems) < 10:
                st.problems.append(f"frame {st.received} seq={seq}: {why}")
        if seq is not None:
            st.seqs.append(seq)

    # --- modes --------------------------------------------------------------------------

    def _run_sink(self) -> None:
        while not self._stop.is_set():
            frame = self._recv()
            if frame is None:
                continue
            seq, why = check_frame(frame, src=self.guest_mac)
            if why is None and frame[0:6] not in (self.peer_mac, BROADCAST):
                why = f"destination {mac_str(frame[0:6])}"
            self._note(frame, why, seq)

    def _run_source(self) -> None:
        while not self._go.wait(0.1):
            if self._stop.is_set():
                return
        t0 = time.monotonic()
        for seq in range(self.n):
            if self._stop.is_set():
                return
            if self.pps:
                delay = t0 + seq / self.pps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if not self._send(build_frame(seq, self.size, self.guest_mac, self.peer_mac)):
                return
        self.stats.first_time, self.stats.last_time = t0, time.monotonic()

    def _run_echo(self) -> None:
        while not self._stop.is_set():
            frame = self._recv()
            if frame is None:
                continue
            seq, why = check_frame(frame, dst=self.peer_mac, src=self.guest_mac,
                                   pattern_from=STAMP_OFFSET + STAMP_BYTES)
            self._note(frame, why, seq)
            self._send(frame[6:12] + frame[0:6] + frame[12:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("sink", "source", "echo"), required=True)
    ap.add_argument("--local", help="this peer's socket (the VMM's remote.path)")
    ap.add_argument("--remote", help="the VMM's socket (its local.path)")
    ap.add_argument("--ifname", help="instead: a raw socket on this interface (a TAP)")
    ap.add_argument("--go-on-stdin", action="store_true",
                    help="source: send once a line arrives on stdin")
    ap.add_argument("-n", "--n", type=int, default=1000, help="source: frames to send")
    ap.add_argument("--size", type=int, default=MAX_FRAME, help="source: frame bytes")
    ap.add_argument("--pps", type=float, default=0, help="source: rate (0: unpaced)")
    ap.add_argument("--delay", type=float, default=0,
                    help="source: seconds to wait before sending")
    ap.add_argument("--seconds", type=float, default=0,
                    help="stop after this long (0: sink/echo run until a signal)")
    ap.add_argument("--guest-mac", default=mac_str(GUEST_MAC))
    args = ap.parse_args(argv)

    if (args.ifname is None) == (args.local is None or args.remote is None):
        ap.error("give --local and --remote, or --ifname")
    peer = NetPeer(args.local, args.remote, args.mode, n=args.n, size=args.size,
                   pps=args.pps, guest_mac=parse_mac(args.guest_mac), ifname=args.ifname)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    peer.start()
    print("netpeer: ready", flush=True)
    try:
        if args.mode == "source":
            if args.go_on_stdin and not sys.stdin.readline():
                return 130
            if stop.wait(args.delay):
                return 130
            peer.go()
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while not stop.is_set():
            if args.mode == "source" and peer.done.is_set():
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            stop.wait(0.1)
    finally:
        stats = peer.stop()
    print(json.dumps(stats.summary()))
    if peer.error is not None:
        print(f"netpeer: {peer.error!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
