"""Packet capture: frames through a network backend, in the classic libpcap file format.

The file is what tcpdump and Wireshark open: a 24-byte global header (magic 0xa1b2c3d4 for
microsecond timestamps, or 0xa1b23c4d for nanoseconds when asked, version 2.4, snaplen 65535
by default, link type 1 = Ethernet), then per frame a 16-byte record header (seconds,
fraction, captured length, original length) and the frame's bytes, written little endian.
Timestamps are wall-clock time taken from a monotonic clock anchored once at open, so they
never step backwards even when the host's clock does.

`CapturingBackend` wraps any backend the way QEMU's `-object filter-dump` does: it records
every frame the guest transmits (even one the peer then drops) and every frame delivered to
the guest. QEMU names the directions from the netdev's side: `queue=rx` is what the netdev
receives (the guest's transmissions), `queue=tx` what it sends (towards the guest).
"""

from __future__ import annotations

import dataclasses
import struct
import threading
import time
from typing import BinaryIO

from ..errors import HostError
from .net_base import NetBackend, NetCounters, Offered, send_or_drop
from .net import parse_options

MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
VERSION = (2, 4)
LINKTYPE_ETHERNET = 1
DEFAULT_SNAPLEN = 65535
GLOBAL_HEADER = struct.Struct("<IHHiIII")  # magic, major, minor, thiszone, sigfigs, snaplen, link
RECORD_HEADER = struct.Struct("<IIII")  # seconds, usec or nsec, captured length, original length


class CaptureError(HostError):
    """The capture file cannot be written, or a --object filter-dump is malformed."""


class PcapWriter:
    """Appends frames to a new pcap file. Safe to call from the vCPU and loop threads at once.

    A write error (disk full) stops the capture rather than the VM: `error` then says why and
    `dropped` counts the frames not recorded.
    """

    def __init__(self, path: str, *, snaplen: int = DEFAULT_SNAPLEN,
                 nanosecond: bool = False) -> None:
        if not 0 < snaplen <= 0x7FFFFFFF:
            raise CaptureError(f"capture snaplen {snaplen} must be positive")
        try:
            self._file: BinaryIO | None = open(path, "wb")
        except OSError as err:
            raise CaptureError(f"cannot write capture file {path!r}: {err.strerror}") from None
        self.path = path
        self.snaplen = snaplen
        self.nanosecond = nanosecond
        self.records = 0
        self.dropped = 0
        self.error: str | None = None
        self._lock = threading.Lock()
        self._epoch_ns = time.time_ns() - time.monotonic_ns()
        magic = MAGIC_NSEC if nanosecond else MAGIC_USEC
        self._write(GLOBAL_HEADER.pack(magic, *VERSION, 0, 0, snaplen, LINKTYPE_ETHERNET))

    def write(self, frame: bytes, timestamp_ns: int | None = None) -> None:
        """Record one frame; `timestamp_ns` (Unix epoch) defaults to now."""
        if timestamp_ns is None:
            timestamp_ns = self._epoch_ns + time.monotonic_ns()
        seconds, fraction = divmod(timestamp_ns, 1_000_000_000)
        if not self.nanosecond:
            fraction //= 1000
        captured = min(len(frame), self.snaplen)
        header = RECORD_HEADER.pack(seconds, fraction, captured, len(frame))
        with self._lock:
            if self._write(header) and self._write(frame[:captured]):
                self.records += 1

    def _write(self, data: bytes) -> bool:
        if self._file is None:
            self.dropped += 1
            return False
        try:
            self._file.write(data)
        except OSError as err:
            self.error = f"capture to {self.path!r} stopped: {err.strerror}"
            self._file = None
            self.dropped += 1
            return False
        return True

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    self._file.flush()
                except OSError as err:
                    self.error = f"capture to {self.path!r} stopped: {err.strerror}"
                    self._file = None

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


# --- reading back (tests, reports) ---------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PcapHeader:
    magic: int
    version: tuple[int, int]
    snaplen: int
    linktype: int

    @property
    def nanosecond(self) -> bool:
        return self.magic == MAGIC_NSEC


@dataclasses.dataclass(frozen=True)
class PcapRecord:
    timestamp_ns: int
    original_length: int
    data: bytes


