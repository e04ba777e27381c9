"""Packet capture: the classic libpcap format read back by our reader and by tcpdump, the
capturing wrapper around a backend, and `--object filter-dump` parsing.

Format reference: the libpcap file format ("pcap-savefile(5)"): global header of 24 bytes,
per record 16 bytes of header then the captured bytes.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pyhvm.backends.net import DgramBackend
from pyhvm.backends.net_base import Offered
from pyhvm.backends.pcap import (LINKTYPE_ETHERNET, MAGIC_NSEC, MAGIC_USEC, CaptureError,
                                 CapturingBackend, FilterDumpConfig, PcapWriter, open_capture,
                                 parse_filter_dump, read_pcap)


def frame(payload: bytes, ethertype: int = 0x88B5) -> bytes:
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + ethertype.to_bytes(2, "big") + payload


FRAMES = [frame(b""), frame(b"x" * 46), frame(bytes(range(256)) * 5 + bytes(220))]


def test_global_header_is_classic_pcap_2_4_ethernet(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    PcapWriter(str(path)).close()
    raw = path.read_bytes()
    assert len(raw) == 24
    assert struct.unpack("<IHHiIII", raw) == (0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def test_frames_read_back_with_lengths_and_monotonic_timestamps(tmp_path: Path) -> None:
    path = str(tmp_path / "a.pcap")
    writer = PcapWriter(path)
    before = time.time_ns()
    for f in FRAMES * 3:
        writer.write(f)
    writer.close()
    after = time.time_ns()
    header, records = read_pcap(path)
    assert (header.magic, header.version, header.snaplen, header.linktype) == (
        MAGIC_USEC, (2, 4), 65535, LINKTYPE_ETHERNET)
    assert [r.data for r in records] == FRAMES * 3
    assert all(r.original_length == len(r.data) for r in records)
    stamps = [r.timestamp_ns for r in records]
    assert stamps == sorted(stamps)
    # microsecond resolution: within one microsecond of the wall clock around the writes
    assert before - 1000 - 50_000_000 <= stamps[0] and stamps[-1] <= after + 50_000_000
    assert writer.records == 9 and writer.error is None


def test_nanosecond_variant_keeps_nanoseconds(tmp_path: Path) -> None:
    path = str(tmp_path / "ns.pcap")
    writer = PcapWriter(path, nanosecond=True)
    writer.write(FRAMES[1], timestamp_ns=1_700_000_000_123_456_789)
    writer.close()
    header, records = read_pcap(path)
    assert header.magic == MAGIC_NSEC and header.nanosecond
    assert records[0].timestamp_ns == 1_700_000_000_123_456_789


def test_microsecond_records_split_seconds_and_microseconds(tmp_path: Path) -> None:
    path = tmp_path / "us.pcap"
    writer = PcapWriter(str(path))
    writer.write(FRAMES[0], timestamp_ns=1_700_000_000_123_456_789)
    writer.close()
    assert struct.unpack_from("<IIII", path.read_bytes(), 24) == (1_700_000_000, 123_456, 14, 14)


def test_frames_longer_than_snaplen_are_cut_but_keep_their_length(tmp_path: Path) -> None:
    path = str(tmp_path / "snap.pcap")
    writer = PcapWriter(path, snaplen=64)
    writer.write(FRAMES[2])
    writer.close()
    header, records = read_pcap(path)
    assert header.snaplen == 64
    assert records[0].data == FRAMES[2][:64] and records[0].original_length == len(FRAMES[2])


def test_writes_from_two_threads_never_interleave_records(tmp_path: Path) -> None:
    path = str(tmp_path / "threads.pcap")
    writer = PcapWriter(path)

    def writer_thread(tag: bytes) -> None:
        for i in range(2000):
            writer.write(frame(tag * (1 + i % 90)))

    threads = [threading.Thread(target=writer_thread, args=(t,)) for t in (b"a", b"b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    _, records = read_pcap(path)
    assert len(records) == 4000
    assert all(set(r.data[14:]) in ({ord("a")}, {ord("b")}) for r in records)


def test_unwritable_capture_file_is_a_host_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot write capture file"):
        PcapWriter(str(tmp_path / "no" / "such" / "dir.pcap"))


def test_a_full_disk_stops_the_capture_not_the_vm() -> None:
    writer = PcapWriter("/dev/full")  # every write that reaches the device fails (ENOSPC)
    for _ in range(100):
        writer.write(FRAMES[2])  # more than the file buffer: the error surfaces here
    writer.close()
    assert writer.error is not None and "stopped" in writer.error
    assert writer.dropped > 0 and writer.records < 100


def test_tcpdump_reads_the_file(tmp_path: Path) -> None:
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        pytest.skip("tcpdump is not installed (apt-get install -y tcpdump)")
    for nanosecond in (False, True):
        path = tmp_path / f"dump-{nanosecond}.pcap"
        writer = PcapWriter(str(path), nanosecond=nanosecond)
        for f in FRAMES:
            writer.write(f)
        writer.close()
        out = subprocess.run([tcpdump, "-nn", "-e", "-r", str(path)], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        # one summary line per frame (an unknown ethertype's payload follows as hex lines)
        lines = [line for line in out.stdout.splitlines() if "ethertype" in line]
        assert len(lines) == len(FRAMES)
        assert all("02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff" in line for line in lines)
        assert "length 1514" in lines[2]
        assert "link-type EN10MB" in out.stderr


# --- capturing around a backend ------------------------------------------------------------
def test_capturing_backend_records_both_directions(tmp_path: Path) -> None:
    path = str(tmp_path / "cap.pcap")
    inner, peer = DgramBackend.pair()
    backend = CapturingBackend(inner, PcapWriter(path))
    try:
        assert backend.send(FRAMES[1])
        peer.send(FRAMES[2])
        received = None
        for _ in range(100):
            received = backend.recv()
            if received is not None:
                break
            time.sleep(0.01)
        assert received == FRAMES[2]
        assert backend.fileno() == inner.fileno() and backend.name == inner.name
        assert backend.counters is inner.counters and backend.counters.tx_frames == 1
    finally:
        backend.close()
        peer.close()
    _, records = read_pcap(path)
    assert [r.data for r in records] == [FRAMES[1], FRAMES[2]]


def test_capture_keeps_a_frame_the_peer_then_drops(tmp_path: Path) -> None:
    path = str(tmp_path / "drop.pcap")
    inner, peer = DgramBackend.pair()
    peer.close()  # nobody at the other end: every send is a counted drop
    backend = CapturingBackend(inner, PcapWriter(path))
    assert backend.send(FRAMES[0]) is False
    backend.close()
    assert inner.counters.tx_dropped == 1
    assert [r.data for r in read_pcap(path)[1]] == [FRAMES[0]]


def test_a_frame_held_behind_a_full_queue_is_captured_once_when_it_goes(tmp_path: Path) -> None:
    path = str(tmp_path / "held.pcap")
    inner, peer = DgramBackend.pair()
    backend = CapturingBackend(inner, PcapWriter(path))
    try:
        sent = 0
        while backend.offer(FRAMES[1]) is Offered.SENT:
            sent += 1
        assert backend.offer(FRAMES[2]) is Offered.FULL
        peer.recv(4096)
        assert backend.offer(FRAMES[2]) is Offered.SENT
    finally:
        backend.close()
        peer.close()
    assert [r.data for r in read_pcap(path)[1]] == [FRAMES[1]] * sent + [FRAMES[2]]


@pytest.mark.parametrize("queue,recorded", [("all", 2), ("rx", 1), ("tx", 1)])
def test_filter_dump_queue_follows_qemu_direction_names(tmp_path: Path, queue: str,
                                                        recorded: int) -> None:
    """QEMU: rx = what the netdev receives (the guest's frames), tx = what it sends out."""
    path = str(tmp_path / "q.pcap")
    inner, peer = DgramBackend.pair()
    peer.settimeout(1)
    backend = open_capture(inner, parse_filter_dump(
        f"filter-dump,id=f1,netdev=n1,file={path},queue={queue}"))
    backend.send(frame(b"from guest"))
    peer.send(frame(b"to guest"))
    deadline = time.monotonic() + 2
    while backend.recv() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    backend.close()
    peer.close()
    data = [r.data[14:] for r in read_pcap(path)[1]]
    assert len(data) == recorded
    if queue == "rx":
        assert data == [b"from guest"]
    if queue == "tx":
        assert data == [b"to guest"]


def test_parse_filter_dump() -> None:
    assert parse_filter_dump("filter-dump,id=f1,netdev=n1,file=/tmp/a,,b.pcap") == \
        FilterDumpConfig("f1", "n1", "/tmp/a,b.pcap")
    assert parse_filter_dump("filter-dump,id=f,netdev=n,file=x,maxlen=128,queue=rx") == \
        FilterDumpConfig("f", "n", "x", 128, "rx")


@pytest.mark.parametrize("spec,message", [
    ("filter-mirror,id=f,netdev=n,outdev=c", "only filter-dump"),
    ("filter-dump,netdev=n,file=x", "needs id="),
    ("filter-dump,id=f,file=x", "needs netdev="),
    ("filter-dump,id=f,netdev=n", "needs file="),
    ("filter-dump,id=f,netdev=n,file=x,status=off", "unknown option status="),
    ("filter-dump,id=f,netdev=n,file=x,maxlen=0", "maxlen=0 must be"),
    ("filter-dump,id=f,netdev=n,file=x,queue=both", "queue=both must be"),
    ("filter-dump,id=f,id=g,netdev=n,file=x", "given twice"),
])
def test_parse_filter_dump_refuses_with_a_one_line_reason(spec: str, message: str) -> None:
    with pytest.raises(CaptureError, match=message) as err:
        parse_filter_dump(spec)
    assert "\n" not in str(err.value)
