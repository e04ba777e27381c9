"""The PIIX bus-master IDE function; sections cite SFF-8038i rev 1.0 ("Bus Master Programming
Interface for IDE ATA Controllers") and ATA/ATAPI-6 (T13 1410D)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhvm.devices.ata import CTL_NIEN, CTL_SRST, AtaDisk
from pyhvm.devices.blockio import DiskOp, DiskRequest, DiskResult, DiskStatus, MemoryBackend
from pyhvm.devices.ata_disk import (
    ERR_ABRT,
    ERR_UNC,
    SECTOR_SIZE,
    ST_BSY,
    ST_DRQ,
    ST_ERR,
    ST_READY,
)
from pyhvm.devices.ide import (
    BM_CMD_START,
    BM_CMD_TO_MEMORY,
    BM_ST_ACTIVE,
    BM_ST_DRIVE0_DMA,
    BM_ST_DRIVE1_DMA,
    BM_ST_ERROR,
    BM_ST_INTERRUPT,
    PRD_EOT,
    PiixIde,
    SyncExecutor,
    walk_prd_table,
)
from pyhvm.memory import GuestMemory
from tests.fakes import FakeIrq
from tests.unit.test_ata import (
    COMMAND,
    COUNT,
    DEVICE,
    ERROR,
    LBA_HIGH,
    LBA_LOW,
    LBA_MID,
    STATUS,
    DeferredExecutor,
    FailingBackend,
    SparseBackend,
    StrictMemory,
    pattern,
)

READ_DMA, WRITE_DMA, READ_DMA_EXT, WRITE_DMA_EXT = 0xC8, 0xCA, 0x25, 0x35
RAM = 1 << 20
TABLE = 0x800
FILL = 0xEE


class Rig:
    """PiixIde with a disk on the primary master, guest memory and both IRQ lines."""

    def __init__(self, sectors: int = 256, *, memory: StrictMemory | GuestMemory | None = None,
                 deferred: bool = False, backend: MemoryBackend | SparseBackend | None = None,
                 channel: int = 0, enabled: bool = True) -> None:
        self.memory: Any = memory if memory is not None else StrictMemory(RAM)
        if isinstance(self.memory, StrictMemory):
            self.memory.data[:] = bytes([FILL]) * len(self.memory.data)
        self.backend: Any = backend if backend is not None else MemoryBackend(pattern(sectors))
        self.disk = AtaDisk(self.backend)
        self.executor: Any = (DeferredExecutor(self.memory) if deferred
                              else SyncExecutor(self.memory))
        self.irqs = (FakeIrq(), FakeIrq())
        self.enabled = enabled
        self.ide = PiixIde(self.memory, self.executor, *self.irqs, {(channel, 0): self.disk},
                           bus_master_enabled=lambda: self.enabled)
        self.ch = channel
        self.cmd = self.ide.channels[channel].command_port
        self.ctl = self.ide.channels[channel].control_port
        self.bm = self.ide.bmide_port
        self.base = 8 * channel

    @property
    def irq(self) -> FakeIrq:
        return self.irqs[self.ch]

    def table(self, entries: list[tuple[int, int, bool]], at: int = TABLE) -> None:
        """PRD entries (address, byte count with 0 = 64 KiB, EOT) (SFF-8038i, Figure 2)."""
        for i, (address, count, eot) in enumerate(entries):
            flags = (count & 0xFFFF) | (PRD_EOT if eot else 0)
            self.memory.write(at + 8 * i, struct.pack("<II", address, flags))

    def bm_status(self) -> int:
        return self.bm.read(self.base + 2, 1)

    def bm_command(self, value: int) -> None:
        self.bm.write(self.base, 1, value)

    def ata(self, opcode: int, lba: int, count: int) -> None:
        ext = opcode in (READ_DMA_EXT, WRITE_DMA_EXT)
        self.cmd.write(DEVICE, 1, 0x40)
        if ext:
            self.cmd.write(COUNT, 1, count >> 8)
            for reg, shift in ((LBA_LOW, 24), (LBA_MID, 32), (LBA_HIGH, 40)):
                self.cmd.write(reg, 1, (lba >> shift) & 0xFF)
        self.cmd.write(COUNT, 1, count & 0xFF)
        for reg, shift in ((LBA_LOW, 0), (LBA_MID, 8), (LBA_HIGH, 16)):
            self.cmd.write(reg, 1, (lba >> shift) & 0xFF)
        self.cmd.write(COMMAND, 1, opcode)

    def dma(self, opcode: int, lba: int, count: int, *, table: int = TABLE) -> None:
        """What Linux's bmdma setup/start does: table, direction, ATA command, then start."""
        to_memory = opcode in (READ_DMA, READ_DMA_EXT)
        self.bm.write(self.base + 4, 4, table)
        self.bm_command(BM_CMD_TO_MEMORY if to_memory else 0)
        self.ata(opcode, lba, count)
        self.bm_command((BM_CMD_TO_MEMORY if to_memory else 0) | BM_CMD_START)

    def status(self) -> int:
        return self.cmd.read(STATUS, 1)


