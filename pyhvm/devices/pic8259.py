"""The PC's two Intel 8259A interrupt controllers, cascaded, with the PIIX ELCR beside them.

`DualPic` is the user-space irqchip: devices drive its sixteen inputs through `line(irq)`,
its master's INT pin leaves through the `intr` line handed in, and the runtime performs the
INTA cycle by calling `acknowledge()` when the vCPU can take an interrupt; it returns the
vector to inject. The guest programs the chips through ports 0x20/0x21 (master), 0xA0/0xA1
(slave) and 0x4D0/0x4D1 (ELCR), each mapped as a two-port device.

What the guest can make it do: pick any vector base, mask and unmask, rotate priorities,
select edge or level triggering, nest interrupts with the special mask or special fully
nested modes, poll, and see spurious IRQ 7 / 15 when a request goes away before INTA. What it
cannot: make a vector outside `base .. base + 7` of one chip, grow any state, or raise INTR
while every request is masked or blocked by one of higher priority in service.

Not emulated: 8080/8085 mode (ICW4.uPM clear): INTA always answers with an 8086 vector, and
ICW1's A7-A5 and ADI bits are stored only; buffered mode (ICW4.BUF, M/S) and the SP/EN pin;
the cascade bus beyond the PC wiring: the slave always sits on master IR2 and answers its
INTA, whatever ICW3 and ICW1.SNGL say (both are stored only). Timing is not modelled.

One deliberate difference from the chip: an edge-triggered request stays latched in IRR if
its line drops before INTA (the chip would answer with a default IR7), so a device may pulse
its line. A request disappears before INTA when a level-triggered line drops, or when the
guest masks it; then INTA yields the spurious vector of that chip (8259A datasheet,
"Interrupt sequence", note on default IR7).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from pyhvm.devices.base import IrqLine

# Register selection by A0 (8259A datasheet, Table 1 "8259A basic operation").
COMMAND_OFFSET = 0  # A0=0: ICW1, OCW2, OCW3 written; IRR, ISR or the poll byte read
DATA_OFFSET = 1  # A0=1: ICW2-ICW4 and OCW1 written; IMR read
PORT_COUNT = 2
UNMAPPED_BYTE = 0xFF  # a byte lane past the chip floats high on ISA

# PC wiring (IBM PC/AT technical reference; Intel PIIX/PIIX3 datasheet for the ELCR).
MASTER_BASE = 0x20
SLAVE_BASE = 0xA0
ELCR_BASE = 0x4D0  # 0x4D0 holds IRQ0-7, 0x4D1 IRQ8-15; a set bit means level-triggered
CASCADE_IR = 2  # the slave's INT pin drives master IR2
IRQ_COUNT = 16
SPURIOUS_IR = 7  # the level a chip answers with when its request vanished before INTA
ELCR_MASTER_WRITABLE = 0xF8  # IRQ0 (timer), IRQ1 (keyboard), IRQ2 (cascade) are edge only
ELCR_SLAVE_WRITABLE = 0xDE  # IRQ8 (RTC) and IRQ13 (FPU error) are edge only

# ICW1, written to the command port with D4 set ("Initialization command words").
ICW1_IC4 = 0x01  # ICW4 follows
ICW1_SNGL = 0x02  # single chip: no ICW3
ICW1_ADI = 0x04  # call address interval 4 (8080 mode only): stored
ICW1_LTIM = 0x08  # all inputs level-triggered
ICW1_INIT = 0x10  # marks ICW1 on the command port

# ICW2: the vector base; in 8086 mode T7-T3, the chip supplies the low three bits.
VECTOR_BASE_MASK = 0xF8

# ICW4.
ICW4_UPM = 0x01  # 8086/8088 mode (clear: 8080/8085, not emulated)
ICW4_AEOI = 0x02  # automatic EOI at the end of INTA
ICW4_MS = 0x04  # buffered mode master/slave select: stored only
ICW4_BUF = 0x08  # buffered mode: stored only
ICW4_SFNM = 0x10  # special fully nested mode
ICW4_MASK = 0x1F  # D7-D5 are zero

# Init sequence position: which ICW the next data port write is (0: none, OCW1 then).
INIT_DONE = 0
INIT_STEPS = (INIT_DONE, 2, 3, 4)

# OCW2 ("Operation command words"): R, SL, EOI in D7-D5 and a level in D2-D0.
OCW3_SELECT = 0x08  # D3 tells OCW3 (set) from OCW2 (clear) on the command port
OCW2_LEVEL_MASK = 0x07
OCW2_COMMAND_MASK = 0xE0
OCW2_ROTATE_AEOI_CLEAR = 0x00  # rotate in automatic EOI mode: clear
OCW2_NONSPECIFIC_EOI = 0x20
OCW2_NOP = 0x40
OCW2_SPECIFIC_EOI = 0x60
OCW2_ROTATE_AEOI_SET = 0x80  # rotate in automatic EOI mode: set
OCW2_ROTATE_NONSPECIFIC_EOI = 0xA0
OCW2_SET_PRIORITY = 0xC0  # the level becomes the lowest priority
OCW2_ROTATE_SPECIFIC_EOI = 0xE0

# OCW3.
OCW3_RIS = 0x01  # read ISR (clear: IRR) when RR is set
OCW3_RR = 0x02  # act on RIS
OCW3_POLL = 0x04  # the next read is a poll: an INTA that returns the level
OCW3_SMM = 0x20  # special mask mode, when ESMM is set
OCW3_ESMM = 0x40  # act on SMM

POLL_INTERRUPT = 0x80  # poll byte D7: a request was granted; D2-D0 give its level

# Reset values. The chip's power-on state is undefined; a PC BIOS programs it at once.
# We start initialised for 8086 mode with every input masked, so nothing fires until the
# guest has chosen vectors (an unmasked IRQ0 at base 0 would land on exception vectors).
DEFAULT_IRR = 0x00
DEFAULT_ISR = 0x00
DEFAULT_IMR = 0xFF
DEFAULT_ELCR = 0x00  # PIIX reset: every IRQ edge-triggered
DEFAULT_VECTOR_BASE = 0x00
DEFAULT_ICW1 = ICW1_INIT | ICW1_IC4  # cascaded, edge-triggered, ICW4 present
DEFAULT_ICW3 = 0x00
DEFAULT_ICW4 = ICW4_UPM
DEFAULT_LOWEST_PRIORITY = 7  # IR0 highest, IR7 lowest (ICW1 restores this)


@dataclass(frozen=True)
class PicState:
    """One chip; the defaults are the power-on state."""

    irr: int = DEFAULT_IRR
    isr: int = DEFAULT_ISR
    imr: int = DEFAULT_IMR
    lines: int = 0  # the IR input pin levels, as the devices last drove them
    elcr: int = DEFAULT_ELCR
    vector_base: int = DEFAULT_VECTOR_BASE
    icw1: int = DEFAULT_ICW1
    icw3: int = DEFAULT_ICW3
    icw4: int = DEFAULT_ICW4
    init_step: int = INIT_DONE
    lowest_priority: int = DEFAULT_LOWEST_PRIORITY
    special_mask: bool = False
    read_isr: bool = False
    poll: bool = False
    rotate_on_aeoi: bool = False

    def validate(self) -> None:
        """Refuse a state the chip could never be in (a corrupt or hostile snapshot)."""
        for name in ("irr", "isr", "imr", "lines", "elcr", "vector_base", "icw1", "icw3"):
            _check_range(name, getattr(self, name), 0xFF)
        _check_range("icw4", self.icw4, ICW4_MASK)
        _check_range("lowest_priority", self.lowest_priority, 7)
        for name in ("special_mask", "read_isr", "poll", "rotate_on_aeoi"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool")
        if self.vector_base & ~VECTOR_BASE_MASK:
            raise ValueError(f"vector_base {self.vector_base:#x} is not a multiple of 8")
        if not self.icw1 & ICW1_INIT:
            raise ValueError(f"icw1 {self.icw1:#x} lacks the D4 marker")
        if self.init_step not in INIT_STEPS:
            raise ValueError(f"init_step {self.init_step!r} is not one of {INIT_STEPS}")
        level = _level_mask(self.icw1, self.elcr)
        if (self.irr ^ self.lines) & level:
            raise ValueError("a level-triggered IRR bit differs from its input line")


@dataclass(frozen=True)
class DualPicState:
    master: PicState = PicState()
    slave: PicState = PicState()


def _check_range(name: str, value: int, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise ValueError(f"{name} = {value!r} is outside 0..{maximum:#x}")


def _check_size(size: int) -> None:
    if size not in (1, 2, 4, 8):
        raise ValueError(f"access size must be 1, 2, 4 or 8 bytes, got {size}")


def _level_mask(icw1: int, elcr: int) -> int:
    """The inputs that are level-triggered: all of them under LTIM, else the ELCR's."""
    return 0xFF if icw1 & ICW1_LTIM else elcr


