"""One-port ISA devices under wide accesses: a word or dword `in`/`out` at the port is a
cycle per byte lane, and the lanes above belong to the next ports, not to the device
(port 0x92 from the PIIX3 datasheet, the POST code port, SeaBIOS's debug console)."""

from __future__ import annotations

import pytest

from pyhvm.bus import pio_bus
from pyhvm.devices.debugcon import DebugCon, LineLog
from pyhvm.devices.misc import POST_CODE_PORT, PostCode
from pyhvm.devices.port92 import PORT, Port92


def test_port92_word_write_sets_only_port_92_and_reads_back_with_93_floating() -> None:
    resets: list[int] = []
    port92 = Port92(lambda: resets.append(1))
    pio = pio_bus()
    pio.register(PORT, 1, port92, "port92")  # as the PC maps it
    pio.write(PORT, 2, 0xFF03)   # 0x03 to 0x92 (A20 on, fast reset), 0xFF to 0x93
    assert port92.value == 0x03 and port92.a20_enabled and resets == [1]
    assert pio.read(PORT, 2) == 0xFF03
    assert pio.read(PORT, 4) == 0xFFFFFF03
    pio.write(PORT, 4, 0x00000003)  # bit 0 already set: no second reset
    assert resets == [1]


def test_post_code_mapped_over_several_ports_answers_only_its_first() -> None:
    """Offsets are relative to the mapping: a PostCode given a wider range still owns only
    port 0x80; the others read all ones and drop writes without logging."""
    codes: list[int] = []
    post = PostCode(codes.append)
    pio = pio_bus()
    pio.register(POST_CODE_PORT, 4, post, "post")
    pio.write(POST_CODE_PORT + 1, 1, 0x55)
    pio.write(POST_CODE_PORT + 2, 2, 0x1234)
    assert codes == [] and post.last == 0
    pio.write(POST_CODE_PORT, 1, 0xA5)
    assert pio.read(POST_CODE_PORT + 1, 1) == 0xFF
    assert pio.read(POST_CODE_PORT + 3, 2) == 0xFFFF
    assert codes == [0xA5] and pio.read(POST_CODE_PORT, 1) == 0xA5


@pytest.mark.parametrize("device", [Port92(lambda: None), PostCode(lambda code: None),
                                    DebugCon(lambda data: None)])
@pytest.mark.parametrize("size", [0, 3, 16])
def test_sizes_no_bus_produces_are_a_pyhvm_bug_and_raise(device: object, size: int) -> None:
    with pytest.raises(ValueError, match="access size"):
        device.read(0, size)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="access size"):
        device.write(0, size, 0)  # type: ignore[attr-defined]


def test_debugcon_flush_emits_nothing_when_no_partial_line_waits() -> None:
    """At shutdown the log is flushed: a firmware whose last line ended in a newline gets
    no extra empty line."""
    lines: list[str] = []
    log = LineLog(lines.append)
    log.flush()
    con = DebugCon(log)
    for byte in b"Booting from Hard Disk...\n":
        con.write(0, 1, byte)
    log.flush()
    assert lines == ["Booting from Hard Disk..."]