def sector_bytes(backend: MemoryBackend, lba: int, count: int) -> bytes:
    return bytes(backend.data[lba * SECTOR_SIZE:(lba + count) * SECTOR_SIZE])


# -- DMA transfers (SFF-8038i "Physical Region Descriptor", "Bus Master IDE Status") -------------

def test_dma_read_scatters_into_several_prd_regions_including_a_64k_one() -> None:
    rig = Rig()
    regions = [(0x1000, 512), (0x20000, 0x10000), (0x40000, 1024)]
    rig.table([(0x1000, 512, False), (0x20000, 0, False), (0x40000, 1024, True)])
    sectors = (512 + 0x10000 + 1024) // SECTOR_SIZE
    rig.dma(READ_DMA, 3, sectors)
    data = sector_bytes(rig.backend, 3, sectors)
    pos = 0
    for address, length in regions:
        assert rig.memory.data[address:address + length] == data[pos:pos + length]
        rig.memory.data[address:address + length] = bytes([FILL]) * length
        pos += length
    rig.memory.data[TABLE:TABLE + 24] = bytes([FILL]) * 24
    assert rig.memory.data == bytes([FILL]) * RAM  # nothing outside the regions changed
    assert rig.bm_status() == BM_ST_INTERRUPT  # Interrupt=1 Active=0: exact table
    assert rig.irq.level and rig.status() == ST_READY and not rig.irq.level
    assert rig.irqs[1].changes == []


def test_dma_write_gathers_from_the_prd_regions() -> None:
    rig = Rig()
    data = pattern(3, seed=42)
    rig.memory.data[0x3000:0x3200] = data[:512]
    rig.memory.data[0x9000:0x9400] = data[512:]
    rig.table([(0x3000, 512, False), (0x9000, 1024, True)])
    rig.dma(WRITE_DMA, 100, 3)
    assert sector_bytes(rig.backend, 100, 3) == data
    assert rig.bm_status() == BM_ST_INTERRUPT and rig.status() == ST_READY


def test_dma_works_on_real_guest_memory() -> None:
    memory = GuestMemory.with_size(2 << 20)
    try:
        rig = Rig(memory=memory)
        rig.table([(0x10000, 2048, True)])
        rig.dma(READ_DMA, 0, 4)
        assert memory.read(0x10000, 2048) == sector_bytes(rig.backend, 0, 4)
        assert rig.bm_status() == BM_ST_INTERRUPT
    finally:
        memory.close()


def test_lba48_dma_ext_on_the_secondary_channel_uses_irq15() -> None:
    backend = SparseBackend((1 << 29) * SECTOR_SIZE)
    rig = Rig(backend=backend, channel=1)
    lba = (1 << 28) + 5
    rig.table([(0x2000, 1024, True)])
    rig.dma(READ_DMA_EXT, lba, 2)
    assert bytes(rig.memory.data[0x2000:0x2008]) == struct.pack("<Q", lba)
    assert rig.bm_status() == BM_ST_INTERRUPT and rig.irqs[1].level
    assert rig.irqs[0].changes == [] and rig.bm.read(2, 1) == 0


