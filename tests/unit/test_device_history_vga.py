"""The VGA / VBE bugs other VMMs shipped, replayed against pyhvm's std VGA: one test per bug
class. Each plays the guest's part of the published reproducer register by register and
checks the rule that keeps pyhvm out of it: every access and every displayed byte stays
inside video memory, and no guest value reaches a division or an allocation unchecked.
docs/security/device-bugs.md ("VGA / VBE") says what each bug was, where, and which rule
answers it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pyhvm.devices import vbe as v
from pyhvm.devices import vga_regs as r
from pyhvm.devices.vga import StdVga
from pyhvm.devices.vga_memory import WINDOW_SIZE
from pyhvm.devices.vga_render import MAX_FRAME_PIXELS, VgaRenderer, screen_regs
from tests.vbe_access import MiB, new_vga, setreg

EDGES = (0, 1, 7, 8, 9, 0x7FFF, 0x8000, 0xFFFF, v.MAX_XRES, v.MAX_XRES + 1, v.MAX_YRES + 1)


def make(size: int = MiB) -> tuple[StdVga, bytearray]:
    return new_vga(size)


def out(vga: StdVga, port: int, value: int) -> None:
    vga.regs.write(port - r.PORT_BASE, 1, value)


def crtc(vga: StdVga, index: int, value: int) -> None:
    out(vga, r.CRTC_INDEX_COLOR, index)
    out(vga, r.CRTC_DATA_COLOR, value)


def gc(vga: StdVga, index: int, value: int) -> None:
    out(vga, r.GC_INDEX, index)
    out(vga, r.GC_DATA, value)


def render(vga: StdVga, memory: bytearray) -> np.ndarray:
    vram = np.frombuffer(memory, np.uint8)
    pixels, _ = VgaRenderer().render(screen_regs(vga), vram, None)
    return pixels


def frame_inside_vram(vga: StdVga) -> bool:
    vbe = vga.vbe
    return vbe.start + vbe.yres * vbe.line_offset <= vga.vram_size


def screen_on(vga: StdVga) -> None:
    """Attribute index with PAS set (after 0x3DA resets the flip-flop): the display runs."""
    vga.regs.read(r.INPUT_STATUS1_COLOR - r.PORT_BASE, 1)
    out(vga, r.AC_INDEX, r.AR_PALETTE_ADDRESS_SOURCE)


# -- 1. VBE banked window past video memory (CVE-2016-3710 / XSA-179) -----------------------

@pytest.mark.parametrize("bpp", [4, 8, 32])
def test_cve_2016_3710_banked_window_stays_inside_video_memory(bpp: int) -> None:
    """QEMU's VGA added the VBE bank offset to window addresses and checked the result
    against the wrong limit, so a guest in a VBE (or, after switching VBE off, a VGA) mode
    reached past video memory: reads and writes of QEMU's heap. pyhvm masks the bank to the
    banks that exist (a quarter of them in planar 4 bpp, where offsets count dwords) and the
    window never indexes past video memory; switching VBE off drops the bank."""
    vga, memory = make(MiB)
    setreg(vga, v.INDEX_XRES, 640)
    setreg(vga, v.INDEX_YRES, 480)
    setreg(vga, v.INDEX_BPP, bpp)
    setreg(vga, v.INDEX_ENABLE, v.ENABLED | v.NOCLEARMEM)
    for bank in (0xFFFF, 0x8000, 16, 15, 4, 3):
        setreg(vga, v.INDEX_BANK, bank)
        assert vga.vbe.bank_offset < vga.vram_size
        for offset in range(0, WINDOW_SIZE, 0x1FF):  # every map: the window's 128 KiB
            vga.window.write(offset, 4, 0xA5A5A5A5)
            vga.window.read(offset, 4)
    assert len(memory) == MiB  # nothing grew (an index past the end raises here)
    setreg(vga, v.INDEX_BANK, 0xFFFF)
    setreg(vga, v.INDEX_ENABLE, 0)
    assert vga.vbe.bank_offset == 0
    for offset in range(0, WINDOW_SIZE, 0x1FF):
        vga.window.write(offset, 4, 0x5A5A5A5A)


# -- 2. Mode registers whose products overflow (CVE-2016-3712) ------------------------------

def test_cve_2016_3712_any_vbe_register_values_keep_the_frame_inside_video_memory() -> None:
    """QEMU computed the frame size from XRES, YRES, BPP, VIRT_WIDTH and the offsets in
    32-bit arithmetic that a guest could overflow in VBE mode, then displayed (read) past
    video memory. pyhvm fixes the registers up on every write: width bounded and a multiple
    of 8, unknown depths become 8, the height cut to what memory holds, offsets that run
    past the end dropped. Every combination of edge values keeps start + YRES lines inside
    video memory, and the display renders without raising."""
    vga, memory = make(MiB)
    setreg(vga, v.INDEX_ENABLE, v.ENABLED | v.NOCLEARMEM)
    for bpp in (0, 4, 8, 15, 16, 24, 32, 33, 0xFFFF):
        setreg(vga, v.INDEX_BPP, bpp)
        for xres, yres, virt in itertools.product(EDGES[::2], EDGES[::2], (0, 0xFFFF)):
            for index, value in ((v.INDEX_XRES, xres), (v.INDEX_YRES, yres),
                                 (v.INDEX_VIRT_WIDTH, virt), (v.INDEX_X_OFFSET, 0xFFFF),
                                 (v.INDEX_Y_OFFSET, 0xFFFF)):
                setreg(vga, index, value)
                assert frame_inside_vram(vga), (bpp, xres, yres, virt, index)
    for bpp in (4, 8, 32):
        setreg(vga, v.INDEX_BPP, bpp)
        setreg(vga, v.INDEX_XRES, 0xFFFF)
        setreg(vga, v.INDEX_YRES, 0xFFFF)
        setreg(vga, v.INDEX_Y_OFFSET, 0xFFFF)
        screen_on(vga)
        pixels = render(vga, memory)
        assert pixels.shape[0] * pixels.shape[1] <= MAX_FRAME_PIXELS


# -- 3. Resolution larger than video memory: info leak (CVE-2014-3615) ----------------------

def test_cve_2014_3615_a_mode_larger_than_video_memory_shows_only_video_memory() -> None:
    """QEMU let the guest pick a VBE resolution larger than video memory; the display then
    showed host memory past it (an information leak through the screen, e.g. to a VNC
    viewer). pyhvm cuts YRES to the lines that fit, so the frame it renders is made of
    video memory bytes only: with memory all 0x01 in an 8-bit mode every pixel is DAC
    colour 1."""
    vga, memory = make(MiB)
    memory[:] = b"\x01" * MiB
    setreg(vga, v.INDEX_XRES, 4096)
    setreg(vga, v.INDEX_YRES, 4096)
    setreg(vga, v.INDEX_BPP, 8)
    setreg(vga, v.INDEX_ENABLE, v.ENABLED | v.NOCLEARMEM)
    assert vga.vbe.yres == MiB // 4096 and frame_inside_vram(vga)
    out(vga, r.DAC_WRITE_INDEX, 1)
    for component in (0x3F, 0x00, 0x3F):
        out(vga, r.DAC_DATA, component)
    screen_on(vga)
    pixels = render(vga, memory)
    assert pixels.shape[:2] == (MiB // 4096, 4096)
    assert np.all(pixels == pixels[0, 0]) and tuple(pixels[0, 0]) == (0xFF, 0, 0xFF)


# -- 4. CRTC start address, offset and split screen in the display (CVE-2017-13672/13673) --

@pytest.mark.parametrize("shift", [0, 1, 2])
def test_cve_2017_13672_crtc_values_never_read_outside_video_memory(shift: int) -> None:
    """QEMU's display update took the CRTC start address, line offset, line compare and
    sizes as given, so a guest could make it read past video memory (CVE-2017-13672,
    out-of-bounds read) or compute a wrong dirty region for a split screen (CVE-2017-13673,
    assertion failure). pyhvm's renderer reduces every line address modulo the 256 KiB of
    planes (VGA) or video memory (VBE) and gathers with modular indices; a frame too large
    is blank. Every CRTC register at 0 and 0xFF renders without raising."""
    vga, memory = make(MiB)
    memory[:] = bytes(range(256)) * (MiB // 256)
    gc(vga, r.GR_MISC, r.GR6_GRAPHICS | (1 << r.GR6_MAP_SHIFT))
    gc(vga, r.GR_MODE, shift << r.GR5_SHIFT_SHIFT)
    screen_on(vga)
    renderer = VgaRenderer()
    vram = np.frombuffer(memory, np.uint8)
    crtc(vga, r.CR_V_RETRACE_END, 0)  # registers 0-7 writable
    for value in (0x00, 0xFF):
        for mode in (0x00, 0x01, 0x02, 0x03, 0x43, 0xFF):
            for index in range(0x19):
                crtc(vga, index, value)
            crtc(vga, r.CR_MODE, mode)
            crtc(vga, r.CR_START_HI, 0xFF)
            crtc(vga, r.CR_START_LO, 0xFF)
            for compare in (0, 1, 0xFF):
                crtc(vga, r.CR_LINE_COMPARE, compare)
                dirty = np.ones(MiB >> 12, np.uint8)
                renderer.render(screen_regs(vga), vram, dirty)
                renderer.render(screen_regs(vga), vram, None)


# -- 5. Divisions by guest values (CVE-2016-9921 / 9922, cirrus) ----------------------------

def test_cve_2016_9921_zero_in_every_register_divides_nothing() -> None:
    """QEMU's Cirrus VGA divided by guest-set values (bits per pixel, the blit pitch) and a
    guest could make them zero. pyhvm has no Cirrus; in the std VGA the only divisions by
    guest-shaped values are by sizes the model derives (character height + 1, VBE line
    length from a fixed-up depth). With every register of every file at 0, then at 0xFF,
    nothing raises and the display renders."""
    vga, memory = make(MiB)
    for value in (0x00, 0xFF):
        for index in range(r.SR_COUNT):
            out(vga, r.SEQ_INDEX, index)
            out(vga, r.SEQ_DATA, value)
        for index in range(r.GR_COUNT):
            gc(vga, index, value)
        crtc(vga, r.CR_V_RETRACE_END, 0)
        for index in range(0x19):
            crtc(vga, index, value)
        for index in range(r.AR_COUNT):
            out(vga, r.AC_INDEX, index)
            out(vga, r.AC_INDEX, value)
        screen_on(vga)
        for vbe_index in range(v.MMIO_REGISTER_COUNT):
            setreg(vga, vbe_index, value * 0x101)
        render(vga, memory)
        setreg(vga, v.INDEX_ENABLE, 0)
        render(vga, memory)
