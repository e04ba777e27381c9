"""What the task file says after a media error (ATA/ATAPI-6 "Error outputs": the address
registers name the first failing sector, in the addressing the command used), and the
channel's side of a DMA command: the handoff to the bus master and the executor contract
(one completion per request; a second one is an executor bug and must change nothing)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pyhvm.devices.ata import CTL_HOB, AtaChannel
from pyhvm.devices.ata_disk import ERR_ABRT, ERR_UNC, SECTOR_SIZE, ST_BSY, ST_DRQ, ST_ERR, \
    ST_READY
from pyhvm.devices.blockio import (BlockIOError, DiskRequest, DiskResult, DiskStatus,
                                   SyncExecutor)
from tests.fakes import FakeIrq
from tests.unit.test_ata import (COUNT, DEVICE, ERROR, LBA_HIGH, LBA_LOW, LBA_MID,
                                 AtaDisk, FailingBackend, Harness, SparseBackend, StrictMemory,
                                 contents, disk_of)

READ_SECTORS, READ_SECTORS_EXT, READ_DMA = 0x20, 0x24, 0xC8


class FailingFrom(SparseBackend):
    """A huge sparse disk whose reads fail from sector `bad` on."""

    def __init__(self, size: int, bad: int) -> None:
        super().__init__(size)
        self.bad = bad

    def read(self, offset: int, length: int) -> bytes:
        if offset + length > self.bad * SECTOR_SIZE:
            raise BlockIOError("medium error")
        return super().read(offset, length)


def task_file(h: Harness) -> list[int]:
    return [h.reg(reg) for reg in (LBA_LOW, LBA_MID, LBA_HIGH)]


def test_lba48_error_names_the_failing_sector_in_current_and_previous_registers() -> None:
    """READ SECTORS EXT of 300 sectors: the first 256 arrive, the second chunk fails, and all
    six address bytes (HOB included) now name sector start + 256, across a 2^40 carry."""
    start = 0xFF_FFFF_FF80
    h = Harness(AtaDisk(FailingFrom((start + 1024) * SECTOR_SIZE, bad=start + 256)))
    h.lba48(start, 300)
    h.command(READ_SECTORS_EXT)
    for _ in range(256):
        h.read_block()
    assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_UNC
    bad = start + 256
    assert task_file(h) == [bad & 0xFF, (bad >> 8) & 0xFF, (bad >> 16) & 0xFF]
    h.control(CTL_HOB)
    assert task_file(h) == [(bad >> 24) & 0xFF, (bad >> 32) & 0xFF, (bad >> 40) & 0xFF]


def test_chs_error_leaves_the_chs_address_of_the_failing_sector() -> None:
    """In CHS addressing the registers hold cylinder, head and sector; a failure at the first
    sector leaves them as written (they already name it), never an LBA."""
    h = Harness(AtaDisk(FailingBackend(16 * 63 * 4 * SECTOR_SIZE)))
    h.set(DEVICE, 0x02)      # CHS, head 2
    h.set(COUNT, 1)
    h.set(LBA_LOW, 5)        # sector 5
    h.set(LBA_MID, 1)        # cylinder 1
    h.set(LBA_HIGH, 0)
    h.command(READ_SECTORS)
    assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_UNC
    assert task_file(h) == [5, 1, 0] and h.reg(DEVICE) & 0x4F == 0x02


def test_a_second_completion_of_one_request_is_ignored() -> None:
    """An executor that completes a read twice (OK, then an I/O error) must not turn a good
    read into a failed one or raise a second interrupt."""
    disk = disk_of(8)
    memory = StrictMemory(0)

    def twice(request: DiskRequest, complete: Callable[[DiskResult], None]) -> None:
        complete(SyncExecutor(memory).perform(request))
        complete(DiskResult(DiskStatus.IO_ERROR, detail="late duplicate"))

    h = Harness(disk, executor=twice)
    h.lba28(2, 1)
    h.command(READ_SECTORS)
    assert h.status() == ST_READY | ST_DRQ and h.irq.rising_edges == 1
    assert h.read_block() == contents(disk).data[2 * 512:3 * 512]
    assert h.status() == ST_READY


def test_dma_command_waits_for_the_bus_master_then_moves_its_segments() -> None:
    """READ DMA asserts DMARQ (BSY, `pending_dma`) and moves nothing until the bus master
    hands over segments covering the transfer exactly."""
    disk = disk_of(16)
    memory = StrictMemory(0x10000)
    h = Harness(disk, executor=SyncExecutor(memory))  # a channel without a bus master
    channel, irq = h.channel, h.irq
    h.lba28(3, 2)
    h.command(READ_DMA)
    assert h.alt() == ST_BSY and not irq.level
    pending = channel.pending_dma()
    assert pending is not None and pending.to_memory and pending.length == 2 * SECTOR_SIZE
    with pytest.raises(ValueError, match="exactly"):
        channel.start_dma(((0x1000, SECTOR_SIZE),))  # a bus master bug: half the transfer
    assert not any(memory.data) and h.alt() == ST_BSY
    channel.start_dma(((0x1000, SECTOR_SIZE), (0x8000, SECTOR_SIZE)))
    assert memory.data[0x1000:0x1200] == contents(disk).data[3 * 512:4 * 512]
    assert memory.data[0x8000:0x8200] == contents(disk).data[4 * 512:5 * 512]
    assert h.status() == ST_READY and irq.rising_edges == 1
    assert channel.pending_dma() is None
    with pytest.raises(RuntimeError, match="without a DMA command"):
        channel.start_dma(((0x1000, SECTOR_SIZE),))


def test_bus_master_failure_aborts_a_waiting_dma_command_once() -> None:
    disk = disk_of(16)
    h = Harness(disk)
    h.lba28(3, 1)
    h.command(READ_DMA)
    h.channel.fail_dma()  # a bad PRD table: ABRT
    assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_ABRT
    assert h.irq.rising_edges == 1
    h.channel.fail_dma()  # nothing waits any more: no second interrupt, no change
    assert h.alt() == ST_READY | ST_ERR and h.irq.rising_edges == 1


def test_one_disk_cannot_be_master_and_slave() -> None:
    disk = disk_of()
    with pytest.raises(ValueError, match="both master and slave"):
        AtaChannel(FakeIrq(), SyncExecutor(StrictMemory(0)), disk, disk)