def test_long_table_completes_with_active_still_set() -> None:
    """Interrupt=1 Active=1: the drive finished before the PRD regions ran out."""
    rig = Rig()
    rig.table([(0x1000, 512, False), (0x2000, 512, True)])
    rig.dma(READ_DMA, 0, 1)
    assert rig.bm_status() == BM_ST_INTERRUPT | BM_ST_ACTIVE
    assert rig.memory.data[0x2000] == FILL and rig.status() == ST_READY
    rig.bm_command(BM_CMD_TO_MEMORY)  # stop clears Active
    assert rig.bm_status() == BM_ST_INTERRUPT


def test_long_last_entry_counts_as_a_long_table() -> None:
    rig = Rig()
    rig.table([(0x1000, 4096, True)])
    rig.dma(READ_DMA, 0, 2)
    assert rig.bm_status() == BM_ST_INTERRUPT | BM_ST_ACTIVE


def test_short_table_stops_with_interrupt_and_active_clear_and_no_data() -> None:
    """Interrupt=0 Active=0 Error=0: the PRD regions are smaller than the transfer."""
    rig = Rig()
    rig.table([(0x1000, 512, True)])
    rig.dma(READ_DMA, 0, 2)
    assert rig.bm_status() == 0
    assert rig.irq.changes == [] and rig.cmd.read(STATUS, 1) == ST_BSY
    assert rig.memory.data[0x1000:0x1200] == bytes([FILL]) * 512
    rig.ctl.write(0, 1, CTL_SRST)  # the guest's recovery: reset the drive
    rig.ctl.write(0, 1, 0)
    assert rig.status() == ST_READY


def test_restarting_after_a_short_table_walks_the_new_table() -> None:
    rig = Rig()
    rig.table([(0x1000, 512, True)])
    rig.dma(READ_DMA, 0, 2)
    rig.bm_command(BM_CMD_TO_MEMORY)
    rig.table([(0x1000, 1024, True)])
    rig.bm_command(BM_CMD_TO_MEMORY | BM_CMD_START)
    assert rig.bm_status() == BM_ST_INTERRUPT and rig.status() == ST_READY


def test_prd_table_outside_ram_sets_error_and_interrupt() -> None:
    rig = Rig()
    rig.dma(READ_DMA, 0, 1, table=RAM - 4)
    assert rig.bm_status() == BM_ST_ERROR | BM_ST_INTERRUPT
    assert rig.memory.refused == 1
    assert rig.irq.level
    assert rig.status() == ST_READY | ST_ERR and rig.cmd.read(ERROR, 1) == ERR_ABRT


def test_prd_region_outside_ram_moves_no_data_and_sets_error() -> None:
    rig = Rig()
    rig.table([(0x1000, 512, False), (RAM - 512, 1024, True)])
    rig.dma(READ_DMA, 0, 3)
    assert rig.bm_status() == BM_ST_ERROR | BM_ST_INTERRUPT
    assert rig.memory.data[0x1000:0x1200] == bytes([FILL]) * 512
    assert rig.memory.data[RAM - 512:] == bytes([FILL]) * 512
    assert rig.status() == ST_READY | ST_ERR and rig.cmd.read(ERROR, 1) == ERR_ABRT


def test_a_table_without_eot_is_cut_off_after_8192_entries() -> None:
    rig = Rig()
    entry = struct.pack("<II", 0x80000, 2)  # two bytes each, never EOT
    rig.memory.data[0x10000:0x20000] = entry * 8192
    rig.dma(READ_DMA, 0, 64, table=0x10000)  # 32 KiB > 8192 * 2 bytes
    assert rig.bm_status() == BM_ST_ERROR | BM_ST_INTERRUPT
    assert rig.memory.data[0x80000] == FILL


def test_walk_merges_adjacent_regions_and_ignores_bit_0() -> None:
    memory = StrictMemory(0x1000)
    memory.write(0, struct.pack("<IIII", 0x101, 0x200, 0x300, PRD_EOT | 0x101))
    walk = walk_prd_table(memory, 0, 0x300)
    assert walk.segments == ((0x100, 0x300),) and walk.exhausted and walk.covered == 0x300


