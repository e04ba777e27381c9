"""The device-process request ring (pyhvm/devproc/ring.py): both ends in one process."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pyhvm.devproc import ring as r
from pyhvm.devproc.protocol import (EVT_CONSOLE, EVT_IRQ, OP_CONTROL, OP_INTA, OP_IRQ, OP_READ,
                                    OP_WRITE, RANGE_IDS, RANGES)


@pytest.fixture
def pair() -> Iterator[tuple[r.VmmRing, r.DeviceRing]]:
    layout = r.RingLayout(req_slots=4, evt_slots=4)
    fd, buf = r.create_ring_memory(layout)
    try:
        device_buf, device_layout = r.attach_ring_memory(fd)
        vmm, device = r.VmmRing(buf, layout), r.DeviceRing(device_buf, device_layout)
        yield vmm, device
        vmm.close()
        device.close()
        device_buf.close()
        buf.close()
    finally:
        os.close(fd)


def test_a_read_goes_over_and_its_answer_comes_back(pair: tuple[r.VmmRing, r.DeviceRing]) -> None:
    vmm, device = pair
    seq = vmm.put(OP_READ, RANGE_IDS["com1"], 5, 1, 0)
    assert seq == 0 and vmm.answer(seq) is None  # not answered yet
    request = device.take()
    assert request == r.Request(0, OP_READ, 1, RANGE_IDS["com1"], 5, 0)
    assert device.take() is None
    device.answer(request, 0x60)
    assert vmm.answer(seq) == (False, 0x60)


def test_requests_are_taken_in_the_order_they_were_put(pair: tuple[r.VmmRing, r.DeviceRing]) -> None:
    vmm, device = pair
    for value in (1, 2, 3):
        vmm.put(OP_WRITE, 0, 0, 1, value)
    taken = [device.take() for _ in range(3)]
    assert [t.data for t in taken if t] == [1, 2, 3]
    assert [t.seq for t in taken if t] == [0, 1, 2]


def test_a_full_ring_refuses_until_the_device_takes_the_oldest(
        pair: tuple[r.VmmRing, r.DeviceRing]) -> None:
    vmm, device = pair
    for value in range(4):
        assert vmm.put(OP_WRITE, 0, 0, 1, value) == value
    assert vmm.put(OP_WRITE, 0, 0, 1, 4) is None  # slot 0 still READY
    request = device.take()
    assert request is not None and request.data == 0
    assert vmm.put(OP_WRITE, 0, 0, 1, 4) is None  # taken but not answered: still READY
    device.answer(request)
    assert vmm.put(OP_WRITE, 0, 0, 1, 4) == 4  # the posted write's slot is reclaimed


def test_the_ring_wraps_many_times_with_sequence_numbers_intact(
        pair: tuple[r.VmmRing, r.DeviceRing]) -> None:
    vmm, device = pair
    for n in range(50):
        seq = vmm.put(OP_READ, 0, n % 8, 1, 0)
        assert seq == n
        request = device.take()
        assert request is not None and request.seq == n and request.offset == n % 8
        device.answer(request, n & 0xFF)
        assert vmm.answer(seq) == (False, n & 0xFF)


def test_a_refused_posted_request_is_counted_when_its_slot_is_reclaimed(
        pair: tuple[r.VmmRing, r.DeviceRing]) -> None:
    vmm, device = pair
    for _ in range(4):
        vmm.put(OP_WRITE, 0, 0, 1, 0)
    first = device.take()
    assert first is not None
    device.answer(first, refused=True)
    vmm.put(OP_WRITE, 0, 0, 1, 0)
    assert vmm.refused == 1


def test_a_slot_that_is_ready_out_of_sequence_is_a_protocol_error(
        pair: tuple[r.VmmRing, r.DeviceRing]) -> None:
    vmm, device = pair
    vmm.put(OP_WRITE, 0, 0, 1, 0)
    at = device.slot_offset(0)
    device.view[at + r._REQ_SEQ_AT] = 7  # a corrupt sequence number
    with pytest.raises(r.RingError):
        device.take()


def test_an_answer_in_the_wrong_slot_state_is_a_protocol_error(
        pair: tuple[r.VmmRing, r.DeviceRing]) -> None:
    vmm, device = pair
    seq = vmm.put(OP_READ, 0, 0, 1, 0)
    assert seq is not None
    device.view[device.slot_offset(seq)] = 9  # no such state
    with pytest.raises(r.RingError):
        vmm.answer(seq)


def test_an_answer_with_another_requests_sequence_is_a_protocol_error(
        pair: tuple[r.VmmRing, r.DeviceRing]) -> None:
    vmm, device = pair
    seq = vmm.put(OP_READ, 0, 0, 1, 0)
    request = device.take()
    assert request is not None
    device.answer(request, 1)
    device.view[device.slot_offset(seq) + r._REQ_SEQ_AT] = 3
    with pytest.raises(r.RingError):
        vmm.answer(seq)


def test_a_device_that_marks_a_slot_ready_behind_the_vmms_back_is_caught(
        pair: tuple[r.VmmRing, r.DeviceRing]) -> None:
    vmm, device = pair
    for _ in range(4):
        vmm.put(OP_WRITE, 0, 0, 1, 0)
    for _ in range(4):
        request = device.take()
        assert request is not None
        device.answer(request)
    device.view[device.slot_offset(0) + r._REQ_SEQ_AT] = 0x55  # "ready" with a forged seq
    device.view[device.slot_offset(0)] = r.REQ_READY
    with pytest.raises(r.RingError):
        vmm.put(OP_WRITE, 0, 0, 1, 0)


def test_events_arrive_in_order_and_a_full_event_ring_refuses(
        pair: tuple[r.VmmRing, r.DeviceRing]) -> None:
    vmm, device = pair
    assert device.put_event(EVT_IRQ, 4, 1)
    assert device.put_event(EVT_CONSOLE, 0, 3, b"abc")
    assert device.put_event(EVT_IRQ, 4, 0)
    assert device.put_event(EVT_IRQ, 4, 1)
    assert not device.put_event(EVT_IRQ, 4, 0)  # four slots, none taken yet
    assert vmm.take_event() == (EVT_IRQ, 4, 1, bytes(r.EVT_PAYLOAD))
    kind, _, length, payload = vmm.take_event() or (0, 0, 0, b"")
    assert (kind, payload[:length]) == (EVT_CONSOLE, b"abc")
    assert device.put_event(EVT_IRQ, 4, 0)  # room again
    assert [vmm.take_event()[2] for _ in range(3)] == [0, 1, 0]  # type: ignore[index]
    assert vmm.take_event() is None


def test_an_event_claiming_a_longer_payload_than_a_slot_holds_is_refused(
        pair: tuple[r.VmmRing, r.DeviceRing]) -> None:
    vmm, device = pair
    device.put_event(EVT_CONSOLE, 0, 1, b"x")
    at = device.layout.evt_base
    r._EVT_BODY.pack_into(device.view, at + 2, EVT_CONSOLE, 0, 0, 500, b"")
    with pytest.raises(r.RingError):
        vmm.take_event()


def test_an_event_out_of_sequence_is_refused(pair: tuple[r.VmmRing, r.DeviceRing]) -> None:
    vmm, device = pair
    device.put_event(EVT_IRQ, 4, 1)
    assert vmm.take_event() is not None
    device.evt_head = 5  # a device that skips ahead: slot 1 now holds sequence 5, not 1
    device.put_event(EVT_IRQ, 4, 0)
    with pytest.raises(r.RingError, match="not event 1"):
        vmm.take_event()


def test_sleep_and_wait_flags_are_seen_by_the_other_side(
        pair: tuple[r.VmmRing, r.DeviceRing]) -> None:
    vmm, device = pair
    assert not vmm.device_sleeping() and not device.vmm_waiting()
    device.set_sleeping(True)
    vmm.set_waiting(True)
    assert vmm.device_sleeping() and device.vmm_waiting()


def test_attaching_something_that_is_not_a_ring_fails() -> None:
    fd = os.memfd_create("not-a-ring")
    try:
        os.ftruncate(fd, r.HEADER_SIZE)
        with pytest.raises(r.RingError, match="not a version"):
            r.attach_ring_memory(fd)
        os.ftruncate(fd, 16)
        with pytest.raises(r.RingError, match="smaller than its header"):
            r.attach_ring_memory(fd)
    finally:
        os.close(fd)


def test_a_ring_header_promising_more_slots_than_the_memory_holds_is_refused() -> None:
    layout = r.RingLayout(req_slots=4, evt_slots=4)
    fd, buf = r.create_ring_memory(layout)
    try:
        r._HEADER.pack_into(buf, 0, r.MAGIC, r.VERSION, 60000, 60000)
        with pytest.raises(r.RingError, match="header says"):
            r.attach_ring_memory(fd)
    finally:
        buf.close()
        os.close(fd)


@pytest.mark.parametrize("request_,ok", [
    (r.Request(0, OP_READ, 1, RANGE_IDS["com1"], 7, 0), True),
    (r.Request(0, OP_READ, 1, RANGE_IDS["com1"], 8, 0), False),        # past the range
    (r.Request(0, OP_READ, 3, RANGE_IDS["com1"], 0, 0), False),        # no 3-byte access
    (r.Request(0, OP_READ, 1, RANGE_IDS["pit"], 0, 0), False),         # not served here
    (r.Request(0, OP_READ, 1, 200, 0, 0), False),                      # no such range
    (r.Request(0, OP_WRITE, 1, RANGE_IDS["com1"], 0, 0x100), False),   # value wider than size
    (r.Request(0, OP_WRITE, 2, RANGE_IDS["com1"], 0, 0xFFFF), True),
    (r.Request(0, OP_IRQ, 1, 0, 14, 1), True),
    (r.Request(0, OP_IRQ, 1, 0, 2, 1), False),                         # the cascade input
    (r.Request(0, OP_IRQ, 1, 0, 16, 1), False),
    (r.Request(0, OP_IRQ, 1, 0, 4, 2), False),                         # a level is 0 or 1
    (r.Request(0, OP_INTA, 1, 0, 0, 0), True),
    (r.Request(0, OP_CONTROL, 9, 0, 1, 0), False),
    (r.Request(0, 99, 1, 0, 0, 0), False),
])
def test_the_device_process_checks_every_request(request_: r.Request, ok: bool) -> None:
    sizes = {RANGE_IDS["com1"]: RANGES[RANGE_IDS["com1"]].size}
    assert r.valid_request(request_, sizes) is ok


def test_layouts_outside_the_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        r.RingLayout(req_slots=0)
    with pytest.raises(ValueError):
        r.RingLayout(evt_slots=r.MAX_SLOTS + 1)
