"""Conventional PCI: one function's configuration space, and the PC host's mechanism #1.

`PciFunction` is the 256-byte type-0 configuration header of one PCI function (PCI Local Bus
Specification 3.0, chapter 6) with a per-byte writable mask and a per-byte write-1-to-clear
mask, base address registers with the sizing protocol, and the INTx pin. A device model (IDE,
NIC, VGA) owns one and reads its command register and BARs; it never sees a bus. The
function reports every change of a BAR's decoded address through `on_bar_change`, so the
machine can move the device's ranges on its port and memory buses.

`PciHost` is configuration mechanism #1 (PCI 3.0 section 3.2.2.3.2) as the i440FX/PIIX3 PC
answers it at ports 0xCF8-0xCFF, with the PIIX3 reset control register at 0xCF9. Map
`address_port` at 0xCF8 and `data_port` at 0xCFC, four ports each:

    pio.register(CONFIG_ADDRESS_PORT, PORT_WINDOW, host.address_port, "pci-addr")  # 0xCF8
    pio.register(CONFIG_DATA_PORT, PORT_WINDOW, host.data_port, "pci-data")        # 0xCFC

- a dword access at 0xCF8 reads or writes CONFIG_ADDRESS; any other access to 0xCF8-0xCFB is
  an ordinary I/O cycle, split into bytes: 0xCF9 is the reset control register, the other
  three ports belong to nobody (read 0xFF, writes dropped). Only mechanism #1 exists (the
  82441FX has no mechanism #2), so byte writes to 0xCF8 and 0xCFA do nothing.
- an access of any size at 0xCFC + k, with CONFIG_ADDRESS enabled, is a configuration access
  to register (CONFIG_ADDRESS[7:2] << 2) + k of the addressed function. Byte lanes that fall
  past 0xCFF (a word at 0xCFF, a dword at 0xCFD) are a second I/O cycle to ports 0xD00 and up,
  which are not ours: they read 0xFF and drop writes.

What the guest can make it do: read every function's header, program BARs (anywhere, over RAM
or other devices: the machine decides what a clash means, see `PciFunction.bar_address`),
enable decoding and bus mastering, mask INTx, clear error bits, request a reset through 0xCF9.
What it cannot: change a read-only field (IDs, class, header type, BAR type bits, interrupt
pin), make a BAR decode at an address not aligned to its size, or grow any state.

Not emulated: bus numbers other than 0 (no PCI-to-PCI bridges: type-1 cycles master-abort
and read all ones), the capabilities list, parity and system errors (the status error bits
are set only by a device model through `set_status`), BIST, cache line size and latency
timer in the generic header (read-only zero unless a subclass defines them), configuration
space beyond 256 bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from pyhvm.devices.base import IrqLine

# Type-0 configuration header (PCI 3.0 section 6.1, figure 6-1).
CONFIG_SPACE_SIZE = 256
VENDOR_ID = 0x00
DEVICE_ID = 0x02
COMMAND = 0x04
STATUS = 0x06
REVISION_ID = 0x08
CLASS_CODE = 0x09  # three bytes: programming interface, sub-class, base class
CACHE_LINE_SIZE = 0x0C
LATENCY_TIMER = 0x0D
HEADER_TYPE = 0x0E
BIST = 0x0F
BAR0 = 0x10  # six dword base address registers, 0x10-0x27
BAR_COUNT = 6
CARDBUS_CIS = 0x28
SUBSYSTEM_VENDOR_ID = 0x2C
SUBSYSTEM_ID = 0x2E
EXPANSION_ROM = 0x30
CAPABILITIES_POINTER = 0x34
INTERRUPT_LINE = 0x3C  # written by firmware: which interrupt controller input (x86: IRQ)
INTERRUPT_PIN = 0x3D  # read-only: 0 none, 1-4 INTA#-INTD#
MIN_GNT = 0x3E
MAX_LAT = 0x3F
HEADER_SIZE = 0x40  # device-specific registers follow

INVALID_VENDOR_ID = 0xFFFF  # what a read of an absent function returns; no device uses it

# Command register bits (section 6.2.2).
COMMAND_IO = 1 << 0  # respond to I/O space accesses (I/O BARs decode)
COMMAND_MEMORY = 1 << 1  # respond to memory space accesses (memory BARs and ROM decode)
COMMAND_BUS_MASTER = 1 << 2  # the function may initiate transactions (DMA)
COMMAND_SPECIAL_CYCLES = 1 << 3
COMMAND_MWI = 1 << 4  # memory write and invalidate
COMMAND_VGA_SNOOP = 1 << 5
COMMAND_PARITY = 1 << 6  # parity error response
COMMAND_SERR = 1 << 8  # SERR# driver enable
COMMAND_FAST_B2B = 1 << 9
COMMAND_INTX_DISABLE = 1 << 10  # PCI 2.3: the function may not assert INTx#
DEFAULT_COMMAND = 0x0000  # everything off at RST# (section 6.2.2)
DEFAULT_COMMAND_WRITABLE = COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER | \
    COMMAND_INTX_DISABLE

# Status register bits (section 6.2.3).
STATUS_INTERRUPT = 1 << 3  # read-only: the function's INTx is asserted (before INTx disable)
STATUS_CAPABILITIES = 1 << 4  # read-only: a capabilities list exists at 0x34
STATUS_66MHZ = 1 << 5
STATUS_FAST_B2B = 1 << 7  # fast back-to-back capable as a target
STATUS_MASTER_PARITY_ERROR = 1 << 8
STATUS_DEVSEL_MEDIUM = 1 << 9  # DEVSEL# timing, bits 10:9 (01 = medium)
STATUS_SIGNALED_TARGET_ABORT = 1 << 11
STATUS_RECEIVED_TARGET_ABORT = 1 << 12
STATUS_RECEIVED_MASTER_ABORT = 1 << 13
STATUS_SIGNALED_SYSTEM_ERROR = 1 << 14
STATUS_DETECTED_PARITY_ERROR = 1 << 15
STATUS_ERROR_BITS = 0xF900  # bits 8, 11-15: set by hardware, cleared by writing 1
DEFAULT_STATUS = 0x0000

# Header type (section 6.2.1).
HEADER_TYPE_MULTI_FUNCTION = 0x80  # bit 7: functions 1-7 may exist
HEADER_TYPE_LAYOUT = 0x7F  # 0 = general device, the only layout here

# Base address registers (section 6.2.5.1).
BAR_SPACE_IO = 0x01  # bit 0: 1 = I/O space, 0 = memory space
BAR_MEM_TYPE_64 = 0x04  # bits 2:1 = 10b: 64-bit, the next BAR holds the upper dword
BAR_MEM_PREFETCHABLE = 0x08
BAR_IO_FLAG_BITS = 0x03  # bit 1 is reserved and reads 0
BAR_MEM_FLAG_BITS = 0x0F
IO_SPACE_SIZE = 0x10000  # x86 ports: an I/O BAR programmed above this is unreachable
IO_BAR_MIN_SIZE = 4
IO_BAR_MAX_SIZE = 256  # section 6.2.5.1: at most 256 bytes per I/O BAR
MEM_BAR_MIN_SIZE = 16
MEM32_BAR_MAX_SIZE = 1 << 31
MEM64_BAR_MAX_SIZE = 1 << 63
ROM_ENABLE = 0x01  # expansion ROM BAR bit 0: address decode enable (section 6.2.5.2)
ROM_ADDRESS_BITS = 0xFFFFF800  # bits 31:11
ROM_MIN_SIZE = 2048
ROM_BAR_INDEX = 6  # how `bar_address` and `on_bar_change` name the expansion ROM BAR

INTERRUPT_PIN_NONE = 0
INTA, INTB, INTC, INTD = 1, 2, 3, 4
DEFAULT_INTERRUPT_LINE = 0x00  # firmware writes the routed IRQ here during POST

# Mechanism #1 (section 3.2.2.3.2) and the PIIX3 reset control register (82371SB, RC register).
CONFIG_ADDRESS_PORT = 0xCF8
RESET_CONTROL_PORT = 0xCF9  # a byte register inside the CONFIG_ADDRESS dword
CONFIG_DATA_PORT = 0xCFC
PORT_WINDOW = 4  # each of the two port adapters covers four ports
CONFIG_ADDRESS_ENABLE = 1 << 31
CONFIG_ADDRESS_WRITABLE = 0x80FFFFFC  # bits 30:24 reserved, bits 1:0 read as 0
CONFIG_BUS_SHIFT = 16
CONFIG_DEVICE_SHIFT = 11
CONFIG_FUNCTION_SHIFT = 8
CONFIG_REGISTER_MASK = 0xFC
DEVICE_COUNT = 32
FUNCTION_COUNT = 8
RCR_SYSTEM_RESET = 0x02  # SRST: the reset RCPU starts is a hard one (1) or INIT only (0)
RCR_RESET_CPU = 0x04  # RCPU: a 0 -> 1 transition starts the reset SRST selects
RCR_WRITABLE = RCR_SYSTEM_RESET | RCR_RESET_CPU  # other bits reserved, read 0
DEFAULT_CONFIG_ADDRESS = 0x00000000
DEFAULT_RCR = 0x00

UNMAPPED_BYTE = 0xFF  # a byte lane nobody claims: master abort, all ones

BarKind = Literal["io", "mem"]
BarChangeCallback = Callable[[int, "int | None", "int | None"], None]


@dataclass(frozen=True)
class Bar:
    """One base address register as the device declared it; `index` 6 is the ROM BAR."""

    index: int
    size: int
    kind: BarKind
    prefetchable: bool = False
    mem64: bool = False

    @property
    def offset(self) -> int:
        return EXPANSION_ROM if self.index == ROM_BAR_INDEX else BAR0 + 4 * self.index

    @property
    def width(self) -> int:
        """Bytes of configuration space the BAR occupies."""
        return 8 if self.mem64 else 4

    @property
    def flags(self) -> int:
        """The read-only low bits: space indicator, memory type, prefetchable."""
        if self.index == ROM_BAR_INDEX:
            return 0
        if self.kind == "io":
            return BAR_SPACE_IO
        return (BAR_MEM_TYPE_64 if self.mem64 else 0) | \
            (BAR_MEM_PREFETCHABLE if self.prefetchable else 0)

    @property
    def address_mask(self) -> int:
        """The base address bits the guest may write (up to 64 bits for a 64-bit BAR)."""
        aligned = ~(self.size - 1)
        if self.index == ROM_BAR_INDEX:
            return aligned & ROM_ADDRESS_BITS
        if self.kind == "io":
            return aligned & 0xFFFFFFFF & ~BAR_IO_FLAG_BITS
        limit = (1 << 64) - 1 if self.mem64 else 0xFFFFFFFF
        return aligned & limit & ~BAR_MEM_FLAG_BITS


@dataclass(frozen=True)
class PciFunctionState:
    """A function's snapshot: its configuration bytes and the level its device drives."""

    config: bytes
    intx_level: bool = False