def test_walk_refuses_a_region_past_4_gib() -> None:
    memory = StrictMemory(0x1000)
    memory.write(0, struct.pack("<II", 0xFFFF_FF00, PRD_EOT | 0x200))
    assert walk_prd_table(memory, 0, 0x200).fault


def test_direction_bit_disagreeing_with_the_command_is_an_error() -> None:
    rig = Rig()
    rig.table([(0x1000, 512, True)])
    rig.bm.write(4, 4, TABLE)
    rig.ata(READ_DMA, 0, 1)
    rig.bm_command(BM_CMD_START)  # "read memory" for an ATA read
    assert rig.bm_status() == BM_ST_ERROR | BM_ST_INTERRUPT
    assert rig.memory.data[0x1000] == FILL


def test_start_before_the_command_waits_for_the_drive() -> None:
    rig = Rig()
    rig.table([(0x1000, 512, True)])
    rig.bm.write(4, 4, TABLE)
    rig.bm_command(BM_CMD_TO_MEMORY | BM_CMD_START)
    assert rig.bm_status() == BM_ST_ACTIVE
    rig.ata(READ_DMA, 7, 1)
    assert rig.memory.data[0x1000:0x1200] == sector_bytes(rig.backend, 7, 1)
    assert rig.bm_status() == BM_ST_INTERRUPT


def test_nothing_moves_until_bus_mastering_is_enabled() -> None:
    rig = Rig(enabled=False)
    rig.table([(0x1000, 512, True)])
    rig.dma(READ_DMA, 0, 1)
    assert rig.bm_status() == BM_ST_ACTIVE and rig.status() == ST_BSY
    rig.ide.bus_master_changed()  # still disabled
    assert rig.memory.data[0x1000] == FILL
    rig.enabled = True
    rig.ide.bus_master_changed()
    assert rig.bm_status() == BM_ST_INTERRUPT and rig.status() == ST_READY


def test_io_error_during_dma_reports_unc_and_leaves_active() -> None:
    rig = Rig(backend=FailingBackend(64 * SECTOR_SIZE))
    rig.table([(0x1000, 512, True)])
    rig.dma(READ_DMA, 9, 1)
    assert rig.bm_status() == BM_ST_INTERRUPT | BM_ST_ACTIVE
    assert rig.status() == ST_READY | ST_ERR and rig.cmd.read(ERROR, 1) == ERR_UNC
    assert rig.cmd.read(LBA_LOW, 1) == 9


def test_nien_keeps_both_the_line_and_the_interrupt_bit_clear() -> None:
    """The bit samples the IDE interrupt pin, which nIEN tri-states (ATA-6 "nIEN")."""
    rig = Rig()
    rig.ctl.write(0, 1, CTL_NIEN)
    rig.table([(0x1000, 512, True)])
    rig.dma(READ_DMA, 0, 1)
    assert rig.bm_status() == 0 and rig.irq.changes == []
    assert rig.ctl.read(0, 1) == ST_READY


def test_status_is_set_before_the_interrupt_rises() -> None:
    rig = Rig()
    seen: list[tuple[int, int]] = []
    line = rig.irqs[0]
    original = line.set_level

    def spy(level: bool) -> None:
        if level:
            seen.append((rig.ctl.read(0, 1), rig.bm_status()))
        original(level)

    line.set_level = spy  # type: ignore[method-assign]
    rig.table([(0x1000, 512, True)])
    rig.dma(READ_DMA, 0, 1)
    assert seen == [(ST_READY, BM_ST_INTERRUPT)]


def test_concurrent_completion_raises_the_interrupt_later() -> None:
    rig = Rig(deferred=True)
    rig.table([(0x1000, 1024, True)])
    rig.dma(READ_DMA, 2, 2)
    assert rig.bm_status() == BM_ST_ACTIVE and rig.status() == ST_BSY
    request = rig.executor.queue[0][0]
    assert request.op is DiskOp.READ and request.segments == ((0x1000, 1024),)
    assert (request.offset, request.length) == (1024, 1024)
    rig.executor.complete()
    assert rig.irq.level and rig.bm_status() == BM_ST_INTERRUPT
    assert rig.memory.data[0x1000:0x1400] == sector_bytes(rig.backend, 2, 2)


