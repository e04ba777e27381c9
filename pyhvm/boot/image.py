"""What every loader shares: its error type, the result it returns, the e820 map."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import HostError
from ..memory import GuestMemory

E820_RAM = 1
E820_RESERVED = 2

# The top of conventional memory: 639 KiB usable, the EBDA and ROM area reserved after it.
LOW_MEMORY_TOP = 0x9FC00
BIOS_AREA = 0xF0000
HIGH_MEMORY = 0x100000


class BootImageError(HostError):
    """A kernel, initrd or module the user gave cannot be loaded; the message names why."""


@dataclass(frozen=True)
class BootEntry:
    """How the loader wants the vCPU started."""

    mode: str                      # "protected32" (Multiboot) or "long64" (Linux)
    rip: int
    registers: dict[str, int] = field(default_factory=dict)
    page_table_base: int = 0       # long64: where to build identity page tables


def e820_map(memory: GuestMemory) -> list[tuple[int, int, int]]:
    """(address, length, type) entries as a PC BIOS would report them for this RAM."""
    entries: list[tuple[int, int, int]] = []
    for region in memory.regions:
        if region.gpa == 0:
            entries.append((0, LOW_MEMORY_TOP, E820_RAM))
            entries.append((LOW_MEMORY_TOP, 0xA0000 - LOW_MEMORY_TOP, E820_RESERVED))
            entries.append((BIOS_AREA, HIGH_MEMORY - BIOS_AREA, E820_RESERVED))
            if region.size > HIGH_MEMORY:
                entries.append((HIGH_MEMORY, region.size - HIGH_MEMORY, E820_RAM))
        else:
            entries.append((region.gpa, region.size, E820_RAM))
    return entries


def read_file(path: str, what: str, limit: int) -> bytes:
    """Read a user-named file whole, with errors a user can act on."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise BootImageError(f"{what} {path!r} does not exist") from None
    except IsADirectoryError:
        raise BootImageError(f"{what} {path!r} is a directory, not a file") from None
    except PermissionError:
        raise BootImageError(f"{what} {path!r} is not readable (permission denied)") from None
    if len(data) > limit:
        raise BootImageError(f"{what} {path!r} is larger than {limit >> 20} MiB")
    return data
