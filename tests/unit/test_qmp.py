"""QMP without KVM: the protocol as a pure object (bytes in, bytes out), the machine's
commands against a fake machine, the server on a real socket in a real event loop, and the
`pyhvm top` client and screen."""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhvm.bus import pio_bus
from pyhvm.control import top
from pyhvm.control.qmp import (MAX_MESSAGE, MAX_NESTING, Arg, Command, JsonSplitter, QmpAddress,
                               QmpError, QmpServer, QmpSession, _loopback_addrinfo,
                               exit_counters, machine_commands, parse_address, reason_name,
                               version_object)
from pyhvm.machine.config import ConfigError
from pyhvm.runtime.eventloop import EventLoop

# --- helpers -------------------------------------------------------------------------------


def replies(data: bytes) -> list[dict[str, Any]]:
    """Every message in a reply stream: one JSON object per CRLF-terminated line."""
    assert data == b"" or data.endswith(b"\r\n")
    return [json.loads(line) for line in data.split(b"\r\n") if line]


def msg(execute: str, **fields: Any) -> bytes:
    return json.dumps({"execute": execute, **fields}).encode()


def echo(args: dict[str, Any]) -> object:
    return args


def boom(args: dict[str, Any]) -> object:
    raise RuntimeError("handler bug")


def refuse(args: dict[str, Any]) -> object:
    raise QmpError("not now", "DeviceNotActive")


TEST_COMMANDS = {c.name: c for c in [
    Command("x-echo", echo, (Arg("s", "str"), Arg("n", "int"), Arg("flag", "bool"),
                             Arg("list", "[str]"))),
    Command("x-need", echo, (Arg("name", "str", required=True),)),
    Command("x-boom", boom),
    Command("x-refuse", refuse),
    Command("x-unencodable", lambda args: {"value": object()}),
]}


def session(negotiated: bool = True, **kwargs: Any) -> QmpSession:
    s = QmpSession(TEST_COMMANDS, **kwargs)
    if negotiated:
        assert replies(s.feed(msg("qmp_capabilities"))) == [{"return": {}}]
    return s


def one(s: QmpSession, data: bytes) -> dict[str, Any]:
    out = replies(s.feed(data))
    assert len(out) == 1, out
    return out[0]


def error_class(reply: dict[str, Any]) -> str:
    assert set(reply["error"]) == {"class", "desc"}, reply
    assert isinstance(reply["error"]["desc"], str) and reply["error"]["desc"]
    return reply["error"]["class"]


# --- greeting and negotiation -------------------------------------------------------------


def test_greeting_has_qemu_version_shape_and_no_capabilities() -> None:
    greeting = replies(QmpSession({}).greeting())
    assert len(greeting) == 1
    qmp = greeting[0]["QMP"]
    assert qmp["capabilities"] == []
    assert set(qmp["version"]["qemu"]) == {"major", "minor", "micro"}
    assert all(isinstance(v, int) for v in qmp["version"]["qemu"].values())
    assert qmp["version"]["package"].startswith("pyhvm ")


def test_version_object_parses_the_package_version() -> None:
    assert version_object("1.2.3")["qemu"] == {"major": 1, "minor": 2, "micro": 3}
    assert version_object("0.4")["qemu"] == {"major": 0, "minor": 4, "micro": 0}
    assert version_object("2.0.dev1")["qemu"] == {"major": 2, "minor": 0, "micro": 0}


def test_commands_before_negotiation_are_command_not_found_with_id() -> None:
    s = session(negotiated=False)
    reply = one(s, msg("query-status", id="a1"))
    assert error_class(reply) == "CommandNotFound" and reply["id"] == "a1"
    assert "qmp_capabilities" in reply["error"]["desc"]
    assert error_class(one(s, msg("no-such-command"))) == "CommandNotFound"
    assert not s.negotiated


