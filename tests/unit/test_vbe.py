"""Bochs VBE dispi registers: mode setting, and sizes clamped as the Bochs/QEMU device does."""

from __future__ import annotations

import pytest

from pyhvm.devices import vbe as v
from pyhvm.devices import vga as vga_mod
from pyhvm.devices import vga_regs as r
from pyhvm.devices.vga import StdVga
from tests.vbe_access import MiB, getreg, new_vga, setreg



def make(size: int = 16 * MiB) -> tuple[StdVga, bytearray]:
    return new_vga(size)


def set_mode(vga: StdVga, x: int, y: int, bpp: int, flags: int = v.LFB_ENABLED) -> None:
    setreg(vga, v.INDEX_ENABLE, 0)
    setreg(vga, v.INDEX_XRES, x)
    setreg(vga, v.INDEX_YRES, y)
    setreg(vga, v.INDEX_BPP, bpp)
    setreg(vga, v.INDEX_ENABLE, v.ENABLED | flags)


def test_id_reads_b0c5_and_accepts_only_known_ids() -> None:
    vga, _ = make()
    assert getreg(vga, v.INDEX_ID) == 0xB0C5
    setreg(vga, v.INDEX_ID, 0xB0C2)
    assert getreg(vga, v.INDEX_ID) == 0xB0C2
    setreg(vga, v.INDEX_ID, 0x1234)
    assert getreg(vga, v.INDEX_ID) == 0xB0C2


def test_video_memory_64k_reports_the_size() -> None:
    vga, _ = make(8 * MiB)
    assert getreg(vga, v.INDEX_VIDEO_MEMORY_64K) == 128
    assert getreg(vga, 0x0F) == 0  # no such register


def test_mode_set_clears_the_visible_frame_unless_noclearmem() -> None:
    vga, memory = make()
    memory[:1024 * 768 * 4 + 16] = b"\xAA" * (1024 * 768 * 4 + 16)
    set_mode(vga, 1024, 768, 32, v.LFB_ENABLED | v.NOCLEARMEM)
    assert memory[0] == 0xAA
    setreg(vga, v.INDEX_ENABLE, 0)
    set_mode(vga, 1024, 768, 32)
    assert vga.vbe.enabled and vga.vbe.line_offset == 4096
    assert not any(memory[:1024 * 768 * 4]) and memory[1024 * 768 * 4] == 0xAA
    assert getreg(vga, v.INDEX_VIRT_WIDTH) == 1024
    assert getreg(vga, v.INDEX_VIRT_HEIGHT) == 16 * MiB // 4096


def test_enabled_mode_forces_chain4_graphics_memory_map_1() -> None:
    vga, _ = make()
    set_mode(vga, 640, 480, 8)
    assert vga.regs.gr_eff[r.GR_MISC] & 0x0D == 0x05
    assert vga.regs.sr_eff[r.SR_MEMORY_MODE] & r.SR4_CHAIN4
    assert vga.regs.sr[r.SR_MEMORY_MODE] == 0  # the guest's own value reads back unchanged
    assert vga.legacy_alias() == (0xA0000, 0, 0x10000)


@pytest.mark.parametrize("bpp,stored", [(8, 8), (15, 15), (16, 16), (24, 24), (32, 32),
                                        (4, 4), (7, 8), (0, 8), (64, 8)])
def test_unknown_depth_becomes_8(bpp: int, stored: int) -> None:
    vga, _ = make()
    set_mode(vga, 640, 480, bpp)
    assert getreg(vga, v.INDEX_BPP) == stored


def test_width_rounds_down_to_8_and_is_bounded() -> None:
    vga, _ = make()
    set_mode(vga, 643, 480, 8)
    assert vga.vbe.xres == 640
    setreg(vga, v.INDEX_XRES, 3)
    assert vga.vbe.xres == 8
    setreg(vga, v.INDEX_XRES, 0xFFFF)
    assert vga.vbe.xres == v.MAX_XRES


def test_height_is_cut_to_what_video_memory_holds() -> None:
    vga, _ = make(1 * MiB)
    set_mode(vga, 1024, 768, 32)  # 3 MiB would be needed
    assert vga.vbe.yres == MiB // 4096
    assert vga.vbe.yres * vga.vbe.line_offset <= MiB


def test_virtual_width_is_at_least_the_width() -> None:
    vga, _ = make()
    set_mode(vga, 800, 600, 16)
    setreg(vga, v.INDEX_VIRT_WIDTH, 100)
    assert getreg(vga, v.INDEX_VIRT_WIDTH) == 800
    setreg(vga, v.INDEX_VIRT_WIDTH, 1024)
    assert vga.vbe.line_offset == 2048


