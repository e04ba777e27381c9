"""QEMU's "std VGA" (PCI 1234:1111): a VGA with the Bochs VBE extension and a linear
framebuffer, as QEMU and Bochs present it.

`StdVga` owns video memory (handed in as a writable memoryview of `vram_size` bytes, a power
of two) and exposes four bus devices:

- `regs` at ports 0x3B0-0x3DF (vga_regs.py),
- `vbe` at ports 0x1CE-0x1D0 (vbe.py),
- `window`, the legacy window at 0xA0000-0xBFFFF (vga_memory.py),
- `lfb`, the linear framebuffer: BAR0, every byte of video memory, and
- `mmio`, BAR2's 4 KiB register page: 0x400-0x41F the VGA ports 0x3C0-0x3DF (bytes),
  0x500-0x515 the VBE registers as 16-bit words (2 * index), 0x600-0x607 QEMU's extended
  registers (region size, framebuffer byte order: little endian only).

`StdVgaPci` is its PCI function: class 0x030000, revision 2 (the register page has QEMU's
extended registers), subsystem 1af4:1100, BAR0 prefetchable memory of the video memory's
size, BAR2 4 KiB of memory, no interrupt pin.

Writes the model makes to video memory are recorded per 4 KiB page (`take_dirty`) for the
display. Writes that bypass the model (a shared framebuffer written by the guest directly)
are the machine's to track (KVM's dirty log).

Unlike QEMU, an access to the register page's VBE words does not also change the port
index register; and the framebuffer is little endian only (QEMU lets a guest ask for big
endian through 0x604).
"""

from __future__ import annotations

from typing import Callable

from .pci import PciFunction
from . import vbe as vbe_mod
from . import vga_regs as r
from .vga_memory import PAGE_SHIFT, VGA_PLANES_SIZE, LegacyWindow

QEMU_VENDOR_ID = 0x1234
STD_VGA_DEVICE_ID = 0x1111
CLASS_VGA = 0x030000
STD_VGA_REVISION = 2          # revision 2: the MMIO BAR carries the QEMU extended registers
SUBSYSTEM_VENDOR_ID = 0x1AF4  # Red Hat, as QEMU's devices report
SUBSYSTEM_ID = 0x1100
LFB_BAR = 0
MMIO_BAR = 2
MMIO_SIZE = 0x1000
MMIO_VGA_PORTS = 0x400        # 0x400-0x41F: ports 0x3C0-0x3DF
MMIO_VGA_PORTS_SIZE = 0x20
MMIO_VBE = 0x500              # 0x500-0x515: VBE register i at 0x500 + 2 * i
MMIO_VBE_SIZE = 2 * vbe_mod.MMIO_REGISTER_COUNT
MMIO_QEXT = 0x600             # 0x600: region size (u32), 0x604: byte order (u32)
QEXT_SIZE = 8
QEXT_LITTLE_ENDIAN = 0x1E1E1E1E
DEFAULT_VRAM_SIZE = 16 << 20
MIN_VRAM_SIZE = 1 << 20
MAX_VRAM_SIZE = 256 << 20
PAGE_SIZE = 1 << PAGE_SHIFT


class StdVgaPci(PciFunction):
    """The std VGA's configuration space."""

    def __init__(self, vram_size: int, *,
                 on_bar_change: Callable[[int, int | None, int | None], None] | None = None
                 ) -> None:
        super().__init__(QEMU_VENDOR_ID, STD_VGA_DEVICE_ID, CLASS_VGA,
                         revision=STD_VGA_REVISION, subsystem_vendor_id=SUBSYSTEM_VENDOR_ID,
                         subsystem_id=SUBSYSTEM_ID, on_bar_change=on_bar_change)
        self.add_bar(LFB_BAR, vram_size, "mem", prefetchable=True)
        self.add_bar(MMIO_BAR, MMIO_SIZE, "mem")


def check_vram_size(size: int) -> None:
    if size & (size - 1) or not MIN_VRAM_SIZE <= size <= MAX_VRAM_SIZE:
        raise ValueError(f"video memory of {size} bytes: use a power of two from "
                         f"{MIN_VRAM_SIZE >> 20} to {MAX_VRAM_SIZE >> 20} MiB")


