"""Guest-controlled lengths, counts, addresses and indices of the PIIX IDE function (ATA task
file, PIO data port, bus-master registers and PRD tables in guest RAM), each driven through
the ports and guest memory at 0, its maximum, maximum + 1 and 2^32 - 1 (or the field's full
width, said where narrower). docs/security/guest-lengths.md lists every value with the test
that proves it; edges an older test already covers are cited there, not repeated here.

Guest RAM is the fuzzer's `CheckedMemory` (1 MiB at 0, a 64 KiB hole, 1 MiB above): every
DMA is judged against that layout independently of the memory layer, so an access the model
let through outside RAM fails the test. Outcomes are computed from ATA-6 and SFF-8038i, not
read back from the model: a range inside the disk moves exactly its sectors, anything else is
IDNF (or ABRT) with no byte moved."""

from __future__ import annotations

import struct

import pytest

from pyhvm.devices.ata import CTL_SRST, AtaDisk
from pyhvm.devices.ata_disk import (ERR_ABRT, ERR_IDNF, MAX_MULTIPLE, SECTOR_SIZE, ST_BSY,
                                    ST_DRQ, ST_ERR, ST_READY)
from pyhvm.devices.blockio import MemoryBackend, SyncExecutor
from pyhvm.devices.ide import (BM_CMD_START, BM_CMD_TO_MEMORY, BM_ST_ACTIVE, BM_ST_ERROR,
                               BM_ST_INTERRUPT, PRD_EOT, PRD_MAX_ENTRIES, PiixIde)
from pyhvm.fuzz.memory import CheckedMemory
from tests.fakes import FakeIrq
from tests.unit.test_ata import SparseBackend, pattern

DATA, ERROR, FEATURES, COUNT, LBA_LOW, LBA_MID, LBA_HIGH, DEVICE, STATUS, COMMAND = (
    0, 1, 1, 2, 3, 4, 5, 6, 7, 7)
READ_SECTORS, WRITE_SECTORS, READ_MULTIPLE = 0x20, 0x30, 0xC4
READ_DMA, READ_DMA_EXT, WRITE_DMA = 0xC8, 0x25, 0xCA
SET_MULTIPLE, INITIALIZE_PARAMETERS, SET_FEATURES, IDENTIFY = 0xC6, 0x91, 0xEF, 0xEC
SF_TRANSFER_MODE = 0x03
LBA = 0x40
LOW_TOP = 0x100000           # end of the first RAM region; a 64 KiB hole follows
TABLE = 0x1000               # PRD tables
BUF = 0x20000                # DMA data
FILL = 0xEE
U32_MAX = 0xFFFF_FFFF
IDNF = ("error", ERR_IDNF)


class Rig:
    """PiixIde, a disk on the primary master, checked RAM filled with FILL."""

    def __init__(self, sectors: int = 256, backend: object | None = None) -> None:
        self.memory = CheckedMemory()
        for base, size in self.memory.layout:
            self.memory.fill(base, size, FILL)
        self.backend = backend if backend is not None else MemoryBackend(pattern(sectors))
        self.disk = AtaDisk(self.backend)  # type: ignore[arg-type]
        self.irq = FakeIrq()
        self.ide = PiixIde(self.memory, SyncExecutor(self.memory), self.irq, FakeIrq(),
                           {(0, 0): self.disk})
        self.cmd = self.ide.channels[0].command_port
        self.ctl = self.ide.channels[0].control_port
        self.bm = self.ide.bmide_port

    # -- the task file ------------------------------------------------------------------
    def set(self, reg: int, value: int, size: int = 1) -> None:
        self.cmd.write(reg, size, value)

    def lba28(self, lba: int, count: int) -> None:
        self.set(DEVICE, LBA | (lba >> 24) & 0x0F)
        self.set(COUNT, count & 0xFF)
        for reg, shift in ((LBA_LOW, 0), (LBA_MID, 8), (LBA_HIGH, 16)):
            self.set(reg, (lba >> shift) & 0xFF)

    def lba48(self, lba: int, count: int) -> None:
        self.set(DEVICE, LBA)
        for shift in (8, 0):
            self.set(COUNT, (count >> shift) & 0xFF)
        for shift in (24, 0):
            for reg, extra in ((LBA_LOW, 0), (LBA_MID, 8), (LBA_HIGH, 16)):
                self.set(reg, (lba >> (shift + extra)) & 0xFF)

    def status(self) -> int:
        return self.cmd.read(STATUS, 1)

    def error(self) -> int:
        return self.cmd.read(ERROR, 1)

    # -- bus master -----------------------------------------------------------------------
    def table(self, entries: list[tuple[int, int]], at: int = TABLE) -> None:
        """(address, flags dword) pairs; the last gets EOT unless its flags say otherwise."""
        blob = b"".join(struct.pack("<II", a, flags) for a, flags in entries)
        self.memory.write(at, blob)

    def start(self, opcode: int, table: int = TABLE) -> None:
        to_memory = opcode != WRITE_DMA
        self.bm.write(4, 4, table)
        self.bm.write(0, 1, BM_CMD_TO_MEMORY if to_memory else 0)
        self.set(COMMAND, opcode)
        self.bm.write(0, 1, (BM_CMD_TO_MEMORY if to_memory else 0) | BM_CMD_START)

    def bm_status(self) -> int:
        return self.bm.read(2, 1)

    def untouched(self, gpa: int, size: int) -> bool:
        return self.memory.read(gpa, size) == bytes([FILL]) * size

    def sectors(self, lba: int, count: int) -> bytes:
        return self.backend.read(lba * SECTOR_SIZE, count * SECTOR_SIZE)  # type: ignore


