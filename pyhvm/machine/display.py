"""The std VGA on the PC, and the `--vga-mem` placement switch.

- `trap` (the paper's "before"): the linear framebuffer (BAR0) and the legacy window
  (0xA0000-0xBFFFF) are MMIO; every guest access exits to the device model, which records
  the pages it changed for the display.
- `shared` (default, the "after", as Xen did for its emulated VGA): the framebuffer is a RAM
  memslot over the same host memory as the model's video memory, with KVM's dirty logging
  (KVM_MEM_LOG_DIRTY_PAGES); guest writes never exit, and the display refresh reads the dirty
  bitmap (KVM_GET_DIRTY_LOG) and converts only the scanlines on changed pages. The legacy
  window is a second memslot over the right part of video memory while the mode is a plain
  byte mapping (chain-4 with every plane: mode 13h, VBE banks); when the guest selects a mode
  whose accesses need the model (text odd/even, planar writes with latches), the memslot is
  removed and accesses trap again.

The function sits at PCI 00:02.0, where QEMU puts it, with the BARs SeaBIOS would assign
(BAR0 0xFD000000, BAR2 0xFEBF0000); a guest may move them and the mappings follow. Without
firmware, the adapter is left in text mode 03h with a font from a console font package
(Debian's console-setup-linux) loaded at run time into plane 2.

Display backends get pictures through `VgaDisplay.frame_source()` (a `FrameSource`, see
backends/display/frame.py); each source reports the rows changed since its own last frame.
"""

from __future__ import annotations

import collections
import ctypes
import gzip
import logging
import mmap
import threading
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..backends.display.frame import Frame
from ..devices import vga_bios
from ..devices.vga import (DEFAULT_VRAM_SIZE, LFB_BAR, MMIO_BAR, MMIO_SIZE, StdVga, StdVgaPci,
                           check_vram_size)
from ..devices.vga_font import FontError, cp437_table, parse_psf
from ..devices.vga_memory import PAGE_SHIFT, WINDOW_BASE, WINDOW_SIZE
from ..devices.vga_render import VgaRenderer, screen_regs
from ..devices import vbe, vga_regs
from ..kvm import KvmError
from ..kvm.constants import KVM_MEM_LOG_DIRTY_PAGES
from ..memory import GuestMemory
from .config import ConfigError, parse_size

if TYPE_CHECKING:
    from .pc import Machine

log = logging.getLogger("pyhvm.vga")

VGA_KINDS = ("std", "none")
VGA_MEM_PLACEMENTS = ("trap", "shared")
VGA_PCI_DEVICE = 2          # 00:02.0, as on QEMU's pc machine
LFB_BASE = 0xFD000000       # where SeaBIOS puts a 16 MiB BAR0
MMIO_BASE = 0xFEBF0000      # and BAR2 (the NIC's register BAR follows at 0xFEBF1000)
LFB_TOP = 0xFE000000        # larger framebuffers go just below this, aligned to their size
# Memslots: RAM uses 0..n-1 (memory.py); these are the VGA's.
RAM_ABOVE_WINDOW_SLOT = 100  # RAM from 0xC0000 up, when the legacy window is cut out
LFB_SLOT = 101
LEGACY_SLOT = 102
FONT_DIR = "/usr/share/consolefonts"
# Debian console-setup-linux (MIT-licensed VGA fonts): the first has nearly every CP437
# glyph, the second fills the rest.
FONT_FILES = ("FullGreek-VGA16.psf.gz", "Uni2-VGA16.psf.gz")
FONT_PACKAGE = "console-setup-linux"
FONT_FILE_LIMIT = 1 << 20
CURSOR_HALF_PERIOD_NS = 266_666_667   # 16 frames at 60 Hz, as the VGA blinks its cursor
BLINK_HALF_PERIOD_NS = 2 * CURSOR_HALF_PERIOD_NS
HISTORY = 64                # refreshes remembered for the frame sources' dirty rows


@dataclass(frozen=True)
class VgaConfig:
    kind: str = "std"
    vram_size: int = DEFAULT_VRAM_SIZE
    placement: str = "shared"