def test_capabilities_negotiation_then_commands_work_and_repeat_is_refused() -> None:
    s = session(negotiated=False)
    assert one(s, msg("qmp_capabilities", id=1)) == {"return": {}, "id": 1}
    assert s.negotiated
    assert one(s, msg("x-echo", arguments={"s": "hi"})) == {"return": {"s": "hi"}}
    again = one(s, msg("qmp_capabilities", id=2))
    assert error_class(again) == "CommandNotFound" and again["id"] == 2


def test_capabilities_that_were_not_offered_are_refused() -> None:
    s = session(negotiated=False)
    reply = one(s, msg("qmp_capabilities", arguments={"enable": ["oob"]}))
    assert error_class(reply) == "GenericError" and "oob" in reply["error"]["desc"]
    assert error_class(one(s, msg("qmp_capabilities", arguments={"enable": "oob"}))) == \
        "GenericError"
    assert not s.negotiated
    assert one(s, msg("qmp_capabilities", arguments={"enable": []})) == {"return": {}}


# --- replies ------------------------------------------------------------------------------


@pytest.mark.parametrize("ident", ["abc", 7, 1.5, None, True, [1, "x"], {"k": {"n": [2]}}])
def test_every_reply_echoes_the_id_whatever_its_json_type(ident: object) -> None:
    s = session()
    assert one(s, msg("query-version", id=ident))["id"] == ident
    assert one(s, msg("no-such", id=ident))["id"] == ident
    assert one(s, msg("x-need", id=ident))["id"] == ident


def test_reply_without_id_has_no_id() -> None:
    assert "id" not in one(session(), msg("query-version"))


def test_query_version_and_query_commands() -> None:
    s = session(version=version_object("3.4.5"))
    assert one(s, msg("query-version"))["return"] == {
        "qemu": {"major": 3, "minor": 4, "micro": 5}, "package": "pyhvm 3.4.5"}
    names = [c["name"] for c in one(s, msg("query-commands"))["return"]]
    assert names == sorted(names)
    assert {"qmp_capabilities", "query-version", "query-commands", "x-echo"} <= set(names)


def test_unknown_command_is_command_not_found() -> None:
    reply = one(session(), msg("query-flux-capacitor", id=3))
    assert error_class(reply) == "CommandNotFound"
    assert "query-flux-capacitor" in reply["error"]["desc"]


@pytest.mark.parametrize("arguments, needle", [
    ({"bogus": 1}, "'bogus' is unexpected"),
    ({"s": 5}, "'s'"),
    ({"n": "5"}, "'n'"),
    ({"n": True}, "'n'"),         # a JSON boolean is not an integer
    ({"flag": 1}, "'flag'"),
    ({"list": ["a", 2]}, "'list'"),
])
def test_wrong_arguments_are_generic_errors(arguments: dict[str, Any], needle: str) -> None:
    reply = one(session(), msg("x-echo", arguments=arguments, id="w"))
    assert error_class(reply) == "GenericError" and needle in reply["error"]["desc"]
    assert reply["id"] == "w"


def test_missing_required_argument_is_a_generic_error() -> None:
    reply = one(session(), msg("x-need"))
    assert error_class(reply) == "GenericError" and "'name' is missing" in reply["error"]["desc"]
    assert one(session(), msg("x-need", arguments={"name": "n"}))["return"] == {"name": "n"}


@pytest.mark.parametrize("message, needle", [
    ({"arguments": {}}, "lacks member 'execute'"),
    ({"execute": 5}, "'execute' must be a string"),
    ({"execute": "x-echo", "arguments": [1]}, "'arguments' must be an object"),
    ({"execute": "x-echo", "extra": 1}, "'extra' is unexpected"),
    ({"exec-oob": "x-echo"}, "exec-oob"),
])
def test_malformed_requests_are_generic_errors(message: dict[str, Any], needle: str) -> None:
    reply = one(session(), json.dumps(message).encode())
    assert error_class(reply) == "GenericError" and needle in reply["error"]["desc"]


