"""What counts as a finding, and the probes that look for the slow ones (growth, timers).

Checked after every op: no exception escapes a device (the vCPU loop does not catch any, not
even `GuestError`: one escaping a port or MMIO handler would kill the vCPU thread and stop
the VM), no access outside guest RAM reaches the memory layer, no device is entered again
while it is handling an access (re-entry, e.g. through its own DMA), no op takes more than
OP_BUDGET_NS of CPU. Checked every few ops and at the end: the devices' containers do not
grow past GROWTH_LIMIT units over their size after construction, live and stale timers stay
bounded, and each device's own state invariants (`state().validate()`) hold.
"""

from __future__ import annotations

import collections
import enum
import mmap
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

OP_BUDGET_NS = 50_000_000  # CPU time one op (or one timer callback) may take
GROWTH_LIMIT = 1 << 20  # footprint units (bytes, or 8 per container slot) over the baseline
LIVE_TIMER_LIMIT = 64  # armed timers a configuration may hold at once
STALE_TIMER_LIMIT = 2_000  # cancelled far-future timers left in the event loop's heap
PROBE_EVERY = 64  # ops between footprint, timer and invariant probes
_PACKAGE = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Violation:
    """One oracle finding. `signature` identifies the bug (not the input) for deduplication."""

    kind: str  # exception, memory, reentry, slow, growth, timers, invariant
    signature: str
    message: str
    op_index: int  # index of the op in the program (-1: found after the last op)
    executed: int = 0  # ops executed by then, repeats expanded (which repetition failed)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "signature": self.signature, "message": self.message,
                "op_index": self.op_index}


def exception_signature(error: BaseException) -> str:
    """Type and innermost pyhvm frame (outside the fuzzer) where it was raised."""
    where = "?"
    for frame in traceback.extract_tb(error.__traceback__):
        path = Path(frame.filename).resolve()
        if _PACKAGE in path.parents and "fuzz" not in path.relative_to(_PACKAGE).parts[:1]:
            where = f"{path.relative_to(_PACKAGE)}:{frame.name}"
    return f"{type(error).__name__}@{where}"


def exception_violation(error: BaseException, op_index: int, during: str) -> Violation:
    where = exception_signature(error)
    return Violation("exception", f"exception:{where}",
                     f"{type(error).__name__} escaped {during}: {error}", op_index)


# -- footprint ----------------------------------------------------------------------------

_ATOM_TYPES = frozenset((int, float, bool, complex, type(None), range, slice))
_ATOMS = (enum.Enum, mmap.mmap, memoryview, type, types.ModuleType, types.FunctionType,
          types.MethodType, types.BuiltinFunctionType, types.LambdaType)
_OPAQUE = _ATOMS
_BYTES = frozenset((bytes, bytearray, str))
_SEQUENCES = frozenset((list, tuple, collections.deque, set, frozenset))
_SEQUENCE_BASES = (list, tuple, collections.deque, set, frozenset)


@dataclass
class Footprint:
    units: dict[str, int]  # per root
    largest: str  # the biggest single container seen, for the message


def footprint(roots: dict[str, object], skip: tuple[object, ...] = ()) -> Footprint:
    """Sizes of everything reachable from each root through pyhvm objects' attributes.

    Byte strings count their length, other containers 8 units per slot. Objects in `skip`
    (guest memory, the clock, the buses: shared, sized by the configuration) are not entered.
    """
    seen = {id(obj) for obj in skip}
    units: dict[str, int] = {}
    largest, largest_size = "", 0
    for name, root in roots.items():
        total = 0
        stack: list[tuple[object, int]] = [(root, 0)]
        while stack:
            obj, depth = stack.pop()
            key = id(obj)
            if key in seen:
                continue
            seen.add(key)
            kind = type(obj)
            size = 0
            children: Iterable[object] = ()
            if kind in _BYTES:
                size = len(obj)  # type: ignore[arg-type]
            elif kind in _SEQUENCES or isinstance(obj, _SEQUENCE_BASES):
                size = 8 * len(obj)  # type: ignore[arg-type]
                children = obj  # type: ignore[assignment]
            elif isinstance(obj, dict):
                size = 16 * len(obj)
                children = [*obj.keys(), *obj.values()]
            elif depth < 16 and (depth == 0 or kind.__module__.startswith("pyhvm.")) and \
                    not isinstance(obj, _OPAQUE):
                children = _attributes(obj)
            total += size
            if size > largest_size:
                largest, largest_size = f"{name}: {kind.__name__} of {size} units", size
            stack.extend((child, depth + 1) for child in children
                         if type(child) not in _ATOM_TYPES and not isinstance(child, _ATOMS))
        units[name] = total
    return Footprint(units, largest)


def _attributes(obj: object) -> list[object]:
    values = list(getattr(obj, "__dict__", {}).values())
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if hasattr(obj, slot):
                values.append(getattr(obj, slot))
    return values
