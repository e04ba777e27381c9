"""Where disk requests run: the `--ide-dma` placement switch.

- `sync`: `SyncDiskExecutor` performs a request in the vCPU thread inside the exit that
  started it; the guest waits for the whole transfer (the paper's "before").
- `concurrent`: `ConcurrentDiskExecutor` hands it to a worker; the vCPU resumes at once, and
  the completion (status bits, then IRQ 14/15) runs on the event loop (the "after").

Both move data the same way, with `preadv`/`pwritev` straight between the image and
memoryviews of guest RAM (no intermediate copy), every segment checked before any I/O.
"""

from __future__ import annotations

import time

from ..devices.base import GuestError
from ..devices.blockio import (DiskCompletion, DiskOp, DiskRequest, DiskResult, DiskStatus,
                               DmaMemory, dma_views)
from ..runtime.workers import WorkerPool
from ..trace.recorder import Recorder
from ..trace.records import Kind


def perform(memory: DmaMemory, request: DiskRequest) -> DiskResult:
    """Carry out one request; failures come back as results, never as exceptions."""
    try:
        views = dma_views(memory, request.segments)
    except GuestError as error:
        return DiskResult(DiskStatus.DMA_ERROR, detail=str(error))
    backend = request.backend
    try:
        if request.op is DiskOp.FLUSH:
            backend.flush()
        elif request.op is DiskOp.READ:
            if request.buffer is not None:
                request.buffer[:] = backend.read(request.offset, request.length)
            elif hasattr(backend, "readinto"):
                backend.readinto(request.offset, views)
            else:
                data = backend.read(request.offset, request.length)
                position = 0
                for view in views:
                    view[:] = data[position:position + len(view)]
                    position += len(view)
        else:
            if request.buffer is not None:
                backend.write(request.offset, memoryview(request.buffer))
            elif hasattr(backend, "writefrom"):
                backend.writefrom(request.offset, views)
            else:
                backend.write(request.offset, b"".join(views))
            if request.fua:
                backend.flush()
    except OSError as error:
        return DiskResult(DiskStatus.IO_ERROR, detail=str(error))
    finally:
        for view in views:
            view.release()
    return DiskResult(transferred=request.length if request.op is not DiskOp.FLUSH else 0)


OP_CODES = {DiskOp.READ: 1, DiskOp.WRITE: 2, DiskOp.FLUSH: 3}


class _Traced:
    """DMA and backend I/O records for a disk executor, when tracing 'devices'/'backend'."""

    def __init__(self, recorder: Recorder | None, device_id: int) -> None:
        self.devices = recorder if recorder is not None and recorder.wants("devices") else None
        self.backend = recorder if recorder is not None and recorder.wants("backend") else None
        self.device_id = device_id

    def started(self, request: DiskRequest) -> int:
        now = time.monotonic_ns()
        if self.devices is not None and request.segments:
            self.devices.record(Kind.DMA, 0, self.device_id, request.length, 1, ts_ns=now)
        return now

    def performed(self, request: DiskRequest, began: int, ended: int) -> None:
        if self.backend is not None:
            self.backend.record(Kind.BACKEND_IO, ended - began, self.device_id,
                                request.length, OP_CODES[request.op], ts_ns=began)

    def completed(self, request: DiskRequest, started: int) -> None:
        if self.devices is not None and request.segments:
            self.devices.record(Kind.DMA, time.monotonic_ns() - started, self.device_id,
                                request.length, 2, ts_ns=started)


def _timed_perform(memory: DmaMemory, request: DiskRequest, traced: _Traced) -> DiskResult:
    began = time.monotonic_ns()
    result = perform(memory, request)
    traced.performed(request, began, time.monotonic_ns())
    return result


class SyncDiskExecutor:
    mode = "sync"

    def __init__(self, memory: DmaMemory, recorder: Recorder | None = None,
                 device_id: int = 0) -> None:
        self._memory = memory
        self._traced = _Traced(recorder, device_id)
        self.requests = 0

    def __call__(self, request: DiskRequest, complete: DiskCompletion) -> None:
        self.requests += 1
        started = self._traced.started(request)
        result = _timed_perform(self._memory, request, self._traced)
        self._traced.completed(request, started)
        complete(result)

    def close(self) -> None:
        pass


class ConcurrentDiskExecutor:
    mode = "concurrent"

    def __init__(self, memory: DmaMemory, pool: WorkerPool, recorder: Recorder | None = None,
                 device_id: int = 0) -> None:
        self._memory = memory
        self._pool = pool
        self._traced = _Traced(recorder, device_id)
        self.requests = 0

    def __call__(self, request: DiskRequest, complete: DiskCompletion) -> None:
        self.requests += 1
        memory, traced = self._memory, self._traced
        started = traced.started(request)

        def done(result: object) -> None:
            if not isinstance(result, DiskResult):  # `perform` raised: a bug, not the guest
                result = DiskResult(DiskStatus.IO_ERROR, detail=f"internal error: {result!r}")
            traced.completed(request, started)
            complete(result)

        self._pool.submit(lambda: _timed_perform(memory, request, traced), done)

    def close(self) -> None:
        self._pool.close()
