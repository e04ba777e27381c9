"""The console parsers in guestkit.py (no VM needed)."""

from __future__ import annotations

from tests.guestkit import Result, parse_panic, parse_result_line, parse_results, status_from_exit_code


def test_result_line_splits_fields_and_words():
    r = parse_result_line("RESULT error unknown-scenario name=foo\n")
    assert r == Result("error", {"name": "foo"}, ("unknown-scenario",))


def test_result_after_raw_bytes_on_the_same_line_is_found():
    r = parse_result_line("\x01\x02xyzRESULT exits n=3 kind=pio port=0x3f8")
    assert r is not None and r.num("port") == 0x3F8 and r.num("n") == 3


def test_non_result_lines_are_ignored():
    text = "pyhvm guest kit 0.1\ncmdline: scenario=hello\nRESULT hello ok=1 args=1\n"
    assert parse_results(text) == [Result("hello", {"ok": "1", "args": "1"})]


def test_panic_line_fields():
    text = "x\nPANIC vector=13 rip=0x101195 err=0x18 cs=0x33\n"
    assert parse_panic(text) == {"vector": "13", "rip": "0x101195", "err": "0x18", "cs": "0x33"}
    assert parse_panic("all fine\n") is None


def test_debug_exit_code_decoding():
    assert status_from_exit_code(1) == 0
    assert status_from_exit_code(7) == 3
    assert status_from_exit_code(0) is None
    assert status_from_exit_code(2) is None
