"""QMP, the QEMU Machine Protocol, served on a control socket (`pyhvm run --qmp ...`).

Implemented from the protocol spec (QEMU's docs/interop/qmp-spec): the server greets each
client, accepts nothing but `qmp_capabilities` until that is sent, then answers commands
(`{"execute": ..., "arguments": ..., "id": ...}`) with `{"return": ...}` or
`{"error": {"class": ..., "desc": ...}}`, echoing the id, and sends asynchronous events
(STOP, RESUME, RESET, SHUTDOWN) to every negotiated client. So QEMU's own client library,
`qemu.qmp`, and its tools drive a pyhvm VM as they drive QEMU.

Three layers, so that the protocol can be tested without a socket or a VM:
- `JsonSplitter` cuts a byte stream into top-level JSON texts. Like QEMU, it needs no
  newlines between messages (`qemu.qmp` sends none); a lexical error (a stray byte, a
  control character, a newline inside a string) gets one error and resynchronises.
- `QmpSession` is one client's conversation as a pure object: bytes in, reply bytes out.
- `QmpServer` puts sessions on sockets inside the machine's event loop (the main thread): no
  thread of its own, and a command runs between device timers like any other callback.
  Machine events may come from any thread, or from a signal handler, so they cross over
  through a deque and a wake-up pipe, never a lock.

The VM keeps running whatever a client sends: errors are replies, and only a message too
large or too deeply nested closes that client's connection.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import logging
import os
import re
import select
import socket
import stat
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from .. import __version__
from ..errors import HostError
from ..machine.config import ConfigError
from ..machine.pc import EXIT_INTERRUPTED, EXIT_POWER_OFF

if TYPE_CHECKING:
    from ..machine.pc import Machine
    from ..runtime.eventloop import EventLoop, Timer

log = logging.getLogger("pyhvm.qmp")

MAX_MESSAGE = 1 << 20       # bytes of one message (or run of garbage) before the client is cut
MAX_NESTING = 64            # QMP commands are shallow; this keeps json.loads off recursion limits
MAX_CLIENTS = 32            # concurrent connections; more are accepted and closed at once
MAX_OUTPUT_BACKLOG = 16 << 20  # unsent reply bytes to a client that does not read: cut it
FLUSH_RETRY_NS = 10_000_000    # a full socket buffer is retried this often (the loop has no
                               # write readiness; replies are small, so this is rare)
HANGUP_GRACE_NS = 2_000_000_000  # after a fatal error, how long the peer has to hang up
CLOSE_FLUSH_S = 1.0         # at VM exit, time to deliver what is still queued (SHUTDOWN)

GENERIC_ERROR = "GenericError"
SCREENDUMP_FORMATS = ("ppm", "png")
COMMAND_NOT_FOUND = "CommandNotFound"


# --- framing -------------------------------------------------------------------------------

# Inside a value, the bytes that change the splitter's state (everything else is copied).
_VALUE_STOP = re.compile(rb'[{}\[\]"\x00-\x08\x0b\x0c\x0e-\x1f\xff]')
# Inside a string: its end, an escape, and bytes no JSON string may hold raw.
_STRING_STOP = re.compile(rb'["\\\x00-\x1f\xff]')
_NOT_WHITESPACE = re.compile(rb"[^ \t\r\n]")
_JSON_WHITESPACE = re.compile(rb"[ \t\r\n]")
_GARBAGE_END = re.compile(rb"[\n{\[]")


@dataclass(frozen=True)
class ParseError:
    """A malformed message: answer it with a GenericError and go on."""

    desc: str


@dataclass(frozen=True)
class FatalError:
    """The client broke a limit: answer, then close its connection."""

    desc: str


class JsonSplitter:
    """Finds where each top-level JSON value ends in a stream, without parsing it.

    Only objects and arrays can be messages; anything else at the top level is reported once
    per run and skipped up to the next newline or opening bracket. Inside a value, a byte
    that no JSON text may contain there (a control character other than whitespace between
    tokens, 0xFF, a raw newline in a string) abandons the value: the spec's way for a client
    to bring the parser back to a known state.
    """

    def __init__(self, max_message: int = MAX_MESSAGE, max_nesting: int = MAX_NESTING) -> None:
        self.max_message = max_message
        self.max_nesting = max_nesting
        self._buf = bytearray()
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._garbage = False
        self._garbage_len = 0
        self._broken = False

    def feed(self, data: bytes) -> list[bytes | ParseError | FatalError]:
        """The complete values and errors found in `data`, in order."""
        out: list[bytes | ParseError | FatalError] = []
        if self._broken:
            return out
        i, n = 0, len(data)
        while i < n:
            if self._depth == 0:
                i = self._between_values(data, i, out)
            elif self._in_string:
                i = self._in_str(data, i, out)
            else:
                i = self._in_value(data, i, out)
            if self._broken:
                break
        return out

    def _between_values(self, data: bytes, i: int, out: list) -> int:
        if self._garbage:
            m = _GARBAGE_END.search(data, i)
            end = m.start() if m else len(data)
            self._garbage_len += end - i
            if self._garbage_len > self.max_message:
                return self._fatal(out, f"message larger than {self.max_message} bytes")
            if m is None:
                return len(data)
            self._garbage = False
            return end + 1 if data[end] == 0x0A else end
        m = _NOT_WHITESPACE.search(data, i)
        if m is None:
            return len(data)
        i = m.start()
        c = data[i]
        if c in b"{[":
            self._depth = 1
            self._buf = bytearray(data[i:i + 1])
            return i + 1
        out.append(ParseError(_describe_stray(data, i)))
        self._garbage = True
        self._garbage_len = 0
        return i

    def _in_value(self, data: bytes, i: int, out: list) -> int:
        m = _VALUE_STOP.search(data, i)
        if m is None:
            return self._take(data, i, len(data), out)
        j = m.start()
        c = data[j]
        i = self._take(data, i, j + 1, out)
        if self._broken:
            return i
        if c == 0x22:  # "
            self._in_string = True
        elif c in b"{[":
            self._depth += 1
            if self._depth > self.max_nesting:
                return self._fatal(out, f"JSON nested deeper than {self.max_nesting} levels")
        elif c in b"}]":
            self._depth -= 1
            if self._depth == 0:
                out.append(bytes(self._buf))
                self._buf = bytearray()
        else:
            self._abandon(out, f"JSON parse error, invalid byte {c:#04x}")
        return i

    def _in_str(self, data: bytes, i: int, out: list) -> int:
        if self._escape:  # the byte after a backslash: json.loads judges it, unless raw
            c = data[i]
            if c < 0x20 or c == 0xFF:
                self._abandon(out, f"JSON parse error, invalid byte {c:#04x} in a string")
                return i + 1
            self._escape = False
            return self._take(data, i, i + 1, out)
        m = _STRING_STOP.search(data, i)
        if m is None:
            return self._take(data, i, len(data), out)
        j = m.start()
        c = data[j]
        if c < 0x20 or c == 0xFF:
            self._take(data, i, j, out)
            if not self._broken:
                self._abandon(out, f"JSON parse error, invalid byte {c:#04x} in a string")
            return j + 1
        i = self._take(data, i, j + 1, out)
        if c == 0x22:
            self._in_string = False
        else:
            self._escape = True
        return i

    def _take(self, data: bytes, start: int, end: int, out: list) -> int:
        self._buf += data[start:end]
        if len(self._buf) > self.max_message:
            return self._fatal(out, f"message larger than {self.max_message} bytes")
        return end

    def _abandon(self, out: list, desc: str) -> None:
        """One error for the broken value; its tail is skipped like garbage, unreported."""
        out.append(ParseError(desc))
        self._reset()
        self._garbage = True
        self._garbage_len = 0

    def _fatal(self, out: list, desc: str) -> int:
        out.append(FatalError(desc))
        self._reset()
        self._broken = True
        return 0

    def _reset(self) -> None:
        self._buf = bytearray()
        self._depth = 0
        self._in_string = self._escape = self._garbage = False


def _describe_stray(data: bytes, i: int) -> str:
    token = _JSON_WHITESPACE.split(data[i:i + 16], maxsplit=1)[0]  # data[i] is not one
    if token[:1] in (b"}", b"]"):
        return f"JSON parse error, stray '{chr(token[0])}'"
    text = token.decode("utf-8", "replace")
    return f"QMP input must be a JSON object (got '{text}')"


# --- commands ------------------------------------------------------------------------------

class QmpError(Exception):
    """A command's failure, sent to the client as {"error": {"class", "desc"}}."""

    def __init__(self, desc: str, error_class: str = GENERIC_ERROR) -> None:
        super().__init__(desc)
        self.error_class = error_class
        self.desc = desc


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "bool": (bool,), "int": (int,), "number": (int, float),
    "[str]": (list,), "object": (dict,),
}
_JSON_NAMES = {"str": "string", "bool": "boolean", "int": "integer", "number": "number",
               "[str]": "array", "object": "object"}


