"""Op templates: the short sequences a driver issues, with fuzzed values, per device.

Random single accesses rarely reach a device's deep states (a DMA read needs a drive
selected, an address, a count, a command, a PRD table in RAM, its pointer and the start
bit, in that order). A template emits such a sequence with each value drawn from the edges
(`generate.value`, `generate.address`), so the engine spends its ops where the bugs live.
Configurations (configs.py) list the templates of their devices in their `Profile`.
"""

from __future__ import annotations

from . import ops as o
from .generate import Profile, Rng, address, pci_access, value
from .ops import Op

IDE_BUS_MASTER_PORT = 0xC000  # where firmware puts BAR4 (pc.py does the same)
NIC_IO_BASE = 0xC100  # where firmware puts the RTL8139's BARs (machine/nic.py does the same)
NIC_MMIO_BASE = 0xFEBF1000
NIC_MAC = bytes.fromhex("525400123456")
VGA_LFB_BASE = 0xFD000000  # where firmware puts the std VGA's BARs (machine/display.py)
VGA_MMIO_BASE = 0xFEBF0000


def pic_init(r: Rng, p: Profile) -> list[Op]:
    base = r.choice((0x20, 0xA0))
    icw1 = 0x10 | r.getrandbits(4)
    ops = [o.port_out(1, base, icw1), o.port_out(1, base + 1, value(r, 1))]
    if not icw1 & 0x02:
        ops.append(o.port_out(1, base + 1, r.choice((0x04, 0x02, value(r, 1)))))
    if icw1 & 0x01:
        ops.append(o.port_out(1, base + 1, r.getrandbits(5)))
    ops.append(o.port_out(1, base + 1, value(r, 1)))  # OCW1: the mask
    return ops


def pic_command(r: Rng, p: Profile) -> list[Op]:
    base = r.choice((0x20, 0xA0))
    command = r.choice((0x20, 0x60, 0xA0, 0xC0, 0xE0, 0x80, 0x00, 0x40)) | r.randrange(8) \
        if r.random() < 0.6 else r.choice((0x0A, 0x0B, 0x0C, 0x48, 0x68, 0x6B, 0x0E))
    return [o.port_out(1, base, command), o.port_in(1, base + r.randrange(2))]


def pit_program(r: Rng, p: Profile) -> list[Op]:
    channel = r.choice((0, 0, 0, 1, 2))
    rw = r.choice((1, 2, 3, 3))
    mode = r.randrange(8)
    ops = [o.port_out(1, 0x43, channel << 6 | rw << 4 | mode << 1 | (r.random() < 0.1))]
    count = value(r, 2)
    if rw & 1:
        ops.append(o.port_out(1, 0x40 + channel, count & 0xFF))
    if rw & 2:
        ops.append(o.port_out(1, 0x40 + channel, count >> 8))
    if r.random() < 0.3:
        ops.append(o.port_out(1, 0x61, r.getrandbits(8)))
    return ops


def pit_readback(r: Rng, p: Profile) -> list[Op]:
    channel = r.randrange(3)
    command = 0xC0 | r.getrandbits(6) if r.random() < 0.5 else channel << 6
    return [o.port_out(1, 0x43, command)] + [o.port_in(1, 0x40 + channel)
                                              for _ in range(1 + r.randrange(3))]


def rtc_access(r: Rng, p: Profile) -> list[Op]:
    register = r.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xA, 0xB, 0xB, 0xC, 0xC, 0xD, 0x32)) \
        if r.random() < 0.9 else r.randrange(256)
    index = [o.port_out(1, 0x70, register)]
    if r.random() < 0.4:
        return index + [o.port_in(1, 0x71)]
    byte = {0xA: lambda: 0x20 | r.randrange(16) if r.random() < 0.8 else value(r, 1),
            0xB: lambda: r.getrandbits(8)}.get(register, lambda: value(r, 1))()
    return index + [o.port_out(1, 0x71, byte)]


def uart_setup(r: Rng, p: Profile) -> list[Op]:
    roll = r.random()
    if roll < 0.3:
        divisor = value(r, 2)
        return [o.port_out(1, 0x3FB, 0x80 | r.getrandbits(7)), o.port_out(1, 0x3F8, divisor & 0xFF),
                o.port_out(1, 0x3F9, divisor >> 8), o.port_out(1, 0x3FB, r.getrandbits(7))]
    if roll < 0.6:
        return [o.port_out(1, 0x3FA, r.getrandbits(8)), o.port_out(1, 0x3F9, r.getrandbits(4)),
                o.port_out(1, 0x3FC, r.getrandbits(5))]
    if roll < 0.8:
        return [o.port_out(1, 0x3F8, value(r, 1)) for _ in range(1 + r.randrange(20))]
    return [o.port_in(1, 0x3F8 + r.choice((0, 2, 5, 6))) for _ in range(1 + r.randrange(20))]


