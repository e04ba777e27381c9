"""What the VMM and a device process agree on: device groups, register ranges, operations.

A device process hosts one or more *groups* of device models (`--device-process`):
- `uart`: COM1's 16550A (ports 0x3F8-0x3FF, IRQ 4);
- `pic`: the 8259 pair, the ELCR and the 8254 PIT with port 0x61, together because the PIT's
  OUT 0 is the PIC's IR0 (only with `--irqchip user`; with `kernel` KVM has them);
- `ide`: the PIIX3 IDE channels and bus-master block (IRQ 14 and 15), its disks and DMA.

Each register range the VMM's bus maps to a proxy has a small number (`RANGES` index) that
travels in a request instead of a port: the device process never sees where a range is
mapped, so a BAR the guest moves needs no message (the proxy re-registers on the VMM's bus).

Writes are *posted* (the vCPU does not wait) for every range here: none of these devices
returns anything to a write, and its effects reach the guest only through a later read,
which is ordered behind the write in the one ring, or through an interrupt, which is
asynchronous on real hardware too (a UART THR write, a PIC EOI or mask change, a PIT
reprogramming, an ATA command or bus-master start). Reads, and the INTA cycle of the
interrupt controller, are synchronous.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUPS = ("uart", "pic", "ide")


@dataclass(frozen=True)
class RangeSpec:
    name: str     # the VMM bus mapping's name (as in `pyhvm run --stats` and traces)
    size: int     # ports decoded
    group: str


RANGES: tuple[RangeSpec, ...] = (
    RangeSpec("com1", 8, "uart"),
    RangeSpec("pic-master", 2, "pic"),
    RangeSpec("pic-slave", 2, "pic"),
    RangeSpec("elcr", 2, "pic"),
    RangeSpec("pit", 4, "pic"),
    RangeSpec("port61", 1, "pic"),
    RangeSpec("ide0-command", 8, "ide"),
    RangeSpec("ide0-control", 1, "ide"),
    RangeSpec("ide1-command", 8, "ide"),
    RangeSpec("ide1-control", 1, "ide"),
    RangeSpec("ide-bus-master", 16, "ide"),
)
RANGE_IDS = {spec.name: index for index, spec in enumerate(RANGES)}
GROUP_IDS = {name: index for index, name in enumerate(GROUPS)}

# ISA interrupt lines each group drives (the PIC group drives the CPU's INTR instead).
GROUP_IRQS = {"uart": (4,), "pic": (), "ide": (14, 15)}
INTR_LINE = 16          # in an IRQ event: the PIC's INT output to the CPU
ISA_IRQS = 16
CASCADE_IRQ = 2         # the slave PIC's input on the master: no device drives it

# Request operations (a slot's `op`).
OP_READ = 1             # sync: data <- device.read(offset, size)
OP_WRITE = 2            # posted: device.write(offset, size, data)
OP_IRQ = 3              # posted: the PIC's input `offset` (an ISA IRQ) to level `data`
OP_INTA = 4             # sync: the INTA cycle; data <- vector, or INTA_NONE
OP_CONTROL = 5          # posted: `target` is a group, `offset` a CTL_* command
OPS = (OP_READ, OP_WRITE, OP_IRQ, OP_INTA, OP_CONTROL)
SYNC_OPS = (OP_READ, OP_INTA)
INTA_NONE = 0x100       # no request is pending any more: inject nothing

# OP_CONTROL commands.
CTL_RESET = 1           # machine reset of the group's devices
CTL_BUS_MASTER = 2      # ide: the PCI command register's bus-master bit is now `data`
CTL_CONSOLE_IN = 3      # uart: `size` bytes of host console input in `data`, low byte first
CONSOLE_IN_CHUNK = 8

# Event kinds (device process -> VMM).
EVT_IRQ = 1             # `arg` a line (0-15, or INTR_LINE), `length` the level (0 or 1)
EVT_CONSOLE = 2         # `length` bytes of UART output in the payload

# Access sizes a request may carry (port I/O is 1, 2 or 4; MMIO up to 8).
ACCESS_SIZES = (1, 2, 4, 8)


def all_ones(size: int) -> int:
    """What a read of absent (or failed) hardware returns: the bus floats high."""
    return (1 << (8 * size)) - 1


def ranges_of(groups: tuple[str, ...] | list[str]) -> list[int]:
    """The range ids the named groups serve."""
    return [index for index, spec in enumerate(RANGES) if spec.group in groups]
