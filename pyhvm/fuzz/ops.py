"""The op grammar: what a fuzz program can do to a machine, and its one-op-per-line text.

    config pc                       which configuration the program runs on (first line)
    outl 0xcf8 0x80000810           port write: outb / outw / outl PORT VALUE
    inb 0x64                        port read:  inb / inw / inl PORT
    writel 0xfebf1030 0x1000        MMIO write: writeb / writew / writel / writeq ADDR VALUE
    readq 0xfebf1000                MMIO read:  readb / readw / readl / readq ADDR
    fill 0x1000 h:0000100000800000  guest RAM gets these bytes (a PRD table, a descriptor)
    fillrep 0x2000 0x800 h:ff00     guest RAM gets the pattern repeated over LENGTH bytes
    step 1000000                    virtual time moves on (ns); due timers fire
    lag 1000000                     time jumps on, then the due timers fire, all late
    repeat 0x1000 2                 the previous 2 ops run again 0x1000 times
    event rx h:4142                 a backend event of the configuration (name, then args)
    # comment

Integers are decimal or 0x-hex; byte strings are `h:` followed by hex (`h:` alone is empty).
Every value is bounded here, when a program is parsed or built, so a reproducer file cannot
ask the harness for absurd work (a 1 GiB fill, a year of virtual time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import HostError

SIZE_SUFFIX = {1: "b", 2: "w", 4: "l", 8: "q"}
SUFFIX_SIZE = {suffix: size for size, suffix in SIZE_SUFFIX.items()}
PORT_LIMIT = 0x10000
MMIO_LIMIT = 1 << 52
FILL_LIMIT = 1 << 20  # bytes one fill may cover
STEP_LIMIT = 10_000_000_000  # 10 s of virtual time per step
REPEAT_LIMIT = 1 << 20  # repetitions of one repeat op
REPEAT_SPAN_LIMIT = 64  # ops a repeat may cover
EVENT_ARG_LIMIT = 1 << 16  # bytes in one event argument


class ProgramError(HostError):
    """A reproducer line that is not an op (the message names the line)."""


@dataclass(frozen=True)
class Op:
    """One step of a program. `kind` is in, out, read, write, fill, fillrep, step, lag,
    repeat or event; `args` are ints, except byte strings for fills and event data, and the event's
    name first for events."""

    kind: str
    args: tuple[Any, ...]  # ints, bytes (fills, event data), str (an event's name)

    def __str__(self) -> str:
        return format_op(self)


def port_in(size: int, port: int) -> Op:
    return Op("in", (size, port))


def port_out(size: int, port: int, value: int) -> Op:
    return Op("out", (size, port, value & _mask(size)))


def mmio_read(size: int, addr: int) -> Op:
    return Op("read", (size, addr))


def mmio_write(size: int, addr: int, value: int) -> Op:
    return Op("write", (size, addr, value & _mask(size)))


def fill(addr: int, data: bytes) -> Op:
    return Op("fill", (addr, bytes(data[:FILL_LIMIT])))


def fill_repeat(addr: int, length: int, pattern: bytes) -> Op:
    return Op("fillrep", (addr, min(length, FILL_LIMIT), bytes(pattern[:256]) or b"\0"))


def step(ns: int) -> Op:
    return Op("step", (max(0, min(ns, STEP_LIMIT)),))


def lag(ns: int) -> Op:
    return Op("lag", (max(0, min(ns, STEP_LIMIT)),))


def repeat(count: int, last: int) -> Op:
    return Op("repeat", (max(1, min(count, REPEAT_LIMIT)), max(1, min(last, REPEAT_SPAN_LIMIT))))


def event(name: str, *args: int | bytes) -> Op:
    return Op("event", (name, *args))


def _mask(size: int) -> int:
    return (1 << (8 * size)) - 1


# -- text ---------------------------------------------------------------------------------

def _arg_text(arg: int | bytes | str) -> str:
    if isinstance(arg, (bytes, bytearray)):
        return "h:" + bytes(arg).hex()
    if isinstance(arg, str):
        return arg
    return hex(arg)


def format_op(op: Op) -> str:
    kind, args = op.kind, op.args
    if kind in ("in", "out"):
        size, *rest = args
        return " ".join([("in" if kind == "in" else "out") + SIZE_SUFFIX[int(size)]] +
                        [_arg_text(a) for a in rest])
    if kind in ("read", "write"):
        size, *rest = args
        return " ".join([kind + SIZE_SUFFIX[int(size)]] + [_arg_text(a) for a in rest])
    if kind in ("step", "lag"):
        return f"{kind} {args[0]}"
    if kind == "repeat":
        return f"repeat {args[0]:#x} {args[1]}"
    return " ".join([kind] + [_arg_text(a) for a in args])


def format_program(ops: list[Op], config: str, comments: tuple[str, ...] | list[str] = ()) -> str:
    lines = [f"# {line}" for line in comments]
    lines.append(f"config {config}")
    lines.extend(format_op(op) for op in ops)
    return "\n".join(lines) + "\n"


def _int(token: str, where: str, low: int, high: int) -> int:
    try:
        value = int(token, 0)
    except ValueError:
        raise ProgramError(f"{where}: {token!r} is not an integer") from None
    if not low <= value < high:
        raise ProgramError(f"{where}: {token} is outside {low:#x}..{high - 1:#x}")
    return value


def _bytes(token: str, where: str, limit: int) -> bytes:
    if not token.startswith("h:"):
        raise ProgramError(f"{where}: {token!r} is not a byte string (write h:HEX)")
    try:
        data = bytes.fromhex(token[2:])
    except ValueError:
        raise ProgramError(f"{where}: {token!r} is not valid hex") from None
    if len(data) > limit:
        raise ProgramError(f"{where}: {len(data)} bytes is more than {limit}")
    return data


def parse_op(line: str, where: str = "op") -> Op:
    """One line (no comment, not blank) as an Op; ProgramError says what is wrong."""
    tokens = line.split()
    word, rest = tokens[0], tokens[1:]

    def need(count: int) -> None:
        if len(rest) != count:
            raise ProgramError(f"{where}: {word} takes {count} argument(s), got {len(rest)}")

    if word[:-1] in ("in", "out") and word[-1:] in ("b", "w", "l"):
        size = SUFFIX_SIZE[word[-1]]
        if word.startswith("in"):
            need(1)
            return port_in(size, _int(rest[0], where, 0, PORT_LIMIT))
        need(2)
        return port_out(size, _int(rest[0], where, 0, PORT_LIMIT),
                        _int(rest[1], where, 0, 1 << (8 * size)))
    if word[:-1] in ("read", "write") and word[-1:] in SUFFIX_SIZE:
        size = SUFFIX_SIZE[word[-1]]
        if word.startswith("read"):
            need(1)
            return mmio_read(size, _int(rest[0], where, 0, MMIO_LIMIT))
        need(2)
        return mmio_write(size, _int(rest[0], where, 0, MMIO_LIMIT),
                          _int(rest[1], where, 0, 1 << (8 * size)))
    if word == "fill":
        need(2)
        return fill(_int(rest[0], where, 0, MMIO_LIMIT), _bytes(rest[1], where, FILL_LIMIT))
    if word == "fillrep":
        need(3)
        return fill_repeat(_int(rest[0], where, 0, MMIO_LIMIT),
                           _int(rest[1], where, 0, FILL_LIMIT + 1), _bytes(rest[2], where, 256))
    if word in ("step", "lag"):
        need(1)
        return (step if word == "step" else lag)(_int(rest[0], where, 0, STEP_LIMIT + 1))
    if word == "repeat":
        need(2)
        return repeat(_int(rest[0], where, 1, REPEAT_LIMIT + 1),
                      _int(rest[1], where, 1, REPEAT_SPAN_LIMIT + 1))
    if word == "event":
        if not rest:
            raise ProgramError(f"{where}: event needs a name")
        args: list[int | bytes | str] = [rest[0]]
        for token in rest[1:]:
            args.append(_bytes(token, where, EVENT_ARG_LIMIT) if token.startswith("h:")
                        else _int(token, where, 0, 1 << 64))
        return Op("event", tuple(args))
    raise ProgramError(f"{where}: unknown op {word!r}")


def parse_program(text: str, source: str = "program") -> tuple[str | None, list[Op]]:
    """(configuration named by a `config` line or None, ops) from reproducer text."""
    config: str | None = None
    ops: list[Op] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{number}"
        if line.startswith("config "):
            if ops or config is not None:
                raise ProgramError(f"{where}: `config` must come first, once")
            config = line.split(None, 1)[1].strip()
            continue
        ops.append(parse_op(line, where))
    return config, ops
