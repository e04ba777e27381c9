"""The VGA register file at ports 0x3B0-0x3DF: misc output, sequencer, CRTC, graphics
controller, attribute controller, DAC and the input status registers.

Register names and bits follow IBM's VGA Technical Reference (and FreeVGA's description of
it). `VgaRegisters` is a bus device mapped at 0x3B0 for 0x30 ports; byte accesses only (a
word `out` to an index port is an index byte then a data byte, as the ISA bus splits it,
which is how drivers load an index and a value with one `outw`).

What the guest can do: program every register below, read back what it wrote (reserved
bits read as 0), walk the DAC with its auto-incrementing index, poll the retrace bit. It
cannot make any register reach memory: that is the legacy window's job (vga_memory.py),
which reads the registers kept here.

Not emulated: the light pen, the CRT interrupt, the monitor switch sense (input status 0
reads 0), the feature connector, precise retrace timing (the retrace and display-enable
bits of input status 1 toggle on every read, enough for drivers that wait for a vertical
retrace, as QEMU's default does).
"""

from __future__ import annotations

from typing import Callable

from .base import ByteRegisters

PORT_BASE = 0x3B0
PORT_COUNT = 0x30  # 0x3B0-0x3DF

# Port addresses.
CRTC_INDEX_MONO, CRTC_DATA_MONO = 0x3B4, 0x3B5
INPUT_STATUS1_MONO = 0x3BA   # read; a write there is the feature control register
AC_INDEX = 0x3C0             # index/data write through the flip-flop; reads the index
AC_READ = 0x3C1              # reads the data register the index selects
MISC_WRITE = 0x3C2           # write: misc output; read: input status 0
SEQ_INDEX, SEQ_DATA = 0x3C4, 0x3C5
PEL_MASK = 0x3C6
DAC_READ_INDEX = 0x3C7       # write: read index; read: DAC state
DAC_WRITE_INDEX = 0x3C8
DAC_DATA = 0x3C9
FEATURE_READ = 0x3CA
MISC_READ = 0x3CC
GC_INDEX, GC_DATA = 0x3CE, 0x3CF
CRTC_INDEX_COLOR, CRTC_DATA_COLOR = 0x3D4, 0x3D5
INPUT_STATUS1_COLOR = 0x3DA

# Misc output register.
MISC_IO_COLOR = 0x01          # CRTC and input status 1 at 0x3Dx (1) or 0x3Bx (0)
MISC_WRITABLE = 0xEF          # bit 4 reserved

# Sequencer (SR) indexes and bits.
SR_RESET, SR_CLOCKING, SR_MAP_MASK, SR_CHAR_MAP, SR_MEMORY_MODE = range(5)
SR_COUNT = 8                  # the index is 3 bits wide; 5-7 are reserved registers
SR1_8DOT = 0x01               # 8-dot characters (9-dot when clear)
SR1_DOT_CLOCK_DIV2 = 0x08     # half the dot clock: pixels twice as wide
SR1_SCREEN_OFF = 0x20
SR2_ALL_PLANES = 0x0F
SR4_ODD_EVEN_OFF = 0x04       # "odd/even disable": sequential addressing
SR4_CHAIN4 = 0x08
SR_WRITABLE = bytes((0x03, 0x3D, 0x0F, 0x3F, 0x0E, 0x00, 0x00, 0x00))

# Graphics controller (GR) indexes and bits.
(GR_SET_RESET, GR_ENABLE_SET_RESET, GR_COLOR_COMPARE, GR_DATA_ROTATE, GR_READ_MAP,
 GR_MODE, GR_MISC, GR_COLOR_DONT_CARE, GR_BIT_MASK) = range(9)
GR_COUNT = 16                 # 4-bit index; 9-15 do not exist
GR5_WRITE_MODE = 0x03
GR5_READ_MODE1 = 0x08
GR5_ODD_EVEN = 0x10           # host odd/even addressing (text modes)
GR5_SHIFT_SHIFT = 5           # bits 6:5 shift control: 0 planar 16, 1 CGA 4, 2-3 256 colours
GR6_GRAPHICS = 0x01
GR6_MAP_SHIFT = 2             # bits 3:2 memory map select
GR_WRITABLE = bytes((0x0F, 0x0F, 0x0F, 0x1F, 0x03, 0x7B, 0x0F, 0x0F, 0xFF) + (0,) * 7)

# Attribute controller (AR) indexes and bits.
AR_PALETTE_COUNT = 16
AR_MODE, AR_OVERSCAN, AR_PLANE_ENABLE, AR_PANNING, AR_COLOR_SELECT = range(0x10, 0x15)
AR_COUNT = 0x15
AR_INDEX_MASK = 0x1F
AR_PALETTE_ADDRESS_SOURCE = 0x20  # PAS: set = the display reads the palette (screen on)
AR10_GRAPHICS = 0x01
AR10_LINE_GRAPHICS = 0x04     # 9th dot of C0h-DFh repeats the 8th
AR10_BLINK = 0x08             # attribute bit 7 blinks (else background intensity)
AR10_P54_SELECT = 0x80        # palette bits 5:4 from the colour select register
AR_WRITABLE = bytes((0x3F,) * 16 + (0xEF, 0xFF, 0x0F, 0x0F, 0x0F))

