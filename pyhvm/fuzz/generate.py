"""Making and mutating programs: random ops aimed at what a configuration decodes.

Everything draws from an `Rng` (random.Random, or atheris's data provider behind the same
methods), so one seed gives one campaign. A `Profile` tells the generator where a
configuration's registers are and which templates (short op sequences a driver would issue:
"program the PIC", "start a DMA read") get its devices into deep states quickly; values come
from the edges that break things (0, 1, all ones, powers of two, the ends of RAM).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from . import ops as o
from .ops import Op

MAX_PROGRAM = 400  # ops in one program
CONFIG_ADDRESS_ENABLE = 0x80000000


class Rng(Protocol):
    def random(self) -> float: ...

    def randrange(self, start: int, stop: int | None = None) -> int: ...

    def getrandbits(self, k: int) -> int: ...

    def choice(self, seq): ...  # type: ignore[no-untyped-def]

    def randbytes(self, n: int) -> bytes: ...


Template = Callable[[Rng, "Profile"], list[Op]]


@dataclass
class Profile:
    """Where a configuration listens, and how to drive it deep."""

    ports: list[tuple[int, int]] = field(default_factory=list)  # (base, size)
    mmio: list[tuple[int, int]] = field(default_factory=list)
    pci: list[tuple[int, int]] = field(default_factory=list)  # (device, function) present
    events: dict[str, Callable[[Rng], tuple]] = field(default_factory=dict)
    templates: list[Template] = field(default_factory=list)
    ram: tuple[tuple[int, int], ...] = ()

    def add(self, other: "Profile") -> None:
        self.ports += other.ports
        self.mmio += other.mmio
        self.pci += other.pci
        self.events.update(other.events)
        self.templates += other.templates


INTERESTING = (0, 1, 2, 3, 4, 7, 8, 0xF, 0x10, 0x1F, 0x20, 0x3F, 0x40, 0x7F, 0x80, 0xFE, 0xFF,
               0x100, 0x1FF, 0x200, 0x3FF, 0x400, 0x5EE, 0x5EF, 0x600, 0x700, 0x7FF, 0x800,
               0xFFF, 0x1000, 0x1FFF, 0x2000, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF, 0x10000, 0x10001,
               0xFFFFFF, 0x1000000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)


def value(rng: Rng, size: int = 4) -> int:
    """A value of `size` bytes, biased to edges."""
    roll = rng.random()
    if roll < 0.45:
        v = rng.choice(INTERESTING)
    elif roll < 0.65:
        v = 1 << rng.randrange(8 * size)
    elif roll < 0.8:
        v = rng.choice(INTERESTING) ^ (1 << rng.randrange(8 * size))
    else:
        v = rng.getrandbits(8 * size)
    return v & ((1 << (8 * size)) - 1)


def address(rng: Rng, profile: Profile, span: int = 1) -> int:
    """A guest-physical address biased to the edges of RAM and the hole between regions."""
    roll = rng.random()
    regions = profile.ram or ((0, 0x100000),)
    base, size = rng.choice(regions)
    if roll < 0.35:  # anywhere in a region
        return base + rng.randrange(max(1, size - span))
    if roll < 0.7:  # hugging an edge, inside or just past it
        edge = base + size if rng.random() < 0.7 else base
        return max(0, edge - span + rng.randrange(-16, 17))
    if roll < 0.85:  # low memory, where drivers put rings
        return rng.randrange(0x100000) & ~rng.choice((0, 3, 0xFFF))
    return value(rng, 4)


def _port_op(rng: Rng, profile: Profile) -> list[Op]:
    if profile.ports and rng.random() < 0.95:
        base, size = rng.choice(profile.ports)
        port = base + (rng.randrange(size) if rng.random() < 0.9 else rng.randrange(size + 4))
    else:
        port = rng.randrange(0x10000)
    port &= 0xFFFF
    width = rng.choice((1, 1, 1, 2, 4))
    if rng.random() < 0.5:
        return [o.port_in(width, port)]
    return [o.port_out(width, port, value(rng, width))]


def _mmio_op(rng: Rng, profile: Profile) -> list[Op]:
    base, size = rng.choice(profile.mmio)
    addr = base + (rng.randrange(size) if rng.random() < 0.95 else rng.randrange(size + 8))
    width = rng.choice((1, 2, 4, 4, 8))
    if rng.random() < 0.5:
        return [o.mmio_read(width, addr)]
    return [o.mmio_write(width, addr, value(rng, width))]


def config_address(device: int, function: int, register: int) -> int:
    return CONFIG_ADDRESS_ENABLE | device << 11 | function << 8 | (register & 0xFC)


def pci_access(device: int, function: int, register: int, width: int,
               write_value: int | None = None) -> list[Op]:
    """A configuration cycle through mechanism #1, as a driver issues it."""
    lane = register & 3
    ops = [o.port_out(4, 0xCF8, config_address(device, function, register))]
    if write_value is None:
        ops.append(o.port_in(width, 0xCFC + lane))
    else:
        ops.append(o.port_out(width, 0xCFC + lane, write_value))
    return ops


