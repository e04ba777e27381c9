"""Keysyms from VNC clients to PS/2 set 2 keys, checked against the keyboard's own tables."""

from __future__ import annotations

import pytest

from pyhvm.backends.display.keymap import KEYSYM_TO_SET2, keysym_to_set2
from pyhvm.devices.ps2kbd import SET2_TO_SET1, key_bytes


@pytest.mark.parametrize("keysym, code", [
    (ord("a"), 0x1C), (ord("A"), 0x1C), (ord("z"), 0x1A), (ord("1"), 0x16), (ord("!"), 0x16),
    (ord("0"), 0x45), (ord(" "), 0x29), (ord("/"), 0x4A), (ord("?"), 0x4A),
    (0xFF0D, 0x5A), (0xFF1B, 0x76), (0xFF08, 0x66), (0xFF09, 0x0D),
    (0xFFE1, 0x12), (0xFFE3, 0x14), (0xFFE9, 0x11), (0xFFE4, 0xE014),
    (0xFF52, 0xE075), (0xFF54, 0xE072), (0xFF51, 0xE06B), (0xFF53, 0xE074),
    (0xFFBE, 0x05), (0xFFC4, 0x83), (0xFFC9, 0x07),
])
def test_keysyms_map_to_set2_keys(keysym: int, code: int) -> None:
    """IBM scan code set 2 table; keysyms from X11 keysymdef.h."""
    assert keysym_to_set2(keysym) == code


def test_every_printable_ascii_character_has_a_key() -> None:
    missing = [chr(c) for c in range(0x20, 0x7F) if keysym_to_set2(c) is None]
    assert missing == []


def test_f1_to_f12_and_letters_are_distinct_keys() -> None:
    function_keys = {keysym_to_set2(0xFFBE + i) for i in range(12)}
    letters = {keysym_to_set2(ord("a") + i) for i in range(26)}
    assert len(function_keys) == 12 and len(letters) == 26
    assert not function_keys & letters


def test_every_mapped_key_exists_in_scan_code_set_1_too() -> None:
    """So a guest that asks for set 1, or uses translation, gets every key as well."""
    for keysym, code in KEYSYM_TO_SET2.items():
        assert (code & 0xFF) in SET2_TO_SET1, hex(keysym)
        assert key_bytes(code, True, 1), hex(keysym)


def test_unknown_keysyms_have_no_key() -> None:
    assert keysym_to_set2(0x20AC) is None  # EuroSign
    assert keysym_to_set2(-1) is None
