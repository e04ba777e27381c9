"""The legacy VGA memory window at 0xA0000-0xBFFFF: host accesses to the four planes.

Video memory layout: plane p, offset o is byte 4 * o + p of video memory (the planes are
interleaved a dword per offset, as in QEMU). So a chain-4 mode (13h, VBE) sees video
memory as linear bytes, the same bytes the linear framebuffer shows, and the legacy planes
are the first 256 KiB.

The graphics controller's memory map select (GR6 bits 3:2) picks the window: 0 = 128 KiB at
0xA0000, 1 = 64 KiB at 0xA0000 (plus the VBE bank offset), 2 = 32 KiB at 0xB0000, 3 = 32 KiB
at 0xB8000; other addresses in 0xA0000-0xBFFFF read 0xFF and drop writes. Then, per the
sequencer and graphics controller:

- chain-4 (SR4 bit 3): byte A is plane A & 3 at offset A >> 2, i.e. video memory byte A;
  the map mask still gates the plane written.
- odd/even (GR5 bit 4, text modes): even addresses reach plane 0 (or 2), odd ones plane 1
  (or 3); GR4 bit 1 picks the pair for reads, the map mask gates writes.
- planar: a read loads the four latches and returns plane GR4 (read mode 0) or the colour
  compare result (read mode 1); a write combines the byte with the latches through write
  mode 0-3, data rotate, the logical function, set/reset, the bit mask and the map mask.

Offsets in VGA modes wrap at 64 KiB per plane (256 KiB of planes), as on the real chip; with
the VBE bank the offset is bounded by video memory. No access ever leaves video memory.
"""

from __future__ import annotations

from typing import Callable

from . import vga_regs as r

WINDOW_BASE = 0xA0000
WINDOW_SIZE = 0x20000
PLANE_SIZE = 0x10000
VGA_PLANES_SIZE = 4 * PLANE_SIZE
PAGE_SHIFT = 12

# (window start, window size) inside the 128 KiB legacy range, per memory map select.
MAP_WINDOWS = ((0x00000, 0x20000), (0x00000, 0x10000), (0x10000, 0x8000), (0x18000, 0x8000))


def _expand(nibble: int) -> int:
    """A 4-bit plane mask as a dword with 0xFF in each selected plane's byte."""
    return sum(0xFF << (8 * p) for p in range(4) if nibble >> p & 1)


EXPAND = tuple(_expand(n) for n in range(16))