def _pci_op(rng: Rng, profile: Profile) -> list[Op]:
    if profile.pci and rng.random() < 0.9:
        device, function = rng.choice(profile.pci)
    else:
        device, function = rng.randrange(32), rng.randrange(8)
    register = rng.choice((0x04, 0x06, 0x10, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x30, 0x3C, 0x3D,
                           0x40, 0x41, 0x42, 0x43, 0x44, 0x59, 0x60, 0x61, 0x72)) \
        if rng.random() < 0.6 else rng.randrange(256)
    width = rng.choice((1, 2, 4))
    if rng.random() < 0.1:  # a cycle with a strange address (bus, reserved bits, disabled)
        return [o.port_out(4, 0xCF8, value(rng, 4)), o.port_in(width, 0xCFC + rng.randrange(4))]
    write = None if rng.random() < 0.4 else value(rng, width)
    return pci_access(device, function, register, width, write)


def _fill_op(rng: Rng, profile: Profile) -> list[Op]:
    roll = rng.random()
    length = rng.choice((1, 2, 4, 8, 16, 64, 256, 4096))
    addr = address(rng, profile, length)
    if roll < 0.3:
        return [o.fill(addr, rng.randbytes(min(length, 512)))]
    if roll < 0.55:
        pattern = rng.choice((b"\xff", b"\x00", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80",
                              b"\x01\x00\x00\x00"))
        return [o.fill_repeat(addr, length * rng.choice((1, 16)), pattern)]
    # A table of plausible descriptors: (address near an edge, count/flags) pairs.
    entries = 1 + rng.randrange(8)
    data = b"".join(address(rng, profile, 512).to_bytes(4, "little") +
                    value(rng, 4).to_bytes(4, "little") for _ in range(entries))
    return [o.fill(addr & ~3, data)]


def _step_op(rng: Rng, profile: Profile) -> list[Op]:
    # Mostly short: a second of a 20 kHz timer is 20000 callbacks, and long steps would eat
    # the campaign's time; the long ones still come (alarms, RTC updates, TCTR wraps).
    short = (1, 1_000, 30_000, 50_000, 122_071, 1_000_000, 10_000_000)
    long = (100_000_000, 500_000_000, 1_000_000_000, 10_000_000_000)
    ns = rng.choice(short if rng.random() < 0.9 else long) + rng.randrange(3)
    return [o.lag(ns) if rng.random() < 0.15 else o.step(ns)]


def _event_op(rng: Rng, profile: Profile) -> list[Op]:
    name = rng.choice(sorted(profile.events))
    return [o.event(name, *profile.events[name](rng))]


def next_ops(rng: Rng, profile: Profile) -> list[Op]:
    """A few ops: one access, fill, step, event, or a template's sequence."""
    choices: list[tuple[float, Callable[[Rng, Profile], list[Op]]]] = [(30, _port_op),
                                                                        (8, _fill_op),
                                                                        (5, _step_op)]
    if profile.mmio:
        choices.append((20, _mmio_op))
    if profile.pci:
        choices.append((10, _pci_op))
    if profile.events:
        choices.append((8, _event_op))
    if profile.templates:
        choices.append((20, lambda r, p: r.choice(p.templates)(r, p)))
    total = sum(weight for weight, _ in choices)
    roll = rng.random() * total
    for weight, make in choices:
        roll -= weight
        if roll < 0:
            return make(rng, profile)
    return choices[-1][1](rng, profile)


def generate(rng: Rng, profile: Profile, length: int | None = None) -> list[Op]:
    length = length if length is not None else 1 + rng.randrange(120)
    program: list[Op] = []
    while len(program) < length:
        program += next_ops(rng, profile)
        if rng.random() < 0.02 and program:
            program.append(o.repeat(rng.choice((512, 1024, 4096)) if
                                    rng.random() < 0.2 else rng.choice((2, 16, 256)),
                                    1 + rng.randrange(min(4, len(program)))))
    return program[:MAX_PROGRAM]


def _tweak(rng: Rng, op: Op) -> Op:
    """The same op with one value changed."""
    args = list(op.args)
    slots = [i for i, a in enumerate(args) if isinstance(a, int) and not
             (op.kind in ("in", "out", "read", "write") and i == 0)]
    if not slots:
        return op
    i = rng.choice(slots)
    old = args[i]
    roll = rng.random()
    if roll < 0.3:
        new = old ^ (1 << rng.randrange(32))
    elif roll < 0.6:
        new = old + rng.choice((-1, 1, -4, 4, 0x100, -0x100))
    else:
        new = rng.choice(INTERESTING)
    text = o.format_op(Op(op.kind, tuple(args[:i] + [max(0, new)] + args[i + 1:])))
    try:
        return o.parse_op(text)  # re-parsed: masks and bounds apply
    except o.ProgramError:
        return op


def mutate(rng: Rng, program: list[Op], profile: Profile,
           other: list[Op] | None = None) -> list[Op]:
    """A nearby program: ops tweaked, inserted, deleted, duplicated or spliced."""
    out = list(program)
    for _ in range(1 + rng.randrange(4)):
        roll = rng.random()
        at = rng.randrange(len(out) + 1)
        if roll < 0.3 and out:
            i = rng.randrange(len(out))
            out[i] = _tweak(rng, out[i])
        elif roll < 0.55:
            out[at:at] = next_ops(rng, profile)
        elif roll < 0.7 and out:
            del out[at:at + 1 + rng.randrange(4)]
        elif roll < 0.8 and out:
            start = rng.randrange(len(out))
            chunk = out[start:start + 1 + rng.randrange(8)]
            out[at:at] = chunk
        elif roll < 0.9 and other:
            start = rng.randrange(len(other))
            out[at:at] = other[start:start + 1 + rng.randrange(16)]
        elif out:
            out.insert(at, o.repeat(rng.choice((2, 64, 4096)), 1 + rng.randrange(3)))
    return out[:MAX_PROGRAM]