def chunks(length: int, base: int = BUF, step: int = 0x10000) -> list[tuple[int, int]]:
    """PRD entries of 64 KiB (count 0) covering `length` bytes from `base`, EOT last."""
    entries = []
    while length > 0:
        take = min(step, length)
        entries.append((base, take & 0xFFFF))
        base, length = base + take, length - take
    address, flags = entries[-1]
    entries[-1] = (address, flags | PRD_EOT)
    return entries


def check_dma_read(rig: Rig, lba: int, sectors: int | None) -> None:
    """`sectors` None: IDNF before any I/O (nothing moved); else exactly those sectors."""
    if sectors is None:
        assert rig.status() == ST_READY | ST_ERR and rig.error() == ERR_IDNF
        assert rig.bm_status() & (BM_ST_INTERRUPT | BM_ST_ERROR) == BM_ST_INTERRUPT
        assert rig.untouched(BUF, 0x20000)
    else:
        assert rig.status() == ST_READY, hex(rig.status())
        assert rig.bm_status() & (BM_ST_ACTIVE | BM_ST_ERROR | BM_ST_INTERRUPT) == \
            BM_ST_INTERRUPT
        length = sectors * SECTOR_SIZE
        assert rig.memory.read(BUF, length) == rig.sectors(lba, sectors)
        assert rig.untouched(BUF + length, 512)
    assert rig.memory.findings == []


# -- sector count, 28-bit commands (8 bits, 0 = 256 sectors) ------------------------------

@pytest.mark.parametrize("value,size,lba,sectors", [
    (0, 1, 0, 256),            # 0: 256 sectors, exactly the disk
    (0xFF, 1, 1, 255),         # max: 255 sectors, ending at the disk's last sector
    (0x100, 2, 0, None),       # max + 1: the byte lane keeps 0 (256), 1 lands in LBA low
    (U32_MAX, 4, 0, None),     # 2^32-1: count and LBA 7:0, 15:8, 23:16 all 0xFF
])
def test_lba28_sector_count_edges(value: int, size: int, lba: int,
                                  sectors: int | None) -> None:
    rig = Rig(256)
    rig.lba28(lba, 0)
    rig.set(COUNT, value, size)
    rig.table(chunks((sectors or 256) * SECTOR_SIZE))
    rig.start(READ_DMA)
    check_dma_read(rig, lba, sectors)


def test_lba28_count_zero_is_256_sectors_of_pio_then_the_data_port_floats() -> None:
    rig = Rig(256)
    rig.lba28(0, 0)
    rig.set(COMMAND, READ_SECTORS)
    words = [rig.cmd.read(DATA, 2) for _ in range(256 * 256)]
    assert struct.pack("<65536H", *words) == rig.sectors(0, 256)
    assert rig.status() == ST_READY and rig.cmd.read(DATA, 2) == 0xFFFF