def test_a_json_value_that_is_not_an_object_is_refused() -> None:
    reply = one(session(), b"[1, 2, 3]")
    assert error_class(reply) == "GenericError" and "JSON object" in reply["error"]["desc"]


def test_handler_errors_become_replies_and_the_session_goes_on() -> None:
    s = session()
    refused = one(s, msg("x-refuse", id=1))
    assert refused == {"error": {"class": "DeviceNotActive", "desc": "not now"}, "id": 1}
    crashed = one(s, msg("x-boom", id=2))
    assert error_class(crashed) == "GenericError" and "handler bug" in crashed["error"]["desc"]
    assert one(s, msg("query-version", id=3))["id"] == 3
    unencodable = one(s, msg("x-unencodable", id=4))
    assert error_class(unencodable) == "GenericError" and unencodable["id"] == 4


# --- framing and malformed input ------------------------------------------------------------


def test_messages_need_no_separator_and_may_arrive_byte_by_byte() -> None:
    s = session()
    stream = msg("x-echo", arguments={"n": 1}) + msg("x-echo", arguments={"n": 2}) + \
        b" \r\n\t" + msg("x-echo", arguments={"n": 3})
    out = b"".join(s.feed(stream[i:i + 1]) for i in range(len(stream)))
    assert [r["return"]["n"] for r in replies(out)] == [1, 2, 3]


def test_brackets_and_escaped_quotes_inside_strings_do_not_end_a_message() -> None:
    tricky = 'a}b]c{d[e"f\\g\u00e9\u20ac'
    reply = one(session(), msg("x-echo", arguments={"s": tricky}))
    assert reply["return"]["s"] == tricky


def test_malformed_json_is_a_generic_error_and_the_next_message_is_answered() -> None:
    s = session()
    out = replies(s.feed(b'{"execute": }\n' + msg("query-version", id="after")))
    assert len(out) == 2
    assert error_class(out[0]) == "GenericError" and "JSON parse error" in out[0]["error"]["desc"]
    assert out[1]["id"] == "after" and "return" in out[1]


@pytest.mark.parametrize("line", [b"this is not json\n", b"}\n", b"]]]\n", b"123 456\n",
                                  b'"a string"\n', b"\x01\n"])
def test_a_garbage_line_gets_one_error_and_the_session_recovers(line: bytes) -> None:
    s = session()
    out = replies(s.feed(line))
    assert len(out) == 1 and error_class(out[0]) == "GenericError"
    assert one(s, msg("query-version", id=9))["id"] == 9


def test_garbage_ends_at_an_opening_brace_as_well() -> None:
    out = replies(session().feed(b"garbage" + msg("query-version", id=1)))
    assert error_class(out[0]) == "GenericError" and out[1]["id"] == 1


@pytest.mark.parametrize("broken", [b'{"execute": "qu\nery"}', b'{"execute": "x\x01"}',
                                    b'{"execute"\x02: 1}', b'{"execute": "x\xff"}'])
def test_a_lexical_error_abandons_the_message_with_one_error(broken: bytes) -> None:
    s = session()
    out = replies(s.feed(broken + b"\n"))
    assert len(out) == 1 and error_class(out[0]) == "GenericError"
    assert one(s, msg("query-version", id=9))["id"] == 9


def test_a_control_character_resynchronises_after_an_unterminated_message() -> None:
    s = session()
    assert s.feed(b'{"execute": "query-version", "arguments": {') == b""  # waits for more
    out = replies(s.feed(b"\x1b" + msg("query-version", id="fresh")))
    assert error_class(out[0]) == "GenericError"
    assert out[1]["id"] == "fresh"


def test_invalid_utf8_and_non_json_constants_are_parse_errors() -> None:
    s = session()
    assert error_class(one(s, b'{"execute": "\xc3\x28"}')) == "GenericError"
    assert error_class(one(s, b'{"execute": "x-echo", "arguments": {"n": NaN}}')) == \
        "GenericError"


