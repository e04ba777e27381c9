"""Console output: written through at each newline, otherwise gathered until the flush."""

from __future__ import annotations

import io
from typing import Callable

import pytest

from pyhvm.backends.console import Console, ConsoleError, open_console


class Sink(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


def test_bytes_wait_for_a_newline_or_the_scheduled_flush() -> None:
    sink = Sink()
    console = Console(sink, None)
    scheduled: list[Callable[[], None]] = []
    console.schedule = scheduled.append
    for byte in b"abc":
        console.write(bytes([byte]))
    assert sink.getvalue() == b"" and len(scheduled) == 1  # one flush pending, not three
    scheduled.pop()()
    assert sink.getvalue() == b"abc"
    console.write(b"line\n")
    assert sink.getvalue() == b"abcline\n"  # a newline writes through at once


def test_a_newline_flush_does_not_pile_up_timers() -> None:
    """However often newlines flush, at most one timed flush is pending at a time."""
    console = Console(Sink(), None)
    scheduled: list[Callable[[], None]] = []
    console.schedule = scheduled.append
    for _ in range(50):
        console.write(b"x")
        console.write(b"\n")
    assert len(scheduled) == 1


def test_close_flushes_what_is_left() -> None:
    sink = Sink()
    console = Console(sink, None)
    console.schedule = lambda flush: None
    console.write(b"tail")
    console.close()
    assert sink.getvalue() == b"tail"


def test_a_closed_reader_does_not_stop_the_guest() -> None:
    class Broken(Sink):
        def write(self, data: object) -> int:
            raise BrokenPipeError

    console = Console(Broken(), None)
    console.write(b"x\n")
    console.write(b"y\n")  # dropped silently after the first failure


def test_serial_specs_follow_qemu_and_reject_the_rest(tmp_path) -> None:
    path = tmp_path / "com1.log"
    console = open_console(f"file:{path}")
    console.write(b"hello\n")
    console.close()
    assert path.read_bytes() == b"hello\n"
    with pytest.raises(ConsoleError, match="unknown --serial"):
        open_console("tcp:127.0.0.1:4444")
    with pytest.raises(ConsoleError, match="cannot open"):
        open_console(f"file:{tmp_path}/no/such/dir/log")