class LegacyWindow:
    """The 128 KiB window as a bus device (mapped at WINDOW_BASE, WINDOW_SIZE bytes).

    `vram` is a writable memoryview of video memory; `mark_dirty(page)` records a changed
    4 KiB page of it for the display; `bank_offset()` is the VBE bank (0 without VBE);
    `vbe_enabled()` says whether offsets are bounded by video memory rather than wrapped
    at 256 KiB. Wider accesses are successive bytes, lowest address first.
    """

    def __init__(self, regs: r.VgaRegisters, vram: memoryview,
                 mark_dirty: Callable[[int], None], bank_offset: Callable[[], int],
                 vbe_enabled: Callable[[], bool]) -> None:
        if len(vram) < VGA_PLANES_SIZE:
            raise ValueError("video memory must hold the 256 KiB of VGA planes")
        self._regs = regs
        self._vram = vram
        self._size = len(vram)
        self._mark_dirty = mark_dirty
        self._bank_offset = bank_offset
        self._vbe_enabled = vbe_enabled
        self.latch = 0

    def reset(self) -> None:
        self.latch = 0

    def read(self, offset: int, size: int) -> int:
        value = 0
        for lane in range(size):
            value |= self.read_byte(offset + lane) << (8 * lane)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        for lane in range(size):
            self.write_byte(offset + lane, (value >> (8 * lane)) & 0xFF)

    def _decode(self, offset: int) -> int | None:
        """Window offset -> offset in the VGA address space, or None outside the map."""
        gr = self._regs.gr_eff
        mode = (gr[r.GR_MISC] >> r.GR6_MAP_SHIFT) & 3
        start, size = MAP_WINDOWS[mode]
        address = offset - start
        if not 0 <= address < size:
            return None
        if mode == 1:
            address += self._bank_offset()
        return address

    def read_byte(self, offset: int) -> int:
        address = self._decode(offset)
        if address is None:
            return 0xFF
        regs = self._regs
        sr, gr = regs.sr_eff, regs.gr_eff
        vram = self._vram
        if sr[r.SR_MEMORY_MODE] & r.SR4_CHAIN4:
            if not self._vbe_enabled():
                address &= VGA_PLANES_SIZE - 1
            return vram[address] if address < self._size else 0xFF
        address &= PLANE_SIZE - 1 if not self._vbe_enabled() else (self._size >> 2) - 1
        if gr[r.GR_MODE] & r.GR5_ODD_EVEN:
            plane = (gr[r.GR_READ_MAP] & 2) | (address & 1)
            return vram[4 * (address >> 1) + plane]
        base = 4 * address
        self.latch = int.from_bytes(vram[base:base + 4], "little")
        if not gr[r.GR_MODE] & r.GR5_READ_MODE1:
            return (self.latch >> (8 * (gr[r.GR_READ_MAP] & 3))) & 0xFF
        # Read mode 1: a bit is 1 where every plane not "don't care" matches the colour.
        differ = (self.latch ^ EXPAND[gr[r.GR_COLOR_COMPARE] & 0xF]) & \
            EXPAND[gr[r.GR_COLOR_DONT_CARE] & 0xF]
        differ |= differ >> 16
        differ |= differ >> 8
        return ~differ & 0xFF

    def write_byte(self, offset: int, value: int) -> None:
        address = self._decode(offset)
        if address is None:
            return
        regs = self._regs
        sr, gr = regs.sr_eff, regs.gr_eff
        vram = self._vram
        map_mask = sr[r.SR_MAP_MASK]
        if sr[r.SR_MEMORY_MODE] & r.SR4_CHAIN4:
            if not self._vbe_enabled():
                address &= VGA_PLANES_SIZE - 1
            if address < self._size and map_mask & (1 << (address & 3)):
                vram[address] = value
                self._mark_dirty(address >> PAGE_SHIFT)
            return
        address &= PLANE_SIZE - 1 if not self._vbe_enabled() else (self._size >> 2) - 1
        if gr[r.GR_MODE] & r.GR5_ODD_EVEN:
            plane = (gr[r.GR_READ_MAP] & 2) | (address & 1)
            if map_mask & (1 << plane):
                at = 4 * (address >> 1) + plane
                vram[at] = value
                self._mark_dirty(at >> PAGE_SHIFT)
            return
        self._write_planar(4 * address, value, gr, map_mask)

    def _write_planar(self, base: int, value: int, gr: bytearray, map_mask: int) -> None:
        latch = self.latch
        mode = gr[r.GR_MODE] & r.GR5_WRITE_MODE
        rotate = gr[r.GR_DATA_ROTATE] & 7
        if mode == 1:
            data = latch  # the latches are written back as they are
        else:
            if mode == 0:
                byte = ((value >> rotate) | (value << (8 - rotate))) & 0xFF
                data = byte * 0x01010101
                enable = EXPAND[gr[r.GR_ENABLE_SET_RESET] & 0xF]
                data = (data & ~enable) | (EXPAND[gr[r.GR_SET_RESET] & 0xF] & enable)
                bit_mask = gr[r.GR_BIT_MASK]
            elif mode == 2:
                data = EXPAND[value & 0xF]
                bit_mask = gr[r.GR_BIT_MASK]
            else:
                byte = ((value >> rotate) | (value << (8 - rotate))) & 0xFF
                bit_mask = gr[r.GR_BIT_MASK] & byte
                data = EXPAND[gr[r.GR_SET_RESET] & 0xF]
            function = (gr[r.GR_DATA_ROTATE] >> 3) & 3
            if function == 1:
                data &= latch
            elif function == 2:
                data |= latch
            elif function == 3:
                data ^= latch
            mask = bit_mask * 0x01010101
            data = (data & mask) | (latch & ~mask)
        write_mask = EXPAND[map_mask & 0xF]
        old = int.from_bytes(self._vram[base:base + 4], "little")
        new = ((old & ~write_mask) | (data & write_mask)) & 0xFFFFFFFF
        self._vram[base:base + 4] = new.to_bytes(4, "little")
        self._mark_dirty(base >> PAGE_SHIFT)

    def alias(self) -> tuple[int, int, int] | None:
        """(guest address, video memory offset, size) of a window that may be plain memory
        now, or None when accesses must trap.

        Only chain-4 with every plane writable is a straight byte mapping (mode 13h, VBE
        banks); text (odd/even) and planar modes need the model on every access.
        """
        sr, gr = self._regs.sr_eff, self._regs.gr_eff
        if not sr[r.SR_MEMORY_MODE] & r.SR4_CHAIN4 or \
                sr[r.SR_MAP_MASK] & r.SR2_ALL_PLANES != r.SR2_ALL_PLANES:
            return None
        mode = (gr[r.GR_MISC] >> r.GR6_MAP_SHIFT) & 3
        start, size = MAP_WINDOWS[mode]
        offset = self._bank_offset() if mode == 1 else 0
        limit = self._size if self._vbe_enabled() else VGA_PLANES_SIZE
        if offset + size > limit:  # a trapped access would wrap: keep trapping
            return None
        return WINDOW_BASE + start, offset, size
