"""One ATA hard disk's own half: identity, settings, CHS geometry and IDENTIFY DEVICE data.

The register interface and the command protocols live in `ata.py` (`AtaChannel`); this module
holds what each drive keeps for itself (ATA-6, T13 1410D): its status and error registers, its
pending interrupt, the settings the host changes with SET FEATURES, SET MULTIPLE MODE and
INITIALIZE DEVICE PARAMETERS, and the 256-word IDENTIFY DEVICE page built from them.

It also holds the ATA command set the channel decodes (opcodes and the read/write table).
The contents live in a `BlockBackend` (blockio.py), which no model calls itself: the channel
hands requests to an executor.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from pyhvm.devices.blockio import BlockBackend

SECTOR_SIZE = 512
LBA28_SECTORS = 1 << 28  # sectors a 28-bit command can name
LBA28_CAPACITY_MAX = LBA28_SECTORS - 1  # IDENTIFY words 60-61 saturate here
MAX_MULTIPLE = 16  # sectors per DRQ block we offer for READ/WRITE MULTIPLE (word 47)
DEFAULT_MULTIPLE = MAX_MULTIPLE  # power-on setting is vendor specific; enabled is friendlier
PIO_MODE_MAX = 4
MWDMA_MODE_MAX = 2
UDMA_MODE_MAX = 5
DEFAULT_MWDMA = MWDMA_MODE_MAX  # what a PIIX3 BIOS programs; the host overrides it anyway
DEFAULT_WRITE_CACHE = True

# Default CHS translation: the conventional 16 heads x 63 sectors per track.
DEFAULT_HEADS = 16
DEFAULT_SECTORS_PER_TRACK = 63
MAX_DEFAULT_CYLINDERS = 16383  # words 1/54 saturate for disks over ~8.4 GB
MAX_CYLINDERS = 65535

# Status register bits (ATA-6 clause 7, "Status register").
ST_ERR = 0x01  # an error occurred; the Error register says which
ST_DRQ = 0x08  # the device is ready to transfer a word of data
ST_DSC = 0x10  # "device seek complete" in older standards; drives still report it when idle
ST_DF = 0x20  # device fault (never set here)
ST_DRDY = 0x40  # the device accepts commands
ST_BSY = 0x80  # the device owns the registers
ST_READY = ST_DRDY | ST_DSC  # 0x50: what an idle, healthy drive reads

# Error register bits (ATA-6 clause 7, "Error register").
ERR_ABRT = 0x04  # command aborted: not supported, bad parameter, or write refused
ERR_IDNF = 0x10  # the requested address is outside the medium
ERR_UNC = 0x40  # uncorrectable data error
DIAG_PASSED = 0x01  # Error register after reset or EXECUTE DEVICE DIAGNOSTIC: device passed

# Commands (ATA-6 clause 8; 21h/31h/41h/C9h/CBh are the "without retries" aliases).
CMD_RECALIBRATE = 0x10  # obsolete in ATA-6; old BIOSes and DOS still send it: a no-op
CMD_EXECUTE_DIAGNOSTIC = 0x90
CMD_INITIALIZE_PARAMETERS = 0x91
CMD_SET_MULTIPLE = 0xC6
CMD_STANDBY_IMMEDIATE = 0xE0
CMD_IDLE_IMMEDIATE = 0xE1
CMD_STANDBY = 0xE2
CMD_IDLE = 0xE3
CMD_CHECK_POWER_MODE = 0xE5
CMD_FLUSH_CACHE = 0xE7
CMD_FLUSH_CACHE_EXT = 0xEA
CMD_IDENTIFY = 0xEC
CMD_SET_FEATURES = 0xEF

# SET FEATURES subcommands (Features register).
SF_ENABLE_WRITE_CACHE = 0x02
SF_TRANSFER_MODE = 0x03
SF_DISABLE_REVERT = 0x66  # revert to power-on defaults: we never revert, so both are no-ops
SF_DISABLE_WRITE_CACHE = 0x82
SF_ENABLE_REVERT = 0xCC


class Xfer(enum.Enum):
    PIO = "pio"
    MULTIPLE = "multiple"
    DMA = "dma"
    VERIFY = "verify"


@dataclass(frozen=True)
class RwCommand:
    write: bool
    ext: bool  # 48-bit address and count
    xfer: Xfer


RW_COMMANDS: dict[int, RwCommand] = {
    0x20: RwCommand(False, False, Xfer.PIO), 0x21: RwCommand(False, False, Xfer.PIO),
    0x24: RwCommand(False, True, Xfer.PIO),
    0xC4: RwCommand(False, False, Xfer.MULTIPLE), 0x29: RwCommand(False, True, Xfer.MULTIPLE),
    0xC8: RwCommand(False, False, Xfer.DMA), 0xC9: RwCommand(False, False, Xfer.DMA),
    0x25: RwCommand(False, True, Xfer.DMA),
    0x40: RwCommand(False, False, Xfer.VERIFY), 0x41: RwCommand(False, False, Xfer.VERIFY),
    0x42: RwCommand(False, True, Xfer.VERIFY),
    0x30: RwCommand(True, False, Xfer.PIO), 0x31: RwCommand(True, False, Xfer.PIO),
    0x34: RwCommand(True, True, Xfer.PIO),
    0xC5: RwCommand(True, False, Xfer.MULTIPLE), 0x39: RwCommand(True, True, Xfer.MULTIPLE),
    0xCA: RwCommand(True, False, Xfer.DMA), 0xCB: RwCommand(True, False, Xfer.DMA),
    0x35: RwCommand(True, True, Xfer.DMA),
}

# IDENTIFY DEVICE word indexes and values (ATA-6 clause 8, "IDENTIFY DEVICE" data table).
ID_GENERAL_CONFIG = 0
ID_CYLINDERS = 1
ID_HEADS = 3
ID_SECTORS_PER_TRACK = 6
ID_SERIAL = 10  # 10 words, 20 ASCII characters
ID_FIRMWARE = 23  # 4 words, 8 characters
ID_MODEL = 27  # 20 words, 40 characters
ID_MAX_MULTIPLE = 47
ID_CAPABILITIES = 49
ID_CAPABILITIES_2 = 50
ID_VALIDITY = 53
ID_CUR_CYLINDERS = 54
ID_CUR_HEADS = 55
ID_CUR_SECTORS = 56
ID_CUR_CAPACITY = 57  # two words, low first
ID_MULTIPLE_SETTING = 59
ID_LBA28_CAPACITY = 60  # two words, low first
ID_MWDMA = 63
ID_PIO_MODES = 64
ID_MWDMA_MIN_CYCLE = 65  # words 65-68: cycle times in ns
ID_MAJOR_VERSION = 80
ID_MINOR_VERSION = 81
ID_COMMAND_SET_1 = 82  # supported: 82-84, enabled/default: 85-87
ID_COMMAND_SET_2 = 83
ID_COMMAND_SET_EXT = 84
ID_ENABLED_1 = 85
ID_ENABLED_2 = 86
ID_ENABLED_EXT = 87
ID_UDMA = 88
ID_HW_RESET_RESULT = 93
ID_LBA48_CAPACITY = 100  # four words, low first
ID_INTEGRITY = 255
IDENTIFY_WORDS = 256

GENERAL_CONFIG_FIXED = 0x0040  # bit 15 clear: ATA device; bit 6: fixed (not removable)
MULTIPLE_VALID = 0x0100  # word 59 bit 8: the setting in bits 7:0 is valid
MAX_MULTIPLE_MARK = 0x8000  # word 47 bits 15:8 shall be 80h
CAP_DMA = 1 << 8
CAP_LBA = 1 << 9
CAP_IORDY = 1 << 11
CAPABILITIES_2_VALID = 0x4000  # word 50 bit 14 shall be one
VALID_54_58 = 1 << 0
VALID_64_70 = 1 << 1
VALID_88 = 1 << 2
PIO_MODES_3_4 = 0x0003  # word 64: modes 3 and 4 (0-2 are implied)
MIN_CYCLE_NS = 120  # PIO mode 4 / MWDMA mode 2 cycle time
MAJOR_ATA_1_TO_6 = 0x007E  # bits 1-6
WORD_VALID = 0x4000  # words 83, 84, 87: bit 14 one, bit 15 zero marks the word valid
CMD1_POWER_MANAGEMENT = 1 << 3  # IDLE, STANDBY, CHECK POWER MODE
CMD1_WRITE_CACHE = 1 << 5
CMD2_LBA48 = 1 << 10
CMD2_FLUSH_CACHE = 1 << 12
CMD2_FLUSH_CACHE_EXT = 1 << 13
HW_RESET_DEVICE0 = 0x600B  # word 93: CBLID above threshold, device 0 by jumper, passed
HW_RESET_DEVICE1 = 0x6B00  # device 1 by jumper, PDIAG- asserted
INTEGRITY_SIGNATURE = 0xA5

SERIAL_LENGTH = 20
FIRMWARE_LENGTH = 8
MODEL_LENGTH = 40


@dataclass(frozen=True)
class Chs:
    """A cylinder/head/sector translation."""

    cylinders: int
    heads: int
    sectors: int  # per track

    @property
    def capacity(self) -> int:
        return self.cylinders * self.heads * self.sectors


def default_geometry(total: int) -> Chs:
    """16 heads x 63 sectors, cylinders saturating at 16383; smaller for tiny disks."""
    heads, spt = DEFAULT_HEADS, DEFAULT_SECTORS_PER_TRACK
    if total < heads * spt:
        spt = min(spt, max(total, 1))
        heads = max(1, min(heads, total // spt))
    return Chs(min(total // (heads * spt), MAX_DEFAULT_CYLINDERS), heads, spt)


def ata_string(text: str, length: int) -> list[int]:
    """An ATA string: space-padded, two characters a word, the first in the high byte."""
    raw = text.encode("ascii").ljust(length, b" ")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, length, 2)]


def _check_identity(name: str, text: str, length: int) -> None:
    if len(text) > length or not all(0x20 <= ord(c) < 0x7F for c in text):
        raise ValueError(f"{name} {text!r} must be at most {length} printable ASCII characters")


class AtaDisk:
    """One drive: its backend, identity, settings and per-drive registers.

    `status`, `error` and `intrq` are the drive's own Status and Error registers and its
    pending interrupt; the channel drives them. A disk belongs to one channel slot.
    """

    def __init__(self, backend: BlockBackend, *, serial: str = "PYHVM0000000000001",
                 model: str = "PYHVM ATA DISK", firmware: str = "1.0") -> None:
        _check_identity("serial", serial, SERIAL_LENGTH)
        _check_identity("model", model, MODEL_LENGTH)
        _check_identity("firmware", firmware, FIRMWARE_LENGTH)
        self.backend = backend
        self.serial = serial
        self.model = model
        self.firmware = firmware
        self.sectors = backend.size // SECTOR_SIZE
        self.default_chs = default_geometry(self.sectors)
        self.power_on()

    @property
    def readonly(self) -> bool:
        return bool(self.backend.readonly)

    def power_on(self) -> None:
        """Power-on defaults for the settings; registers as after a completed reset."""
        self.multiple = DEFAULT_MULTIPLE
        self.write_cache = DEFAULT_WRITE_CACHE
        self.chs = self.default_chs
        self.pio_mode = PIO_MODE_MAX
        self.mwdma_mode: int | None = DEFAULT_MWDMA
        self.udma_mode: int | None = None
        self.status = ST_READY
        self.error = DIAG_PASSED
        self.intrq = False

    # -- settings (ATA-6 clause 8, the command descriptions) -------------------------------------

    def set_transfer_mode(self, value: int) -> bool:
        """SET FEATURES 03h: Sector Count holds the mode (ATA-6 "SET FEATURES", transfer mode)."""
        family, mode = value >> 3, value & 0x07
        if value in (0x00, 0x01):  # PIO default mode, with or without IORDY
            self.pio_mode = 0
        elif family == 0x01 and mode <= PIO_MODE_MAX:  # 00001nnn: PIO flow control mode
            self.pio_mode = mode
        elif family == 0x04 and mode <= MWDMA_MODE_MAX:  # 00100nnn: multiword DMA
            self.mwdma_mode, self.udma_mode = mode, None
        elif family == 0x08 and mode <= UDMA_MODE_MAX:  # 01000nnn: Ultra DMA
            self.mwdma_mode, self.udma_mode = None, mode
        else:
            return False
        return True

    def set_multiple(self, count: int) -> bool:
        """SET MULTIPLE MODE: a power of two up to word 47; zero disables multiple mode."""
        if count and (count > MAX_MULTIPLE or count & (count - 1)):
            return False
        self.multiple = count
        return True

    def set_chs(self, heads: int, sectors: int) -> bool:
        """INITIALIZE DEVICE PARAMETERS: a new translation; cylinders follow from capacity."""
        if not 1 <= heads <= 16 or not 1 <= sectors <= 255:
            return False
        cylinders = min(self.sectors // (heads * sectors), MAX_CYLINDERS)
        self.chs = Chs(cylinders, heads, sectors)
        return True

    def chs_to_lba(self, cylinder: int, head: int, sector: int) -> int | None:
        """The LBA of a CHS address in the current translation, or None if it names nothing."""
        chs = self.chs
        if cylinder >= chs.cylinders or head >= chs.heads or not 1 <= sector <= chs.sectors:
            return None
        return (cylinder * chs.heads + head) * chs.sectors + sector - 1

    # -- IDENTIFY DEVICE (ATA-6 clause 8) -----------------------------------------------------

    def identify(self, slot: int) -> bytes:
        """The 512-byte IDENTIFY DEVICE page, little-endian words, integrity word last."""
        w = [0] * IDENTIFY_WORDS
        total = self.sectors
        w[ID_GENERAL_CONFIG] = GENERAL_CONFIG_FIXED
        w[ID_CYLINDERS] = self.default_chs.cylinders
        w[ID_HEADS] = self.default_chs.heads
        w[ID_SECTORS_PER_TRACK] = self.default_chs.sectors
        w[ID_SERIAL:ID_SERIAL + SERIAL_LENGTH // 2] = ata_string(self.serial, SERIAL_LENGTH)
        w[ID_FIRMWARE:ID_FIRMWARE + FIRMWARE_LENGTH // 2] = ata_string(
            self.firmware, FIRMWARE_LENGTH)
        w[ID_MODEL:ID_MODEL + MODEL_LENGTH // 2] = ata_string(self.model, MODEL_LENGTH)
        w[ID_MAX_MULTIPLE] = MAX_MULTIPLE_MARK | MAX_MULTIPLE
        w[ID_CAPABILITIES] = CAP_IORDY | CAP_LBA | CAP_DMA
        w[ID_CAPABILITIES_2] = CAPABILITIES_2_VALID
        w[ID_VALIDITY] = VALID_54_58 | VALID_64_70 | VALID_88
        w[ID_CUR_CYLINDERS] = self.chs.cylinders
        w[ID_CUR_HEADS] = self.chs.heads
        w[ID_CUR_SECTORS] = self.chs.sectors
        _put_u32(w, ID_CUR_CAPACITY, self.chs.capacity)
        w[ID_MULTIPLE_SETTING] = (MULTIPLE_VALID | self.multiple) if self.multiple else 0
        _put_u32(w, ID_LBA28_CAPACITY, min(total, LBA28_CAPACITY_MAX))
        w[ID_MWDMA] = (1 << (MWDMA_MODE_MAX + 1)) - 1
        if self.mwdma_mode is not None:
            w[ID_MWDMA] |= 1 << (8 + self.mwdma_mode)
        w[ID_PIO_MODES] = PIO_MODES_3_4
        w[ID_MWDMA_MIN_CYCLE:ID_MWDMA_MIN_CYCLE + 4] = [MIN_CYCLE_NS] * 4
        w[ID_MAJOR_VERSION] = MAJOR_ATA_1_TO_6
        w[ID_MINOR_VERSION] = 0  # "not reported"
        w[ID_COMMAND_SET_1] = CMD1_POWER_MANAGEMENT | CMD1_WRITE_CACHE
        w[ID_COMMAND_SET_2] = WORD_VALID | CMD2_FLUSH_CACHE_EXT | CMD2_FLUSH_CACHE | CMD2_LBA48
        w[ID_COMMAND_SET_EXT] = WORD_VALID
        w[ID_ENABLED_1] = CMD1_POWER_MANAGEMENT | (CMD1_WRITE_CACHE if self.write_cache else 0)
        w[ID_ENABLED_2] = CMD2_FLUSH_CACHE_EXT | CMD2_FLUSH_CACHE | CMD2_LBA48
        w[ID_ENABLED_EXT] = WORD_VALID
        w[ID_UDMA] = (1 << (UDMA_MODE_MAX + 1)) - 1
        if self.udma_mode is not None:
            w[ID_UDMA] |= 1 << (8 + self.udma_mode)
        w[ID_HW_RESET_RESULT] = HW_RESET_DEVICE1 if slot else HW_RESET_DEVICE0
        for i in range(4):
            w[ID_LBA48_CAPACITY + i] = (total >> (16 * i)) & 0xFFFF
        page = bytearray(struct.pack(f"<{IDENTIFY_WORDS}H", *w))
        # Word 255: signature A5h in bits 7:0, and bits 15:8 chosen so all 512 bytes sum to
        # zero modulo 256 (ATA-6 IDENTIFY DEVICE, "Integrity word").
        page[510] = INTEGRITY_SIGNATURE
        page[511] = (-sum(page[:511])) & 0xFF
        return bytes(page)


def _put_u32(words: list[int], index: int, value: int) -> None:
    words[index] = value & 0xFFFF
    words[index + 1] = (value >> 16) & 0xFFFF
