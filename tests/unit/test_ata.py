"""The ATA channel and disk driven register by register; sections cite ATA/ATAPI-6 (T13 1410D).

Also home of the small fakes the IDE tests share: a DMA memory that refuses out-of-range
access, a sparse multi-terabyte backend, a failing backend and an executor that completes
requests only when told to (the "concurrent" placement, with time frozen).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest

from pyhvm.devices.ata import CTL_HOB, CTL_NIEN, CTL_SRST, DEV_LBA, DEV_SLAVE, AtaChannel, AtaDisk
from pyhvm.devices.ata_disk import (
    ERR_ABRT,
    ERR_IDNF,
    ERR_UNC,
    SECTOR_SIZE,
    ST_BSY,
    ST_DRQ,
    ST_ERR,
    ST_READY,
    ata_string,
)
from pyhvm.devices.blockio import (
    BlockIOError,
    DiskOp,
    DiskRequest,
    DiskResult,
    DiskStatus,
    DmaMemory,
    MemoryBackend,
    SyncExecutor,
)
from pyhvm.memory import GuestMemoryError
from tests.fakes import FakeIrq

DATA, ERROR, FEATURES, COUNT, LBA_LOW, LBA_MID, LBA_HIGH, DEVICE, STATUS, COMMAND = (
    0, 1, 1, 2, 3, 4, 5, 6, 7, 7)


# -- fakes ----------------------------------------------------------------------------------

class StrictMemory:
    """DMA memory of `size` bytes at gpa 0: any access outside raises GuestMemoryError and is
    counted, so a test can tell the model asked for it and got nothing."""

    def __init__(self, size: int) -> None:
        self.data = bytearray(size)
        self.refused = 0

    def _check(self, gpa: int, size: int) -> None:
        if gpa < 0 or size < 0 or gpa + size > len(self.data):
            self.refused += 1
            raise GuestMemoryError(f"{gpa:#x}+{size:#x} outside {len(self.data):#x}")

    def read(self, gpa: int, size: int) -> bytes:
        self._check(gpa, size)
        return bytes(self.data[gpa:gpa + size])

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        self._check(gpa, len(data))
        self.data[gpa:gpa + len(data)] = data

    def view(self, gpa: int, size: int) -> memoryview:
        self._check(gpa, size)
        return memoryview(self.data)[gpa:gpa + size]


class SparseBackend:
    """A huge disk that stores only the sectors written; unwritten sectors read as their LBA."""

    def __init__(self, size: int, readonly: bool = False) -> None:
        self.size = size
        self.readonly = readonly
        self.sectors: dict[int, bytes] = {}

    def _sector(self, lba: int) -> bytes:
        return self.sectors.get(lba) or struct.pack("<Q", lba) * (SECTOR_SIZE // 8)

    def read(self, offset: int, length: int) -> bytes:
        assert offset % SECTOR_SIZE == 0 and length % SECTOR_SIZE == 0
        assert 0 <= offset and offset + length <= self.size, "model read past the disk"
        first = offset // SECTOR_SIZE
        return b"".join(self._sector(first + i) for i in range(length // SECTOR_SIZE))

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        assert not self.readonly, "model wrote a read-only backend"
        assert 0 <= offset and offset + len(data) <= self.size, "model wrote past the disk"
        data = bytes(data)
        for i in range(0, len(data), SECTOR_SIZE):
            self.sectors[(offset + i) // SECTOR_SIZE] = data[i:i + SECTOR_SIZE]

    def flush(self) -> None:
        pass


class FailingBackend(MemoryBackend):
    def read(self, offset: int, length: int) -> bytes:
        raise BlockIOError("medium error")

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        raise BlockIOError("medium error")


class DeferredExecutor:
    """Queues requests; `complete()` performs the oldest (through a SyncExecutor) and calls
    its completion, as the event loop would later. `log` records (event, op) in order."""

    def __init__(self, memory: DmaMemory | None = None) -> None:
        self.sync = SyncExecutor(memory if memory is not None else StrictMemory(0))
        self.queue: list[tuple[DiskRequest, Callable[[DiskResult], None]]] = []
        self.log: list[tuple[str, DiskOp]] = []

    def __call__(self, request: DiskRequest, complete: Callable[[DiskResult], None]) -> None:
        self.log.append(("submit", request.op))
        self.queue.append((request, complete))

    def complete(self, result: DiskResult | None = None) -> DiskRequest:
        request, done = self.queue.pop(0)
        self.log.append(("complete", request.op))
        done(result if result is not None else self.sync.perform(request))
        return request


def pattern(sectors: int, seed: int = 0) -> bytearray:
    return bytearray((seed + i * 7 + i // 512) & 0xFF for i in range(sectors * SECTOR_SIZE))


class Harness:
    """One channel and its ports, with a guest driver's vocabulary."""

    def __init__(self, master: AtaDisk | None = None, slave: AtaDisk | None = None,
                 executor: Callable[..., None] | None = None) -> None:
        self.irq = FakeIrq()
        self.executor = executor or SyncExecutor(StrictMemory(0))
        self.channel = AtaChannel(self.irq, self.executor, master, slave)
        self.cmd = self.channel.command_port
        self.ctl = self.channel.control_port

    def reg(self, reg: int) -> int:
        return self.cmd.read(reg, 1)

    def set(self, reg: int, value: int) -> None:
        self.cmd.write(reg, 1, value)

    def status(self) -> int:
        return self.reg(STATUS)

    def alt(self) -> int:
        return self.ctl.read(0, 1)

    def control(self, value: int) -> None:
        self.ctl.write(0, 1, value)

    def lba28(self, lba: int, count: int, slot: int = 0) -> None:
        self.set(DEVICE, DEV_LBA | (DEV_SLAVE if slot else 0) | (lba >> 24) & 0x0F)
        self.set(COUNT, count & 0xFF)
        self.set(LBA_LOW, lba & 0xFF)
        self.set(LBA_MID, (lba >> 8) & 0xFF)
        self.set(LBA_HIGH, (lba >> 16) & 0xFF)

    def lba48(self, lba: int, count: int, slot: int = 0) -> None:
        """ATA-6 "48-bit Address feature set": high-order bytes first, then low-order."""
        self.set(DEVICE, DEV_LBA | (DEV_SLAVE if slot else 0))
        for shift in (8, 0):
            self.set(COUNT, (count >> shift) & 0xFF)
        for shift in (24, 0):
            self.set(LBA_LOW, (lba >> shift) & 0xFF)
            self.set(LBA_MID, (lba >> (shift + 8)) & 0xFF)
            self.set(LBA_HIGH, (lba >> (shift + 16)) & 0xFF)

    def command(self, opcode: int, features: int | None = None) -> None:
        if features is not None:
            self.set(FEATURES, features)
        self.set(COMMAND, opcode)

    def read_block(self, words: int = 256) -> bytes:
        return b"".join(struct.pack("<H", self.cmd.read(DATA, 2)) for _ in range(words))

    def write_block(self, data: bytes | bytearray) -> None:
        for (word,) in struct.iter_unpack("<H", data):
            self.cmd.write(DATA, 2, word)

    def identify(self) -> list[int]:
        self.command(0xEC)
        return list(struct.unpack("<256H", self.read_block()))