def test_an_oversized_message_is_refused_and_the_session_closes() -> None:
    s = session(max_message=1000)
    out = replies(s.feed(b'{"execute": "' + b"a" * 600) + s.feed(b"b" * 600))
    assert len(out) == 1 and error_class(out[0]) == "GenericError"
    assert "larger than" in out[0]["error"]["desc"]
    assert s.closing
    assert s.feed(msg("query-version")) == b""
    assert s.event("STOP") == b""


def test_an_oversized_garbage_run_without_newline_closes_too() -> None:
    s = session(max_message=1000)
    out = replies(s.feed(b"x" * 2000))
    assert [error_class(r) for r in out] == ["GenericError", "GenericError"]
    assert s.closing


def test_the_default_message_limit_is_one_mebibyte() -> None:
    s = session()
    big = msg("x-echo", arguments={"s": "a" * (MAX_MESSAGE - 100)})
    assert one(s, big)["return"]["s"] == "a" * (MAX_MESSAGE - 100)
    assert not s.closing
    out = replies(s.feed(b'{"s": "' + b"a" * (MAX_MESSAGE + 1)))
    assert len(out) == 1 and s.closing


def test_nesting_beyond_the_limit_closes_the_session() -> None:
    s = session()
    out = replies(s.feed(b"[" * (MAX_NESTING + 1)))
    assert error_class(out[0]) == "GenericError" and s.closing


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_never_raise_and_a_resync_always_recovers(junk: bytes,
                                                                  chunk: int) -> None:
    s = session()
    for i in range(0, len(junk), chunk):
        for reply in replies(s.feed(junk[i:i + chunk])):
            assert "return" in reply or error_class(reply) in ("GenericError",
                                                               "CommandNotFound")
    if not s.closing:
        # The spec's recovery: a control character, then a fresh message.
        out = replies(s.feed(b"\x01\n" + msg("query-version", id="ok")))
        assert out and out[-1].get("id") == "ok"


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(), children, max_size=4), max_leaves=20),
       st.integers(min_value=1, max_value=17))
def test_any_json_argument_survives_any_chunking(value: object, chunk: int) -> None:
    splitter = JsonSplitter()
    text = json.dumps({"execute": "x", "arguments": {"v": value}}).encode()
    found: list[object] = []
    for i in range(0, len(text), chunk):
        found += splitter.feed(text[i:i + chunk])
    assert found == [text]


# --- events --------------------------------------------------------------------------------


def test_events_wait_for_negotiation_and_carry_a_timestamp() -> None:
    s = session(negotiated=False)
    assert s.event("STOP") == b""
    s.feed(msg("qmp_capabilities"))
    (stop,) = replies(s.event("STOP"))
    assert stop["event"] == "STOP" and "data" not in stop
    assert set(stop["timestamp"]) == {"seconds", "microseconds"}
    assert abs(stop["timestamp"]["seconds"] - time.time()) < 60
    (reset,) = replies(s.event("RESET", {"guest": False, "reason": "host-qmp-system-reset"},
                               (12, 34)))
    assert reset == {"event": "RESET", "data": {"guest": False,
                                                 "reason": "host-qmp-system-reset"},
                     "timestamp": {"seconds": 12, "microseconds": 34}}


# --- the machine's commands -----------------------------------------------------------------


