"""The 8042 keyboard controller ("KBC") at ports 0x60/0x64, with a PS/2 keyboard attached.

Sources: the IBM PS/2 Hardware Interface Technical Reference ("Keyboard/Auxiliary Device
Controller"): status register, command byte, controller commands, output port.

Emulated: the status register (OBF, SYS, A2, keylock, AUX_OBF, time-out), the command byte
and the rest of the controller's 32 bytes of RAM (0x20-0x3F / 0x60-0x7F), self-test (0xAA ->
0x55), interface tests (0xAB, 0xA9 -> 0x00), keyboard and aux enable/disable (0xAD/0xAE,
0xA7/0xA8), input port and test inputs, output port read/write (0xD0/0xD1) and the pulse
commands 0xF0-0xFF (a reset through either calls `on_reset()`), writes into its own output
buffer (0xD2 as keyboard, 0xD3 as aux), the keyboard (ps2kbd.py) with set 2 -> set 1
translation when command byte bit 6 is set, IRQ 1 (keyboard byte, command byte bit 0) and
IRQ 12 (aux byte, bit 1) raised while such a byte waits in the output buffer.
Not emulated: a mouse (bytes sent to the aux port with 0xD4 are answered 0xFE with the
time-out bit, as a controller with nothing on that port does), A20 masking (KVM guest memory
has none), the password commands, controller timing (IBF is never set: writes are consumed
at once).
Whatever the guest writes, the controller holds at most one command's reply, the keyboard's
16 bytes and a few aux bytes.

The two ports are not adjacent (0x61-0x63 belong to other devices), so map `data_port` at
0x60 and `command_port` at 0x64, one port each. `read`/`write` on the controller itself take
offset 0 for data and 4 for command/status, for tests and any bus that maps a span.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .base import ByteRegisters, Device, IrqLine, NullIrqLine, check_access_size
from .ps2kbd import BREAK_PREFIX, TRANSLATE_SET2, Ps2Keyboard

UNMAPPED_BYTE = 0xFF  # a byte lane past the device floats high on ISA

# i8042 ports, and offsets within I8042.read/write (data at 0, command/status at 4).
I8042_DATA_PORT = 0x60
I8042_COMMAND_PORT = 0x64
DATA_OFFSET = 0
COMMAND_OFFSET = I8042_COMMAND_PORT - I8042_DATA_PORT
KBD_IRQ = 1
AUX_IRQ = 12

# Status register bits (read at 0x64).
STATUS_OBF = 0x01  # output buffer full: a byte waits at 0x60
STATUS_IBF = 0x02  # input buffer full: never set, we consume writes at once
STATUS_SYS = 0x04  # system flag: copied from command byte bit 2, set by self-test
STATUS_A2 = 0x08  # the last write went to 0x64 (command) rather than 0x60 (data)
STATUS_INH = 0x10  # 1 = keyboard not inhibited (keylock open)
STATUS_AUX_OBF = 0x20  # the byte in the output buffer is from the aux port
STATUS_TIMEOUT = 0x40  # the last byte sent to a device got no answer (no mouse)
STATUS_PARITY = 0x80  # never set

# Controller command byte ("CCB", RAM byte 0, read with 0x20, written with 0x60).
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
CMD_READ_RAM = 0x20  # 0x20-0x3F: read RAM byte (cmd & 0x1F); 0x20 is the command byte
CMD_READ_CCB = CMD_READ_RAM
CMD_WRITE_RAM = 0x60  # 0x60-0x7F: the next data byte goes to RAM byte (cmd & 0x1F)
CMD_WRITE_CCB = CMD_WRITE_RAM
CMD_PASSWORD_INSTALLED = 0xA4  # answers PASSWORD_NONE
CMD_DISABLE_AUX = 0xA7
CMD_ENABLE_AUX = 0xA8
CMD_AUX_TEST = 0xA9  # answers INTERFACE_OK
CMD_SELF_TEST = 0xAA  # answers SELF_TEST_PASSED
CMD_KBD_TEST = 0xAB  # answers INTERFACE_OK
CMD_DISABLE_KBD = 0xAD
CMD_ENABLE_KBD = 0xAE
CMD_READ_INPUT_PORT = 0xC0
CMD_READ_OUTPUT_PORT = 0xD0
CMD_WRITE_OUTPUT_PORT = 0xD1  # next data byte is the output port
CMD_WRITE_KBD_OUTPUT = 0xD2  # next data byte appears in the output buffer, as keyboard
CMD_WRITE_AUX_OUTPUT = 0xD3  # next data byte appears in the output buffer, as aux
CMD_WRITE_AUX = 0xD4  # next data byte goes to the aux device
CMD_READ_TEST_INPUTS = 0xE0
CMD_PULSE_BASE = 0xF0  # 0xF0-0xFF pulse output port bits 3:0 that are 0 in the command
CMD_PULSE_RESET = 0xFE  # pulse bit 0 only: the usual reboot request
DATA_COMMANDS = (CMD_WRITE_OUTPUT_PORT, CMD_WRITE_KBD_OUTPUT, CMD_WRITE_AUX_OUTPUT,
                 CMD_WRITE_AUX)

SELF_TEST_PASSED = 0x55
INTERFACE_OK = 0x00
PASSWORD_NONE = 0xF1
INPUT_PORT = 0x80  # keylock open, colour display
TEST_INPUTS = 0x00
AUX_NO_DEVICE = 0xFE  # what the controller reports when nothing answers on the aux port
AUX_QUEUE_SIZE = 16
RAM_SIZE = 32

DEFAULT_CCB = CCB_SYS | CCB_XLATE  # as firmware leaves it after POST, interrupts off
DEFAULT_OUTPUT_PORT = OUTPUT_RESET | OUTPUT_A20  # running, A20 on (KVM cannot mask it)


def _lanes_above_unmapped(size: int) -> int:
    """All-ones for every byte lane but the lowest: the bits a wider read fills in."""
    return ((1 << (8 * size)) - 1) & ~0xFF


class I8042(ByteRegisters):
    """The keyboard controller and its keyboard; see the module docstring.

    The output buffer holds one byte. When it is empty the controller fills it from, in
    order: its own reply to a command, the keyboard (unless disabled; translated when the
    command byte says so), the aux port (unless disabled).
    """

    def __init__(self, on_reset: Callable[[], None], kbd_irq: IrqLine | None = None,
                 aux_irq: IrqLine | None = None) -> None:
        self._on_reset = on_reset
        self._kbd_irq = kbd_irq or NullIrqLine()
        self._aux_irq = aux_irq or NullIrqLine()
        self.keyboard = Ps2Keyboard(self._fill)
        self.data_port: Device = _PortView(self, DATA_OFFSET)
        self.command_port: Device = _PortView(self, COMMAND_OFFSET)
        self._replies: deque[tuple[int, bool]] = deque()  # (byte, from aux)
        self._aux: deque[int] = deque()
        self._kbd_level = self._aux_level = False
        self.reset()

    def reset(self) -> None:
        """Back to the state firmware leaves after POST."""
        self._ram = bytearray(RAM_SIZE)
        self._ram[0] = DEFAULT_CCB
        self._output_port = DEFAULT_OUTPUT_PORT
        self._out_byte = 0x00
        self._out_full = False
        self._out_aux = False
        self._timeout = False
        self._last_was_command = False
        self._awaiting: int | None = None  # a command that wants a data byte
        self._break_pending = False  # translation: a set 2 0xF0 waits for its key code
        self._replies.clear()
        self._aux.clear()
        self.keyboard.reset()
        self._update_irq()

    @property
    def _ccb(self) -> int:
        return self._ram[0]

    # --- the host side ----------------------------------------------------------------------
    def key(self, code: int, down: bool) -> bool:
        """A key event from a display client (set 2 code, 0xE0xx for extended keys); False
        when the keyboard did not queue it (buffer full or scanning off)."""
        return self.keyboard.key(code, down)

    def status(self) -> int:
        """The status register, without side effects."""
        value = STATUS_INH
        if self._out_full:
            value |= STATUS_OBF
            if self._out_aux:
                value |= STATUS_AUX_OBF
        if self._ccb & CCB_SYS:
            value |= STATUS_SYS
        if self._last_was_command:
            value |= STATUS_A2
        if self._timeout:
            value |= STATUS_TIMEOUT
        return value

    # --- registers ---------------------------------------------------------------------------
    def _read_byte(self, offset: int) -> int:
        if offset == DATA_OFFSET:
            value = self._out_byte  # an empty buffer reads its stale byte
            self._out_full = False  # reading the output buffer empties it
            # The line drops with OBF, so the next byte is a fresh edge for the 8259.
            self._update_irq()
            self._fill()
            return value
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
        self._fill()

    def _write_data(self, value: int) -> None:
        awaiting, self._awaiting = self._awaiting, None
        if awaiting is None:
            # For the keyboard. Sending to it re-enables its interface, as on AT controllers.
            self._ram[0] &= ~CCB_KBD_DISABLE
            self._timeout = False
            self.keyboard.receive(value)
        elif CMD_WRITE_RAM <= awaiting < CMD_WRITE_RAM + RAM_SIZE:
            self._ram[awaiting - CMD_WRITE_RAM] = value
        elif awaiting == CMD_WRITE_OUTPUT_PORT:
            self._write_output_port(value)
        elif awaiting == CMD_WRITE_KBD_OUTPUT:
            self._respond(value)
        elif awaiting == CMD_WRITE_AUX_OUTPUT:
            self._respond(value, aux=True)
        elif awaiting == CMD_WRITE_AUX:
            # Nothing is plugged into the aux port: the controller times out and says so.
            self._timeout = True
            if len(self._aux) < AUX_QUEUE_SIZE:
                self._aux.append(AUX_NO_DEVICE)

    def _command(self, cmd: int) -> None:
        self._awaiting = None  # a new command abandons one still waiting for its data
        if CMD_READ_RAM <= cmd < CMD_READ_RAM + RAM_SIZE:
            self._respond(self._ram[cmd - CMD_READ_RAM])
        elif CMD_WRITE_RAM <= cmd < CMD_WRITE_RAM + RAM_SIZE or cmd in DATA_COMMANDS:
            self._awaiting = cmd
        elif cmd == CMD_SELF_TEST:
            self._ram[0] |= CCB_SYS
            self._respond(SELF_TEST_PASSED)
        elif cmd in (CMD_KBD_TEST, CMD_AUX_TEST):
            self._respond(INTERFACE_OK)
        elif cmd == CMD_PASSWORD_INSTALLED:
            self._respond(PASSWORD_NONE)
        elif cmd == CMD_DISABLE_KBD:
            self._ram[0] |= CCB_KBD_DISABLE
        elif cmd == CMD_ENABLE_KBD:
            self._ram[0] &= ~CCB_KBD_DISABLE
        elif cmd == CMD_DISABLE_AUX:
            self._ram[0] |= CCB_AUX_DISABLE
        elif cmd == CMD_ENABLE_AUX:
            self._ram[0] &= ~CCB_AUX_DISABLE
        elif cmd == CMD_READ_INPUT_PORT:
            self._respond(INPUT_PORT)
        elif cmd == CMD_READ_OUTPUT_PORT:
            self._respond(self._output_port)
        elif cmd == CMD_READ_TEST_INPUTS:
            self._respond(TEST_INPUTS)
        elif cmd >= CMD_PULSE_BASE and not cmd & OUTPUT_RESET:
            self._on_reset()  # the pulse drives the reset line low for a moment
        # Anything else (password commands, vendor extensions) is ignored.

    def _write_output_port(self, value: int) -> None:
        self._output_port = value
        if not value & OUTPUT_RESET:
            # A held-low reset line would keep the CPU stopped; we model it as one pulse.
            self._output_port |= OUTPUT_RESET
            self._on_reset()

    def _respond(self, value: int, aux: bool = False) -> None:
        """A byte from the controller itself. Only the newest reply waits: a guest that
        issues commands without reading their answers cannot make them pile up."""
        self._replies.clear()
        self._replies.append((value & 0xFF, aux))

    # --- the output buffer and the interrupt lines ---------------------------------------
    def _fill(self) -> None:
        """Move the next waiting byte into an empty output buffer, then update IRQs."""
        while not self._out_full:
            if self._replies:
                byte, aux = self._replies.popleft()
            elif not self._ccb & CCB_KBD_DISABLE and self.keyboard.has_output():
                raw = self.keyboard.pop()
                assert raw is not None
                if not self._ccb & CCB_XLATE:
                    byte, aux = raw, False
                elif raw == BREAK_PREFIX:
                    self._break_pending = True  # folded into the next byte as bit 7
                    continue
                else:
                    byte, aux = TRANSLATE_SET2[raw], False
                    if self._break_pending:
                        byte |= 0x80
                        self._break_pending = False
            elif not self._ccb & CCB_AUX_DISABLE and self._aux:
                byte, aux = self._aux.popleft(), True
            else:
                break
            self._out_byte, self._out_aux, self._out_full = byte, aux, True
        self._update_irq()

    def _update_irq(self) -> None:
        kbd = self._out_full and not self._out_aux and bool(self._ccb & CCB_KBD_INT)
        aux = self._out_full and self._out_aux and bool(self._ccb & CCB_AUX_INT)
        if kbd != self._kbd_level:
            self._kbd_level = kbd
            self._kbd_irq.set_level(kbd)
        if aux != self._aux_level:
            self._aux_level = aux
            self._aux_irq.set_level(aux)


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