@dataclass(frozen=True)
class Arg:
    name: str
    kind: str  # one of _JSON_TYPES
    required: bool = False


Handler = Callable[[dict[str, Any]], object]


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    args: tuple[Arg, ...] = ()


def check_arguments(command: Command, arguments: Mapping[str, Any]) -> None:
    """QEMU's QAPI checks, with its wording: unexpected, missing, mistyped parameters."""
    known = {arg.name: arg for arg in command.args}
    for name in arguments:
        if name not in known:
            raise QmpError(f"Parameter '{name}' is unexpected")
    for arg in command.args:
        if arg.name not in arguments:
            if arg.required:
                raise QmpError(f"Parameter '{arg.name}' is missing")
            continue
        value = arguments[arg.name]
        ok = isinstance(value, _JSON_TYPES[arg.kind])
        if ok and arg.kind in ("int", "number"):
            ok = not isinstance(value, bool)
        if ok and arg.kind == "[str]":
            ok = all(isinstance(item, str) for item in value)
        if not ok:
            raise QmpError(f"Invalid parameter type for '{arg.name}', expected: "
                           f"{_JSON_NAMES[arg.kind]}")


def version_object(version: str = __version__) -> dict[str, object]:
    """The version in QEMU's shape (its "qemu" triple carries pyhvm's own numbers)."""
    numbers = [int(part) if part.isdigit() else 0 for part in version.split(".")[:3]]
    major, minor, micro = (numbers + [0, 0, 0])[:3]
    return {"qemu": {"micro": micro, "minor": minor, "major": major},
            "package": f"pyhvm {version}"}