def i8042_command(r: Rng, p: Profile) -> list[Op]:
    command = r.choice((0x20, 0x21, 0x3F, 0x60, 0x61, 0x7F, 0xA4, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB,
                        0xAD, 0xAE, 0xC0, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xF0, 0xFE, 0xFF,
                        value(r, 1)))
    if r.random() < 0.3:  # a command for the keyboard itself, through the data port
        keyboard = r.choice((0xED, 0xEE, 0xF0, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xFE, 0xFF,
                             value(r, 1)))
        return [o.port_out(1, 0x60, keyboard), o.port_out(1, 0x60, value(r, 1)),
                o.port_in(1, 0x64), o.port_in(1, 0x60)]
    ops = [o.port_out(1, 0x64, command)]
    if r.random() < 0.6:
        ops.append(o.port_out(1, 0x60, value(r, 1)))
    return ops + [o.port_in(1, 0x64), o.port_in(1, 0x60)]


def pci_bar_sizing(r: Rng, p: Profile) -> list[Op]:
    """Size a BAR, put it somewhere (maybe over something else), flip decode."""
    device, function = r.choice(p.pci) if p.pci else (r.randrange(32), 0)
    bar = r.choice((0x10, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x30))
    where = r.choice((0x60, 0x1F0, 0x3F8, 0xC000, 0xC100, 0xCF8, 0xFF00, 0xFFF0, 0xFEBF1000,
                      0x1000, address(r, p) & ~0xF, value(r, 4)))
    return (pci_access(device, function, bar, 4, 0xFFFFFFFF) +
            pci_access(device, function, bar, 4) +
            pci_access(device, function, bar, 4, where | (bar == 0x30)) +
            pci_access(device, function, 0x04, 2, r.choice((0, 1, 2, 3, 5, 7, 0x405, 0xFFFF))))


ATA_COMMANDS = (0x20, 0x21, 0x24, 0x29, 0x30, 0x31, 0x34, 0x39, 0x40, 0x41, 0x42, 0xC4, 0xC5,
                0xC6, 0xC8, 0xC9, 0xCA, 0xCB, 0x25, 0x35, 0xEC, 0xE7, 0xEA, 0xEF, 0x91, 0x90,
                0x10, 0xE5, 0xE0, 0xE1, 0xE2, 0xE3, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0xA1,
                0x00, 0xFF)


ATA_DMA = (0xC8, 0xCA, 0x25, 0x35)  # READ/WRITE DMA, and their EXT forms
ATA_PIO = (0x20, 0x24, 0x30, 0x34, 0xC4, 0xC5, 0x29, 0x39)  # sectors and multiple, 28/48-bit
DISK_SECTORS = (2048, 128, 64)  # the drives configs.py puts in (0,0), (1,0), (1,1)


def _task_file(r: Rng, base: int, ext: bool) -> list[Op]:
    """Device, count and LBA as a driver writes them: mostly a real address on a real
    drive, sometimes the last sectors, sometimes past the end or absurd."""
    slot = r.randrange(2)
    sectors = r.choice(DISK_SECTORS)
    roll = r.random()
    count = r.choice((1, 1, 2, 8, 0)) if roll < 0.8 else value(r, 2 if ext else 1)
    span = count or (0x10000 if ext else 0x100)
    if roll < 0.6:
        lba = r.randrange(max(1, sectors - min(span, sectors)))
    elif roll < 0.8:
        lba = max(0, sectors - span + r.randrange(-1, 2))
    else:
        lba = value(r, 4) | (r.getrandbits(16) << 32 if ext else 0)
    head = 0 if ext else (lba >> 24) & 0xF
    device = (0xE0 if r.random() < 0.9 else r.choice((0xA0, 0x40, 0x00))) | slot << 4 | head
    ops = [o.port_out(1, base + 6, device)]
    if ext:  # the previous ("high order") bytes first
        ops += [o.port_out(1, base + 2, count >> 8 & 0xFF)]
        ops += [o.port_out(1, base + reg, lba >> shift & 0xFF)
                for reg, shift in ((3, 24), (4, 32), (5, 40))]
    ops += [o.port_out(1, base + 2, count & 0xFF)]
    ops += [o.port_out(1, base + reg, lba >> shift & 0xFF)
            for reg, shift in ((3, 0), (4, 8), (5, 16))]
    return ops


