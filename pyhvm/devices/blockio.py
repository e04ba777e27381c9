"""The block-I/O ports shared by disk models: backends, requests, results, executors.

A disk model never does I/O. It hands a `DiskRequest` to an executor (`DiskExecutor`) and
gets a `DiskResult` back through a completion callback, so the same model serves every
placement: `SyncExecutor` here performs the request at once in the caller's thread (the vCPU's,
under the device lock) and completes before returning; a concurrent executor (in
pyhvm/backends) hands it to a worker and calls the completion later from the event loop, with
the device lock held. Requests name guest memory as (gpa, length) segments so a concurrent
executor can preadv/pwritev straight into `DmaMemory.view`s of guest RAM, and name the backend
they are for, so one executor serves every disk.

Executor contract: call the completion exactly once per request; never raise (failures are
results: IO_ERROR for the backend, DMA_ERROR for a segment that is not RAM, in which case no
data may move); check every segment before touching the backend; perform requests of one
channel in the order given (the model issues at most one at a time per channel, so a FLUSH is
only ever issued after every earlier write completed).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pyhvm.devices.base import GuestError


class BlockIOError(OSError):
    """The backend could not read, write or flush; the guest sees a media error."""


class BlockBackend(Protocol):
    """A disk's contents. Errors raise OSError (`BlockIOError` or the host's own)."""

    @property
    def size(self) -> int:
        """Bytes; a trailing partial sector is not addressable."""
        ...

    @property
    def readonly(self) -> bool: ...

    def read(self, offset: int, length: int) -> bytes: ...

    def write(self, offset: int, data: bytes | memoryview) -> None: ...

    def flush(self) -> None:
        """Return once every completed write is durable."""
        ...


class MemoryBackend:
    """A disk in a bytearray: pure, for tests and scratch disks. Counts flushes."""

    def __init__(self, data: bytes | bytearray | int, *, readonly: bool = False) -> None:
        self.data = bytearray(data)
        self._readonly = readonly
        self.flushes = 0

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def readonly(self) -> bool:
        return self._readonly

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > len(self.data):
            raise BlockIOError(f"range {offset}+{length} outside the {len(self.data)}-byte disk")

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return bytes(self.data[offset:offset + length])

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        if self._readonly:
            raise BlockIOError("read-only disk")
        self._check(offset, len(data))
        self.data[offset:offset + len(data)] = data

    def flush(self) -> None:
        self.flushes += 1


# -- the executor port ------------------------------------------------------------------------

class DiskOp(enum.Enum):
    READ = "read"  # backend -> guest (DMA segments or PIO buffer)
    WRITE = "write"  # guest -> backend
    FLUSH = "flush"  # make every completed write durable


@dataclass(frozen=True, eq=False)
class DiskRequest:
    """One backend operation. DMA names guest-physical `segments` (gpa, length) whose lengths
    sum to `length`, for preadv/pwritev straight into `DmaMemory.view`s; PIO names `buffer`
    (filled by a read, the source of a write). `fua`: the write must be durable before it
    completes (the drive's write cache is disabled)."""

    op: DiskOp
    backend: BlockBackend
    offset: int = 0  # bytes
    length: int = 0  # bytes
    segments: tuple[tuple[int, int], ...] = ()
    buffer: bytearray | None = None
    fua: bool = False


class DiskStatus(enum.Enum):
    OK = "ok"
    IO_ERROR = "io-error"  # the backend failed: a media error for the guest
    DMA_ERROR = "dma-error"  # a segment is not guest RAM: no data moved


@dataclass(frozen=True)
class DiskResult:
    status: DiskStatus = DiskStatus.OK
    transferred: int = 0  # bytes known good before an I/O error (0 if unknown)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is DiskStatus.OK


DiskCompletion = Callable[[DiskResult], None]
# Performs the request, then calls the completion exactly once (before returning, or later
# from the event loop with the device lock held). It must not raise: failures are results.
DiskExecutor = Callable[[DiskRequest, DiskCompletion], None]


class DmaMemory(Protocol):
    """Guest memory as DMA sees it; out-of-range raises a `GuestError` (GuestMemoryError)."""

    def read(self, gpa: int, size: int) -> bytes: ...

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None: ...

    def view(self, gpa: int, size: int) -> memoryview: ...


def dma_views(memory: DmaMemory, segments: tuple[tuple[int, int], ...]) -> list[memoryview]:
    """A view for every segment, all checked before any is used; raises GuestError."""
    return [memory.view(gpa, length) for gpa, length in segments]


# -- the reference executor ------------------------------------------------------------------

class SyncExecutor:
    """Performs each request at once in the caller's thread (the vCPU's, under the device
    lock) and completes before returning: the "DMA in the vCPU thread" placement.

    Every DMA segment is checked (as a view) before the backend is touched; a segment that is
    not RAM yields a DMA_ERROR result and moves no data. Backend OSErrors yield IO_ERROR. It
    never raises.
    """

    def __init__(self, memory: DmaMemory) -> None:
        self._memory = memory

    def __call__(self, request: DiskRequest, complete: DiskCompletion) -> None:
        complete(self.perform(request))

    def perform(self, request: DiskRequest) -> DiskResult:
        try:
            views = dma_views(self._memory, request.segments)
        except GuestError as error:
            return DiskResult(DiskStatus.DMA_ERROR, detail=str(error))
        backend = request.backend
        try:
            if request.op is DiskOp.FLUSH:
                backend.flush()
            elif request.op is DiskOp.READ:
                data = backend.read(request.offset, request.length)
                if len(data) != request.length:
                    return DiskResult(DiskStatus.IO_ERROR, detail="short read")
                if request.buffer is not None:
                    request.buffer[:] = data
                else:
                    _scatter(data, views)
            else:
                source = (memoryview(request.buffer) if request.buffer is not None
                          else b"".join(views))
                backend.write(request.offset, source)
                if request.fua:
                    backend.flush()
        except OSError as error:
            return DiskResult(DiskStatus.IO_ERROR, detail=str(error))
        return DiskResult()


def _scatter(data: bytes, views: list[memoryview]) -> None:
    pos = 0
    for view in views:
        view[:] = data[pos:pos + len(view)]
        pos += len(view)
