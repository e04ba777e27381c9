"""The recorder: per-thread buffers of fixed-size records, flushed to one file.

Each thread that reports gets its own `ThreadBuffer` (no lock on the hot path: a
`struct.pack_into` into a preallocated bytearray); a full buffer is appended to the file
under the file lock. Event sites hold either a buffer or None, so with tracing off a site
costs one attribute check and nothing else.
"""

from __future__ import annotations

import threading
import time
from typing import Any, BinaryIO

from .records import EVENT_GROUPS, NO_CPU, RECORD, Kind, write_preamble

BUFFER_RECORDS = 4096


class ThreadBuffer:
    __slots__ = ("_recorder", "_data", "_offset", "cpu", "_pack")

    def __init__(self, recorder: "Recorder", cpu: int) -> None:
        self._recorder = recorder
        self._data = bytearray(RECORD.size * BUFFER_RECORDS)
        self._offset = 0
        self._pack = RECORD.pack_into
        self.cpu = cpu

    def add(self, kind: int, ts_ns: int, dur_ns: int = 0, a: int = 0, b: int = 0,
            c: int = 0) -> None:
        self._pack(self._data, self._offset, ts_ns, dur_ns, kind, self.cpu, a & 0xFFFF,
                   b & 0xFFFFFFFFFFFFFFFF, c & 0xFFFFFFFFFFFFFFFF)
        self._offset += RECORD.size
        if self._offset == len(self._data):
            self.flush()

    def flush(self) -> None:
        if self._offset:
            self._recorder._write(memoryview(self._data)[:self._offset])
            self._offset = 0


class Recorder:
    """One trace file. `events` are the --trace-events groups that are on."""

    def __init__(self, f: BinaryIO, events: tuple[str, ...]) -> None:
        unknown = set(events) - set(EVENT_GROUPS)
        if unknown:
            raise ValueError(f"unknown trace event groups {sorted(unknown)}: choose from "
                             f"{', '.join(EVENT_GROUPS)}")
        self.events = frozenset(events)
        self._file = f
        self._lock = threading.Lock()
        self._buffers: list[ThreadBuffer] = []
        self._local = threading.local()

    def start(self, header: dict[str, Any]) -> None:
        """Write the self-describing header; call once, before the first record."""
        write_preamble(self._file, dict(header, events=sorted(self.events),
                                        start_ns=time.monotonic_ns()))

    def wants(self, group: str) -> bool:
        return group in self.events

    def buffer(self, cpu: int = NO_CPU) -> ThreadBuffer:
        """This thread's buffer (created on first use)."""
        buf = getattr(self._local, "buffer", None)
        if buf is None:
            buf = ThreadBuffer(self, cpu)
            self._local.buffer = buf
            with self._lock:
                self._buffers.append(buf)
        return buf

    def record(self, kind: Kind, dur_ns: int = 0, a: int = 0, b: int = 0, c: int = 0,
               ts_ns: int | None = None) -> None:
        """Convenience for cold paths: record on the calling thread's buffer."""
        self.buffer().add(kind, time.monotonic_ns() if ts_ns is None else ts_ns, dur_ns,
                          a, b, c)

    def _write(self, data: memoryview) -> None:
        with self._lock:
            self._file.write(data)

    def close(self) -> None:
        """Flush every buffer (the threads that own them have stopped) and the file."""
        with self._lock:
            buffers = list(self._buffers)
        for buf in buffers:
            buf.flush()
        self._file.flush()
        self._file.close()
