"""What every network backend shares: the protocol the machine wires, counters, frame limits.

A backend carries whole Ethernet frames (no preamble, no CRC) between the NIC model and the
host. It never blocks: the NIC transmits from a vCPU thread, so a peer that cannot take a
frame now costs a counted drop, as a congested wire would; `recv` returns None when nothing
is waiting, so one event-loop callback (or a poll timer) drains whatever is there.
"""

from __future__ import annotations

import dataclasses
import errno
from typing import Protocol, runtime_checkable

from ..errors import HostError

MIN_FRAME = 14  # an Ethernet header and nothing else
MAX_FRAME = 1518  # 1500 bytes of payload behind an 802.1Q tag, without the CRC
# Receive buffers are sized for the largest datagram or TAP frame the kernel can hand us, so
# an oversize frame is seen whole (and counted) rather than silently cut to a valid length.
RECV_BUFFER = 65536 + 64
# Frames an invalid-frame flood can make one `recv` call discard before it gives the loop back.
MAX_DISCARDS_PER_RECV = 64
# errnos that mean "the peer cannot take it now" (or is not there yet): a drop, not a failure.
TRANSIENT_SEND_ERRORS = frozenset({
    errno.EAGAIN, errno.ENOBUFS, errno.ECONNREFUSED, errno.ENOENT, errno.EHOSTUNREACH,
    errno.ENETUNREACH, errno.ENETDOWN, errno.EIO, errno.EINTR, errno.EPERM, errno.EACCES,
    errno.EADDRNOTAVAIL, errno.EMSGSIZE,
})


class NetError(HostError):
    """A network backend cannot be set up, or its host side went away; the message says why."""


@dataclasses.dataclass
class NetCounters:
    """Frames through one backend. tx = guest to host, rx = host to guest.

    Each direction is updated by one thread only (tx by the transmitting vCPU under the device
    lock, rx by the event loop), so plain integers suffice.
    """

    tx_frames: int = 0
    tx_bytes: int = 0
    tx_dropped: int = 0  # the peer could not take the frame now (full, refused, absent)
    tx_invalid: int = 0  # the guest's frame was shorter than 14 or longer than 1518 bytes
    rx_frames: int = 0
    rx_bytes: int = 0
    rx_dropped_runt: int = 0  # shorter than an Ethernet header
    rx_dropped_oversize: int = 0  # longer than MAX_FRAME
    rx_dropped_foreign: int = 0  # a datagram from an address other than the configured peer

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@runtime_checkable
class NetBackend(Protocol):
    """The host end of a virtual Ethernet link, as the machine wires it to a NIC model."""

    name: str

    @property
    def counters(self) -> NetCounters:
        """This backend's frame counters (a capture wrapper passes its inner one's)."""
        ...

    def fileno(self) -> int:
        """A non-blocking fd that selects readable when `recv` may have a frame."""
        ...

    def send(self, frame: bytes) -> bool:
        """Hand one frame to the host; False (and a counted drop) if it cannot go now."""
        ...

    def recv(self) -> bytes | None:
        """One valid frame from the host, or None when nothing is waiting. Never blocks."""
        ...

    def close(self) -> None:
        ...


def frame_fits(length: int) -> bool:
    return MIN_FRAME <= length <= MAX_FRAME


def count_rx_reject(counters: NetCounters, length: int) -> None:
    """Record why a received frame of `length` bytes never reaches the device."""
    if length < MIN_FRAME:
        counters.rx_dropped_runt += 1
    else:
        counters.rx_dropped_oversize += 1
