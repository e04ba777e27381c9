"""The PIIX/PIIX3 IDE function: two ATA channels and the bus-master IDE block (SFF-8038i).

`PiixIde` joins the primary channel (0x1F0/0x3F6, IRQ 14) and the secondary (0x170/0x376,
IRQ 15) to the 16-byte bus-master block the PCI function decodes at BAR4 (`bmide_port`).
Each channel's bus master has a command register (start/stop, direction), a status register
and a PRD table pointer (SFF-8038i, "Bus Master IDE Register Description"). When the guest sets
start and the drive has a DMA command waiting, the bus master walks the PRD table in guest
memory, turns it into (gpa, length) segments and hands them to the channel, whose executor
moves the data. Completion sets the status bits, then raises the channel's interrupt.

Status after a transfer (SFF-8038i, the Interrupt/Active table of the status register):
- Interrupt=1 Active=0: normal completion, the table described exactly the transfer size.
- Interrupt=1 Active=1: the drive completed but the table described more than it moved.
- Interrupt=0 Active=0, Error=0: the table described less than the transfer. No data moves,
  the drive stays BSY waiting for more (the guest resets it); a new start walks again.
- Interrupt=1 Active=0 Error=1: the PRD table is unreadable (outside RAM, runs past 4 GiB,
  no EOT within 8192 entries: the most a 64 KiB table can hold), a data segment is not RAM, or
  the direction bit disagrees with the command; the drive aborts the command (ERR, ABRT).
The interrupt bit latches every rising edge of the channel's INTRQ (after nIEN), as the chip
samples the IDE interrupt pin; so a PIO command's interrupt sets it too.

Choices: PRD base bit 0 and byte-count bit 0 are ignored (word transfers); a region that
crosses a 64 KiB boundary (forbidden by the spec) is accepted; a count of 0 is 64 KiB. The
direction bit cannot change while the engine is active. Each start runs at most one transfer
(drivers stop and restart the engine per command). Clearing start stops the engine and clears
Active; a request already with the executor still completes (the drive then finishes its
command) but no longer changes the bus-master bits. With PCI bus mastering disabled
(`bus_master_enabled` false), start arms the engine but nothing moves until the machine calls
`bus_master_changed()` with mastering enabled.

The executor is the placement switch: `SyncExecutor` (blockio.py, re-exported here) moves the
data inside the guest's start write; a concurrent one completes later from the event loop.

Not emulated: the PIIX timing registers (in PCI config space, elsewhere), simplex mode
(bit 7 reads 0: both channels may master at once), partial transfers for a short table.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from pyhvm.devices.ata import AtaChannel, AtaDisk
from pyhvm.devices.base import Device, GuestError, IrqLine
from pyhvm.devices.blockio import DiskExecutor, DiskResult, DiskStatus, DmaMemory, SyncExecutor

__all__ = ["BusMasterChannel", "BusMasterPort", "PiixIde", "PrdWalk", "SyncExecutor",
           "walk_prd_table"]

PRIMARY_COMMAND_BASE = 0x1F0
PRIMARY_CONTROL_BASE = 0x3F6
PRIMARY_IRQ = 14
SECONDARY_COMMAND_BASE = 0x170
SECONDARY_CONTROL_BASE = 0x376
SECONDARY_IRQ = 15

# Bus-master register offsets within a channel's eight bytes (SFF-8038i).
BM_COMMAND = 0
BM_STATUS = 2
BM_PRD_ADDRESS = 4  # four bytes
BM_CHANNEL_STRIDE = 8  # primary at 0, secondary at 8
BMIDE_SIZE = 16

BM_CMD_START = 0x01  # start/stop bus master
BM_CMD_TO_MEMORY = 0x08  # 1: the bus master writes memory (an ATA read); 0: reads memory
BM_CMD_MASK = BM_CMD_START | BM_CMD_TO_MEMORY  # the other bits are reserved, read 0

BM_ST_ACTIVE = 0x01  # read-only
BM_ST_ERROR = 0x02  # write 1 to clear
BM_ST_INTERRUPT = 0x04  # write 1 to clear
BM_ST_DRIVE0_DMA = 0x20  # read/write scratch for the BIOS: drive 0 is DMA capable
BM_ST_DRIVE1_DMA = 0x40
BM_ST_SIMPLEX = 0x80  # read-only 0
BM_ST_W1C = BM_ST_ERROR | BM_ST_INTERRUPT
BM_ST_RW = BM_ST_DRIVE0_DMA | BM_ST_DRIVE1_DMA
PRD_ADDRESS_MASK = 0xFFFF_FFFC  # the table is dword aligned

DEFAULT_BM_COMMAND = 0x00
DEFAULT_BM_STATUS = 0x00
DEFAULT_PRD_ADDRESS = 0

PRD_ENTRY_SIZE = 8
PRD_EOT = 0x8000_0000  # in the entry's second dword: last entry of the table
PRD_COUNT_MASK = 0xFFFF
PRD_MAX_ENTRIES = 0x10000 // PRD_ENTRY_SIZE  # a table fits in one 64 KiB page
PRD_REGION_MAX = 0x10000  # a byte count of 0 means 64 KiB
ADDRESS_LIMIT = 1 << 32  # the PIIX drives 32 address bits


# -- PRD tables -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PrdWalk:
    """What a PRD table says about a transfer of a given length."""

    segments: tuple[tuple[int, int], ...]  # (gpa, length), adjacent regions merged
    covered: int  # bytes described, at most the transfer length
    exhausted: bool  # the walk used up the table (EOT entry fully consumed)
    fault: str = ""  # the table itself could not be used


def walk_prd_table(memory: DmaMemory, table: int, length: int) -> PrdWalk:
    """Read entries from `table` until `length` bytes are described or EOT."""
    segments: list[list[int]] = []
    covered = 0
    address = table
    for _ in range(PRD_MAX_ENTRIES):
        if address + PRD_ENTRY_SIZE > ADDRESS_LIMIT:
            return PrdWalk((), 0, False, "PRD table runs past 4 GiB")
        try:
            base, flags = struct.unpack("<II", memory.read(address, PRD_ENTRY_SIZE))
        except GuestError as error:
            return PrdWalk((), 0, False, f"PRD table unreadable: {error}")
        address += PRD_ENTRY_SIZE
        base &= ~1
        raw = flags & PRD_COUNT_MASK
        count = PRD_REGION_MAX if raw == 0 else raw & ~1
        take = min(count, length - covered)
        if take:
            if base + take > ADDRESS_LIMIT:
                return PrdWalk((), 0, False, f"PRD region {base:#x} runs past 4 GiB")
            if segments and segments[-1][0] + segments[-1][1] == base:
                segments[-1][1] += take
            else:
                segments.append([base, take])
            covered += take
        if flags & PRD_EOT:
            return PrdWalk(_frozen(segments), covered, take == count)
        if covered == length:
            return PrdWalk(_frozen(segments), covered, False)
    return PrdWalk((), 0, False, f"no EOT within {PRD_MAX_ENTRIES} PRD entries")


def _frozen(segments: list[list[int]]) -> tuple[tuple[int, int], ...]:
    return tuple((base, size) for base, size in segments)


# -- the bus master ---------------------------------------------------------------------------

class BusMasterChannel:
    """One channel's bus-master registers and engine; the channel's `DmaController`."""

    def __init__(self, memory: DmaMemory, channel: AtaChannel,
                 enabled: Callable[[], bool]) -> None:
        self._memory = memory
        self._channel = channel
        self._enabled = enabled
        self.reset()

    def reset(self) -> None:
        self.command = DEFAULT_BM_COMMAND
        self.status = DEFAULT_BM_STATUS
        self.prd_address = DEFAULT_PRD_ADDRESS
        self._armed = False  # start written, no transfer run yet
        self._inflight = False  # a transfer this engine started is with the executor
        self._left_over = False  # that transfer's table describes more than it moves

    def read_byte(self, reg: int) -> int:
        if reg == BM_COMMAND:
            return self.command
        if reg == BM_STATUS:
            return self.status
        if BM_PRD_ADDRESS <= reg < BM_PRD_ADDRESS + 4:
            return (self.prd_address >> (8 * (reg - BM_PRD_ADDRESS))) & 0xFF
        return 0x00  # reserved (the PIIX's device-specific bytes)

    def write_byte(self, reg: int, value: int) -> None:
        if reg == BM_COMMAND:
            self._write_command(value)
        elif reg == BM_STATUS:
            kept = self.status & (BM_ST_ACTIVE | (BM_ST_W1C & ~value))
            self.status = kept | (value & BM_ST_RW)
        elif BM_PRD_ADDRESS <= reg < BM_PRD_ADDRESS + 4:
            shift = 8 * (reg - BM_PRD_ADDRESS)
            address = (self.prd_address & ~(0xFF << shift)) | (value << shift)
            self.prd_address = address & PRD_ADDRESS_MASK

    def _write_command(self, value: int) -> None:
        value &= BM_CMD_MASK
        was_started = self.command & BM_CMD_START
        if self.status & BM_ST_ACTIVE:  # "must not be changed while active": kept
            value = (value & ~BM_CMD_TO_MEMORY) | (self.command & BM_CMD_TO_MEMORY)
        self.command = value
        if was_started and not value & BM_CMD_START:
            self.status &= ~BM_ST_ACTIVE
            self._armed = self._inflight = False
        elif not was_started and value & BM_CMD_START:
            self.status |= BM_ST_ACTIVE
            self._armed = True
            self.poll()

    def poll(self) -> None:
        """Run a transfer if the engine is armed, mastering is on and the drive is waiting."""
        if not self._armed or not self._enabled():
            return
        pending = self._channel.pending_dma()
        if pending is None:
            return
        self._armed = False
        if bool(self.command & BM_CMD_TO_MEMORY) != pending.to_memory:
            self._error()
            return
        walk = walk_prd_table(self._memory, self.prd_address, pending.length)
        if walk.fault:
            self._error()
        elif walk.covered < pending.length:
            self.status &= ~BM_ST_ACTIVE  # short table: Interrupt=0 Active=0, drive waits
        else:
            self._inflight = True
            self._left_over = not walk.exhausted
            self._channel.start_dma(walk.segments)

    def _error(self) -> None:
        self.status = (self.status & ~BM_ST_ACTIVE) | BM_ST_ERROR
        self._channel.fail_dma()  # the drive aborts and interrupts: Interrupt=1

    # DmaController
    def dma_requested(self) -> None:
        self.poll()

    def dma_finished(self, result: DiskResult) -> None:
        if not self._inflight:
            return  # start was cleared meanwhile: the engine forgot this transfer
        self._inflight = False
        if result.status is DiskStatus.DMA_ERROR:
            self.status = (self.status & ~BM_ST_ACTIVE) | BM_ST_ERROR
        elif result.ok and not self._left_over:
            self.status &= ~BM_ST_ACTIVE
        # An I/O error ends the drive's transfer early: the table is not used up, Active stays.

    def interrupt_raised(self) -> None:
        self.status |= BM_ST_INTERRUPT


class _InterruptTap:
    """The channel's INTRQ on its way to the PIC: a rising edge latches the bus master's
    Interrupt bit before the line rises."""

    def __init__(self, line: IrqLine) -> None:
        self._line = line
        self.bus_master: BusMasterChannel | None = None

    def set_level(self, level: bool) -> None:
        if level and self.bus_master is not None:
            self.bus_master.interrupt_raised()
        self._line.set_level(level)


class BusMasterPort:
    """The 16-byte BAR4 block; wide accesses are byte lanes on consecutive registers."""

    def __init__(self, channels: tuple[BusMasterChannel, BusMasterChannel]) -> None:
        self._channels = channels

    def read(self, offset: int, size: int) -> int:
        _check_size(size)
        value = 0
        for lane in range(size):
            reg = offset + lane
            byte = 0xFF
            if 0 <= reg < BMIDE_SIZE:
                byte = self._channels[reg // BM_CHANNEL_STRIDE].read_byte(reg % BM_CHANNEL_STRIDE)
            value |= byte << (8 * lane)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        _check_size(size)
        for lane in range(size):
            reg = offset + lane
            if 0 <= reg < BMIDE_SIZE:
                self._channels[reg // BM_CHANNEL_STRIDE].write_byte(
                    reg % BM_CHANNEL_STRIDE, (value >> (8 * lane)) & 0xFF)


def _check_size(size: int) -> None:
    if size not in (1, 2, 4):
        raise ValueError(f"port access size must be 1, 2 or 4 bytes, got {size}")


# -- the function ---------------------------------------------------------------------------

class PiixIde:
    """Two channels and their bus masters. `disks` maps (channel, slot) to a drive: channel 0
    primary / 1 secondary, slot 0 master / 1 slave. `bus_master_enabled` reads the PCI
    command register's bus-master bit (default: always enabled)."""

    def __init__(self, memory: DmaMemory, executor: DiskExecutor, irq14: IrqLine,
                 irq15: IrqLine, disks: dict[tuple[int, int], AtaDisk] | None = None, *,
                 bus_master_enabled: Callable[[], bool] | None = None) -> None:
        disks = dict(disks or {})
        unknown = set(disks) - {(0, 0), (0, 1), (1, 0), (1, 1)}
        if unknown:
            raise ValueError(f"no IDE slot {sorted(unknown)}: use (channel 0-1, slot 0-1)")
        if len({id(disk) for disk in disks.values()}) != len(disks):
            raise ValueError("one AtaDisk cannot sit in two slots")
        enabled = bus_master_enabled or (lambda: True)
        channels: list[AtaChannel] = []
        masters: list[BusMasterChannel] = []
        for index, line in enumerate((irq14, irq15)):
            tap = _InterruptTap(line)
            channel = AtaChannel(tap, executor, disks.get((index, 0)), disks.get((index, 1)))
            bus_master = BusMasterChannel(memory, channel, enabled)
            tap.bus_master = bus_master
            channel.connect_dma(bus_master)
            channels.append(channel)
            masters.append(bus_master)
        self.channels = (channels[0], channels[1])
        self.bus_masters = (masters[0], masters[1])
        self.bmide_port = BusMasterPort(self.bus_masters)

    @property
    def primary(self) -> AtaChannel:
        return self.channels[0]

    @property
    def secondary(self) -> AtaChannel:
        return self.channels[1]

    def legacy_ports(self) -> list[tuple[int, int, Device, str]]:
        """(base, size, device, name) for the compatibility-mode port ranges."""
        primary, secondary = self.channels
        return [
            (PRIMARY_COMMAND_BASE, 8, primary.command_port, "ide0-command"),
            (PRIMARY_CONTROL_BASE, 1, primary.control_port, "ide0-control"),
            (SECONDARY_COMMAND_BASE, 8, secondary.command_port, "ide1-command"),
            (SECONDARY_CONTROL_BASE, 1, secondary.control_port, "ide1-control"),
        ]

    def bus_master_changed(self) -> None:
        """The PCI bus-master enable changed: start any transfer that was held back."""
        for bus_master in self.bus_masters:
            bus_master.poll()

    def reset(self) -> None:
        """Machine reset: bus masters to defaults, drives hardware-reset."""
        for bus_master, channel in zip(self.bus_masters, self.channels):
            bus_master.reset()
            channel.reset()