# -- sector count, 48-bit commands (16 bits, 0 = 65536 sectors) ---------------------------

def test_lba48_count_zero_moves_65536_sectors_through_a_512_entry_table() -> None:
    """0 is the maximum: 65536 sectors (32 MiB) on a 65536-sector disk, through 512 PRD
    entries of 64 KiB that all name one buffer (legal: the table may reuse memory)."""
    rig = Rig(backend=SparseBackend(0x10000 * SECTOR_SIZE))
    rig.lba48(0, 0)
    rig.table([(BUF, 0)] * 511 + [(BUF, PRD_EOT)])
    rig.start(READ_DMA_EXT)
    assert rig.status() == ST_READY
    assert rig.bm_status() & (BM_ST_ACTIVE | BM_ST_ERROR | BM_ST_INTERRUPT) == BM_ST_INTERRUPT
    assert rig.memory.read(BUF, 0x10000) == rig.sectors(0x10000 - 128, 128)
    assert rig.memory.findings == []


@pytest.mark.parametrize("lba,count,sectors", [
    (1, 0xFFFF, 0xFFFF),        # max: 65535 sectors ending at the disk's last sector
    (1, 0, None),               # max + 1: 65536 sectors from LBA 1 end past the disk
])
def test_lba48_count_edges_against_the_disk_end(lba: int, count: int,
                                                sectors: int | None) -> None:
    rig = Rig(backend=SparseBackend(0x10000 * SECTOR_SIZE))
    rig.lba48(lba, count)
    rig.table([(BUF, 0)] * 511 + [(BUF, 0xFE00 | PRD_EOT)])  # 65535 sectors exactly
    rig.start(READ_DMA_EXT)
    if sectors is None:
        assert rig.status() == ST_READY | ST_ERR and rig.error() == ERR_IDNF
        assert rig.untouched(BUF, 0x10000)
    else:
        assert rig.status() == ST_READY and not rig.bm_status() & BM_ST_ERROR
        last = rig.sectors(0xFFFF - 126, 127)  # what the last (0xFE00-byte) entry holds
        assert rig.memory.read(BUF, 0xFE00) == last
    assert rig.memory.findings == []


def test_lba48_count_and_address_at_2_to_the_32_minus_1() -> None:
    """Two dword writes of 2^32-1 at COUNT fill both halves of count and LBA with ones:
    count 0xFFFF at LBA 2^48-1, IDNF before any I/O."""
    rig = Rig(256)
    rig.set(DEVICE, LBA)
    rig.set(COUNT, U32_MAX, 4)
    rig.set(COUNT, U32_MAX, 4)
    rig.table(chunks(0x10000))
    rig.start(READ_DMA_EXT)
    check_dma_read(rig, 0, None)


# -- LBA (28 and 48 bits) ------------------------------------------------------------------

@pytest.mark.parametrize("lba,ok", [(0, True), (255, True), (256, False), (0x0FFF_FFFF, False)])
def test_lba28_address_edges(lba: int, ok: bool) -> None:
    """0 and the last sector read; the disk size (max + 1) and all 28 bits set are IDNF."""
    rig = Rig(256)
    rig.lba28(lba, 1)
    rig.table(chunks(SECTOR_SIZE))
    rig.start(READ_DMA)
    check_dma_read(rig, lba, 1 if ok else None)


def test_lba28_dword_of_ones_at_lba_low_selects_the_absent_slave_and_runs_nothing() -> None:
    """2^32-1 written at LBA low as a dword: LBA 7:0, 15:8, 23:16 and the Device register
    all 0xFF, so DEV selects device 1, which is absent: the command runs nowhere."""
    rig = Rig(256)
    rig.set(COUNT, 1)
    rig.set(LBA_LOW, U32_MAX, 4)
    rig.table(chunks(SECTOR_SIZE))
    rig.start(READ_DMA)
    assert rig.status() == 0x00 and not rig.irq.level  # device 0 answers for the absent 1
    assert rig.untouched(BUF, SECTOR_SIZE) and rig.memory.findings == []
    rig.set(DEVICE, LBA)
    assert rig.status() == ST_READY  # the master never saw the command


@pytest.mark.parametrize("lba,ok", [(0, True), (255, True), (256, False), (U32_MAX, False),
                                    ((1 << 48) - 1, False)])