def parse_vga(spec: str, placement: str = "shared") -> VgaConfig:
    """`std[,vgamem=SIZE]` or `none` (QEMU's -vga, with its std VGA's vgamem property)."""
    kind, _, rest = spec.partition(",")
    if kind not in VGA_KINDS:
        raise ConfigError(f"--vga {kind!r}: use std or none")
    if placement not in VGA_MEM_PLACEMENTS:
        raise ConfigError(f"--vga-mem {placement!r}: use trap or shared")
    size = DEFAULT_VRAM_SIZE
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key != "vgamem" or kind != "std":
            raise ConfigError(f"--vga {spec!r}: the only option is std,vgamem=SIZE")
        size = parse_size(value)
        try:
            check_vram_size(size)
        except ValueError as err:
            raise ConfigError(f"--vga {spec!r}: {err}") from None
    return VgaConfig(kind, size, placement)


def lfb_base(vram_size: int) -> int:
    """Where firmware puts BAR0: 0xFD000000 for up to 16 MiB, else the highest address
    aligned to the size (as a BAR must be) that ends by LFB_TOP."""
    if vram_size <= LFB_TOP - LFB_BASE:
        return LFB_BASE
    return (LFB_TOP - vram_size) & ~(vram_size - 1)


def ram_memslots(memory: GuestMemory, legacy_hole: bool
                 ) -> list[tuple[int, int, int, int]]:
    """(slot, guest address, size, host address) for RAM, leaving 0xA0000-0xBFFFF to the
    VGA when `legacy_hole` (the host memory behind the hole stays, unused by the guest)."""
    slots = []
    for region in memory.regions:
        end = WINDOW_BASE + WINDOW_SIZE
        if legacy_hole and region.gpa == 0 and region.size > end:
            slots.append((region.slot, 0, WINDOW_BASE, region.host_address))
            slots.append((RAM_ABOVE_WINDOW_SLOT, end, region.size - end,
                          region.host_address + end))
        else:
            slots.append((region.slot, region.gpa, region.size, region.host_address))
    return slots


def load_default_font(directory: str = FONT_DIR, names: tuple[str, ...] = FONT_FILES,
                      missing_level: int = logging.WARNING) -> bytes | None:
    """The CP437 glyph table from the console font package, or None (one log line at
    `missing_level`) if it is not installed: text then shows no glyphs, only colours and
    the cursor."""
    fonts = []
    for name in names:
        path = f"{directory}/{name}"
        try:
            with open(path, "rb") as f:
                data = f.read(FONT_FILE_LIMIT)
            if name.endswith(".gz"):
                data = gzip.decompress(data)
            fonts.append(parse_psf(data))
        except (OSError, EOFError, zlib.error, FontError):
            continue
    if not fonts:
        log.log(missing_level, "no VGA font (%s/%s missing): install Debian's %s; text mode "
                "shows no glyphs", directory, names[0], FONT_PACKAGE)
        return None
    table, _missing = cp437_table(fonts)
    return table


