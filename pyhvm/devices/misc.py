"""Two small PC ports guests touch at boot: the POST code port and the i8042's reset path.

Both are byte devices on ISA. A wider access is split into byte lanes; lane 0 is the device's
own port, and the lanes above it belong to the next ports, which these classes do not own, so
they read as all ones and ignore writes (as unmapped ISA ports do).
"""

from __future__ import annotations

from collections.abc import Callable

from pyhvm.devices.base import ByteRegisters, Device, check_access_size

UNMAPPED_BYTE = 0xFF  # a byte lane past the device floats high on ISA

POST_CODE_PORT = 0x80  # firmware progress codes; Linux also writes here as an I/O delay
DEFAULT_POST_CODE = 0x00



def _lanes_above_unmapped(size: int) -> int:
    """All-ones for every byte lane but the lowest: the bits a wider read fills in."""
    return ((1 << (8 * size)) - 1) & ~0xFF


class PostCode:
    """Port 0x80: each write is a POST code for `log`; a read returns the last one written.

    On AT-class chipsets port 0x80 sits among the DMA page registers and reads back what was
    last written; some boards read 0xFF instead. We read back, which is the more useful of the
    two for a guest checking its own progress. Called on every Linux I/O-delay write, so
    `log` should be cheap.
    """

    def __init__(self, log: Callable[[int], None]) -> None:
        self._log = log
        self._last = DEFAULT_POST_CODE

    @property
    def last(self) -> int:
        return self._last

    def read(self, offset: int, size: int) -> int:
        check_access_size(size)
        if offset != 0:
            return (1 << (8 * size)) - 1
        return self._last | _lanes_above_unmapped(size)

    def write(self, offset: int, size: int, value: int) -> None:
        check_access_size(size)
        if offset != 0:
            return
        self._last = value & 0xFF
        self._log(self._last)


# i8042 ports, and offsets within I8042.read/write (data at 0, command/status at 4).
I8042_DATA_PORT = 0x60
I8042_COMMAND_PORT = 0x64
DATA_OFFSET = 0
COMMAND_OFFSET = I8042_COMMAND_PORT - I8042_DATA_PORT

# Status register bits (read at 0x64).
STATUS_OBF = 0x01  # output buffer full: a byte waits at 0x60
STATUS_IBF = 0x02  # input buffer full: never set, we consume writes at once
STATUS_SYS = 0x04  # system flag: copied from command byte bit 2, set by self-test
STATUS_A2 = 0x08  # the last write went to 0x64 (command) rather than 0x60 (data)
STATUS_INH = 0x10  # 1 = keyboard not inhibited (keylock open)
STATUS_AUX_OBF = 0x20  # output byte is from the aux device; never, we have none
STATUS_TIMEOUT = 0x40  # never set
STATUS_PARITY = 0x80  # never set

# Controller command byte ("CCB", read with 0x20, written with 0x60).
CCB_KBD_INT = 0x01  # IRQ1 on keyboard output
CCB_AUX_INT = 0x02  # IRQ12 on aux output
CCB_SYS = 0x04  # system flag, mirrored into STATUS_SYS
CCB_KBD_DISABLE = 0x10  # keyboard clock held low
CCB_AUX_DISABLE = 0x20  # aux clock held low
CCB_XLATE = 0x40  # scan code set 2 -> 1 translation

# Output port bits (read with 0xD0, written with 0xD1).
OUTPUT_RESET = 0x01  # active low: driving it to 0 resets the CPU
OUTPUT_A20 = 0x02  # A20 gate; stored only, KVM guest memory has no A20 mask

# Controller commands (written at 0x64).
CMD_READ_CCB = 0x20
CMD_WRITE_CCB = 0x60  # next data byte is the command byte
CMD_DISABLE_AUX = 0xA7
CMD_ENABLE_AUX = 0xA8
CMD_SELF_TEST = 0xAA  # answers SELF_TEST_PASSED
CMD_DISABLE_KBD = 0xAD
CMD_ENABLE_KBD = 0xAE
CMD_READ_OUTPUT_PORT = 0xD0
CMD_WRITE_OUTPUT_PORT = 0xD1  # next data byte is the output port
CMD_PULSE_BASE = 0xF0  # 0xF0-0xFF pulse output port bits 3:0 that are 0 in the command
CMD_PULSE_RESET = 0xFE  # pulse bit 0 only: the usual reboot request

SELF_TEST_PASSED = 0x55

DEFAULT_CCB = CCB_SYS | CCB_XLATE  # as firmware leaves it after POST, interrupts off
DEFAULT_OUTPUT_PORT = OUTPUT_RESET | OUTPUT_A20  # running, A20 on (KVM cannot mask it)


