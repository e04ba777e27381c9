"""A PS/2 (IBM MF2) keyboard: the device behind the i8042's keyboard port.

The keyboard speaks scan code set 2 natively (set 1 on request); the 8042 controller may
translate set 2 into the XT's set 1 for old software (see `translate_set2` and i8042.py).
Sources: the IBM PS/2 Hardware Interface Technical Reference, "Keyboards (101- and 102-key)":
commands, responses and the scan code tables.

Emulated: the host commands (reset with BAT, identify, enable/disable scanning, defaults,
LEDs, typematic rate, scan code set 1/2 get and set, echo, resend), make/break codes for sets
1 and 2 (extended keys with the 0xE0 prefix), the 16-byte output buffer with the overrun code
when it fills, command replies ahead of queued key codes.
Not emulated: scan code set 3 (refused with 0xFE, as keyboards without it do), typematic
repeat (a host client sends repeated key-downs itself), the Pause and Print Screen sequences,
timing of the serial line.
The guest can make it queue at most `BUFFER_SIZE` bytes plus a reply, whatever it writes.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

BUFFER_SIZE = 16  # bytes the keyboard holds before it reports an overrun

# Responses (to the host).
ACK = 0xFA
RESEND = 0xFE
BAT_OK = 0xAA  # basic assurance test passed, after power-on or reset
ECHO_REPLY = 0xEE
ID_BYTES = (0xAB, 0x83)  # MF2 keyboard
OVERRUN_SET2 = 0x00  # key detection error / buffer overrun (0xFF in set 1)
OVERRUN_SET1 = 0xFF
BREAK_PREFIX = 0xF0  # set 2: the next code is a release
EXTENDED_PREFIX = 0xE0

# Commands (from the host).
CMD_SET_LEDS = 0xED  # + data byte: bit 0 scroll, 1 num, 2 caps lock
CMD_ECHO = 0xEE
CMD_SCAN_SET = 0xF0  # + data byte: 0 = report current set, 1-3 = select
CMD_IDENTIFY = 0xF2
CMD_TYPEMATIC = 0xF3  # + data byte: rate and delay
CMD_ENABLE = 0xF4
CMD_DISABLE = 0xF5  # defaults, and stop scanning
CMD_DEFAULTS = 0xF6
CMD_SET3_FIRST, CMD_SET3_LAST = 0xF7, 0xFD  # set 3 key types: acknowledged, no effect
CMD_RESEND = 0xFE
CMD_RESET = 0xFF
COMMANDS_WITH_DATA = (CMD_SET_LEDS, CMD_SCAN_SET, CMD_TYPEMATIC)
FIRST_COMMAND = CMD_SET_LEDS  # bytes from here up are commands, even where data is due

DEFAULT_SCAN_SET = 2
DEFAULT_TYPEMATIC = 0x2B  # 10.9 characters/s after 500 ms
SUPPORTED_SETS = (1, 2)

# The same key in sets 2 and 1 (make codes without prefix). From the scan code tables of the
# IBM reference; extended keys (0xE0 prefix) share the table through their second byte.
SET2_TO_SET1: dict[int, int] = {
    0x76: 0x01, 0x16: 0x02, 0x1E: 0x03, 0x26: 0x04, 0x25: 0x05, 0x2E: 0x06, 0x36: 0x07,
    0x3D: 0x08, 0x3E: 0x09, 0x46: 0x0A, 0x45: 0x0B, 0x4E: 0x0C, 0x55: 0x0D, 0x66: 0x0E,
    0x0D: 0x0F, 0x15: 0x10, 0x1D: 0x11, 0x24: 0x12, 0x2D: 0x13, 0x2C: 0x14, 0x35: 0x15,
    0x3C: 0x16, 0x43: 0x17, 0x44: 0x18, 0x4D: 0x19, 0x54: 0x1A, 0x5B: 0x1B, 0x5A: 0x1C,
    0x14: 0x1D, 0x1C: 0x1E, 0x1B: 0x1F, 0x23: 0x20, 0x2B: 0x21, 0x34: 0x22, 0x33: 0x23,
    0x3B: 0x24, 0x42: 0x25, 0x4B: 0x26, 0x4C: 0x27, 0x52: 0x28, 0x0E: 0x29, 0x12: 0x2A,
    0x5D: 0x2B, 0x1A: 0x2C, 0x22: 0x2D, 0x21: 0x2E, 0x2A: 0x2F, 0x32: 0x30, 0x31: 0x31,
    0x3A: 0x32, 0x41: 0x33, 0x49: 0x34, 0x4A: 0x35, 0x59: 0x36, 0x7C: 0x37, 0x11: 0x38,
    0x29: 0x39, 0x58: 0x3A, 0x05: 0x3B, 0x06: 0x3C, 0x04: 0x3D, 0x0C: 0x3E, 0x03: 0x3F,
    0x0B: 0x40, 0x83: 0x41, 0x0A: 0x42, 0x01: 0x43, 0x09: 0x44, 0x77: 0x45, 0x7E: 0x46,
    0x6C: 0x47, 0x75: 0x48, 0x7D: 0x49, 0x7B: 0x4A, 0x6B: 0x4B, 0x73: 0x4C, 0x74: 0x4D,
    0x79: 0x4E, 0x69: 0x4F, 0x72: 0x50, 0x7A: 0x51, 0x70: 0x52, 0x71: 0x53, 0x84: 0x54,
    0x61: 0x56, 0x78: 0x57, 0x07: 0x58,
    0x1F: 0x5B, 0x27: 0x5C, 0x2F: 0x5D,  # left/right Windows and Menu (always E0-prefixed)
    0x00: OVERRUN_SET1,
}


def _translation_table() -> bytes:
    """What an 8042 with translation on turns each keyboard byte into (before the 0x80 of a
    break is added). Codes no key sends pass through; 0x02 reads as 0x41, which is how the
    "current set is 2" reply looks through translation on real controllers."""
    table = bytearray(range(256))
    for set2, set1 in SET2_TO_SET1.items():
        table[set2] = set1
    table[0x02] = 0x41
    return bytes(table)


TRANSLATE_SET2 = _translation_table()


def key_bytes(code: int, down: bool, scan_set: int) -> bytes:
    """The bytes a key sends in `scan_set`. `code` is its set 2 make code, with 0xE0 in the
    high byte for extended keys (0xE075 is Up). Empty for a code set 1 has no key for."""
    prefix = b"\xe0" if code >> 8 == EXTENDED_PREFIX else b""
    base = code & 0xFF
    if scan_set == 1:
        set1 = SET2_TO_SET1.get(base)
        if set1 is None or base == 0:
            return b""
        return prefix + bytes([set1 | (0 if down else 0x80)])
    return prefix + (b"" if down else bytes([BREAK_PREFIX])) + bytes([base])


class Ps2Keyboard:
    """The keyboard's side of the wire: bytes from the host in, key codes and replies out.

    `on_output` is called when a byte becomes available, so the controller can take it when
    its own buffer is free. `room()` says how many key bytes still fit, for a host-side
    feeder that prefers waiting to losing keys.
    """

    def __init__(self, on_output: Callable[[], None] = lambda: None) -> None:
        self._on_output = on_output
        self._replies: deque[int] = deque()
        self.reset()

    def reset(self) -> None:
        """Power-on state: defaults, scanning on, buffers empty (no BAT code)."""
        self._replies.clear()
        self._keys: deque[int] = deque()
        self._overrun = False  # an overrun code waits in the buffer: keys are lost until sent
        self._defaults()
        self.scanning = True
        self._awaiting: int | None = None  # a command that wants its data byte
        self._last_sent = BAT_OK

    def _defaults(self) -> None:
        self.scan_set = DEFAULT_SCAN_SET
        self.typematic = DEFAULT_TYPEMATIC
        self.leds = 0

    # --- toward the host ----------------------------------------------------------------
    def has_output(self) -> bool:
        return bool(self._replies or self._keys)

    def pop(self) -> int | None:
        """The next byte for the controller: replies first, then key codes."""
        if self._replies:
            byte = self._replies.popleft()
        elif self._keys:
            byte = self._keys.popleft()
            if not self._keys:
                self._overrun = False
        else:
            return None
        self._last_sent = byte
        return byte

    def room(self) -> int:
        """Key bytes that fit before the buffer overruns."""
        return 0 if self._overrun else max(0, BUFFER_SIZE - 1 - len(self._keys))

    def key(self, code: int, down: bool) -> bool:
        """A key went down or up. False when it was not queued: scanning is off, or the
        buffer is full (the keyboard then queues its overrun code once, as hardware does)."""
        if not self.scanning:
            return False
        data = key_bytes(code, down, self.scan_set)
        if not data:
            return False
        if self._overrun:
            return False
        if len(data) > self.room():
            self._overrun = True
            self._keys.append(OVERRUN_SET1 if self.scan_set == 1 else OVERRUN_SET2)
            self._on_output()
            return False
        self._keys.extend(data)
        self._on_output()
        return True

    def _clear_keys(self) -> None:
        self._keys.clear()
        self._overrun = False

    def _reply(self, *data: int) -> None:
        self._replies.extend(data)
        self._on_output()

    # --- from the host -------------------------------------------------------------------
    def receive(self, byte: int) -> None:
        """A byte the controller sent to the keyboard (a command or a command's data).

        Replies the host has not read yet are dropped: the keyboard answers the newest
        command, and a guest that never reads cannot make replies pile up."""
        self._replies.clear()
        awaiting, self._awaiting = self._awaiting, None
        if awaiting is not None and byte < FIRST_COMMAND:
            self._data(awaiting, byte)
            return
        self._command(byte)

    def _data(self, command: int, byte: int) -> None:
        if command == CMD_SET_LEDS:
            self.leds = byte & 0x07
            self._reply(ACK)
        elif command == CMD_TYPEMATIC:
            self.typematic = byte & 0x7F
            self._reply(ACK)
        elif command == CMD_SCAN_SET:
            if byte == 0:
                self._reply(ACK, self.scan_set)
            elif byte in SUPPORTED_SETS:
                self.scan_set = byte
                self._clear_keys()
                self._reply(ACK)
            else:
                self._reply(RESEND)

    def _command(self, byte: int) -> None:
        if byte in COMMANDS_WITH_DATA:
            self._awaiting = byte
            self._reply(ACK)
        elif byte == CMD_ECHO:
            self._reply(ECHO_REPLY)
        elif byte == CMD_IDENTIFY:
            self._reply(ACK, *ID_BYTES)
        elif byte in (CMD_ENABLE, CMD_DISABLE, CMD_DEFAULTS):
            self._clear_keys()
            if byte != CMD_ENABLE:
                self._defaults()
            self.scanning = byte != CMD_DISABLE
            self._reply(ACK)
        elif CMD_SET3_FIRST <= byte <= CMD_SET3_LAST:
            self._reply(ACK)
        elif byte == CMD_RESEND:
            self._reply(self._last_sent)
        elif byte == CMD_RESET:
            self.reset()
            self._reply(ACK, BAT_OK)
        else:
            self._reply(RESEND)  # not a command this keyboard knows