class VgaDisplay:
    """The adapter wired into a machine: ports, memory ranges, memslots, frames."""

    def __init__(self, machine: "Machine", config: VgaConfig, *,
                 font: bytes | None | Callable[[], bytes | None] = load_default_font) -> None:
        self.machine = machine
        self.placement = config.placement
        size = config.vram_size
        self.vram_size = size
        self._buffer = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        anchor = ctypes.c_char.from_buffer(self._buffer)
        self._host_address = ctypes.addressof(anchor)
        del anchor
        self._view = memoryview(self._buffer)
        self.vram = np.frombuffer(self._buffer, np.uint8)
        self._pages = size >> PAGE_SHIFT
        self._pending = np.zeros(self._pages, bool)   # dirty pages harvested from KVM
        self._slots: dict[int, tuple[int, int, int]] = {}  # slot -> (gpa, offset, size)
        self._lfb_address: int | None = None
        self._mmio_address: int | None = None
        self._alias: tuple[int, int, int] | None = None
        if font is load_default_font:
            # Without --display nobody looks at text mode (a QMP screendump still can): the
            # missing package is said under -v only, so a host-side error stays one line.
            self.font = load_default_font(missing_level=logging.WARNING
                                          if machine.config.displays else logging.INFO)
        else:
            self.font = font() if callable(font) else font
        self.vga = StdVga(self._view, on_mapping_change=self._mapping_changed)
        self.function = StdVgaPci(size, on_bar_change=self._bar_changed)
        machine.chipset.host.attach(VGA_PCI_DEVICE, 0, self.function)
        pio, mmio = machine.buses.pio, machine.buses.mmio
        pio.register(vga_regs.PORT_BASE, vga_regs.PORT_COUNT, self.vga.regs, "vga")
        pio.register(vbe.INDEX_PORT, vbe.PORT_COUNT, self.vga.vbe, "vbe")
        mmio.register(WINDOW_BASE, WINDOW_SIZE, self.vga.window, "vga-window")
        self.screen = VgaScreen(self)
        self._default_source = self.screen.source(blink=False)
        self.firmware_setup()

    # --- what firmware leaves, and reset -----------------------------------------------------
    def firmware_setup(self) -> None:
        """Text mode 03h with the font, BARs assigned, memory and I/O decoding on."""
        self.vga.reset()
        if getattr(self.machine, "firmware", None) is not None:
            return  # SeaBIOS assigns the BARs, the VGA BIOS sets the mode and font
        vga_bios.set_text_mode3(self.vga, self.font)
        self.function.config_write(0x10, 4, lfb_base(self.vram_size))
        self.function.config_write(0x18, 4, MMIO_BASE)
        self.function.config_write(0x04, 2, 0x0003)

    def reset(self) -> None:
        """After the machine's PCI reset (BARs already unmapped): as at power-on."""
        self.firmware_setup()

    def close(self) -> None:
        for slot in list(self._slots):
            self._delete_slot(slot, harvest=False)
        self.vram = np.zeros(0, np.uint8)
        self._view.release()
        try:
            self._buffer.close()
        except BufferError:  # a renderer thread still holds a view: leave it to the GC
            pass

    # --- frames ------------------------------------------------------------------------------
    def frame_source(self, blink: bool = True) -> "FrameSource":
        """A new consumer (a VNC client, a PNG writer): its own serials and dirty rows.
        `blink` makes the cursor and blinking text follow the clock; without it they are
        steady (shown), which suits screenshots compared pixel for pixel."""
        return self.screen.source(blink)

    def frame(self) -> Frame:
        """A steady frame from the display's own source (FrameSource protocol); call with
        the machine's io_lock held."""
        return self._default_source.frame()

    def take_dirty(self) -> np.ndarray:
        """Pages of video memory changed since the last call (KVM's log and the model's).
        Call with the machine's io_lock held."""
        self._harvest()
        model = np.frombuffer(self.vga.take_dirty(), np.uint8).astype(bool)
        dirty = self._pending | model
        self._pending[:] = False
        return dirty

    # --- BARs and memslots -------------------------------------------------------------------
    def _bar_changed(self, index: int, old: int | None, new: int | None) -> None:
        mmio = self.machine.buses.mmio
        if index == MMIO_BAR:
            if old is not None and self._mmio_address == old:
                mmio.unregister(old)
                self._mmio_address = None
            if new is not None:
                self._mmio_address = self._register(new, MMIO_SIZE, self.vga.mmio, "vga-mmio")
        elif index == LFB_BAR:
            if self._lfb_address is not None:
                if self.placement == "shared":
                    self._delete_slot(LFB_SLOT)
                else:
                    mmio.unregister(self._lfb_address)
                self._lfb_address = None
            if new is None:
                return
            if self.placement == "shared":
                if self._create_slot(LFB_SLOT, new, 0, self.vram_size):
                    self._lfb_address = new
            else:
                self._lfb_address = self._register(new, self.vram_size, self.vga.lfb,
                                                   "vga-lfb")

    def _register(self, base: int, size: int, device: object, name: str) -> int | None:
        placed = self.machine.buses.mmio.place(base, size, device, name)  # type: ignore[arg-type]
        return base if placed else None

    def _mapping_changed(self) -> None:
        """The legacy window's mapping may have changed: share it or trap it (shared only)."""
        if self.placement != "shared" or not hasattr(self, "vga"):
            return
        wanted = self.vga.legacy_alias()
        if wanted == self._alias:
            return
        if self._alias is not None:
            self._delete_slot(LEGACY_SLOT)
            self._alias = None
        if wanted is not None:
            gpa, offset, size = wanted
            if self._create_slot(LEGACY_SLOT, gpa, offset, size):
                self._alias = wanted

    def _create_slot(self, slot: int, gpa: int, offset: int, size: int) -> bool:
        try:
            self.machine.vm.set_user_memory_region(slot, gpa, size,
                                                   self._host_address + offset,
                                                   KVM_MEM_LOG_DIRTY_PAGES)
        except KvmError as err:
            log.warning("cannot map VGA memory at %#x (+%#x): %s; it does not decode", gpa,
                        size, err)
            return False
        self._slots[slot] = (gpa, offset, size)
        return True

    def _delete_slot(self, slot: int, harvest: bool = True) -> None:
        if harvest:
            self._harvest_slot(slot)
        gpa, offset, size = self._slots.pop(slot)
        try:
            self.machine.vm.set_user_memory_region(slot, gpa, 0, self._host_address + offset)
        except KvmError as err:
            log.warning("cannot unmap VGA memory slot %d: %s", slot, err)

    def _harvest(self) -> None:
        for slot in list(self._slots):
            self._harvest_slot(slot)

    def _harvest_slot(self, slot: int) -> None:
        gpa, offset, size = self._slots[slot]
        pages = size >> PAGE_SHIFT
        try:
            bitmap = self.machine.vm.get_dirty_log(slot, pages)
        except KvmError as err:
            log.warning("KVM_GET_DIRTY_LOG on the VGA slot failed (%s): full redraw", err)
            self._pending[:] = True
            return
        bits = np.unpackbits(np.frombuffer(bytes(bitmap), np.uint8), bitorder="little")
        first = offset >> PAGE_SHIFT
        self._pending[first:first + pages] |= bits[:pages].astype(bool)

    def stats(self) -> dict[str, object]:
        return {"placement": self.placement, "vram_size": self.vram_size,
                "lfb": self._lfb_address, "legacy_shared": self._alias is not None}


