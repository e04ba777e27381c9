"""The IDE / ATA / bus-master DMA bugs other VMMs shipped, replayed against pyhvm's PIIX IDE:
one test per bug class. Each plays the guest's part of the published reproducer register by
register, with a memory that refuses (and counts) every access outside RAM, and checks the
rule that keeps pyhvm out of it. docs/security/device-bugs.md ("IDE / ATA / bus-master DMA")
says what each bug was, where, and which rule answers it."""

from __future__ import annotations

import pytest

from pyhvm.devices.ata import CTL_SRST, AtaDisk
from pyhvm.devices.ata_disk import ERR_ABRT, ERR_IDNF, SECTOR_SIZE, ST_BSY, ST_ERR, ST_READY
from pyhvm.devices.blockio import MemoryBackend
from pyhvm.devices.ide import (
    BM_CMD_START,
    BM_CMD_TO_MEMORY,
    BM_ST_ERROR,
    BM_ST_INTERRUPT,
    PRD_MAX_ENTRIES,
    PiixIde,
)
from tests.fakes import FakeIrq
from tests.unit.test_ata import COMMAND, DATA, DEVICE, ERROR, DeferredExecutor, StrictMemory, pattern
from tests.unit.test_ide import FILL, RAM, READ_DMA, READ_DMA_EXT, TABLE, WRITE_DMA, Rig

WRITE_SECTORS, READ_SECTORS = 0x30, 0x20
PACKET, IDENTIFY_PACKET, READ_NATIVE_MAX, READ_NATIVE_MAX_EXT = 0xA0, 0xA1, 0xF8, 0x27
DATA_SET_MANAGEMENT = 0x06  # TRIM: the "DMA discard" of QEMU work item 4052


def untouched(rig: Rig, *, except_table: int = 0) -> bool:
    """Guest RAM holds only the fill byte, but for the first `except_table` PRD bytes."""
    data = bytearray(rig.memory.data)
    data[TABLE:TABLE + except_table] = bytes([FILL]) * except_table
    return data == bytes([FILL]) * RAM


# -- 1. PIO data past the end of the transfer buffer (CVE-2015-5154 / XSA-138) --------------

