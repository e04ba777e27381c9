"""`--device-process` and `--device-process-failure` parsing (pyhvm/devproc/options.py)."""

from __future__ import annotations

import pytest

from pyhvm.devproc.host import shared_backing
from pyhvm.devproc.options import DevprocOptionError, DevprocOptions, parse_device_process
from pyhvm.memory_backing import BackingSpec


def test_names_and_knobs() -> None:
    assert parse_device_process("uart") == DevprocOptions(("uart",))
    options = parse_device_process("ide,pic,uart,ide,deadline=0.25,spin=40,post=off,"
                                   "seccomp=errno", "stop")
    assert options == DevprocOptions(("ide", "pic", "uart"), deadline_s=0.25, spin_us=40,
                                     posted=False, seccomp="errno", failure="stop")


@pytest.mark.parametrize("text,message", [
    ("", "name at least one device group"),
    ("deadline=1", "name at least one device group"),
    ("rtc", "name device groups from uart, pic, ide"),
    ("uart,deadline=0", "deadline=0: seconds"),
    ("uart,deadline=soon", "deadline=soon"),
    ("uart,spin=-1", "spin=-1: microseconds"),
    ("uart,spin=1000000", "spin=1000000"),
    ("uart,post=maybe", "post=maybe: write on or off"),
    ("uart,seccomp=trap", "seccomp=trap: use kill|errno|off"),
    ("uart,colour=blue", "unknown option"),
])
def test_bad_options_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(DevprocOptionError, match=message):
        parse_device_process(text)


def test_an_unknown_failure_policy_is_refused() -> None:
    with pytest.raises(DevprocOptionError, match="fail-device or stop"):
        parse_device_process("uart", "ignore")


def test_ide_in_a_device_process_moves_anonymous_ram_to_a_memfd(
        caplog: pytest.LogCaptureFixture) -> None:
    moved = shared_backing(BackingSpec(kind="anon", prealloc=True, thp=False), ("ide",))
    assert moved == BackingSpec(kind="memfd", prealloc=True, thp=False)
    assert "moved from --mem-backing anon to memfd" in caplog.text
    assert shared_backing(None, ("ide",)) == BackingSpec(kind="memfd")


def test_shared_backings_and_groups_without_dma_are_left_alone() -> None:
    file_backing = BackingSpec(kind="file", path="/tmp/x")
    assert shared_backing(file_backing, ("ide",)) is file_backing
    anon = BackingSpec()
    assert shared_backing(anon, ("uart", "pic")) is anon
    assert shared_backing(None, ("uart",)) is None
