"""Where disk requests run: the `--ide-dma` placement switch.

- `sync`: `SyncDiskExecutor` performs a request in the vCPU thread inside the exit that
  started it; the guest waits for the whole transfer (the paper's "before").
- `concurrent`: `ConcurrentDiskExecutor` hands it to a worker; the vCPU resumes at once, and
  the completion (status bits, then IRQ 14/15) runs on the event loop (the "after").

Both move data the same way, with `preadv`/`pwritev` straight between the image and
memoryviews of guest RAM (no intermediate copy), every segment checked before any I/O.
"""

from __future__ import annotations

from ..devices.base import GuestError
from ..devices.blockio import (DiskCompletion, DiskOp, DiskRequest, DiskResult, DiskStatus,
                               DmaMemory, dma_views)
from ..runtime.workers import WorkerPool


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


class SyncDiskExecutor:
    mode = "sync"

    def __init__(self, memory: DmaMemory) -> None:
        self._memory = memory
        self.requests = 0

    def __call__(self, request: DiskRequest, complete: DiskCompletion) -> None:
        self.requests += 1
        complete(perform(self._memory, request))

    def close(self) -> None:
        pass


class ConcurrentDiskExecutor:
    mode = "concurrent"

    def __init__(self, memory: DmaMemory, pool: WorkerPool) -> None:
        self._memory = memory
        self._pool = pool
        self.requests = 0

    def __call__(self, request: DiskRequest, complete: DiskCompletion) -> None:
        self.requests += 1
        memory = self._memory

        def done(result: object) -> None:
            if not isinstance(result, DiskResult):  # `perform` raised: a bug, not the guest
                result = DiskResult(DiskStatus.IO_ERROR, detail=f"internal error: {result!r}")
            complete(result)

        self._pool.submit(lambda: perform(memory, request), done)

    def close(self) -> None:
        self._pool.close()
