"""Port 0x92, "system control port A" (the PS/2 fast A20 gate and fast reset).

Bit 1 gates address line 20 and bit 0 is the fast reset: a 0 -> 1 transition resets the
machine (82371SB PIIX3 datasheet, port 92h; QEMU's port92 device behaves the same). The
other bits are stored and read back, as on QEMU.

Not emulated: masking A20. KVM has no A20 gate, so A20 is always on whatever bit 1 says;
software that tests A20 by aliasing (SeaBIOS, GRUB, Linux) finds it on and moves on. The
value reads back as written, so a firmware that reads, sets bit 1 and writes back is happy.

What the guest can make it do: reset the machine (only on a 0 -> 1 change of bit 0).
"""

from __future__ import annotations

from collections.abc import Callable

from pyhvm.devices.base import ByteRegisters

PORT = 0x92
FAST_RESET = 0x01
A20_ENABLE = 0x02
DEFAULT_VALUE = 0x00


class Port92(ByteRegisters):
    def __init__(self, on_reset: Callable[[], None]) -> None:
        self._on_reset = on_reset
        self.value = DEFAULT_VALUE

    @property
    def a20_enabled(self) -> bool:
        return bool(self.value & A20_ENABLE)

    def _read_byte(self, offset: int) -> int:
        return self.value if offset == 0 else 0xFF

    def _write_byte(self, offset: int, value: int) -> None:
        if offset != 0:
            return
        rising = value & ~self.value & FAST_RESET
        self.value = value & 0xFF
        if rising:
            self._on_reset()

    def reset(self) -> None:
        self.value = DEFAULT_VALUE