# --- one client's conversation ---------------------------------------------------------------

def encode(message: Mapping[str, object]) -> bytes:
    """One message on the wire: compact JSON and CRLF, as QEMU writes them."""
    return json.dumps(message, separators=(", ", ": ")).encode() + b"\r\n"


def _reject_constant(name: str) -> object:
    raise ValueError(f"invalid literal {name}")


class QmpSession:
    """One client: the greeting, capabilities negotiation, then command dispatch.

    Pure: `feed` takes the bytes a client sent and returns the bytes to send back, so the
    protocol is tested without sockets. `closing` turns true when the client broke a limit:
    send what `feed` returned, then close the connection.
    """

    def __init__(self, commands: Mapping[str, Command], *,
                 version: Mapping[str, object] | None = None,
                 max_message: int = MAX_MESSAGE) -> None:
        self.version = dict(version or version_object())
        self.negotiated = False
        self.closing = False
        self._splitter = JsonSplitter(max_message)
        builtins = [
            Command("qmp_capabilities", self._qmp_capabilities, (Arg("enable", "[str]"),)),
            Command("query-version", lambda args: self.version),
            Command("query-commands",
                    lambda args: [{"name": name} for name in sorted(self.commands)]),
        ]
        self.commands: dict[str, Command] = {c.name: c for c in builtins}
        self.commands.update(commands)

    def greeting(self) -> bytes:
        return encode({"QMP": {"version": self.version, "capabilities": []}})

    def feed(self, data: bytes) -> bytes:
        if self.closing:
            return b""
        out = bytearray()
        for item in self._splitter.feed(data):
            if isinstance(item, FatalError):
                out += encode(_error(GENERIC_ERROR, item.desc))
                self.closing = True
                break
            if isinstance(item, ParseError):
                out += encode(_error(GENERIC_ERROR, item.desc))
                continue
            out += self._encode_reply(self.handle_text(item))
        return bytes(out)

    @staticmethod
    def _encode_reply(reply: dict[str, object]) -> bytes:
        try:
            return encode(reply)
        except (TypeError, ValueError) as err:  # a handler returned something not JSON
            log.error("QMP reply cannot be encoded: %s", err)
            error = _error(GENERIC_ERROR, f"internal error: reply is not JSON ({err})")
            if "id" in reply:
                error["id"] = reply["id"]
            return encode(error)

    def event(self, name: str, data: Mapping[str, object] | None = None,
              timestamp: tuple[int, int] | None = None) -> bytes:
        """An event for this client: nothing before negotiation, as the spec says."""
        if not self.negotiated or self.closing:
            return b""
        if timestamp is None:
            timestamp = event_timestamp()
        message: dict[str, object] = {"event": name}
        if data:
            message["data"] = dict(data)
        message["timestamp"] = {"seconds": timestamp[0], "microseconds": timestamp[1]}
        return encode(message)

    def handle_text(self, text: bytes) -> dict[str, object]:
        """The reply to one complete JSON text."""
        try:
            message = json.loads(text.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError:
            return _error(GENERIC_ERROR, "JSON parse error, invalid UTF-8 sequence")
        except RecursionError:
            return _error(GENERIC_ERROR, "JSON parse error, nested too deeply")
        except ValueError as err:
            reason = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
            return _error(GENERIC_ERROR, f"JSON parse error, {reason}")
        return self.handle(message)

    def handle(self, message: object) -> dict[str, object]:
        """The reply to one parsed message; the client's id comes back on every reply."""
        if not isinstance(message, dict):
            return _error(GENERIC_ERROR, "QMP input must be a JSON object")
        reply = self._dispatch(message)
        if "id" in message:
            reply["id"] = message["id"]
        return reply

    def _dispatch(self, message: dict[str, object]) -> dict[str, object]:
        for key in message:
            if key == "exec-oob":
                return _error(GENERIC_ERROR, "QMP input member 'exec-oob' is unexpected: "
                                             "out-of-band execution is not offered")
            if key not in ("execute", "arguments", "id"):
                return _error(GENERIC_ERROR, f"QMP input member '{key}' is unexpected")
        if "execute" not in message:
            return _error(GENERIC_ERROR, "QMP input lacks member 'execute'")
        name = message["execute"]
        if not isinstance(name, str):
            return _error(GENERIC_ERROR, "QMP input member 'execute' must be a string")
        arguments = message.get("arguments", {})
        if not isinstance(arguments, dict):
            return _error(GENERIC_ERROR, "QMP input member 'arguments' must be an object")
        if not self.negotiated and name != "qmp_capabilities":
            return _error(COMMAND_NOT_FOUND,
                          "Expecting capabilities negotiation with 'qmp_capabilities'")
        if self.negotiated and name == "qmp_capabilities":
            return _error(COMMAND_NOT_FOUND,
                          "Capabilities negotiation is already complete, command ignored")
        command = self.commands.get(name)
        if command is None:
            return _error(COMMAND_NOT_FOUND, f"The command {name} has not been found")
        try:
            check_arguments(command, arguments)
            result = command.handler(arguments)
        except QmpError as err:
            return _error(err.error_class, err.desc)
        except Exception as err:  # a bug in a handler must not take the VM down
            log.exception("QMP command %s failed", name)
            return _error(GENERIC_ERROR, f"internal error in {name}: {err!r}")
        return {"return": {} if result is None else result}

    def _qmp_capabilities(self, args: dict[str, Any]) -> None:
        for capability in args.get("enable", []):
            raise QmpError(f"Capability '{capability}' not available")
        self.negotiated = True


def _error(error_class: str, desc: str) -> dict[str, object]:
    return {"error": {"class": error_class, "desc": desc}}


def event_timestamp() -> tuple[int, int]:
    """Wall-clock time as QMP events carry it: (seconds, microseconds)."""
    now_us = time.time_ns() // 1000
    return now_us // 1_000_000, now_us % 1_000_000


# --- the machine's commands --------------------------------------------------------------------

class ControlledMachine(Protocol):
    """What the commands need of a `Machine` (a fake in unit tests)."""

    paused: bool
    stopping: bool
    exit_status: int | None

    def pause(self) -> bool: ...

    def resume(self) -> bool: ...

    def request_reset(self, guest: bool = False) -> None: ...

    def stop(self, status: int, reason: str, cause: str | None = None) -> None: ...

    def stats(self) -> dict[str, object]: ...


def run_state(machine: ControlledMachine) -> str:
    if machine.stopping and machine.exit_status is not None:
        return "shutdown"
    return "paused" if machine.paused else "running"


def machine_commands(machine: ControlledMachine,
                     counters: Callable[[], dict[str, object]] | None = None
                     ) -> dict[str, Command]:
    """The commands that act on the VM; `counters` defaults to `exit_counters(machine)`."""

    def query_status(args: dict[str, Any]) -> dict[str, object]:
        state = run_state(machine)
        return {"status": state, "running": state == "running", "singlestep": False}

    def stop(args: dict[str, Any]) -> None:
        machine.pause()

    def cont(args: dict[str, Any]) -> None:
        machine.resume()

    def system_reset(args: dict[str, Any]) -> None:
        machine.request_reset(guest=False)

    def quit(args: dict[str, Any]) -> None:
        machine.stop(EXIT_POWER_OFF, "quit by a QMP client", "host-qmp-quit")

    def screendump(args: dict[str, Any]) -> None:
        """QEMU's screendump: the screen as PPM (its default) or PNG (format=png)."""
        fmt = args.get("format", "ppm")
        if fmt not in SCREENDUMP_FORMATS:
            raise QmpError(f"Parameter 'format' does not accept value '{fmt}'")
        if args.get("head", 0) != 0:
            raise QmpError(f"Head '{args['head']}' is not available (there is one)")
        displays = getattr(machine, "displays", None)
        if displays is None or getattr(displays, "screen", None) is None:
            raise QmpError("There is no console to take a screendump from")
        try:
            displays.screendump(args["filename"], fmt)
        except HostError as err:
            raise QmpError(str(err)) from None
        except OSError as err:
            raise QmpError(f"failed to write '{args['filename']}': "
                           f"{err.strerror or err}") from None

    get_counters = counters or (lambda: exit_counters(machine))  # type: ignore[arg-type]
    commands = [
        Command("query-status", query_status),
        Command("stop", stop),
        Command("cont", cont),
        Command("system_reset", system_reset),
        Command("quit", quit),
        Command("x-pyhvm-stats", lambda args: machine.stats()),
        Command("screendump", screendump, (Arg("filename", "str", required=True),
                                           Arg("device", "str"), Arg("head", "int"),
                                           Arg("format", "str"))),
        Command("x-pyhvm-exit-counters", lambda args: get_counters()),
        Command("x-pyhvm-sandbox", lambda args: sandbox_info(machine)),
    ]
    return {c.name: c for c in commands}


def sandbox_info(machine: object) -> dict[str, object]:
    """What `--sandbox` applied to this process (pyhvm/runtime/sandbox.py), as -v shows it."""
    report = getattr(machine, "sandbox", None)
    if report is None:
        return {"mode": "off", "layers": [], "skipped": {}, "summary": "off"}
    info: dict[str, object] = report.as_dict()
    return info


MAX_PORTS_REPORTED = 256
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def reason_name(exit_class: str) -> str:
    """'IrqWindowOpenExit' -> 'irq_window_open': the names `pyhvm top` shows."""
    name = exit_class[:-4] if exit_class.endswith("Exit") and len(exit_class) > 4 else exit_class
    return {"Interrupted": "intr"}.get(name, _CAMEL.sub("_", name).lower())


def exit_counters(machine: "Machine") -> dict[str, object]:
    """Live exit totals, cheap enough to poll every second while the guest runs.

    Reads the vCPU threads' counters without stopping them (each is a plain int or list
    slot that only its thread writes): per exit reason, per device, the busiest ports, each
    vCPU's state, and the interrupts this process can see.
    """
    ports: dict[int, int] = {}
    reasons: dict[str, int] = {}
    mmio = 0
    vcpus = []
    for runner in machine.runners:
        pio = runner.pio_exits
        for port in itertools.compress(range(len(pio)), pio):
            ports[port] = ports.get(port, 0) + pio[port]
        mmio += runner.mmio_exits
        for name, count in dict.copy(runner.other_exits).items():
            key = reason_name(name)
            reasons[key] = reasons.get(key, 0) + count
        thread = runner.thread
        state = "off" if thread.ident is None else (
            getattr(runner, "state", "running") if thread.is_alive() else "stopped")
        vcpus.append({"id": runner.vcpu.id, "state": state})
    pio_bus = machine.buses.pio
    devices: dict[str, int] = {}
    port_rows = []
    for port, count in ports.items():
        mapping = pio_bus.find(port)
        name = mapping.name if mapping is not None else "unclaimed"
        devices[name] = devices.get(name, 0) + count
        port_rows.append({"port": port, "device": name, "count": count})
    port_rows.sort(key=lambda row: (-row["count"], row["port"]))  # type: ignore[operator]
    by_reason = {"io": sum(ports.values()), "mmio": mmio, **reasons}
    if mmio:
        devices["mmio"] = mmio
    return {
        "time_ns": time.monotonic_ns(),
        "status": run_state(machine),
        "irqchip": machine.irqchip.mode,
        "exits": sum(by_reason.values()),
        "by_reason": by_reason,
        "by_device": dict(sorted(devices.items(), key=lambda item: -item[1])),
        "ports": port_rows[:MAX_PORTS_REPORTED],
        "interrupts": _interrupts(machine),
        "timer_callbacks": machine.loop.timer_callbacks,
        "vcpus": vcpus,
    }


def _interrupts(machine: "Machine") -> dict[str, object]:
    """Interrupts pyhvm sees: every one under the userspace PIC; under KVM's irqchip only the
    lines pyhvm's own devices raise (the in-kernel PIT's ticks never reach this process)."""
    stats: dict[str, Any] = machine.irqchip.stats()
    by_irq: dict[str, int] = {}
    if "pic_acknowledged" in stats:
        for irq, count in enumerate(stats["pic_acknowledged"]):
            if count:
                by_irq[str(irq)] = count
        return {"source": "injected", "total": stats.get("interrupts_injected", 0),
                "by_irq": by_irq}
    changes: dict[int, int] = stats.get("irq_line_changes", {})
    for gsi, count in changes.items():
        if count:
            by_irq[str(gsi)] = (count + 1) // 2  # raises: a line starts low
    return {"source": "line-raises", "total": sum(by_irq.values()), "by_irq": by_irq}


# --- addresses ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class QmpAddress:
    kind: str  # "unix" or "tcp"
    path: str = ""
    host: str = ""
    port: int = 0
    wait: bool = True  # server: wait for the first client before starting the guest

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


def parse_address(spec: str, *, server: bool = True) -> QmpAddress:
    """QEMU's chardev syntax: `unix:PATH,server[,wait=off]` or `tcp:HOST:PORT,server`.

    As a server pyhvm only listens (`,server` is required, as QEMU would otherwise connect
    out) and only on loopback for TCP: QMP has no authentication. A client (`pyhvm top`)
    takes the same string, options ignored, or a bare socket path.
    """
    head, *options = spec.split(",")
    wait = True
    listen = False
    for option in options:
        key, _, value = option.partition("=")
        value = value.lower()
        if value not in ("", "on", "off", "yes", "no", "true", "false"):
            raise ConfigError(f"--qmp {spec!r}: cannot read option {option!r}")
        flag = value in ("", "on", "yes", "true")
        if key == "server":
            listen = flag
        elif key == "wait":
            wait = flag
        elif key == "nowait" and not value:
            wait = False
        else:
            raise ConfigError(f"--qmp {spec!r}: unknown option {key!r} (use server, wait=off)")
    if server and not listen:
        raise ConfigError(f"--qmp {spec!r}: pyhvm only listens; add ',server' "
                          f"(e.g. unix:{head.partition(':')[2] or 'PATH'},server,wait=off)")
    kind, sep, rest = head.partition(":")
    if not sep and not server:
        kind, rest = "unix", head
    if kind == "unix":
        if not rest:
            raise ConfigError(f"--qmp {spec!r}: give a socket path, unix:PATH")
        if len(os.fsencode(rest)) >= 108:
            raise ConfigError(f"--qmp {spec!r}: the socket path is too long for a Unix socket "
                              "(107 bytes at most); use a shorter one")
        return QmpAddress("unix", path=rest, wait=wait)
    if kind == "tcp":
        host, sep, port_text = rest.rpartition(":")
        if not sep or not port_text.isdigit() or int(port_text) > 65535:
            raise ConfigError(f"--qmp {spec!r}: write tcp:HOST:PORT, e.g. tcp:127.0.0.1:4444")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not host:
            if server:
                raise ConfigError(f"--qmp {spec!r}: QMP has no authentication, so pyhvm "
                                  "listens on loopback only: write tcp:127.0.0.1:PORT")
            host = "localhost"
        return QmpAddress("tcp", host=host, port=int(port_text), wait=wait)
    raise ConfigError(f"--qmp {spec!r}: use unix:PATH,server or tcp:127.0.0.1:PORT,server")


def _loopback_addrinfo(address: QmpAddress) -> tuple:
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ConfigError(f"--qmp {address}: cannot resolve {address.host!r}: {err}") from None
    for info in infos:
        if not ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback:
            raise ConfigError(f"--qmp {address}: {address.host} is not a loopback address; "
                              "QMP has no authentication, so pyhvm listens on loopback only")
    return infos[0]


# --- the server ----------------------------------------------------------------------------------

@dataclass(eq=False)
class _Client:
    sock: socket.socket
    session: QmpSession
    fd: int
    out: bytearray = field(default_factory=bytearray)
    retry: "Timer | None" = None
    hangup: "Timer | None" = None
    draining: bool = False  # the session is over: deliver what is queued, discard input
    shut: bool = False


class QmpServer:
    """Listens on one address; each client gets a `QmpSession`. Runs in the event loop."""

    def __init__(self, machine: "Machine", address: QmpAddress) -> None:
        self.machine = machine
        self.address = address
        self.loop: "EventLoop" = machine.loop
        self.commands = machine_commands(machine)
        self.clients: dict[int, _Client] = {}
        self._events: deque[tuple[str, dict[str, object], tuple[int, int]]] = deque()
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._wake_r = self._wake_w = -1
        self._closed = False

    # --- setting up -----------------------------------------------------------------------
    def listen(self) -> None:
        """Bind and start serving from the machine's event loop."""
        self._listener = self._bind()
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.loop.add_reader(self._listener.fileno(), self._guard(self._accept_ready))
        self.loop.add_reader(self._wake_r, self._guard(self._deliver_events))
        self.machine.listeners.append(self._on_machine_event)

    def _bind(self) -> socket.socket:
        address = self.address
        if address.kind == "unix":
            self._clear_stale_socket(address.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(address.path)
                st = os.stat(address.path)
                self._inode = (st.st_dev, st.st_ino)
                sock.listen(8)
            except OSError as err:
                sock.close()
                raise ConfigError(f"--qmp {address}: cannot listen: {err.strerror}") from None
            return sock
        family, kind, proto, _, sockaddr = _loopback_addrinfo(address)
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(8)
        except OSError as err:
            sock.close()
            raise ConfigError(f"--qmp {address}: cannot listen: {err.strerror}") from None
        if address.port == 0:
            host, port = sock.getsockname()[:2]
            print(f"pyhvm: QMP listening on {QmpAddress('tcp', host=host, port=port)}",
                  file=sys.stderr)
        return sock

    @staticmethod
    def _clear_stale_socket(path: str) -> None:
        """Reuse a socket file left by a VM that died, never one in use or a regular file."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(f"--qmp unix:{path}: the path exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)
            return
        except OSError:
            return  # let bind() report what is wrong
        finally:
            probe.close()
        raise ConfigError(f"--qmp unix:{path}: another process is listening on it")

    def wait_for_client(self) -> None:
        """`wait=on`: block until the first client connects, before the guest starts.
        Ctrl-C here stops the machine before it ran (exit status 130)."""
        assert self._listener is not None
        print(f"pyhvm: waiting for a QMP client on {self.address}", file=sys.stderr)
        try:
            while not self.clients and not self.machine.stopping:
                select.select([self._listener], [], [], 0.5)
                self._accept_ready()
        except KeyboardInterrupt:
            self.machine.stop(EXIT_INTERRUPTED, "interrupted (Ctrl-C)")

    # --- event loop callbacks -------------------------------------------------------------
    def _guard(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Whatever goes wrong in the control plane, the VM goes on."""
        def guarded() -> None:
            try:
                callback()
            except Exception:
                log.exception("QMP server error (the VM keeps running)")
        return guarded

    def _accept_ready(self) -> None:
        assert self._listener is not None
        for _ in range(MAX_CLIENTS):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # EMFILE and friends: try again on the next event
                log.warning("QMP accept failed: %s", err)
                return
            if len(self.clients) >= MAX_CLIENTS:
                sock.close()
                continue
            sock.setblocking(False)
            client = _Client(sock, QmpSession(self.commands), sock.fileno())
            self.clients[client.fd] = client
            self.loop.add_reader(client.fd, self._guard(self._reader_for(client)))
            self._send(client, client.session.greeting())

    def _reader_for(self, client: _Client) -> Callable[[], None]:
        return lambda: self._readable(client)

    def _readable(self, client: _Client) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        if client.draining:
            return
        self._send(client, client.session.feed(data))
        if client.session.closing:
            self._hang_up(client)

    def _send(self, client: _Client, data: bytes) -> None:
        if data:
            client.out += data
        self._flush(client)

    def _flush(self, client: _Client) -> None:
        client.retry = None
        if self.clients.get(client.fd) is not client:
            return  # dropped meanwhile (its fd may already serve a newer client)
        while client.out:
            try:
                sent = client.sock.send(client.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(client)
                return
            del client.out[:sent]
        if client.out:
            if len(client.out) > MAX_OUTPUT_BACKLOG:
                log.warning("QMP client does not read its replies; closing it")
                self._drop(client)
            elif client.retry is None:
                client.retry = self.loop.call_at(self.loop.now_ns() + FLUSH_RETRY_NS,
                                                 lambda: self._flush(client))
        elif client.draining and not client.shut:
            client.shut = True
            try:
                client.sock.shutdown(socket.SHUT_WR)  # the client reads the error, then EOF
            except OSError:
                self._drop(client)

    def _hang_up(self, client: _Client) -> None:
        """After a fatal error: the reply goes out, then EOF; we close when the peer does
        (closing first, with its input unread, could reset the connection and lose the
        reply), or after a grace period."""
        client.draining = True
        self._flush(client)
        if self.clients.get(client.fd) is client and client.hangup is None:
            client.hangup = self.loop.call_at(self.loop.now_ns() + HANGUP_GRACE_NS,
                                              lambda: self._drop(client))

    def _drop(self, client: _Client) -> None:
        if self.clients.get(client.fd) is not client:
            return
        del self.clients[client.fd]
        for timer in (client.retry, client.hangup):
            if timer is not None:
                timer.cancel()
        try:
            self.loop.remove_reader(client.fd)
        except (KeyError, ValueError, OSError):
            pass
        client.sock.close()

    # --- events -----------------------------------------------------------------------------
    def _on_machine_event(self, name: str, data: dict[str, object]) -> None:
        """From any thread, or a signal handler: queue and wake the loop; no locks."""
        self._events.append((name, dict(data), event_timestamp()))
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass  # the pipe is full (a wake-up is pending anyway) or already closed

    def _deliver_events(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        while self._events:
            name, data, timestamp = self._events.popleft()
            for client in list(self.clients.values()):
                if not client.draining:
                    self._send(client, client.session.event(name, data, timestamp))

    # --- shutting down ----------------------------------------------------------------------
    def close(self) -> None:
        """Deliver what is queued (the SHUTDOWN event, a last reply), close every
        connection and remove the socket file. Called once the machine has stopped."""
        if self._closed:
            return
        self._closed = True
        if self._on_machine_event in self.machine.listeners:
            self.machine.listeners.remove(self._on_machine_event)
        if self._wake_r >= 0:
            self._deliver_events()
        deadline = time.monotonic() + CLOSE_FLUSH_S
        for client in list(self.clients.values()):
            remaining = deadline - time.monotonic()
            if client.out and remaining > 0:
                try:
                    client.sock.settimeout(remaining)
                    client.sock.sendall(client.out)
                except OSError:
                    pass
            self._drop(client)
        if self._listener is not None:
            try:
                self.loop.remove_reader(self._listener.fileno())
            except (KeyError, ValueError, OSError):
                pass
            self._listener.close()
            self._listener = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                try:
                    self.loop.remove_reader(fd)
                except (KeyError, ValueError, OSError):
                    pass
                os.close(fd)
        self._wake_r = self._wake_w = -1
        self._unlink()

    def _unlink(self) -> None:
        if self.address.kind != "unix" or self._inode is None:
            return
        try:
            st = os.stat(self.address.path)
            if (st.st_dev, st.st_ino) == self._inode:  # still ours, not a successor's
                os.unlink(self.address.path)
        except OSError:
            pass
        self._inode = None


def serve_qmp(machine: "Machine", spec: str) -> QmpServer:
    """`--qmp SPEC`: listen, and with `wait=on` (QEMU's default) wait for a first client.
    The caller closes the server after `machine.run()`, which removes the socket file."""
    server = QmpServer(machine, parse_address(spec))
    server.listen()
    if server.address.wait:
        try:
            server.wait_for_client()
        except BaseException:
            server.close()
            raise
    return server


__all__ = ["QmpSession", "QmpServer", "QmpAddress", "QmpError", "Command", "Arg",
           "JsonSplitter", "parse_address", "serve_qmp", "machine_commands", "exit_counters",
           "version_object", "encode"]
