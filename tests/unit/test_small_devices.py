"""isa-debug-exit, the POST code port and the i8042's reset path."""

from __future__ import annotations

import pytest

from pyhvm.devices.debug_exit import DebugExit
from pyhvm.devices.misc import (
    COMMAND_OFFSET,
    DATA_OFFSET,
    STATUS_A2,
    STATUS_INH,
    STATUS_OBF,
    STATUS_SYS,
    I8042,
    PostCode,
)

# -- isa-debug-exit ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, value, status",
    [(1, 0, 1), (1, 0x10, 0x21), (1, 0x1FF, 0x1FF), (2, 0x1234, 0x2469), (4, 0x31, 0x63)],
)
def test_debug_exit_status_is_value_shifted_left_plus_one(
    size: int, value: int, status: int
) -> None:
    """QEMU isa-debug-exit: exit((val << 1) | 1), val masked to the access size."""
    calls: list[int] = []
    DebugExit(calls.append).write(0, size, value)
    assert calls == [status]


def test_debug_exit_reads_zero_and_do_not_exit() -> None:
    calls: list[int] = []
    dev = DebugExit(calls.append)
    assert dev.read(0, 1) == 0 and dev.read(0, 4) == 0
    assert calls == []


def test_debug_exit_rejects_impossible_access_sizes() -> None:
    """A size of 3 is a bus bug, not a guest action: fail loudly."""
    with pytest.raises(ValueError):
        DebugExit(print).write(0, 3, 0)


# -- POST code port ---------------------------------------------------------------------------


def test_post_code_write_is_logged_and_read_back() -> None:
    codes: list[int] = []
    post = PostCode(codes.append)
    assert post.read(0, 1) == 0
    post.write(0, 1, 0x3C)
    post.write(0, 2, 0xAB12)  # the high byte is for port 0x81, not ours
    assert codes == [0x3C, 0x12]
    assert post.last == 0x12
    assert post.read(0, 1) == 0x12
    assert post.read(0, 2) == 0xFF12


# -- i8042 ------------------------------------------------------------------------------------


def make_i8042() -> tuple[I8042, list[str]]:
    resets: list[str] = []
    return I8042(lambda: resets.append("reset")), resets


def test_i8042_status_after_post_has_sys_set_and_buffers_empty() -> None:
    """8042 status: SYS after self-test, keyboard not inhibited, OBF and IBF clear."""
    kbc, _ = make_i8042()
    assert kbc.read(COMMAND_OFFSET, 1) == STATUS_SYS | STATUS_INH


def test_i8042_pulse_reset_command_calls_on_reset() -> None:
    """Command 0xFE pulses output port bit 0, the CPU reset line: how Linux reboots."""
    kbc, resets = make_i8042()
    kbc.command_port.write(0, 1, 0xFE)
    assert resets == ["reset"]
    kbc.command_port.write(0, 1, 0xFF)  # pulses no line
    assert resets == ["reset"]


def test_i8042_output_port_write_with_reset_low_calls_on_reset() -> None:
    """Command 0xD1 then a data byte with bit 0 clear drives the reset line low."""
    kbc, resets = make_i8042()
    kbc.write(COMMAND_OFFSET, 1, 0xD1)
    kbc.write(DATA_OFFSET, 1, 0xDF)  # the classic "A20 on", reset line left high
    assert resets == []
    kbc.write(COMMAND_OFFSET, 1, 0xD0)
    assert kbc.read(DATA_OFFSET, 1) == 0xDF
    kbc.write(COMMAND_OFFSET, 1, 0xD1)
    kbc.write(DATA_OFFSET, 1, 0xDE)
    assert resets == ["reset"]


def test_i8042_self_test_answers_0x55_through_the_output_buffer() -> None:
    """Command 0xAA puts 0x55 in the output buffer; reading port 0x60 empties it."""
    kbc, _ = make_i8042()
    kbc.command_port.write(0, 1, 0xAA)
    assert kbc.command_port.read(0, 1) & STATUS_OBF
    assert kbc.data_port.read(0, 1) == 0x55
    assert not kbc.command_port.read(0, 1) & STATUS_OBF


def test_i8042_command_byte_read_and_write() -> None:
    """Commands 0x20/0x60 read and write the command byte; its bit 2 is the status SYS."""
    kbc, _ = make_i8042()
    kbc.command_port.write(0, 1, 0x60)
    kbc.data_port.write(0, 1, 0x61)
    assert not kbc.command_port.read(0, 1) & STATUS_SYS
    kbc.command_port.write(0, 1, 0x20)
    assert kbc.data_port.read(0, 1) == 0x61


def test_i8042_keyboard_enable_bits_follow_ad_and_ae() -> None:
    """Commands 0xAD/0xAE set and clear command byte bit 4 (keyboard disabled)."""
    kbc, _ = make_i8042()
    kbc.command_port.write(0, 1, 0xAD)
    kbc.command_port.write(0, 1, 0x20)
    assert kbc.data_port.read(0, 1) & 0x10
    kbc.command_port.write(0, 1, 0xAE)
    kbc.command_port.write(0, 1, 0x20)
    assert not kbc.data_port.read(0, 1) & 0x10


def test_i8042_unknown_commands_are_ignored_and_a2_tracks_the_port() -> None:
    """An unknown command changes nothing but A2; a data byte (here the command byte's)
    clears A2. Keyboard bytes are tested in test_i8042.py."""
    kbc, resets = make_i8042()
    kbc.command_port.write(0, 1, 0xC5)
    assert kbc.command_port.read(0, 1) == STATUS_SYS | STATUS_INH | STATUS_A2
    kbc.command_port.write(0, 1, 0x60)
    kbc.data_port.write(0, 1, 0x44)  # the command byte it already had
    assert kbc.command_port.read(0, 1) == STATUS_SYS | STATUS_INH
    assert resets == []


def test_i8042_port_views_leave_neighbouring_lanes_unmapped() -> None:
    """0x61-0x63 are not the controller's: the upper lanes of a word read float high."""
    kbc, _ = make_i8042()
    assert kbc.command_port.read(0, 2) == 0xFF00 | STATUS_SYS | STATUS_INH
    assert kbc.read(2, 1) == 0xFF