def test_lba48_address_edges(lba: int, ok: bool) -> None:
    rig = Rig(256)
    rig.lba48(lba, 1)
    rig.table(chunks(SECTOR_SIZE))
    rig.start(READ_DMA_EXT)
    check_dma_read(rig, lba, 1 if ok else None)


# -- CHS addresses (cylinder 16 bits, head 4 bits, sector 8 bits, numbered from 1) -----------

@pytest.mark.parametrize("cylinder,head,sector,lba", [
    (0, 0, 0, None),           # sector 0 does not exist
    (0, 0, 1, 0),              # the first sector
    (0, 3, 63, 251),           # max: last head, last sector of the 1 x 4 x 63 geometry
    (0, 3, 64, None),          # sector max + 1
    (0, 4, 1, None),           # head max + 1
    (1, 0, 1, None),           # cylinder max + 1
    (0xFFFF, 0xF, 0xFF, None), # every bit of the three fields
])
def test_chs_address_edges(cylinder: int, head: int, sector: int, lba: int | None) -> None:
    rig = Rig(256)  # default translation for 256 sectors: 1 cylinder, 4 heads, 63 sectors
    rig.set(DEVICE, head)
    rig.set(COUNT, 1)
    rig.set(LBA_LOW, sector)
    rig.set(LBA_MID, cylinder & 0xFF)
    rig.set(LBA_HIGH, cylinder >> 8)
    rig.set(COMMAND, READ_SECTORS)
    if lba is None:
        assert rig.status() == ST_READY | ST_ERR and rig.error() == ERR_IDNF
        assert rig.cmd.read(DATA, 2) == 0xFFFF
    else:
        assert rig.status() == ST_READY | ST_DRQ
        words = [rig.cmd.read(DATA, 2) for _ in range(256)]
        assert struct.pack("<256H", *words) == rig.sectors(lba, 1)


# -- SET MULTIPLE MODE count (8 bits: 0 disables, powers of two up to 16) ------------------

@pytest.mark.parametrize("value,accepted,block", [
    (0, True, None),           # 0: multiple mode off, READ MULTIPLE aborts
    (MAX_MULTIPLE, True, 16),  # max: 16-sector DRQ blocks
    (MAX_MULTIPLE + 1, False, 16),  # max + 1: refused, the setting before stays
    (0xFF, False, 16),         # the full 8 bits: refused
])
def test_set_multiple_count_edges(value: int, accepted: bool, block: int | None) -> None:
    rig = Rig(256)
    rig.set(COUNT, value)
    rig.set(COMMAND, SET_MULTIPLE)
    assert rig.status() == (ST_READY if accepted else ST_READY | ST_ERR)
    rig.lba28(0, 32)
    edges = rig.irq.rising_edges
    rig.set(COMMAND, READ_MULTIPLE)
    if block is None:
        assert rig.status() == ST_READY | ST_ERR and rig.error() == ERR_ABRT
        return
    got = b""
    while rig.status() & ST_DRQ:
        got += struct.pack(f"<{block * 256}H",
                           *(rig.cmd.read(DATA, 2) for _ in range(block * 256)))
    assert got == rig.sectors(0, 32) and rig.irq.rising_edges - edges == 32 // block


# -- INITIALIZE DEVICE PARAMETERS: sectors per track (8 bits) and heads (4 bits + 1) -------

@pytest.mark.parametrize("count,device,accepted", [
    (0, 0x0F, False),          # 0 sectors per track: refused
    (1, 0x00, True),           # 1 sector, 1 head
    (255, 0x0F, True),         # max: 255 sectors, 16 heads (DEV bits 3:0 = 15)
    (0x100, 0x0F, False),      # max + 1: the byte lane keeps 0
])
def test_initialize_device_parameters_edges(count: int, device: int, accepted: bool) -> None:
    rig = Rig(4096)
    rig.set(DEVICE, device)
    rig.set(COUNT, count, 2 if count > 0xFF else 1)
    if count > 0xFF:
        rig.set(DEVICE, device)  # the word write put 0x01 into LBA low only
    rig.set(COMMAND, INITIALIZE_PARAMETERS)
    rig.set(COMMAND, IDENTIFY)
    words = struct.unpack("<256H", struct.pack(
        "<256H", *(rig.cmd.read(DATA, 2) for _ in range(256))))
    heads, sectors = (device & 0xF) + 1, count & 0xFF
    if accepted:
        assert (words[55], words[56]) == (heads, sectors)
        assert words[54] == 4096 // (heads * sectors)
    else:
        default = rig.disk.default_chs  # the translation before stays
        assert (words[55], words[56]) == (default.heads, default.sectors)


