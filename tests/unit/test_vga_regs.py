"""VGA register file (IBM VGA Technical Reference; FreeVGA's register descriptions)."""

from __future__ import annotations

from pyhvm.devices import vga_regs as r
from pyhvm.devices.vga_regs import VgaRegisters


def out(regs: VgaRegisters, port: int, value: int, size: int = 1) -> None:
    regs.write(port - r.PORT_BASE, size, value)


def inb(regs: VgaRegisters, port: int) -> int:
    return regs.read(port - r.PORT_BASE, 1)


def color_regs() -> VgaRegisters:
    regs = VgaRegisters()
    out(regs, r.MISC_WRITE, 0x67)
    return regs


def test_misc_output_io_select_moves_the_crtc_between_3bx_and_3dx() -> None:
    regs = VgaRegisters()  # reset: monochrome addressing
    out(regs, r.CRTC_INDEX_MONO, 0x0E)
    out(regs, r.CRTC_DATA_MONO, 0x12)
    assert regs.cr[0x0E] == 0x12
    assert inb(regs, r.CRTC_DATA_COLOR) == 0xFF  # 0x3Dx does not answer in mono mode
    out(regs, r.MISC_WRITE, 0x01)
    assert inb(regs, r.MISC_READ) == 0x01
    assert inb(regs, r.CRTC_INDEX_MONO) == 0xFF
    out(regs, r.CRTC_INDEX_COLOR, 0x0E)
    assert inb(regs, r.CRTC_DATA_COLOR) == 0x12


def test_word_write_to_an_index_port_loads_index_then_data() -> None:
    regs = color_regs()
    out(regs, r.SEQ_INDEX, 0x0F02, size=2)   # outw 0x3C4: SR2 (map mask) = 0x0F
    assert regs.sr[r.SR_MAP_MASK] == 0x0F
    out(regs, r.CRTC_INDEX_COLOR, 0x340A, size=2)
    assert regs.cr[r.CR_CURSOR_START] == 0x34


def test_sequencer_and_graphics_keep_only_defined_bits() -> None:
    regs = color_regs()
    out(regs, r.SEQ_INDEX, 0xFC)  # the index is 3 bits wide
    assert inb(regs, r.SEQ_INDEX) == 4
    out(regs, r.SEQ_DATA, 0xFF)
    assert regs.sr[r.SR_MEMORY_MODE] == 0x0E  # bits 1-3 only
    out(regs, r.GC_INDEX, r.GR_MODE)
    out(regs, r.GC_DATA, 0xFF)
    assert inb(regs, r.GC_DATA) == 0x7B  # bit 2 and bit 7 reserved


def test_crtc_protect_bit_locks_cr0_to_cr7_except_line_compare_bit() -> None:
    regs = color_regs()
    out(regs, r.CRTC_INDEX_COLOR, r.CR_V_RETRACE_END)
    out(regs, r.CRTC_DATA_COLOR, 0x80)
    out(regs, r.CRTC_INDEX_COLOR, 0x01)
    out(regs, r.CRTC_DATA_COLOR, 0x4F)
    assert regs.cr[0x01] == 0
    out(regs, r.CRTC_INDEX_COLOR, r.CR_OVERFLOW)
    out(regs, r.CRTC_DATA_COLOR, 0xFF)
    assert regs.cr[r.CR_OVERFLOW] == r.CR7_LINE_COMPARE8
    out(regs, r.CRTC_INDEX_COLOR, r.CR_OFFSET)  # above CR7: not protected
    out(regs, r.CRTC_DATA_COLOR, 0x28)
    assert regs.cr[r.CR_OFFSET] == 0x28


def test_attribute_flip_flop_alternates_and_input_status_read_resets_it() -> None:
    regs = color_regs()
    inb(regs, r.INPUT_STATUS1_COLOR)
    out(regs, r.AC_INDEX, 0x10 | r.AR_PALETTE_ADDRESS_SOURCE)
    out(regs, r.AC_INDEX, 0x0C)
    assert regs.ar[r.AR_MODE] == 0x0C
    assert inb(regs, r.AC_INDEX) == 0x30  # flip-flop back at index: reads the index
    out(regs, r.AC_INDEX, 0x01)           # index 1
    inb(regs, r.INPUT_STATUS1_COLOR)      # reset: the next write is an index again
    out(regs, r.AC_INDEX, 0x02)
    out(regs, r.AC_INDEX, 0x3F)
    assert regs.ar[2] == 0x3F and regs.ar[1] == 0
    assert inb(regs, r.AC_READ) == 0x3F


def test_palette_registers_hold_six_bits() -> None:
    regs = color_regs()
    inb(regs, r.INPUT_STATUS1_COLOR)
    out(regs, r.AC_INDEX, 5)
    out(regs, r.AC_INDEX, 0xFF)
    assert regs.ar[5] == 0x3F


def test_dac_write_cycle_of_three_then_index_advances() -> None:
    regs = color_regs()
    out(regs, r.DAC_WRITE_INDEX, 0xFF)
    for value in (0x3F, 0x20, 0x01, 0x11, 0x22, 0x33):
        out(regs, r.DAC_DATA, value)
    assert bytes(regs.dac[3 * 255:]) == bytes((0x3F, 0x20, 0x01))
    assert bytes(regs.dac[:3]) == bytes((0x11, 0x22, 0x33))  # the index wrapped to 0
    assert inb(regs, r.DAC_WRITE_INDEX) == 1
    assert inb(regs, r.DAC_READ_INDEX) == r.DAC_STATE_WRITE


def test_dac_values_are_six_bits_and_read_back_through_the_read_index() -> None:
    regs = color_regs()
    out(regs, r.DAC_WRITE_INDEX, 7)
    for value in (0xFF, 0x80, 0x41):
        out(regs, r.DAC_DATA, value)
    out(regs, r.DAC_READ_INDEX, 7)
    assert inb(regs, r.DAC_READ_INDEX) == r.DAC_STATE_READ
    assert [inb(regs, r.DAC_DATA) for _ in range(3)] == [0x3F, 0x00, 0x01]
    assert regs.dac_read_index == 8


def test_input_status_1_toggles_retrace_so_polling_loops_finish() -> None:
    regs = color_regs()
    seen = {inb(regs, r.INPUT_STATUS1_COLOR) & r.ST01_V_RETRACE for _ in range(4)}
    assert seen == {0, r.ST01_V_RETRACE}


def test_mapping_change_is_reported_for_map_mask_memory_mode_and_memory_map() -> None:
    calls = []
    regs = VgaRegisters(lambda: calls.append(1))
    out(regs, r.MISC_WRITE, 0x67)
    out(regs, r.SEQ_INDEX, r.SR_CHAR_MAP)
    out(regs, r.SEQ_DATA, 0)
    out(regs, r.GC_INDEX, r.GR_BIT_MASK)
    out(regs, r.GC_DATA, 0x0F)
    assert calls == []
    for index_port, data_port, index in ((r.SEQ_INDEX, r.SEQ_DATA, r.SR_MAP_MASK),
                                         (r.SEQ_INDEX, r.SEQ_DATA, r.SR_MEMORY_MODE),
                                         (r.GC_INDEX, r.GC_DATA, r.GR_MISC)):
        out(regs, index_port, index)
        out(regs, data_port, 0)
    assert len(calls) == 3


def test_reset_clears_registers_and_sets_pel_mask() -> None:
    regs = color_regs()
    out(regs, r.PEL_MASK, 0x0F)
    regs.reset()
    assert regs.misc == 0 and regs.pel_mask == 0xFF and not any(regs.cr)
