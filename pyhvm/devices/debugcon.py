"""QEMU's `isa-debugcon`: a one-port console firmware writes its log to (SeaBIOS: 0x402).

Each byte written goes to `sink`; a read returns the readback value (0xE9), which is how
SeaBIOS tells that the port is there before it starts writing (its `qemu_debug_preinit`).
Without this device the port floats high, SeaBIOS reads 0xFF and stays silent, as it does on
QEMU without `-device isa-debugcon`.

What the guest can make it do: hand bytes to the sink, one per write (wider writes give
their low byte, as QEMU's device does). What it cannot: read anything back but 0xE9.
"""

from __future__ import annotations

from collections.abc import Callable

from pyhvm.devices.base import check_access_size

SEABIOS_PORT = 0x402  # where SeaBIOS's CONFIG_DEBUG_IO writes (QEMU's -debugcon uses 0xE9)
READBACK = 0xE9  # QEMU's default readback value


class DebugCon:
    def __init__(self, sink: Callable[[bytes], None], readback: int = READBACK) -> None:
        self._sink = sink
        self._readback = readback & 0xFF

    def read(self, offset: int, size: int) -> int:
        check_access_size(size)
        return self._readback

    def write(self, offset: int, size: int, value: int) -> None:
        check_access_size(size)
        self._sink(bytes([value & 0xFF]))


class LineLog:
    """A sink that collects bytes into lines and hands each complete line on (for -v)."""

    MAX_LINE = 4096  # a guest that never writes a newline still gets its bytes out

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._pending = bytearray()

    def __call__(self, data: bytes) -> None:
        for byte in data:
            if byte == 0x0A or len(self._pending) >= self.MAX_LINE:
                self._emit(self._pending.decode("utf-8", "replace").rstrip("\r"))
                self._pending.clear()
                if byte == 0x0A:
                    continue
            self._pending.append(byte)

    def flush(self) -> None:
        if self._pending:
            self._emit(self._pending.decode("utf-8", "replace"))
            self._pending.clear()