def disk_of(sectors: int = 64, *, readonly: bool = False, **identity: str) -> AtaDisk:
    return AtaDisk(MemoryBackend(pattern(sectors), readonly=readonly), **identity)


def contents(disk: AtaDisk) -> Any:
    """The backend as the test built it (a MemoryBackend), for `.data` and `.flushes`."""
    assert isinstance(disk.backend, MemoryBackend)
    return disk.backend


# -- IDENTIFY DEVICE (ATA-6 clause 8, "IDENTIFY DEVICE" data) ----------------------------

def test_identify_reports_capacity_geometry_and_lba48() -> None:
    sectors = 20_000
    words = Harness(disk_of(sectors)).identify()
    assert words[0] & 0x8000 == 0  # bit 15 clear: an ATA device
    assert (words[1], words[3], words[6]) == (sectors // (16 * 63), 16, 63)
    assert words[60] | words[61] << 16 == sectors
    assert words[100] | words[101] << 16 | words[102] << 32 | words[103] << 48 == sectors
    assert words[49] & (1 << 9) and words[49] & (1 << 8)  # LBA and DMA supported
    assert words[53] & 0b111 == 0b111  # words 54-58, 64-70 and 88 valid
    assert words[57] | words[58] << 16 == words[54] * words[55] * words[56]
    assert words[83] & 0xC000 == 0x4000 and words[83] & (1 << 10)  # LBA48 supported
    assert words[83] & (1 << 12) and words[83] & (1 << 13)  # FLUSH CACHE (EXT)
    assert words[86] & (1 << 10) and words[86] & (1 << 13)  # ...and enabled
    assert words[82] & (1 << 5) and words[85] & (1 << 5)  # write cache supported, enabled
    assert words[80] & (1 << 6)  # ATA/ATAPI-6
    assert words[47] == 0x8010  # 80h, 16 sectors per block at most
    assert words[59] == 0x0110  # multiple setting valid, 16


def test_identify_lba28_capacity_saturates_for_large_disks() -> None:
    sectors = (1 << 28) + 12345
    words = Harness(AtaDisk(SparseBackend(sectors * SECTOR_SIZE))).identify()
    assert words[60] | words[61] << 16 == 0x0FFFFFFF
    assert words[100] | words[101] << 16 | words[102] << 32 == sectors
    assert words[1] == 16383  # default cylinders saturate


def test_identify_strings_are_byte_swapped_pairs() -> None:
    """ATA-6 "ATA string convention": the first character of each pair in bits 15:8."""
    h = Harness(disk_of(serial="SN42", model="PYHVM DISK", firmware="0.9"))
    h.command(0xEC)
    page = h.read_block()
    assert page[54:64] == b"YPVH MIDKS"  # words 27-31 as stored on the wire
    assert page[20:24] == b"NS24"
    words = struct.unpack("<256H", page)
    assert words[27:47] == tuple(ata_string("PYHVM DISK", 40))
    assert bytes(c for w in words[23:27] for c in (w >> 8, w & 0xFF)) == b"0.9     "


def test_identify_integrity_word_checksums_the_page() -> None:
    """Word 255: A5h in bits 7:0, and the 512 bytes sum to zero modulo 256."""
    h = Harness(disk_of(1000))
    h.command(0xEC)
    page = h.read_block()
    assert page[510] == 0xA5
    assert sum(page) % 256 == 0


def test_identify_is_pio_in_with_one_interrupt() -> None:
    h = Harness(disk_of())
    h.command(0xEC)
    assert h.alt() == ST_READY | ST_DRQ
    assert h.irq.level
    assert h.status() == ST_READY | ST_DRQ and not h.irq.level  # Status acknowledges
    h.read_block()
    assert h.status() == ST_READY and h.irq.rising_edges == 1


def test_set_features_transfer_mode_shows_in_words_63_and_88() -> None:
    h = Harness(disk_of())
    h.set(COUNT, 0x45)  # UDMA mode 5
    h.command(0xEF, features=0x03)
    assert h.status() == ST_READY
    words = h.identify()
    assert words[88] == 0x3F | 1 << (8 + 5) and words[63] == 0x07
    h.set(COUNT, 0x21)  # MWDMA mode 1
    h.command(0xEF, features=0x03)
    words = h.identify()
    assert words[63] == 0x07 | 1 << 9 and words[88] == 0x3F
    h.set(COUNT, 0x0C)  # PIO flow control mode 4
    h.command(0xEF, features=0x03)
    assert h.status() == ST_READY
    h.set(COUNT, 0x46)  # UDMA 6: not offered
    h.command(0xEF, features=0x03)
    assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_ABRT


def test_set_features_write_cache_toggles_word_85_and_fua_writes() -> None:
    executor = DeferredExecutor()
    h = Harness(disk_of(), executor=executor)
    h.command(0xEF, features=0x82)
    words = h.identify()
    assert not words[85] & (1 << 5)
    h.lba28(0, 1)
    h.command(0x30)
    h.write_block(bytes(512))
    assert executor.queue[0][0].fua
    executor.complete()
    h.command(0xEF, features=0x02)
    assert h.identify()[85] & (1 << 5)


# -- PIO data-in and data-out (ATA-6 clause 9, PIO data-in / data-out protocols) ----------

def test_read_sectors_transfers_each_sector_after_an_interrupt() -> None:
    disk = disk_of()
    h = Harness(disk)
    h.lba28(5, 3)
    h.command(0x20)
    got = b""
    for block in range(3):
        assert h.irq.level, f"interrupt before block {block}"
        assert h.status() == ST_READY | ST_DRQ
        assert not h.irq.level
        got += h.read_block()
    assert got == contents(disk).data[5 * 512:8 * 512]
    assert h.status() == ST_READY and h.irq.rising_edges == 3


def test_read_multiple_transfers_blocks_of_the_multiple_count() -> None:
    disk = disk_of()
    h = Harness(disk)
    h.set(COUNT, 4)
    h.command(0xC6)  # SET MULTIPLE MODE
    assert h.status() == ST_READY
    before = h.irq.rising_edges
    h.lba28(0, 10)
    h.command(0xC4)
    got = b""
    for words in (1024, 1024, 512):  # 4 + 4 + 2 sectors
        assert h.status() == ST_READY | ST_DRQ
        got += h.read_block(words)
    assert got == contents(disk).data[:10 * 512]
    assert h.status() == ST_READY and h.irq.rising_edges - before == 3


def test_set_multiple_refuses_counts_that_are_not_powers_of_two() -> None:
    h = Harness(disk_of())
    for bad in (3, 32):
        h.set(COUNT, bad)
        h.command(0xC6)
        assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_ABRT
    h.set(COUNT, 0)  # disables multiple mode
    h.command(0xC6)
    assert h.identify()[59] & 0x1FF == 0
    h.lba28(0, 1)
    h.command(0xC4)  # READ MULTIPLE while disabled
    assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_ABRT


def test_write_sectors_first_block_without_interrupt_then_one_per_block() -> None:
    disk = disk_of()
    h = Harness(disk)
    data = pattern(3, seed=99)
    h.lba28(10, 3)
    h.command(0x30)
    assert h.status() == ST_READY | ST_DRQ and h.irq.rising_edges == 0
    for block in range(3):
        h.write_block(data[block * 512:(block + 1) * 512])
        assert h.irq.level
        expected = ST_READY | (ST_DRQ if block < 2 else 0)
        assert h.status() == expected
    assert contents(disk).data[10 * 512:13 * 512] == data
    assert h.irq.rising_edges == 3


def test_write_multiple_ext_writes_blocks_at_a_48_bit_address() -> None:
    backend = SparseBackend((1 << 33) * SECTOR_SIZE)
    h = Harness(AtaDisk(backend))
    h.set(COUNT, 2)
    h.command(0xC6)
    lba = (1 << 32) + 77
    h.lba48(lba, 3)
    h.command(0x39)
    data = pattern(3, seed=5)
    h.write_block(data[:1024])
    assert h.status() == ST_READY | ST_DRQ
    h.write_block(data[1024:])
    assert h.status() == ST_READY
    assert [backend.sectors[lba + i] for i in range(3)] == [
        bytes(data[i * 512:(i + 1) * 512]) for i in range(3)]


def test_32_bit_data_reads_move_two_words() -> None:
    disk = disk_of()
    h = Harness(disk)
    h.lba28(1, 1)
    h.command(0x20)
    got = b"".join(struct.pack("<I", h.cmd.read(DATA, 4)) for _ in range(128))
    assert got == contents(disk).data[512:1024]
    assert h.status() == ST_READY


def test_pio_read_longer_than_one_read_ahead_chunk() -> None:
    """READ SECTORS EXT of 300 sectors spans two executor requests (256 + 44 sectors)."""
    executor = DeferredExecutor()
    disk = disk_of(400)
    h = Harness(disk, executor=executor)
    h.lba48(50, 300)
    h.command(0x24)
    assert executor.complete().length == 256 * SECTOR_SIZE
    got = b"".join(h.read_block() for _ in range(256))
    assert h.status() == ST_BSY  # the next chunk is with the executor
    assert executor.complete().length == 44 * SECTOR_SIZE
    got += b"".join(h.read_block() for _ in range(44))
    assert got == contents(disk).data[50 * 512:350 * 512]
    assert h.status() == ST_READY


def test_8_bit_data_reads_consume_a_word_each() -> None:
    disk = disk_of()
    h = Harness(disk)
    h.lba28(0, 1)
    h.command(0x20)
    assert [h.reg(DATA) for _ in range(2)] == [contents(disk).data[0], contents(disk).data[2]]


def test_a_command_written_during_drq_abandons_the_transfer() -> None:
    h = Harness(disk_of())
    h.lba28(0, 2)
    h.command(0x20)
    h.read_block(10)
    h.command(0xE5)
    assert h.status() == ST_READY and h.cmd.read(DATA, 2) == 0xFFFF


def test_data_port_outside_a_transfer_reads_all_ones_and_ignores_writes() -> None:
    disk = disk_of()
    h = Harness(disk)
    before = bytes(contents(disk).data)
    assert h.cmd.read(DATA, 2) == 0xFFFF
    h.cmd.write(DATA, 2, 0x1234)
    assert bytes(contents(disk).data) == before and h.status() == ST_READY


def test_read_verify_checks_the_range_without_data() -> None:
    h = Harness(disk_of(16))
    h.lba28(0, 16)
    h.command(0x40)
    assert h.status() == ST_READY and h.irq.rising_edges == 1
    h.lba28(10, 7)
    h.command(0x40)
    assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_IDNF


# -- addressing (ATA-6 "48-bit Address feature set", "Device Control register") ---------------

def test_lba48_read_ext_reaches_beyond_lba28() -> None:
    h = Harness(AtaDisk(SparseBackend((1 << 30) * SECTOR_SIZE)))
    lba = (1 << 28) + 3
    h.lba48(lba, 1)
    h.command(0x24)
    assert h.status() == ST_READY | ST_DRQ
    assert h.read_block()[:8] == struct.pack("<Q", lba)


def test_lba28_command_uses_device_bits_for_27_to_24() -> None:
    h = Harness(AtaDisk(SparseBackend((1 << 28) * SECTOR_SIZE)))
    lba = 0x0ABCDEF1
    h.lba28(lba, 1)
    h.command(0x20)
    assert h.read_block()[:8] == struct.pack("<Q", lba)


def test_count_zero_means_65536_for_ext_and_256_for_lba28() -> None:
    h = Harness(disk_of(300))
    h.lba48(0, 0)
    h.command(0x42)  # READ VERIFY EXT of 65536 sectors
    assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_IDNF
    h.lba28(0, 0)
    h.command(0x40)  # 256 sectors fit
    assert h.status() == ST_READY


def test_hob_reads_previous_values_until_a_register_write() -> None:
    h = Harness(disk_of())
    h.lba48(0x0605_0403_0201, 0x0A0B)
    assert [h.reg(r) for r in (COUNT, LBA_LOW, LBA_MID, LBA_HIGH)] == [0x0B, 0x01, 0x02, 0x03]
    h.control(CTL_HOB)
    assert [h.reg(r) for r in (COUNT, LBA_LOW, LBA_MID, LBA_HIGH)] == [0x0A, 0x04, 0x05, 0x06]
    h.set(FEATURES, 0)  # any command block write clears HOB
    assert h.reg(LBA_LOW) == 0x01


def test_chs_addressing_follows_initialize_device_parameters() -> None:
    disk = disk_of(4 * 8 * 10)
    h = Harness(disk)
    h.set(COUNT, 8)  # sectors per track
    h.set(DEVICE, 3)  # max head 3: four heads
    h.command(0x91)
    assert h.status() == ST_READY
    words = h.identify()
    assert (words[54], words[55], words[56]) == (10, 4, 8)
    # cylinder 2, head 1, sector 3 -> (2 * 4 + 1) * 8 + 2 = 74
    h.set(DEVICE, 0x01)
    h.set(COUNT, 1)
    h.set(LBA_LOW, 3)
    h.set(LBA_MID, 2)
    h.set(LBA_HIGH, 0)
    h.command(0x20)
    assert h.read_block() == contents(disk).data[74 * 512:75 * 512]
    h.set(DEVICE, 0x00)
    h.set(LBA_LOW, 9)  # sector 9 of 8
    h.command(0x20)
    assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_IDNF


# -- errors (ATA-6 "Error register" and the command descriptions) ----------------------------------

def test_lba_past_the_end_reports_idnf_with_an_interrupt() -> None:
    h = Harness(disk_of(64))
    h.lba28(63, 2)
    h.command(0x20)
    assert h.irq.level
    assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_IDNF
    assert h.cmd.read(DATA, 2) == 0xFFFF  # no data phase


def test_write_to_a_read_only_disk_aborts_before_any_data() -> None:
    disk = disk_of(readonly=True)
    h = Harness(disk)
    for opcode, ext in ((0x30, False), (0xC5, False), (0xCA, False), (0x34, True)):
        (h.lba48 if ext else h.lba28)(0, 1)
        h.command(opcode)
        assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_ABRT


def test_backend_errors_are_unc_for_reads_and_abrt_for_writes() -> None:
    h = Harness(AtaDisk(FailingBackend(64 * SECTOR_SIZE)))
    h.lba28(7, 2)
    h.command(0x20)
    assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_UNC
    assert h.reg(LBA_LOW) == 7  # the failing sector
    h.lba28(3, 1)
    h.command(0x30)
    h.write_block(bytes(512))
    assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_ABRT


def test_unknown_command_and_nop_abort() -> None:
    h = Harness(disk_of())
    for opcode in (0x00, 0xA1, 0xFF, 0x51):
        h.command(opcode)
        assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_ABRT


def test_power_commands_complete_and_check_power_mode_reports_active() -> None:
    h = Harness(disk_of())
    for opcode in (0xE0, 0xE1, 0xE2, 0xE3):
        h.command(opcode)
        assert h.status() == ST_READY
    h.command(0xE5)
    assert h.status() == ST_READY and h.reg(COUNT) == 0xFF


# -- interrupts (ATA-6 "INTRQ", "Device Control register" nIEN) -----------------------------------

def test_nien_keeps_intrq_low_and_releases_a_pending_interrupt() -> None:
    h = Harness(disk_of())
    h.control(CTL_NIEN)
    h.command(0xE1)
    assert not h.irq.level and h.alt() == ST_READY
    h.control(0)
    assert h.irq.level  # still pending: the line rises once nIEN clears
    h.status()
    assert not h.irq.level


def test_alternate_status_does_not_acknowledge() -> None:
    h = Harness(disk_of())
    h.command(0xE1)
    assert h.alt() == ST_READY and h.irq.level
    assert h.status() == ST_READY and not h.irq.level


def test_intrq_follows_the_selected_device() -> None:
    h = Harness(disk_of(), disk_of())
    h.command(0xE1)  # master
    assert h.irq.level
    h.set(DEVICE, DEV_SLAVE)
    assert not h.irq.level  # device 0's INTRQ is released when it is not selected
    h.set(DEVICE, 0)
    assert h.irq.level


# -- ordering and busy (ATA-6 clause 7: writes while BSY) -------------------------------------

def test_command_written_while_busy_is_ignored() -> None:
    executor = DeferredExecutor()
    disk = disk_of()
    h = Harness(disk, executor=executor)
    h.lba28(0, 1)
    h.command(0x20)
    assert h.status() == ST_BSY
    h.set(LBA_LOW, 9)  # ignored too
    h.command(0xEC)
    h.set(DEVICE, DEV_SLAVE)
    assert len(executor.queue) == 1 and h.status() == ST_BSY
    executor.complete()
    assert h.status() == ST_READY | ST_DRQ
    assert h.reg(LBA_LOW) == 0 and h.read_block() == contents(disk).data[:512]


def test_flush_is_issued_only_after_the_write_completes_and_completes_when_durable() -> None:
    executor = DeferredExecutor()
    disk = disk_of()
    h = Harness(disk, executor=executor)
    h.lba28(0, 2)
    h.command(0x30)
    h.write_block(bytes(512))
    h.command(0xE7)  # FLUSH CACHE while the first block is in flight: BSY, ignored
    executor.complete()
    h.write_block(bytes(512))
    executor.complete()
    assert h.status() == ST_READY
    h.command(0xE7)
    assert h.status() == ST_BSY and contents(disk).flushes == 0
    executor.complete()
    assert h.irq.level and h.status() == ST_READY and contents(disk).flushes == 1
    assert executor.log == [("submit", DiskOp.WRITE), ("complete", DiskOp.WRITE),
                            ("submit", DiskOp.WRITE), ("complete", DiskOp.WRITE),
                            ("submit", DiskOp.FLUSH), ("complete", DiskOp.FLUSH)]


def test_flush_failure_aborts() -> None:
    executor = DeferredExecutor()
    h = Harness(disk_of(), executor=executor)
    h.command(0xEA)
    executor.complete(DiskResult(DiskStatus.IO_ERROR))
    assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_ABRT


# -- reset, diagnostics, signature (ATA-6 clause 9; EXECUTE DEVICE DIAGNOSTIC) ------------

def _signature(h: Harness) -> tuple[int, ...]:
    return tuple(h.reg(r) for r in (COUNT, LBA_LOW, LBA_MID, LBA_HIGH, DEVICE))


def test_srst_holds_bsy_then_presents_the_signature_without_an_interrupt() -> None:
    h = Harness(disk_of(), disk_of())
    h.lba28(0x123456, 9, slot=1)
    h.control(CTL_SRST)
    assert h.alt() == ST_BSY
    h.control(0)
    assert h.alt() == ST_READY and not h.irq.level
    assert _signature(h) == (1, 1, 0, 0, 0)
    assert h.reg(ERROR) == 0x01
    h.set(DEVICE, DEV_SLAVE)
    assert h.status() == ST_READY and h.reg(ERROR) == 0x01


def test_srst_aborts_a_pio_transfer() -> None:
    h = Harness(disk_of())
    h.lba28(0, 4)
    h.command(0x20)
    h.control(CTL_SRST)
    h.control(0)
    assert h.status() == ST_READY and h.cmd.read(DATA, 2) == 0xFFFF


def test_srst_with_a_request_in_flight_stays_busy_until_it_completes() -> None:
    executor = DeferredExecutor()
    disk = disk_of()
    h = Harness(disk, executor=executor)
    h.lba28(0, 1)
    h.command(0x30)
    h.write_block(bytes(512))
    h.control(CTL_SRST)
    h.control(0)
    assert h.status() == ST_BSY
    h.command(0xE7)
    assert len(executor.queue) == 1  # still one at a time
    executor.complete()
    assert h.status() == ST_READY and _signature(h) == (1, 1, 0, 0, 0)
    assert not h.irq.level


def test_execute_device_diagnostic_interrupts_with_the_signature() -> None:
    h = Harness(disk_of())
    h.set(DEVICE, DEV_SLAVE)  # runs whatever DEV says, even for an absent device 1
    h.command(0x90)
    assert h.irq.level
    assert h.status() == ST_READY and h.reg(ERROR) == 0x01
    assert _signature(h) == (1, 1, 0, 0, 0)


def test_hardware_reset_restores_power_on_settings() -> None:
    h = Harness(disk_of())
    h.set(COUNT, 2)
    h.command(0xC6)
    h.control(CTL_SRST)
    h.control(0)
    assert h.identify()[59] == 0x0102  # SRST keeps settings
    h.channel.reset()
    assert h.identify()[59] == 0x0110


# -- absent devices (ATA-6 "device 0 only" configurations) -----------------------------------------

def test_absent_slave_reads_status_zero_and_shadows_the_task_file() -> None:
    h = Harness(disk_of())
    h.set(DEVICE, DEV_SLAVE)
    h.set(COUNT, 0x55)
    h.set(LBA_LOW, 0xAA)
    assert (h.reg(COUNT), h.reg(LBA_LOW)) == (0x55, 0xAA)
    assert h.status() == 0x00 and h.alt() == 0x00
    h.command(0xEC)  # ignored
    assert h.status() == 0x00 and not h.irq.level
    h.set(DEVICE, 0)
    assert h.status() == ST_READY


def test_empty_channel_floats_at_7f() -> None:
    h = Harness()
    assert h.status() == 0x7F and h.alt() == 0x7F
    h.set(COUNT, 0x55)
    assert h.reg(COUNT) == 0x7F  # no device latches it
    h.command(0xEC)
    assert h.status() == 0x7F and not h.irq.level


def test_wide_register_accesses_are_byte_lanes() -> None:
    h = Harness(disk_of())
    h.cmd.write(2, 2, 0x0302)  # count 2, LBA low 3
    assert (h.reg(COUNT), h.reg(LBA_LOW)) == (2, 3)
    assert h.cmd.read(2, 2) == 0x0302
    assert h.cmd.read(6, 4) >> 16 == 0xFFFF  # past the block
    assert h.ctl.read(0, 2) == 0xFF00 | ST_READY
    with pytest.raises(ValueError):
        h.cmd.read(0, 3)