class FakeMachine:
    """What QmpServer and the commands use of a Machine, with a calls log."""

    def __init__(self, loop: EventLoop | None = None) -> None:
        self.paused = False
        self.stopping = False
        self.exit_status: int | None = None
        self.listeners: list[Any] = []
        self.calls: list[tuple[Any, ...]] = []
        self.loop: Any = loop if loop is not None else SimpleNamespace(timer_callbacks=0)
        runner = SimpleNamespace(pio_exits=[0] * 0x10000, mmio_exits=0,
                                 other_exits=Counter(), state="running",
                                 thread=threading.current_thread(),
                                 vcpu=SimpleNamespace(id=0))
        self.runners = [runner]
        bus = pio_bus()
        bus.register(0x3F8, 8, object(), "com1")  # type: ignore[arg-type]
        self.buses = SimpleNamespace(pio=bus)
        self.irqchip = SimpleNamespace(mode="kernel", stats=lambda: {"irq_line_changes": {4: 3}})

    def _emit(self, name: str, data: dict[str, object] | None = None) -> None:
        for listener in self.listeners:
            listener(name, data or {})

    def pause(self) -> bool:
        self.calls.append(("pause",))
        was, self.paused = self.paused, True
        if not was:
            self._emit("STOP")
        return not was

    def resume(self) -> bool:
        self.calls.append(("resume",))
        was, self.paused = self.paused, False
        if was:
            self._emit("RESUME")
        return was

    def request_reset(self, guest: bool = False) -> None:
        self.calls.append(("reset", guest))

    def stop(self, status: int, reason: str, cause: str | None = None) -> None:
        self.calls.append(("stop", status, cause))
        if self.exit_status is None:
            self.exit_status = status
            self._emit("SHUTDOWN", {"guest": False, "reason": cause})
        self.stopping = True

    def stats(self) -> dict[str, object]:
        return {"irqchip": "kernel", "exits": 5}


def machine_session(machine: FakeMachine, counters: Any = None) -> QmpSession:
    s = QmpSession(machine_commands(machine, counters))
    s.feed(msg("qmp_capabilities"))
    return s


def test_query_status_follows_pause_resume_and_shutdown() -> None:
    machine = FakeMachine()
    s = machine_session(machine)
    assert one(s, msg("query-status"))["return"] == {"status": "running", "running": True,
                                                     "singlestep": False}
    assert one(s, msg("stop", id=1)) == {"return": {}, "id": 1}
    assert one(s, msg("query-status"))["return"] == {"status": "paused", "running": False,
                                                     "singlestep": False}
    assert one(s, msg("stop")) == {"return": {}}  # already paused: still a success
    assert one(s, msg("cont")) == {"return": {}}
    assert one(s, msg("cont")) == {"return": {}}  # already running: still a success
    assert one(s, msg("query-status"))["return"]["status"] == "running"
    assert machine.calls == [("pause",), ("pause",), ("resume",), ("resume",)]


def test_system_reset_and_quit_reach_the_machine() -> None:
    machine = FakeMachine()
    s = machine_session(machine)
    assert one(s, msg("system_reset")) == {"return": {}}
    assert one(s, msg("quit", id="q")) == {"return": {}, "id": "q"}
    assert machine.calls == [("reset", False), ("stop", 0, "host-qmp-quit")]
    assert one(s, msg("query-status"))["return"]["status"] == "shutdown"


def test_pyhvm_commands_return_stats_and_counters() -> None:
    machine = FakeMachine()
    s = machine_session(machine, counters=lambda: {"exits": 42})
    assert one(s, msg("x-pyhvm-stats"))["return"] == {"irqchip": "kernel", "exits": 5}
    assert one(s, msg("x-pyhvm-exit-counters"))["return"] == {"exits": 42}
    assert error_class(one(s, msg("stop", arguments={"now": True}))) == "GenericError"