# -- SET FEATURES transfer mode (Sector Count, 8 bits) --------------------------------------

@pytest.mark.parametrize("value,accepted", [(0x00, True), (0x0C, True), (0x0D, False),
                                            (0x22, True), (0x23, False), (0xFF, False)])
def test_set_features_transfer_mode_edges(value: int, accepted: bool) -> None:
    """0 (PIO default), the maximum of each family (PIO 4, MWDMA 2; UDMA 5 and 6 are in
    test_ata), one past it, and all ones: refused modes abort and change nothing."""
    rig = Rig(8)
    rig.set(COUNT, value)
    rig.set(FEATURES, SF_TRANSFER_MODE)
    rig.set(COMMAND, SET_FEATURES)
    if accepted:
        assert rig.status() == ST_READY
    else:
        assert rig.status() == ST_READY | ST_ERR and rig.error() == ERR_ABRT
        assert rig.disk.mwdma_mode == 2 and rig.disk.udma_mode is None
        assert rig.disk.pio_mode == 4


# -- the Device register's slot bit (index 0-1 into the drives) ----------------------------

@pytest.mark.parametrize("device,runs", [(0x00, True), (0x10, False), (0xEF, True),
                                         (0xFF, False)])
def test_device_register_edges_select_a_present_drive_or_nobody(device: int,
                                                                runs: bool) -> None:
    rig = Rig(8)
    rig.set(DEVICE, device)
    rig.set(COMMAND, 0xE5)  # CHECK POWER MODE: a non-data command
    if runs:
        assert rig.status() == ST_READY and rig.irq.rising_edges == 1
    else:
        assert rig.status() == 0x00 and rig.irq.rising_edges == 0


# -- register offsets: command block (8 ports), control block (1), bus master (16) ---------

def test_command_block_accesses_past_offset_7_float_and_drop() -> None:
    rig = Rig(8)
    assert rig.cmd.read(7, 4) == 0xFFFFFF00 | ST_READY
    assert rig.cmd.read(6, 4) == 0xFFFF0000 | ST_READY << 8 | rig.cmd.read(DEVICE, 1)
    rig.set(7, U32_MAX, 4)  # only Command (0xFF, unknown: ABRT) is written
    assert rig.status() == ST_READY | ST_ERR and rig.error() == ERR_ABRT
    assert rig.cmd.read(0, 1) == 0xFF  # the data port outside a transfer (low lane)


def test_control_block_wide_access_reaches_only_device_control() -> None:
    rig = Rig(8)
    assert rig.ctl.read(0, 4) == 0xFFFFFF00 | ST_READY
    rig.ctl.write(0, 4, U32_MAX)  # 0xFF: SRST and nIEN and HOB set, nothing else exists
    assert rig.ctl.read(0, 1) & ST_BSY
    rig.ctl.write(0, 1, 0)
    assert rig.status() == ST_READY
    rig.ctl.write(1, 1, CTL_SRST)  # an offset past the block: ignored
    assert rig.status() == ST_READY


@pytest.mark.parametrize("offset,size,expect", [
    (0, 1, 0x00), (15, 1, 0x00), (14, 4, 0xFFFF0000), (4, 4, TABLE), (12, 4, 0)])
def test_bus_master_block_offsets_past_16_float(offset: int, size: int, expect: int) -> None:
    """Offsets 0 and 15 are the block's first and last byte; a dword at 14 reads bytes 14
    and 15 (the secondary PRD pointer's top half) and two floating bytes past the block."""
    rig = Rig(8)
    rig.bm.write(4, 4, TABLE)
    assert rig.bm.read(offset, size) == expect


def test_bus_master_write_past_16_reaches_only_the_bytes_inside() -> None:
    rig = Rig(8)
    rig.bm.write(14, 4, U32_MAX)  # bytes 14-15 of the secondary PRD pointer; 16-17 nobody
    assert rig.bm.read(12, 4) == 0xFFFF0000 and rig.bm.read(0, 4) == 0
    rig.bm.write(1, 1, 0xFF)  # a reserved byte: reads 0
    rig.bm.write(3, 1, 0xFF)
    assert rig.bm.read(0, 4) == 0


