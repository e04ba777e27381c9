"""The 8042 keyboard controller and its PS/2 keyboard, driven port by port (IBM PS/2 Hardware
Interface Technical Reference: "Keyboard/Auxiliary Device Controller" and "Keyboards")."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhvm.devices import i8042 as kbc_mod
from pyhvm.devices.i8042 import (CCB_AUX_INT, CCB_KBD_INT, CCB_XLATE, COMMAND_OFFSET,
                                 DATA_OFFSET, STATUS_AUX_OBF, STATUS_OBF, STATUS_TIMEOUT,
                                 I8042)
from pyhvm.devices.ps2kbd import BUFFER_SIZE, SET2_TO_SET1, Ps2Keyboard, key_bytes
from tests.fakes import FakeIrq

KEY_A = 0x1C  # set 2 make code of A
KEY_UP = 0xE075  # extended: E0 75


class Kbc:
    """A controller with recording IRQ lines and port helpers."""

    def __init__(self) -> None:
        self.resets = 0
        self.irq1, self.irq12 = FakeIrq(), FakeIrq()
        self.dev = I8042(self._reset, self.irq1, self.irq12)

    def _reset(self) -> None:
        self.resets += 1

    def cmd(self, *values: int) -> None:
        for value in values:
            self.dev.write(COMMAND_OFFSET, 1, value)

    def data(self, *values: int) -> None:
        for value in values:
            self.dev.write(DATA_OFFSET, 1, value)

    def status(self) -> int:
        return self.dev.read(COMMAND_OFFSET, 1)

    def drain(self, limit: int = 64) -> list[int]:
        """Every byte waiting, read as a polling driver does (OBF, then 0x60)."""
        out = []
        while self.status() & STATUS_OBF and len(out) < limit:
            out.append(self.dev.read(DATA_OFFSET, 1))
        return out

    def set_ccb(self, value: int) -> None:
        self.cmd(0x60)
        self.data(value)

    def ccb(self) -> int:
        self.cmd(0x20)
        return self.drain()[0]


@pytest.fixture
def kbc() -> Kbc:
    return Kbc()


# --- controller commands -------------------------------------------------------------------

def test_self_test_and_interface_tests_answer_through_the_output_buffer(kbc: Kbc) -> None:
    """0xAA -> 0x55 (controller OK), 0xAB / 0xA9 -> 0x00 (keyboard / aux lines OK)."""
    kbc.cmd(0xAA)
    assert kbc.drain() == [0x55]
    kbc.cmd(0xAB)
    assert kbc.drain() == [0x00]
    kbc.cmd(0xA9)
    assert kbc.drain() == [0x00]


def test_command_byte_and_controller_ram_read_and_write(kbc: Kbc) -> None:
    """0x20/0x60 are RAM byte 0 (the command byte); 0x21-0x3F / 0x61-0x7F the others."""
    assert kbc.ccb() == 0x44  # SYS and translation, as firmware leaves it
    kbc.set_ccb(0x47)
    assert kbc.ccb() == 0x47
    kbc.cmd(0x65)
    kbc.data(0x9C)
    kbc.cmd(0x25)
    assert kbc.drain() == [0x9C]
    assert kbc.ccb() == 0x47


def test_only_the_newest_controller_reply_waits(kbc: Kbc) -> None:
    """A guest that issues commands without reading cannot make replies pile up."""
    for _ in range(1000):
        kbc.cmd(0xAA)
    kbc.cmd(0xAB)
    assert kbc.drain() == [0x55, 0x00]  # the first filled the buffer; the newest waited


def test_input_port_test_inputs_and_password_queries_answer(kbc: Kbc) -> None:
    kbc.cmd(0xC0)
    assert kbc.drain() == [0x80]
    kbc.cmd(0xE0)
    assert kbc.drain() == [0x00]
    kbc.cmd(0xA4)
    assert kbc.drain() == [0xF1]  # no password installed


def test_write_keyboard_and_aux_output_buffer_commands(kbc: Kbc) -> None:
    """0xD2 puts the next byte in the output buffer as keyboard data, 0xD3 as aux data."""
    kbc.set_ccb(CCB_XLATE | CCB_KBD_INT | CCB_AUX_INT)
    kbc.cmd(0xD2)
    kbc.data(0x1C)
    assert kbc.status() & (STATUS_OBF | STATUS_AUX_OBF) == STATUS_OBF
    assert kbc.irq1.level and not kbc.irq12.level
    assert kbc.drain() == [0x1C]  # written by the host: not translated
    kbc.cmd(0xD3)
    kbc.data(0x5A)
    assert kbc.status() & (STATUS_OBF | STATUS_AUX_OBF) == STATUS_OBF | STATUS_AUX_OBF
    assert kbc.irq12.level and not kbc.irq1.level
    assert kbc.drain() == [0x5A]
    assert not kbc.irq12.level


def test_bytes_for_the_absent_mouse_time_out_with_0xfe(kbc: Kbc) -> None:
    """0xD4 sends a byte to the aux port; nothing is there, so 0xFE comes back as aux data
    with the time-out bit, and the next byte for the keyboard clears the bit."""
    kbc.cmd(0xD4)
    kbc.data(0xFF)  # a mouse reset
    status = kbc.status()
    assert status & STATUS_TIMEOUT and status & STATUS_AUX_OBF
    assert kbc.drain() == [0xFE]
    for _ in range(100):
        kbc.cmd(0xD4)
        kbc.data(0xF2)
    assert len(kbc.drain()) <= 17  # bounded
    kbc.data(0xEE)
    assert not kbc.status() & STATUS_TIMEOUT
    assert kbc.drain() == [0xEE]


def test_aux_disable_holds_aux_bytes(kbc: Kbc) -> None:
    kbc.cmd(0xA7)
    kbc.cmd(0xD4)
    kbc.data(0xF4)
    assert kbc.drain() == []
    kbc.cmd(0xA8)
    assert kbc.drain() == [0xFE]


def test_reset_paths_still_reach_on_reset(kbc: Kbc) -> None:
    kbc.cmd(0xFE)
    kbc.cmd(0xD1)
    kbc.data(0xDE)
    assert kbc.resets == 2


# --- the keyboard through the controller -----------------------------------------------------

def test_keyboard_reset_acks_then_passes_its_self_test(kbc: Kbc) -> None:
    """0xFF -> 0xFA then 0xAA (BAT passed)."""
    kbc.data(0xFF)
    assert kbc.drain() == [0xFA, 0xAA]


@pytest.mark.parametrize("ccb, expected", [(0x04, [0xFA, 0xAB, 0x83]),
                                           (0x44, [0xFA, 0xAB, 0x41])])
def test_identify_returns_the_mf2_id_translated_or_not(kbc: Kbc, ccb: int,
                                                      expected: list[int]) -> None:
    """0xF2 -> ACK, AB 83; through translation the 83 reads 41, as on real controllers."""
    kbc.set_ccb(ccb)
    kbc.data(0xF2)
    assert kbc.drain() == expected


def test_echo_leds_and_typematic(kbc: Kbc) -> None:
    kbc.data(0xEE)
    assert kbc.drain() == [0xEE]
    kbc.data(0xED)
    assert kbc.drain() == [0xFA]
    kbc.data(0x05)
    assert kbc.drain() == [0xFA]
    assert kbc.dev.keyboard.leds == 0x05
    kbc.data(0xF3, 0x20)
    assert kbc.drain() == [0xFA, 0xFA]  # the first ACK was already in the output buffer
    assert kbc.dev.keyboard.typematic == 0x20


def test_a_command_where_data_is_due_runs_as_a_command(kbc: Kbc) -> None:
    kbc.data(0xED)
    kbc.drain()
    kbc.data(0xF2)  # not an LED byte: a new command
    assert kbc.drain() == [0xFA, 0xAB, 0x41]
    assert kbc.dev.keyboard.leds == 0


def test_scan_code_set_get_and_set(kbc: Kbc) -> None:
    kbc.set_ccb(0x04)  # no translation: raw keyboard bytes
    kbc.data(0xF0)
    kbc.drain()
    kbc.data(0x00)
    assert kbc.drain() == [0xFA, 0x02]
    kbc.data(0xF0)
    kbc.drain()
    kbc.data(0x01)
    assert kbc.drain() == [0xFA]
    kbc.dev.key(KEY_A, True)
    kbc.dev.key(KEY_A, False)
    assert kbc.drain() == [0x1E, 0x9E]  # set 1 from the keyboard itself
    kbc.data(0xF0)
    kbc.drain()
    kbc.data(0x03)
    assert kbc.drain() == [0xFE]  # set 3 is not offered
    assert kbc.dev.keyboard.scan_set == 1


def test_unknown_keyboard_commands_are_answered_resend(kbc: Kbc) -> None:
    kbc.data(0x42)
    assert kbc.drain() == [0xFE]


def test_resend_repeats_the_last_byte(kbc: Kbc) -> None:
    kbc.data(0xF2)
    assert kbc.drain() == [0xFA, 0xAB, 0x41]
    kbc.data(0xFE)
    assert kbc.drain() == [0x41]


def test_set2_make_and_break_codes_without_translation(kbc: Kbc) -> None:
    kbc.set_ccb(0x04)
    kbc.dev.key(KEY_A, True)
    kbc.dev.key(KEY_A, False)
    kbc.dev.key(KEY_UP, True)
    kbc.dev.key(KEY_UP, False)
    assert kbc.drain() == [0x1C, 0xF0, 0x1C, 0xE0, 0x75, 0xE0, 0xF0, 0x75]


def test_translation_turns_set2_into_set1(kbc: Kbc) -> None:
    """Command byte bit 6: the 8042 maps set 2 to set 1 and folds 0xF0 into bit 7."""
    kbc.dev.key(KEY_A, True)
    kbc.dev.key(KEY_A, False)
    kbc.dev.key(KEY_UP, True)
    kbc.dev.key(KEY_UP, False)
    assert kbc.drain() == [0x1E, 0x9E, 0xE0, 0x48, 0xE0, 0xC8]


def test_translated_set2_equals_the_keyboards_own_set1_for_every_key() -> None:
    """The two paths to set 1 (keyboard in set 1, or set 2 through the 8042) must agree."""
    for code in SET2_TO_SET1:
        if code == 0x00:
            continue
        for full in (code, 0xE000 | code):
            for down in (True, False):
                translated = []
                pending = False
                for byte in key_bytes(full, down, 2):
                    if byte == 0xF0:
                        pending = True
                        continue
                    value = kbc_mod.TRANSLATE_SET2[byte] | (0x80 if pending else 0)
                    pending = False
                    translated.append(value)
                assert bytes(translated) == key_bytes(full, down, 1), hex(full)


def test_irq1_rises_per_byte_when_enabled_and_drops_on_read(kbc: Kbc) -> None:
    """IRQ 1 follows OBF for keyboard bytes; each byte is a new rising edge (ISA IRQs are
    edge-triggered at the 8259)."""
    kbc.dev.key(KEY_A, True)
    assert not kbc.irq1.level  # command byte bit 0 is clear after POST
    kbc.set_ccb(0x44 | CCB_KBD_INT)
    assert kbc.irq1.level
    kbc.dev.key(KEY_A, False)
    assert kbc.drain() == [0x1E, 0x9E]
    assert not kbc.irq1.level
    assert kbc.irq1.rising_edges == 2
    assert not kbc.irq12.level


def test_keyboard_disable_holds_key_bytes_until_enabled(kbc: Kbc) -> None:
    kbc.cmd(0xAD)
    kbc.dev.key(KEY_A, True)
    assert kbc.drain() == []
    kbc.cmd(0xAE)
    assert kbc.drain() == [0x1E]


def test_a_byte_for_the_keyboard_reenables_its_interface(kbc: Kbc) -> None:
    kbc.cmd(0xAD)
    kbc.data(0xEE)
    assert kbc.drain() == [0xEE]
    assert not kbc.ccb() & 0x10


def test_scanning_disabled_drops_keys_and_enable_brings_them_back(kbc: Kbc) -> None:
    kbc.data(0xF5)
    assert kbc.drain() == [0xFA]
    assert not kbc.dev.key(KEY_A, True)
    kbc.data(0xF4)
    assert kbc.drain() == [0xFA]
    assert kbc.dev.key(KEY_A, True)
    assert kbc.drain() == [0x1E]


@pytest.mark.parametrize("ccb, overrun", [(0x04, 0x00), (0x44, 0xFF)])
def test_a_full_keyboard_buffer_drops_keys_and_reports_an_overrun(kbc: Kbc, ccb: int,
                                                                 overrun: int) -> None:
    kbc.set_ccb(ccb)
    queued = sum(kbc.dev.key(KEY_A, down) for _ in range(100) for down in (True, False))
    data = kbc.drain(limit=1000)
    assert len(data) <= BUFFER_SIZE + 1  # the output buffer, plus the keyboard's own
    assert data[-1] == overrun
    assert 0 < queued < 100
    assert kbc.dev.key(KEY_A, True)  # drained: keys are taken again


def test_keyboard_room_counts_down_and_is_zero_after_an_overrun() -> None:
    kbd = Ps2Keyboard()
    assert kbd.room() == BUFFER_SIZE - 1
    kbd.key(KEY_A, True)
    assert kbd.room() == BUFFER_SIZE - 2
    while kbd.key(KEY_A, True):
        pass
    assert kbd.room() == 0


def test_controller_reset_restores_firmware_state(kbc: Kbc) -> None:
    kbc.set_ccb(0x07)
    kbc.dev.key(KEY_A, True)
    kbc.dev.reset()
    assert kbc.ccb() == 0x44
    assert kbc.drain() == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["cmd", "data", "read", "status", "key"]),
                          st.integers(0, 0xFF), st.booleans()), max_size=200))
def test_any_port_storm_keeps_the_controller_consistent(ops: list[tuple[str, int, bool]]
                                                        ) -> None:
    """Random writes, reads and keys: no exception, bounded output, IRQ lines that match
    the status register."""
    kbc = Kbc()
    for op, value, flag in ops:
        if op == "cmd":
            kbc.cmd(value)
        elif op == "data":
            kbc.data(value)
        elif op == "read":
            kbc.dev.read(DATA_OFFSET, 1)
        elif op == "status":
            kbc.status()
        else:
            kbc.dev.key(value | (0xE000 if flag else 0), flag)
        status = kbc.status()
        ccb = kbc.dev._ccb
        obf, aux = bool(status & STATUS_OBF), bool(status & STATUS_AUX_OBF)
        assert kbc.irq1.level == (obf and not aux and bool(ccb & CCB_KBD_INT))
        assert kbc.irq12.level == (obf and aux and bool(ccb & CCB_AUX_INT))
    assert len(kbc.drain(limit=1000)) <= BUFFER_SIZE + 3 + 16 + 1