def ata_command(r: Rng, p: Profile) -> list[Op]:
    """Any command, task file written roughly as drivers do or at random."""
    base = r.choice((0x1F0, 0x170))
    command = r.choice(ATA_COMMANDS)
    if r.random() < 0.7:
        ops = _task_file(r, base, command in (0x24, 0x25, 0x29, 0x34, 0x35, 0x39, 0x42))
        ops.insert(1, o.port_out(1, base + 1, value(r, 1)))  # features
    else:
        ops = [o.port_out(1, base + 6, r.choice((0xE0, 0xF0, 0xA0, 0xB0, 0x40, 0x50)) |
                          r.randrange(16))]
        for reg in (1, 2, 3, 4, 5):
            for _ in range(2 if r.random() < 0.4 else 1):
                ops.append(o.port_out(1, base + reg, value(r, 1)))
    ops.append(o.port_out(1, base + 7, command))
    ops.append(o.port_in(1, base + 7))
    return ops


def _prd_table(r: Rng, p: Profile, length: int) -> bytes:
    """Entries for `length` bytes: exactly, or short, long, or pointing off RAM's edges."""
    entries = []
    left = length
    for index in range(1 + r.randrange(4)):
        exact = r.random() < 0.7
        count = min(left, r.choice((0x200, 0x1000, 0x10000))) if exact else \
            r.choice((0, 2, 0x200, 0x1000, 0xFFFE, 0xFFFF, value(r, 2)))
        left -= count if exact else 0
        last = (exact and left <= 0) or (not exact and r.random() < 0.5)
        flags = (count & 0xFFFF) | (0x80000000 if last else 0)
        if r.random() < 0.05:
            flags |= value(r, 4) & 0x7FFF0000  # reserved bits
        entries.append(address(r, p, count or 0x10000).to_bytes(4, "little") +
                       flags.to_bytes(4, "little"))
        if last:
            break
    return b"".join(entries)


def prd_setup(r: Rng, p: Profile) -> list[Op]:
    """A PRD table (entries pointing near RAM edges), the pointer, direction and start."""
    table = address(r, p, 64) & ~3
    bm = IDE_BUS_MASTER_PORT + r.choice((0, 8))
    return [o.fill(table, _prd_table(r, p, r.choice((0x200, 0x400, 0x1000, 0x20000)))),
            o.port_out(4, bm + 4, table if r.random() < 0.9 else value(r, 4)),
            o.port_out(1, bm + 2, r.choice((0x06, 0x60, 0xFF))),
            o.port_out(1, bm, r.choice((0x09, 0x01, 0x08, 0x00)))]


def ata_dma(r: Rng, p: Profile) -> list[Op]:
    """A whole bus-master transfer: stop, table, pointer, command, start (either order)."""
    channel = r.randrange(2)
    base, bm = (0x1F0, 0x170)[channel], IDE_BUS_MASTER_PORT + 8 * channel
    command = r.choice(ATA_DMA)
    ext = command in (0x25, 0x35)
    task = _task_file(r, base, ext)
    count = 1
    for op in task:  # recover the count written, to size the table
        if op.args[1] == base + 2:
            count = (count << 8 | op.args[2]) if ext else op.args[2]
    length = 512 * (count or (0x10000 if ext else 0x100))
    table = address(r, p, 64) & ~3
    to_memory = command in (0xC8, 0x25)
    direction = 0x08 if to_memory != (r.random() < 0.1) else 0x00
    setup = [o.port_out(1, bm, 0x00), o.fill(table, _prd_table(r, p, length)),
             o.port_out(4, bm + 4, table), o.port_out(1, bm + 2, 0x06)]
    issue = task + [o.port_out(1, base + 7, command)]
    start = [o.port_out(1, bm, direction | 0x01)]
    ops = setup + (issue + start if r.random() < 0.6 else start + issue)
    if r.random() < 0.5:
        ops += [o.event("complete")] if "complete" in p.events else []
    return ops + [o.port_in(1, bm + 2), o.port_in(1, base + 7)]