# -- the PIO data port's position (words per DRQ block) ------------------------------------

def test_a_32_bit_read_across_the_transfer_end_returns_the_last_word_and_all_ones() -> None:
    """255 words, then a dword: word 255 of the sector and 0xFFFF (the data phase ended
    after word 256, the 257th is max + 1). 0 words is covered by test_ata (a command
    written during DRQ abandons the transfer); 100 000 extra words by the CVE-2015-5154
    replay."""
    rig = Rig(8)
    rig.lba28(3, 1)
    rig.set(COMMAND, READ_SECTORS)
    words = [rig.cmd.read(DATA, 2) for _ in range(255)]
    last = rig.cmd.read(DATA, 4)
    data = rig.sectors(3, 1)
    assert struct.pack("<255H", *words) == data[:510]
    assert last == int.from_bytes(data[510:], "little") | 0xFFFF0000
    assert rig.status() == ST_READY


def test_a_32_bit_write_across_the_block_end_writes_one_word_and_drops_the_other() -> None:
    rig = Rig(8)
    before = rig.sectors(0, 8)
    rig.lba28(2, 1)
    rig.set(COMMAND, WRITE_SECTORS)
    for _ in range(255):
        rig.cmd.write(DATA, 2, 0x4142)
    rig.cmd.write(DATA, 4, 0x5A5A_4344)
    assert rig.status() == ST_READY
    assert rig.sectors(2, 1) == b"BA" * 255 + b"DC"
    assert rig.sectors(0, 2) + rig.sectors(3, 5) == before[:1024] + before[1536:]


# -- the PRD table pointer (32 bits, bits 1:0 read 0) --------------------------------------

@pytest.mark.parametrize("table,ok", [
    (0, True),                  # 0: a table at guest address 0
    (LOW_TOP - 8, True),        # max: the last entry that fits in RAM
    (LOW_TOP - 4, False),       # max + 1 (dword step): the entry runs into the hole
    (U32_MAX, False),           # 2^32-1: reads back 0xFFFFFFFC, the entry crosses 4 GiB
])
def test_prd_table_pointer_edges(table: int, ok: bool) -> None:
    rig = Rig(8)
    rig.bm.write(4, 4, table)
    assert rig.bm.read(4, 4) == table & 0xFFFF_FFFC
    if ok:
        rig.table([(BUF, SECTOR_SIZE | PRD_EOT)], at=table)
    rig.lba28(1, 1)
    rig.start(READ_DMA, table)
    if ok:
        check_dma_read(rig, 1, 1)
    else:
        assert rig.bm_status() & (BM_ST_ERROR | BM_ST_INTERRUPT | BM_ST_ACTIVE) == \
            BM_ST_ERROR | BM_ST_INTERRUPT
        assert rig.status() == ST_READY | ST_ERR and rig.error() == ERR_ABRT
        assert rig.untouched(BUF, SECTOR_SIZE) and rig.memory.findings == []


# -- a PRD entry's byte count (16 bits, bit 0 ignored, 0 = 64 KiB) -------------------------

@pytest.mark.parametrize("flags,sectors,outcome", [
    (0 | PRD_EOT, 128, "exact"),        # 0: 64 KiB, exactly 128 sectors
    (0 | PRD_EOT, 1, "long"),           # 0 for a one-sector transfer: table longer
    (0xFFFE | PRD_EOT, 128, "short"),   # max: 64 KiB - 2, one word short
    (0xFFFF | PRD_EOT, 128, "short"),   # bit 0 ignored: the same as 0xFFFE
    (0x0201 | PRD_EOT, 1, "exact"),     # bit 0 ignored: 512
    (U32_MAX, 128, "short"),            # 2^32-1 flags: 0xFFFE, EOT, reserved bits set
])
def test_prd_byte_count_edges(flags: int, sectors: int, outcome: str) -> None:
    rig = Rig(256)
    rig.table([(BUF, flags)])
    rig.lba28(4, sectors)
    rig.start(READ_DMA)
    bm = rig.bm_status() & (BM_ST_ACTIVE | BM_ST_ERROR | BM_ST_INTERRUPT)
    if outcome == "short":  # SFF-8038i: Interrupt=0 Active=0, no data, the drive waits
        assert bm == 0 and rig.status() & ST_BSY and rig.untouched(BUF, 0x10000)
    else:
        assert bm == (BM_ST_INTERRUPT | (BM_ST_ACTIVE if outcome == "long" else 0))
        assert rig.status() == ST_READY
        assert rig.memory.read(BUF, sectors * SECTOR_SIZE) == rig.sectors(4, sectors)
        assert rig.untouched(BUF + sectors * SECTOR_SIZE, 16)
    assert rig.memory.findings == []


