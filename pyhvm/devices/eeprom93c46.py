"""A 93C46 serial EEPROM (1 Kbit, organized as 64 x 16-bit words), driven by its four pins.

The Microwire interface as the 93C46 data sheets describe it: with chip select (CS) high, the
chip samples data in (DI) on each rising edge of the serial clock (SK). An instruction is a
start bit (the first 1 clocked in while CS is high; leading zeros are ignored), a 2-bit
opcode and a 6-bit address, MSB first:

    READ  10 aaaaaa             DO drives a dummy 0, then 16 data bits, MSB first, one per
                                rising edge; with CS held the next word follows (sequential
                                read, wrapping from word 63 to 0)
    WRITE 01 aaaaaa + 16 bits   programs the word when CS falls
    ERASE 11 aaaaaa             sets the word to 0xFFFF when CS falls
    EWEN  00 11xxxx             erase/write enable
    EWDS  00 00xxxx             erase/write disable (the state at power-on)
    ERAL  00 10xxxx             erase all words when CS falls
    WRAL  00 01xxxx + 16 bits   write all words when CS falls

A write or erase issued while writes are disabled does nothing. Programming is instant: when
CS rises again after a programming instruction, DO reads 1 (READY) until the next start bit.

DO reads 0 whenever the chip does not drive it (high impedance): only the read phase (dummy
bit, then data) and the ready status drive it. Contents live in the model only; a machine that
wants them to outlive the VM saves `words`.
"""

from __future__ import annotations

from collections.abc import Sequence

WORD_COUNT = 64
WORD_MASK = 0xFFFF
ADDRESS_BITS = 6  # x16 organization (ORG high): 64 words
OPCODE_BITS = 2
DATA_BITS = 16

OP_EXTENDED = 0b00  # EWEN, EWDS, ERAL, WRAL: selected by the two top address bits
OP_WRITE = 0b01
OP_READ = 0b10
OP_ERASE = 0b11
EXT_EWDS = 0b00
EXT_WRAL = 0b01
EXT_ERAL = 0b10
EXT_EWEN = 0b11
ERASED_WORD = 0xFFFF

# Interface phases.
_IDLE = 0  # waiting for the start bit
_COMMAND = 1  # collecting opcode and address
_DATA_IN = 2  # collecting 16 data bits of WRITE or WRAL
_READ = 3  # shifting data out
_WAIT_CS = 4  # instruction complete; programming happens when CS falls


class Eeprom93c46:
    """The EEPROM chip: `set_pins(cs, sk, di)` after every change, `data_out` for DO."""

    def __init__(self, words: Sequence[int]) -> None:
        if len(words) != WORD_COUNT:
            raise ValueError(f"a 93C46 holds {WORD_COUNT} words, got {len(words)}")
        if any(not 0 <= word <= WORD_MASK for word in words):
            raise ValueError("EEPROM words are 16-bit values")
        self._words = list(words)
        self.write_enabled = False  # EWDS at power-on
        self._cs = False
        self._sk = False
        self._phase = _IDLE
        self._shift = self._count = self._address = self._opcode = 0
        self._out_word = self._out_left = 0
        self._out_started = self._ready = self._programmed = False
        self._pending: tuple[str, int] | None = None

    @property
    def words(self) -> tuple[int, ...]:
        return tuple(self._words)

    def word(self, address: int) -> int:
        return self._words[address % WORD_COUNT]

    @property
    def data_out(self) -> bool:
        """The DO pin; 0 while the chip does not drive it."""
        if self._phase == _READ:
            return bool(self._out_word >> (DATA_BITS - 1) & 1) if self._out_started \
                else False  # the dummy 0 before the first data bit
        return self._ready

    def set_pins(self, cs: bool, sk: bool, di: bool) -> None:
        if not cs:
            if self._cs:
                self._deselect()
            self._cs = False
            self._sk = sk
            return
        if not self._cs:
            self._cs = True
            self._ready = self._programmed  # READY status after a programming cycle
            self._programmed = False
        rising = sk and not self._sk
        self._sk = sk
        if rising:
            self._clock(di)

    # -- the serial state machine ---------------------------------------------------------------

    def _reset_interface(self) -> None:
        self._phase = _IDLE
        self._shift = 0
        self._count = 0
        self._address = 0
        self._opcode = 0
        self._out_word = 0
        self._out_left = 0
        self._out_started = False
        self._ready = False
        self._programmed = False
        self._pending = None

    def _clock(self, di: bool) -> None:
        bit = 1 if di else 0
        if self._phase == _IDLE:
            if bit:
                self._ready = False
                self._phase, self._shift, self._count = _COMMAND, 0, 0
        elif self._phase == _COMMAND:
            self._shift = (self._shift << 1) | bit
            self._count += 1
            if self._count == OPCODE_BITS + ADDRESS_BITS:
                self._decode(self._shift >> ADDRESS_BITS, self._shift & (WORD_COUNT - 1))
        elif self._phase == _DATA_IN:
            self._shift = (self._shift << 1) | bit
            self._count += 1
            if self._count == DATA_BITS:
                self._pending = ("write", self._shift)
                self._phase = _WAIT_CS
        elif self._phase == _READ:
            self._next_out_bit()
        # _WAIT_CS: further clocks are ignored until CS falls.

    def _decode(self, opcode: int, address: int) -> None:
        self._opcode, self._address = opcode, address
        self._shift = self._count = 0
        if opcode == OP_READ:
            self._phase = _READ
            self._out_word = self._words[address]
            self._out_left = DATA_BITS
            self._out_started = False
        elif opcode == OP_WRITE:
            self._phase = _DATA_IN
        elif opcode == OP_ERASE:
            self._pending, self._phase = ("erase", 0), _WAIT_CS
        else:
            extended = address >> (ADDRESS_BITS - 2)
            if extended == EXT_EWEN:
                self.write_enabled, self._phase = True, _WAIT_CS
            elif extended == EXT_EWDS:
                self.write_enabled, self._phase = False, _WAIT_CS
            elif extended == EXT_ERAL:
                self._pending, self._phase = ("erase-all", 0), _WAIT_CS
            else:
                self._phase = _DATA_IN  # WRAL: data follows

    def _next_out_bit(self) -> None:
        if not self._out_started:
            self._out_started = True  # the first rising edge after the dummy bit: D15
            return
        self._out_word = (self._out_word << 1) & WORD_MASK
        self._out_left -= 1
        if self._out_left == 0:  # sequential read: the next word's D15 follows at once
            self._address = (self._address + 1) % WORD_COUNT
            self._out_word = self._words[self._address]
            self._out_left = DATA_BITS

    def _deselect(self) -> None:
        """CS falls: a complete programming instruction runs (self-timed, here instant)."""
        pending, opcode, address = self._pending, self._opcode, self._address
        self._reset_interface()
        if pending is None or not self.write_enabled:
            return
        kind, value = pending
        if kind == "erase-all":
            self._words = [ERASED_WORD] * WORD_COUNT
        elif kind == "erase":
            self._words[address] = ERASED_WORD
        elif opcode == OP_EXTENDED:  # WRAL
            self._words = [value] * WORD_COUNT
        else:
            self._words[address] = value
        self._programmed = True
