"""The shared-memory request ring between the VMM and a device process (Xen's ioreq page,
in our own form).

One memfd holds a header page, a ring of fixed-size request slots (VMM -> device process)
and a ring of event slots (device process -> VMM). Each side has exactly one writer per
field it owns, so no locks cross the process boundary:

- A request slot is filled by the VMM (operation, size, range, offset, data, sequence
  number), then its `state` byte is set to READY. The device process takes slots in
  sequence order, answers in the same slot (`result`) and sets DONE (or REFUSED for a slot
  it would not act on). The VMM reads the answer of a synchronous request and frees the
  slot; a posted write's slot is reclaimed when the ring comes round to it again.
- An event slot is filled by the device process and its `state` set FULL; the VMM reads
  it and sets it FREE again. A full event ring makes the device process wait.

Publication is always "body first, state byte last": the state is one byte, so a reader
can never see it torn, and x86 keeps stores in order (TSO) and loads in order, so a reader
that sees READY/DONE/FULL sees the whole body written before it. The one reordering x86
allows, a later load passing an earlier store, matters where a side announces that it is
about to sleep and then looks for work once more: `fence()` goes between the two.

Every slot read from the other side is checked (state, sequence number, operation, size,
range, lengths): a device process is as untrusted as the guest that drives it, and a
slot that breaks the protocol raises `RingError` instead of being acted on.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from dataclasses import dataclass

from .protocol import ACCESS_SIZES, OP_CONTROL, OP_INTA, OP_IRQ, OP_READ, OP_WRITE, OPS

MAGIC = 0x50594452          # "PYDR"
VERSION = 1
HEADER_SIZE = 4096
REQ_SLOT_SIZE = 32
EVT_SLOT_SIZE = 64
EVT_PAYLOAD = 48
DEFAULT_REQ_SLOTS = 256
DEFAULT_EVT_SLOTS = 1024
MAX_SLOTS = 1 << 16
SEQ_MASK = 0xFFFFFFFF

# Header: the identity words, then one flag byte per cache line, each with one writer.
_HEADER = struct.Struct("<IIII")   # magic, version, request slots, event slots
VMM_WAITING = 64                    # VMM: asleep on the response eventfd, wake me
DEV_SLEEPING = 128                  # device process: asleep on the request eventfd

# Request slot: state byte, then the body (op, size, range, seq, offset, flags, data, result).
REQ_FREE, REQ_READY, REQ_DONE, REQ_REFUSED = 0, 1, 2, 3
_REQ_BODY = struct.Struct("<BBBIIIQQ")
_REQ_RESULT = struct.Struct("<Q")
_REQ_RESULT_AT = 24
_REQ_SEQ = struct.Struct("<I")
_REQ_SEQ_AT = 4

# Event slot: state byte, pad, then kind, seq, arg, length, the payload.
EVT_FREE, EVT_FULL = 0, 1
_EVT_BODY = struct.Struct("<HIIH2x48s")


class RingError(Exception):
    """The other side broke the ring protocol (a corrupt or out-of-order slot)."""


def fence() -> None:
    """A full memory barrier between a store and a later load (x86: a locked instruction).

    Python has no fence; an uncontended lock's acquire and release are each an atomic
    read-modify-write in glibc (sem_trywait, sem_post: `lock cmpxchg`), and on x86 a locked
    instruction orders every earlier store before every later load."""
    _FENCE.acquire()
    _FENCE.release()


_FENCE = threading.Lock()


@dataclass(frozen=True)
class RingLayout:
    req_slots: int = DEFAULT_REQ_SLOTS
    evt_slots: int = DEFAULT_EVT_SLOTS

    def __post_init__(self) -> None:
        for name, value in (("req_slots", self.req_slots), ("evt_slots", self.evt_slots)):
            if not 1 <= value <= MAX_SLOTS:
                raise ValueError(f"{name} must be 1..{MAX_SLOTS}, not {value}")

    @property
    def req_base(self) -> int:
        return HEADER_SIZE

    @property
    def evt_base(self) -> int:
        return HEADER_SIZE + self.req_slots * REQ_SLOT_SIZE

    @property
    def size(self) -> int:
        raw = self.evt_base + self.evt_slots * EVT_SLOT_SIZE
        return -(-raw // mmap.PAGESIZE) * mmap.PAGESIZE


def create_ring_memory(layout: RingLayout) -> tuple[int, mmap.mmap]:
    """A fresh ring in a memfd: (fd, mapping). The fd goes to the device process."""
    fd = os.memfd_create("pyhvm-devproc-ring", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, layout.size)
        buf = mmap.mmap(fd, layout.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        os.close(fd)
        raise
    _HEADER.pack_into(buf, 0, MAGIC, VERSION, layout.req_slots, layout.evt_slots)
    return fd, buf


def attach_ring_memory(fd: int) -> tuple[mmap.mmap, RingLayout]:
    """Map a ring made by `create_ring_memory`; RingError if it is not one."""
    size = os.fstat(fd).st_size
    if size < HEADER_SIZE:
        raise RingError(f"the ring is {size} bytes, smaller than its header")
    buf = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    magic, version, req_slots, evt_slots = _HEADER.unpack_from(buf, 0)
    try:
        if magic != MAGIC or version != VERSION:
            raise RingError(f"not a version {VERSION} ring (magic {magic:#x}, "
                            f"version {version})")
        try:
            layout = RingLayout(req_slots, evt_slots)
        except ValueError as err:
            raise RingError(str(err)) from None
        if layout.size > size:
            raise RingError(f"the ring is {size} bytes, its header says {layout.size}")
    except RingError:
        buf.close()
        raise
    return buf, layout


@dataclass(frozen=True)
class Request:
    seq: int
    op: int
    size: int
    target: int
    offset: int
    data: int


class VmmRing:
    """The VMM's side: puts requests, reads their answers, takes events. One thread at a
    time (the caller's lock)."""

    def __init__(self, buf: mmap.mmap, layout: RingLayout) -> None:
        self.view = memoryview(buf)
        self.layout = layout
        self.head = 0                # sequence number of the next request
        self.evt_tail = 0            # sequence number of the next event
        self.refused = 0             # posted requests the device process refused

    # -- requests --
    def slot_offset(self, seq: int) -> int:
        return HEADER_SIZE + (seq % self.layout.req_slots) * REQ_SLOT_SIZE

    def put(self, op: int, target: int, offset: int, size: int, data: int) -> int | None:
        """Queue one request; its sequence number, or None while the ring is full (the
        slot the ring came round to still waits for the device process)."""
        seq = self.head
        at = self.slot_offset(seq)
        view = self.view
        state = view[at]
        if state != REQ_FREE:
            previous = (seq - self.layout.req_slots) & SEQ_MASK
            if state == REQ_READY:
                if _REQ_SEQ.unpack_from(view, at + _REQ_SEQ_AT)[0] != previous:
                    raise RingError(f"request slot {seq % self.layout.req_slots} holds a "
                                    "request the VMM never made")
                return None
            if state not in (REQ_DONE, REQ_REFUSED) or \
                    _REQ_SEQ.unpack_from(view, at + _REQ_SEQ_AT)[0] != previous:
                raise RingError(f"request slot {seq % self.layout.req_slots} has state "
                                f"{state}, not an answer to request {previous}")
            if state == REQ_REFUSED:
                self.refused += 1
        _REQ_BODY.pack_into(view, at + 1, op, size, target, seq & SEQ_MASK, offset, 0, data, 0)
        view[at] = REQ_READY
        self.head = seq + 1
        return seq

    def answer(self, seq: int) -> tuple[bool, int] | None:
        """(refused, result) once the device process answered request `seq`, else None.
        The slot is freed."""
        at = self.slot_offset(seq)
        view = self.view
        state = view[at]
        if state == REQ_READY:
            return None
        if state not in (REQ_DONE, REQ_REFUSED) or \
                _REQ_SEQ.unpack_from(view, at + _REQ_SEQ_AT)[0] != seq & SEQ_MASK:
            raise RingError(f"request slot {seq % self.layout.req_slots} has state {state}, "
                            f"not an answer to request {seq}")
        result = _REQ_RESULT.unpack_from(view, at + _REQ_RESULT_AT)[0]
        view[at] = REQ_FREE
        return state == REQ_REFUSED, result

    def ready(self, seq: int) -> bool:
        """Whether request `seq` still waits to be taken (cheap, unchecked: a hint)."""
        return self.view[self.slot_offset(seq)] == REQ_READY

    # -- events --
    def take_event(self) -> tuple[int, int, int, bytes] | None:
        """The next event as (kind, arg, length, payload), or None; the slot is freed."""
        seq = self.evt_tail
        at = self.layout.evt_base + (seq % self.layout.evt_slots) * EVT_SLOT_SIZE
        view = self.view
        state = view[at]
        if state == EVT_FREE:
            return None
        kind, slot_seq, arg, length, payload = _EVT_BODY.unpack_from(view, at + 2)
        if state != EVT_FULL or slot_seq != seq & SEQ_MASK:
            raise RingError(f"event slot {seq % self.layout.evt_slots} has state {state} "
                            f"and sequence {slot_seq}, not event {seq}")
        if length > EVT_PAYLOAD:
            raise RingError(f"event {seq} claims {length} payload bytes")
        view[at] = EVT_FREE
        self.evt_tail = seq + 1
        return kind, arg, length, payload

    # -- sleeping --
    def set_waiting(self, waiting: bool) -> None:
        self.view[VMM_WAITING] = int(waiting)

    def device_sleeping(self) -> bool:
        return self.view[DEV_SLEEPING] != 0

    def close(self) -> None:
        self.view.release()


class DeviceRing:
    """The device process's side: takes requests in order, answers them, puts events."""

    def __init__(self, buf: mmap.mmap, layout: RingLayout) -> None:
        self.view = memoryview(buf)
        self.layout = layout
        self.tail = 0                # sequence number of the next request to take
        self.evt_head = 0            # sequence number of the next event

    # -- requests --
    def slot_offset(self, seq: int) -> int:
        return HEADER_SIZE + (seq % self.layout.req_slots) * REQ_SLOT_SIZE

    def pending(self) -> bool:
        return self.view[self.slot_offset(self.tail)] == REQ_READY

    def take(self) -> Request | None:
        """The next request, checked; None if there is none. RingError for a slot that is
        READY out of sequence; a request with a bad operation or size is returned for the
        caller to refuse (`answer(refused=True)`), so one bad slot does not stop the ring."""
        seq = self.tail
        at = self.slot_offset(seq)
        view = self.view
        if view[at] != REQ_READY:
            return None
        op, size, target, slot_seq, offset, _flags, data, _ = _REQ_BODY.unpack_from(view, at + 1)
        if slot_seq != seq & SEQ_MASK:
            raise RingError(f"request slot {seq % self.layout.req_slots} holds sequence "
                            f"{slot_seq}, expected {seq & SEQ_MASK}")
        self.tail = seq + 1
        return Request(seq, op, size, target, offset, data)

    def answer(self, request: Request, result: int = 0, refused: bool = False) -> None:
        at = self.slot_offset(request.seq)
        _REQ_RESULT.pack_into(self.view, at + _REQ_RESULT_AT, result & 0xFFFFFFFFFFFFFFFF)
        self.view[at] = REQ_REFUSED if refused else REQ_DONE

    # -- events --
    def put_event(self, kind: int, arg: int, length: int, payload: bytes = b"") -> bool:
        """Publish one event; False while the ring is full (the VMM has not caught up)."""
        seq = self.evt_head
        at = self.layout.evt_base + (seq % self.layout.evt_slots) * EVT_SLOT_SIZE
        view = self.view
        if view[at] != EVT_FREE:
            return False
        _EVT_BODY.pack_into(view, at + 2, kind, seq & SEQ_MASK, arg, length, payload)
        view[at] = EVT_FULL
        self.evt_head = seq + 1
        return True

    # -- sleeping --
    def set_sleeping(self, sleeping: bool) -> None:
        self.view[DEV_SLEEPING] = int(sleeping)

    def vmm_waiting(self) -> bool:
        return self.view[VMM_WAITING] != 0

    def close(self) -> None:
        self.view.release()


def valid_request(request: Request, range_sizes: dict[int, int]) -> bool:
    """Whether the device process may act on `request` (the range is one it serves, the
    offset inside it, the size a bus access size, an IRQ a PIC input)."""
    op = request.op
    if op not in OPS:
        return False
    if op in (OP_READ, OP_WRITE):
        size = range_sizes.get(request.target)
        return size is not None and request.size in ACCESS_SIZES and \
            0 <= request.offset < size and request.data >> (8 * request.size) == 0
    if op == OP_IRQ:
        return 0 <= request.offset < 16 and request.offset != 2 and request.data in (0, 1)
    if op == OP_INTA:
        return True
    if op == OP_CONTROL:
        return request.size <= 8
    return False
