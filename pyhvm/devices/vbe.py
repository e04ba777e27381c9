"""The Bochs VBE "dispi" extension: linear framebuffer modes set through two ports.

Drivers (Linux bochs-drm and bochsfb, the Bochs/QEMU VGA BIOS, OSDev guests) write an index
to 0x1CE and a 16-bit value to 0x1CF; QEMU's std VGA also shows the registers as 16-bit
words at BAR2 + 0x500 + 2 * index. Registers: ID (0xB0C0-0xB0C5), XRES, YRES, BPP (4, 8, 15,
16, 24, 32), ENABLE (enabled, GETCAPS, 8-bit DAC, LFB, NOCLEARMEM), BANK (a 64 KiB window of
video memory at 0xA0000), VIRT_WIDTH/VIRT_HEIGHT, X/Y_OFFSET, VIDEO_MEMORY_64K.

There is no way to report an error through this interface, so a size that does not fit is
adjusted to the nearest one that does, as the Bochs/QEMU device does: widths are multiples
of 8 (at least 8, at most MAX_XRES), the virtual width is at least the width, the height is
cut to what fits video memory, an offset that would run past the end is dropped (Y first,
then X), an unknown depth becomes 8 and the bank is masked to the banks that exist. So the
visible frame (start + YRES lines of the line length) always lies inside video memory.
VIRT_HEIGHT reads back as the number of lines video memory holds at the virtual width.
"""

from __future__ import annotations

from typing import Callable

from . import vga_regs as r

INDEX_PORT = 0x1CE
DATA_PORT = 0x1CF
PORT_COUNT = 3  # 0x1CE index, 0x1CF data, 0x1D0 data (the dword `outl 0x1CE` trick)

(INDEX_ID, INDEX_XRES, INDEX_YRES, INDEX_BPP, INDEX_ENABLE, INDEX_BANK, INDEX_VIRT_WIDTH,
 INDEX_VIRT_HEIGHT, INDEX_X_OFFSET, INDEX_Y_OFFSET, INDEX_VIDEO_MEMORY_64K) = range(11)
REGISTER_COUNT = 10           # ID..Y_OFFSET are stored; VIDEO_MEMORY_64K is derived
MMIO_REGISTER_COUNT = 11      # the BAR2 window shows 0x00-0x0A

ID0, ID5 = 0xB0C0, 0xB0C5     # a guest writes the ID it speaks; ID5 is the newest
ENABLED = 0x01
GETCAPS = 0x02                # reads of XRES/YRES/BPP return the maximums
DAC_8BIT = 0x20
LFB_ENABLED = 0x40
NOCLEARMEM = 0x80

MAX_XRES = 16000
MAX_YRES = 12000
MAX_BPP = 32
BANK_SIZE = 0x10000
DEPTHS = {4: 4, 8: 8, 15: 16, 16: 16, 24: 24, 32: 32}  # BPP value -> bits in memory