def test_exit_counters_sum_reasons_devices_and_ports() -> None:
    machine = FakeMachine()
    runner = machine.runners[0]
    runner.pio_exits[0x3F8] = 10
    runner.pio_exits[0x3FD] = 30
    runner.pio_exits[0x80] = 5  # nobody claims the POST port in this fake
    runner.mmio_exits = 2
    runner.other_exits.update({"HltExit": 7, "IrqWindowOpenExit": 1})
    counters = exit_counters(machine)  # type: ignore[arg-type]
    assert counters["exits"] == 10 + 30 + 5 + 2 + 7 + 1
    assert counters["by_reason"] == {"io": 45, "mmio": 2, "hlt": 7, "irq_window_open": 1}
    assert counters["by_device"] == {"com1": 40, "unclaimed": 5, "mmio": 2}
    assert counters["ports"] == [{"port": 0x3FD, "device": "com1", "count": 30},
                                 {"port": 0x3F8, "device": "com1", "count": 10},
                                 {"port": 0x80, "device": "unclaimed", "count": 5}]
    assert counters["interrupts"] == {"source": "line-raises", "total": 2, "by_irq": {"4": 2}}
    assert counters["vcpus"] == [{"id": 0, "state": "running"}]
    assert counters["status"] == "running" and counters["irqchip"] == "kernel"
    json.dumps(counters)  # it must travel as JSON


def test_exit_counters_under_the_userspace_pic_count_injections() -> None:
    machine = FakeMachine()
    machine.irqchip = SimpleNamespace(mode="user", stats=lambda: {
        "interrupts_injected": 9, "pic_acknowledged": [8, 0, 0, 0, 1] + [0] * 11})
    interrupts = exit_counters(machine)["interrupts"]  # type: ignore[arg-type]
    assert interrupts == {"source": "injected", "total": 9, "by_irq": {"0": 8, "4": 1}}


@pytest.mark.parametrize("name, expected", [("HltExit", "hlt"),
                                            ("IrqWindowOpenExit", "irq_window_open"),
                                            ("InterruptedExit", "intr"),
                                            ("FailEntryExit", "fail_entry"),
                                            ("Exit", "exit")])
def test_reason_names(name: str, expected: str) -> None:
    assert reason_name(name) == expected


# --- addresses ------------------------------------------------------------------------------


def test_parse_unix_server_addresses() -> None:
    assert parse_address("unix:/tmp/q.sock,server,wait=off") == \
        QmpAddress("unix", path="/tmp/q.sock", wait=False)
    assert parse_address("unix:/tmp/q.sock,server=on,nowait").wait is False
    assert parse_address("unix:/tmp/q.sock,server").wait is True  # QEMU's default
    assert str(parse_address("unix:/tmp/q.sock,server")) == "unix:/tmp/q.sock"


def test_parse_tcp_server_addresses() -> None:
    address = parse_address("tcp:127.0.0.1:4444,server,wait=off")
    assert (address.kind, address.host, address.port, address.wait) == \
        ("tcp", "127.0.0.1", 4444, False)
    assert parse_address("tcp:[::1]:5,server").host == "::1"
    assert str(parse_address("tcp:[::1]:5,server")) == "tcp:[::1]:5"


@pytest.mark.parametrize("spec", ["unix:/tmp/q.sock", "unix:/tmp/q.sock,server=off",
                                  "unix:,server", "/tmp/q.sock,server", "tcp::4444,server",
                                  "tcp:127.0.0.1,server", "tcp:127.0.0.1:99999,server",
                                  "unix:/tmp/q,server,telnet", "unix:/tmp/q,server,wait=maybe",
                                  "unix:/" + "x" * 120 + ",server"])
def test_bad_server_addresses_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_address(spec)


