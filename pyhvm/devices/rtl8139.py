"""The Realtek RTL8139C(L) fast Ethernet controller, as a sans-I/O model.

Section names below are those of the RTL8139C(L) data sheet ("Register Descriptions",
"Transmit/Receive Operations", "EEPROM (93C46) Contents"). `Rtl8139` is the 256-byte register
window (one Device: the machine maps it at both the I/O BAR and the memory BAR address);
`Rtl8139Pci` is its PCI function (10ec:8139, class 0x020000, revision 0x10, I/O BAR0 and memory
BAR1 of 256 bytes each, INTA).

Transmit: four descriptors (TSD0-3 with buffer addresses TSAD0-3) used round robin. A write to
TSDn with OWN=0 hands the buffer to the chip. The model does that in two steps so the machine
decides *when* a frame leaves: the write only records the request (OWN stays 0) and calls
`on_tx_pending()`; `process_tx()` then sends every pending descriptor starting at the current
one, in ring order, stopping at the first that is not pending (as the chip's round robin
does). Event placement calls `process_tx` from the kick (or its ioeventfd handler), poll
placement from a periodic timer; with no `on_tx_pending` the write sends at once. Each frame
is read from guest memory, passed to `transmit` (or, in loopback mode, to the receiver), and
the descriptor completes with OWN and TOK set and ISR.TOK raised.

Receive: the machine calls `receive(frame)` whenever it has a frame (frames without CRC);
`can_receive()` says whether one would fit now, for a backend that prefers to hold frames
back. The frame goes through the address filter (RCR) and into the ring at RBSTART: a 4-byte
header (status, length including the 4 CRC bytes), the frame, its real CRC-32, and the next
packet starts on a 4-byte boundary. The ring is 8, 16, 32 or 64 KiB (RCR.RBLEN). With
RCR.WRAP=0 a packet that reaches the end continues at the start of the ring; with WRAP=1
(not for 64 KiB, where the data sheet says the bit is invalid) it runs on past the end into
the driver's slack (at most 1522 bytes here; drivers reserve 1.5 KiB) and the next packet
starts where it would have wrapped to. The driver reports what it consumed by writing CAPR =
read pointer - 16; a packet is stored only if it fits in the free space between CBR and the
read pointer, never over unread data (else ISR.RXOVW, MPC + 1, dropped). CR.BUFE reads 1 while
the read pointer equals CBR.

Choices (each a place where the data sheet is silent or a virtual wire differs):
- Frames shorter than 14 bytes or longer than 1518 (a maximum 802.1Q-tagged frame without CRC)
  are dropped and counted. Frames of 14-59 bytes are padded with zeros to 60, as the sending
  NIC pads them on a real wire, so RUNT never shows.
- The CRC appended is the real Ethernet FCS (CRC-32, little endian as on the wire).
- AAP accepts every unicast frame ("all packets with physical destination address");
  broadcast needs AB and multicast AM plus its hash bit, with or without AAP. The multicast
  hash is the top 6 bits of the big-endian CRC-32 of the destination (the MSB-first CRC
  register after the six bytes, no final inversion): bit n of MAR0-7 is bit n % 8 of MARn//8.
- A transmit of size 0 or over 1792 bytes completes with OWN and TUN set, TOK clear, ISR.TER.
  A DMA that does not reach RAM (ring or buffer outside RAM, or past 4 GiB) moves no data: the
  frame is dropped (TX: OWN and TUN, ISR.TER) and ISR.SERR is raised, `on_master_abort()`
  lets the machine set the PCI status bit. The model keeps running either way.
- TCR hardware version bits read 0x74000000 (bits 30:26 = 11101, bits 23:22 = 00: RTL8139C;
  Linux's 8139too matches this to "RTL-8139C"). 0x74800000 would be the 8139C+ and make
  drivers look for the C+ registers, which are not here.
- CR.RST (data sheet: "IDR0-5 and MAR0-7 and PCI configuration space will have no changes")
  disables RX and TX, empties the ring (CAPR 0xFFF0, CBR 0), returns all TSDs to OWN=1 with
  TSD0 next, clears ISR, IMR and MPC, and keeps everything else. `reset()` is RST# (power on):
  every register to its default and the MAC from the EEPROM. 9346CR autoload (EEM=01) does
  the same and returns to normal mode.
- TCTR counts PCI clocks at 33.33 MHz (one count per 30 ns of the Clock); TimerInt raises
  ISR.TIMEOUT each time TCTR passes its value (0 disables it).
- The link is always up at 100 Mbit/s full duplex unless the host calls `set_link(False)`.
- IDR0-5, CONFIG0-5 and BMCR take writes only while 9346CR.EEM = 11 (config write enable).
- `state()` / `from_state()` snapshot everything but an EEPROM access in progress.

What the guest can make it do: send frames of up to 1792 bytes from any RAM it names, write
received frames into the ring it programs (and nowhere else: at most RBSTART + ring + 1522),
toggle its interrupt line, reprogram its own EEPROM. What it cannot: make the model touch
memory outside those windows, grow any buffer, block the caller, or raise an exception.
The model reads no length from a frame's contents (no C+ mode, no offloads), handles at
most four descriptors per `process_tx`, and is not re-entrant: `process_tx` or `receive`
called from a port while one runs does nothing. docs/security/device-bugs.md lists the
RTL8139 bugs of other VMMs this rules out; tests/unit/test_rtl8139_history.py replays them.

Not emulated: early RX/TX (ERBCR, ERSR, early thresholds are stored or read 0), RX/TX FIFOs
and their overflow (FOVW, TUN from real underruns), collisions, CRC/alignment errors (RER),
cable length change, power management and wake-up frames (the registers at 0x84-0xD7 are
plain storage), the boot ROM, the PHY's internal test registers (stored), the 8139C+ mode.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass

from pyhvm.devices.base import Clock, GuestError, IrqLine, TimerHandle, check_access_size
from pyhvm.devices.blockio import DmaMemory
from pyhvm.devices.eeprom93c46 import WORD_COUNT, Eeprom93c46
from pyhvm.devices.pci import (
    BarChangeCallback,
    INTA,
    LATENCY_TIMER,
    MAX_LAT,
    MIN_GNT,
    PciFunction,
    STATUS_DEVSEL_MEDIUM,
    STATUS_FAST_B2B,
)

# -- PCI identity ---------------------------------------------------------------------------
REALTEK_VENDOR_ID = 0x10EC
RTL8139_DEVICE_ID = 0x8139
CLASS_ETHERNET = 0x020000
RTL8139C_REVISION = 0x10  # 0x20 and up is the 8139C+
REGISTER_WINDOW = 256  # both BARs
IO_BAR = 0
MEM_BAR = 1
PCI_STATUS = STATUS_DEVSEL_MEDIUM | STATUS_FAST_B2B
PCI_MIN_GNT = 0x20
PCI_MAX_LAT = 0x40

# -- register offsets (data sheet, "Register Descriptions") ---------------------------------
IDR0 = 0x00  # six bytes: the station address
MAR0 = 0x08  # eight bytes: multicast hash filter
TSD0 = 0x10  # four dwords: transmit status of descriptors 0-3
TSAD0 = 0x20  # four dwords: transmit start addresses
RBSTART = 0x30  # receive buffer start address
ERBCR = 0x34  # early RX byte count (reads 0)
ERSR = 0x36  # early RX status (reads 0)
CR = 0x37  # command
CAPR = 0x38  # current address of packet read (read pointer - 16)
CBR = 0x3A  # current buffer address (write offset), read-only
IMR = 0x3C
ISR = 0x3E
TCR = 0x40
RCR = 0x44
TCTR = 0x48  # timer count
MPC = 0x4C  # missed packet counter, 24 bits
CR9346 = 0x50
CONFIG0 = 0x51
CONFIG1 = 0x52
TIMERINT = 0x54
MSR = 0x58  # media status
CONFIG3 = 0x59
CONFIG4 = 0x5A
HLTCLK = 0x5B  # 'R' runs, 'H' halts the clock: write-only
MULINT = 0x5C
RERID = 0x5E  # revision ID
TSAD = 0x60  # transmit status of all descriptors (summary), read-only
BMCR = 0x62  # basic mode control (the internal PHY's MII register 0)
BMSR = 0x64  # basic mode status (MII register 1)
ANAR = 0x66  # auto-negotiation advertisement
ANLPAR = 0x68  # auto-negotiation link partner ability
ANER = 0x6A  # auto-negotiation expansion
DIS = 0x6C  # disconnect counter
FCSC = 0x6E  # false carrier sense counter
NWAYTR = 0x70
REC = 0x72  # RX_ER counter
CSCR = 0x74
PHY1_PARM = 0x78
TW_PARM = 0x7C
PHY2_PARM = 0x80
PM_STORAGE = range(0x84, 0xD8)  # CRC0-7, wake-up frames 0-7, LSBCRC0-7, FLASH: stored only
CONFIG5 = 0xD8
TX_DESCRIPTORS = 4

# CR bits.
CR_BUFE = 0x01  # RX buffer empty (read-only)
CR_TE = 0x04
CR_RE = 0x08
CR_RST = 0x10  # software reset, reads 0 again once done (at once here)

# ISR/IMR bits.
INT_ROK = 1 << 0
INT_RER = 1 << 1
INT_TOK = 1 << 2
INT_TER = 1 << 3
INT_RXOVW = 1 << 4  # RX buffer overflow
INT_LINKCHG = 1 << 5  # packet underrun / link change
INT_FOVW = 1 << 6  # RX FIFO overflow
INT_LENCHG = 1 << 13  # cable length change
INT_TIMEOUT = 1 << 14  # TCTR reached TimerInt
INT_SERR = 1 << 15  # system error on the PCI bus
INT_MASK = 0xE07F

# TSD bits.
TSD_SIZE = 0x1FFF  # bits 12:0
TSD_OWN = 1 << 13  # 1: the chip is done with the buffer (DMA complete)
TSD_TUN = 1 << 14  # transmit FIFO underrun
TSD_TOK = 1 << 15
TSD_ERTXTH = 0x3F << 16  # early TX threshold
TSD_NCC = 0xF << 24  # collision count
TSD_CDH = 1 << 28
TSD_OWC = 1 << 29
TSD_TABT = 1 << 30
TSD_CRS = 1 << 31  # carrier sense lost
TSD_WRITABLE = TSD_SIZE | TSD_OWN | TSD_ERTXTH
TSD_STATUS = TSD_TUN | TSD_TOK | TSD_NCC | TSD_CDH | TSD_OWC | TSD_TABT | TSD_CRS
MAX_TX_SIZE = 1792

# TCR bits.
TCR_CLRABT = 1 << 0  # self-clearing: retransmit after an abort (never aborts here)
TCR_TXRR = 0xF << 4
TCR_MXDMA = 0x7 << 8
TCR_NOCRC = 1 << 16  # 1: the driver supplies the CRC
TCR_LBK = 0x3 << 17
TCR_LOOPBACK = 0x3 << 17
TCR_IFG = 0x3 << 24
TCR_WRITABLE = TCR_TXRR | TCR_MXDMA | TCR_NOCRC | TCR_LBK | TCR_IFG
TCR_HWVERID = 0x7CC00000  # bits 30:26 and 23:22
TCR_VERSION_8139C = 0x74000000

# RCR bits.
RCR_AAP = 1 << 0  # accept all physical-address (unicast) packets
RCR_APM = 1 << 1  # accept packets to our own address
RCR_AM = 1 << 2  # accept multicast passing the hash
RCR_AB = 1 << 3  # accept broadcast
RCR_AR = 1 << 4  # accept runts (never delivered here)
RCR_AER = 1 << 5  # accept error packets (never delivered here)
RCR_9356SEL = 1 << 6  # read-only: 0 = a 93C46 is fitted
RCR_WRAP = 1 << 7
RCR_RBLEN_SHIFT = 11
RCR_RBLEN = 0x3 << RCR_RBLEN_SHIFT
RCR_WRITABLE = 0x0F03FFBF

# RX packet header status (data sheet, "Receive Status Register in Rx Packet Header").
RX_ROK = 1 << 0
RX_FAE = 1 << 1
RX_CRC = 1 << 2
RX_LONG = 1 << 3
RX_RUNT = 1 << 4
RX_ISE = 1 << 5
RX_BAR = 1 << 13  # broadcast address received
RX_PAM = 1 << 14  # physical address matched
RX_MAR = 1 << 15  # multicast address received

# 9346CR bits.
EEM_SHIFT = 6
EEM_NORMAL = 0b00
EEM_AUTOLOAD = 0b01
EEM_PROGRAM = 0b10  # EECS/EESK/EEDI drive the EEPROM pins, EEDO reads its DO
EEM_CONFIG_WRITE = 0b11  # IDR, CONFIG0-5 and BMCR writable
EE_CS = 1 << 3
EE_SK = 1 << 2
EE_DI = 1 << 1
EE_DO = 1 << 0
CR9346_WRITABLE = 0xCE

# MSR bits.
MSR_RXPF = 1 << 0
MSR_TXPF = 1 << 1
MSR_LINKB = 1 << 2  # 0: link OK
MSR_SPEED_10 = 1 << 3  # 0: 100 Mbit/s
MSR_WRITABLE = 0xC0  # RXFCE, TXFCE: stored only

# PHY registers (IEEE 802.3 clause 22 layout).
BMCR_RESET = 1 << 15
BMCR_SPEED_100 = 1 << 13
BMCR_ANE = 1 << 12
BMCR_RESTART_AN = 1 << 9
BMCR_FULL_DUPLEX = 1 << 8
BMCR_WRITABLE = BMCR_SPEED_100 | BMCR_ANE | BMCR_FULL_DUPLEX
BMSR_CAPABILITIES = 0x7809  # 100TX FD/HD, 10 FD/HD, can auto-negotiate, extended registers
BMSR_LINK = 1 << 2
BMSR_AN_COMPLETE = 1 << 5
ANLPAR_PARTNER = 0x41E1  # acknowledge, 100/10 full and half duplex, IEEE 802.3
ANER_PARTNER_AN = 0x0001

# Reset values.
DEFAULT_CR = 0x00
DEFAULT_CAPR = 0xFFF0  # read pointer 0
DEFAULT_TSD = TSD_OWN
DEFAULT_TCR = TCR_VERSION_8139C
DEFAULT_CONFIG1 = 0x0C  # IOMAP and MEMMAP: registers decode in I/O and memory space
DEFAULT_BMCR = BMCR_SPEED_100 | BMCR_ANE | BMCR_FULL_DUPLEX
DEFAULT_ANAR = 0x01E1

# Frames and the ring.
RX_HEADER = 4
CRC_SIZE = 4
MIN_FRAME = 14  # an Ethernet header
PAD_FRAME = 60  # minimum frame without CRC on the wire
MAX_FRAME = 1518  # without CRC: 1500 bytes of payload behind an 802.1Q tag
RING_BASE_SIZE = 8192
RING_MAX_SIZE = 65536  # RBLEN = 11; WRAP is invalid at this size
RX_WRAP_SLACK = 1536  # what drivers reserve past the ring for WRAP=1
BROADCAST = b"\xff" * 6
ADDRESS_LIMIT = 1 << 32  # the chip drives 32 address bits
TCTR_TICK_NS = 30  # one PCI clock
TCTR_MOD = 1 << 32
MPC_MASK = 0xFFFFFF

# EEPROM layout (data sheet, "EEPROM (93C46) Contents"), in 16-bit words.
EEPROM_SIGNATURE = 0x8129
EE_WORD_SIGNATURE = 0
EE_WORD_VENDOR = 1
EE_WORD_DEVICE = 2
EE_WORD_SUBSYSTEM_VENDOR = 3
EE_WORD_SUBSYSTEM = 4
EE_WORD_MIN_GNT_MAX_LAT = 5
EE_WORD_MAC = 7  # words 7-9, low byte first


@dataclass(frozen=True)
class _Reg:
    offset: int
    size: int
    default: int = 0
    writable: int = 0
    locked: bool = False  # writable only with 9346CR.EEM = config write enable


_REGISTERS: tuple[_Reg, ...] = (
    *(_Reg(IDR0 + i, 1, 0, 0xFF, locked=True) for i in range(6)),
    _Reg(MAR0, 4, 0, 0xFFFFFFFF), _Reg(MAR0 + 4, 4, 0, 0xFFFFFFFF),
    *(_Reg(TSD0 + 4 * i, 4, DEFAULT_TSD, TSD_WRITABLE) for i in range(TX_DESCRIPTORS)),
    *(_Reg(TSAD0 + 4 * i, 4, 0, 0xFFFFFFFF) for i in range(TX_DESCRIPTORS)),
    _Reg(RBSTART, 4, 0, 0xFFFFFFFF),
    _Reg(ERBCR, 2), _Reg(ERSR, 1),
    _Reg(CR, 1, DEFAULT_CR, CR_RE | CR_TE),
    _Reg(CAPR, 2, DEFAULT_CAPR, 0xFFFF), _Reg(CBR, 2),
    _Reg(IMR, 2, 0, INT_MASK), _Reg(ISR, 2),
    _Reg(TCR, 4, DEFAULT_TCR, TCR_WRITABLE), _Reg(RCR, 4, 0, RCR_WRITABLE),
    _Reg(TCTR, 4), _Reg(MPC, 4),
    _Reg(CR9346, 1, 0, CR9346_WRITABLE),
    _Reg(CONFIG0, 1), _Reg(CONFIG1, 1, DEFAULT_CONFIG1, 0xF3, locked=True),
    _Reg(TIMERINT, 4, 0, 0xFFFFFFFF),
    _Reg(MSR, 1, 0, MSR_WRITABLE),
    _Reg(CONFIG3, 1, 0, 0xFF, locked=True), _Reg(CONFIG4, 1, 0, 0xFF, locked=True),
    _Reg(HLTCLK, 1),
    _Reg(MULINT, 2, 0, 0x0FFF), _Reg(RERID, 1, RTL8139C_REVISION),
    _Reg(TSAD, 2),
    _Reg(BMCR, 2, DEFAULT_BMCR, BMCR_WRITABLE, locked=True), _Reg(BMSR, 2),
    _Reg(ANAR, 2, DEFAULT_ANAR, 0xFFFF), _Reg(ANLPAR, 2), _Reg(ANER, 2),
    _Reg(DIS, 2), _Reg(FCSC, 2), _Reg(NWAYTR, 2, 0, 0xFFFF), _Reg(REC, 2),
    _Reg(CSCR, 2, 0, 0xFFFF),
    _Reg(PHY1_PARM, 4, 0, 0xFFFFFFFF), _Reg(TW_PARM, 4, 0, 0xFFFFFFFF),
    _Reg(PHY2_PARM, 1, 0, 0xFF),
    *(_Reg(offset, 1, 0, 0xFF) for offset in PM_STORAGE),
    _Reg(CONFIG5, 1, 0, 0xFF, locked=True),
)


def _layout() -> tuple[_Reg | None, ...]:
    table: list[_Reg | None] = [None] * REGISTER_WINDOW
    for reg in _REGISTERS:
        for byte in range(reg.offset, reg.offset + reg.size):
            if table[byte] is not None:
                raise AssertionError(f"registers overlap at {byte:#x}")
            table[byte] = reg
    return tuple(table)


_LAYOUT = _layout()
_BY_OFFSET = {reg.offset: reg for reg in _REGISTERS}
_UNMAPPED_BYTE = 0x00  # reserved offsets inside the window read 0


def multicast_hash_index(address: bytes) -> int:
    """The MAR bit (0-63) a multicast destination selects: the top 6 bits of the MSB-first
    CRC-32 register after the six bytes (sent LSB first), i.e. the low 6 bits of the
    reflected register, mirrored."""
    reflected = (zlib.crc32(address) ^ 0xFFFFFFFF) & 0x3F
    return int(f"{reflected:06b}"[::-1], 2)


def eeprom_image(mac: bytes) -> list[int]:
    """The 64 words a board's 93C46 holds for this NIC."""
    words = [0] * WORD_COUNT
    words[EE_WORD_SIGNATURE] = EEPROM_SIGNATURE
    words[EE_WORD_VENDOR] = REALTEK_VENDOR_ID
    words[EE_WORD_DEVICE] = RTL8139_DEVICE_ID
    words[EE_WORD_SUBSYSTEM_VENDOR] = REALTEK_VENDOR_ID
    words[EE_WORD_SUBSYSTEM] = RTL8139_DEVICE_ID
    words[EE_WORD_MIN_GNT_MAX_LAT] = PCI_MAX_LAT << 8 | PCI_MIN_GNT
    for i in range(3):
        words[EE_WORD_MAC + i] = mac[2 * i] | mac[2 * i + 1] << 8
    return words


