"""A small host peer for the guest kit's net-* scenarios, for `pyhvm bench net`.

The VMM's NIC backend is `-netdev dgram` over Unix datagram sockets: one Ethernet frame per
datagram. The peer binds its own path and sends to the VMM's. Modes:
  sink    count what the guest sends (net-tx);
  source  after go(), send n test frames (net-rx), unpaced or at `pps` frames/s; with
          `lossy`, a frame the VMM's socket has no room for is dropped and counted, as on
          a wire (otherwise the peer waits for room: nothing is lost);
  echo    return every frame with the MACs swapped (net-echo).
Frames: ethertype 0x88B5, a big-endian u32 seq at 14, then byte k = (k + 37 * seq) & 0xFF.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from dataclasses import dataclass

ETHERTYPE = b"\x88\xb5"
GUEST_MAC = bytes.fromhex("525400123456")
PEER_MAC = bytes.fromhex("02707968766d")
MODES = ("sink", "source", "echo")
_RETRY_ERRNOS = (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN, errno.ENOBUFS)


def rx_frame(seq: int, size: int, dst: bytes = GUEST_MAC, src: bytes = PEER_MAC) -> bytes:
    """The frame the guest's net-rx expects as number `seq`, `size` bytes (60..1514)."""
    if not 60 <= size <= 1514:
        raise ValueError(f"frame size {size} is outside 60..1514")
    head = dst + src + ETHERTYPE + (seq & 0xFFFFFFFF).to_bytes(4, "big")
    shift = 37 * seq
    return head + bytes((k + shift) & 0xFF for k in range(18, size))


@dataclass
class PeerCounts:
    """What the peer saw and did."""

    received: int = 0
    sent: int = 0
    send_failures: int = 0
    bytes_received: int = 0
    dropped: int = 0          # lossy source: the VMM's socket queue was full
    first_send_ns: int = 0    # source: when the first and the last frame were offered
    last_send_ns: int = 0

    @property
    def offered_seconds(self) -> float:
        return max(0, self.last_send_ns - self.first_send_ns) / 1e9


class HostPeer:
    """Binds `own_path`, talks to `vmm_path`; runs its mode in a thread from start()."""

    def __init__(self, own_path: str, vmm_path: str, mode: str, *, n: int = 0,
                 size: int = 1514, pps: float = 0.0, send_timeout: float = 2.0,
                 lossy: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown peer mode {mode!r}")
        self.own_path, self.vmm_path, self.mode = own_path, vmm_path, mode
        self.n, self.size, self.pps, self.send_timeout = n, size, pps, send_timeout
        self.lossy = lossy
        self.counts = PeerCounts()
        self.error: BaseException | None = None
        self._go = threading.Event()
        self._halt = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> HostPeer:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self.own_path)
        # A lossy source never waits (Python's timeout mode would wait for room instead of
        # failing); the other modes wake every 0.1 s to look at the stop flag.
        sock.settimeout(0.0 if self.lossy and self.mode == "source" else 0.1)
        self._sock = sock
        body = {"sink": self._sink, "source": self._source, "echo": self._echo}[self.mode]
        self._thread = threading.Thread(target=self._guarded, args=(body,), daemon=True)
        self._thread.start()
        return self

    def go(self) -> None:
        """Source mode: the guest is ready, start sending."""
        self._go.set()

    def stop(self) -> PeerCounts:
        self._halt.set()
        self._go.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        try:
            os.unlink(self.own_path)
        except FileNotFoundError:
            pass
        return self.counts

    def _guarded(self, body) -> None:
        try:
            body()
        except BaseException as err:  # reported by the caller
            self.error = err

    def _receive(self) -> bytes | None:
        assert self._sock is not None
        try:
            frame = self._sock.recv(65536)
        except (socket.timeout, OSError):
            return None
        self.counts.received += 1
        self.counts.bytes_received += len(frame)
        return frame

    def _send(self, frame: bytes) -> bool:
        """Send to the VMM, retrying while its socket is absent or its queue full."""
        assert self._sock is not None
        deadline = time.monotonic() + self.send_timeout
        while not self._halt.is_set() and time.monotonic() < deadline:
            try:
                self._sock.sendto(frame, self.vmm_path)
                self.counts.sent += 1
                return True
            except (socket.timeout, BlockingIOError):
                continue
            except OSError as err:
                if err.errno not in _RETRY_ERRNOS:
                    raise
                time.sleep(0.001)
        self.counts.send_failures += 1
        return False

    def _offer(self, frame: bytes) -> None:
        """Lossy source: one try; a full (or absent) VMM socket loses the frame."""
        assert self._sock is not None
        try:
            self._sock.sendto(frame, socket.MSG_DONTWAIT, self.vmm_path)
            self.counts.sent += 1
        except OSError as err:
            if err.errno not in _RETRY_ERRNOS:
                raise
            self.counts.dropped += 1

    def _sink(self) -> None:
        while not self._halt.is_set():
            self._receive()

    def _source(self) -> None:
        self._go.wait()
        tails = [rx_frame(seq, self.size)[14:] for seq in range(256)]  # period 256
        head = GUEST_MAC + PEER_MAC + ETHERTYPE
        start = time.monotonic()
        self.counts.first_send_ns = time.monotonic_ns()
        for seq in range(self.n):
            if self._halt.is_set():
                return
            if self.pps:
                wait = start + seq / self.pps - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            frame = head + (seq & 0xFFFFFFFF).to_bytes(4, "big") + tails[seq & 0xFF][4:]
            self.counts.last_send_ns = time.monotonic_ns()
            if self.lossy:
                self._offer(frame)
            elif not self._send(frame):
                return

    def _echo(self) -> None:
        while not self._halt.is_set():
            frame = self._receive()
            if frame is not None and len(frame) >= 14:
                self._send(frame[6:12] + frame[0:6] + frame[12:])
