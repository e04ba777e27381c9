"""X11 keysyms (what VNC clients send) to PS/2 scan code set 2 keys, for a US keyboard.

A VNC client reports the symbol a key produced, with the modifiers as keys of their own: the
user's "!" arrives as Shift_L down, then "!" (the 1 key), so a shifted symbol maps to the key
that carries it and the guest sees shift + 1, as from a real keyboard. Codes are set 2 make
codes, with 0xE0 in the high byte for the extended keys (0xE075 is Up); see
pyhvm/devices/ps2kbd.py. Keysym values are from X11's keysymdef.h (the RFB spec's keys).
"""

from __future__ import annotations

# Keys whose keysym is their printable ASCII character: (unshifted, shifted, set 2 code).
_PRINTABLE = [
    ("`", "~", 0x0E), ("1", "!", 0x16), ("2", "@", 0x1E), ("3", "#", 0x26),
    ("4", "$", 0x25), ("5", "%", 0x2E), ("6", "^", 0x36), ("7", "&", 0x3D),
    ("8", "*", 0x3E), ("9", "(", 0x46), ("0", ")", 0x45), ("-", "_", 0x4E),
    ("=", "+", 0x55), ("q", "Q", 0x15), ("w", "W", 0x1D), ("e", "E", 0x24),
    ("r", "R", 0x2D), ("t", "T", 0x2C), ("y", "Y", 0x35), ("u", "U", 0x3C),
    ("i", "I", 0x43), ("o", "O", 0x44), ("p", "P", 0x4D), ("[", "{", 0x54),
    ("]", "}", 0x5B), ("\\", "|", 0x5D), ("a", "A", 0x1C), ("s", "S", 0x1B),
    ("d", "D", 0x23), ("f", "F", 0x2B), ("g", "G", 0x34), ("h", "H", 0x33),
    ("j", "J", 0x3B), ("k", "K", 0x42), ("l", "L", 0x4B), (";", ":", 0x4C),
    ("'", '"', 0x52), ("z", "Z", 0x1A), ("x", "X", 0x22), ("c", "C", 0x21),
    ("v", "V", 0x2A), ("b", "B", 0x32), ("n", "N", 0x31), ("m", "M", 0x3A),
    (",", "<", 0x41), (".", ">", 0x49), ("/", "?", 0x4A), (" ", " ", 0x29),
]

# Function and modifier keys: keysym -> set 2 code.
_SPECIAL = {
    0xFF08: 0x66,    # BackSpace
    0xFF09: 0x0D,    # Tab
    0xFE20: 0x0D,    # ISO_Left_Tab (shift+Tab on X11)
    0xFF0D: 0x5A,    # Return
    0xFF1B: 0x76,    # Escape
    0xFFFF: 0xE071,  # Delete
    0xFF50: 0xE06C,  # Home
    0xFF51: 0xE06B,  # Left
    0xFF52: 0xE075,  # Up
    0xFF53: 0xE074,  # Right
    0xFF54: 0xE072,  # Down
    0xFF55: 0xE07D,  # Page_Up (Prior)
    0xFF56: 0xE07A,  # Page_Down (Next)
    0xFF57: 0xE069,  # End
    0xFF63: 0xE070,  # Insert
    0xFF67: 0xE02F,  # Menu
    0xFF14: 0x7E,    # Scroll_Lock
    0xFF7F: 0x77,    # Num_Lock
    0xFFE5: 0x58,    # Caps_Lock
    0xFFE1: 0x12,    # Shift_L
    0xFFE2: 0x59,    # Shift_R
    0xFFE3: 0x14,    # Control_L
    0xFFE4: 0xE014,  # Control_R
    0xFFE7: 0x11,    # Meta_L (sent for Alt by some clients)
    0xFFE8: 0xE011,  # Meta_R
    0xFFE9: 0x11,    # Alt_L
    0xFFEA: 0xE011,  # Alt_R
    0xFE03: 0xE011,  # ISO_Level3_Shift (AltGr)
    0xFFEB: 0xE01F,  # Super_L (left Windows key)
    0xFFEC: 0xE027,  # Super_R
    # F1-F12
    0xFFBE: 0x05, 0xFFBF: 0x06, 0xFFC0: 0x04, 0xFFC1: 0x0C, 0xFFC2: 0x03, 0xFFC3: 0x0B,
    0xFFC4: 0x83, 0xFFC5: 0x0A, 0xFFC6: 0x01, 0xFFC7: 0x09, 0xFFC8: 0x78, 0xFFC9: 0x07,
    # The keypad, with Num Lock on (digits) and off (movement)
    0xFFB0: 0x70, 0xFFB1: 0x69, 0xFFB2: 0x72, 0xFFB3: 0x7A, 0xFFB4: 0x6B, 0xFFB5: 0x73,
    0xFFB6: 0x74, 0xFFB7: 0x6C, 0xFFB8: 0x75, 0xFFB9: 0x7D,
    0xFF9E: 0x70, 0xFF9C: 0x69, 0xFF99: 0x72, 0xFF9B: 0x7A, 0xFF96: 0x6B, 0xFF9D: 0x73,
    0xFF98: 0x74, 0xFF95: 0x6C, 0xFF97: 0x75, 0xFF9A: 0x7D,
    0xFFAE: 0x71, 0xFF9F: 0x71,  # KP_Decimal, KP_Delete
    0xFFAB: 0x79,    # KP_Add
    0xFFAD: 0x7B,    # KP_Subtract
    0xFFAA: 0x7C,    # KP_Multiply
    0xFFAF: 0xE04A,  # KP_Divide
    0xFF8D: 0xE05A,  # KP_Enter
}


def _build() -> dict[int, int]:
    table = dict(_SPECIAL)
    for plain, shifted, code in _PRINTABLE:
        table[ord(plain)] = code
        table[ord(shifted)] = code
    return table


KEYSYM_TO_SET2: dict[int, int] = _build()


def keysym_to_set2(keysym: int) -> int | None:
    """The set 2 key for an X11 keysym, or None for one this US layout has no key for."""
    return KEYSYM_TO_SET2.get(keysym)


__all__ = ["KEYSYM_TO_SET2", "keysym_to_set2"]