# CRT controller (CR) indexes and bits.
CR_H_DISPLAY_END = 0x01
CR_OVERFLOW = 0x07
CR_MAX_SCAN = 0x09
CR_CURSOR_START, CR_CURSOR_END = 0x0A, 0x0B
CR_START_HI, CR_START_LO = 0x0C, 0x0D
CR_CURSOR_HI, CR_CURSOR_LO = 0x0E, 0x0F
CR_V_RETRACE_END = 0x11
CR_V_DISPLAY_END = 0x12
CR_OFFSET = 0x13
CR_MODE = 0x17
CR_LINE_COMPARE = 0x18
CR_COUNT = 0x100              # the index is 8 bits; registers past 0x18 only store
CR11_PROTECT = 0x80           # CR0-CR7 read-only, except CR7 bit 4
CR7_LINE_COMPARE8 = 0x10
CR0A_CURSOR_OFF = 0x20

# DAC.
DAC_ENTRIES = 256
DAC_STATE_WRITE, DAC_STATE_READ = 0x00, 0x03
DEFAULT_PEL_MASK = 0xFF

# Input status 1.
ST01_DISPLAY_DISABLED = 0x01  # in a blanking interval (horizontal or vertical)
ST01_V_RETRACE = 0x08

UNCLAIMED = 0xFF


