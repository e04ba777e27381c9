"""The trace file format: what the recorder writes, read_trace reads back, field for field."""

from __future__ import annotations

import io
import json
import struct
import threading
from pathlib import Path

import pytest

from pyhvm.trace.recorder import BUFFER_RECORDS, Recorder
from pyhvm.trace.records import (FORMAT_VERSION, MAGIC, NO_CPU, PREAMBLE, RECORD, Kind,
                                 Record, TraceFormatError, iter_records, read_header,
                                 read_trace, write_preamble)

U64 = (1 << 64) - 1

# One record of every kind, with arguments as the event sites fill them (records.py).
EVERY_KIND = [
    Record(1_000, 2_500, Kind.EXIT_PIO, 0, 0x3F8, 0x41, 1 | 1 << 8 | 1 << 16),
    Record(2_000, 3_100, Kind.EXIT_MMIO, 0, 0, 0xFEBF_0010, 4 | 1 << 8),
    Record(3_000, 900, Kind.EXIT_OTHER, 0, 7, 0, 0),
    Record(4_000, 0, Kind.IRQ_LEVEL, 0, 4, 1, 0),
    Record(5_000, 0, Kind.IRQ_INJECT, 0, 0x20, 45_000, 0),
    Record(6_000, 0, Kind.DMA, 0, 2, 65_536, 1),
    Record(7_000, 120_000, Kind.DMA, 0, 2, 65_536, 2),
    Record(8_000, 80_000, Kind.BACKEND_IO, 0, 3, 1514, 5),
    Record(9_000, 0, Kind.RIP_SAMPLE, 0, 0, 0xFFFF_FFFF_8100_0000, 3),
    Record(10_000, 1_000_000, Kind.HALT, 0, 0, 0, 0),
    Record(11_000, 0, Kind.DEVICE, 0, 1, 7, 42),
]


def _record_all(recorder: Recorder, records: list[Record], cpu: int) -> None:
    buf = recorder.buffer(cpu)
    for r in records:
        buf.add(r.kind, r.ts_ns, r.dur_ns, r.a, r.b, r.c)


def test_every_kind_round_trips_field_for_field(tmp_path: Path) -> None:
    path = tmp_path / "t.trc"
    recorder = Recorder(open(path, "wb"), ("exits", "irq"))
    recorder.start({"config": {"irqchip": "user"}})
    _record_all(recorder, EVERY_KIND, cpu=0)
    recorder.close()
    header, records = read_trace(str(path))
    assert header["config"] == {"irqchip": "user"}
    assert records == EVERY_KIND
    assert {r.kind for r in records} == set(Kind)  # the list above misses no kind


def test_extreme_values_round_trip_and_oversized_arguments_wrap(tmp_path: Path) -> None:
    path = tmp_path / "t.trc"
    recorder = Recorder(open(path, "wb"), ())
    recorder.start({})
    buf = recorder.buffer(3)
    buf.add(Kind.EXIT_PIO, U64, (1 << 32) - 1, 0xFFFF, U64, U64)
    buf.add(Kind.EXIT_PIO, 0, 0, 0x1_0005, -1, 1 << 64 | 9)  # a, b, c masked to their width
    recorder.close()
    _, records = read_trace(str(path))
    assert records[0] == Record(U64, (1 << 32) - 1, Kind.EXIT_PIO, 3, 0xFFFF, U64, U64)
    assert records[1] == Record(0, 0, Kind.EXIT_PIO, 3, 5, U64, 9)


def test_record_convenience_uses_the_calling_threads_buffer(tmp_path: Path) -> None:
    path = tmp_path / "t.trc"
    recorder = Recorder(open(path, "wb"), ("irq",))
    recorder.start({})
    recorder.record(Kind.IRQ_LEVEL, a=8, b=1, ts_ns=123)
    recorder.record(Kind.DEVICE, a=1, b=2, c=3)  # timestamped now
    recorder.close()
    _, records = read_trace(str(path))
    assert records[0] == Record(123, 0, Kind.IRQ_LEVEL, NO_CPU, 8, 1, 0)
    assert records[1].kind is Kind.DEVICE and records[1].ts_ns > 0
    assert (records[1].a, records[1].b, records[1].c) == (1, 2, 3)