# -- a PRD entry's base address (32 bits, bit 0 ignored) ------------------------------------

@pytest.mark.parametrize("base,ok", [
    (0, True),                          # 0
    (LOW_TOP - SECTOR_SIZE, True),      # max: the region ends exactly at the RAM end
    (LOW_TOP - SECTOR_SIZE + 2, False), # max + 1 (word step): its last word is in the hole
    (0xFFFF_FE00, False),               # the last region below 4 GiB: not RAM
    (U32_MAX, False),                   # 2^32-1: 0xFFFFFFFE + 512 crosses 4 GiB
])
def test_prd_region_address_edges(base: int, ok: bool) -> None:
    rig = Rig(8)
    rig.table([(base, SECTOR_SIZE | PRD_EOT)])
    rig.lba28(5, 1)
    rig.start(READ_DMA)
    if ok:
        assert rig.bm_status() & (BM_ST_ERROR | BM_ST_INTERRUPT) == BM_ST_INTERRUPT
        assert rig.memory.read(base, SECTOR_SIZE) == rig.sectors(5, 1)
    else:
        assert rig.bm_status() & BM_ST_ERROR and rig.status() & ST_ERR
        assert rig.untouched(LOW_TOP - SECTOR_SIZE, SECTOR_SIZE) and rig.untouched(0, 0x1000)
    assert rig.memory.findings == []


def test_prd_region_outside_ram_on_a_write_leaves_the_disk_alone() -> None:
    rig = Rig(8)
    before = rig.sectors(0, 8)
    rig.table([(LOW_TOP - SECTOR_SIZE + 2, SECTOR_SIZE | PRD_EOT)])
    rig.lba28(0, 1)
    rig.start(WRITE_DMA)
    assert rig.bm_status() & BM_ST_ERROR and rig.sectors(0, 8) == before
    assert rig.memory.findings == []


# -- the number of PRD entries (at most 8192: one 64 KiB table) ----------------------------

@pytest.mark.parametrize("entries,ok", [(1, True), (PRD_MAX_ENTRIES, True),
                                        (PRD_MAX_ENTRIES + 1, False)])
def test_prd_entry_count_edges(entries: int, ok: bool) -> None:
    """Transfers of 2-byte regions: 8192 entries (EOT on the last) are the most one walk
    reads; a transfer that needs the 8193rd entry ends in ERROR with nothing moved.
    (2^32-1 entries cannot be asked for: the walk stops at 8192 whatever the table says;
    the EOT-less table of 8202 entries is the history replay's.)"""
    rig = Rig(64)
    length = 2 * entries
    sectors = -(-length // SECTOR_SIZE)
    table = 0x40000
    blob = bytearray()
    for i in range(entries):
        blob += struct.pack("<II", BUF + 2 * i, 2 | (PRD_EOT if i == entries - 1 else 0))
    rig.memory.write(table, bytes(blob))
    if ok and length % SECTOR_SIZE:  # pad the last entry up to whole sectors
        rig.memory.write(table + 8 * (entries - 1), struct.pack(
            "<II", BUF + 2 * (entries - 1), (sectors * SECTOR_SIZE - length + 2) | PRD_EOT))
    rig.lba28(0, sectors)
    rig.start(READ_DMA, table)
    if ok:
        assert rig.bm_status() & (BM_ST_ERROR | BM_ST_INTERRUPT) == BM_ST_INTERRUPT
        assert rig.memory.read(BUF, sectors * SECTOR_SIZE) == rig.sectors(0, sectors)
    else:
        assert rig.bm_status() & BM_ST_ERROR and rig.untouched(BUF, length)
    assert rig.memory.findings == []
