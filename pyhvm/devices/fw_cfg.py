"""QEMU's firmware configuration device (fw_cfg) as the x86 PC has it: ports 0x510-0x51B.

Firmware written for QEMU (SeaBIOS, OVMF, the linuxboot/multiboot option ROMs) learns the
machine through it: RAM layout, CPU count, boot order, option ROMs, a kernel to boot. The
interface is QEMU's docs/specs/fw_cfg.rst; the keys are QEMU's include/standard-headers
fw_cfg.h values. Layout of the two port windows:

    0x510  selector, 16-bit little-endian write: select item KEY, data offset back to 0
    0x511  data, 8-bit read: the next byte of the item (0 past its end); writes ignored
    0x514  DMA address, 64-bit big-endian: two 32-bit halves (high at 0x514, then low at
           0x518, which starts the transfer) or one 64-bit write at 0x514; reads give the
           signature "QEMU CFG"

Map `io_port` at 0x510 (IO_PORT_SIZE) and `dma_port` at 0x514 (DMA_PORT_SIZE).

A DMA transfer reads a 16-byte big-endian descriptor (control, length, address) from guest
RAM and acts on the item: select (bit 3, key in bits 31:16), then read (bit 1), write
(bit 4, only to items added as writable, never past the item's end), or skip (bit 2). The
result goes back into the descriptor's control word: 0 for success, 1 (error) otherwise.
Reads past the item's end fill the guest buffer with zeros, as QEMU does.

What the guest can make it do: read every item, advance offsets, copy items into any guest
RAM it names, overwrite the bytes of writable items. What it cannot: touch memory outside
guest RAM (every range goes through the memory port, which refuses it: the transfer ends
with the error bit), grow an item, or make the device allocate by a guest-chosen length
(transfers move through RAM views in bounded chunks).

Not emulated: the MMIO variant (other architectures), data-register writes (dropped since
QEMU 2.4), select and write callbacks that regenerate items (ACPI tables are not offered).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pyhvm.devices.base import GuestError, check_access_size

log = logging.getLogger("pyhvm.fw_cfg")

# Port windows (x86 placement, fw_cfg.rst "Register Locations").
IO_PORT_BASE = 0x510
IO_PORT_SIZE = 2  # selector at +0, data at +1
DMA_PORT_BASE = 0x514
DMA_PORT_SIZE = 8

# Keys (QEMU's fw_cfg.h).
FW_CFG_SIGNATURE = 0x00
FW_CFG_ID = 0x01
FW_CFG_UUID = 0x02
FW_CFG_RAM_SIZE = 0x03
FW_CFG_NOGRAPHIC = 0x04
FW_CFG_NB_CPUS = 0x05
FW_CFG_MACHINE_ID = 0x06
FW_CFG_KERNEL_ADDR = 0x07
FW_CFG_KERNEL_SIZE = 0x08
FW_CFG_KERNEL_CMDLINE = 0x09
FW_CFG_INITRD_ADDR = 0x0A
FW_CFG_INITRD_SIZE = 0x0B
FW_CFG_BOOT_DEVICE = 0x0C
FW_CFG_NUMA = 0x0D
FW_CFG_BOOT_MENU = 0x0E
FW_CFG_MAX_CPUS = 0x0F
FW_CFG_KERNEL_ENTRY = 0x10
FW_CFG_KERNEL_DATA = 0x11
FW_CFG_INITRD_DATA = 0x12
FW_CFG_CMDLINE_ADDR = 0x13
FW_CFG_CMDLINE_SIZE = 0x14
FW_CFG_CMDLINE_DATA = 0x15
FW_CFG_SETUP_ADDR = 0x16
FW_CFG_SETUP_SIZE = 0x17
FW_CFG_SETUP_DATA = 0x18
FW_CFG_FILE_DIR = 0x19
FW_CFG_FILE_FIRST = 0x20
FW_CFG_WRITE_CHANNEL = 0x4000  # ignored: writability is per item (QEMU 2.9+)
FW_CFG_ARCH_LOCAL = 0x8000
FW_CFG_ENTRY_MASK = 0x3FFF
FW_CFG_ACPI_TABLES = FW_CFG_ARCH_LOCAL + 0
FW_CFG_SMBIOS_ENTRIES = FW_CFG_ARCH_LOCAL + 1
FW_CFG_IRQ0_OVERRIDE = FW_CFG_ARCH_LOCAL + 2
FW_CFG_E820_TABLE = FW_CFG_ARCH_LOCAL + 3

FILE_SLOTS = 0x40  # how many file items fit (QEMU's default is 0x20)
MAX_ENTRY = FW_CFG_FILE_FIRST + FILE_SLOTS  # keys at or past this select nothing
FILE_NAME_SIZE = 56  # FWCfgFile.name, NUL-terminated
FILE_ENTRY = struct.Struct(">IHH56s")  # size, select, reserved, name

SIGNATURE = b"QEMU"
DMA_SIGNATURE = b"QEMU CFG"  # what the DMA address register reads as (big-endian)
ID_TRADITIONAL = 1 << 0  # FW_CFG_ID bit 0: the port interface, always present
ID_DMA = 1 << 1  # bit 1: the DMA interface

# DMA control word bits (fw_cfg.rst "Guest-side DMA Interface").
DMA_CTL_ERROR = 0x01
DMA_CTL_READ = 0x02
DMA_CTL_SKIP = 0x04
DMA_CTL_SELECT = 0x08
DMA_CTL_WRITE = 0x10
DMA_DESCRIPTOR = struct.Struct(">IIQ")  # control, length, address
DMA_CHUNK = 1 << 20  # the largest single copy or zero-fill a transfer does at once

INVALID_KEY = 0xFFFF  # "no item selected": reads 0, transfers fill zeros
DEFAULT_KEY = FW_CFG_SIGNATURE  # selected at reset, as QEMU's device does


class DmaMemory(Protocol):
    """The guest RAM port: out-of-range accesses raise a `GuestError`."""

    def read(self, gpa: int, size: int) -> bytes: ...

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None: ...

    def view(self, gpa: int, size: int) -> memoryview: ...


WriteCallback = Callable[[int, int], None]  # (offset, length) of bytes the guest changed


@dataclass
class Item:
    """One configuration item: its bytes, and whether DMA writes may change them."""

    data: bytearray
    writable: bool = False
    on_write: WriteCallback | None = None


@dataclass(frozen=True)
class FwCfgState:
    """A snapshot of the guest-visible registers (the items come from the machine)."""

    key: int = DEFAULT_KEY
    offset: int = 0
    dma_address: int = 0


class FwCfg:
    """The item store and both interfaces. The machine adds items before the guest runs.

    `memory` is the DMA port; without one (`dma=False`) the ID item does not advertise DMA
    and the DMA window does not exist (reads all ones, writes dropped), as on QEMU with
    `dma_enabled=off`.
    """

    def __init__(self, memory: DmaMemory | None, *, dma: bool = True) -> None:
        self._memory = memory
        self.dma_enabled = dma and memory is not None
        self._items: dict[int, Item] = {}
        self._files: dict[str, Item] = {}
        self._file_keys: dict[str, int] = {}
        self._key = DEFAULT_KEY
        self._offset = 0
        self._dma_address = 0
        self.dma_errors = 0  # transfers that ended with the error bit (guest-visible)
        self.io_port = _IoWindow(self)
        self.dma_port = _DmaWindow(self)
        self.add_bytes(FW_CFG_SIGNATURE, SIGNATURE)
        identity = ID_TRADITIONAL | (ID_DMA if self.dma_enabled else 0)
        self.add_u32(FW_CFG_ID, identity)
        self._rebuild_directory()

    # -- adding items (host side) -------------------------------------------------------------

    def add_bytes(self, key: int, data: bytes, *, writable: bool = False,
                  on_write: WriteCallback | None = None) -> None:
        """Give `key` its contents; a key already used, or past the item table, is refused."""
        index = key & ~FW_CFG_WRITE_CHANNEL
        if not 0 <= key <= 0xFFFF or (index & FW_CFG_ENTRY_MASK) >= MAX_ENTRY:
            raise ValueError(f"fw_cfg key {key:#x} is outside the item table")
        if index in self._items:
            raise ValueError(f"fw_cfg key {key:#x} already has an item")
        if len(data) > 0xFFFFFFFF:
            raise ValueError("a fw_cfg item is at most 4 GiB - 1 bytes")
        self._items[index] = Item(bytearray(data), writable, on_write)

    def add_u16(self, key: int, value: int) -> None:
        self.add_bytes(key, struct.pack("<H", value))

    def add_u32(self, key: int, value: int) -> None:
        self.add_bytes(key, struct.pack("<I", value))

    def add_u64(self, key: int, value: int) -> None:
        self.add_bytes(key, struct.pack("<Q", value))

    def add_string(self, key: int, text: str) -> None:
        """A NUL-terminated string item (QEMU's fw_cfg_add_string)."""
        self.add_bytes(key, text.encode() + b"\0")

    def add_file(self, name: str, data: bytes, *, writable: bool = False,
                 on_write: WriteCallback | None = None) -> None:
        """A named item in the file directory; files are listed and keyed by sorted name."""
        encoded = name.encode()
        if not encoded or len(encoded) >= FILE_NAME_SIZE or b"\0" in encoded:
            raise ValueError(f"fw_cfg file name {name!r} must be 1-55 bytes, no NUL")
        if name in self._files:
            raise ValueError(f"fw_cfg file {name!r} already exists")
        if len(self._files) >= FILE_SLOTS:
            raise ValueError(f"fw_cfg holds at most {FILE_SLOTS} files")
        if len(data) > 0xFFFFFFFF:
            raise ValueError("a fw_cfg item is at most 4 GiB - 1 bytes")
        self._files[name] = Item(bytearray(data), writable, on_write)
        self._rebuild_directory()

    def file_key(self, name: str) -> int:
        """The selector of a file (stable once the machine has added all of them)."""
        return self._file_keys[name]

    def item(self, key: int) -> bytes | None:
        """What `key` selects now (a copy), or None when it selects nothing."""
        found = self._lookup(key)
        return None if found is None else bytes(found.data)

    def _rebuild_directory(self) -> None:
        for key in range(FW_CFG_FILE_FIRST, FW_CFG_FILE_FIRST + FILE_SLOTS):
            self._items.pop(key, None)
        self._items.pop(FW_CFG_FILE_DIR, None)
        directory = bytearray(struct.pack(">I", len(self._files)))
        self._file_keys = {}
        for index, name in enumerate(sorted(self._files)):
            key = FW_CFG_FILE_FIRST + index
            item = self._files[name]
            self._items[key] = item
            self._file_keys[name] = key
            directory += FILE_ENTRY.pack(len(item.data), key, 0, name.encode())
        self._items[FW_CFG_FILE_DIR] = Item(directory)

    # -- the guest's side ---------------------------------------------------------------------

    def _lookup(self, key: int) -> Item | None:
        if key == INVALID_KEY:
            return None
        return self._items.get(key & ~FW_CFG_WRITE_CHANNEL)

    def select(self, key: int) -> None:
        """A selector write: keys past the table select nothing (reads give zeros)."""
        key &= 0xFFFF
        self._offset = 0
        if (key & FW_CFG_ENTRY_MASK) >= MAX_ENTRY:
            self._key = INVALID_KEY
        else:
            self._key = key

    def read_data_byte(self) -> int:
        """The data port: the next byte of the selected item, 0 once past its end."""
        item = self._lookup(self._key)
        if item is None or self._offset >= len(item.data):
            return 0
        byte = item.data[self._offset]
        self._offset += 1
        return byte

    def dma_read(self, offset: int, size: int) -> int:
        """The DMA window reads as "QEMU CFG", byte k at port 0x514 + k."""
        if not self.dma_enabled or offset + size > DMA_PORT_SIZE:
            return (1 << (8 * size)) - 1
        return int.from_bytes(DMA_SIGNATURE[offset:offset + size], "little")

    def dma_write(self, offset: int, size: int, value: int) -> None:
        """Big-endian address halves; a write of the low half (or all 8 bytes) starts it."""
        if not self.dma_enabled:
            return
        raw = value.to_bytes(size, "little")  # the bytes as they sit on the bus
        if size == 4 and offset == 0:
            self._dma_address = int.from_bytes(raw, "big") << 32
        elif size == 4 and offset == 4:
            self._dma_address |= int.from_bytes(raw, "big")
            self._transfer()
        elif size == 8 and offset == 0:
            self._dma_address = int.from_bytes(raw, "big")
            self._transfer()
        else:
            log.debug("fw_cfg: ignored %d-byte DMA register write at +%d", size, offset)

    def _transfer(self) -> None:
        """Run the descriptor at the DMA address; the register is 0 again afterwards."""
        assert self._memory is not None
        memory = self._memory
        at, self._dma_address = self._dma_address, 0
        try:
            control, length, address = DMA_DESCRIPTOR.unpack(
                memory.read(at, DMA_DESCRIPTOR.size))
        except GuestError as err:
            log.info("fw_cfg: DMA descriptor at %#x is not in RAM: %s", at, err)
            self._finish(at, DMA_CTL_ERROR)
            return
        if control & DMA_CTL_SELECT:
            self.select(control >> 16)
        if control & DMA_CTL_READ:
            mode = "read"
        elif control & DMA_CTL_WRITE:
            mode = "write"
        elif control & DMA_CTL_SKIP:
            mode = "skip"
        else:
            mode, length = "none", 0
        status = 0
        try:
            self._move(mode, address, length)
        except GuestError as err:
            log.info("fw_cfg: DMA %s of %#x bytes at %#x failed: %s", mode, length, address,
                     err)
            status = DMA_CTL_ERROR
        except _Refused as err:
            log.info("fw_cfg: DMA write refused: %s", err)
            status = DMA_CTL_ERROR
        self._finish(at, status)

    def _move(self, mode: str, address: int, length: int) -> None:
        item = self._lookup(self._key)
        available = 0 if item is None else max(len(item.data) - self._offset, 0)
        count = min(length, available)
        if mode == "write":
            if not length:
                return  # QEMU's transfer loop runs while length > 0: nothing to refuse
            if item is None or count != length:
                raise _Refused(f"{length} bytes do not fit item {self._key:#x} at offset "
                               f"{self._offset}")
            if not item.writable:
                raise _Refused(f"item {self._key:#x} is read-only")
            start = self._offset
            assert self._memory is not None
            item.data[start:start + count] = self._memory.read(address, count)
            self._offset += count
            if item.on_write is not None:
                item.on_write(start, count)
            return
        if mode == "read" and length:
            assert self._memory is not None
            # The whole destination first: a range running out of RAM moves no byte (the
            # item's or the zeros after it) and leaves the offset where it was.
            self._memory.view(address, length)
        if mode == "read" and count:
            assert item is not None
            self._copy_out(address, item.data, self._offset, count)
        self._offset += count
        if mode == "read" and length > count:
            self._zero_fill(address + count, length - count)

    def _copy_out(self, address: int, data: bytearray, start: int, count: int) -> None:
        assert self._memory is not None
        done = 0
        while done < count:
            chunk = min(count - done, DMA_CHUNK)
            self._memory.write(address + done, data[start + done:start + done + chunk])
            done += chunk

    def _zero_fill(self, address: int, count: int) -> None:
        assert self._memory is not None
        self._memory.view(address, count)  # the whole range first: no partial fill
        zeros = bytes(min(count, DMA_CHUNK))
        done = 0
        while done < count:
            chunk = min(count - done, DMA_CHUNK)
            self._memory.write(address + done, zeros[:chunk])
            done += chunk

    def _finish(self, at: int, status: int) -> None:
        if status:
            self.dma_errors += 1
        assert self._memory is not None
        try:
            self._memory.write(at, struct.pack(">I", status))
        except GuestError:
            pass  # the descriptor itself is not RAM: nowhere to report to

    # -- reset and snapshots ------------------------------------------------------------------

    def reset(self) -> None:
        """System reset: the signature selected, no DMA address latched."""
        self._key = DEFAULT_KEY
        self._offset = 0
        self._dma_address = 0

    def state(self) -> FwCfgState:
        return FwCfgState(self._key, self._offset, self._dma_address)

    def restore(self, state: FwCfgState) -> None:
        if not 0 <= state.key <= 0xFFFF or not 0 <= state.offset <= 0xFFFFFFFF or \
                not 0 <= state.dma_address < 1 << 64:
            raise ValueError("fw_cfg snapshot holds out-of-range registers")
        self._key, self._offset, self._dma_address = state.key, state.offset, \
            state.dma_address


class _Refused(Exception):
    """A DMA write the device turns down (read-only item, past the end)."""


class _IoWindow:
    """Ports 0x510-0x511: selector (16-bit write) and data (8-bit read)."""

    def __init__(self, device: FwCfg) -> None:
        self._device = device

    def read(self, offset: int, size: int) -> int:
        check_access_size(size)
        if size != 1:
            return (1 << (8 * size)) - 1  # QEMU accepts only byte reads here
        return self._device.read_data_byte()

    def write(self, offset: int, size: int, value: int) -> None:
        check_access_size(size)
        if size == 2:
            self._device.select(value)
        # Byte writes to the data port are ignored since QEMU 2.4; other sizes are invalid.


class _DmaWindow:
    """Ports 0x514-0x51B: the DMA address register."""

    def __init__(self, device: FwCfg) -> None:
        self._device = device

    def read(self, offset: int, size: int) -> int:
        check_access_size(size)
        return self._device.dma_read(offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        check_access_size(size)
        self._device.dma_write(offset, size, value)