def ata_pio_transfer(r: Rng, p: Profile) -> list[Op]:
    """A PIO command and its data phase: words in or out, a sector or more."""
    base = r.choice((0x1F0, 0x170))
    command = r.choice(ATA_PIO + (0xEC, 0xC6))
    ext = command in (0x24, 0x29, 0x34, 0x39)
    ops = _task_file(r, base, ext) + [o.port_out(1, base + 7, command)]
    if "complete" in p.events:
        ops.append(o.event("complete"))
    write = command in (0x30, 0x34, 0xC5, 0x39)
    width = r.choice((2, 2, 4))
    data = o.port_out(width, base, value(r, width)) if write else o.port_in(width, base)
    return ops + [data, o.repeat(r.choice((255, 256 // (width // 2) - 1, 511, 1023)), 1),
                  o.port_in(1, base + 7)]


def ata_pio(r: Rng, p: Profile) -> list[Op]:
    base = r.choice((0x1F0, 0x170))
    width = r.choice((2, 2, 4, 1))
    op = o.port_in(width, base) if r.random() < 0.5 else o.port_out(width, base, value(r, width))
    return [op, o.repeat(r.choice((1, 63, 255, 256, 511)), 1)]


def ata_control(r: Rng, p: Profile) -> list[Op]:
    control = r.choice((0x3F6, 0x376))
    return [o.port_out(1, control, r.choice((0x04, 0x06, 0x02, 0x00, 0x80, 0xFF))),
            o.port_out(1, control, r.choice((0x00, 0x02))), o.port_in(1, control)]


def frame(r: Rng) -> tuple[bytes]:
    destination = r.choice((b"\xff" * 6, NIC_MAC, b"\x01\x00\x5e\x00\x00\x01",
                            b"\x33\x33\x00\x00\x00\x01", r.randbytes(6)))
    length = r.choice((0, 1, 13, 14, 59, 60, 64, 1000, 1514, 1517, 1518, 1519, 2000))
    return ((destination + r.randbytes(max(0, length - 6)))[:length],)


def nic_reg(r: Rng, p: Profile, offset: int, width: int, data: int) -> Op:
    if r.random() < 0.5:
        return o.port_out(width, NIC_IO_BASE + offset, data)
    return o.mmio_write(width, NIC_MMIO_BASE + offset, data)


def nic_rx_setup(r: Rng, p: Profile) -> list[Op]:
    ring = address(r, p, 0x10000) & ~r.choice((0, 3, 0xFFF))
    rcr = r.choice((0x0F, 0x8F, 0x080F, 0x100F, 0x188F, 0x1F)) if r.random() < 0.8 \
        else value(r, 4)
    return [nic_reg(r, p, 0x37, 1, 0x10), nic_reg(r, p, 0x30, 4, ring),
            nic_reg(r, p, 0x44, 4, rcr), nic_reg(r, p, 0x3C, 2, 0xFFFF),
            nic_reg(r, p, 0x37, 1, 0x0C),
            nic_reg(r, p, 0x38, 2, r.choice((0xFFF0, 0, 0x1FF0, value(r, 2))))]


def nic_tx(r: Rng, p: Profile) -> list[Op]:
    slot = r.randrange(4)
    size = r.choice((0, 1, 14, 60, 1514, 1792, 1793, 0x1FFF))
    buffer = address(r, p, size)
    ops = [nic_reg(r, p, 0x20 + 4 * slot, 4, buffer if r.random() < 0.9 else value(r, 4)),
           nic_reg(r, p, 0x10 + 4 * slot, 4, size | (r.getrandbits(6) << 16))]
    if r.random() < 0.3:
        ops.insert(0, nic_reg(r, p, 0x40, 4, r.choice((0x00060000, 0, value(r, 4)))))
    return ops


def nic_traffic(r: Rng, p: Profile) -> list[Op]:
    """Bring the chip up, then frames both ways: a transmit of a filled buffer (maybe in
    loopback) and frames arriving from the wire into the ring."""
    ops = nic_rx_setup(r, p)
    if r.random() < 0.6:
        size = r.choice((60, 64, 1514, 1792))
        buffer = address(r, p, size)
        slot_ops = []
        for slot in range(4) if r.random() < 0.3 else range(1):
            slot_ops += [nic_reg(r, p, 0x20 + 4 * slot, 4, buffer),
                         nic_reg(r, p, 0x10 + 4 * slot, 4, size)]
        ops += [o.fill(buffer, (NIC_MAC + r.randbytes(62))[:64])]
        if r.random() < 0.4:
            ops.append(nic_reg(r, p, 0x40, 4, 0x00060000))  # loopback: TX feeds RX
        ops += slot_ops
    for _ in range(r.choice((1, 2, 8))):
        ops.append(o.event("frame", *frame(r)))
    return ops + [o.port_in(2, NIC_IO_BASE + 0x3E), o.port_in(2, NIC_IO_BASE + 0x3A)]


def nic_eeprom(r: Rng, p: Profile) -> list[Op]:
    """Bit-bang the 93C46 through 9346CR: CS, clock pulses with data bits."""
    ops = [nic_reg(r, p, 0x50, 1, 0x80)]
    for _ in range(r.choice((1, 9, 11, 27))):
        bit = r.getrandbits(1) << 1
        ops += [nic_reg(r, p, 0x50, 1, 0x88 | bit), nic_reg(r, p, 0x50, 1, 0x8C | bit)]
    ops.append(o.port_in(1, NIC_IO_BASE + 0x50))
    return ops + [nic_reg(r, p, 0x50, 1, r.choice((0x00, 0x40, 0xC0)))]


def nic_misc(r: Rng, p: Profile) -> list[Op]:
    offset = r.choice((0x3E, 0x48, 0x4C, 0x54, 0x58, 0x5B, 0x62, 0x64, 0x74, 0xD8, 0x51, 0x52))
    width = r.choice((1, 2, 4))
    return [nic_reg(r, p, offset, width, value(r, width)),
            o.port_in(width, NIC_IO_BASE + offset)]


# -- the std VGA and Bochs VBE ------------------------------------------------------------

VBE_VALUES = (0, 1, 4, 8, 15, 16, 24, 32, 0x20, 320, 640, 800, 1024, 1280, 4096, 16000, 16001,
              12000, 0x7FFF, 0x8000, 0xFFFF)


def _vbe(r: Rng, index: int, data: int) -> list[Op]:
    if r.random() < 0.8:
        return [o.port_out(2, 0x1CE, index), o.port_out(2, 0x1CF, data & 0xFFFF)]
    return [o.mmio_write(2, VGA_MMIO_BASE + 0x500 + 2 * index, data & 0xFFFF)]


def vbe_mode(r: Rng, p: Profile) -> list[Op]:
    """Set a VBE mode as a driver does (disable, ID, sizes, depth, enable), with edges;
    then bank, virtual width and offsets."""
    ops = _vbe(r, 4, 0) + _vbe(r, 0, r.choice((0xB0C5, 0xB0C0, value(r, 2))))
    for index in (1, 2, 3):
        ops += _vbe(r, index, r.choice(VBE_VALUES) if r.random() < 0.8 else value(r, 2))
    ops += _vbe(r, 4, r.choice((0x41, 0x01, 0xC1, 0x43, 0x03, value(r, 2))))
    for _ in range(r.randrange(4)):
        ops += _vbe(r, r.choice((5, 6, 7, 8, 9, 10, 11, value(r, 2))), r.choice(VBE_VALUES))
    ops += [o.port_out(2, 0x1CE, r.randrange(12)), o.port_in(2, 0x1CF)]
    return ops


def vga_registers(r: Rng, p: Profile) -> list[Op]:
    """Sequencer, graphics, CRTC and attribute registers through their index/data pairs."""
    index_port = r.choice((0x3C4, 0x3CE, 0x3D4, 0x3B4, 0x3C0, 0x3C8, 0x3C7))
    index = r.randrange(32) if r.random() < 0.8 else value(r, 1)
    ops = [o.port_in(1, 0x3DA)] if index_port == 0x3C0 else []  # reset the AC flip-flop
    ops += [o.port_out(1, index_port, index)]
    data_port = index_port if index_port == 0x3C0 else index_port + 1
    if r.random() < 0.7:
        ops.append(o.port_out(1, data_port, value(r, 1)))
    ops.append(o.port_in(1, data_port if index_port != 0x3C0 else 0x3C1))
    if r.random() < 0.2:
        ops.append(o.port_out(2, index_port, value(r, 2)))  # index and data in one word
    return ops


def vga_window(r: Rng, p: Profile) -> list[Op]:
    """Accesses through the legacy window (planar modes, latches, banks) or the LFB."""
    width = r.choice((1, 2, 4, 8))
    if r.random() < 0.6:
        addr = 0xA0000 + r.randrange(0x20000 - width + 4)
    else:
        addr = VGA_LFB_BASE + r.choice((0, r.randrange(1 << 20), (1 << 20) - width,
                                        (1 << 20) - 1))
    access = o.mmio_read(width, addr) if r.random() < 0.4 else \
        o.mmio_write(width, addr, value(r, width))
    return [access] + ([o.repeat(r.choice((16, 255)), 1)] if r.random() < 0.2 else [])


# -- fw_cfg, as SeaBIOS drives it ---------------------------------------------------------

FW_CFG_SELECTOR, FW_CFG_DATA = 0x510, 0x511
FW_CFG_DMA_HIGH, FW_CFG_DMA_LOW = 0x514, 0x518
# The files configs.py gives fw_cfg, sorted as the device keys them (0x20 upwards).
FW_CFG_FILES = ("bootorder", "etc/boot-fail-wait", "etc/e820", "genroms/linuxboot_dma.bin",
                "opt/pyhvm/writable", "pci1234,1111.rom")
FW_CFG_WRITABLE = "opt/pyhvm/writable"
FW_CFG_WRITABLE_KEY = 0x20 + FW_CFG_FILES.index(FW_CFG_WRITABLE)
FW_CFG_WRITABLE_SIZE = 64
# Numbered keys: signature, ID, UUID, RAM size, no-graphic, CPUs, kernel address/size/data,
# boot menu, max CPUs, command line, file directory, the arch-local IRQ0 override and e820,
# the write channel bit, "nothing" (0xFFFF) and the edges of the item table.
FW_CFG_KEYS = (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x07, 0x08, 0x0E, 0x0F, 0x11, 0x15, 0x19,
               0x19, 0x8002, 0x8003, 0x4000, 0x4019, 0xFFFF, 0x5F, 0x60, 0x3FFF, 0x7FFF, 0xC019)
DMA_ERROR, DMA_READ, DMA_SKIP, DMA_SELECT, DMA_WRITE = 0x01, 0x02, 0x04, 0x08, 0x10
DMA_LENGTHS = (0, 1, 4, 16, 63, 64, 65, 0x1000, 0xFFFF, 0x100000, 0x100001, 0x80000000,
               0xFFFFFFFF)


def _be32(number: int) -> int:
    """What an `outl` must carry for the device to see `number` big-endian (SeaBIOS's
    cpu_to_be32 before the write)."""
    return int.from_bytes((number & 0xFFFFFFFF).to_bytes(4, "big"), "little")


def _fw_cfg_key(r: Rng) -> int:
    roll = r.random()
    if roll < 0.45:
        return r.choice(FW_CFG_KEYS)
    if roll < 0.85:  # a file, present or one past the directory, maybe on the write channel
        return (0x20 + r.randrange(len(FW_CFG_FILES) + 2)) | (0x4000 if r.random() < 0.15
                                                                else 0)
    return value(r, 2)


def _fw_cfg_length(r: Rng) -> int:
    return r.choice(DMA_LENGTHS) if r.random() < 0.8 else value(r, 4)


def _fw_cfg_buffer(r: Rng, p: Profile, length: int, at: int) -> int:
    """Where a transfer's bytes go: in RAM, at its edges, over the descriptor itself, or far
    away (past 4 GiB, the top of the 64-bit space)."""
    roll = r.random()
    if roll < 0.75:
        return address(r, p, max(1, min(length, 0x100000)))
    if roll < 0.85:
        return at + r.choice((0, 4, 8, 16))
    return r.choice((1 << 32, (1 << 64) - 16, (1 << 64) - 1, value(r, 4) << 32 | value(r, 4)))


def _fw_cfg_descriptor_at(r: Rng, p: Profile) -> int:
    roll = r.random()
    if roll < 0.85:
        return address(r, p, 16)
    if roll < 0.95:
        return value(r, 4)
    return r.choice((1 << 32, (1 << 64) - 8, value(r, 4) << 32))


def fw_cfg_start(r: Rng, at: int) -> list[Op]:
    """Start the descriptor at `at` as SeaBIOS does: the high half, then the low half (the
    write that runs it), each byte-swapped; sometimes the high half is left as it was."""
    ops = []
    if at >> 32 or r.random() < 0.8:
        ops.append(o.port_out(4, FW_CFG_DMA_HIGH, _be32(at >> 32)))
    return ops + [o.port_out(4, FW_CFG_DMA_LOW, _be32(at))]


def fw_cfg_transfer(r: Rng, at: int, control: int, length: int, buffer: int) -> list[Op]:
    """One FWCfgDmaAccess (control, length, address, big-endian) written at `at`, started."""
    descriptor = (control.to_bytes(4, "big") + (length & 0xFFFFFFFF).to_bytes(4, "big") +
                  (buffer & (1 << 64) - 1).to_bytes(8, "big"))
    fill = [o.fill(at, descriptor)] if at < o.MMIO_LIMIT else []  # past that: not RAM anyway
    return fill + fw_cfg_start(r, at)


def fw_cfg_probe(r: Rng, p: Profile) -> list[Op]:
    """SeaBIOS's qemu_cfg_detect: select the signature, read "QEMU", select the ID, read
    its features; then the DMA register's "QEMU CFG" at odd widths and offsets."""
    ops = [o.port_out(2, FW_CFG_SELECTOR, 0x00), o.port_in(1, FW_CFG_DATA), o.repeat(3, 1),
           o.port_out(2, FW_CFG_SELECTOR, 0x01), o.port_in(1, FW_CFG_DATA), o.repeat(3, 1)]
    for _ in range(r.randrange(4)):
        width = r.choice((1, 2, 4))
        ops.append(o.port_in(width, FW_CFG_DMA_HIGH + r.randrange(9 - width)))
    if r.random() < 0.3:  # widths the selector and data ports do not take
        ops += [o.port_out(r.choice((1, 4)), FW_CFG_SELECTOR, value(r, 4)),
                o.port_out(1, FW_CFG_DATA, value(r, 1)),
                o.port_in(r.choice((2, 4)), FW_CFG_SELECTOR)]
    return ops


def fw_cfg_read(r: Rng, p: Profile) -> list[Op]:
    """Select an item and read it through the data port, a few bytes or past its end."""
    ops = [o.port_out(2, FW_CFG_SELECTOR, _fw_cfg_key(r)), o.port_in(1, FW_CFG_DATA)]
    count = r.choice((1, 3, 7, 63, 255)) if r.random() < 0.95 else 4095
    return ops + [o.repeat(count, 1)] if count > 1 else ops


def fw_cfg_directory(r: Rng, p: Profile) -> list[Op]:
    """qemu_romfile_init: the file count, then each 64-byte FWCfgFile, through the port or
    by DMA (a select-read of the count, then plain reads that continue the item); then
    a file read as qemu_cfg_read_entry does it."""
    files = len(FW_CFG_FILES) + r.choice((0, 0, 1, -2))
    if r.random() < 0.4:
        return [o.port_out(2, FW_CFG_SELECTOR, 0x19), o.port_in(1, FW_CFG_DATA),
                o.repeat(3 + 64 * files, 1)] + fw_cfg_read(r, p)
    at = address(r, p, 16) & ~0xF
    buffer = address(r, p, 4 + 64 * files)
    ops = fw_cfg_transfer(r, at, DMA_SELECT | DMA_READ | 0x19 << 16, 4, buffer)
    for index in range(files):
        ops += fw_cfg_transfer(r, at, DMA_READ, 64, buffer + 4 + 64 * index)
    key = 0x20 + r.randrange(len(FW_CFG_FILES) + 1)
    return ops + fw_cfg_transfer(r, at, DMA_SELECT | DMA_READ | key << 16, _fw_cfg_length(r),
                                 _fw_cfg_buffer(r, p, 0x1000, at))


def fw_cfg_dma(r: Rng, p: Profile) -> list[Op]:
    """Any transfer: select (or not), read, skip, write or several bits at once (the read
    wins), the error bit or reserved bits set by the guest; lengths 0, huge and 2^32-1;
    descriptors and buffers at RAM edges, over each other, outside RAM."""
    at = _fw_cfg_descriptor_at(r, p)
    mode = r.choice((DMA_READ, DMA_READ, DMA_SKIP, DMA_WRITE, DMA_READ | DMA_SKIP,
                     DMA_READ | DMA_WRITE, DMA_SKIP | DMA_WRITE, DMA_READ | DMA_SKIP | DMA_WRITE,
                     0, DMA_ERROR | DMA_READ, DMA_ERROR))
    control = mode | (DMA_SELECT | _fw_cfg_key(r) << 16 if r.random() < 0.7 else 0)
    if r.random() < 0.1:
        control |= value(r, 4) & 0xFFE0  # reserved bits
    length = _fw_cfg_length(r)
    ops = fw_cfg_transfer(r, at, control, length, _fw_cfg_buffer(r, p, length, at))
    if r.random() < 0.2:  # run the descriptor again: its control word is the status now
        ops += fw_cfg_start(r, at)
    if r.random() < 0.3:  # the port interface carries on from the offset DMA left
        ops += [o.port_in(1, FW_CFG_DATA), o.repeat(r.choice((2, 64)), 1)]
    return ops


def fw_cfg_write(r: Rng, p: Profile) -> list[Op]:
    """qemu_cfg_write_entry: a select-write from a guest buffer into the writable file (or
    a read-only item), after a skip to an offset; lengths that fit, overrun, or are 0."""
    key = FW_CFG_WRITABLE_KEY if r.random() < 0.7 else _fw_cfg_key(r)
    size = FW_CFG_WRITABLE_SIZE
    skip = r.choice((0, 0, 1, 8, size - 1, size, size + 1))
    length = r.choice((1, 4, 8, size - skip, size - skip + 1, 0, 0xFFFFFFFF))
    buffer = address(r, p, max(1, min(length, size)))
    at = address(r, p, 16)
    ops = [o.fill(buffer, r.randbytes(min(max(length, 1), size)))]
    if skip:
        ops += fw_cfg_transfer(r, at, DMA_SELECT | DMA_SKIP | key << 16, skip, 0)
        ops += fw_cfg_transfer(r, at, DMA_WRITE, length, buffer)
    else:
        ops += fw_cfg_transfer(r, at, DMA_SELECT | DMA_WRITE | key << 16, length, buffer)
    return ops + [o.port_out(2, FW_CFG_SELECTOR, key), o.port_in(1, FW_CFG_DATA),
                  o.repeat(size, 1)]


def fw_cfg_split_address(r: Rng, p: Profile) -> list[Op]:
    """The DMA address register written in odd ways: only the high half, halves in the wrong
    order, 16-bit or byte writes (ignored), a low half that starts from a stale high half."""
    at = address(r, p, 16)
    ops = [o.fill(at, r.choice((DMA_SELECT | DMA_READ | 0x19 << 16, DMA_SKIP, value(r, 4)))
                  .to_bytes(4, "big") + _fw_cfg_length(r).to_bytes(4, "big") +
                  address(r, p, 64).to_bytes(8, "big"))]
    for _ in range(1 + r.randrange(3)):
        width = r.choice((1, 2, 4, 4))
        port = r.choice((FW_CFG_DMA_HIGH, FW_CFG_DMA_LOW, FW_CFG_DMA_HIGH + 2,
                         FW_CFG_DMA_LOW + 2, FW_CFG_DMA_HIGH + r.randrange(8)))
        number = r.choice((at, value(r, 4)))
        ops.append(o.port_out(width, port, _be32(number) & ((1 << 8 * width) - 1)))
    return ops


# -- firmware memory: the i440FX PAM registers and the shadow window ------------------------

PAM_REGISTERS = range(0x59, 0x60)  # PAM0-PAM6 of the host bridge, 00:00.0
PAM_VALUES = (0x00, 0x11, 0x22, 0x33, 0x30, 0x10, 0x03, 0x01, 0x13, 0x31)


def pam_program(r: Rng, p: Profile) -> list[Op]:
    """SeaBIOS's make_bios_writable / make_bios_readonly: PAM registers set (byte, word or
    dword cycles), then accesses through the shadow window that they steer."""
    register = r.choice(PAM_REGISTERS)
    width = r.choice((1, 1, 2, 4))
    setting = (r.choice(PAM_VALUES) * 0x01010101 if r.random() < 0.8 else value(r, 4)) \
        & ((1 << 8 * width) - 1)
    ops = pci_access(0, 0, register & ~(width - 1), width, setting)
    for _ in range(1 + r.randrange(4)):
        size = r.choice((1, 2, 4, 8))
        addr = r.choice((0xC0000, 0xE0000, 0xF0000, 0xFFFF0, 0x100000 - size + r.randrange(2)))
        addr += r.randrange(0x4000) if addr < 0xF0000 and r.random() < 0.5 else 0
        ops.append(o.mmio_read(size, addr) if r.random() < 0.5 else
                   o.mmio_write(size, addr, value(r, size)))
    return ops