def read_pcap(path: str) -> tuple[PcapHeader, list[PcapRecord]]:
    """Parse a classic pcap file (either byte order, either timestamp resolution)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < GLOBAL_HEADER.size:
        raise ValueError(f"{path}: shorter than a pcap header")
    for order in "<>":
        fields = struct.unpack(order + GLOBAL_HEADER.format[1:], blob[:GLOBAL_HEADER.size])
        if fields[0] in (MAGIC_USEC, MAGIC_NSEC):
            break
    else:
        raise ValueError(f"{path}: not a classic pcap file (magic {blob[:4].hex()})")
    header = PcapHeader(fields[0], (fields[1], fields[2]), fields[5], fields[6])
    scale = 1 if header.nanosecond else 1000
    record = struct.Struct(order + RECORD_HEADER.format[1:])
    records, offset = [], GLOBAL_HEADER.size
    while offset < len(blob):
        if offset + record.size > len(blob):
            raise ValueError(f"{path}: truncated record header at byte {offset}")
        seconds, fraction, captured, original = record.unpack_from(blob, offset)
        offset += record.size
        if captured > header.snaplen or captured > original or offset + captured > len(blob):
            raise ValueError(f"{path}: bad record lengths {captured}/{original} at byte {offset}")
        records.append(PcapRecord(seconds * 1_000_000_000 + fraction * scale, original,
                                  blob[offset:offset + captured]))
        offset += captured
    return header, records


# --- capture around a backend --------------------------------------------------------------
class CapturingBackend:
    """Any NetBackend, with the frames the guest sends and/or receives recorded."""

    def __init__(self, inner: NetBackend, writer: PcapWriter, *, guest_tx: bool = True,
                 guest_rx: bool = True) -> None:
        self.inner = inner
        self.writer = writer
        self.name = inner.name
        self._tx = guest_tx
        self._rx = guest_rx

    @property
    def counters(self) -> NetCounters:
        return self.inner.counters

    def fileno(self) -> int:
        return self.inner.fileno()

    def offer(self, frame: bytes) -> Offered:
        offered = self.inner.offer(frame)
        if self._tx and offered is not Offered.FULL:  # a held frame is captured once it goes
            self.writer.write(frame)
        return offered

    def send(self, frame: bytes) -> bool:
        return send_or_drop(self, frame)

    def recv(self) -> bytes | None:
        frame = self.inner.recv()
        if frame is not None and self._rx:
            self.writer.write(frame)
        return frame

    def close(self) -> None:
        self.inner.close()
        self.writer.close()


@dataclasses.dataclass(frozen=True)
class FilterDumpConfig:
    id: str
    netdev: str
    file: str
    maxlen: int = DEFAULT_SNAPLEN
    queue: str = "all"  # QEMU's sense: rx = frames into the netdev (from the guest), tx = out


def parse_filter_dump(spec: str) -> FilterDumpConfig:
    """`--object filter-dump,id=f1,netdev=n1,file=PATH[,maxlen=N][,queue=all|rx|tx]`."""
    try:
        kind, options = parse_options(spec, "--object")
    except HostError as err:
        raise CaptureError(str(err)) from None
    if kind != "filter-dump":
        raise CaptureError(f"--object {kind or spec!r} is not supported: only filter-dump "
                           f"(id=,netdev=,file=) is")
    known = ("id", "netdev", "file", "maxlen", "queue")
    for key in options:
        if key not in known:
            raise CaptureError(f"--object filter-dump: unknown option {key}= (known: "
                               f"{', '.join(k + '=' for k in known)})")
    for key in ("id", "netdev", "file"):
        if not options.get(key):
            raise CaptureError(f"--object filter-dump needs {key}= (e.g. filter-dump,id=f1,"
                               f"netdev=n1,file=out.pcap)")
    maxlen = options.get("maxlen", str(DEFAULT_SNAPLEN))
    if not maxlen.isdigit() or not 0 < int(maxlen) <= 0x7FFFFFFF:
        raise CaptureError(f"--object filter-dump: maxlen={maxlen} must be a positive number")
    queue = options.get("queue", "all")
    if queue not in ("all", "rx", "tx"):
        raise CaptureError(f"--object filter-dump: queue={queue} must be all, rx or tx")
    return FilterDumpConfig(options["id"], options["netdev"], options["file"], int(maxlen),
                            queue)


def open_capture(backend: NetBackend, config: FilterDumpConfig) -> CapturingBackend:
    """Wrap `backend` (the netdev named by `config.netdev`) in the capture it asks for."""
    return CapturingBackend(backend, PcapWriter(config.file, snaplen=config.maxlen),
                            guest_tx=config.queue in ("all", "rx"),
                            guest_rx=config.queue in ("all", "tx"))
