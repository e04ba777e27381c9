"""A TAP interface: the guest's NIC appears to the host kernel as an Ethernet device.

The device is made (or, if a persistent one of that name exists, attached to) with TUNSETIFF
on /dev/net/tun, without the packet-information prefix, so one read or write is exactly one
frame. It is not persistent: the kernel removes it when the fd closes. The backend brings the
link up itself, so the user only has to add an address or a bridge; it never runs scripts.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

from .net_base import (MAX_DISCARDS_PER_RECV, RECV_BUFFER, NetCounters, NetError, Offered,
                       count_rx_reject, frame_fits, offer_frame, send_or_drop)

TUN_DEVICE = "/dev/net/tun"
IFNAMSIZ = 16  # including the terminating NUL: names are at most 15 bytes
# linux/if_tun.h: TUNSETIFF = _IOW('T', 202, int)
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000  # no 4-byte flags/protocol prefix before each frame
# linux/sockios.h and linux/if.h
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ = struct.Struct("16sH22x")  # struct ifreq: the name, then the union's short flags

ROOT_HINT = "run pyhvm as root or give it CAP_NET_ADMIN"


def check_ifname(ifname: str) -> None:
    """Refuse a name the kernel would refuse, with the reason, before touching the device."""
    raw = ifname.encode("utf-8", "replace")
    if not raw or len(raw) >= IFNAMSIZ:
        raise NetError(f"TAP name {ifname!r} must be 1 to {IFNAMSIZ - 1} bytes long")
    if ifname in (".", "..") or any(c in ifname for c in "/:") or any(c.isspace() for c in ifname):
        raise NetError(f"TAP name {ifname!r} may not contain '/', ':' or spaces")


class TapBackend:
    """A TAP device opened non-blocking; `ifname` None lets the kernel pick tapN."""

    def __init__(self, ifname: str | None = None) -> None:
        if ifname is not None:
            check_ifname(ifname)
        self.counters = NetCounters()
        self._fd = _open_tun()
        try:
            self.ifname = _attach(self._fd, ifname)
            _set_up(self.ifname)
        except BaseException:
            os.close(self._fd)
            raise
        self.name = f"tap {self.ifname}"
        self._buffer = bytearray(RECV_BUFFER)
        self._view = memoryview(self._buffer)

    def fileno(self) -> int:
        return self._fd

    def send(self, frame: bytes) -> bool:
        return send_or_drop(self, frame)

    def offer(self, frame: bytes) -> Offered:
        return offer_frame(self.counters, frame, lambda data: os.write(self._fd, data),
                           f"TAP {self.ifname}: writing a frame failed (was the device "
                           "deleted?)")

    def recv(self) -> bytes | None:
        counters = self.counters
        for _ in range(MAX_DISCARDS_PER_RECV):
            try:
                length = os.readv(self._fd, [self._buffer])
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as err:
                raise NetError(f"TAP {self.ifname}: reading failed: {err.strerror}; "
                               f"was the device deleted?") from None
            if frame_fits(length):
                counters.rx_frames += 1
                counters.rx_bytes += length
                return bytes(self._view[:length])
            count_rx_reject(counters, length)
        return None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # not persistent: the kernel deletes the interface now
            self._fd = -1


def _open_tun() -> int:
    try:
        return os.open(TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetError(f"{TUN_DEVICE} does not exist: load the driver with `modprobe tun` "
                       f"(or create the node: mknod {TUN_DEVICE} c 10 200)") from None
    except PermissionError:
        raise NetError(f"no permission to open {TUN_DEVICE}: {ROOT_HINT}") from None
    except OSError as err:
        raise NetError(f"cannot open {TUN_DEVICE}: {err.strerror}; "
                       f"is the tun module loaded (`modprobe tun`)?") from None


def _attach(fd: int, ifname: str | None) -> str:
    """TUNSETIFF: create the TAP (or attach to a persistent one); return its actual name."""
    request = IFREQ.pack((ifname or "").encode(), IFF_TAP | IFF_NO_PI)
    try:
        answer = fcntl.ioctl(fd, TUNSETIFF, request)
    except OSError as err:
        shown = f"TAP {ifname}" if ifname else "a TAP device"
        if err.errno == errno.EPERM:
            raise NetError(f"not allowed to create {shown}: {ROOT_HINT}") from None
        if err.errno == errno.EBUSY:
            raise NetError(f"{shown} is already in use by another process: pick "
                           f"another ifname= or stop the other user") from None
        if err.errno == errno.EINVAL:
            raise NetError(f"{shown} exists and is not a TAP device: pick another "
                           f"ifname= (or leave it out to get tapN)") from None
        raise NetError(f"cannot create {shown}: {err.strerror}") from None
    raw: bytes = IFREQ.unpack(answer)[0]
    return raw.split(b"\0", 1)[0].decode()


def _set_up(ifname: str) -> None:
    """Set IFF_UP, as `ip link set dev IFNAME up` would, keeping the other flags."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock, SIOCGIFFLAGS, IFREQ.pack(ifname.encode(), 0))
            _, flags = IFREQ.unpack(answer)
            if not flags & IFF_UP:
                fcntl.ioctl(sock, SIOCSIFFLAGS, IFREQ.pack(ifname.encode(), flags | IFF_UP))
        except OSError as err:
            raise NetError(f"cannot bring TAP {ifname} up: {err.strerror}; {ROOT_HINT}") \
                from None