@pytest.mark.parametrize("host", ["0.0.0.0", "8.8.8.8", "::"])
def test_tcp_listens_on_loopback_only(host: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        _loopback_addrinfo(QmpAddress("tcp", host=host, port=4444))


def test_client_addresses_take_a_bare_path_and_ignore_server_options() -> None:
    assert parse_address("/tmp/q.sock", server=False) == QmpAddress("unix", path="/tmp/q.sock")
    assert parse_address("unix:/tmp/q.sock,server,wait=off", server=False).path == \
        "/tmp/q.sock"
    assert parse_address("tcp::4444", server=False).host == "localhost"


# --- the server on a socket, in an event loop -------------------------------------------------


class LineClient:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(path))
        self.buf = b""

    def line(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def reply(self) -> dict[str, Any]:
        """The next reply, skipping events."""
        while True:
            message = self.line()
            if "event" not in message:
                return message

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def negotiate(self) -> None:
        assert "QMP" in self.line()
        self.send(msg("qmp_capabilities"))
        assert self.line() == {"return": {}}

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[QmpServer, FakeMachine, Path]]:
    """A QmpServer for a fake machine, its event loop running in a thread."""
    loop = EventLoop(threading.Lock())
    loop.max_sleep = 0.05
    machine = FakeMachine(loop)
    path = tmp_path / "qmp.sock"
    server = QmpServer(machine, parse_address(f"unix:{path},server,wait=off"))  # type: ignore
    server.listen()
    done = threading.Event()
    thread = threading.Thread(target=loop.run, args=(done.is_set,), daemon=True)
    thread.start()
    try:
        yield server, machine, path
    finally:
        done.set()
        loop.wake()
        thread.join(timeout=5)
        server.close()
        loop.close()


def test_server_greets_answers_and_broadcasts_events_to_every_client(served: Any) -> None:
    server, machine, path = served
    a, b, late = LineClient(path), LineClient(path), LineClient(path)
    try:
        a.negotiate()
        b.negotiate()
        assert "QMP" in late.line()  # connected, but not negotiated: gets no events
        a.send(msg("stop", id="s"))
        seen_a = [a.line(), a.line()]
        assert {"return": {}, "id": "s"} in seen_a
        assert any(m.get("event") == "STOP" for m in seen_a)
        assert b.line()["event"] == "STOP"
        # An event raised on another thread (a vCPU) crosses into the loop.
        threading.Thread(target=machine.resume).start()
        assert b.line()["event"] == "RESUME"
        assert a.line()["event"] == "RESUME"
        late.send(msg("query-status", id=1))
        assert error_class(late.line()) == "CommandNotFound"
    finally:
        for client in (a, b, late):
            client.close()


def test_server_survives_garbage_and_cuts_only_an_oversized_client(served: Any) -> None:
    server, machine, path = served
    good, bad = LineClient(path), LineClient(path)
    try:
        good.negotiate()
        bad.negotiate()
        bad.send(b"not json at all\n")
        assert error_class(bad.line()) == "GenericError"
        bad.send(b'{"execute": "' + b"a" * (MAX_MESSAGE + 10))
        assert "larger than" in bad.line()["error"]["desc"]
        with pytest.raises(EOFError):
            bad.line()  # the server hung up after its error
        good.send(msg("query-status", id=2))
        assert good.reply()["return"]["status"] == "running"
    finally:
        good.close()
        bad.close()


def test_server_close_delivers_shutdown_and_removes_the_socket(tmp_path: Path) -> None:
    loop = EventLoop(threading.Lock())
    machine = FakeMachine(loop)
    path = tmp_path / "qmp.sock"
    server = QmpServer(machine, parse_address(f"unix:{path},server,wait=off"))  # type: ignore
    server.listen()
    client = LineClient(path)
    try:
        client.send(msg("qmp_capabilities") + msg("quit", id="bye"))
        loop.max_sleep = 0.05
        deadline = time.monotonic() + 5
        loop.run(lambda: machine.stopping or time.monotonic() > deadline)
        server.close()
        assert "QMP" in client.line()
        assert client.line() == {"return": {}}
        assert client.line() == {"return": {}, "id": "bye"}
        assert client.line()["event"] == "SHUTDOWN"
        with pytest.raises(EOFError):
            client.line()
        assert not path.exists()
    finally:
        client.close()
        server.close()
        loop.close()


