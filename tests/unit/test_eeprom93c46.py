"""The 93C46 EEPROM driven pin by pin: the programming instructions a NIC driver or a hostile
guest can bit-bang through the RTL8139's 9346CR (Microchip 93C46 data sheet, instruction set
table: ERAL, WRAL, EWEN/EWDS, and "instruction complete: CS must fall to program")."""

from __future__ import annotations

import pytest

from pyhvm.devices.eeprom93c46 import ERASED_WORD, WORD_COUNT, Eeprom93c46


def clock(chip: Eeprom93c46, bit: int) -> None:
    chip.set_pins(True, False, bool(bit))
    chip.set_pins(True, True, bool(bit))  # sampled on the rising edge of SK


def instruction(chip: Eeprom93c46, bits: str, data: int | None = None,
                extra: str = "") -> bool:
    """Start bit, opcode and address (`bits`), then 16 data bits and `extra` clocks; CS falls
    (programming happens), CS rises again: the READY status on DO is returned."""
    chip.set_pins(True, False, False)
    for bit in "1" + bits + ("" if data is None else f"{data:016b}") + extra:
        clock(chip, int(bit))
    chip.set_pins(False, False, False)
    chip.set_pins(True, False, False)
    ready = chip.data_out
    chip.set_pins(False, False, False)
    return ready


def read_word(chip: Eeprom93c46, address: int) -> int:
    chip.set_pins(True, False, False)
    for bit in "1" + "10" + f"{address:06b}":
        clock(chip, int(bit))
    word = 0
    for _ in range(16):
        clock(chip, 0)
        word = word << 1 | chip.data_out
    chip.set_pins(False, False, False)
    return word


def chip_of(words: list[int] | None = None) -> Eeprom93c46:
    return Eeprom93c46(words if words is not None else [i * 0x0101 for i in range(WORD_COUNT)])


def test_wral_writes_every_word_once_writes_are_enabled() -> None:
    chip = chip_of()
    assert instruction(chip, "00" + "01" + "0000", 0x1234) is False  # EWDS at power-on
    assert chip.words == tuple(i * 0x0101 for i in range(WORD_COUNT))
    instruction(chip, "00" + "11" + "0000")  # EWEN
    assert instruction(chip, "00" + "01" + "1010", 0xBEEF) is True  # READY after WRAL
    assert chip.words == (0xBEEF,) * WORD_COUNT
    assert read_word(chip, 63) == 0xBEEF


def test_eral_erases_every_word_to_ffff() -> None:
    chip = chip_of()
    instruction(chip, "00" + "11" + "0000")  # EWEN
    assert instruction(chip, "00" + "10" + "0101") is True
    assert chip.words == (ERASED_WORD,) * WORD_COUNT
    assert read_word(chip, 0) == 0xFFFF


def test_clocks_after_a_complete_write_are_ignored_until_cs_falls() -> None:
    """Extra SK pulses after the 16th data bit neither shift the data nor start a new
    instruction: the word programmed is the one clocked in."""
    chip = chip_of()
    instruction(chip, "00" + "11" + "0000")  # EWEN
    assert instruction(chip, "01" + "000101", 0xA55A, extra="1" * 9 + "0110") is True
    assert chip.word(5) == 0xA55A
    assert chip.word(4) == 0x0404 and chip.word(6) == 0x0606


def test_an_instruction_cut_short_by_cs_programs_nothing() -> None:
    chip = chip_of()
    instruction(chip, "00" + "11" + "0000")  # EWEN
    assert instruction(chip, "01" + "000011" + "1111") is False  # only 4 of 16 data bits
    assert chip.word(3) == 0x0303
    assert instruction(chip, "00" + "10") is False  # ERAL without its address bits
    assert chip.word(0) == 0x0000 and chip.word(1) == 0x0101


@pytest.mark.parametrize("words", [[0] * 63, [0] * 65, [0] * 63 + [0x10000], [-1] + [0] * 63])
def test_contents_must_be_64_words_of_16_bits(words: list[int]) -> None:
    with pytest.raises(ValueError):
        Eeprom93c46(words)
