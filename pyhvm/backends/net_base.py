"""What every network backend shares: the protocol the machine wires, counters, frame limits.

A backend carries whole Ethernet frames (no preamble, no CRC) between the NIC model and the
host. It never blocks: the NIC transmits from a vCPU thread. `offer` says whether a frame
went, was dropped (invalid, or a peer that is not there), or found the host's queue full
for now (the machine holds it and offers it again, so a slow peer slows the guest rather
than losing frames, as QEMU's net queue does); `send` is `offer` with "full" counted as a
drop. `recv` returns None when nothing is waiting, so one event-loop callback (or a poll
timer) drains whatever is there.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
from typing import Callable, Protocol, runtime_checkable

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
# Of those, the ones that mean "the queue is full now, room will come": worth a retry.
FULL_SEND_ERRORS = frozenset({errno.EAGAIN, errno.ENOBUFS})


class Offered(enum.Enum):
    """What became of a frame handed to `NetBackend.offer`."""

    SENT = "sent"
    DROPPED = "dropped"  # counted in tx_invalid or tx_dropped: it will never go
    FULL = "full"        # not taken and not counted: offer it again later


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

    def offer(self, frame: bytes) -> Offered:
        """Hand one frame to the host, never waiting."""
        ...

    def send(self, frame: bytes) -> bool:
        """Hand one frame to the host; False (and a counted drop) if it cannot go now."""
        ...

    def recv(self) -> bytes | None:
        """One valid frame from the host, or None when nothing is waiting. Never blocks."""
        ...

    def close(self) -> None:
        ...


def send_or_drop(backend: NetBackend, frame: bytes) -> bool:
    """`send` for a backend that implements `offer`: a full queue is a counted drop."""
    offered = backend.offer(frame)
    if offered is Offered.FULL:
        backend.counters.tx_dropped += 1
    return offered is Offered.SENT


def offer_frame(counters: NetCounters, frame: bytes, transmit: Callable[[bytes], object],
                failure: str) -> Offered:
    """The shared body of `offer`: check the length, `transmit` the frame, and sort an
    OSError into full (offered again later, not counted), a counted drop, or a dead backend
    (NetError starting with `failure`)."""
    if not frame_fits(len(frame)):
        counters.tx_invalid += 1
        return Offered.DROPPED
    try:
        transmit(frame)
    except OSError as err:
        if err.errno in FULL_SEND_ERRORS:
            return Offered.FULL
        if err.errno not in TRANSIENT_SEND_ERRORS:
            raise NetError(f"{failure}: {err.strerror}") from None
        counters.tx_dropped += 1  # e.g. EIO while a TAP's link is down
        return Offered.DROPPED
    counters.tx_frames += 1
    counters.tx_bytes += len(frame)
    return Offered.SENT


def frame_fits(length: int) -> bool:
    return MIN_FRAME <= length <= MAX_FRAME


def count_rx_reject(counters: NetCounters, length: int) -> None:
    """Record why a received frame of `length` bytes never reaches the device."""
    if length < MIN_FRAME:
        counters.rx_dropped_runt += 1
    else:
        counters.rx_dropped_oversize += 1
