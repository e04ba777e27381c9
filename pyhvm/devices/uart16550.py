"""A 16550A UART (National PC16550D), as the PC's COM ports carry it.

The virtual line is infinitely fast: a THR write leaves through `output` at once, so the
transmitter is always empty (THRE and TEMT stay set, the transmit FIFO never holds a byte) and
the THRE interrupt is re-raised right after each write. Bytes from the host arrive through
`receive()`, which accepts only what fits, so the host keeps the rest and no input is lost.

What the guest can make it do: send bytes to `output`, fill its own receive FIFO in loopback
(where an overrun loses the byte, as on the chip), toggle its interrupt line. What it cannot:
block the caller, grow any buffer past 16 bytes, or raise the line while MCR.OUT2 is clear.

Not emulated: baud timing (the divisor is stored and only feeds `char_timeout_ns()`), parity
and framing errors (a virtual line has none, so LSR.PE/FE never set), break transmission
(LCR bit 6 is stored only), DMA mode signalling (FCR bit 3 is stored only), and modem inputs
other than "no modem attached, lines ready" (CTS, DSR, DCD asserted, RI clear).

Time: the chip raises a character-timeout indication when data sits in the receive FIFO below
the trigger level for four character times. A sans-I/O model has no clock, so the runtime
calls `rx_timeout()` every `char_timeout_ns()` while `rx_count` is non-zero; see there.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields

from pyhvm.devices.base import ByteRegisters, IrqLine, check_access_size

# Register offsets from the base port (PC16550D Table II, "Summary of Registers").
RBR_OFFSET = 0  # receiver buffer, read with DLAB=0
THR_OFFSET = 0  # transmitter holding, write with DLAB=0
DLL_OFFSET = 0  # divisor latch low byte, DLAB=1
IER_OFFSET = 1  # interrupt enable, DLAB=0
DLM_OFFSET = 1  # divisor latch high byte, DLAB=1
IIR_OFFSET = 2  # interrupt identification, read
FCR_OFFSET = 2  # FIFO control, write
LCR_OFFSET = 3  # line control
MCR_OFFSET = 4  # modem control
LSR_OFFSET = 5  # line status
MSR_OFFSET = 6  # modem status
SCR_OFFSET = 7  # scratch
REGISTER_COUNT = 8  # the chip decodes three address lines
UNMAPPED_BYTE = 0xFF  # a byte lane past the chip floats high on ISA

# IER bits (section 8.7).
IER_RDA = 0x01  # ERBFI: received data available and character timeout
IER_THRE = 0x02  # ETBEI: transmitter holding register empty
IER_RLS = 0x04  # ELSI: receiver line status (OE, PE, FE, BI)
IER_MS = 0x08  # EDSSI: modem status deltas
IER_MASK = 0x0F  # bits 4-7 are always zero on the 16550

# IIR values (section 8.6, Table V), highest priority first.
IIR_NONE = 0x01  # bit 0 is 1 when nothing is pending
IIR_RLS = 0x06  # receiver line status; cleared by reading LSR
IIR_RDA = 0x04  # received data at or above trigger; cleared below it
IIR_CTI = 0x0C  # character timeout; cleared by reading RBR
IIR_THRE = 0x02  # THR empty; cleared by reading IIR (as source) or writing THR
IIR_MS = 0x00  # modem status; cleared by reading MSR
IIR_FIFO_ENABLED = 0xC0  # bits 7:6 read 11 while FCR bit 0 is set

# FCR bits (section 8.5).
FCR_ENABLE = 0x01  # enable both FIFOs; the other bits are programmed only with this set
FCR_CLEAR_RX = 0x02  # self-clearing: empty the receive FIFO
FCR_CLEAR_TX = 0x04  # self-clearing: empty the transmit FIFO
FCR_DMA_MODE = 0x08  # RXRDY/TXRDY pin mode; no pins here, stored only
FCR_TRIGGER_SHIFT = 6  # bits 7:6 select the receive trigger level
FCR_STORED_MASK = 0xC9  # enable, DMA mode and trigger persist; clear bits self-clear
RX_TRIGGER_LEVELS = (1, 4, 8, 14)  # bytes, indexed by FCR bits 7:6

# LCR bits (section 8.1).
LCR_WORD_LENGTH_MASK = 0x03  # 5 + value data bits
LCR_STOP_BITS = 0x04  # 1.5 stop bits for 5-bit words, else 2
LCR_PARITY_ENABLE = 0x08
LCR_BREAK = 0x40  # force spacing on the line; stored only
LCR_DLAB = 0x80  # divisor latch access: offsets 0 and 1 become DLL/DLM

# MCR bits (section 8.8).
MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT1 = 0x04
MCR_OUT2 = 0x08  # on a PC this pin gates the UART's INTR onto the ISA IRQ line
MCR_LOOP = 0x10  # local loopback; forces the modem output pins (OUT2 too) inactive
MCR_MASK = 0x1F  # bits 5-7 are always zero on the PC16550D

# LSR bits (section 8.4).
LSR_DR = 0x01  # data ready: at least one byte to read
LSR_OE = 0x02  # overrun: a byte arrived with no room and was lost
LSR_PE = 0x04  # parity error (never set: the virtual line has no parity)
LSR_FE = 0x08  # framing error (never set: the virtual line has no framing)
LSR_BI = 0x10  # break interrupt: the line was held spacing for a character time
LSR_THRE = 0x20  # THR (or transmit FIFO) empty
LSR_TEMT = 0x40  # THR and transmit shift register both empty
LSR_FIFO_ERROR = 0x80  # FIFO mode: some byte in the receive FIFO has PE/FE/BI
LSR_ERROR_BITS = LSR_OE | LSR_PE | LSR_FE | LSR_BI  # cleared by reading LSR
LSR_CHAR_ERRORS = LSR_PE | LSR_FE | LSR_BI  # errors that travel with a received byte

# MSR bits (section 8.9).
MSR_DCTS = 0x01  # CTS changed since MSR was last read
MSR_DDSR = 0x02  # DSR changed
MSR_TERI = 0x04  # RI went from asserted to clear (trailing edge only)
MSR_DDCD = 0x08  # DCD changed
MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80
MSR_DELTA_MASK = 0x0F
NO_MODEM_INPUTS = MSR_DCD | MSR_DSR | MSR_CTS  # what we report with no modem attached

FIFO_SIZE = 16  # PC16550D receive and transmit FIFOs
BAUD_BASE = 115_200  # 1.8432 MHz crystal / 16: the PC's rate for divisor 1

# Reset values (PC16550D Table IV, "UART Reset Configuration").
DEFAULT_IER = 0x00
DEFAULT_IIR = IIR_NONE
DEFAULT_FCR = 0x00
DEFAULT_LCR = 0x00
DEFAULT_MCR = 0x00  # OUT2 (and so the PC interrupt gate) is the guest's choice
DEFAULT_LSR = LSR_THRE | LSR_TEMT  # 0x60
DEFAULT_MSR = NO_MODEM_INPUTS  # 0xB0 outside loopback
DEFAULT_SCR = 0x00  # master reset leaves SCR alone; power-on value is ours to pick
DEFAULT_DIVISOR = 12  # 9600 baud; the latches are not reset by the chip, QEMU picks 12 too

# A receive FIFO entry is the byte plus its PC16550D error bits shifted above it.
_ERROR_SHIFT = 8


@dataclass(frozen=True)
class UartState:
    """Everything a snapshot needs; the defaults are the power-on state."""

    divisor: int = DEFAULT_DIVISOR
    ier: int = DEFAULT_IER
    fcr: int = DEFAULT_FCR  # stored bits only (FCR_STORED_MASK), 0 while FIFOs are off
    lcr: int = DEFAULT_LCR
    mcr: int = DEFAULT_MCR
    scr: int = DEFAULT_SCR
    lsr_errors: int = 0  # latched OE/PE/FE/BI, cleared by an LSR read
    msr_delta: int = 0  # latched MSR bits 3:0, cleared by an MSR read
    rx_fifo: bytes = b""  # oldest first
    rx_errors: bytes = b""  # PE/FE/BI bits for each byte of rx_fifo
    rbr_last: int = 0  # what RBR reads when the FIFO is empty
    thri_pending: bool = False
    timeout_pending: bool = False
    fifo_error: bool = False  # LSR bit 7
    rx_active: bool = False  # FIFO activity since the last rx_timeout() call

    def validate(self) -> None:
        """Refuse a state the chip could never be in (a corrupt or hostile snapshot)."""
        _check_range("divisor", self.divisor, 0xFFFF)
        for name in ("lcr", "scr", "rbr_last"):
            _check_range(name, getattr(self, name), 0xFF)
        _check_bits("ier", self.ier, IER_MASK)
        _check_bits("fcr", self.fcr, FCR_STORED_MASK)
        _check_bits("mcr", self.mcr, MCR_MASK)
        _check_bits("lsr_errors", self.lsr_errors, LSR_ERROR_BITS)
        _check_bits("msr_delta", self.msr_delta, MSR_DELTA_MASK)
        fifo_on = bool(self.fcr & FCR_ENABLE)
        if self.fcr and not fifo_on:
            raise ValueError(f"fcr {self.fcr:#x} has bits set while FIFOs are disabled")
        capacity = FIFO_SIZE if fifo_on else 1
        if len(self.rx_fifo) > capacity:
            raise ValueError(f"rx_fifo holds {len(self.rx_fifo)} bytes, capacity {capacity}")
        if len(self.rx_errors) != len(self.rx_fifo):
            raise ValueError("rx_errors must have one entry per rx_fifo byte")
        for error in self.rx_errors:
            _check_bits("rx_errors entry", error, LSR_CHAR_ERRORS)
        if (self.timeout_pending or self.fifo_error) and not fifo_on:
            raise ValueError("timeout_pending and fifo_error exist only in FIFO mode")
        if self.timeout_pending and not self.rx_fifo:
            raise ValueError("timeout_pending needs a byte in rx_fifo")


def _check_range(name: str, value: int, maximum: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= maximum:
        raise ValueError(f"{name} = {value!r} is outside 0..{maximum:#x}")


def _check_bits(name: str, value: int, allowed: int) -> None:
    _check_range(name, value, 0xFF)
    if value & ~allowed:
        raise ValueError(f"{name} = {value:#x} sets bits outside {allowed:#x}")



class Uart16550(ByteRegisters):
    """One PC16550D; `read`/`write` take offsets 0-7 from the mapped base port.

    The interrupt line follows the PC wiring: INTR reaches the PIC only through a gate opened
    by MCR.OUT2, and loopback forces OUT2 inactive (section 8.8), so the line is
    "an interrupt is pending and OUT2 is set and loopback is off".
    """

    def __init__(self, irq: IrqLine, output: Callable[[bytes], None]) -> None:
        self._irq = irq
        self._output = output
        self._irq_level = False
        self._divisor = DEFAULT_DIVISOR
        self._scr = DEFAULT_SCR
        self._rbr_last = 0
        self._rx_active = False
        self._rx: deque[int] = deque()  # byte | errors << _ERROR_SHIFT
        self._reset_registers()

    # -- host side ---------------------------------------------------------------------------

    @property
    def rx_count(self) -> int:
        """Bytes waiting in the receive FIFO (or holding register)."""
        return len(self._rx)

    @property
    def divisor(self) -> int:
        return self._divisor

    def can_receive(self) -> int:
        """How many bytes `receive()` would accept now; 0 in loopback (input disconnected)."""
        if self._mcr & MCR_LOOP:
            return 0
        return self._rx_capacity() - len(self._rx)

    def receive(self, data: bytes) -> int:
        """Take bytes from the host console; returns how many fit, the caller keeps the rest."""
        count = min(len(data), self.can_receive())
        for byte in data[:count]:
            self._push_rx(byte)
        if count:
            self._update_irq()
        return count

    def receive_break(self) -> bool:
        """The host line sent a break: one zero byte with LSR.BI (section 8.4); False if full."""
        if self.can_receive() == 0:
            return False
        self._push_rx(LSR_BI << _ERROR_SHIFT)
        self._update_irq()
        return True

    def rx_timeout(self) -> bool:
        """The runtime's timer tick for the character-timeout indication (IIR 0x0C).

        Call it every `char_timeout_ns()` while `rx_count` is non-zero. A tick that follows
        receive-FIFO activity (a byte in, a byte read) only restarts the wait; a tick after a
        quiet period raises the indication, so it appears one to two periods after the last
        activity, as the chip's four-character timer would. Returns whether it is pending.
        """
        if self._rx_active:
            self._rx_active = False
        elif self._fifo_enabled() and self._rx:
            self._timeout_pending = True
            self._update_irq()
        return self._timeout_pending

    def char_timeout_ns(self) -> int:
        """Four character times at the programmed divisor and word format, in nanoseconds."""
        data_bits = 5 + (self._lcr & LCR_WORD_LENGTH_MASK)
        half_bits = 2 * (1 + data_bits + (1 if self._lcr & LCR_PARITY_ENABLE else 0))
        if self._lcr & LCR_STOP_BITS:
            half_bits += 3 if data_bits == 5 else 4
        else:
            half_bits += 2
        divisor = self._divisor or 1  # divide-by-zero is unspecified; take the fastest rate
        return 4 * half_bits * divisor * 1_000_000_000 // (2 * BAUD_BASE)

    def reset(self) -> None:
        """Master reset (Table IV): divisor, SCR and RBR keep their contents."""
        self._reset_registers()
        self._update_irq()

    # -- guest side --------------------------------------------------------------------------

    def _read_byte(self, reg: int) -> int:
        dlab = self._lcr & LCR_DLAB
        if reg == RBR_OFFSET:
            return self._divisor & 0xFF if dlab else self._read_rbr()
        if reg == IER_OFFSET:
            return self._divisor >> 8 if dlab else self._ier
        if reg == IIR_OFFSET:
            return self._read_iir()
        if reg == LCR_OFFSET:
            return self._lcr
        if reg == MCR_OFFSET:
            return self._mcr
        if reg == LSR_OFFSET:
            return self._read_lsr()
        if reg == MSR_OFFSET:
            return self._read_msr()
        if reg == SCR_OFFSET:
            return self._scr
        return UNMAPPED_BYTE

    def _write_byte(self, reg: int, value: int) -> None:
        dlab = self._lcr & LCR_DLAB
        if reg == THR_OFFSET:
            if dlab:
                self._divisor = (self._divisor & 0xFF00) | value
            else:
                self._write_thr(value)
        elif reg == IER_OFFSET:
            if dlab:
                self._divisor = (value << 8) | (self._divisor & 0xFF)
            else:
                self._write_ier(value)
        elif reg == FCR_OFFSET:
            self._write_fcr(value)
        elif reg == LCR_OFFSET:
            self._lcr = value
        elif reg == MCR_OFFSET:
            self._write_mcr(value)
        elif reg == SCR_OFFSET:
            self._scr = value
        # LSR and MSR writes are for factory test only (section 8.4): ignored, like unmapped.

    def _read_rbr(self) -> int:
        if not self._rx:
            return self._rbr_last  # the holding register keeps the last byte
        self._rbr_last = self._rx.popleft() & 0xFF
        self._rx_active = True
        self._timeout_pending = False  # a read of RBR clears the timeout (section 8.6)
        self._reveal_head_errors()
        self._update_irq()
        return self._rbr_last

    def _read_iir(self) -> int:
        ident = self._interrupt_id()
        if ident == IIR_THRE:
            self._thri_pending = False  # reading IIR clears THRE when it is the source
            self._update_irq()
        return ident | (IIR_FIFO_ENABLED if self._fifo_enabled() else 0)

    def _read_lsr(self) -> int:
        value = self._lsr_value()
        self._lsr_errors = 0
        # Bit 7 clears unless a byte behind the one now at the top also carries an error.
        self._fifo_error = self._fifo_enabled() and any(
            entry >> _ERROR_SHIFT for entry in itertools.islice(self._rx, 1, None)
        )
        self._update_irq()
        return value

    def _read_msr(self) -> int:
        value = self._modem_status() | self._msr_delta
        self._msr_delta = 0
        self._update_irq()
        return value

    def _write_thr(self, value: int) -> None:
        # Writing THR clears a pending THRE interrupt; the infinitely fast line then empties
        # THR at once, which raises it again. The line drops and rises so an edge-triggered
        # PIC sees a fresh edge, as it would on the chip.
        self._thri_pending = False
        self._update_irq()
        if self._mcr & MCR_LOOP:
            self._push_rx(value)  # transmitter output wired to the receiver (section 8.8)
        else:
            self._output(bytes((value,)))
        self._thri_pending = True
        self._update_irq()

    def _write_ier(self, value: int) -> None:
        newly_enabled = value & ~self._ier
        self._ier = value & IER_MASK
        if newly_enabled & IER_THRE:
            self._thri_pending = True  # enabling ETBEI with THR empty interrupts at once
        self._update_irq()

    def _write_fcr(self, value: int) -> None:
        enable = value & FCR_ENABLE
        if enable != self._fcr & FCR_ENABLE:
            self._clear_rx()  # switching 16450/FIFO mode empties both FIFOs (section 8.5)
        if not enable:
            self._fcr = 0  # the other bits are programmed only together with bit 0
        else:
            if value & FCR_CLEAR_RX:
                self._clear_rx()
            # FCR_CLEAR_TX: the transmit FIFO is always empty on an infinitely fast line.
            self._fcr = value & FCR_STORED_MASK
        self._update_irq()

    def _write_mcr(self, value: int) -> None:
        before = self._modem_status()
        self._mcr = value & MCR_MASK
        after = self._modem_status()
        changed = (before ^ after) >> 4
        delta = changed & (MSR_DCTS | MSR_DDSR | MSR_DDCD)
        if before & MSR_RI and not after & MSR_RI:
            delta |= MSR_TERI
        self._msr_delta |= delta
        self._update_irq()

    # -- derived state -----------------------------------------------------------------------

    def _fifo_enabled(self) -> bool:
        return bool(self._fcr & FCR_ENABLE)

    def _rx_capacity(self) -> int:
        return FIFO_SIZE if self._fifo_enabled() else 1

    def _trigger_level(self) -> int:
        if not self._fifo_enabled():
            return 1
        return RX_TRIGGER_LEVELS[self._fcr >> FCR_TRIGGER_SHIFT]

    def _lsr_value(self) -> int:
        value = LSR_THRE | LSR_TEMT | self._lsr_errors
        if self._rx:
            value |= LSR_DR
        if self._fifo_error:
            value |= LSR_FIFO_ERROR
        return value

    def _modem_status(self) -> int:
        """MSR bits 7:4: the modem inputs, or in loopback the MCR outputs (section 8.8)."""
        if not self._mcr & MCR_LOOP:
            return NO_MODEM_INPUTS
        status = 0
        if self._mcr & MCR_RTS:
            status |= MSR_CTS
        if self._mcr & MCR_DTR:
            status |= MSR_DSR
        if self._mcr & MCR_OUT1:
            status |= MSR_RI
        if self._mcr & MCR_OUT2:
            status |= MSR_DCD
        return status

    def _interrupt_id(self) -> int:
        """The highest-priority pending interrupt, as IIR bits 3:0 (Table V)."""
        ier = self._ier
        if ier & IER_RLS and self._lsr_errors:
            return IIR_RLS
        if ier & IER_RDA:
            if self._rx and len(self._rx) >= self._trigger_level():
                return IIR_RDA
            if self._timeout_pending:
                return IIR_CTI
        if ier & IER_THRE and self._thri_pending:
            return IIR_THRE
        if ier & IER_MS and self._msr_delta:
            return IIR_MS
        return IIR_NONE

    def _update_irq(self) -> None:
        """Derive the line from the registers; touch the IrqLine only when the level changes."""
        gate_open = self._mcr & MCR_OUT2 and not self._mcr & MCR_LOOP
        level = bool(gate_open) and self._interrupt_id() != IIR_NONE
        if level != self._irq_level:
            self._irq_level = level
            self._irq.set_level(level)

    # -- receive FIFO ------------------------------------------------------------------------

    def _push_rx(self, entry: int) -> None:
        """A byte completes in the receiver; with no room it is an overrun (section 8.4)."""
        self._rx_active = True
        if len(self._rx) < self._rx_capacity():
            self._rx.append(entry)
            if len(self._rx) == 1:
                self._reveal_head_errors()
            if entry >> _ERROR_SHIFT and self._fifo_enabled():
                self._fifo_error = True
            return
        self._lsr_errors |= LSR_OE
        if not self._fifo_enabled():
            # 16450 mode: the new byte overwrites the unread one in RBR.
            self._rx[0] = entry
            self._reveal_head_errors()
        # FIFO mode: the byte in the shift register is lost, the FIFO is left intact.

    def _reveal_head_errors(self) -> None:
        """A byte's PE/FE/BI show in LSR when it reaches the top of the FIFO (section 8.4)."""
        if self._rx:
            self._lsr_errors |= (self._rx[0] >> _ERROR_SHIFT) & LSR_CHAR_ERRORS

    def _clear_rx(self) -> None:
        self._rx.clear()
        self._timeout_pending = False
        self._fifo_error = False

    def _reset_registers(self) -> None:
        self._ier = DEFAULT_IER
        self._fcr = DEFAULT_FCR
        self._lcr = DEFAULT_LCR
        self._mcr = DEFAULT_MCR
        self._lsr_errors = 0
        self._msr_delta = 0
        self._thri_pending = False
        self._clear_rx()

    # -- snapshots ---------------------------------------------------------------------------

    def state(self) -> UartState:
        plain = {name: getattr(self, "_" + name) for name in _PLAIN_STATE_FIELDS}
        return UartState(
            **plain,
            rx_fifo=bytes(entry & 0xFF for entry in self._rx),
            rx_errors=bytes(entry >> _ERROR_SHIFT for entry in self._rx),
        )

    @classmethod
    def from_state(
        cls, state: UartState, irq: IrqLine, output: Callable[[bytes], None]
    ) -> Uart16550:
        """Rebuild a UART; checks bounds first and re-raises the line if one is pending."""
        state.validate()
        uart = cls(irq, output)
        for name in _PLAIN_STATE_FIELDS:
            setattr(uart, "_" + name, getattr(state, name))
        uart._rx.extend(
            byte | error << _ERROR_SHIFT for byte, error in zip(state.rx_fifo, state.rx_errors)
        )
        uart._update_irq()
        return uart


# UartState fields held as `_<name>` attributes of the same value; the FIFO is packed apart.
_PLAIN_STATE_FIELDS = tuple(
    f.name for f in fields(UartState) if f.name not in ("rx_fifo", "rx_errors")
)
