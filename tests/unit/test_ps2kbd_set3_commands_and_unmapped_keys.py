"""PS/2 keyboard corners (IBM PS/2 Hardware Interface Technical Reference, "Keyboards
(101- and 102-key)": the set 3 key-type commands F7h-FDh, and keys with no set 1 code)."""

from __future__ import annotations

import pytest

from pyhvm.devices.ps2kbd import ACK, SET2_TO_SET1, Ps2Keyboard, key_bytes
from tests.unit.test_i8042 import KEY_A, Kbc

NO_SET1_KEY = 0x08  # a set 2 code (F13 on some keyboards) with no set 1 equivalent


@pytest.mark.parametrize("command", range(0xF7, 0xFE))
def test_set3_key_type_commands_are_acknowledged_and_change_nothing(command: int) -> None:
    """F7h-FDh set key types in scan code set 3; a keyboard in set 1 or 2 ACKs them and
    keeps scanning with its settings unchanged."""
    kbc = Kbc()
    kbc.set_ccb(0x04)  # no translation: the keyboard's own bytes
    keyboard = kbc.dev.keyboard
    settings = (keyboard.scan_set, keyboard.typematic, keyboard.leds, keyboard.scanning)
    kbc.data(command)
    assert kbc.drain() == [ACK]
    assert (keyboard.scan_set, keyboard.typematic, keyboard.leds,
            keyboard.scanning) == settings
    kbc.dev.key(KEY_A, True)
    assert kbc.drain() == [KEY_A]


def test_keys_without_a_set1_code_are_not_sent_in_set1() -> None:
    assert NO_SET1_KEY not in SET2_TO_SET1
    assert key_bytes(NO_SET1_KEY, True, 1) == b"" and key_bytes(0x00, True, 1) == b""
    kbc = Kbc()
    kbc.set_ccb(0x04)
    kbc.data(0xF0)
    kbc.drain()
    kbc.data(0x01)  # scan code set 1
    assert kbc.drain() == [ACK]
    room = kbc.dev.keyboard.room()
    assert kbc.dev.key(NO_SET1_KEY, True) is False
    assert kbc.drain() == [] and kbc.dev.keyboard.room() == room
    assert kbc.dev.key(KEY_A, True) is True
    assert kbc.drain() == [SET2_TO_SET1[KEY_A]]


def test_an_idle_keyboard_has_nothing_to_pop() -> None:
    keyboard = Ps2Keyboard()
    assert not keyboard.has_output() and keyboard.pop() is None
    keyboard.key(KEY_A, True)
    assert keyboard.pop() == KEY_A and keyboard.pop() is None
