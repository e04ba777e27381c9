"""Datagram links: one datagram is one Ethernet frame, over UDP or a Unix datagram socket.

UDP (`socket,udp=` / `dgram` with inet addresses) binds the local address and connects to
the remote one, so the kernel itself discards datagrams from anyone but the named peer, and
the peer may start before or after us. A Unix pair of paths (`dgram` with unix addresses)
binds the local path and sends to the remote path with each frame, so a peer process may
come and go; datagrams from any other sender are dropped and counted. `pair()` makes an
in-process link for tests and for a benchmark's host peer.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Any

from .net_base import (MAX_DISCARDS_PER_RECV, RECV_BUFFER, NetCounters, NetError, Offered,
                       count_rx_reject, frame_fits, offer_frame, send_or_drop)

# Transient errors a connected UDP socket reports on receive: an ICMP "port unreachable" for
# an earlier send while the peer was not listening. The frame it refers to is already gone.
TRANSIENT_RECV_ERRORS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})


class DgramBackend:
    """A non-blocking datagram socket carrying frames to one peer.

    `remote` is None for a connected socket (UDP, socketpair), else the peer's Unix path,
    which is the only source accepted. `unlink_on_close` names a socket file we created.
    """

    def __init__(self, sock: socket.socket, *, name: str, remote: str | None = None,
                 unlink_on_close: str | None = None) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.name = name
        self.counters = NetCounters()
        self._remote = remote
        self._unlink = unlink_on_close
        self._buffer = bytearray(RECV_BUFFER)
        self._view = memoryview(self._buffer)

    # --- constructors --------------------------------------------------------------------
    @classmethod
    def pair(cls) -> tuple[DgramBackend, socket.socket]:
        """A backend and the (blocking) socket at the other end of its wire."""
        ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        return cls(ours, name="socketpair"), peer

    @classmethod
    def udp(cls, local: tuple[str, int], remote: tuple[str, int]) -> DgramBackend:
        """Bind `local` (host, port), connect to `remote`; names are resolved here."""
        local_ai = _resolve(local, "local")
        remote_ai = _resolve(remote, "remote")
        if local_ai[0] != remote_ai[0]:
            raise NetError(f"UDP local {_show(local)} and remote {_show(remote)} are not the "
                           f"same address family: use IPv4 for both or IPv6 for both")
        sock = socket.socket(local_ai[0], socket.SOCK_DGRAM)
        try:
            sock.bind(local_ai[1])
        except OSError as err:
            sock.close()
            hint = ("another process uses that port: pick another"
                    if err.errno == errno.EADDRINUSE else "use an address of this host")
            raise NetError(f"cannot bind UDP {_show(local)}: {err.strerror}; {hint}") from None
        try:
            sock.connect(remote_ai[1])
        except OSError as err:
            sock.close()
            raise NetError(f"cannot use UDP remote {_show(remote)}: {err.strerror}") from None
        bound = sock.getsockname()
        return cls(sock, name=f"udp {_show(bound[:2])}->{_show(remote)}")

    @classmethod
    def unix(cls, local_path: str, remote_path: str) -> DgramBackend:
        """Bind a datagram socket at `local_path`; frames go to `remote_path`."""
        _refuse_existing(local_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(local_path)
        except OSError as err:
            sock.close()
            raise NetError(f"cannot bind Unix socket {local_path!r}: {err.strerror}; "
                           f"check that its directory exists and is writable") from None
        return cls(sock, name=f"unix {local_path}->{remote_path}", remote=remote_path,
                   unlink_on_close=local_path)

    # --- the NetBackend protocol ---------------------------------------------------------
    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def local_address(self) -> object:
        """Where peers reach us (the real port when bound to port 0)."""
        return self.sock.getsockname()

    def send(self, frame: bytes) -> bool:
        return send_or_drop(self, frame)

    def offer(self, frame: bytes) -> Offered:
        return offer_frame(self.counters, frame, self._transmit,
                           f"{self.name}: sending a frame failed")

    def _transmit(self, frame: bytes) -> None:
        if self._remote is None:
            self.sock.send(frame)
        else:
            self.sock.sendto(frame, self._remote)

    def recv(self) -> bytes | None:
        counters = self.counters
        for _ in range(MAX_DISCARDS_PER_RECV):
            try:
                # MSG_TRUNC: the true datagram length even when it exceeds the buffer.
                if self._remote is None:
                    length = self.sock.recv_into(self._buffer, 0, socket.MSG_TRUNC)
                    source = None
                else:
                    length, source = self.sock.recvfrom_into(self._buffer, 0, socket.MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as err:
                if err.errno in TRANSIENT_RECV_ERRORS:
                    continue
                raise NetError(f"{self.name}: receiving failed: {err.strerror}") from None
            if self._remote is not None and source != self._remote:
                counters.rx_dropped_foreign += 1
                continue
            if frame_fits(length):
                counters.rx_frames += 1
                counters.rx_bytes += length
                return bytes(self._view[:length])
            count_rx_reject(counters, length)
        return None

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.sock.close()
        if self._unlink is not None:
            try:
                os.unlink(self._unlink)
            except FileNotFoundError:
                pass
            self._unlink = None


def _resolve(address: tuple[str, int], which: str) -> tuple[int, tuple[Any, ...]]:
    host, port = address
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_DGRAM,
                                   flags=socket.AI_PASSIVE if which == "local" else 0)
    except socket.gaierror as err:
        raise NetError(f"UDP {which} address {_show(address)}: cannot resolve {host!r} "
                       f"({err.strerror}); give a numeric address") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def _refuse_existing(path: str) -> None:
    """A leftover socket file would make bind fail; say how to clear it rather than delete it."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    what = "a stale socket" if stat.S_ISSOCK(mode) else "a file that is not a socket"
    raise NetError(f"{path!r} already exists ({what}): remove it or pick another local.path")


def _show(address: tuple[Any, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
