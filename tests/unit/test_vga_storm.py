"""Hostile-guest storms: random register and memory traffic never raises, never touches
memory outside video memory (guard bytes around it stay intact, memslots stay inside it),
and the renderer keeps producing pictures afterwards."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhvm.devices import vbe as v
from pyhvm.devices import vga_regs as r
from pyhvm.devices.vga import StdVga
from pyhvm.devices.vga_bios import set_text_mode3
from pyhvm.devices.vga_render import MAX_FRAME_PIXELS, VgaRenderer, screen_regs
from tests.unit.test_vga_display import display

MiB = 1 << 20
GUARD = 4096
VRAM = 1 * MiB

# Values that matter more often than chance would pick them.
interesting = st.one_of(st.integers(0, 0xFFFF), st.sampled_from(
    [0, 1, 2, 4, 5, 6, 8, 0x0E, 0x0F, 0x10, 0x20, 0x40, 0x41, 0x63, 0x67, 0x80, 0xFF,
     0xFFFF, v.ENABLED, v.ENABLED | v.NOCLEARMEM, v.ENABLED | v.DAC_8BIT, 640, 1024, 16000,
     15, 16, 24, 32]))
port_op = st.tuples(st.just("port"), st.integers(0x3B0, 0x3DF), st.sampled_from([1, 2]),
                    interesting, st.booleans())
vbe_op = st.tuples(st.just("vbe"), st.integers(0, 2), st.sampled_from([1, 2, 4]),
                   st.one_of(st.integers(0, 0xFFFFFFFF), interesting), st.booleans())
window_op = st.tuples(st.just("window"), st.integers(0, 0x1FFFF),
                      st.sampled_from([1, 2, 4, 8]), st.integers(0, 2**64 - 1), st.booleans())
lfb_op = st.tuples(st.just("lfb"), st.one_of(st.integers(0, VRAM - 1),
                                             st.integers(VRAM - 16, VRAM + 16)),
                   st.sampled_from([1, 2, 4, 8]), st.integers(0, 2**64 - 1), st.booleans())
mmio_op = st.tuples(st.just("mmio"), st.integers(0, 0xFFF), st.sampled_from([1, 2, 4, 8]),
                    interesting, st.booleans())
storm = st.lists(st.one_of(port_op, port_op, vbe_op, window_op, lfb_op, mmio_op),
                 max_size=150)


def run_storm(vga: StdVga, ops: list[tuple[str, int, int, int, bool]]) -> None:
    devices = {"port": (vga.regs, r.PORT_BASE), "vbe": (vga.vbe, 0), "window": (vga.window, 0),
               "lfb": (vga.lfb, 0), "mmio": (vga.mmio, 0)}
    for target, address, size, value, is_write in ops:
        device, base = devices[target]
        value &= (1 << (8 * size)) - 1
        if is_write:
            device.write(address - base, size, value)
        else:
            assert 0 <= device.read(address - base, size) < 1 << (8 * size)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=storm, text_first=st.booleans())
def test_register_storm_stays_inside_video_memory_and_renders(
        ops: list[tuple[str, int, int, int, bool]], text_first: bool) -> None:
    backing = bytearray(GUARD + VRAM + GUARD)
    vga = StdVga(memoryview(backing)[GUARD:GUARD + VRAM])
    if text_first:
        set_text_mode3(vga, bytes(range(256)) * 32)
    run_storm(vga, ops)
    assert not any(backing[:GUARD]) and not any(backing[-GUARD:])
    renderer = VgaRenderer()
    vram = np.frombuffer(backing, np.uint8)[GUARD:GUARD + VRAM]
    for dirty in (None, np.ones(VRAM >> 12, bool), np.zeros(VRAM >> 12, bool)):
        pixels, rows = renderer.render(screen_regs(vga), vram, dirty, blink_on=False)
        height, width, depth = pixels.shape
        assert depth == 3 and height * width <= MAX_FRAME_PIXELS
        assert rows is None or 0 <= rows[0] <= rows[1] <= height


config_op = st.tuples(st.just("config"), st.sampled_from([0x04, 0x10, 0x18, 0x30]),
                      st.just(4), st.sampled_from([0, 3, 0xFFFFFFFF, 0xFD000000, 0xE0000000,
                                                   0xA0000, 0xFEBF0000, 0x1000000]),
                      st.just(True))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.one_of(port_op, vbe_op, window_op, mmio_op, config_op), max_size=80))
def test_memslots_always_lie_inside_video_memory(
        ops: list[tuple[str, int, int, int, bool]]) -> None:
    d, m = display("shared", VRAM)
    base = d._host_address
    for op in ops:
        if op[0] == "config":
            d.function.config_write(op[1], op[2], op[3])
        else:
            run_storm(d.vga, [op])
        for slot, (gpa, size, host, flags) in m.vm.slots.items():
            assert base <= host and host + size <= base + VRAM, slot
    frame = d.frame()
    assert frame.pixels.ndim == 3