# Bits of each register the model itself changes (beyond what the guest may write).
_DYNAMIC_BITS = {
    **{IDR0 + i: 0xFF for i in range(6)},  # loaded from the EEPROM
    **{TSD0 + 4 * i: TSD_STATUS | TSD_OWN for i in range(TX_DESCRIPTORS)},
    CBR: 0xFFFC, ISR: INT_MASK, MPC: MPC_MASK,
}


@dataclass(frozen=True)
class Rtl8139State:
    """A snapshot: the stored register bytes plus what is not in them. An EEPROM access in
    progress is not kept (the EEPROM interface restarts idle, as after CS drops)."""

    registers: bytes
    current_tx: int = 0
    tctr: int = 0  # the count at the snapshot
    link_up: bool = True
    eeprom_words: tuple[int, ...] = ()
    eeprom_write_enabled: bool = False

    def validate(self) -> None:
        """Refuse a state the chip could never be in (a corrupt or hostile snapshot)."""
        regs = self.registers
        if not isinstance(regs, bytes) or len(regs) != REGISTER_WINDOW:
            raise ValueError(f"registers must be {REGISTER_WINDOW} bytes")
        if any(regs[i] for i in range(REGISTER_WINDOW) if _LAYOUT[i] is None):
            raise ValueError("reserved register bytes must be 0")
        for reg in _REGISTERS:
            value = int.from_bytes(regs[reg.offset:reg.offset + reg.size], "little")
            free = reg.writable | _DYNAMIC_BITS.get(reg.offset, 0)
            if (value ^ reg.default) & ~free:
                raise ValueError(f"register {reg.offset:#04x} = {value:#x} changes bits "
                                 "the chip never changes")
        if regs[CBR] & 3 or regs[CR9346] >> EEM_SHIFT == EEM_AUTOLOAD:
            raise ValueError("CBR must be dword aligned and 9346CR not in autoload mode")
        if self.current_tx not in range(TX_DESCRIPTORS):
            raise ValueError(f"current_tx = {self.current_tx!r} is not 0-3")
        if not isinstance(self.tctr, int) or not 0 <= self.tctr < TCTR_MOD:
            raise ValueError(f"tctr = {self.tctr!r} is not a 32-bit count")
        Eeprom93c46(self.eeprom_words)  # raises on a bad image


