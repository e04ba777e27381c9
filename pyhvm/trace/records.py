"""The trace file format: a versioned header, then fixed-size binary records.

File layout (all little-endian):
  magic  b"PYHVMTRC"            8 bytes
  version                       u32 (FORMAT_VERSION)
  header length N               u32
  header                        N bytes of UTF-8 JSON: machine config, host, bus map
  records                       RECORD.size bytes each, until the end of the file

Every record has the same shape (`Record`): when it happened (monotonic ns), how long it
took (ns, 0 for instants), its kind, the vCPU (or 255 for other threads), and three
kind-specific arguments a (16 bits), b and c (64 bits each), described per kind below.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator

MAGIC = b"PYHVMTRC"
FORMAT_VERSION = 1
PREAMBLE = struct.Struct("<8sII")
RECORD = struct.Struct("<QIBBHQQ")  # ts_ns, dur_ns, kind, cpu, a, b, c
NO_CPU = 255


class Kind(enum.IntEnum):
    EXIT_PIO = 1      # a=port, b=first value, c=size | is_write << 8 | count << 16
    EXIT_MMIO = 2     # b=address, c=size | is_write << 8
    EXIT_OTHER = 3    # a=KVM exit reason
    IRQ_LEVEL = 4     # a=irq line, b=level
    IRQ_INJECT = 5    # a=vector, b=latency from the INTR pin rising, ns
    DMA = 6           # a=device id, b=bytes, c=1 start / 2 done; dur on done
    BACKEND_IO = 7    # a=device id, b=bytes, c=operation code; dur=time in the backend
    RIP_SAMPLE = 8    # b=guest RIP, c=CPL
    HALT = 9          # dur=time the vCPU slept in HLT
    DEVICE = 10       # a=device id, b=event code, c=value (packets, frames, ...)


# Which --trace-events group each kind belongs to.
EVENT_GROUPS: dict[str, tuple[Kind, ...]] = {
    "exits": (Kind.EXIT_PIO, Kind.EXIT_MMIO, Kind.EXIT_OTHER, Kind.HALT),
    "irq": (Kind.IRQ_LEVEL, Kind.IRQ_INJECT),
    "devices": (Kind.DMA, Kind.DEVICE),
    "backend": (Kind.BACKEND_IO,),
    "rip": (Kind.RIP_SAMPLE,),
}
DEFAULT_EVENTS = ("exits", "irq", "devices", "backend")


@dataclass(frozen=True, slots=True)
class Record:
    ts_ns: int
    dur_ns: int
    kind: Kind
    cpu: int
    a: int
    b: int
    c: int


class TraceFormatError(Exception):
    """Not a pyhvm trace, or a damaged one."""


def write_preamble(f: BinaryIO, header: dict[str, Any]) -> None:
    data = json.dumps(header, sort_keys=True).encode()
    f.write(PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(data)))
    f.write(data)


def read_header(f: BinaryIO) -> dict[str, Any]:
    raw = f.read(PREAMBLE.size)
    if len(raw) < PREAMBLE.size:
        raise TraceFormatError("file too short to be a pyhvm trace")
    magic, version, length = PREAMBLE.unpack(raw)
    if magic != MAGIC:
        raise TraceFormatError("not a pyhvm trace (bad magic)")
    if version != FORMAT_VERSION:
        raise TraceFormatError(f"trace format version {version}; this pyhvm reads "
                               f"{FORMAT_VERSION}")
    if length > 16 << 20:
        raise TraceFormatError("trace header is absurdly large")
    data = f.read(length)
    if len(data) != length:
        raise TraceFormatError("trace header truncated")
    try:
        return json.loads(data)
    except ValueError as err:
        raise TraceFormatError(f"trace header is not JSON: {err}") from None


def iter_records(f: BinaryIO, chunk: int = 4096) -> Iterator[Record]:
    """Records in file order (a trailing partial record from a killed run is ignored)."""
    size = RECORD.size
    while True:
        data = f.read(size * chunk)
        if not data:
            return
        whole = len(data) - len(data) % size
        for ts, dur, kind, cpu, a, b, c in RECORD.iter_unpack(data[:whole]):
            try:
                kind_enum = Kind(kind)
            except ValueError:
                raise TraceFormatError(f"unknown record kind {kind}") from None
            yield Record(ts, dur, kind_enum, cpu, a, b, c)
        if whole != len(data):
            return


def read_trace(path: str) -> tuple[dict[str, Any], list[Record]]:
    with open(path, "rb") as f:
        header = read_header(f)
        return header, list(iter_records(f))