def test_threads_get_their_own_buffers_and_every_record_arrives(tmp_path: Path) -> None:
    """More records than a buffer holds, from two threads: full buffers are flushed as they
    fill, the rest on close; each record keeps its thread's vCPU number."""
    path = tmp_path / "t.trc"
    recorder = Recorder(open(path, "wb"), ("exits",))
    recorder.start({})
    n = BUFFER_RECORDS + 17

    def vcpu(cpu: int) -> None:
        buf = recorder.buffer(cpu)
        for i in range(n):
            buf.add(Kind.EXIT_PIO, i, cpu, 0x404, i, 1 | 1 << 8 | 1 << 16)

    threads = [threading.Thread(target=vcpu, args=(cpu,)) for cpu in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorder.close()
    _, records = read_trace(str(path))
    for cpu in (0, 1):
        mine = [r for r in records if r.cpu == cpu]
        assert [r.b for r in mine] == list(range(n))  # in order within a thread
        assert all(r.dur_ns == cpu for r in mine)


def test_header_round_trips_with_events_and_start_time(tmp_path: Path) -> None:
    header = {"pyhvm": "0.1.0", "vcpus": 2, "pio_map": [[0x3F8, 8, "com1"], [0xF4, 4, "x"]],
              "mmio_map": [[0xFEBF0000, 0x10000, "nic"]],
              "config": {"kernel": "k.elf", "append": "a=1 b=2", "memory": 128 << 20},
              "host": {"kernel": "6.1", "python": "3.11"}}
    path = tmp_path / "t.trc"
    recorder = Recorder(open(path, "wb"), ("rip", "exits"))
    recorder.start(header)
    recorder.close()
    read, records = read_trace(str(path))
    assert records == []
    assert read["events"] == ["exits", "rip"]
    assert isinstance(read["start_ns"], int) and read["start_ns"] > 0
    assert {k: v for k, v in read.items() if k not in ("events", "start_ns")} == header


def test_write_preamble_and_read_header_agree_on_a_stream() -> None:
    f = io.BytesIO()
    write_preamble(f, {"x": [1, 2], "y": "z"})
    f.write(RECORD.pack(5, 6, Kind.HALT, 0, 0, 0, 0))
    f.seek(0)
    assert read_header(f) == {"x": [1, 2], "y": "z"}
    assert list(iter_records(f)) == [Record(5, 6, Kind.HALT, 0, 0, 0, 0)]


def _trace_bytes(records: list[Record]) -> bytes:
    f = io.BytesIO()
    write_preamble(f, {})
    for r in records:
        f.write(RECORD.pack(r.ts_ns, r.dur_ns, r.kind, r.cpu, r.a, r.b, r.c))
    return f.getvalue()


@pytest.mark.parametrize("cut", [1, RECORD.size // 2, RECORD.size - 1])
def test_a_partial_trailing_record_is_ignored(tmp_path: Path, cut: int) -> None:
    """A run killed mid-write leaves part of a record: the whole ones still read."""
    path = tmp_path / "t.trc"
    path.write_bytes(_trace_bytes(EVERY_KIND)[:-cut])
    _, records = read_trace(str(path))
    assert records == EVERY_KIND[:-1]


def test_a_partial_record_across_read_chunks_is_ignored() -> None:
    data = _trace_bytes(EVERY_KIND * 3)[:-5]
    f = io.BytesIO(data)
    read_header(f)
    assert list(iter_records(f, chunk=4)) == (EVERY_KIND * 3)[:-1]


def test_bad_magic_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "t.trc"
    path.write_bytes(b"NOTATRAC" + _trace_bytes([])[8:])
    with pytest.raises(TraceFormatError, match="bad magic"):
        read_trace(str(path))


def test_other_version_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "t.trc"
    body = json.dumps({}).encode()
    path.write_bytes(PREAMBLE.pack(MAGIC, FORMAT_VERSION + 1, len(body)) + body)
    with pytest.raises(TraceFormatError, match="version"):
        read_trace(str(path))


@pytest.mark.parametrize("data,message", [
    (b"", "too short"),
    (MAGIC + b"\x01", "too short"),
    (PREAMBLE.pack(MAGIC, FORMAT_VERSION, 100) + b"{}", "truncated"),
    (PREAMBLE.pack(MAGIC, FORMAT_VERSION, 5) + b"{nope", "not JSON"),
    (PREAMBLE.pack(MAGIC, FORMAT_VERSION, 1 << 30), "absurdly large"),
])
def test_damaged_headers_are_rejected(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "t.trc"
    path.write_bytes(data)
    with pytest.raises(TraceFormatError, match=message):
        read_trace(str(path))


def test_unknown_record_kind_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "t.trc"
    path.write_bytes(_trace_bytes([]) + struct.pack("<QIBBHQQ", 1, 0, 200, 0, 0, 0, 0))
    with pytest.raises(TraceFormatError, match="unknown record kind 200"):
        read_trace(str(path))


def test_unknown_event_group_is_refused() -> None:
    with pytest.raises(ValueError, match="nosuch"):
        Recorder(io.BytesIO(), ("exits", "nosuch"))