def test_offsets_that_run_past_memory_are_dropped_y_first() -> None:
    vga, _ = make(4 * MiB)
    set_mode(vga, 1024, 768, 32)
    setreg(vga, v.INDEX_X_OFFSET, 8)
    assert vga.vbe.start == 32
    setreg(vga, v.INDEX_Y_OFFSET, 300)  # 300 + 768 lines of 4096 bytes > 4 MiB
    assert getreg(vga, v.INDEX_Y_OFFSET) == 0 and getreg(vga, v.INDEX_X_OFFSET) == 8
    setreg(vga, v.INDEX_Y_OFFSET, 100)
    assert vga.vbe.start == 100 * 4096 + 32
    assert vga.vbe.start + vga.vbe.yres * vga.vbe.line_offset <= 4 * MiB


def test_getcaps_reports_maximums() -> None:
    vga, _ = make()
    setreg(vga, v.INDEX_ENABLE, v.GETCAPS)
    assert (getreg(vga, v.INDEX_XRES), getreg(vga, v.INDEX_YRES),
            getreg(vga, v.INDEX_BPP)) == (v.MAX_XRES, v.MAX_YRES, 32)


def test_bank_is_masked_to_existing_banks() -> None:
    vga, _ = make(4 * MiB)
    set_mode(vga, 640, 480, 8)
    setreg(vga, v.INDEX_BANK, 0xFFFF)
    assert getreg(vga, v.INDEX_BANK) == 63
    assert vga.vbe.bank_offset == 63 << 16
    assert vga.legacy_alias() == (0xA0000, 63 << 16, 0x10000)


def test_dword_out_to_1ce_sets_index_and_data() -> None:
    vga, _ = make()
    vga.vbe.write(0, 4, (640 << 16) | v.INDEX_XRES)
    assert vga.vbe.regs[v.INDEX_XRES] == 640


def test_8bit_dac_flag_keeps_full_dac_values() -> None:
    vga, _ = make()
    set_mode(vga, 640, 480, 8, v.LFB_ENABLED | v.DAC_8BIT)
    vga.regs.write(r.DAC_WRITE_INDEX - r.PORT_BASE, 1, 0)
    for value in (0xFF, 0x80, 0x41):
        vga.regs.write(r.DAC_DATA - r.PORT_BASE, 1, value)
    assert bytes(vga.regs.dac[:3]) == bytes((0xFF, 0x80, 0x41))


def test_register_page_shows_vbe_words_vga_ports_and_qemu_extension() -> None:
    vga, _ = make()
    mmio = vga.mmio
    assert mmio.read(vga_mod.MMIO_VBE, 2) == 0xB0C5
    mmio.write(vga_mod.MMIO_VBE + 2 * v.INDEX_XRES, 2, 800)
    mmio.write(vga_mod.MMIO_VBE + 2 * v.INDEX_YRES, 2, 600)
    mmio.write(vga_mod.MMIO_VBE + 2 * v.INDEX_BPP, 2, 32)
    mmio.write(vga_mod.MMIO_VBE + 2 * v.INDEX_ENABLE, 2, v.ENABLED | v.LFB_ENABLED)
    assert vga.vbe.enabled and vga.vbe.xres == 800
    assert mmio.read(vga_mod.MMIO_VBE + 2 * v.INDEX_VIDEO_MEMORY_64K, 2) == 256
    assert mmio.read(vga_mod.MMIO_VBE + 2 * v.INDEX_XRES, 4) == 800 | 600 << 16
    mmio.write(0x400 + 0x02, 1, 0x67)                 # misc output via 0x3C2
    assert vga.regs.misc == 0x67
    mmio.write(0x400 + 0x14, 2, 0x0E0A)               # 0x3D4/0x3D5 in one word
    assert vga.regs.cr[0x0A] == 0x0E
    assert mmio.read(0x600, 4) == 8 and mmio.read(0x604, 4) == 0x1E1E1E1E
    assert mmio.read(0x800, 4) == 0
    mmio.write(0x800, 4, 0xFFFFFFFF)  # a hole: dropped


def test_pci_function_is_qemu_std_vga() -> None:
    fn = vga_mod.StdVgaPci(16 * MiB)
    assert fn.config_read(0, 4) == 0x11111234
    assert fn.config_read(0x08, 4) == 0x03000002
    assert fn.config_read(0x2C, 4) == 0x11001AF4
    assert fn.config_read(0x10, 4) == 0x08  # prefetchable 32-bit memory
    fn.config_write(0x10, 4, 0xFFFFFFFF)
    assert fn.config_read(0x10, 4) == 0xFF000008  # 16 MiB
    fn.config_write(0x18, 4, 0xFFFFFFFF)
    assert fn.config_read(0x18, 4) == 0xFFFFF000
    assert fn.interrupt_pin == 0


def test_disabling_resets_the_bank_offset() -> None:
    vga, _ = make()
    set_mode(vga, 640, 480, 8)
    setreg(vga, v.INDEX_BANK, 2)
    setreg(vga, v.INDEX_ENABLE, 0)
    assert vga.vbe.bank_offset == 0 and not vga.vbe.enabled