def _read_lanes(read_byte: Callable[[int], int], offset: int, size: int) -> int:
    """A wider access is successive byte cycles on consecutive ports, as ISA does it."""
    _check_size(size)
    value = 0
    for lane in range(size):
        value |= read_byte(offset + lane) << (8 * lane)
    return value


def _write_lanes(write_byte: Callable[[int, int], None], offset: int, size: int,
                 value: int) -> None:
    _check_size(size)
    for lane in range(size):
        write_byte(offset + lane, (value >> (8 * lane)) & 0xFF)


class Pic8259:
    """One 8259A; `read`/`write` take offset 0 (command) and 1 (data) from its base port.

    `output` is the chip's INT pin. `cascade_mask` names the IR inputs that carry a slave
    (board wiring, used by special fully nested mode and the counters); `elcr_writable` the
    ELCR bits the chipset lets the guest set.
    """

    def __init__(self, output: IrqLine, *, cascade_mask: int = 0,
                 elcr_writable: int = 0xFF) -> None:
        self._output = output
        self._cascade_mask = cascade_mask
        self._elcr_writable = elcr_writable
        self._int_level = False
        self.acknowledged = [0] * 8  # INTA or poll grants per level, cascade inputs excluded
        self.spurious = 0  # INTA cycles answered with the default IR7
        self._load(PicState())  # the registers: one `_<name>` attribute per PicState field

    # -- device side -------------------------------------------------------------------------

    def set_input(self, ir: int, level: bool) -> None:
        """Drive IR pin `ir`: an edge input latches on a rising edge, a level input follows."""
        if not isinstance(ir, int) or not 0 <= ir < 8:
            raise ValueError(f"IR input {ir!r} is outside 0..7")
        bit = 1 << ir
        if level:
            if not self._lines & bit or self._level_mask() & bit:
                self._irr |= bit
            self._lines |= bit
        else:
            self._lines &= ~bit
            if self._level_mask() & bit:
                self._irr &= ~bit
        self._update()

    @property
    def int_level(self) -> bool:
        return self._int_level

    @property
    def elcr(self) -> int:
        return self._elcr

    def set_elcr(self, value: int) -> None:
        """The chipset's edge/level register for this chip's inputs (read-only bits stay 0)."""
        self._elcr = value & self._elcr_writable
        self._sync_level_requests()
        self._update()

    def vector(self, ir: int) -> int:
        return self._vector_base | (ir & 7)

    def acknowledge(self) -> int | None:
        """An INTA cycle on this chip alone: the granted level, or None (default IR7)."""
        ir = self._inta()
        if ir is None:
            self.spurious += 1
        self._update()
        return ir

    def reset(self) -> None:
        """Back to the power-on state; the input pins keep the levels the devices drive."""
        self._load(PicState(lines=self._lines))
        self._update()

    # -- guest side --------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        return _read_lanes(self._read_byte, offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        _write_lanes(self._write_byte, offset, size, value)

    def _read_byte(self, reg: int) -> int:
        if not 0 <= reg < PORT_COUNT:
            return UNMAPPED_BYTE
        if self._poll:
            # The chip treats the next RD pulse, whatever A0, as the poll's INTA.
            self._poll = False
            ir = self._inta()
            self._update()
            return 0 if ir is None else POLL_INTERRUPT | ir
        if reg == DATA_OFFSET:
            return self._imr
        return self._isr if self._read_isr else self._irr

    def _write_byte(self, reg: int, value: int) -> None:
        if reg == COMMAND_OFFSET:
            if value & ICW1_INIT:
                self._write_icw1(value)
            elif value & OCW3_SELECT:
                self._write_ocw3(value)
            else:
                self._write_ocw2(value)
        elif reg == DATA_OFFSET:
            self._write_data(value)
        else:
            return
        self._update()

    def _write_icw1(self, value: int) -> None:
        """The initialisation sequence's resets ("Initialization command words", a-f)."""
        self._icw1 = value
        self._init_step = 2
        self._irr = 0  # the edge sense latches reset: a held line must fall and rise again
        self._sync_level_requests()
        self._isr = 0
        self._imr = 0
        self._lowest_priority = DEFAULT_LOWEST_PRIORITY
        self._special_mask = False
        self._read_isr = False
        self._poll = False
        self._rotate_on_aeoi = False
        if not value & ICW1_IC4:
            self._icw4 = 0  # with no ICW4 its functions are all cleared

    def _write_data(self, value: int) -> None:
        step = self._init_step
        if step == 2:
            self._vector_base = value & VECTOR_BASE_MASK
            self._init_step = 3 if not self._icw1 & ICW1_SNGL else self._after_icw3()
        elif step == 3:
            self._icw3 = value
            self._init_step = self._after_icw3()
        elif step == 4:
            self._icw4 = value & ICW4_MASK
            self._init_step = INIT_DONE
        else:
            self._imr = value  # OCW1

    def _after_icw3(self) -> int:
        return 4 if self._icw1 & ICW1_IC4 else INIT_DONE

    def _write_ocw2(self, value: int) -> None:
        command = value & OCW2_COMMAND_MASK
        level = value & OCW2_LEVEL_MASK
        if command in (OCW2_NONSPECIFIC_EOI, OCW2_ROTATE_NONSPECIFIC_EOI):
            # In special mask mode an IS bit masked by the IMR is not reset (datasheet note).
            eligible = self._isr & ~self._imr if self._special_mask else self._isr
            ir = self._highest(eligible)
            if ir is None:
                return
            self._isr &= ~(1 << ir)
            if command == OCW2_ROTATE_NONSPECIFIC_EOI:
                self._lowest_priority = ir
        elif command == OCW2_SPECIFIC_EOI:
            self._isr &= ~(1 << level)
        elif command == OCW2_ROTATE_SPECIFIC_EOI:
            self._isr &= ~(1 << level)
            self._lowest_priority = level
        elif command == OCW2_SET_PRIORITY:
            self._lowest_priority = level
        elif command == OCW2_ROTATE_AEOI_SET:
            self._rotate_on_aeoi = True
        elif command == OCW2_ROTATE_AEOI_CLEAR:
            self._rotate_on_aeoi = False
        # OCW2_NOP does nothing.

    def _write_ocw3(self, value: int) -> None:
        if value & OCW3_ESMM:
            self._special_mask = bool(value & OCW3_SMM)
        if value & OCW3_RR:
            self._read_isr = bool(value & OCW3_RIS)
        if value & OCW3_POLL:
            self._poll = True  # overrides RR for the next read

    # -- priority resolution -----------------------------------------------------------------

    def _rank(self, ir: int) -> int:
        """0 for the highest-priority level, 7 for the lowest."""
        return (ir - self._lowest_priority - 1) & 7

    def _highest(self, bits: int) -> int | None:
        for rank in range(8):
            ir = (self._lowest_priority + 1 + rank) & 7
            if bits >> ir & 1:
                return ir
        return None

    def _resolve(self) -> int | None:
        """The level INTA would grant now, or None ("Priority resolver", fully nested mode)."""
        requests = self._irr & ~self._imr
        candidate = self._highest(requests)
        if candidate is None:
            return None
        # Special mask mode: a masked level in service no longer blocks the levels below it.
        blocking = self._isr & ~self._imr if self._special_mask else self._isr
        in_service = self._highest(blocking)
        if in_service is None or self._rank(candidate) < self._rank(in_service):
            return candidate
        # Special fully nested mode: a slave's input in service does not block itself, so a
        # higher-priority request inside that slave reaches the CPU.
        if (candidate == in_service and self._icw4 & ICW4_SFNM
                and self._cascade_mask >> candidate & 1):
            return candidate
        return None

    def _inta(self) -> int | None:
        """Grant the winning request: IRR to ISR (or straight through in auto-EOI mode)."""
        ir = self._resolve()
        if ir is None:
            return None
        bit = 1 << ir
        if not self._level_mask() & bit:
            self._irr &= ~bit  # the edge latch is consumed; a level input keeps requesting
        if self._icw4 & ICW4_AEOI:
            if self._rotate_on_aeoi:
                self._lowest_priority = ir
        else:
            self._isr |= bit
        if not self._cascade_mask & bit:
            self.acknowledged[ir] += 1
        return ir

    def _relatch(self, ir: int) -> None:
        """Latch IR again if its line is still high (a request left pending through INTA)."""
        self._irr |= self._lines & (1 << ir)

    def _level_mask(self) -> int:
        return _level_mask(self._icw1, self._elcr)

    def _sync_level_requests(self) -> None:
        mask = self._level_mask()
        self._irr = (self._irr & ~mask) | (self._lines & mask)

    def _update(self) -> None:
        """Derive INT from the registers; touch the line only when the level changes."""
        level = self._resolve() is not None
        if level != self._int_level:
            self._int_level = level
            self._output.set_level(level)

    # -- snapshots ---------------------------------------------------------------------------

    def state(self) -> PicState:
        return PicState(**{name: getattr(self, "_" + name) for name in _STATE_FIELDS})

    def restore(self, state: PicState) -> None:
        """Take a snapshot's registers after checking bounds; re-derives INT."""
        state.validate()
        if state.elcr & ~self._elcr_writable:
            raise ValueError(f"elcr {state.elcr:#x} sets bits outside "
                             f"{self._elcr_writable:#x}")
        self._load(state)
        self._update()

    def _load(self, state: PicState) -> None:
        for name in _STATE_FIELDS:
            setattr(self, "_" + name, getattr(state, name))


