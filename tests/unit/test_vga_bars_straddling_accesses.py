"""The std VGA's BARs at their edges: accesses the guest makes across the end of the linear
framebuffer (BAR0) and across the ends of the register page's windows (BAR2), through a bus
as the machine maps them. The bus hands a device any access that starts inside its range,
so a dword at the last two bytes reaches the device with offset + size past its end."""

from __future__ import annotations

import pytest

from pyhvm.bus import Bus, mmio_bus
from pyhvm.devices import vbe as v
from pyhvm.devices import vga as vga_mod
from pyhvm.devices import vga_regs as r
from pyhvm.devices.vga import StdVga
from pyhvm.devices.vga_memory import PAGE_SHIFT

MiB = 1 << 20
LFB_BASE = 0xFD000000
MMIO_BASE = 0xFEBF0000


def machine(size: int = 1 * MiB) -> tuple[StdVga, bytearray, Bus]:
    memory = bytearray(size)
    vga = StdVga(memoryview(memory))
    bus = mmio_bus()
    bus.register(LFB_BASE, size, vga.lfb, "vga-lfb")
    bus.register(MMIO_BASE, vga_mod.MMIO_SIZE, vga.mmio, "vga-mmio")
    return vga, memory, bus


def vbe_registers(vga: StdVga) -> list[int]:
    saved = vga.vbe.index
    values = []
    for index in range(v.MMIO_REGISTER_COUNT):
        vga.vbe.index = index
        values.append(vga.vbe.read_data())
    vga.vbe.index = saved
    return values


# -- BAR0: the linear framebuffer -------------------------------------------------------------

def test_lfb_read_across_the_end_returns_the_last_bytes_and_floats_the_rest() -> None:
    vga, memory, bus = machine()
    memory[-2:] = b"\x34\x12"
    assert bus.read(LFB_BASE + len(memory) - 2, 4) == 0xFFFF1234
    assert bus.read(LFB_BASE + len(memory) - 1, 8) == 0xFFFFFFFFFFFFFF12


def test_lfb_write_across_the_end_stores_only_what_fits_and_marks_that_page() -> None:
    vga, memory, bus = machine()
    vga.take_dirty()
    bus.write(LFB_BASE + len(memory) - 3, 8, 0x1122334455667788)
    assert len(memory) == 1 * MiB  # nothing grew past video memory
    assert memory[-3:] == bytes((0x88, 0x77, 0x66))
    dirty = vga.take_dirty()
    assert [page for page, flag in enumerate(dirty) if flag] == [(len(memory) - 1) >> PAGE_SHIFT]


def test_lfb_access_inside_marks_both_pages_it_touches() -> None:
    vga, memory, bus = machine()
    vga.take_dirty()
    bus.write(LFB_BASE + 0x1FFE, 4, 0xAABBCCDD)
    assert memory[0x1FFE:0x2002] == bytes((0xDD, 0xCC, 0xBB, 0xAA))
    assert [page for page, flag in enumerate(vga.take_dirty()) if flag] == [1, 2]


# -- BAR2: the register page ------------------------------------------------------------------

def test_register_page_vga_ports_past_0x3df_read_as_a_hole() -> None:
    """0x41E-0x41F are ports 0x3DE-0x3DF (nobody's: 0xFF); 0x420-0x421 are a hole (0)."""
    vga, _, bus = machine()
    at = MMIO_BASE + vga_mod.MMIO_VGA_PORTS + vga_mod.MMIO_VGA_PORTS_SIZE - 2
    assert bus.read(at, 4) == 0x0000FFFF


def test_register_page_vga_port_write_across_the_end_touches_no_other_register() -> None:
    vga, _, bus = machine()
    vga.regs.write(r.MISC_WRITE - r.PORT_BASE, 1, 0x67)
    before = (bytes(vga.regs.sr), bytes(vga.regs.gr), bytes(vga.regs.cr), bytes(vga.regs.ar),
              bytes(vga.regs.dac), vga.regs.misc, vga.regs.pel_mask)
    at = MMIO_BASE + vga_mod.MMIO_VGA_PORTS + vga_mod.MMIO_VGA_PORTS_SIZE - 1
    bus.write(at, 8, 0xFFFFFFFFFFFFFFFF)
    after = (bytes(vga.regs.sr), bytes(vga.regs.gr), bytes(vga.regs.cr), bytes(vga.regs.ar),
             bytes(vga.regs.dac), vga.regs.misc, vga.regs.pel_mask)
    assert after == before


def test_register_page_vbe_dword_at_the_last_register_reads_zero_above_it() -> None:
    vga, _, bus = machine(16 * MiB)
    last = MMIO_BASE + vga_mod.MMIO_VBE + 2 * (v.MMIO_REGISTER_COUNT - 1)
    assert bus.read(last, 4) == 256  # 16 MiB in 64 KiB units
    assert bus.read(last + 1, 4) == 256 >> 8


def test_register_page_vbe_read_at_an_odd_offset_spans_two_registers() -> None:
    vga, _, bus = machine()
    bus.write(MMIO_BASE + vga_mod.MMIO_VBE + 2 * v.INDEX_XRES, 2, 0x0320)
    # The high byte of ID (0xB0C5) and the low byte of XRES (800 = 0x320).
    assert bus.read(MMIO_BASE + vga_mod.MMIO_VBE + 1, 2) == 0x20B0


def test_register_page_vbe_write_across_the_end_changes_no_register_nor_the_index() -> None:
    vga, _, bus = machine()
    vga.vbe.write(0, 2, v.INDEX_BPP)  # the port index a driver left selected
    before = vbe_registers(vga)
    last = MMIO_BASE + vga_mod.MMIO_VBE + 2 * (v.MMIO_REGISTER_COUNT - 1)
    bus.write(last, 4, 0x00010001)  # register 10 (read-only), 11
    assert vbe_registers(vga) == before
    assert vga.vbe.index == v.INDEX_BPP


# -- host-side construction -------------------------------------------------------------------

def test_video_memory_must_be_a_writable_byte_view() -> None:
    with pytest.raises(ValueError, match="writable byte view"):
        StdVga(memoryview(bytes(1 * MiB)))
    with pytest.raises(ValueError, match="writable byte view"):
        StdVga(memoryview(bytearray(2 * MiB)).cast("H"))  # 1 Mi items of 2 bytes


def test_write_plane_refuses_a_plane_that_does_not_exist() -> None:
    memory = bytearray(1 * MiB)
    vga = StdVga(memoryview(memory))
    with pytest.raises(ValueError, match="not 0-3"):
        vga.write_plane(4, 0, b"\x01")
    assert not any(memory)