class I8042(ByteRegisters):
    """Just enough of the 8042 keyboard controller to reboot the machine and pass a probe.

    Emulated: status register, command byte, self-test, output port (reset through 0xD1 or
    the 0xF0-0xFE pulse commands calls `on_reset()`), keyboard/aux enable bits.
    Not emulated: any keyboard or mouse (bytes written to 0x60 for a device are dropped and
    nothing answers them), interrupts (IRQ1/IRQ12 are never raised; guests poll OBF during
    probing), A20 masking, controller RAM beyond the command byte, the password and test-input
    commands. Unknown commands are ignored.

    The two ports are not adjacent (0x61-0x63 belong to other devices), so map `data_port` at
    0x60 and `command_port` at 0x64, one port each. `read`/`write` on the controller itself
    take offset 0 for data and 4 for command/status, for tests and any bus that maps a span.
    """

    def __init__(self, on_reset: Callable[[], None]) -> None:
        self._on_reset = on_reset
        self.data_port: Device = _PortView(self, DATA_OFFSET)
        self.command_port: Device = _PortView(self, COMMAND_OFFSET)
        self.reset()

    def reset(self) -> None:
        """Back to the state firmware leaves after POST."""
        self._ccb = DEFAULT_CCB
        self._output_port = DEFAULT_OUTPUT_PORT
        self._out_byte = 0x00
        self._out_full = False
        self._last_was_command = False
        self._awaiting: int | None = None  # a command that wants a data byte

    def status(self) -> int:
        """The status register, without side effects."""
        value = STATUS_INH
        if self._out_full:
            value |= STATUS_OBF
        if self._ccb & CCB_SYS:
            value |= STATUS_SYS
        if self._last_was_command:
            value |= STATUS_A2
        return value

    def _read_byte(self, offset: int) -> int:
        if offset == DATA_OFFSET:
            self._out_full = False  # reading the output buffer empties it
            return self._out_byte  # an empty buffer reads its stale byte
        if offset == COMMAND_OFFSET:
            return self.status()
        return UNMAPPED_BYTE

    def _write_byte(self, offset: int, value: int) -> None:
        if offset == DATA_OFFSET:
            self._last_was_command = False
            self._write_data(value)
        elif offset == COMMAND_OFFSET:
            self._last_was_command = True
            self._command(value)

    def _write_data(self, value: int) -> None:
        awaiting, self._awaiting = self._awaiting, None
        if awaiting == CMD_WRITE_CCB:
            self._ccb = value
        elif awaiting == CMD_WRITE_OUTPUT_PORT:
            self._write_output_port(value)
        # Otherwise the byte is for the keyboard, and there is none: dropped.

    def _command(self, cmd: int) -> None:
        self._awaiting = None  # a new command abandons one still waiting for its data
        if cmd == CMD_READ_CCB:
            self._respond(self._ccb)
        elif cmd in (CMD_WRITE_CCB, CMD_WRITE_OUTPUT_PORT):
            self._awaiting = cmd
        elif cmd == CMD_SELF_TEST:
            self._ccb |= CCB_SYS
            self._respond(SELF_TEST_PASSED)
        elif cmd == CMD_DISABLE_KBD:
            self._ccb |= CCB_KBD_DISABLE
        elif cmd == CMD_ENABLE_KBD:
            self._ccb &= ~CCB_KBD_DISABLE
        elif cmd == CMD_DISABLE_AUX:
            self._ccb |= CCB_AUX_DISABLE
        elif cmd == CMD_ENABLE_AUX:
            self._ccb &= ~CCB_AUX_DISABLE
        elif cmd == CMD_READ_OUTPUT_PORT:
            self._respond(self._output_port)
        elif cmd >= CMD_PULSE_BASE and not cmd & OUTPUT_RESET:
            self._on_reset()  # the pulse drives the reset line low for a moment

    def _write_output_port(self, value: int) -> None:
        self._output_port = value
        if not value & OUTPUT_RESET:
            # A held-low reset line would keep the CPU stopped; we model it as one pulse.
            self._output_port |= OUTPUT_RESET
            self._on_reset()

    def _respond(self, value: int) -> None:
        self._out_byte = value
        self._out_full = True


class _PortView:
    """One port of a device whose ports are not adjacent, so the bus can map it alone."""

    def __init__(self, device: I8042, offset: int) -> None:
        self._device = device
        self._offset = offset

    def read(self, offset: int, size: int) -> int:
        check_access_size(size)
        if offset != 0:
            return (1 << (8 * size)) - 1
        return (self._device.read(self._offset, 1)) | _lanes_above_unmapped(size)

    def write(self, offset: int, size: int, value: int) -> None:
        check_access_size(size)
        if offset == 0:
            self._device.write(self._offset, 1, value & 0xFF)