class VgaRegisters(ByteRegisters):
    """The register file, mapped at PORT_BASE for PORT_COUNT ports.

    `on_mapping_change()` is called after a write that may change how the legacy window
    maps video memory (sequencer map mask or memory mode, graphics controller
    miscellaneous register), so the machine can share or trap it.
    `vbe_apply(sr, gr, cr)` forces the register bits the Bochs VBE extension needs while it
    is enabled (see vbe.py); they shadow the guest's own SR/GR/CR values in `sr_eff`,
    `gr_eff` and `cr_eff` without changing what the guest reads back.
    """

    def __init__(self, on_mapping_change: Callable[[], None] | None = None) -> None:
        self.on_mapping_change = on_mapping_change
        # Set by the VBE extension: forces bits into copies of SR/GR/CR while it is enabled.
        self.vbe_apply: Callable[[bytearray, bytearray, bytearray], None] | None = None
        self.reset()

    def reset(self) -> None:
        """Power-on state: every register zero (the BIOS programs a mode), PEL mask 0xFF."""
        self.misc = 0
        self.feature = 0
        self.st01 = 0
        self.sr_index = 0
        self.sr = bytearray(SR_COUNT)
        self.gr_index = 0
        self.gr = bytearray(GR_COUNT)
        self.cr_index = 0
        self.cr = bytearray(CR_COUNT)
        self.ar_index = 0
        self.ar = bytearray(AR_COUNT)
        self.ar_flip_flop = False   # False: the next 0x3C0 write is an index
        self.dac = bytearray(3 * DAC_ENTRIES)
        self.dac_read_index = 0
        self.dac_write_index = 0
        self.dac_component = 0
        self.dac_state = DAC_STATE_WRITE
        self.dac_latch = bytearray(3)
        self.pel_mask = DEFAULT_PEL_MASK
        self.dac_8bit = False  # VBE: the DAC keeps 8-bit values
        self.refresh_effective()

    def refresh_effective(self) -> None:
        """Recompute `sr_eff`/`gr_eff`/`cr_eff`: what the hardware uses (the guest's values
        with the VBE extension's forced bits while it is enabled; reads show the guest's)."""
        self.sr_eff = bytearray(self.sr)
        self.gr_eff = bytearray(self.gr)
        self.cr_eff = bytearray(self.cr)
        if self.vbe_apply is not None:
            self.vbe_apply(self.sr_eff, self.gr_eff, self.cr_eff)

    @property
    def color_io(self) -> bool:
        return bool(self.misc & MISC_IO_COLOR)

    def _wrong_io_space(self, port: int) -> bool:
        """The CRTC and input status 1 answer at 0x3Bx or 0x3Dx, as misc bit 0 says."""
        if self.color_io:
            return 0x3B0 <= port <= 0x3BF
        return 0x3D0 <= port <= 0x3DF

    # -- ports ----------------------------------------------------------------------------------

    def _read_byte(self, offset: int) -> int:
        port = PORT_BASE + offset
        if self._wrong_io_space(port):
            return UNCLAIMED
        if port == AC_INDEX:
            return self.ar_index if not self.ar_flip_flop else 0
        if port == AC_READ:
            index = self.ar_index & AR_INDEX_MASK
            return self.ar[index] if index < AR_COUNT else 0
        if port == MISC_WRITE:
            return 0  # input status 0: no switch sense, no CRT interrupt
        if port == SEQ_INDEX:
            return self.sr_index
        if port == SEQ_DATA:
            return self.sr[self.sr_index]
        if port == PEL_MASK:
            return self.pel_mask
        if port == DAC_READ_INDEX:
            return self.dac_state
        if port == DAC_WRITE_INDEX:
            return self.dac_write_index
        if port == DAC_DATA:
            value = self.dac[3 * self.dac_read_index + self.dac_component]
            self.dac_component += 1
            if self.dac_component == 3:
                self.dac_component = 0
                self.dac_read_index = (self.dac_read_index + 1) & 0xFF
            return value
        if port == FEATURE_READ:
            return self.feature
        if port == MISC_READ:
            return self.misc
        if port == GC_INDEX:
            return self.gr_index
        if port == GC_DATA:
            return self.gr[self.gr_index]
        if port in (CRTC_INDEX_MONO, CRTC_INDEX_COLOR):
            return self.cr_index
        if port in (CRTC_DATA_MONO, CRTC_DATA_COLOR):
            return self.cr[self.cr_index]
        if port in (INPUT_STATUS1_MONO, INPUT_STATUS1_COLOR):
            # Reading input status 1 also resets the attribute flip-flop to "index".
            self.st01 ^= ST01_V_RETRACE | ST01_DISPLAY_DISABLED
            self.ar_flip_flop = False
            return self.st01
        return UNCLAIMED

    def _write_byte(self, offset: int, value: int) -> None:
        port = PORT_BASE + offset
        if self._wrong_io_space(port):
            return
        if port == AC_INDEX:
            self._write_ac(value)
        elif port == MISC_WRITE:
            self.misc = value & MISC_WRITABLE
        elif port == SEQ_INDEX:
            self.sr_index = value & (SR_COUNT - 1)
        elif port == SEQ_DATA:
            self.sr[self.sr_index] = value & SR_WRITABLE[self.sr_index]
            self.refresh_effective()
            if self.sr_index in (SR_MAP_MASK, SR_MEMORY_MODE):
                self._mapping_changed()
        elif port == PEL_MASK:
            self.pel_mask = value
        elif port == DAC_READ_INDEX:
            self.dac_read_index = value
            self.dac_component = 0
            self.dac_state = DAC_STATE_READ
        elif port == DAC_WRITE_INDEX:
            self.dac_write_index = value
            self.dac_component = 0
            self.dac_state = DAC_STATE_WRITE
        elif port == DAC_DATA:
            self._write_dac(value)
        elif port == GC_INDEX:
            self.gr_index = value & (GR_COUNT - 1)
        elif port == GC_DATA:
            self.gr[self.gr_index] = value & GR_WRITABLE[self.gr_index]
            self.refresh_effective()
            if self.gr_index == GR_MISC:
                self._mapping_changed()
        elif port in (CRTC_INDEX_MONO, CRTC_INDEX_COLOR):
            self.cr_index = value
        elif port in (CRTC_DATA_MONO, CRTC_DATA_COLOR):
            self._write_crtc(value)
            self.refresh_effective()
        elif port in (INPUT_STATUS1_MONO, INPUT_STATUS1_COLOR):
            self.feature = value & 0x03  # feature control (FC1:FC0)

    def _write_ac(self, value: int) -> None:
        """0x3C0 alternates between index and data; reading 0x3DA resets it to index."""
        if not self.ar_flip_flop:
            self.ar_index = value & 0x3F
        else:
            index = self.ar_index & AR_INDEX_MASK
            if index < AR_COUNT:
                self.ar[index] = value & AR_WRITABLE[index]
        self.ar_flip_flop = not self.ar_flip_flop

    def _write_dac(self, value: int) -> None:
        """Three writes (red, green, blue) load one entry, then the index moves on."""
        self.dac_latch[self.dac_component] = value if self.dac_8bit else value & 0x3F
        self.dac_component += 1
        if self.dac_component == 3:
            start = 3 * self.dac_write_index
            self.dac[start:start + 3] = self.dac_latch
            self.dac_component = 0
            self.dac_write_index = (self.dac_write_index + 1) & 0xFF

    def _write_crtc(self, value: int) -> None:
        index = self.cr_index
        if self.cr[CR_V_RETRACE_END] & CR11_PROTECT and index <= CR_OVERFLOW:
            if index == CR_OVERFLOW:  # the line compare bit stays writable
                self.cr[index] = (self.cr[index] & ~CR7_LINE_COMPARE8) | \
                    (value & CR7_LINE_COMPARE8)
            return
        self.cr[index] = value

    def _mapping_changed(self) -> None:
        if self.on_mapping_change is not None:
            self.on_mapping_change()

