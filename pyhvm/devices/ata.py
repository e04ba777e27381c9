"""An ATA channel (the task-file registers of ATA-6, T13 1410D) with up to two hard disks.

`AtaChannel` is one cable: the command block (eight ports at 0x1F0 or 0x170, `command_port`)
and the control block (one port at 0x3F6 or 0x376, `control_port`), a master and a slave
`AtaDisk`, and the channel's interrupt line. It runs the ATA-6 clause 9 protocols: non-data,
PIO data-in (an interrupt before each DRQ block), PIO data-out (DRQ for the first block
without an interrupt, an interrupt after each block), DMA (BSY until the bus master has moved
the data, one interrupt at the end), software reset and EXECUTE DEVICE DIAGNOSTIC.

Disk I/O leaves through the `executor` port as `DiskRequest`s, strictly one at a time per
channel, and comes back as a `DiskResult` through the completion callback; the device stays
BSY in between. A synchronous executor calls the completion before returning; a concurrent one
calls it later from the event loop with the device lock held. The completion sets the status
registers first and raises the interrupt last, so a guest woken by the interrupt never reads a
stale BSY. DMA data moves between the backend and guest memory in the executor; the bus master
(`DmaController`, see ide.py) supplies the guest-physical segments; without one connected a
DMA command waits, BSY, like a drive asserting DMARQ to a controller that never answers.

Choices where ATA-6 leaves room or real hardware varies:
- Absent devices. With only a master, selecting device 1 makes device 0 answer for it: Status
  and Alternate Status read 00h (which Linux's classification takes as "no device"), the other
  registers read back what was written, and commands other than EXECUTE DEVICE DIAGNOSTIC
  are ignored. With no device answering (an empty channel, or device 0 absent), every register
  reads 7Fh: the floating bus with the pull-down on DD7 that ATA-6 requires of the host, so
  BSY reads clear.
- The task file is one set of registers for both drives (both latch every write); Status,
  Error and the pending interrupt are per drive.
- Writes to the command block while BSY is set are ignored. A command written while DRQ is set
  (BSY clear) abandons the data transfer and runs.
- Reading the data register with no PIO data-in transfer returns FFFFh; writing it with no
  PIO data-out transfer is ignored. An 8-bit data access moves a whole word (the byte lane
  above is lost); a 32-bit one moves two words.
- A write to a read-only backend aborts (ABRT) before any data moves; a backend error reports
  UNC for reads and ABRT for writes and flushes; addresses past the medium report IDNF.
- SRST with a request in flight: the request cannot be recalled from the executor, so the
  drives stay BSY after SRST clears until it completes, then present the signature. That keeps
  "one request at a time" true across resets; the late completion changes nothing else.
- Settings (multiple count, transfer mode, write cache, CHS translation) survive SRST; `reset()`
  (hardware reset from the machine) restores power-on defaults.

Not emulated: ATAPI, the security, SMART, HPA and power-management timers (IDLE and STANDBY
complete at once and CHECK POWER MODE always reports active), queued DMA, 8-bit transfer mode,
timing of any kind.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pyhvm.devices.ata_disk import (
    CMD_CHECK_POWER_MODE,
    CMD_EXECUTE_DIAGNOSTIC,
    CMD_FLUSH_CACHE,
    CMD_FLUSH_CACHE_EXT,
    CMD_IDENTIFY,
    CMD_IDLE,
    CMD_IDLE_IMMEDIATE,
    CMD_INITIALIZE_PARAMETERS,
    CMD_RECALIBRATE,
    CMD_SET_FEATURES,
    CMD_SET_MULTIPLE,
    CMD_STANDBY,
    CMD_STANDBY_IMMEDIATE,
    DIAG_PASSED,
    ERR_ABRT,
    ERR_IDNF,
    ERR_UNC,
    RW_COMMANDS,
    SECTOR_SIZE,
    SF_DISABLE_REVERT,
    SF_DISABLE_WRITE_CACHE,
    SF_ENABLE_REVERT,
    SF_ENABLE_WRITE_CACHE,
    SF_TRANSFER_MODE,
    ST_BSY,
    ST_DRQ,
    ST_ERR,
    ST_READY,
    AtaDisk,
    RwCommand,
    Xfer,
)
from pyhvm.devices.base import IrqLine
from pyhvm.devices.blockio import DiskExecutor, DiskOp, DiskRequest, DiskResult, DiskStatus

__all__ = ["AtaChannel", "AtaCommandPort", "AtaControlPort", "AtaDisk", "DmaController",
           "PendingDma"]

# Command block register offsets from 0x1F0 / 0x170 (ATA-6 clause 7).
REG_DATA = 0
REG_ERROR = 1  # read
REG_FEATURES = 1  # write
REG_COUNT = 2
REG_LBA_LOW = 3
REG_LBA_MID = 4
REG_LBA_HIGH = 5
REG_DEVICE = 6
REG_STATUS = 7  # read
REG_COMMAND = 7  # write
COMMAND_BLOCK_SIZE = 8
CONTROL_BLOCK_SIZE = 1  # 0x3F6 / 0x376: Alternate Status (read), Device Control (write)

# Device register bits (ATA-6 "Device register").
DEV_HEAD_MASK = 0x0F  # head number, or LBA bits 27:24
DEV_SLAVE = 0x10  # DEV: selects device 1
DEV_LBA = 0x40  # the address is an LBA, not CHS

# Device Control register bits (ATA-6 "Device Control register").
CTL_NIEN = 0x02  # INTRQ disabled for the selected device
CTL_SRST = 0x04  # software reset of both devices while set
CTL_HOB = 0x80  # reads return the previous ("high order") values of the 48-bit registers
CTL_MASK = CTL_NIEN | CTL_SRST | CTL_HOB
DEFAULT_DEVICE_CONTROL = 0x00

FLOATING_BYTE = 0x7F  # no device drives the bus; the host's pull-down holds DD7 low
NO_DATA_WORD = 0xFFFF  # data register outside a PIO transfer
ABSENT_STATUS = 0x00  # device 0 answering for an absent device 1
CHECK_POWER_ACTIVE = 0xFF  # CHECK POWER MODE: "active or idle"
PIO_CHUNK_SECTORS = 256  # PIO-in reads ahead at most this many sectors per request

@dataclass(frozen=True)
class PendingDma:
    """A DMA command waiting for the bus master (DMARQ asserted)."""

    to_memory: bool  # a read: device -> memory
    length: int  # bytes


class DmaController(Protocol):
    """The bus master as the channel sees it."""

    def dma_requested(self) -> None:
        """A DMA command is waiting (`pending_dma()`); start if armed."""
        ...

    def dma_finished(self, result: DiskResult) -> None:
        """The transfer ended; called before the channel sets status and raises its line."""
        ...


class _Phase(enum.Enum):
    IDLE = "idle"
    PIO_IN = "pio-in"  # DRQ: the host reads the buffer
    PIO_OUT = "pio-out"  # DRQ: the host fills the buffer
    BUSY = "busy"  # a request is with the executor
    DMA_WAIT = "dma-wait"  # a DMA command waits for the bus master


@dataclass
class _Transfer:
    disk: AtaDisk
    command: RwCommand | None  # None: IDENTIFY's single block
    lba: int  # first sector of the command
    next_lba: int  # next sector to hand to the executor
    left: int  # sectors not yet handed to the executor
    block: int  # sectors per DRQ block


class AtaChannel:
    """One ATA channel: two device slots (0 master, 1 slave) behind one task file."""

    def __init__(self, irq: IrqLine, executor: DiskExecutor, master: AtaDisk | None = None,
                 slave: AtaDisk | None = None) -> None:
        if master is not None and master is slave:
            raise ValueError("one AtaDisk cannot be both master and slave")
        self._irq = irq
        self._executor = executor
        self.disks: tuple[AtaDisk | None, AtaDisk | None] = (master, slave)
        self._dma: DmaController | None = None
        self._irq_level = False
        self._inflight: int | None = None  # serial of the request with the executor
        self._cancelled = False  # that request belongs to a command a reset ended
        self._serial = 0
        self._devctl = DEFAULT_DEVICE_CONTROL
        self.command_port = AtaCommandPort(self)
        self.control_port = AtaControlPort(self)
        self._reset_task_file()
        self.reset()

    def connect_dma(self, controller: DmaController) -> None:
        self._dma = controller

    # -- reset -------------------------------------------------------------------------------

    def reset(self) -> None:
        """Hardware reset (RESET-): power-on settings, signature, no interrupt."""
        self._devctl = DEFAULT_DEVICE_CONTROL
        for disk in self.disks:
            if disk is not None:
                disk.power_on()
        self._begin_reset()
        self._end_reset()

    def _begin_reset(self) -> None:
        self._abandon()
        if self._inflight is not None:
            self._cancelled = True
        for disk in self._present():
            disk.status = ST_BSY
            disk.intrq = False
        self._update_irq()

    def _end_reset(self) -> None:
        """SRST cleared (ATA-6 clause 9, software reset protocol): signature, diagnostic code."""
        if self._inflight is not None or self._devctl & CTL_SRST:
            return  # still busy: finishes when the request in flight completes
        self._set_signature()
        for disk in self._present():
            disk.status = ST_READY
            disk.error = DIAG_PASSED
            disk.intrq = False
        self._update_irq()

    def _set_signature(self) -> None:
        """ATA device signature: count 01h, LBA 00 00 01h, device 00h (selects device 0)."""
        self._reset_task_file()
        self._count = 0x01
        self._lba_low = 0x01

    def _reset_task_file(self) -> None:
        self._features = self._count = self._lba_low = self._lba_mid = self._lba_high = 0
        self._hob = [0, 0, 0, 0, 0]  # previous features, count, LBA low, mid, high
        self._device = 0
        self._phase = _Phase.IDLE
        self._xfer: _Transfer | None = None
        self._buffer = bytearray()
        self._pos = 0
        self._block_end = 0

    def _abandon(self) -> None:
        """End any data transfer without completing it."""
        self._phase = _Phase.IDLE
        self._xfer = None
        self._buffer = bytearray()
        self._pos = self._block_end = 0

    # -- what the ports see -------------------------------------------------------------------

    def _present(self) -> list[AtaDisk]:
        return [disk for disk in self.disks if disk is not None]

    def _selected_slot(self) -> int:
        return 1 if self._device & DEV_SLAVE else 0

    def selected(self) -> AtaDisk | None:
        return self.disks[self._selected_slot()]

    def _answering(self) -> bool:
        """Whether some device drives the bus for the selected slot."""
        return self.selected() is not None or (
            self._selected_slot() == 1 and self.disks[0] is not None)

    def _busy(self) -> bool:
        return bool(self._devctl & CTL_SRST) or self._inflight is not None or self._phase in (
            _Phase.BUSY, _Phase.DMA_WAIT)

    def status(self, *, acknowledge: bool) -> int:
        """Status (acknowledging the interrupt) or Alternate Status (not)."""
        disk = self.selected()
        if disk is None:
            return ABSENT_STATUS if self._answering() else FLOATING_BYTE
        if acknowledge and disk.intrq:
            disk.intrq = False
            self._update_irq()
        return disk.status

    def read_register(self, reg: int) -> int:
        if reg == REG_DATA:
            return self.read_data() & 0xFF
        if not self._answering():
            return FLOATING_BYTE
        if reg == REG_STATUS:
            return self.status(acknowledge=True)
        if reg == REG_ERROR:
            disk = self.selected() or self.disks[0]
            return disk.error if disk is not None else FLOATING_BYTE
        if reg == REG_DEVICE:
            return self._device
        index = reg - REG_FEATURES
        if self._devctl & CTL_HOB:
            return self._hob[index]
        return (self._features, self._count, self._lba_low, self._lba_mid,
                self._lba_high)[index]

    def write_register(self, reg: int, value: int) -> None:
        if reg == REG_DATA:
            self.write_data(value)
            return
        if self._busy():
            return  # the host shall not write while BSY (ATA-6 clause 7); the device ignores
        self._devctl &= ~CTL_HOB  # a command block write clears HOB
        if reg == REG_COMMAND:
            self._command(value)
        elif reg == REG_DEVICE:
            self._device = value
            self._update_irq()  # INTRQ follows the selected device
        else:
            self._push(reg, value)

    def _push(self, reg: int, value: int) -> None:
        """The 48-bit registers are two-deep: the old value becomes the "previous" one."""
        index = reg - REG_FEATURES
        names = ("_features", "_count", "_lba_low", "_lba_mid", "_lba_high")
        self._hob[index] = getattr(self, names[index])
        setattr(self, names[index], value)

    def write_control(self, value: int) -> None:
        old, self._devctl = self._devctl, value & CTL_MASK
        if value & CTL_SRST and not old & CTL_SRST:
            self._begin_reset()
        elif old & CTL_SRST and not value & CTL_SRST:
            self._end_reset()
        self._update_irq()

    def _update_irq(self) -> None:
        """INTRQ: the selected device's pending interrupt, unless nIEN tri-states it."""
        disk = self.selected()
        level = disk is not None and disk.intrq and not self._devctl & CTL_NIEN
        if level != self._irq_level:
            self._irq_level = level
            self._irq.set_level(level)

    # -- PIO data -------------------------------------------------------------------------------

    def read_data(self) -> int:
        if self._phase is not _Phase.PIO_IN:
            return NO_DATA_WORD
        pos = self._pos
        word = self._buffer[pos] | self._buffer[pos + 1] << 8
        self._pos = pos + 2
        if self._pos >= self._block_end:
            self._in_block_done()
        return word

    def write_data(self, value: int) -> None:
        if self._phase is not _Phase.PIO_OUT:
            return
        pos = self._pos
        self._buffer[pos] = value & 0xFF
        self._buffer[pos + 1] = (value >> 8) & 0xFF
        self._pos = pos + 2
        if self._pos >= self._block_end:
            self._out_block_full()

    def _in_block_done(self) -> None:
        """The host read a whole DRQ block (ATA-6 clause 9, PIO data-in protocol)."""
        xfer = self._xfer
        assert xfer is not None
        if self._pos < len(self._buffer):
            self._block_end = min(self._pos + xfer.block * SECTOR_SIZE, len(self._buffer))
            self._interrupt(xfer.disk)  # the next block is ready at once
        elif xfer.left:
            self._read_chunk()
        else:
            self._abandon()
            xfer.disk.status = ST_READY  # no interrupt after the last block

    def _out_block_full(self) -> None:
        xfer = self._xfer
        assert xfer is not None
        disk = xfer.disk
        self._submit(disk, DiskRequest(DiskOp.WRITE, disk.backend, xfer.next_lba * SECTOR_SIZE,
                                       len(self._buffer), buffer=self._buffer,
                                       fua=not disk.write_cache), self._pio_write_done)

    # -- commands -------------------------------------------------------------------------------

    def _command(self, opcode: int) -> None:
        disk = self.selected()
        if opcode == CMD_EXECUTE_DIAGNOSTIC and self._present():
            self._diagnose()  # runs on both devices whatever DEV says
            return
        if disk is None:
            return  # nobody to run it: device 0 does not execute for an absent device 1
        self._abandon()
        disk.intrq = False  # writing Command clears the pending interrupt
        disk.error = 0
        self._update_irq()
        rw = RW_COMMANDS.get(opcode)
        if rw is not None:
            self._start_rw(disk, rw)
            return
        handler = _HANDLERS.get(opcode)
        if handler is None:
            self._finish(disk, ERR_ABRT)
        else:
            handler(self, disk)

    def _finish(self, disk: AtaDisk, error: int = 0) -> None:
        """Non-data completion: status first, then the interrupt."""
        self._abandon()
        disk.error = error
        disk.status = ST_READY | (ST_ERR if error else 0)
        self._interrupt(disk)

    def _interrupt(self, disk: AtaDisk) -> None:
        disk.intrq = True
        self._update_irq()

    def _fail(self, disk: AtaDisk, error: int, lba: int, ext: bool) -> None:
        """An error mid-command: the address registers name the failing sector."""
        self._set_lba(lba, ext)
        self._finish(disk, error)

    def _set_lba(self, lba: int, ext: bool) -> None:
        if not self._device & DEV_LBA and not ext:
            return  # CHS: leave the registers as the host wrote them
        self._lba_low, self._lba_mid, self._lba_high = (lba & 0xFF, (lba >> 8) & 0xFF,
                                                        (lba >> 16) & 0xFF)
        if ext:
            self._hob[2:5] = [(lba >> 24) & 0xFF, (lba >> 32) & 0xFF, (lba >> 40) & 0xFF]
        else:
            self._device = (self._device & ~DEV_HEAD_MASK) | ((lba >> 24) & DEV_HEAD_MASK)

    def _address(self, disk: AtaDisk, ext: bool) -> tuple[int | None, int]:
        """(first LBA or None for a CHS address naming nothing, sector count)."""
        low = self._lba_low | self._lba_mid << 8 | self._lba_high << 16
        if ext:
            high = self._hob[2] | self._hob[3] << 8 | self._hob[4] << 16
            return high << 24 | low, (self._hob[1] << 8 | self._count) or 0x10000
        count = self._count or 0x100
        if self._device & DEV_LBA:
            return (self._device & DEV_HEAD_MASK) << 24 | low, count
        cylinder = self._lba_mid | self._lba_high << 8
        return disk.chs_to_lba(cylinder, self._device & DEV_HEAD_MASK, self._lba_low), count

    def _start_rw(self, disk: AtaDisk, rw: RwCommand) -> None:
        lba, count = self._address(disk, rw.ext)
        if lba is None or lba + count > disk.sectors:
            self._finish(disk, ERR_IDNF)
            return
        if rw.write and disk.readonly:
            self._finish(disk, ERR_ABRT)  # ABRT rather than WP: WP is for removable media
            return
        if rw.xfer is Xfer.MULTIPLE and not disk.multiple:
            self._finish(disk, ERR_ABRT)  # multiple mode is disabled
            return
        if rw.xfer is Xfer.VERIFY:
            self._finish(disk)  # the medium cannot fail to verify
            return
        block = disk.multiple if rw.xfer is Xfer.MULTIPLE else 1
        self._xfer = _Transfer(disk, rw, lba, lba, count, block)
        if rw.xfer is Xfer.DMA:
            self._phase = _Phase.DMA_WAIT
            disk.status = ST_BSY
            if self._dma is not None:
                self._dma.dma_requested()
        elif rw.write:
            self._next_out_block()  # DRQ for the first block, no interrupt
        else:
            self._read_chunk()

    def _read_chunk(self) -> None:
        xfer = self._xfer
        assert xfer is not None
        sectors = min(xfer.left, PIO_CHUNK_SECTORS)
        self._submit(xfer.disk, DiskRequest(
            DiskOp.READ, xfer.disk.backend, xfer.next_lba * SECTOR_SIZE, sectors * SECTOR_SIZE,
            buffer=bytearray(sectors * SECTOR_SIZE)), self._pio_read_done)

    def _start_pio_in(self, disk: AtaDisk, buffer: bytearray) -> None:
        xfer = self._xfer
        assert xfer is not None
        self._buffer, self._pos = buffer, 0
        self._block_end = min(xfer.block * SECTOR_SIZE, len(buffer))
        self._phase = _Phase.PIO_IN
        disk.status = ST_READY | ST_DRQ
        self._interrupt(disk)

    def _next_out_block(self) -> None:
        xfer = self._xfer
        assert xfer is not None
        size = min(xfer.block, xfer.left) * SECTOR_SIZE
        self._buffer, self._pos, self._block_end = bytearray(size), 0, size
        self._phase = _Phase.PIO_OUT
        xfer.disk.status = ST_READY | ST_DRQ

    # -- the executor ---------------------------------------------------------------------------

    def _submit(self, disk: AtaDisk, request: DiskRequest,
                done: Callable[[AtaDisk, DiskRequest, DiskResult], None]) -> None:
        self._phase = _Phase.BUSY
        disk.status = ST_BSY
        self._serial += 1
        serial = self._serial
        self._inflight = serial
        self._executor(request, lambda result: self._completed(serial, disk, request, result,
                                                              done))

    def _completed(self, serial: int, disk: AtaDisk, request: DiskRequest, result: DiskResult,
                   done: Callable[[AtaDisk, DiskRequest, DiskResult], None]) -> None:
        if self._inflight != serial:
            return  # a second completion for one request: an executor bug, ignored
        self._inflight = None
        if self._cancelled:
            self._cancelled = False
            self._end_reset()  # a reset ended the command; finish that reset now if due
            return
        done(disk, request, result)

    def _pio_read_done(self, disk: AtaDisk, request: DiskRequest, result: DiskResult) -> None:
        xfer = self._xfer
        assert xfer is not None and xfer.command is not None and request.buffer is not None
        if not result.ok:
            bad = xfer.next_lba + result.transferred // SECTOR_SIZE
            self._fail(disk, ERR_UNC, bad, xfer.command.ext)
            return
        sectors = request.length // SECTOR_SIZE
        xfer.next_lba += sectors
        xfer.left -= sectors
        self._start_pio_in(disk, request.buffer)

    def _pio_write_done(self, disk: AtaDisk, request: DiskRequest, result: DiskResult) -> None:
        xfer = self._xfer
        assert xfer is not None and xfer.command is not None
        if not result.ok:
            bad = xfer.next_lba + result.transferred // SECTOR_SIZE
            self._fail(disk, ERR_ABRT, bad, xfer.command.ext)
            return
        sectors = request.length // SECTOR_SIZE
        xfer.next_lba += sectors
        xfer.left -= sectors
        if xfer.left:
            self._next_out_block()
            self._interrupt(disk)  # the host may send the next block
        else:
            self._finish(disk)

    # -- DMA, driven by the bus master ------------------------------------------------------------

    def pending_dma(self) -> PendingDma | None:
        xfer = self._xfer
        if self._phase is not _Phase.DMA_WAIT or xfer is None or xfer.command is None:
            return None
        return PendingDma(not xfer.command.write, xfer.left * SECTOR_SIZE)

    def start_dma(self, segments: tuple[tuple[int, int], ...]) -> None:
        """The bus master has the PRD segments (lengths summing to the transfer): go."""
        xfer = self._xfer
        pending = self.pending_dma()
        if pending is None or xfer is None:
            raise RuntimeError("start_dma without a DMA command waiting")
        if sum(length for _, length in segments) != pending.length:
            raise ValueError("DMA segments do not cover the transfer exactly")
        disk = xfer.disk
        op = DiskOp.READ if pending.to_memory else DiskOp.WRITE
        self._submit(disk, DiskRequest(op, disk.backend, xfer.lba * SECTOR_SIZE, pending.length,
                                       segments=segments, fua=not disk.write_cache),
                     self._dma_done)

    def fail_dma(self) -> None:
        """The bus master could not transfer (bad PRD table, wrong direction): abort."""
        xfer = self._xfer
        if self.pending_dma() is None or xfer is None or xfer.command is None:
            return
        self._fail(xfer.disk, ERR_ABRT, xfer.lba, xfer.command.ext)

    def _dma_done(self, disk: AtaDisk, request: DiskRequest, result: DiskResult) -> None:
        xfer = self._xfer
        assert xfer is not None and xfer.command is not None
        if self._dma is not None:
            self._dma.dma_finished(result)  # bus-master status before ours and the line
        if result.ok:
            self._finish(disk)
        elif result.status is DiskStatus.DMA_ERROR:
            self._fail(disk, ERR_ABRT, xfer.lba, xfer.command.ext)
        else:
            error = ERR_ABRT if xfer.command.write else ERR_UNC
            self._fail(disk, error, xfer.lba + result.transferred // SECTOR_SIZE,
                       xfer.command.ext)

    # -- the other commands (ATA-6 clause 8) ------------------------------------------------------

    def _identify(self, disk: AtaDisk) -> None:
        self._xfer = _Transfer(disk, None, 0, 0, 0, 1)
        self._start_pio_in(disk, bytearray(disk.identify(self.disks.index(disk))))

    def _flush(self, disk: AtaDisk) -> None:
        """Completes only once the executor says every earlier write is durable."""
        self._submit(disk, DiskRequest(DiskOp.FLUSH, disk.backend), self._flush_done)

    def _flush_done(self, disk: AtaDisk, request: DiskRequest, result: DiskResult) -> None:
        self._finish(disk, 0 if result.ok else ERR_ABRT)

    def _set_features(self, disk: AtaDisk) -> None:
        feature = self._features
        if feature == SF_TRANSFER_MODE:
            ok = disk.set_transfer_mode(self._count)
        elif feature in (SF_ENABLE_WRITE_CACHE, SF_DISABLE_WRITE_CACHE):
            disk.write_cache = feature == SF_ENABLE_WRITE_CACHE
            ok = True
        else:
            ok = feature in (SF_DISABLE_REVERT, SF_ENABLE_REVERT)
        self._finish(disk, 0 if ok else ERR_ABRT)

    def _set_multiple(self, disk: AtaDisk) -> None:
        self._finish(disk, 0 if disk.set_multiple(self._count) else ERR_ABRT)

    def _initialize_parameters(self, disk: AtaDisk) -> None:
        heads = (self._device & DEV_HEAD_MASK) + 1
        self._finish(disk, 0 if disk.set_chs(heads, self._count) else ERR_ABRT)

    def _check_power_mode(self, disk: AtaDisk) -> None:
        self._count = CHECK_POWER_ACTIVE
        self._finish(disk)

    def _no_op(self, disk: AtaDisk) -> None:
        self._finish(disk)

    def _diagnose(self) -> None:
        """EXECUTE DEVICE DIAGNOSTIC: both devices report; device 0 (or the only one)
        asserts INTRQ, and the signature selects device 0."""
        self._abandon()
        self._set_signature()
        for disk in self._present():
            disk.status = ST_READY
            disk.error = DIAG_PASSED
            disk.intrq = False
        self._interrupt(self._present()[0])