# PicState fields, each held as the chip's `_<name>` attribute.
_STATE_FIELDS = tuple(f.name for f in fields(PicState))


class _CascadeLine:
    """The slave's INT pin, wired to master IR2."""

    def __init__(self, master: Pic8259) -> None:
        self._master = master

    def set_level(self, level: bool) -> None:
        self._master.set_input(CASCADE_IR, level)


class _IrqInput:
    """One of the sixteen PC IRQ lines, handed to a device as its IrqLine."""

    def __init__(self, pic: DualPic, irq: int) -> None:
        self._pic = pic
        self._irq = irq

    def set_level(self, level: bool) -> None:
        self._pic.set_irq(self._irq, level)


class _ElcrPorts:
    """Ports 0x4D0 (IRQ0-7) and 0x4D1 (IRQ8-15) as one two-port device."""

    def __init__(self, master: Pic8259, slave: Pic8259) -> None:
        self._chips = (master, slave)

    def read(self, offset: int, size: int) -> int:
        return _read_lanes(self._read_byte, offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        _write_lanes(self._write_byte, offset, size, value)

    def _read_byte(self, reg: int) -> int:
        return self._chips[reg].elcr if 0 <= reg < PORT_COUNT else UNMAPPED_BYTE

    def _write_byte(self, reg: int, value: int) -> None:
        if 0 <= reg < PORT_COUNT:
            self._chips[reg].set_elcr(value)


def _check_irq(irq: int) -> None:
    if not isinstance(irq, int) or not 0 <= irq < IRQ_COUNT:
        raise ValueError(f"IRQ {irq!r} is outside 0..15")
    if irq == CASCADE_IR:
        raise ValueError("IRQ 2 is the cascade input; on a PC the ISA IRQ2 pin is IRQ 9")


class DualPic:
    """Master and slave 8259A as a PC wires them; `intr` is the master's INT to the CPU.

    Map `master_port` at 0x20, `slave_port` at 0xA0 and `elcr_port` at 0x4D0, two ports each.
    """

    def __init__(self, intr: IrqLine) -> None:
        self.master = Pic8259(intr, cascade_mask=1 << CASCADE_IR,
                              elcr_writable=ELCR_MASTER_WRITABLE)
        self.slave = Pic8259(_CascadeLine(self.master), elcr_writable=ELCR_SLAVE_WRITABLE)
        self.master_port = self.master
        self.slave_port = self.slave
        self.elcr_port = _ElcrPorts(self.master, self.slave)

    def set_irq(self, irq: int, level: bool) -> None:
        """Drive IRQ `irq` (0-15 but 2) high or low."""
        _check_irq(irq)
        if irq < 8:
            self.master.set_input(irq, bool(level))
        else:
            self.slave.set_input(irq - 8, bool(level))

    def line(self, irq: int) -> IrqLine:
        """An IrqLine for the device wired to `irq`; refused at wiring time for 2 or >15."""
        _check_irq(irq)
        return _IrqInput(self, irq)

    def has_interrupt(self) -> bool:
        """Whether INTR is asserted: an INTA now would grant a request."""
        return self.master._resolve() is not None

    def acknowledge(self) -> int:
        """The INTA cycle: the vector to inject, spurious IRQ 7 or 15 if the request vanished.

        For a slave request the master puts IR2 in service and the slave supplies the vector;
        if the slave has nothing, it answers base + 7 with no ISR bit while master IR2 stays
        in service, so the guest's spurious-15 path sends an EOI to the master only.
        """
        master, slave = self.master, self.slave
        ir = master._inta()
        if ir is None:
            master.spurious += 1
            master._update()
            return master.vector(SPURIOUS_IR)
        if ir != CASCADE_IR:
            master._update()
            return master.vector(ir)
        slave_ir = slave.acknowledge()  # a falling slave INT reaches master IR2 from here
        if slave.int_level:
            # The slave still requests after INTA (auto-EOI, special mask): master IR2 is
            # edge-triggered on a PC, so latch it again or that request would be lost.
            master._relatch(CASCADE_IR)
        master._update()
        return slave.vector(SPURIOUS_IR if slave_ir is None else slave_ir)

    @property
    def acknowledged(self) -> list[int]:
        """Grants per IRQ 0-15 (INTA and poll); IRQ 2 stays 0, slave grants count at 8-15."""
        return self.master.acknowledged + self.slave.acknowledged

    @property
    def spurious(self) -> int:
        """INTA cycles answered with spurious IRQ 7 (master) or 15 (slave)."""
        return self.master.spurious + self.slave.spurious

    def reset(self) -> None:
        self.slave.reset()
        self.master.reset()

    def state(self) -> DualPicState:
        return DualPicState(master=self.master.state(), slave=self.slave.state())

    @classmethod
    def from_state(cls, state: DualPicState, intr: IrqLine) -> DualPic:
        """Rebuild the pair after checking bounds; raises INTR if a request is pending."""
        pic = cls(intr)
        pic.slave.restore(state.slave)
        if bool(state.master.lines >> CASCADE_IR & 1) != pic.slave.int_level:
            raise ValueError("master IR2 level disagrees with the slave's INT output")
        pic.master.restore(state.master)
        return pic
