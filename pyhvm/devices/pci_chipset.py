"""The PC's chipset functions on PCI bus 0: i440FX host bridge, PIIX3 ISA bridge and IDE.

    00.0  Intel 82441FX PMC (8086:1237), host bridge         `I440fxHostBridge`
    01.0  Intel 82371SB PIIX3 (8086:7000), PCI-to-ISA bridge `Piix3IsaBridge`
    01.1  Intel 82371SB PIIX3 (8086:7010), IDE controller    `Piix3Ide` (configuration only)

plus `PciInterruptRouter`, the PIIX3's PIRQ steering as seen from the devices: each PCI
function's INTx pin is a `PciIntxLine`; the router maps (device, pin) to one of the four PIRQ
signals by the board's swizzle, then to an ISA IRQ by the PIRQ route control registers, and
drives the ISA IRQ lines handed in. `build_pc_chipset` wires all of it onto a `PciHost`.

Configuration registers are stored as the datasheets lay them out; what they would steer on
real silicon (DRAM timing, ISA bus timing, SMI generation, chip selects) has no effect here.
Modelled effects: PAM and SMRAM changes reach `on_pam_change` / `on_smram_change` (the
machine does the shadowing, later, with firmware), PIRQ routing drives interrupts, the IDE
decode bits and BAR4 are read by the IDE model (pyhvm/devices/ide.py).

What the guest can make it do: route PCI interrupts to any of the eleven ISA IRQs the PIIX3
allows (3-7, 9-12, 14, 15) or to none, share one IRQ among several PIRQs (the IRQ is the OR of
all, level-triggered), open and lock SMRAM (once D_LCK is set, only a reset clears it), flip
the PAM attributes of the 13 segments in 0xC0000-0xFFFFF. What it cannot: route to a
reserved IRQ value (0-2, 8, 13: treated as not routed), change IDs, class codes or the
multi-function bit, or move the i440FX or PIIX3 ISA function in any address space (they have
no BARs; their decode enables are hardwired on).

Not emulated: the ELCR (it lives with the 8259 model at 0x4D0), the PIIX3 USB function
(01.2), the motherboard IRQ/DMA routes (MBIRQ, MBDMA: stored only), the PIIX3 APIC chip
select, SMI generation, and the 82441FX's DRAM controller and error reporting (stored only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyhvm.devices.base import IrqLine
from pyhvm.devices.pci import (
    BarChangeCallback,
    COMMAND_BUS_MASTER,
    COMMAND_IO,
    COMMAND_MEMORY,
    COMMAND_PARITY,
    COMMAND_SERR,
    COMMAND_SPECIAL_CYCLES,
    DEVICE_COUNT,
    HEADER_TYPE_MULTI_FUNCTION,
    INTA,
    INTD,
    LATENCY_TIMER,
    PciFunction,
    PciHost,
    STATUS_DEVSEL_MEDIUM,
    STATUS_FAST_B2B,
    config_overlaps,
)

INTEL_VENDOR_ID = 0x8086

# Where the PC puts them on bus 0.
I440FX_DEVICE = 0
PIIX3_DEVICE = 1
PIIX3_ISA_FUNCTION = 0
PIIX3_IDE_FUNCTION = 1

# 82441FX PCI and memory controller (PMC), configuration registers (82441FX datasheet).
I440FX_DEVICE_ID = 0x1237
I440FX_REVISION = 0x02
# The board's subsystem IDs, QEMU's (Red Hat, "QEMU virtual machine"): SeaBIOS looks for them
# on 00:00.0 before it uses fw_cfg (paravirt.c qemu_detect); silicon reports the board maker's.
QEMU_SUBSYSTEM_VENDOR_ID = 0x1AF4
QEMU_SUBSYSTEM_ID = 0x1100
CLASS_HOST_BRIDGE = 0x060000  # bridge, host bridge
I440FX_COMMAND = COMMAND_MEMORY | COMMAND_BUS_MASTER  # 0x0006: hardwired on
I440FX_COMMAND_WRITABLE = COMMAND_PARITY | COMMAND_SERR
I440FX_STATUS = STATUS_FAST_B2B | STATUS_DEVSEL_MEDIUM  # 0x0280
MLT_WRITABLE = 0xF8  # master latency timer: bits 7:3 count, 2:0 read 0
PMCCFG = 0x50  # PMC configuration (word)
DETURBO = 0x52  # deturbo counter control
DBC = 0x53  # DRAM buffer control
AXC = 0x54  # auxiliary control
DRAMR = 0x55  # DRAM row type (word)
DRAMC = 0x57  # DRAM control
DRAMT = 0x58  # DRAM timing
PAM0 = 0x59  # programmable attribute map: PAM0-PAM6 at 0x59-0x5F
PAM_COUNT = 7
DRB0 = 0x60  # DRAM row boundaries: DRB0-DRB7 at 0x60-0x67
DRB_COUNT = 8
FDHC = 0x68  # fixed DRAM hole control
MTT = 0x70  # multi-transaction timer
CLT = 0x71  # CPU latency timer
SMRAM = 0x72  # system management RAM control
ERRCMD = 0x90  # error command
ERRSTS = 0x91  # error status (write 1 to clear)

# PAM nibbles: each byte holds two segments, low nibble first (82441FX PAM registers).
PAM_READ_ENABLE = 0x1  # reads of the segment go to DRAM (else to PCI: ROM)
PAM_WRITE_ENABLE = 0x2  # writes go to DRAM (else to PCI)
PAM_NIBBLE_WRITABLE = PAM_READ_ENABLE | PAM_WRITE_ENABLE  # bits 3:2 reserved on the 82441FX
PAM_WRITABLE = PAM_NIBBLE_WRITABLE << 4 | PAM_NIBBLE_WRITABLE
PAM0_WRITABLE = PAM_NIBBLE_WRITABLE << 4  # PAM0's low nibble is reserved
BIOS_SEGMENT_BASE = 0xF0000  # PAM0 high nibble: the 64 KiB system BIOS area
BIOS_SEGMENT_SIZE = 0x10000
EXPANSION_SEGMENT_BASE = 0xC0000  # PAM1-PAM6: twelve 16 KiB segments, 0xC0000-0xEFFFF
EXPANSION_SEGMENT_SIZE = 0x4000

# SMRAM control bits (82441FX SMRAM register).
SMRAM_C_BASE_SEG = 0x07  # read-only 010b: compatible SMRAM at 0xA0000
SMRAM_G_SMRAME = 0x08  # global SMRAM enable
SMRAM_D_LCK = 0x10  # lock: D_OPEN cleared, D_OPEN and D_LCK read-only until reset
SMRAM_D_CLS = 0x20  # SMM data accesses go to PCI (VGA) while SMM code sees SMRAM
SMRAM_D_OPEN = 0x40  # SMRAM visible outside SMM
SMRAM_WRITABLE = SMRAM_G_SMRAME | SMRAM_D_LCK | SMRAM_D_CLS | SMRAM_D_OPEN

# Reset values. PAM and SMRAM follow the 82441FX datasheet; the DRAM controller's (DBC to
# CLT) are our reading of its register summary, not checked against silicon, and stored
# only: nothing on a virtual board reads them. Registers without a named value reset to 0.
DEFAULT_PAM = 0x00  # every segment reads and writes go to PCI (the BIOS ROM)
DEFAULT_SMRAM = 0x02  # C_BASE_SEG = 010b, SMRAM disabled
DEFAULT_DBC = 0x80
DEFAULT_DRAMC = 0x01
DEFAULT_DRAMT = 0x10
DEFAULT_DRB = 0x02
DEFAULT_MTT = 0x20
DEFAULT_CLT = 0x10

# 82371SB PIIX3 function 0, PCI-to-ISA bridge (82371SB datasheet, function 0).
PIIX3_ISA_DEVICE_ID = 0x7000
PIIX3_REVISION = 0x00
CLASS_ISA_BRIDGE = 0x060100  # bridge, ISA bridge
PIIX3_ISA_COMMAND = COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER  # 0x0007: hardwired
PIIX3_ISA_COMMAND_WRITABLE = COMMAND_SPECIAL_CYCLES | COMMAND_SERR
PIIX3_ISA_STATUS = STATUS_DEVSEL_MEDIUM  # 0x0200
IORT = 0x4C  # ISA I/O recovery timer
XBCS = 0x4E  # X-bus chip select (word)
PIRQRC = 0x60  # PIRQ route control: PIRQA-PIRQD at 0x60-0x63
PIRQ_COUNT = 4
TOM = 0x69  # top of memory
MSTAT = 0x6A  # miscellaneous status (word)
MBIRQ0 = 0x70  # motherboard device IRQ routes (two bytes)
MBDMA0 = 0x76  # motherboard device DMA routes (two bytes)
PCSC = 0x78  # programmable chip select control (word)
APICBASE = 0x80  # APIC base address relocation
DLC = 0x82  # deterministic latency control
SMICNTL = 0xA0  # SMI control
SMIEN = 0xA2  # SMI enable (word)
SEE = 0xA4  # system event enable (dword)
FTMR = 0xA8  # fast off timer
SMIREQ = 0xAA  # SMI request (word)
CTLTMR = 0xAC  # clock scale STPCLK# low timer
CTHTMR = 0xAE  # clock scale STPCLK# high timer

PIRQ_ROUTING_DISABLED = 0x80  # bit 7: the PIRQ reaches no ISA IRQ
PIRQ_IRQ_MASK = 0x0F  # bits 3:0: the ISA IRQ
PIRQRC_WRITABLE = PIRQ_ROUTING_DISABLED | PIRQ_IRQ_MASK  # bits 6:4 reserved
ROUTABLE_IRQS = frozenset({3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15})  # others are reserved

# PIRQRC resets to "disabled" (82371SB); the other defaults are our reading of the register
# summary, stored only. Every bit of the stored-only registers is writable.
DEFAULT_PIRQRC = PIRQ_ROUTING_DISABLED
DEFAULT_IORT = 0x4D
DEFAULT_XBCS = 0x0003  # RTC and keyboard controller chip selects enabled
DEFAULT_TOM = 0x02
DEFAULT_MBIRQ = 0x80
DEFAULT_MBDMA = 0x04
DEFAULT_PCSC = 0x0002
DEFAULT_SMICNTL = 0x08
DEFAULT_FTMR = 0x0F

# 82371SB PIIX3 function 1, IDE (82371SB datasheet, function 1).
PIIX3_IDE_DEVICE_ID = 0x7010
CLASS_IDE = 0x010180  # mass storage, IDE, prog-if 0x80: bus master, both channels legacy
PIIX3_IDE_COMMAND_WRITABLE = COMMAND_IO | COMMAND_BUS_MASTER
PIIX3_IDE_STATUS = STATUS_FAST_B2B | STATUS_DEVSEL_MEDIUM  # 0x0280
IDE_MLT_WRITABLE = 0xF0  # master latency timer bits 7:4
BMIBA_BAR = 4  # bus master interface base address, at 0x20
BMIBA_SIZE = 16  # eight registers per channel
IDETIM = 0x40  # IDE timing, primary at 0x40, secondary at 0x42 (words)
IDETIM_DECODE_ENABLE = 1 << 15  # IDE: decode the channel's legacy ports
IDETIM_WRITABLE = 0xF3FF  # bits 11:10 reserved
SIDETIM = 0x44  # slave IDE timing
CHANNEL_COUNT = 2
DEFAULT_IDETIM = 0x0000  # legacy decode off until firmware enables it


@dataclass(frozen=True)
class PamRegion:
    """One shadowable segment and where its reads and writes go (True: DRAM, False: ROM)."""

    base: int
    size: int
    read_dram: bool
    write_dram: bool


def _pam_layout() -> tuple[tuple[int, int, int, int], ...]:
    """(register, shift, base, size) for the 13 segments, in ascending address order."""
    layout = []
    for segment in range(12):
        register = PAM0 + 1 + segment // 2
        base = EXPANSION_SEGMENT_BASE + segment * EXPANSION_SEGMENT_SIZE
        layout.append((register, 4 * (segment % 2), base, EXPANSION_SEGMENT_SIZE))
    layout.append((PAM0, 4, BIOS_SEGMENT_BASE, BIOS_SEGMENT_SIZE))
    return tuple(layout)


PAM_LAYOUT = _pam_layout()


class I440fxHostBridge(PciFunction):
    """82441FX PMC at 00.0: IDs, PAM and SMRAM; the DRAM controller registers stored only.

    `on_pam_change(regions)` gets the `PamRegion`s whose attributes changed, after the write;
    `on_smram_change(value)` the new SMRAM byte. Either may be set after construction.
    """

    def __init__(self, on_pam_change: Callable[[tuple[PamRegion, ...]], None] | None = None,
                 on_smram_change: Callable[[int], None] | None = None) -> None:
        super().__init__(INTEL_VENDOR_ID, I440FX_DEVICE_ID, CLASS_HOST_BRIDGE,
                         revision=I440FX_REVISION, command=I440FX_COMMAND,
                         subsystem_vendor_id=QEMU_SUBSYSTEM_VENDOR_ID,
                         subsystem_id=QEMU_SUBSYSTEM_ID,
                         command_writable=I440FX_COMMAND_WRITABLE, status=I440FX_STATUS)
        self.on_pam_change = on_pam_change
        self.on_smram_change = on_smram_change
        self.define_register(LATENCY_TIMER, 1, 0, writable=MLT_WRITABLE)
        for offset, size, value in ((PMCCFG, 2, 0), (DETURBO, 1, 0), (DBC, 1, DEFAULT_DBC),
                                    (AXC, 1, 0), (DRAMR, 2, 0), (DRAMC, 1, DEFAULT_DRAMC),
                                    (DRAMT, 1, DEFAULT_DRAMT), (FDHC, 1, 0),
                                    (MTT, 1, DEFAULT_MTT), (CLT, 1, DEFAULT_CLT),
                                    (ERRCMD, 1, 0)):
            self.define_register(offset, size, value, writable=(1 << (8 * size)) - 1)
        self.define_register(ERRSTS, 1, 0, w1c=0xFF)
        for index in range(DRB_COUNT):
            self.define_register(DRB0 + index, 1, DEFAULT_DRB, writable=0xFF)
        self.define_register(PAM0, 1, DEFAULT_PAM, writable=PAM0_WRITABLE)
        for index in range(1, PAM_COUNT):
            self.define_register(PAM0 + index, 1, DEFAULT_PAM, writable=PAM_WRITABLE)
        self.define_register(SMRAM, 1, DEFAULT_SMRAM, writable=SMRAM_WRITABLE)
        self._pam_seen = self.pam_regions()
        self._smram_seen = DEFAULT_SMRAM

    def pam_regions(self) -> tuple[PamRegion, ...]:
        """The 13 PAM segments from 0xC0000 to 0xFFFFF with their current attributes."""
        regions = []
        for register, shift, base, size in PAM_LAYOUT:
            nibble = self._config[register] >> shift
            regions.append(PamRegion(base, size, bool(nibble & PAM_READ_ENABLE),
                                     bool(nibble & PAM_WRITE_ENABLE)))
        return tuple(regions)

    @property
    def smram(self) -> int:
        return self._config[SMRAM]

    def _write_byte(self, index: int, byte: int) -> None:
        if index != SMRAM:
            super()._write_byte(index, byte)
            return
        if self._config[SMRAM] & SMRAM_D_LCK:
            byte = (byte & ~SMRAM_D_OPEN) | SMRAM_D_LCK  # D_OPEN and D_LCK frozen
        super()._write_byte(index, byte)
        if self._config[SMRAM] & SMRAM_D_LCK:
            self._config[SMRAM] &= ~SMRAM_D_OPEN & 0xFF  # setting D_LCK closes SMRAM

    def _after_write(self, offset: int, size: int) -> None:
        super()._after_write(offset, size)
        if config_overlaps(offset, size, PAM0, PAM_COUNT):
            regions = self.pam_regions()
            changed = tuple(new for new, old in zip(regions, self._pam_seen) if new != old)
            self._pam_seen = regions
            if changed and self.on_pam_change is not None:
                self.on_pam_change(changed)
        if config_overlaps(offset, size, SMRAM, 1) and self._config[SMRAM] != self._smram_seen:
            self._smram_seen = self._config[SMRAM]
            if self.on_smram_change is not None:
                self.on_smram_change(self._smram_seen)

    def _validate_config(self, config: bytes) -> None:
        if config[SMRAM] & SMRAM_D_LCK and config[SMRAM] & SMRAM_D_OPEN:
            raise ValueError("SMRAM snapshot has D_OPEN set while locked")


def pirq_for(device: int, pin: int) -> int:
    """The PIRQ (0 = PIRQA .. 3 = PIRQD) that INTx pin `pin` (1 = INTA .. 4 = INTD) of bus-0
    device `device` is wired to on this board: (device + pin - 2) mod 4.

    Board wiring, not a PCI rule: it rotates the pins by slot so single-function cards in
    adjacent slots land on different PIRQs, with slot 1's INTA on PIRQA. Firmware that
    describes the board (a $PIR table, an ACPI _PRT) must state the same table.
    """
    if not 0 <= device < DEVICE_COUNT or not INTA <= pin <= INTD:
        raise ValueError(f"device {device} pin {pin}: need device 0-31 and pin 1-4 (INTA-D)")
    return (device + pin - 2) % PIRQ_COUNT


class Piix3IsaBridge(PciFunction):
    """PIIX3 function 0 at 01.0: the PIRQ route control registers and stored ISA settings.

    `on_pirq_change()` is called after any write touching 0x60-0x63 (and after reset and
    restore); `PciInterruptRouter` claims it to re-steer asserted lines.
    """

    def __init__(self, on_pirq_change: Callable[[], None] | None = None) -> None:
        super().__init__(INTEL_VENDOR_ID, PIIX3_ISA_DEVICE_ID, CLASS_ISA_BRIDGE,
                         revision=PIIX3_REVISION, header_type=HEADER_TYPE_MULTI_FUNCTION,
                         command=PIIX3_ISA_COMMAND, command_writable=PIIX3_ISA_COMMAND_WRITABLE,
                         status=PIIX3_ISA_STATUS)
        self.on_pirq_change = on_pirq_change
        stored = ((IORT, 1, DEFAULT_IORT), (XBCS, 2, DEFAULT_XBCS), (TOM, 1, DEFAULT_TOM),
                  (MSTAT, 2, 0), (MBIRQ0, 1, DEFAULT_MBIRQ), (MBIRQ0 + 1, 1, DEFAULT_MBIRQ),
                  (MBDMA0, 1, DEFAULT_MBDMA), (MBDMA0 + 1, 1, DEFAULT_MBDMA),
                  (PCSC, 2, DEFAULT_PCSC), (APICBASE, 1, 0), (DLC, 1, 0),
                  (SMICNTL, 1, DEFAULT_SMICNTL), (SMIEN, 2, 0), (SEE, 4, 0),
                  (FTMR, 1, DEFAULT_FTMR), (SMIREQ, 2, 0), (CTLTMR, 1, 0), (CTHTMR, 1, 0))
        for offset, size, value in stored:
            self.define_register(offset, size, value, writable=(1 << (8 * size)) - 1)
        for pirq in range(PIRQ_COUNT):
            self.define_register(PIRQRC + pirq, 1, DEFAULT_PIRQRC, writable=PIRQRC_WRITABLE)

    def pirq_to_irq(self, pirq: int) -> int | None:
        """The ISA IRQ PIRQ `pirq` (0-3) drives, or None (routing disabled or reserved value)."""
        if not 0 <= pirq < PIRQ_COUNT:
            raise ValueError(f"PIRQ {pirq} is outside 0-3 (PIRQA-PIRQD)")
        route = self._config[PIRQRC + pirq]
        irq = route & PIRQ_IRQ_MASK
        if route & PIRQ_ROUTING_DISABLED or irq not in ROUTABLE_IRQS:
            return None
        return irq

    def route_intx(self, device: int, pin: int) -> int | None:
        """The ISA IRQ that INTx `pin` (1-4) of bus-0 device `device` reaches now, if any."""
        return self.pirq_to_irq(pirq_for(device, pin))

    def _after_write(self, offset: int, size: int) -> None:
        super()._after_write(offset, size)
        if config_overlaps(offset, size, PIRQRC, PIRQ_COUNT) and self.on_pirq_change is not None:
            self.on_pirq_change()


class Piix3Ide(PciFunction):
    """PIIX3 function 1 at 01.1: the IDE controller's configuration space only.

    Class 0x010180: both channels in legacy (compatibility) mode at 0x1F0/0x3F6 (IRQ 14) and
    0x170/0x376 (IRQ 15), not switchable (prog-if bits 0 and 2 clear, 1 and 3 clear); bit 7
    says bus mastering exists. BAR4 (BMIBA, 0x20) is the 16-byte I/O window of the bus-master
    registers. A channel's legacy ports decode only while the command register's I/O enable
    (PCICMD.IOSE) and that channel's IDETIM.IDE bit are both set (82371SB): the IDE model
    asks `legacy_decode_enabled`, and `on_decode_change(channel, enabled)` reports changes.
    Bus mastering: `bus_master_enabled`, with changes through `on_command_change`.

    `decode_at_reset=True` gives IDETIM the value a BIOS leaves (decode on for both channels,
    0x8000) for a kernel booted without firmware; the datasheet reset value is 0.
    """

    def __init__(self, *, on_bar_change: BarChangeCallback | None = None,
                 on_decode_change: Callable[[int, bool], None] | None = None,
                 decode_at_reset: bool = False) -> None:
        super().__init__(INTEL_VENDOR_ID, PIIX3_IDE_DEVICE_ID, CLASS_IDE,
                         revision=PIIX3_REVISION, command_writable=PIIX3_IDE_COMMAND_WRITABLE,
                         status=PIIX3_IDE_STATUS, on_bar_change=on_bar_change)
        self.on_decode_change = on_decode_change
        self.define_register(LATENCY_TIMER, 1, 0, writable=IDE_MLT_WRITABLE)
        self.add_bar(BMIBA_BAR, BMIBA_SIZE, "io")
        idetim = IDETIM_DECODE_ENABLE if decode_at_reset else DEFAULT_IDETIM
        for channel in range(CHANNEL_COUNT):
            self.define_register(IDETIM + 2 * channel, 2, idetim, writable=IDETIM_WRITABLE)
        self.define_register(SIDETIM, 1, 0, writable=0xFF)
        self._decode_seen = [self.legacy_decode_enabled(ch) for ch in range(CHANNEL_COUNT)]

    @property
    def bus_master_base(self) -> int | None:
        """The I/O port of the bus-master registers while decoded (BAR4 and I/O enable)."""
        return self.bar_address(BMIBA_BAR)

    def idetim(self, channel: int) -> int:
        self._check_channel(channel)
        return self._raw(IDETIM + 2 * channel, 2)

    def legacy_decode_enabled(self, channel: int) -> bool:
        """Whether channel 0 (primary) or 1 (secondary) answers at its legacy ports."""
        return bool(self.command & COMMAND_IO and self.idetim(channel) & IDETIM_DECODE_ENABLE)

    @staticmethod
    def _check_channel(channel: int) -> None:
        if channel not in (0, 1):
            raise ValueError(f"IDE channel {channel} is not 0 (primary) or 1 (secondary)")

    def _after_write(self, offset: int, size: int) -> None:
        super()._after_write(offset, size)
        for channel in range(CHANNEL_COUNT):
            enabled = self.legacy_decode_enabled(channel)
            if enabled != self._decode_seen[channel]:
                self._decode_seen[channel] = enabled
                if self.on_decode_change is not None:
                    self.on_decode_change(channel, enabled)


class PciIntxLine:
    """One function's INTx pin as the router sees it: an IrqLine to hand to `connect_intx`.

    Two functions of one device on the same pin share a PIRQ but need separate lines; the
    router ORs them.
    """

    def __init__(self, router: PciInterruptRouter, device: int, pin: int) -> None:
        pirq_for(device, pin)  # validates
        self.router = router
        self.device = device
        self.pin = pin
        self.level = False

    def set_level(self, level: bool) -> None:
        self.level = bool(level)
        self.router.line_changed(self)


class PciInterruptRouter:
    """PCI INTx -> PIIX3 PIRQ -> ISA IRQ, with level-triggered sharing.

    `isa_line(irq)` returns the IrqLine of ISA IRQ `irq` (the machine's irqchip `line`); it
    is asked once per IRQ the guest routes to. An ISA IRQ's level is the OR of every asserted
    INTx whose PIRQ is routed to it, so shared lines work as PCI intends (level, wired-OR);
    the router drives a line only when that OR changes. When the guest rewrites a PIRQ route
    register while a device holds its line, the level leaves the old IRQ (lowered, unless
    another source still holds it) and appears on the new one: lowers first, then raises.

    The router claims `isa.on_pirq_change`. Sharing an IRQ with an ISA device (COM1 on 4) is
    a guest misconfiguration: both drive the same input and the last writer wins.
    The PIC must see these IRQs as level-triggered (ELCR, programmed by firmware or guest).
    """

    def __init__(self, isa: Piix3IsaBridge, isa_line: Callable[[int], IrqLine]) -> None:
        self._isa = isa
        self._isa_line = isa_line
        self._lines: dict[int, IrqLine] = {}
        self._driven: dict[int, bool] = {}
        self._asserted: dict[int, PciIntxLine] = {}  # by id(), in assertion order
        isa.on_pirq_change = self.update

    def line(self, device: int, pin: int) -> PciIntxLine:
        return PciIntxLine(self, device, pin)

    def irq_level(self, irq: int) -> bool:
        """What the router drives onto ISA IRQ `irq` now."""
        return self._driven.get(irq, False)

    def line_changed(self, line: PciIntxLine) -> None:
        if line.level:
            self._asserted[id(line)] = line
        else:
            self._asserted.pop(id(line), None)
        self.update()

    def update(self) -> None:
        """Recompute every ISA IRQ's level from the asserted lines and the PIRQ registers."""
        wanted: dict[int, bool] = {}
        for line in self._asserted.values():
            irq = self._isa.route_intx(line.device, line.pin)
            if irq is not None:
                wanted[irq] = True
        for irq in sorted(self._driven):
            if self._driven[irq] and not wanted.get(irq, False):
                self._drive(irq, False)
        for irq in sorted(wanted):
            if not self._driven.get(irq, False):
                self._drive(irq, True)

    def _drive(self, irq: int, level: bool) -> None:
        line = self._lines.get(irq)
        if line is None:
            line = self._lines[irq] = self._isa_line(irq)
        self._driven[irq] = level
        line.set_level(level)


@dataclass
class PcChipset:
    host: PciHost
    host_bridge: I440fxHostBridge
    isa_bridge: Piix3IsaBridge
    ide: Piix3Ide
    router: PciInterruptRouter


def build_pc_chipset(isa_line: Callable[[int], IrqLine],
                     on_reset: Callable[[bool], None] | None = None,
                     ide_decode_at_reset: bool = False) -> PcChipset:
    """The i440FX/PIIX3 trio attached at 00.0, 01.0 and 01.1, with its interrupt router."""
    host = PciHost(on_reset)
    host_bridge = I440fxHostBridge()
    isa_bridge = Piix3IsaBridge()
    ide = Piix3Ide(decode_at_reset=ide_decode_at_reset)
    host.attach(I440FX_DEVICE, 0, host_bridge)
    host.attach(PIIX3_DEVICE, PIIX3_ISA_FUNCTION, isa_bridge)
    host.attach(PIIX3_DEVICE, PIIX3_IDE_FUNCTION, ide)
    router = PciInterruptRouter(isa_bridge, isa_line)
    return PcChipset(host, host_bridge, isa_bridge, ide, router)