def test_stopping_the_engine_mid_transfer_leaves_its_bits_alone() -> None:
    rig = Rig(deferred=True)
    rig.table([(0x1000, 512, True)])
    rig.dma(READ_DMA, 0, 1)
    rig.bm_command(BM_CMD_TO_MEMORY)  # stop while the executor holds the request
    assert rig.bm_status() == 0
    rig.executor.complete()
    assert rig.bm_status() == BM_ST_INTERRUPT  # the drive's interrupt still latches
    assert rig.status() == ST_READY


def test_srst_during_an_in_flight_dma_waits_for_it_then_resets() -> None:
    rig = Rig(deferred=True)
    rig.table([(0x1000, 512, True)])
    rig.dma(WRITE_DMA, 0, 1)
    rig.ctl.write(0, 1, CTL_SRST)
    rig.ctl.write(0, 1, 0)
    assert rig.status() == ST_BSY
    rig.executor.complete()
    assert rig.status() == ST_READY and not rig.irq.level  # a reset, not a completion
    assert rig.cmd.read(COUNT, 1) == 1 and rig.cmd.read(LBA_LOW, 1) == 1


def test_pio_interrupts_set_the_interrupt_bit_too() -> None:
    rig = Rig()
    rig.cmd.write(COMMAND, 1, 0xE1)  # IDLE IMMEDIATE
    assert rig.bm_status() == BM_ST_INTERRUPT


# -- register semantics (SFF-8038i "Bus Master IDE Command/Status/PRD Table Address") -------------

def test_status_bits_w1c_rw_and_read_only() -> None:
    rig = Rig()
    rig.table([(0x1000, 512, True)])
    rig.dma(READ_DMA, 0, 1, table=RAM)  # table outside RAM: error + interrupt
    assert rig.bm_status() == BM_ST_ERROR | BM_ST_INTERRUPT
    rig.bm.write(2, 1, BM_ST_INTERRUPT | BM_ST_DRIVE0_DMA | BM_ST_ACTIVE | 0x80)
    assert rig.bm_status() == BM_ST_ERROR | BM_ST_DRIVE0_DMA
    rig.bm.write(2, 1, BM_ST_ERROR | BM_ST_DRIVE1_DMA)
    assert rig.bm_status() == BM_ST_DRIVE1_DMA


def test_command_reserved_bits_read_zero_and_prd_address_is_dword_aligned() -> None:
    rig = Rig()
    rig.bm.write(0, 1, 0xFE)
    assert rig.bm.read(0, 1) == BM_CMD_TO_MEMORY
    rig.bm.write(4, 4, 0x1234_5677)
    assert rig.bm.read(4, 4) == 0x1234_5674
    rig.bm.write(6, 2, 0xABCD)
    assert rig.bm.read(4, 4) == 0xABCD_5674
    assert rig.bm.read(1, 1) == 0 and rig.bm.read(3, 1) == 0
    assert rig.bm.read(14, 4) == 0xFFFF_0000 | rig.bm.read(14, 2)


def test_direction_cannot_change_while_active() -> None:
    rig = Rig()
    rig.bm_command(BM_CMD_START)
    rig.bm_command(BM_CMD_START | BM_CMD_TO_MEMORY)
    assert rig.bm.read(0, 1) == BM_CMD_START


def test_reset_clears_the_bus_master() -> None:
    rig = Rig()
    rig.bm.write(4, 4, 0x1000)
    rig.bm_command(BM_CMD_START)
    rig.ide.reset()
    assert rig.bm.read(0, 4) == 0 and rig.bm.read(4, 4) == 0
    assert rig.status() == ST_READY


def test_constructor_refuses_bad_slots_and_shared_disks() -> None:
    memory = StrictMemory(16)
    disk = AtaDisk(MemoryBackend(4096))
    with pytest.raises(ValueError):
        PiixIde(memory, SyncExecutor(memory), FakeIrq(), FakeIrq(), {(2, 0): disk})
    with pytest.raises(ValueError):
        PiixIde(memory, SyncExecutor(memory), FakeIrq(), FakeIrq(), {(0, 0): disk, (1, 0): disk})
    ide = PiixIde(memory, SyncExecutor(memory), FakeIrq(), FakeIrq())
    assert [(base, size) for base, size, _, _ in ide.legacy_ports()] == [
        (0x1F0, 8), (0x3F6, 1), (0x170, 8), (0x376, 1)]