class StdVga:
    """The whole adapter. `on_mapping_change()` runs whenever the legacy window's
    `legacy_alias()` may have changed (the machine then shares or traps the window)."""

    def __init__(self, vram: memoryview, *,
                 on_mapping_change: Callable[[], None] | None = None) -> None:
        check_vram_size(len(vram))
        if vram.readonly or vram.itemsize != 1:
            raise ValueError("video memory must be a writable byte view")
        self.vram = vram
        self.vram_size = len(vram)
        self.on_mapping_change = on_mapping_change
        self._dirty = bytearray(self.vram_size >> PAGE_SHIFT)
        self.regs = r.VgaRegisters(self._mapping_changed)
        self.vbe = vbe_mod.Vbe(self.regs, self.vram_size, self._clear, self._mapping_changed)
        self.window = LegacyWindow(self.regs, vram, self.mark_dirty,
                                   lambda: self.vbe.bank_offset, lambda: self.vbe.enabled)
        self.lfb = LinearFramebuffer(vram, self.mark_dirty)
        self.mmio = RegisterPage(self)

    def reset(self) -> None:
        """Power-on: registers cleared (as before a BIOS runs); video memory is kept."""
        self.regs.reset()
        self.vbe.reset()
        self.window.reset()
        self.mark_all_dirty()
        self._mapping_changed()

    # -- dirty pages --------------------------------------------------------------------------

    def mark_dirty(self, page: int) -> None:
        self._dirty[page] = 1

    def mark_all_dirty(self) -> None:
        self._dirty[:] = b"\x01" * len(self._dirty)

    def take_dirty(self) -> bytes:
        """One byte per 4 KiB page of video memory (1 = written by the model), then clear."""
        dirty = bytes(self._dirty)
        self._dirty[:] = bytes(len(self._dirty))
        return dirty

    # -- what the machine and the renderer read ------------------------------------------------

    def legacy_alias(self) -> tuple[int, int, int] | None:
        return self.window.alias()

    def write_plane(self, plane: int, offset: int, data: bytes) -> None:
        """Host-side load of bytes into one plane (the font in plane 2), as a BIOS would
        with the map mask set to that plane; offsets wrap inside the 64 KiB plane."""
        if not 0 <= plane < 4:
            raise ValueError(f"plane {plane} is not 0-3")
        plane_size = VGA_PLANES_SIZE // 4
        data, position = bytes(data), offset % plane_size
        while data:
            count = min(len(data), plane_size - position)
            start = 4 * position + plane
            self.vram[start:start + 4 * count:4] = data[:count]
            data, position = data[count:], 0
        self.mark_all_dirty()

    def _clear(self, size: int) -> None:
        size = min(max(size, 0), self.vram_size)
        self.vram[:size] = bytes(size)
        for page in range((size + PAGE_SIZE - 1) >> PAGE_SHIFT):
            self._dirty[page] = 1

    def _mapping_changed(self) -> None:
        if self.on_mapping_change is not None:
            self.on_mapping_change()


class LinearFramebuffer:
    """BAR0: video memory byte for byte (little endian). An access running past the end
    (impossible through a BAR of exactly this size, but checked) touches only what fits."""

    def __init__(self, vram: memoryview, mark_dirty: Callable[[int], None]) -> None:
        self._vram = vram
        self._size = len(vram)
        self._mark_dirty = mark_dirty

    def read(self, offset: int, size: int) -> int:
        if 0 <= offset and offset + size <= self._size:
            return int.from_bytes(self._vram[offset:offset + size], "little")
        value = 0
        for lane in range(size):
            at = offset + lane
            byte = self._vram[at] if 0 <= at < self._size else 0xFF
            value |= byte << (8 * lane)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        if 0 <= offset and offset + size <= self._size:
            self._vram[offset:offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(
                size, "little")
            self._mark_dirty(offset >> PAGE_SHIFT)
            self._mark_dirty((offset + size - 1) >> PAGE_SHIFT)
            return
        for lane in range(size):
            at = offset + lane
            if 0 <= at < self._size:
                self._vram[at] = (value >> (8 * lane)) & 0xFF
                self._mark_dirty(at >> PAGE_SHIFT)


class RegisterPage:
    """BAR2: the VGA ports, the VBE registers and QEMU's extended registers in 4 KiB of
    memory space. Holes read 0 and drop writes, as in QEMU."""

    def __init__(self, vga: StdVga) -> None:
        self._vga = vga

    def read(self, offset: int, size: int) -> int:
        if MMIO_VGA_PORTS <= offset < MMIO_VGA_PORTS + MMIO_VGA_PORTS_SIZE:
            value = 0
            for lane in range(size):
                port = offset - MMIO_VGA_PORTS + lane
                if port < MMIO_VGA_PORTS_SIZE:
                    value |= self._vga.regs.read(0x10 + port, 1) << (8 * lane)
            return value
        if MMIO_VBE <= offset < MMIO_VBE + MMIO_VBE_SIZE:
            value = 0
            first = (offset - MMIO_VBE) >> 1
            skew = (offset - MMIO_VBE) & 1
            for i in range((size + skew + 1) // 2):
                index = first + i
                if index < vbe_mod.MMIO_REGISTER_COUNT:
                    value |= self._read_vbe(index) << (16 * i)
            return (value >> (8 * skew)) & ((1 << (8 * size)) - 1)
        if MMIO_QEXT <= offset < MMIO_QEXT + QEXT_SIZE:
            words = QEXT_SIZE | QEXT_LITTLE_ENDIAN << 32
            shift = 8 * (offset - MMIO_QEXT)
            return (words >> shift) & ((1 << (8 * size)) - 1)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if MMIO_VGA_PORTS <= offset < MMIO_VGA_PORTS + MMIO_VGA_PORTS_SIZE:
            for lane in range(size):  # index byte first: one word write loads index + data
                port = offset - MMIO_VGA_PORTS + lane
                if port < MMIO_VGA_PORTS_SIZE:
                    self._vga.regs.write(0x10 + port, 1, (value >> (8 * lane)) & 0xFF)
        elif MMIO_VBE <= offset < MMIO_VBE + MMIO_VBE_SIZE:
            first = (offset - MMIO_VBE) >> 1
            value <<= 8 * ((offset - MMIO_VBE) & 1)
            for i in range(max(1, size // 2)):
                index = first + i
                if index < vbe_mod.MMIO_REGISTER_COUNT:
                    self._write_vbe(index, (value >> (16 * i)) & 0xFFFF)

    def _read_vbe(self, index: int) -> int:
        vbe = self._vga.vbe
        saved, vbe.index = vbe.index, index
        try:
            return vbe.read_data()
        finally:
            vbe.index = saved

    def _write_vbe(self, index: int, value: int) -> None:
        vbe = self._vga.vbe
        saved, vbe.index = vbe.index, index
        try:
            vbe.write_data(value)
        finally:
            vbe.index = saved
