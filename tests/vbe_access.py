"""A std VGA on a plain bytearray, and its Bochs VBE registers through the index/data ports,
for the unit tests that drive VBE as a driver does."""

from __future__ import annotations

from pyhvm.devices.vga import StdVga

MiB = 1 << 20


def new_vga(size: int) -> tuple[StdVga, bytearray]:
    """The adapter and the video memory behind it (tests read the bytearray directly)."""
    memory = bytearray(size)
    return StdVga(memoryview(memory)), memory


def setreg(vga: StdVga, index: int, value: int) -> None:
    vga.vbe.write(0, 2, index)
    vga.vbe.write(1, 2, value)


def getreg(vga: StdVga, index: int) -> int:
    vga.vbe.write(0, 2, index)
    return vga.vbe.read(1, 2)