def test_a_stale_socket_file_is_reused_but_a_live_one_or_a_file_is_refused(
        tmp_path: Path) -> None:
    loop = EventLoop(threading.Lock())
    machine = FakeMachine(loop)
    path = tmp_path / "qmp.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a killed VM leaves
    server = QmpServer(machine, parse_address(f"unix:{path},server"))  # type: ignore
    server.listen()
    try:
        other = QmpServer(FakeMachine(loop), parse_address(f"unix:{path},server"))  # type: ignore
        with pytest.raises(ConfigError, match="another process"):
            other.listen()
    finally:
        server.close()
        loop.close()
    assert not path.exists()
    path.write_text("precious")
    with pytest.raises(ConfigError, match="not a socket"):
        QmpServer(machine, parse_address(f"unix:{path},server")).listen()  # type: ignore
    assert path.read_text() == "precious"


def test_wait_for_client_returns_once_a_client_connected(tmp_path: Path) -> None:
    loop = EventLoop(threading.Lock())
    machine = FakeMachine(loop)
    path = tmp_path / "qmp.sock"
    server = QmpServer(machine, parse_address(f"unix:{path},server"))  # type: ignore
    server.listen()
    clients: list[LineClient] = []
    timer = threading.Timer(0.2, lambda: clients.append(LineClient(path)))
    timer.start()
    try:
        server.wait_for_client()
        assert len(server.clients) == 1
        timer.join()  # the server may accept before the connecting thread has stored its client
        assert "QMP" in clients[0].line()  # greeted at once, before the guest starts
    finally:
        timer.join()
        for client in clients:
            client.close()
        server.close()
        loop.close()


# --- pyhvm top ------------------------------------------------------------------------------


def sample(t_ns: int, exits: int, com1: int, irq0: int) -> dict[str, Any]:
    return {
        "time_ns": t_ns, "status": "running", "irqchip": "user", "exits": exits,
        "by_reason": {"io": com1, "mmio": 0, "hlt": exits - com1},
        "by_device": {"com1": com1},
        "ports": [{"port": 0x3F8, "device": "com1", "count": com1}],
        "interrupts": {"source": "injected", "total": irq0, "by_irq": {"0": irq0}},
        "timer_callbacks": irq0, "vcpus": [{"id": 0, "state": "running"}],
    }


def test_top_renders_rates_from_two_samples() -> None:
    screen = top.render(sample(0, 100, 40, 10), sample(2_000_000_000, 2100, 1040, 2010),
                        title="unix:/x")
    assert "interval 2.00 s" in screen
    assert "1,000/s" in screen           # (2100 - 100) exits over 2 s
    lines = screen.splitlines()
    assert any(l.split()[:3] == ["0x03f8", "com1", "500"] for l in lines)  # 1000 over 2 s
    assert any(l.split()[:2] == ["hlt", "500"] for l in lines)
    assert any(l.split()[:2] == ["0", "1,000"] for l in lines)  # IRQ 0
    assert "injected by the userspace PIC" in screen


def test_top_counts_a_counter_that_went_back_as_zero() -> None:
    screen = top.render(sample(0, 500, 400, 10), sample(1_000_000_000, 10, 5, 10))
    assert "-" not in "".join(l.split()[1] for l in screen.splitlines()
                              if l.startswith("0x03f8"))


def test_top_once_polls_the_server(served: Any, capsys: pytest.CaptureFixture[str]) -> None:
    server, machine, path = served
    machine.runners[0].pio_exits[0x3F8] = 3
    args = argparse.Namespace(address=str(path), delay=0.1, once=True, ports=5)
    assert top._cmd_top(args) == 0
    out = capsys.readouterr().out
    assert "exits" in out and "0x03f8" in out and "\x1b[" not in out


def test_top_reports_an_unreachable_vm(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(address=str(tmp_path / "none.sock"), delay=1.0, once=True,
                              ports=5)
    assert top._cmd_top(args) == 1
    assert "cannot connect" in capsys.readouterr().err


def test_nothing_here_leaks_file_descriptors(served: Any) -> None:
    server, machine, path = served
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        client = LineClient(path)
        client.negotiate()
        client.close()
    deadline = time.monotonic() + 5
    while server.clients and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not server.clients
    assert len(os.listdir("/proc/self/fd")) <= before