class FrameSource:
    """One consumer's view of the screen (backends/display/frame.py's FrameSource).
    `frame()` must be called with the machine's io_lock held."""

    def __init__(self, screen: "VgaScreen", blink: bool) -> None:
        self._screen = screen
        self._blink = blink
        self._seen: int | None = None
        self._serial = 0

    def frame(self) -> Frame:
        pixels, rows, generation = self._screen.refresh(self._blink, self._seen)
        self._seen = generation
        self._serial += 1
        return Frame(pixels, rows, self._serial)


class VgaScreen:
    """The one renderer of a display, shared by its frame sources.

    Call `refresh` (a source's `frame()`) with the machine's io_lock held, as the display
    hub and timer callbacks do: the registers and the model's dirty pages change under it.
    A guest writing a shared framebuffer meanwhile is harmless: the dirty log is read
    before the pixels, so those writes show in the next frame. A history of the rows each
    refresh changed lets every source report what changed since its own previous frame.
    """

    def __init__(self, display: VgaDisplay) -> None:
        self._display = display
        self._renderer = VgaRenderer()
        self._lock = threading.Lock()
        self._generation = 0
        self._history: collections.deque[tuple[int, tuple[int, int] | None]] = \
            collections.deque(maxlen=HISTORY)

    def source(self, blink: bool) -> FrameSource:
        return FrameSource(self, blink)

    def refresh(self, blink: bool, seen: int | None
                ) -> tuple[np.ndarray, tuple[int, int] | None, int]:
        display = self._display
        machine = display.machine
        cursor_on = blink_on = True
        if blink:
            now = machine.loop.now_ns()
            cursor_on = (now // CURSOR_HALF_PERIOD_NS) % 2 == 0
            blink_on = (now // BLINK_HALF_PERIOD_NS) % 2 == 0
        with self._lock:
            regs = screen_regs(display.vga)
            dirty = display.take_dirty()
            pixels, rows = self._renderer.render(regs, display.vram, dirty,
                                                 cursor_on=cursor_on, blink_on=blink_on)
            self._generation += 1
            self._history.append((self._generation, rows))
            return pixels.copy(), self._changed_since(seen), self._generation

    def _changed_since(self, seen: int | None) -> tuple[int, int] | None:
        if seen is None or not self._history or self._history[0][0] > seen + 1:
            return None
        low, high = None, None
        for generation, rows in self._history:
            if generation <= seen:
                continue
            if rows is None:
                return None
            if rows[1] > rows[0]:
                low = rows[0] if low is None else min(low, rows[0])
                high = rows[1] if high is None else max(high, rows[1])
        return (0, 0) if low is None else (low, high)


def open_vga(machine: "Machine", config: VgaConfig) -> VgaDisplay | None:
    if config.kind == "none":
        return None
    return VgaDisplay(machine, config)