class Vbe:
    """The dispi registers over a video memory of `vram_size` bytes (a power of two).

    Ports: `clear(size)` zeroes the first `size` bytes of video memory (a mode set without
    NOCLEARMEM); `on_mode_change()` runs after ENABLE or BANK change (the legacy window's
    mapping and the display follow). It shapes the VGA registers through `regs.vbe_apply`.
    """

    def __init__(self, regs: r.VgaRegisters, vram_size: int, clear: Callable[[int], None],
                 on_mode_change: Callable[[], None] | None = None) -> None:
        if vram_size < BANK_SIZE or vram_size & (vram_size - 1):
            raise ValueError(f"video memory of {vram_size:#x} bytes is not a power of two "
                             "of at least 64 KiB")
        self._regs = regs
        self.vram_size = vram_size
        self._clear = clear
        self.on_mode_change = on_mode_change
        self._bank_mask = (vram_size >> 16) - 1
        regs.vbe_apply = self._apply
        self.reset()

    def reset(self) -> None:
        self.index = 0
        self.regs = [0] * REGISTER_COUNT
        self.regs[INDEX_ID] = ID5
        self.line_offset = 0   # bytes per line of the virtual screen
        self.start = 0         # byte offset in video memory of the visible top-left pixel
        self.bank_offset = 0
        self._regs.dac_8bit = False
        self._regs.refresh_effective()

    # -- derived state ------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return bool(self.regs[INDEX_ENABLE] & ENABLED)

    @property
    def xres(self) -> int:
        return self.regs[INDEX_XRES]

    @property
    def yres(self) -> int:
        return self.regs[INDEX_YRES]

    @property
    def bpp(self) -> int:
        return self.regs[INDEX_BPP]

    # -- the ports ----------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        """Port access at 0x1CE + offset: each 16-bit lane is the index or a data port."""
        value = 0
        for lane in range(0, size, 2):
            value |= (self._read_port(offset + lane) & 0xFFFF) << (8 * lane)
        return value & ((1 << (8 * size)) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        for lane in range(0, size, 2):
            self._write_port(offset + lane, (value >> (8 * lane)) & 0xFFFF)

    def _read_port(self, port: int) -> int:
        if port == 0:
            return self.index
        if port in (1, 2):
            return self.read_data()
        return 0xFFFF

    def _write_port(self, port: int, value: int) -> None:
        if port == 0:
            self.index = value
        elif port in (1, 2):
            self.write_data(value)

    def read_data(self) -> int:
        index = self.index
        if index < REGISTER_COUNT:
            if self.regs[INDEX_ENABLE] & GETCAPS:
                caps = {INDEX_XRES: MAX_XRES, INDEX_YRES: MAX_YRES, INDEX_BPP: MAX_BPP}
                if index in caps:
                    return caps[index]
            return self.regs[index]
        if index == INDEX_VIDEO_MEMORY_64K:
            return self.vram_size >> 16
        return 0

    def write_data(self, value: int) -> None:
        index, value = self.index, value & 0xFFFF
        if index == INDEX_ID:
            if ID0 <= value <= ID5:
                self.regs[INDEX_ID] = value
        elif index in (INDEX_XRES, INDEX_YRES, INDEX_BPP, INDEX_VIRT_WIDTH, INDEX_X_OFFSET,
                       INDEX_Y_OFFSET):
            self.regs[index] = value
            self._fixup()
            self._regs.refresh_effective()
        elif index == INDEX_BANK:
            mask = self._bank_mask >> 2 if self.bpp == 4 else self._bank_mask
            value &= mask
            self.regs[INDEX_BANK] = value
            self.bank_offset = value << 16
            self._changed()
        elif index == INDEX_ENABLE:
            self._write_enable(value)

    def _write_enable(self, value: int) -> None:
        if value & ENABLED and not self.enabled:
            self.regs[INDEX_VIRT_WIDTH] = 0
            self.regs[INDEX_X_OFFSET] = 0
            self.regs[INDEX_Y_OFFSET] = 0
            self.regs[INDEX_ENABLE] |= ENABLED
            self._fixup()
            if not value & NOCLEARMEM:
                self._clear(self.yres * self.line_offset)
        else:
            self.bank_offset = 0
        self._regs.dac_8bit = bool(value & DAC_8BIT)
        self.regs[INDEX_ENABLE] = value
        self._regs.refresh_effective()
        self._changed()

    def _fixup(self) -> None:
        """Bring the mode registers to the nearest values that fit video memory."""
        regs = self.regs
        if not regs[INDEX_ENABLE] & ENABLED:
            return
        if regs[INDEX_BPP] not in DEPTHS:
            regs[INDEX_BPP] = 8
        bits = DEPTHS[regs[INDEX_BPP]]
        xres = regs[INDEX_XRES] & ~7
        regs[INDEX_XRES] = min(max(xres, 8), MAX_XRES)
        virt_width = min(regs[INDEX_VIRT_WIDTH] & ~7, MAX_XRES)
        regs[INDEX_VIRT_WIDTH] = max(virt_width, regs[INDEX_XRES])
        line = regs[INDEX_VIRT_WIDTH] * bits // 8
        max_lines = self.vram_size // line
        regs[INDEX_YRES] = min(max(regs[INDEX_YRES], 1), MAX_YRES, max_lines)
        regs[INDEX_X_OFFSET] = min(regs[INDEX_X_OFFSET], MAX_XRES)
        regs[INDEX_Y_OFFSET] = min(regs[INDEX_Y_OFFSET], MAX_YRES)
        visible = regs[INDEX_YRES] * line
        start = regs[INDEX_X_OFFSET] * bits // 8 + regs[INDEX_Y_OFFSET] * line
        if start + visible > self.vram_size:
            regs[INDEX_Y_OFFSET] = 0
            start = regs[INDEX_X_OFFSET] * bits // 8
            if start + visible > self.vram_size:
                regs[INDEX_X_OFFSET] = 0
                start = 0
        regs[INDEX_VIRT_HEIGHT] = min(max_lines, 0xFFFF)
        self.line_offset = line
        self.start = start & ~3  # the CRTC start address counts 32-bit words

    def _apply(self, sr: bytearray, gr: bytearray, cr: bytearray) -> None:
        """While enabled, the mode looks like a VGA graphics mode to the rest of the chip:
        graphics, memory map 1 (the 64 KiB bank at 0xA0000), chain-4 with every plane for
        8 bpp and up (planar for 4 bpp), no CGA addressing, no double scan."""
        if not self.enabled:
            return
        gr[r.GR_MISC] = (gr[r.GR_MISC] & ~0x0C) | (1 << r.GR6_MAP_SHIFT) | r.GR6_GRAPHICS
        cr[r.CR_MODE] |= 0x03
        cr[r.CR_MAX_SCAN] &= ~0x9F
        if self.bpp == 4:
            shift = 0
            sr[r.SR_CLOCKING] &= ~r.SR1_DOT_CLOCK_DIV2
        else:
            shift = 2
            sr[r.SR_MEMORY_MODE] |= r.SR4_CHAIN4
            sr[r.SR_MAP_MASK] |= r.SR2_ALL_PLANES
        gr[r.GR_MODE] = (gr[r.GR_MODE] & ~0x60) | (shift << r.GR5_SHIFT_SHIFT)

    def _changed(self) -> None:
        if self.on_mode_change is not None:
            self.on_mode_change()
