"""8254 corners a guest reaches through ports 0x40-0x43 and 0x61 (Intel 8254 datasheet
231164: mode 2 "GATE = 0 suspends counting", "a new count is loaded at the end of the
current period"; a wide `out` is one byte cycle per port)."""

from __future__ import annotations

from pyhvm.devices.pit8254 import CONTROL_OFFSET, STATUS_NULL_COUNT
from tests.unit.test_pit8254 import gate2, goto, latched, make, program


def test_gate_low_holds_a_waiting_mode2_count_until_the_gate_rises() -> None:
    """Channel 2, mode 2, count 1000; a new count 500 waits for the end of the period, but
    the gate drops first: the counter freezes (it must not start counting 500 with the gate
    low) and the rising edge reloads it with 500."""
    pit, clock, _ = make()
    gate2(pit, True)
    program(pit, 2, 2, 1000)
    goto(clock, 100)
    pit.write(2, 1, 500 & 0xFF)
    pit.write(2, 1, 500 >> 8)
    goto(clock, 200)
    gate2(pit, False)
    frozen = latched(pit, 2)
    goto(clock, 1500)  # well past where the period would have ended
    assert latched(pit, 2) == frozen > 500
    gate2(pit, True)
    goto(clock, 1510)
    assert 480 <= latched(pit, 2) < 500
    goto(clock, 1510 + 500)
    assert 480 <= latched(pit, 2) < 500  # the new period is 500


def test_word_write_at_the_control_port_leaves_the_counters_to_their_own_ports() -> None:
    """`outw 0x43`: the low byte is the control word, the high byte goes to port 0x44,
    which is not the PIT's; the counter sees only the bytes written to 0x40."""
    wide, clock_wide, _ = make()
    byte, clock_byte, _ = make()
    wide.write(CONTROL_OFFSET, 2, 0xA5 << 8 | 0x34)  # counter 0, LSB then MSB, mode 2
    byte.write(CONTROL_OFFSET, 1, 0x34)
    for pit in (wide, byte):
        pit.write(0, 1, 0x00)
        pit.write(0, 1, 0x10)
    goto(clock_wide, 50)
    goto(clock_byte, 50)
    assert latched(wide, 0) == latched(byte, 0) == 0x1000 - 49
    wide.write(CONTROL_OFFSET, 1, 0xE2)  # read-back: status of counter 0
    status = wide.read(0, 1)
    assert status & 0x3F == 0x34 and not status & STATUS_NULL_COUNT


def test_a_second_status_latch_before_the_read_is_ignored() -> None:
    """Read-Back Command: "if multiple status latch operations occur without reading the
    status, all but the first are ignored" - the guest reads the status of the first."""
    pit, clock, _ = make()
    program(pit, 0, 2, 100)
    pit.write(CONTROL_OFFSET, 1, 0xE2)  # status of counter 0: null count still set
    goto(clock, 3)                      # the count is now in the counting element
    pit.write(CONTROL_OFFSET, 1, 0xE2)
    assert pit.read(0, 1) & STATUS_NULL_COUNT
    pit.write(CONTROL_OFFSET, 1, 0xE2)
    assert not pit.read(0, 1) & STATUS_NULL_COUNT
