"""The reference executor's failure results (blockio.py "Executor contract": failures are
results, never exceptions, and no data moves on a failure)."""

from __future__ import annotations

from pyhvm.devices.blockio import (DiskOp, DiskRequest, DiskResult, DiskStatus, MemoryBackend,
                                   SyncExecutor)
from tests.unit.test_ata import StrictMemory


class ShrunkBackend(MemoryBackend):
    """An image that got shorter under the VMM: reads near the old end come back short."""

    def read(self, offset: int, length: int) -> bytes:
        return super().read(offset, length)[:length // 2]


def run(executor: SyncExecutor, request: DiskRequest) -> DiskResult:
    results: list[DiskResult] = []
    executor(request, results.append)
    assert len(results) == 1  # exactly one completion, before returning
    return results[0]


def test_write_to_a_read_only_backend_is_an_io_error_and_changes_nothing() -> None:
    memory = StrictMemory(0x2000)
    memory.data[0x1000:0x1200] = b"\xAB" * 512
    backend = MemoryBackend(bytes(4096), readonly=True)
    result = run(SyncExecutor(memory), DiskRequest(DiskOp.WRITE, backend, 512, 512,
                                                   segments=((0x1000, 512),), fua=True))
    assert result.status is DiskStatus.IO_ERROR and "read-only" in result.detail
    assert backend.data == bytes(4096) and backend.flushes == 0


def test_a_short_read_is_an_io_error_and_leaves_guest_memory_alone() -> None:
    memory = StrictMemory(0x2000)
    backend = ShrunkBackend(b"\x5A" * 4096)
    result = run(SyncExecutor(memory), DiskRequest(DiskOp.READ, backend, 0, 1024,
                                                   segments=((0x0, 512), (0x1000, 512))))
    assert result.status is DiskStatus.IO_ERROR and result.detail == "short read"
    assert not any(memory.data)
    buffer = bytearray(1024)
    result = run(SyncExecutor(memory), DiskRequest(DiskOp.READ, backend, 0, 1024,
                                                   buffer=buffer))
    assert result.status is DiskStatus.IO_ERROR and buffer == bytes(1024)


def test_memory_backend_refuses_ranges_outside_the_disk() -> None:
    backend = MemoryBackend(1024)
    for offset, length in ((-1, 1), (0, -1), (1020, 8)):
        result = run(SyncExecutor(StrictMemory(0)),
                     DiskRequest(DiskOp.READ, backend, offset, length, buffer=bytearray(8)))
        assert result.status is DiskStatus.IO_ERROR and "outside" in result.detail