class ConfigSpace(Protocol):
    """What `PciHost` needs from a function it routes configuration cycles to."""

    @property
    def multi_function(self) -> bool: ...

    def config_read(self, offset: int, size: int) -> int: ...

    def config_write(self, offset: int, size: int, value: int) -> None: ...

    def reset(self) -> None: ...


def _check_config_access(offset: int, size: int) -> None:
    """A configuration transaction is one dword with byte enables: it never crosses one."""
    if size not in (1, 2, 4):
        raise ValueError(f"configuration access size must be 1, 2 or 4, got {size}")
    if not 0 <= offset < CONFIG_SPACE_SIZE or offset % 4 + size > 4:
        raise ValueError(f"configuration access at {offset:#x} size {size} crosses a dword "
                         "or leaves the 256-byte space")


def _check_port_size(size: int) -> None:
    if size not in (1, 2, 4, 8):
        raise ValueError(f"access size must be 1, 2, 4 or 8 bytes, got {size}")


def config_overlaps(offset: int, size: int, start: int, length: int) -> bool:
    """Whether an access at `offset`+`size` touches the register at `start`+`length`."""
    return offset < start + length and start < offset + size


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


class PciFunction:
    """One PCI function's type-0 configuration space.

    Every byte has a writable mask and a write-1-to-clear mask: a write stores
    `(old & ~writable) | (value & writable)` and then clears `value & w1c`. Vendor, device,
    class, revision, header type, subsystem IDs, interrupt pin and the BAR type bits are
    read-only; the command bits in `command_writable`, the BAR address bits, the interrupt
    line and what a subclass defines with `define_register` are writable; the status error
    bits are write-1-to-clear.

    `config_read`/`config_write` take any 1, 2 or 4-byte access that stays inside one dword,
    which is all a configuration cycle can be (section 3.2.2.3.2: the host bridge turns the
    port access into one dword transaction with byte enables); anything else is a caller bug
    and raises `ValueError`. `PciHost` never produces one.

    Interrupts: the device model drives `irq` (an IrqLine); the function shows the level in
    status bit 3 and forwards it to the `intx_output` line unless the command register's
    INTx disable bit is set (section 6.2.2, 6.2.3).

    Callbacks (settable attributes, called after the write completed, inside the guest's
    port access): `on_bar_change(index, old, new)` when a BAR's decoded address changes, and
    `on_command_change(command)` when the command register's value changes (a device model
    starts pending DMA when bus mastering comes on).
    """

    def __init__(self, vendor_id: int, device_id: int, class_code: int, *, revision: int = 0,
                 header_type: int = 0, subsystem_vendor_id: int = 0, subsystem_id: int = 0,
                 interrupt_pin: int = INTERRUPT_PIN_NONE, command: int = DEFAULT_COMMAND,
                 command_writable: int = DEFAULT_COMMAND_WRITABLE,
                 status: int = DEFAULT_STATUS,
                 on_bar_change: BarChangeCallback | None = None,
                 intx_output: IrqLine | None = None) -> None:
        if vendor_id == INVALID_VENDOR_ID:
            raise ValueError("vendor ID 0xFFFF means 'no function here'")
        if header_type & HEADER_TYPE_LAYOUT:
            raise ValueError("only the type-0 (general device) header layout is modelled")
        if not 0 <= interrupt_pin <= INTD:
            raise ValueError(f"interrupt pin {interrupt_pin} is not 0 (none) or 1-4 (INTA-D)")
        self.on_bar_change = on_bar_change
        self.on_command_change: Callable[[int], None] | None = None
        self._intx_output = intx_output
        self._config = bytearray(CONFIG_SPACE_SIZE)
        self._defaults = bytearray(CONFIG_SPACE_SIZE)
        self._writable = bytearray(CONFIG_SPACE_SIZE)
        self._w1c = bytearray(CONFIG_SPACE_SIZE)
        self._bars: dict[int, Bar] = {}
        self._decoded: dict[int, int | None] = {}
        self._intx_level = False
        self._intx_driven = False
        self.define_register(VENDOR_ID, 2, vendor_id)
        self.define_register(DEVICE_ID, 2, device_id)
        self.define_register(COMMAND, 2, command, writable=command_writable)
        self.define_register(STATUS, 2, status, w1c=STATUS_ERROR_BITS)
        self.define_register(REVISION_ID, 1, revision)
        self.define_register(CLASS_CODE, 3, class_code)
        self.define_register(HEADER_TYPE, 1, header_type)
        self.define_register(SUBSYSTEM_VENDOR_ID, 2, subsystem_vendor_id)
        self.define_register(SUBSYSTEM_ID, 2, subsystem_id)
        self.define_register(INTERRUPT_LINE, 1, DEFAULT_INTERRUPT_LINE, writable=0xFF)
        self.define_register(INTERRUPT_PIN, 1, interrupt_pin)
        self._command_seen = command

    # -- wiring (host side, before the guest runs) ------------------------------------------

    def define_register(self, offset: int, size: int, value: int, *, writable: int = 0,
                        w1c: int = 0) -> None:
        """Give bytes `offset`..`offset+size-1` a reset value and their masks (little endian)."""
        limit = 1 << (8 * size)
        if size < 1 or offset < 0 or offset + size > CONFIG_SPACE_SIZE:
            raise ValueError(f"register {offset:#x}+{size} is outside configuration space")
        for name, field in (("value", value), ("writable", writable), ("w1c", w1c)):
            if not 0 <= field < limit:
                raise ValueError(f"{name} {field:#x} does not fit {size} bytes")
        for lane in range(size):
            shift = 8 * lane
            self._defaults[offset + lane] = (value >> shift) & 0xFF
            self._config[offset + lane] = (value >> shift) & 0xFF
            self._writable[offset + lane] = (writable >> shift) & 0xFF
            self._w1c[offset + lane] = (w1c >> shift) & 0xFF

    def add_bar(self, index: int, size: int, kind: BarKind = "io", *,
                prefetchable: bool = False, mem64: bool = False) -> Bar:
        """Declare BAR `index` (0-5) decoding `size` bytes, a power of two (section 6.2.5.1).

        I/O BARs take 4-256 bytes, memory BARs at least 16 bytes, up to 2 GiB (32-bit) or
        2**63 (64-bit, which also uses slot index+1). All 32 (or 64) address bits above the
        size are writable, I/O BARs included: the spec lets a PC device hardwire bits 31:16 of
        an I/O BAR, but firmware that sizes with 32-bit arithmetic then misreads the size.
        """
        if kind not in ("io", "mem"):
            raise ValueError(f"BAR kind must be 'io' or 'mem', got {kind!r}")
        if not 0 <= index < BAR_COUNT:
            raise ValueError(f"BAR index {index} is outside 0-5")
        if kind == "io":
            if prefetchable or mem64:
                raise ValueError("an I/O BAR is neither prefetchable nor 64-bit")
            low, high = IO_BAR_MIN_SIZE, IO_BAR_MAX_SIZE
        else:
            low, high = MEM_BAR_MIN_SIZE, MEM64_BAR_MAX_SIZE if mem64 else MEM32_BAR_MAX_SIZE
        if not _is_power_of_two(size) or not low <= size <= high:
            raise ValueError(f"{kind} BAR size {size:#x} must be a power of two in "
                             f"{low:#x}..{high:#x}")
        bar = Bar(index, size, kind, prefetchable, mem64)
        self._claim_bar(bar)
        return bar

    def add_rom_bar(self, size: int) -> Bar:
        """Declare the expansion ROM BAR at 0x30 (section 6.2.5.2); absent (reads 0) otherwise."""
        if not _is_power_of_two(size) or not ROM_MIN_SIZE <= size <= MEM32_BAR_MAX_SIZE:
            raise ValueError(f"ROM size {size:#x} must be a power of two of at least 2 KiB")
        bar = Bar(ROM_BAR_INDEX, size, "mem")
        self._claim_bar(bar)
        return bar

    def _claim_bar(self, bar: Bar) -> None:
        taken = {i for b in self._bars.values()
                 for i in range(b.index, b.index + b.width // 4)}
        wanted = set(range(bar.index, bar.index + bar.width // 4))
        if bar.mem64 and bar.index + 1 >= BAR_COUNT:
            raise ValueError("a 64-bit BAR needs the next BAR slot too; BAR 5 has none")
        if taken & wanted:
            raise ValueError(f"BAR slot(s) {sorted(taken & wanted)} already declared")
        writable = bar.address_mask | (ROM_ENABLE if bar.index == ROM_BAR_INDEX else 0)
        self.define_register(bar.offset, bar.width, bar.flags, writable=writable)
        self._bars[bar.index] = bar
        self._decoded[bar.index] = None

    def connect_intx(self, line: IrqLine | None) -> None:
        """Wire the function's INTx pin (a `PciIntxLine`); the current level is driven at once."""
        self._intx_output = line
        self._intx_driven = False
        self._update_intx()

    # -- what device models and the machine read --------------------------------------------

    @property
    def vendor_id(self) -> int:
        return self._raw(VENDOR_ID, 2)

    @property
    def device_id(self) -> int:
        return self._raw(DEVICE_ID, 2)

    @property
    def class_code(self) -> int:
        return self._raw(CLASS_CODE, 3)

    @property
    def command(self) -> int:
        return self._raw(COMMAND, 2)

    @property
    def status(self) -> int:
        return self._raw(STATUS, 2)

    @property
    def interrupt_pin(self) -> int:
        return self._config[INTERRUPT_PIN]

    @property
    def interrupt_line(self) -> int:
        return self._config[INTERRUPT_LINE]

    @property
    def multi_function(self) -> bool:
        return bool(self._config[HEADER_TYPE] & HEADER_TYPE_MULTI_FUNCTION)

    @property
    def bus_master_enabled(self) -> bool:
        return bool(self.command & COMMAND_BUS_MASTER)

    def bar(self, index: int) -> Bar | None:
        return self._bars.get(index)

    @property
    def bars(self) -> tuple[Bar, ...]:
        return tuple(self._bars[i] for i in sorted(self._bars))

    def bar_address(self, index: int) -> int | None:
        """Where BAR `index` (0-5, or ROM_BAR_INDEX) decodes now, or None if it does not.

        A BAR decodes when the command register enables its space (I/O or memory; the ROM
        also needs its own enable bit). Two more cases read as "not decoding", deliberately:
        a base of 0 (never assigned; on a PC port 0 is the DMA controller and memory 0 is
        RAM), and a base whose writable bits are all ones in either dword, which is what the
        sizing protocol leaves behind (a guest sizing with decode on would otherwise map the
        device over the BIOS ROM at 4 GiB - size). So no BAR ever decodes at the top-most
        aligned slot of its space; no firmware puts one there. An I/O BAR programmed at or
        above 64 KiB is not decoding either: x86 port I/O cannot reach it.
        """
        bar = self._bars.get(index)
        if bar is None:
            return None
        command = self.command
        if not command & (COMMAND_IO if bar.kind == "io" else COMMAND_MEMORY):
            return None
        raw = self._raw(bar.offset, bar.width)
        if bar.index == ROM_BAR_INDEX and not raw & ROM_ENABLE:
            return None
        mask = bar.address_mask
        base = raw & mask
        low_mask, high_mask = mask & 0xFFFFFFFF, mask >> 32
        if base == 0 or (low_mask and base & low_mask == low_mask) or \
                (high_mask and (base >> 32) & high_mask == high_mask):
            return None
        if bar.kind == "io" and base + bar.size > IO_SPACE_SIZE:
            return None
        return base

    @property
    def irq(self) -> IrqLine:
        """The IrqLine the device model drives (its INTx# pin, active while level is True)."""
        return _FunctionIrq(self)

    def set_intx_level(self, level: bool) -> None:
        self._intx_level = bool(level)
        self._update_intx()

    def set_status(self, bits: int) -> None:
        """A device model records an error (e.g. received master abort on a DMA to nowhere)."""
        if bits & ~STATUS_ERROR_BITS:
            raise ValueError(f"status bits {bits:#x} are not error bits")
        self._store_raw(STATUS, 2, self.status | bits)

    # -- configuration cycles (guest side) --------------------------------------------------

    def config_read(self, offset: int, size: int) -> int:
        _check_config_access(offset, size)
        return self._raw(offset, size)

    def config_write(self, offset: int, size: int, value: int) -> None:
        _check_config_access(offset, size)
        for lane in range(size):
            self._write_byte(offset + lane, (value >> (8 * lane)) & 0xFF)
        self._after_write(offset, size)

    def _write_byte(self, index: int, byte: int) -> None:
        """Store one byte through its masks; subclasses override for locked registers."""
        writable, w1c = self._writable[index], self._w1c[index]
        old = self._config[index]
        self._config[index] = ((old & ~writable) | (byte & writable)) & ~(byte & w1c)

    def _after_write(self, offset: int, size: int) -> None:
        """React to a completed write; subclasses extend it for their own registers."""
        if config_overlaps(offset, size, COMMAND, 2) or \
                config_overlaps(offset, size, BAR0, 4 * BAR_COUNT) or \
                config_overlaps(offset, size, EXPANSION_ROM, 4):
            self._update_bars()
        if config_overlaps(offset, size, COMMAND + 1, 1):
            self._update_intx()
        command = self.command
        if command != self._command_seen:
            self._command_seen = command
            if self.on_command_change is not None:
                self.on_command_change(command)

    # -- derived state ----------------------------------------------------------------------

    def _raw(self, offset: int, size: int) -> int:
        return int.from_bytes(self._config[offset:offset + size], "little")

    def _store_raw(self, offset: int, size: int, value: int) -> None:
        self._config[offset:offset + size] = value.to_bytes(size, "little")

    def _update_bars(self) -> None:
        """Recompute every BAR's decoded address; report the ones that moved, in index order."""
        changes = []
        for index in sorted(self._bars):
            new = self.bar_address(index)
            old = self._decoded[index]
            if new != old:
                self._decoded[index] = new
                changes.append((index, old, new))
        if self.on_bar_change is not None:
            for index, old, new in changes:
                self.on_bar_change(index, old, new)

    def _update_intx(self) -> None:
        status = self.status & ~STATUS_INTERRUPT
        if self._intx_level:
            status |= STATUS_INTERRUPT
        self._store_raw(STATUS, 2, status)
        driven = self._intx_level and not self.command & COMMAND_INTX_DISABLE
        if driven != self._intx_driven:
            self._intx_driven = driven
            if self._intx_output is not None:
                self._intx_output.set_level(driven)

    # -- reset and snapshots ----------------------------------------------------------------

    def reset(self) -> None:
        """PCI RST#: every register back to its reset value; BARs stop decoding."""
        self._config[:] = self._defaults
        self._intx_level = False
        self._after_write(0, CONFIG_SPACE_SIZE)  # every register changed: rederive it all

    def state(self) -> PciFunctionState:
        return PciFunctionState(config=bytes(self._config), intx_level=self._intx_level)

    def restore(self, state: PciFunctionState) -> None:
        """Load a snapshot into this (identically built) function.

        A function's shape (IDs, BARs, masks) comes from its constructor, not the snapshot,
        so restore goes onto an existing object rather than a `from_state` constructor. Only
        writable and write-1-to-clear bits may differ from the reset values. It then acts as
        a write of every register: BAR moves go to `on_bar_change`, subclasses' hooks run,
        and the INTx level is driven again.
        """
        config = state.config
        if not isinstance(config, (bytes, bytearray)) or len(config) != CONFIG_SPACE_SIZE:
            raise ValueError("a PCI function snapshot holds exactly 256 configuration bytes")
        for index in range(CONFIG_SPACE_SIZE):
            free = self._writable[index] | self._w1c[index] | self._dynamic_bits(index)
            if (config[index] ^ self._defaults[index]) & ~free & 0xFF:
                raise ValueError(f"configuration byte {index:#x} = {config[index]:#x} changes "
                                 "read-only bits: a snapshot of another device?")
        self._validate_config(bytes(config))
        self._config[:] = config
        self._intx_level = bool(state.intx_level)
        self._after_write(0, CONFIG_SPACE_SIZE)

    def _dynamic_bits(self, index: int) -> int:
        """Read-only bits the model itself changes (not compared against reset values)."""
        return STATUS_INTERRUPT if index == STATUS else 0

    def _validate_config(self, config: bytes) -> None:
        """Subclass hook: refuse a snapshot whose registers break the chip's own rules."""


class _FunctionIrq:
    """The device model's side of a function's INTx pin."""

    def __init__(self, function: PciFunction) -> None:
        self._function = function

    def set_level(self, level: bool) -> None:
        self._function.set_intx_level(level)


@dataclass(frozen=True)
class PciHostState:
    config_address: int = DEFAULT_CONFIG_ADDRESS
    rcr: int = DEFAULT_RCR


class PciHost:
    """Configuration mechanism #1 for bus 0, plus the PIIX3 reset control register (0xCF9).

    `attach(device, function, space)` places a function; a function number above 0 exists
    only when function 0 exists and has the multi-function header bit (section 6.2.1), so a
    bus scan that reads function 0's vendor ID and header type sees what the machine built.
    An access to an absent function, to another bus, or with the enable bit clear, reads all
    ones and drops writes (a master abort).

    `on_reset(hard)` is called, inside the port write, when the guest sets RCR bit 2 with a
    0 -> 1 transition (82371SB RC register): `hard` is RCR bit 1 (hard reset: PCIRST# and
    CPU reset; clear: soft reset, INIT only). The machine should only record the request
    there. Its hard-reset path must call `reset()`, which clears the register again, or a
    later 0x06 write would not be a 0 -> 1 transition.
    """

    def __init__(self, on_reset: Callable[[bool], None] | None = None) -> None:
        self.on_reset = on_reset
        self._functions: dict[tuple[int, int], ConfigSpace] = {}
        self._config_address = DEFAULT_CONFIG_ADDRESS
        self._rcr = DEFAULT_RCR
        self.address_port = _HostPorts(self, CONFIG_ADDRESS_PORT)
        self.data_port = _HostPorts(self, CONFIG_DATA_PORT)

    def attach(self, device: int, function: int, space: ConfigSpace) -> None:
        """Place `space` at bus 0, `device`:`function`; refused if taken or inconsistent."""
        if not 0 <= device < DEVICE_COUNT or not 0 <= function < FUNCTION_COUNT:
            raise ValueError(f"{device:#x}.{function} is outside 32 devices x 8 functions")
        if (device, function) in self._functions:
            raise ValueError(f"{device:02x}.{function} already has a function attached")
        others = [f for (d, f) in self._functions if d == device]
        zero = self._functions.get((device, 0)) if function else space
        if zero is not None and not zero.multi_function and (function or others):
            raise ValueError(f"device {device:#x} has several functions but function 0 "
                             "lacks the multi-function header bit")
        self._functions[(device, function)] = space

    def function_at(self, device: int, function: int) -> ConfigSpace | None:
        """The function a bus-0 configuration cycle to `device`.`function` reaches, if any."""
        space = self._functions.get((device, function))
        if space is None or function == 0:
            return space
        zero = self._functions.get((device, 0))
        if zero is None or not zero.multi_function:
            return None
        return space

    @property
    def config_address(self) -> int:
        return self._config_address

    @property
    def rcr(self) -> int:
        return self._rcr

    def reset(self) -> None:
        """Hard reset: the latch, the reset control register and every attached function."""
        self._config_address = DEFAULT_CONFIG_ADDRESS
        self._rcr = DEFAULT_RCR
        for space in self._functions.values():
            space.reset()

    def state(self) -> PciHostState:
        """The host's own registers; each function snapshots itself."""
        return PciHostState(self._config_address, self._rcr)

    def restore(self, state: PciHostState) -> None:
        if not 0 <= state.config_address <= 0xFFFFFFFF or \
                state.config_address & ~CONFIG_ADDRESS_WRITABLE:
            raise ValueError(f"config_address {state.config_address:#x} sets reserved bits")
        if not 0 <= state.rcr <= 0xFF or state.rcr & ~RCR_WRITABLE:
            raise ValueError(f"rcr {state.rcr:#x} sets reserved bits")
        self._config_address = state.config_address
        self._rcr = state.rcr

    # -- the port window 0xCF8-0xCFF --------------------------------------------------------

    def port_read(self, port: int, size: int) -> int:
        _check_port_size(size)
        if port == CONFIG_ADDRESS_PORT and size == 4:
            return self._config_address
        if CONFIG_DATA_PORT <= port < CONFIG_DATA_PORT + PORT_WINDOW:
            return self._data_read(port - CONFIG_DATA_PORT, size)
        value = 0
        for lane in range(size):
            value |= self._read_byte(port + lane) << (8 * lane)
        return value

    def port_write(self, port: int, size: int, value: int) -> None:
        _check_port_size(size)
        if port == CONFIG_ADDRESS_PORT and size == 4:
            self._config_address = value & CONFIG_ADDRESS_WRITABLE
        elif CONFIG_DATA_PORT <= port < CONFIG_DATA_PORT + PORT_WINDOW:
            self._data_write(port - CONFIG_DATA_PORT, size, value)
        else:
            for lane in range(size):
                self._write_byte(port + lane, (value >> (8 * lane)) & 0xFF)

    def _read_byte(self, port: int) -> int:
        """One byte of an I/O cycle that is not a dword CONFIG_ADDRESS access."""
        if port == RESET_CONTROL_PORT:
            return self._rcr
        if CONFIG_DATA_PORT <= port < CONFIG_DATA_PORT + PORT_WINDOW:
            return self._data_read(port - CONFIG_DATA_PORT, 1)
        return UNMAPPED_BYTE

    def _write_byte(self, port: int, byte: int) -> None:
        if port == RESET_CONTROL_PORT:
            self._write_rcr(byte)
        elif CONFIG_DATA_PORT <= port < CONFIG_DATA_PORT + PORT_WINDOW:
            self._data_write(port - CONFIG_DATA_PORT, 1, byte)

    def _write_rcr(self, byte: int) -> None:
        rising = byte & ~self._rcr & RCR_RESET_CPU
        self._rcr = byte & RCR_WRITABLE
        if rising and self.on_reset is not None:
            self.on_reset(bool(byte & RCR_SYSTEM_RESET))

    def _target(self) -> ConfigSpace | None:
        address = self._config_address
        if not address & CONFIG_ADDRESS_ENABLE or (address >> CONFIG_BUS_SHIFT) & 0xFF:
            return None
        device = (address >> CONFIG_DEVICE_SHIFT) & (DEVICE_COUNT - 1)
        function = (address >> CONFIG_FUNCTION_SHIFT) & (FUNCTION_COUNT - 1)
        return self.function_at(device, function)

    def _data_lanes(self, lane: int, size: int) -> tuple[int, list[tuple[int, int]]]:
        """The register dword and (lane, size) pieces of an access that stay in 0xCFC-0xCFF."""
        count = min(size, PORT_WINDOW - lane)
        pieces = [(lane, count)] if count in (1, 2, 4) else \
            [(lane + i, 1) for i in range(count)]
        return self._config_address & CONFIG_REGISTER_MASK, pieces

    def _data_read(self, lane: int, size: int) -> int:
        all_ones = (1 << (8 * size)) - 1
        target = self._target()
        if target is None:
            return all_ones
        register, pieces = self._data_lanes(lane, size)
        value = all_ones  # lanes past 0xCFF stay all ones
        for start, count in pieces:
            shift = 8 * (start - lane)
            piece = target.config_read(register + start, count)
            value &= ~(((1 << (8 * count)) - 1) << shift)
            value |= piece << shift
        return value

    def _data_write(self, lane: int, size: int, value: int) -> None:
        target = self._target()
        if target is None:
            return
        register, pieces = self._data_lanes(lane, size)
        for start, count in pieces:
            piece = (value >> (8 * (start - lane))) & ((1 << (8 * count)) - 1)
            target.config_write(register + start, count, piece)


class _HostPorts:
    """A four-port window of the host (0xCF8 or 0xCFC) as a bus Device."""

    def __init__(self, host: PciHost, base: int) -> None:
        self._host = host
        self._base = base

    def read(self, offset: int, size: int) -> int:
        return self._host.port_read(self._base + offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self._host.port_write(self._base + offset, size, value)