_HANDLERS: dict[int, Callable[[AtaChannel, AtaDisk], None]] = {
    CMD_IDENTIFY: AtaChannel._identify,
    CMD_FLUSH_CACHE: AtaChannel._flush,
    CMD_FLUSH_CACHE_EXT: AtaChannel._flush,
    CMD_SET_FEATURES: AtaChannel._set_features,
    CMD_SET_MULTIPLE: AtaChannel._set_multiple,
    CMD_INITIALIZE_PARAMETERS: AtaChannel._initialize_parameters,
    CMD_CHECK_POWER_MODE: AtaChannel._check_power_mode,
    CMD_IDLE: AtaChannel._no_op,
    CMD_IDLE_IMMEDIATE: AtaChannel._no_op,
    CMD_STANDBY: AtaChannel._no_op,
    CMD_STANDBY_IMMEDIATE: AtaChannel._no_op,
    CMD_RECALIBRATE: AtaChannel._no_op,
}


# -- bus adapters -------------------------------------------------------------------------------

def _check_size(size: int) -> None:
    if size not in (1, 2, 4):
        raise ValueError(f"port access size must be 1, 2 or 4 bytes, got {size}")


class AtaCommandPort:
    """The command block: eight ports. A 16- or 32-bit access at offset 0 moves one or two
    data words; any other wide access is byte lanes on consecutive registers."""

    def __init__(self, channel: AtaChannel) -> None:
        self._channel = channel

    def read(self, offset: int, size: int) -> int:
        _check_size(size)
        channel = self._channel
        if offset == REG_DATA and size > 1:
            value = channel.read_data()
            return value | channel.read_data() << 16 if size == 4 else value
        value = 0
        for lane in range(size):
            reg = offset + lane
            byte = channel.read_register(reg) if 0 <= reg < COMMAND_BLOCK_SIZE else 0xFF
            value |= byte << (8 * lane)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        _check_size(size)
        channel = self._channel
        if offset == REG_DATA and size > 1:
            channel.write_data(value & 0xFFFF)
            if size == 4:
                channel.write_data((value >> 16) & 0xFFFF)
            return
        for lane in range(size):
            reg = offset + lane
            if 0 <= reg < COMMAND_BLOCK_SIZE:
                channel.write_register(reg, (value >> (8 * lane)) & 0xFF)


class AtaControlPort:
    """The control block: Alternate Status on read, Device Control on write."""

    def __init__(self, channel: AtaChannel) -> None:
        self._channel = channel

    def read(self, offset: int, size: int) -> int:
        _check_size(size)
        value = (1 << (8 * size)) - 1
        if offset == 0:
            value = (value & ~0xFF) | self._channel.status(acknowledge=False)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        _check_size(size)
        if offset == 0:
            self._channel.write_control(value & 0xFF)