def test_sync_executor_reports_failures_instead_of_raising() -> None:
    memory = StrictMemory(4096)
    executor = SyncExecutor(memory)
    backend = MemoryBackend(4096)
    bad = DiskRequest(DiskOp.READ, backend, 0, 1024, segments=((0, 512), (4000, 512)))
    assert executor.perform(bad).status is DiskStatus.DMA_ERROR
    past = DiskRequest(DiskOp.READ, backend, 4096, 512, segments=((0, 512),))
    assert executor.perform(past).status is DiskStatus.IO_ERROR
    results: list[DiskResult] = []
    executor(DiskRequest(DiskOp.FLUSH, backend), results.append)
    assert results == [DiskResult()] and backend.flushes == 1


# -- never raise, never leave RAM, never BSY with DRQ (property) -----------------------------------

class CheckedBackend(MemoryBackend):
    """Fails the test (not the request) if the model asks for bytes outside the disk."""

    def _check(self, offset: int, length: int) -> None:
        assert offset >= 0 and length >= 0 and offset + length <= len(self.data), (
            f"model asked for {offset}+{length} of a {len(self.data)}-byte disk")


class OneAtATime(DeferredExecutor):
    """Fails the test if a channel has two requests with the executor at once."""

    def __call__(self, request: DiskRequest, complete) -> None:  # type: ignore[no-untyped-def]
        assert all(queued.backend is not request.backend for queued, _ in self.queue)
        super().__call__(request, complete)


FUZZ_RAM = 0x40000
OPCODES = [0x20, 0x24, 0x29, 0x30, 0x34, 0x39, 0x40, 0x42, 0xC4, 0xC5, 0xC6, 0xC8, 0xCA,
           0x25, 0x35, 0xE5, 0xE7, 0xEA, 0xEC, 0xEF, 0x90, 0x91, 0x00, 0xFF]
address = st.one_of(st.sampled_from([0x2000, 0x10000, FUZZ_RAM - 512, FUZZ_RAM]),
                    st.integers(0, FUZZ_RAM + 0x1000), st.integers(0, 0xFFFF_FFFF))
small = st.one_of(st.sampled_from([0, 512, 1024]), st.integers(0, 0xFFFF))
entries = st.lists(st.tuples(address, small, st.booleans()), min_size=1, max_size=6)
tables = st.sampled_from([0, 0x100, 0x1000, FUZZ_RAM - 16, FUZZ_RAM - 4, FUZZ_RAM + 0x100])
dma_op = st.tuples(st.just("dma"), st.integers(0, 1), st.integers(0, 1), st.booleans(),
                   st.integers(0, 300), st.integers(1, 4), tables, st.booleans(),
                   st.one_of(st.none(), entries))
prd_op = st.tuples(st.just("prd"), tables, entries)
fuzz_op = st.one_of(
    dma_op, prd_op, dma_op, prd_op,
    st.tuples(st.just("ata"), st.integers(0, 1), st.integers(0, 1), st.sampled_from(OPCODES),
              st.integers(0, 400), st.integers(0, 300)),
    st.tuples(st.just("bm"), st.integers(0, 15), st.sampled_from([1, 2, 4]),
              st.one_of(st.integers(0, 0xFFFF_FFFF), st.sampled_from([1, 9, 0x8, 0x6]))),
    st.tuples(st.just("bmread"), st.integers(0, 15), st.sampled_from([1, 2, 4])),
    st.tuples(st.just("reg"), st.integers(0, 1), st.integers(0, 7), st.sampled_from([1, 2, 4]),
              st.integers(0, 0xFFFF_FFFF)),
    st.tuples(st.just("read"), st.integers(0, 1), st.integers(0, 7), st.sampled_from([1, 2, 4])),
    st.tuples(st.just("ctl"), st.integers(0, 1), st.sampled_from([0, 2, 4, 0x80, 0xFF])),
    st.tuples(st.just("data"), st.integers(0, 1), st.integers(1, 600)),
    st.tuples(st.just("complete"), st.sampled_from(["ok", "io", "dma"])),
    st.tuples(st.just("enable"), st.booleans()),
)