def test_cve_2015_5154_data_port_beyond_the_transfer_touches_no_buffer() -> None:
    """QEMU left DRQ and the end-of-transfer hook set after some commands, so the guest kept
    writing the data port past the end of the I/O buffer (heap overflow). pyhvm's data port
    moves bytes only in a PIO phase, and a phase's buffer is sized for its DRQ block."""
    rig = Rig(sectors=8)
    before = bytes(rig.backend.data)
    rig.ata(WRITE_SECTORS, 2, 1)
    for _ in range(SECTOR_SIZE // 2 + 100_000):  # one sector's words, then 100k more
        rig.cmd.write(DATA, 2, 0x4141)
    assert rig.status() == ST_READY  # completed once, after exactly 256 words
    assert bytes(rig.backend.data[2 * SECTOR_SIZE:3 * SECTOR_SIZE]) == b"\x41" * SECTOR_SIZE
    assert rig.backend.data[:2 * SECTOR_SIZE] == before[:2 * SECTOR_SIZE]
    assert rig.backend.data[3 * SECTOR_SIZE:] == before[3 * SECTOR_SIZE:]
    channel = rig.ide.channels[0]
    assert len(channel._buffer) == 0  # no buffer grew behind the guest's back
    # Reads past a PIO-in transfer float; non-data commands leave no data phase open.
    rig.ata(READ_SECTORS, 0, 1)
    words = [rig.cmd.read(DATA, 2) for _ in range(SECTOR_SIZE // 2 + 1000)]
    assert words[SECTOR_SIZE // 2:] == [0xFFFF] * 1000
    rig.cmd.write(COMMAND, 1, 0xE0)  # STANDBY IMMEDIATE: no data
    rig.cmd.write(DATA, 2, 0x4242)
    assert rig.cmd.read(DATA, 2) == 0xFFFF and len(channel._buffer) == 0


def test_cve_2015_5154_data_port_while_a_block_is_with_the_executor_is_ignored() -> None:
    """With the block handed to a concurrent executor (BSY), further data writes must not
    land in the buffer the executor is writing from."""
    rig = Rig(sectors=8, deferred=True)
    rig.ata(WRITE_SECTORS, 0, 1)
    for _ in range(SECTOR_SIZE // 2):
        rig.cmd.write(DATA, 2, 0x5151)
    assert rig.status() & ST_BSY
    for _ in range(1000):
        rig.cmd.write(DATA, 2, 0x6666)
    rig.executor.complete()
    assert bytes(rig.backend.data[:SECTOR_SIZE]) == b"\x51" * SECTOR_SIZE
    assert rig.status() == ST_READY


# -- 2. ATAPI (CVE-2020-29443, CVE-2015-6855): no packet interface ------------------------

@pytest.mark.parametrize("opcode", [PACKET, IDENTIFY_PACKET, READ_NATIVE_MAX,
                                    READ_NATIVE_MAX_EXT])
def test_cve_2020_29443_and_2015_6855_atapi_and_native_max_commands_abort(opcode: int) -> None:
    """QEMU's ATAPI reply path read past its buffer with an unchecked index (CVE-2020-29443),
    and commands meant for one device type ran on another, READ NATIVE MAX on an empty drive
    dividing by zero (CVE-2015-6855). pyhvm has no ATAPI and no HPA: each aborts at once,
    with no data phase and no access to the backend or memory."""
    rig = Rig(sectors=8)
    rig.bm.write(4, 4, TABLE)
    rig.bm_command(BM_CMD_TO_MEMORY | BM_CMD_START)
    rig.cmd.write(DEVICE, 1, 0x40)
    rig.cmd.write(COMMAND, 1, opcode)
    assert rig.status() == ST_READY | ST_ERR and rig.cmd.read(ERROR, 1) == ERR_ABRT
    assert rig.cmd.read(DATA, 2) == 0xFFFF and untouched(rig) and rig.memory.refused == 0


def test_cve_2015_6855_commands_for_an_absent_or_empty_drive_never_run() -> None:
    """An absent device 1 runs nothing (device 0 answers status only); a zero-sector disk
    reports IDNF for every transfer instead of dividing by its size."""
    rig = Rig(sectors=8)
    rig.cmd.write(DEVICE, 1, 0x50)  # select the absent slave
    for opcode in (READ_NATIVE_MAX, READ_SECTORS, 0xEC, READ_DMA):
        rig.cmd.write(COMMAND, 1, opcode)
        assert not rig.irq.level and rig.cmd.read(DATA, 2) == 0xFFFF
    empty = Rig(backend=MemoryBackend(0))
    for opcode in (READ_SECTORS, WRITE_SECTORS, READ_DMA):
        empty.ata(opcode, 0, 1)
        assert empty.status() == ST_READY | ST_ERR and empty.cmd.read(ERROR, 1) == ERR_IDNF


# -- 3. Sector ranges past the end of the disk --------------------------------------------

@pytest.mark.parametrize("opcode,lba,count", [
    (READ_DMA, 255, 2), (READ_DMA, 256, 1), (READ_DMA, 0x0FFF_FFFF, 0),
    (READ_DMA_EXT, 0xFFFF_FFFF_FFFF, 1), (READ_DMA_EXT, 1, 0),  # count 0 = 65536 sectors
    (READ_SECTORS, 255, 2), (WRITE_SECTORS, 0x0FFF_FFFF, 0)])
def test_sector_ranges_past_the_disk_end_are_idnf_before_any_io(opcode: int, lba: int,
                                                                count: int) -> None:
    """QEMU checked the whole range only late (ide_sect_range_ok was added for the DMA and
    TRIM paths after fuzzing found I/O past the end). pyhvm checks first LBA + count against
    the disk before a request exists; 0 counts mean their maximum."""
    rig = Rig(sectors=256)
    rig.table([(0x10000, 0, True)])
    before = bytes(rig.backend.data)
    if opcode in (READ_DMA, READ_DMA_EXT):
        rig.dma(opcode, lba, count)
    else:
        rig.ata(opcode, lba, count)
    assert rig.status() == ST_READY | ST_ERR and rig.cmd.read(ERROR, 1) == ERR_IDNF
    assert bytes(rig.backend.data) == before and untouched(rig, except_table=8)


# -- 4. PRD tables that never end, wrap or point outside RAM ------------------------------

def test_prd_table_without_eot_running_off_ram_or_past_4gib_ends_in_error() -> None:
    """QEMU's bus master walked guest PRD tables in a loop whose end depended on the table
    (an entry with no EOT, a zero-length region, a table at the top of the address space);
    fuzzers found hangs and assertion failures there. pyhvm's walk reads at most 8192
    entries (one 64 KiB table), stops at 4 GiB, and every failure is ERROR + INTERRUPT with
    the command aborted, after which a new command works."""
    rig = Rig()
    for i in range(PRD_MAX_ENTRIES + 10):  # 8202 two-byte entries, none with EOT
        rig.table([(0x40000, 2, False)], at=0x60000 + 8 * i)
    rig.table([(0x40000, 2, False)], at=RAM - 8)  # the next entry would lie past RAM
    for table in (0x60000, RAM - 8, 0xFFFF_FFF8):
        rig.dma(READ_DMA, 0, 256, table=table)
        assert rig.bm_status() & (BM_ST_ERROR | BM_ST_INTERRUPT) == BM_ST_ERROR | BM_ST_INTERRUPT
        assert rig.status() == ST_READY | ST_ERR and rig.cmd.read(ERROR, 1) == ERR_ABRT
        rig.bm_command(0)
        rig.bm.write(2, 1, BM_ST_ERROR | BM_ST_INTERRUPT)
    assert rig.memory.data[0x40000:0x40010] == bytes([FILL]) * 16  # nothing moved
    rig.table([(0x10000, 512, True)])
    rig.dma(READ_DMA, 0, 1)
    assert rig.bm_status() == BM_ST_INTERRUPT and rig.status() == ST_READY


def test_prd_regions_outside_ram_move_nothing_at_all() -> None:
    """A table whose first region is good and second is outside RAM: no byte of the good
    region moves either (all segments are checked before the backend is touched)."""
    rig = Rig()
    rig.table([(0x10000, 512, False), (RAM - 256, 512, True)])
    rig.dma(READ_DMA, 0, 2)
    assert rig.bm_status() & BM_ST_ERROR and rig.memory.refused >= 1
    assert untouched(rig, except_table=16)
    before = bytes(rig.backend.data)
    rig.bm_command(0)
    rig.table([(0x10000, 512, False), (0xFFFF_FE00, 512, True)])
    rig.dma(WRITE_DMA, 0, 2)
    assert rig.bm_status() & BM_ST_ERROR and bytes(rig.backend.data) == before


# -- 5. Cancelled DMA and resets with a request in flight ---------------------------------

def test_cve_2016_2197_and_qemu_4052_reset_with_dma_in_flight_on_the_slave() -> None:
    """QEMU's AHCI dereferenced unmapped FIS/command-list pointers when the guest stopped
    its engines (CVE-2016-2197), and its IDE SRST cancelled a pending DMA against the wrong
    slot, reaching a null backend, when unit 0 was empty and unit 1 a disk (QEMU work item
    4052). pyhvm has no AHCI; its channel keeps one in-flight request for the channel, not
    per slot, so SRST with an empty master and a busy slave waits for that request and then
    resets; stopping the engine and a machine reset while in flight are safe too."""
    memory = StrictMemory(RAM)
    executor = DeferredExecutor(memory)
    disk = AtaDisk(MemoryBackend(pattern(64)))
    irq = FakeIrq()
    ide = PiixIde(memory, executor, irq, FakeIrq(), {(0, 1): disk})
    cmd, ctl, bm = ide.channels[0].command_port, ide.channels[0].control_port, ide.bmide_port
    for cancel in ("stop", "srst", "reset"):
        memory.write(TABLE, (0x10000).to_bytes(4, "little") + (0x8000_0000 | 1024).to_bytes(4, "little"))
        bm.write(4, 4, TABLE)
        cmd.write(DEVICE, 1, 0x50)  # the slave; the master is absent
        cmd.write(2, 1, 2)
        cmd.write(COMMAND, 1, READ_DMA)
        bm.write(0, 1, BM_CMD_TO_MEMORY | BM_CMD_START)
        assert len(executor.queue) == 1
        if cancel == "stop":
            bm.write(0, 1, BM_CMD_TO_MEMORY)
        elif cancel == "srst":
            ctl.write(0, 1, CTL_SRST)
            ctl.write(0, 1, 0)
            assert cmd.read(7, 1) & ST_BSY  # still busy: the request is not recalled
        else:
            ide.reset()
        executor.complete()  # the late completion
        assert not executor.queue
        cmd.write(DEVICE, 1, 0x50)
        assert cmd.read(7, 1) & ST_BSY == 0
        bm.write(0, 1, 0)
        bm.write(2, 1, BM_ST_ERROR | BM_ST_INTERRUPT)


# -- 6. Interrupt storms -------------------------------------------------------------------

def test_a_guest_cannot_make_the_channel_interrupt_without_a_command() -> None:
    """Bus-master restarts, status reads, nIEN toggles and resets raise no interrupt of
    their own: one rising edge per completed command, whatever the guest loops on."""
    rig = Rig()
    rig.table([(0x10000, 512, True)])
    rig.dma(READ_DMA, 0, 1)
    rig.status()
    edges = rig.irq.rising_edges
    for _ in range(1000):
        rig.bm_command(0)
        rig.bm_command(BM_CMD_TO_MEMORY | BM_CMD_START)  # start with no command waiting
        rig.bm.write(2, 1, BM_ST_INTERRUPT)
        rig.ctl.write(0, 1, 0x02)
        rig.ctl.write(0, 1, 0x00)
        rig.status()
    assert rig.irq.rising_edges == edges and not rig.irq.level
    rig.ctl.write(0, 1, CTL_SRST)
    rig.ctl.write(0, 1, 0)
    assert rig.irq.rising_edges == edges