class Rtl8139Pci(PciFunction):
    """The NIC's PCI function: 10ec:8139 rev 0x10, Ethernet, BAR0 I/O and BAR1 memory of 256
    bytes (both reach the same registers), INTA. No capabilities list (the chip's power
    management capability is not emulated)."""

    def __init__(self, *, on_bar_change: BarChangeCallback | None = None) -> None:
        super().__init__(REALTEK_VENDOR_ID, RTL8139_DEVICE_ID, CLASS_ETHERNET,
                         revision=RTL8139C_REVISION, subsystem_vendor_id=REALTEK_VENDOR_ID,
                         subsystem_id=RTL8139_DEVICE_ID, interrupt_pin=INTA,
                         status=PCI_STATUS, on_bar_change=on_bar_change)
        self.define_register(LATENCY_TIMER, 1, 0, writable=0xFF)
        self.define_register(MIN_GNT, 1, PCI_MIN_GNT)
        self.define_register(MAX_LAT, 1, PCI_MAX_LAT)
        self.add_bar(IO_BAR, REGISTER_WINDOW, "io")
        self.add_bar(MEM_BAR, REGISTER_WINDOW, "mem")


class Rtl8139:
    """The chip's registers, rings and EEPROM. `read`/`write` take offsets 0-255 from either
    BAR; accesses of 1, 2, 4 (or 8) bytes at any offset reach each register they cover.

    Ports: `memory` for bus-master DMA, `irq` (the PCI function's INTx), `transmit(frame)`
    for frames leaving (must not raise), `clock` for TCTR/TimerInt, `on_tx_pending()` (see the
    module docstring), `bus_master_enabled()` (PCI command bit 2: without it RX drops and TX
    waits; call `process_tx` when it comes on), `on_master_abort()` for a DMA to nowhere.
    """

    def __init__(self, memory: DmaMemory, irq: IrqLine, transmit: Callable[[bytes], None],
                 clock: Clock, *, mac: bytes,
                 on_tx_pending: Callable[[], None] | None = None,
                 bus_master_enabled: Callable[[], bool] | None = None,
                 on_master_abort: Callable[[], None] | None = None) -> None:
        mac = bytes(mac)
        if len(mac) != 6 or mac[0] & 1:
            raise ValueError(f"MAC {mac.hex(':')} must be 6 bytes with the group bit clear")
        self._memory = memory
        self._irq = irq
        self._transmit = transmit
        self._clock = clock
        self.on_tx_pending = on_tx_pending
        self._bus_master_enabled = bus_master_enabled or (lambda: True)
        self.on_master_abort = on_master_abort
        self.eeprom = Eeprom93c46(eeprom_image(mac))
        self._regs = bytearray(REGISTER_WINDOW)
        self._irq_level = False
        self._timer: TimerHandle | None = None
        self._tctr_base_ns = 0
        self._cur_tx = 0
        self._link_up = True
        self.rx_frames = 0
        self.rx_bytes = 0
        self.rx_dropped: Counter[str] = Counter()
        self.tx_frames = 0
        self.tx_bytes = 0
        self.tx_errors = 0
        self.tx_dropped: Counter[str] = Counter()  # sent with no carrier: "link-down"
        self._tx_running = False  # inside process_tx (see there)
        self._rx_running = False  # inside receive
        self._readers: dict[int, Callable[[], int]] = {
            CR: self._read_cr, TCTR: self._read_tctr, CR9346: self._read_9346cr,
            MSR: self._read_msr, TSAD: self._read_tsad, BMSR: self._read_bmsr,
            ANLPAR: lambda: ANLPAR_PARTNER if self._link_up else 0,
            ANER: lambda: ANER_PARTNER_AN,
        }
        self._writers: dict[int, Callable[[int, int], None]] = {
            CR: self._write_cr, ISR: self._write_isr, IMR: self._write_imr,
            TCTR: self._write_tctr, MPC: self._write_mpc, TIMERINT: self._write_timerint,
            CR9346: self._write_9346cr, BMCR: self._write_bmcr,
            **{TSD0 + 4 * i: self._tsd_writer(i) for i in range(TX_DESCRIPTORS)},
        }
        self.reset()

    # -- host side ------------------------------------------------------------------------------

    @property
    def register_port(self) -> Rtl8139:
        """The Device to map at the I/O BAR and at the memory BAR."""
        return self

    @property
    def mac(self) -> bytes:
        """The station address the filter uses now (IDR0-5)."""
        return bytes(self._regs[IDR0:IDR0 + 6])

    @property
    def tx_pending(self) -> bool:
        """Some descriptor waits for `process_tx` (and could go now)."""
        return self._tx_ready() and not self._get(TSD0 + 4 * self._cur_tx, 4) & TSD_OWN

    def reset(self) -> None:
        """RST#: every register to its default, the station address from the EEPROM."""
        self._cancel_timer()
        self.eeprom.set_pins(False, False, False)
        for reg in _REGISTERS:
            self._set(reg.offset, reg.size, reg.default)
        for i in range(3):
            word = self.eeprom.word(EE_WORD_MAC + i)
            self._regs[IDR0 + 2 * i] = word & 0xFF
            self._regs[IDR0 + 2 * i + 1] = word >> 8
        self._cur_tx = 0
        self._tctr_base_ns = self._clock.now_ns()
        self._update_irq()

    def state(self) -> Rtl8139State:
        return Rtl8139State(registers=bytes(self._regs), current_tx=self._cur_tx,
                            tctr=self._read_tctr(), link_up=self._link_up,
                            eeprom_words=self.eeprom.words,
                            eeprom_write_enabled=self.eeprom.write_enabled)

    @classmethod
    def from_state(cls, state: Rtl8139State, memory: DmaMemory, irq: IrqLine,
                   transmit: Callable[[bytes], None], clock: Clock,
                   **ports: Any) -> Rtl8139:
        """Rebuild a NIC (`ports`: the constructor's keyword ports); checks bounds first,
        re-arms the timer and re-raises the line if an interrupt is pending."""
        state.validate()
        mac = bytes(state.registers[IDR0:IDR0 + 6])
        nic = cls(memory, irq, transmit, clock, mac=bytes(6) if mac[0] & 1 else mac, **ports)
        nic.eeprom = Eeprom93c46(state.eeprom_words)
        nic.eeprom.write_enabled = state.eeprom_write_enabled
        nic._regs[:] = state.registers
        nic._cur_tx = state.current_tx
        nic._link_up = bool(state.link_up)
        nic._tctr_base_ns = clock.now_ns() - state.tctr * TCTR_TICK_NS
        nic._write_9346cr(nic._regs[CR9346], 0xFF)  # the EEPROM pins, idle
        nic._arm_timer()
        nic._update_irq()
        return nic

    def set_link(self, up: bool) -> None:
        """The cable: a change shows in MSR/BMSR and raises ISR.LinkChg."""
        if bool(up) != self._link_up:
            self._link_up = bool(up)
            self._raise(INT_LINKCHG)

    def can_receive(self, length: int = MAX_FRAME) -> bool:
        """Whether a frame of `length` bytes (without CRC) would be stored now."""
        if self._rx_refusal() is not None:
            return False
        return self._packet_span(max(length, PAD_FRAME)) < self._rx_free()

    def rx_ring_full(self) -> bool:
        """Receiving is on, but the guest has not freed room for a full-size frame: a
        backend should hold its frames back rather than have them dropped."""
        return self._rx_refusal() is None and not self.can_receive()

    def receive(self, frame: bytes) -> bool:
        """A frame from the wire (no CRC). True if it was stored in the guest's ring.
        A call made from a port while a frame is being stored is refused ("reentrant")."""
        if self._rx_running:
            self.rx_dropped["reentrant"] += 1
            return False
        self._rx_running = True
        try:
            return self._receive(frame)
        finally:
            self._rx_running = False

    def _receive(self, frame: bytes) -> bool:
        reason = self._rx_refusal()
        if reason is None and len(frame) < MIN_FRAME:
            reason = "runt"
        if reason is None and len(frame) > MAX_FRAME:
            reason = "oversize"
        if reason is not None:
            self.rx_dropped[reason] += 1
            return False
        status = self._filter(bytes(frame[:6]))
        if status is None:
            self.rx_dropped["filtered"] += 1
            return False
        return self._store(bytes(frame), status)

    def process_tx(self) -> int:
        """Send the pending descriptors in ring order from the current one; how many went:
        at most four a call, however fast the guest re-posts them. A call made while one
        runs (a port calling back into the chip, as QEMU's DMA into its own registers did)
        returns 0 and leaves the work to the running call or the next kick."""
        if self._tx_running:
            return 0
        self._tx_running = True
        try:
            sent = 0
            while sent < TX_DESCRIPTORS and self.tx_pending:
                self._transmit_one(self._cur_tx)
                self._cur_tx = (self._cur_tx + 1) % TX_DESCRIPTORS
                sent += 1
            return sent
        finally:
            self._tx_running = False

    # -- guest side -----------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        check_access_size(size)
        value = 0
        lane = 0
        while lane < size:
            byte = offset + lane
            reg = _LAYOUT[byte] if 0 <= byte < REGISTER_WINDOW else None
            if reg is None:
                value |= (_UNMAPPED_BYTE if 0 <= byte < REGISTER_WINDOW else 0xFF) << 8 * lane
                lane += 1
                continue
            reader = self._readers.get(reg.offset)
            full = reader() if reader is not None else self._get(reg.offset, reg.size)
            end = min(offset + size, reg.offset + reg.size)
            for b in range(byte, end):
                value |= ((full >> 8 * (b - reg.offset)) & 0xFF) << 8 * (b - offset)
            lane = end - offset
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        check_access_size(size)
        lane = 0
        while lane < size:
            byte = offset + lane
            reg = _LAYOUT[byte] if 0 <= byte < REGISTER_WINDOW else None
            if reg is None:
                lane += 1
                continue
            end = min(offset + size, reg.offset + reg.size)
            data = mask = 0
            for b in range(byte, end):
                shift = 8 * (b - reg.offset)
                data |= ((value >> 8 * (b - offset)) & 0xFF) << shift
                mask |= 0xFF << shift
            lane = end - offset
            if reg.locked and not self._config_writable():
                continue
            writer = self._writers.get(reg.offset)
            if writer is not None:
                writer(data, mask)
            else:
                self._store_masked(reg.offset, data, mask)

    # -- register helpers -----------------------------------------------------------------------

    def _get(self, offset: int, size: int) -> int:
        return int.from_bytes(self._regs[offset:offset + size], "little")

    def _set(self, offset: int, size: int, value: int) -> None:
        self._regs[offset:offset + size] = value.to_bytes(size, "little")

    def _store_masked(self, offset: int, data: int, mask: int) -> int:
        reg = _BY_OFFSET[offset]
        keep = mask & reg.writable
        new = (self._get(reg.offset, reg.size) & ~keep) | (data & keep)
        self._set(reg.offset, reg.size, new)
        return new

    def _config_writable(self) -> bool:
        return self._regs[CR9346] >> EEM_SHIFT == EEM_CONFIG_WRITE

    # -- special registers ----------------------------------------------------------------------

    def _read_cr(self) -> int:
        empty = self._rx_read_offset() == self._rx_write_offset()
        return self._regs[CR] | (CR_BUFE if empty else 0)

    def _write_cr(self, data: int, mask: int) -> None:
        if data & CR_RST:
            self._soft_reset()
            return
        was_ready = self._tx_ready()
        self._regs[CR] = data & (CR_RE | CR_TE)
        if not was_ready:
            self._tx_kick()

    def _soft_reset(self) -> None:
        """CR.RST: receiver and transmitter off, pointers to their start, status cleared."""
        self._regs[CR] = DEFAULT_CR
        self._set(CAPR, 2, DEFAULT_CAPR)
        self._set(CBR, 2, 0)
        for i in range(TX_DESCRIPTORS):
            self._set(TSD0 + 4 * i, 4, DEFAULT_TSD)
        self._cur_tx = 0
        self._set(ISR, 2, 0)
        self._set(IMR, 2, 0)
        self._set(MPC, 4, 0)
        self._update_irq()

    def _write_isr(self, data: int, mask: int) -> None:
        self._set(ISR, 2, self._get(ISR, 2) & ~(data & mask))
        self._update_irq()

    def _write_imr(self, data: int, mask: int) -> None:
        self._store_masked(IMR, data, mask)
        self._update_irq()

    def _read_tctr(self) -> int:
        return (self._clock.now_ns() - self._tctr_base_ns) // TCTR_TICK_NS % TCTR_MOD

    def _write_tctr(self, data: int, mask: int) -> None:
        self._tctr_base_ns = self._clock.now_ns()  # any write restarts the count at 0
        self._arm_timer()

    def _write_mpc(self, data: int, mask: int) -> None:
        self._set(MPC, 4, 0)

    def _write_timerint(self, data: int, mask: int) -> None:
        self._store_masked(TIMERINT, data, mask)
        self._arm_timer()

    def _read_9346cr(self) -> int:
        value = self._regs[CR9346]
        if value >> EEM_SHIFT == EEM_PROGRAM and self.eeprom.data_out:
            value |= EE_DO
        return value

    def _write_9346cr(self, data: int, mask: int) -> None:
        value = data & CR9346_WRITABLE
        if value >> EEM_SHIFT == EEM_AUTOLOAD:
            self.reset()  # loads the EEPROM, resets the rest, back to normal mode
            return
        self._regs[CR9346] = value
        if value >> EEM_SHIFT == EEM_PROGRAM:
            self.eeprom.set_pins(bool(value & EE_CS), bool(value & EE_SK), bool(value & EE_DI))
        else:
            self.eeprom.set_pins(False, False, False)

    def _read_msr(self) -> int:
        value = self._regs[MSR] & MSR_WRITABLE
        if not self._link_up:
            value |= MSR_LINKB
        bmcr = self._get(BMCR, 2)
        if not bmcr & BMCR_ANE and not bmcr & BMCR_SPEED_100:
            value |= MSR_SPEED_10
        return value

    def _read_bmsr(self) -> int:
        value = BMSR_CAPABILITIES
        if self._link_up:
            value |= BMSR_LINK
            if self._get(BMCR, 2) & BMCR_ANE:
                value |= BMSR_AN_COMPLETE
        return value

    def _write_bmcr(self, data: int, mask: int) -> None:
        if data & mask & BMCR_RESET:
            self._set(BMCR, 2, DEFAULT_BMCR)
            self._set(ANAR, 2, DEFAULT_ANAR)
            return
        self._store_masked(BMCR, data, mask)

    def _read_tsad(self) -> int:
        value = 0
        for i in range(TX_DESCRIPTORS):
            tsd = self._get(TSD0 + 4 * i, 4)
            value |= (bool(tsd & TSD_OWN) << i | bool(tsd & TSD_TABT) << (4 + i)
                      | bool(tsd & TSD_TUN) << (8 + i) | bool(tsd & TSD_TOK) << (12 + i))
        return value

    def _tsd_writer(self, index: int) -> Callable[[int, int], None]:
        def write(data: int, mask: int) -> None:
            new = self._store_masked(TSD0 + 4 * index, data, mask)
            if mask & TSD_OWN and not data & TSD_OWN:  # the driver hands the buffer over
                self._set(TSD0 + 4 * index, 4, new & ~TSD_STATUS)
                self._tx_kick()
        return write

    # -- interrupts and the timer ---------------------------------------------------------------

    def _raise(self, bits: int) -> None:
        self._set(ISR, 2, self._get(ISR, 2) | bits)
        self._update_irq()

    def _update_irq(self) -> None:
        """INTA follows (ISR & IMR) != 0; the line is touched only when the level changes."""
        level = bool(self._get(ISR, 2) & self._get(IMR, 2))
        if level != self._irq_level:
            self._irq_level = level
            self._irq.set_level(level)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm_timer(self) -> None:
        """Schedule ISR.TIMEOUT for the next time TCTR equals TimerInt."""
        self._cancel_timer()
        target = self._get(TIMERINT, 4)
        if target == 0:
            return
        elapsed = (self._clock.now_ns() - self._tctr_base_ns) // TCTR_TICK_NS
        ticks = elapsed - elapsed % TCTR_MOD + target
        if ticks <= elapsed:
            ticks += TCTR_MOD
        deadline = self._tctr_base_ns + ticks * TCTR_TICK_NS
        self._timer = self._clock.call_at(deadline, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self._raise(INT_TIMEOUT)
        self._arm_timer()  # again when TCTR wraps round to the same value

    # -- transmit -------------------------------------------------------------------------------

    def _tx_ready(self) -> bool:
        return bool(self._regs[CR] & CR_TE) and self._bus_master_enabled()

    def _tx_kick(self) -> None:
        if not self.tx_pending:
            return
        if self.on_tx_pending is not None:
            self.on_tx_pending()
        else:
            self.process_tx()

    def _transmit_one(self, index: int) -> None:
        tsd = self._get(TSD0 + 4 * index, 4)
        size = tsd & TSD_SIZE
        address = self._get(TSAD0 + 4 * index, 4)
        status, isr = TSD_OWN | TSD_TUN, INT_TER
        if 0 < size <= MAX_TX_SIZE:
            frame = self._dma_read(address, size)
            if frame is None:
                isr |= INT_SERR
            else:
                status, isr = TSD_OWN | TSD_TOK, INT_TOK
                self._send(frame)
        if isr & INT_TER:
            self.tx_errors += 1
        elif not self._link_up:
            status |= TSD_CRS
        self._set(TSD0 + 4 * index, 4, (tsd & ~(TSD_STATUS | TSD_OWN)) | status)
        self._raise(isr)

    def _send(self, frame: bytes) -> None:
        self.tx_frames += 1
        self.tx_bytes += len(frame)
        if (self._get(TCR, 4) & TCR_LBK) == TCR_LOOPBACK:
            self.receive(frame)
        elif self._link_up:
            self._transmit(frame)
        else:
            self.tx_dropped["link-down"] += 1  # TSD.CRS tells the guest

    def _dma_read(self, address: int, size: int) -> bytes | None:
        if address + size > ADDRESS_LIMIT:
            self._master_abort()
            return None
        try:
            return self._memory.read(address, size)
        except GuestError:
            self._master_abort()
            return None

    def _master_abort(self) -> None:
        if self.on_master_abort is not None:
            self.on_master_abort()

    # -- receive --------------------------------------------------------------------------------

    def _rx_refusal(self) -> str | None:
        if not self._regs[CR] & CR_RE:
            return "disabled"
        if not self._link_up:
            return "link-down"
        if not self._bus_master_enabled():
            return "bus-master-off"
        return None

    def _filter(self, destination: bytes) -> int | None:
        """The header status bits for an accepted frame, or None if the filter rejects it."""
        rcr = self._get(RCR, 4)
        if destination == BROADCAST:
            return RX_BAR if rcr & RCR_AB else None
        if destination[0] & 1:
            bit = multicast_hash_index(destination)
            hit = self._regs[MAR0 + bit // 8] >> (bit % 8) & 1
            return RX_MAR if rcr & RCR_AM and hit else None
        if destination == self.mac:
            return RX_PAM if rcr & (RCR_APM | RCR_AAP) else None
        return 0 if rcr & RCR_AAP else None

    def _ring_size(self) -> int:
        return RING_BASE_SIZE << ((self._get(RCR, 4) & RCR_RBLEN) >> RCR_RBLEN_SHIFT)

    def _rx_read_offset(self) -> int:
        return ((self._get(CAPR, 2) + 16) & 0xFFFF) % self._ring_size()

    def _rx_write_offset(self) -> int:
        return self._get(CBR, 2) % self._ring_size()

    def _rx_free(self) -> int:
        ring = self._ring_size()
        return ring - (self._rx_write_offset() - self._rx_read_offset()) % ring

    @staticmethod
    def _packet_span(frame_length: int) -> int:
        """Ring bytes one packet takes: header, frame, CRC, rounded up to a dword."""
        return (RX_HEADER + frame_length + CRC_SIZE + 3) & ~3

    def _store(self, frame: bytes, status: int) -> bool:
        if len(frame) < PAD_FRAME:
            frame += bytes(PAD_FRAME - len(frame))
        length = len(frame) + CRC_SIZE
        span = self._packet_span(len(frame))
        if span >= self._rx_free():  # filling the ring completely would look empty
            self._set(MPC, 4, (self._get(MPC, 4) + 1) & MPC_MASK)
            self.rx_dropped["overflow"] += 1
            self._raise(INT_RXOVW)
            return False
        header = ((status | RX_ROK) | length << 16).to_bytes(RX_HEADER, "little")
        packet = header + frame + zlib.crc32(frame).to_bytes(CRC_SIZE, "little")
        views = self._ring_views(len(packet))
        if views is None:
            self.rx_dropped["dma-error"] += 1
            self._raise(INT_SERR)
            return False
        position = 0
        for view in views:
            view[:] = packet[position:position + len(view)]
            position += len(view)
        ring = self._ring_size()
        self._set(CBR, 2, (self._rx_write_offset() + span) % ring)
        self.rx_frames += 1
        self.rx_bytes += len(frame)
        self._raise(INT_ROK)
        return True

    def _ring_views(self, total: int) -> list[memoryview] | None:
        """Every piece of guest RAM the packet goes to, all checked before any byte moves."""
        ring, base, start = self._ring_size(), self._get(RBSTART, 4), self._rx_write_offset()
        wrap_past_end = self._get(RCR, 4) & RCR_WRAP and ring < RING_MAX_SIZE
        if wrap_past_end or start + total <= ring:
            pieces = [(base + start, total)]
        else:
            pieces = [(base + start, ring - start), (base, total - (ring - start))]
        if any(gpa + size > ADDRESS_LIMIT for gpa, size in pieces):
            self._master_abort()
            return None
        try:
            return [self._memory.view(gpa, size) for gpa, size in pieces]
        except GuestError:
            self._master_abort()
            return None