def _write_prd(memory: StrictMemory, at: int, prd: list[tuple[int, int, bool]]) -> None:
    for i, (base, count, eot) in enumerate(prd):
        if at + 8 * i + 8 <= FUZZ_RAM:
            memory.write(at + 8 * i, struct.pack("<II", base, count | eot << 31))


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(fuzz_op, max_size=40), deferred=st.booleans())
def test_random_register_prd_and_memory_sequences_keep_the_invariants(
        ops: list[tuple], deferred: bool) -> None:
    memory = StrictMemory(FUZZ_RAM)
    executor: Any = OneAtATime(memory) if deferred else SyncExecutor(memory)
    disks = {slot: AtaDisk(CheckedBackend(300 * SECTOR_SIZE))
             for slot in ((0, 0), (0, 1), (1, 0))}  # (1, 1) absent
    enabled = [True]
    irqs = (FakeIrq(), FakeIrq())
    ide = PiixIde(memory, executor, *irqs, disks, bus_master_enabled=lambda: enabled[0])
    for op in ops:
        kind = op[0]
        if kind == "dma":
            _, ch, slot, read, lba, count, table, flip, prd = op
            if prd is not None:
                _write_prd(memory, table, prd)
            port = ide.channels[ch].command_port
            direction = 0x08 if read != flip else 0
            ide.bmide_port.write(8 * ch + 4, 4, table)
            ide.bmide_port.write(8 * ch, 1, direction)
            for reg, value in ((DEVICE, 0x40 | slot << 4), (COUNT, count), (LBA_LOW, lba),
                               (LBA_MID, lba >> 8), (COMMAND, 0xC8 if read else 0xCA)):
                port.write(reg, 1, value & 0xFF)
            ide.bmide_port.write(8 * ch, 1, direction | 1)
        elif kind == "ata":
            _, ch, slot, opcode, lba, count = op
            port = ide.channels[ch].command_port
            port.write(DEVICE, 1, 0x40 | slot << 4)
            for reg, value in ((COUNT, count >> 8), (COUNT, count), (LBA_LOW, lba),
                               (LBA_MID, lba >> 8), (LBA_HIGH, 0), (COMMAND, opcode)):
                port.write(reg, 1, value & 0xFF)
        elif kind == "prd":
            _write_prd(memory, op[1], op[2])
        elif kind == "bm":
            ide.bmide_port.write(op[1], op[2], op[3] & ((1 << (8 * op[2])) - 1))
        elif kind == "bmread":
            assert 0 <= ide.bmide_port.read(op[1], op[2]) < 1 << (8 * op[2])
        elif kind == "reg":
            ide.channels[op[1]].command_port.write(op[2], op[3], op[4] & ((1 << (8 * op[3])) - 1))
        elif kind == "read":
            assert 0 <= ide.channels[op[1]].command_port.read(op[2], op[3]) < 1 << (8 * op[3])
        elif kind == "ctl":
            ide.channels[op[1]].control_port.write(0, 1, op[2])
        elif kind == "data":
            port = ide.channels[op[1]].command_port
            for _ in range(op[2]):
                port.write(0, 2, 0xA5A5)
                assert 0 <= port.read(0, 2) <= 0xFFFF
        elif kind == "complete" and deferred and executor.queue:
            result = {"ok": None, "io": DiskResult(DiskStatus.IO_ERROR),
                      "dma": DiskResult(DiskStatus.DMA_ERROR)}[op[1]]
            executor.complete(result)
        elif kind == "enable":
            enabled[0] = op[1]
            ide.bus_master_changed()
        for channel in ide.channels:
            for disk in channel.disks:
                if disk is not None:
                    assert 0 <= disk.status <= 0xFF
                    assert not (disk.status & ST_BSY and disk.status & ST_DRQ)
            assert 0 <= channel.control_port.read(0, 1) <= 0xFF
        for bus_master in ide.bus_masters:
            assert 0 <= bus_master.status <= 0xFF and bus_master.prd_address % 4 == 0
