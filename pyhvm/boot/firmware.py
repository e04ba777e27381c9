"""Firmware images: the BIOS ROM file, and a kernel handed to the firmware through fw_cfg.

A system ROM (SeaBIOS's bios.bin) is mapped with its end at 4 GiB, so its reset vector
sits at 0xFFFFFFF0; its last 128 KiB also appear at 0xE0000-0xFFFFF (the ISA BIOS window,
under the i440FX PAM registers). `load_rom` checks the file the way a user needs to hear:
missing, empty, too big, or not whole 64 KiB blocks, each a one-line `FirmwareError`.

With firmware running, `--kernel` is not loaded by pyhvm: as QEMU does, the kernel, its
command line and initrd go into fw_cfg items and an option ROM (QEMU's linuxboot_dma.bin)
that SeaBIOS runs reads them and starts the kernel. `linux_fw_cfg_items` prepares those items
for a bzImage (Linux boot protocol 2.06 and later, documentation/arch/x86/boot.rst).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from .image import BootImageError, read_file
from .linux import (CMD_LINE_PTR, DEFAULT_INITRD_ADDR_MAX, HEAP_END_PTR, LOADFLAGS,
                    RAMDISK_IMAGE, TYPE_OF_LOADER, parse_setup_header)

KiB = 1 << 10
MiB = 1 << 20
FOUR_GIB = 1 << 32
ROM_BLOCK = 64 * KiB  # QEMU refuses a BIOS that is not whole 64 KiB blocks
ROM_MAX = 16 * MiB  # the top 16 MiB below 4 GiB (0xFF000000-0xFFFFFFFF) is the flash window
ISA_BIOS_SIZE = 128 * KiB  # how much of the ROM's end also shows at 0xE0000-0xFFFFF
ISA_BIOS_END = 0x100000

DEFAULT_BIOS = "/usr/share/seabios/bios.bin"  # Debian package `seabios`
# QEMU's option ROMs that boot a kernel from fw_cfg (Debian package `qemu-system-data`).
OPTION_ROM_DIRS = ("/usr/share/qemu", "/usr/lib/qemu")
LINUXBOOT_ROM = "linuxboot_dma.bin"

# Where QEMU's x86 loader puts a protected-mode-capable (LOADED_HIGH) kernel's pieces.
LINUX_REAL_ADDR = 0x10000  # setup code (the real-mode part)
LINUX_CMDLINE_ADDR = 0x20000
LINUX_PROT_ADDR = 0x100000
LINUX_HEAP_END = LINUX_CMDLINE_ADDR - LINUX_REAL_ADDR - 0x200
LOADER_QEMU = 0xB0  # type_of_loader QEMU writes: 0xB (QEMU) << 4, version 0
LOADED_HIGH = 0x01
CAN_USE_HEAP = 0x80
ACPI_DATA_SIZE = 0x20000  # QEMU keeps the initrd below this much at the top of low RAM


class FirmwareError(BootImageError):
    """A firmware image (ROM, option ROM) cannot be used; the message says why."""


@dataclass(frozen=True)
class Rom:
    """A system ROM image, checked, with where it goes."""

    path: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def base(self) -> int:
        """Where it is mapped: ending at 4 GiB."""
        return FOUR_GIB - self.size

    @property
    def isa_window(self) -> bytes:
        """The part that also appears below 1 MiB (its last 128 KiB, or all if smaller)."""
        return self.data[-min(self.size, ISA_BIOS_SIZE):]

    @property
    def isa_base(self) -> int:
        return ISA_BIOS_END - len(self.isa_window)


def load_rom(path: str) -> Rom:
    """Read and check a system ROM file for `--bios`."""
    if not os.path.exists(path):
        raise FirmwareError(f"--bios {path!r} does not exist"
                            + (" (apt-get install seabios)" if path == DEFAULT_BIOS else ""))
    try:
        size = os.path.getsize(path)
    except OSError as err:
        raise FirmwareError(f"--bios {path!r}: {err.strerror}") from None
    if size > ROM_MAX:
        raise FirmwareError(f"--bios {path!r} is {size} bytes, more than the "
                            f"{ROM_MAX >> 20} MiB flash window below 4 GiB")
    data = read_file(path, "--bios", ROM_MAX)
    if not data:
        raise FirmwareError(f"--bios {path!r} is empty")
    if len(data) % ROM_BLOCK:
        raise FirmwareError(f"--bios {path!r} is {len(data)} bytes, not a multiple of 64 KiB "
                            "(a system ROM image fills whole 64 KiB blocks)")
    return Rom(path, data)


def find_option_rom(name: str) -> str | None:
    """Where QEMU's option ROM `name` is installed here, or None."""
    for directory in OPTION_ROM_DIRS:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    return None


@dataclass
class KernelItems:
    """fw_cfg items that let an option ROM boot a kernel: numbered keys and files."""

    keys: dict[int, bytes] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


def linux_fw_cfg_items(image: bytes, cmdline: str, initrd: bytes | None,
                       low_ram_size: int) -> KernelItems:
    """What QEMU gives linuxboot_dma.bin for a bzImage: the setup code with its header filled
    in (loader type, heap, command line and initrd addresses), the protected-mode kernel, the
    command line and the initrd, each with the address the option ROM copies it to."""
    from ..devices import fw_cfg as f

    header = parse_setup_header(image)
    if not image[LOADFLAGS] & LOADED_HIGH:
        raise BootImageError("Linux image is not a bzImage (LOADED_HIGH clear): too old")
    setup_size = header.setup_size
    setup = bytearray(image[:setup_size])
    kernel = image[setup_size:]
    encoded = cmdline.encode() + b"\0"
    if len(encoded) > header.cmdline_size + 1 and header.cmdline_size:
        raise BootImageError(f"kernel command line is {len(encoded) - 1} bytes; this kernel "
                             f"takes at most {header.cmdline_size}")
    setup[TYPE_OF_LOADER] = LOADER_QEMU
    struct.pack_into("<H", setup, HEAP_END_PTR, LINUX_HEAP_END)
    setup[LOADFLAGS] |= CAN_USE_HEAP
    struct.pack_into("<I", setup, CMD_LINE_PTR, LINUX_CMDLINE_ADDR)
    items = KernelItems()
    if initrd is not None:
        limit = header.initrd_addr_max or DEFAULT_INITRD_ADDR_MAX
        limit = min(limit, low_ram_size - ACPI_DATA_SIZE - 1)
        address = (limit - len(initrd)) & ~0xFFF
        if address < LINUX_PROT_ADDR + len(kernel):
            raise BootImageError(f"initrd ({len(initrd)} bytes) does not fit in RAM "
                                 "below the kernel's initrd limit; give the guest more -m")
        struct.pack_into("<II", setup, RAMDISK_IMAGE, address, len(initrd))
        items.keys.update({f.FW_CFG_INITRD_ADDR: struct.pack("<I", address),
                           f.FW_CFG_INITRD_SIZE: struct.pack("<I", len(initrd)),
                           f.FW_CFG_INITRD_DATA: initrd})
    items.keys.update({
        f.FW_CFG_SETUP_ADDR: struct.pack("<I", LINUX_REAL_ADDR),
        f.FW_CFG_SETUP_SIZE: struct.pack("<I", len(setup)),
        f.FW_CFG_SETUP_DATA: bytes(setup),
        f.FW_CFG_KERNEL_ADDR: struct.pack("<I", LINUX_PROT_ADDR),
        f.FW_CFG_KERNEL_SIZE: struct.pack("<I", len(kernel)),
        f.FW_CFG_KERNEL_DATA: kernel,
        f.FW_CFG_CMDLINE_ADDR: struct.pack("<I", LINUX_CMDLINE_ADDR),
        f.FW_CFG_CMDLINE_SIZE: struct.pack("<I", len(encoded)),
        f.FW_CFG_CMDLINE_DATA: encoded,
    })
    rom_path = find_option_rom(LINUXBOOT_ROM)
    if rom_path is None:
        raise FirmwareError(f"booting --kernel through firmware needs QEMU's {LINUXBOOT_ROM} "
                            "(apt-get install qemu-system-data), or drop --bios to boot the "
                            "kernel directly")
    items.files[f"genroms/{LINUXBOOT_ROM}"] = read_file(rom_path, "option ROM", ROM_MAX)
    return items


# QEMU's multiboot option ROM (pc-bios/optionrom/multiboot.S) and the layout QEMU's
# hw/i386/multiboot.c gives it: the ROM copies KERNEL_DATA to KERNEL_ADDR and the 88-byte
# Multiboot information (INITRD_DATA) to INITRD_ADDR, writes the BIOS's e820 map at 0x9000
# and the memory sizes into that information, and enters KERNEL_ENTRY in 32-bit protected
# mode with EAX = 0x2BADB002, EBX = the information. KERNEL_DATA is the kernel's image from
# its lowest to its highest loaded byte, page-aligned, then the module list, command lines
# and loader name, then each module, page-aligned.
MULTIBOOT_ROM = "multiboot_dma.bin"
MB_MMAP_ADDR = 0x9000
MB_INFO_ADDR = MB_MMAP_ADDR + 0x500
MB_INFO_SIZE = 88
MB_LOWEST_LOAD = 0x10000  # below this the ROM keeps its own data (0x9000-0x9558)
MB_INFO_FLAGS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 6) | (1 << 9)
MB_BOOT_DEVICE = 0x8000FFFF  # first BIOS disk, no partition (what QEMU passes)
MB_MODULE_ENTRY = 16
MB_LOADER_NAME = "pyhvm"
PAGE = 4096


def _page_align(value: int) -> int:
    return (value + PAGE - 1) & ~(PAGE - 1)


def multiboot_fw_cfg_items(image: bytes, kernel_name: str, cmdline: str,
                           modules: list[tuple[bytes, str]], low_ram_size: int) -> KernelItems:
    """fw_cfg items for QEMU's multiboot option ROM to load a Multiboot 1 kernel (ELF32 or
    the a.out kludge) and its modules; every address is checked against low RAM first."""
    from ..devices import fw_cfg as f
    from .multiboot import FLAG_AOUT_KLUDGE, aout_segments, elf_segments, find_header

    header_offset, flags = find_header(image)
    if flags & FLAG_AOUT_KLUDGE:
        entry, segments = aout_segments(image, header_offset)
    else:
        entry, segments = elf_segments(image)
    low = min(seg.paddr for seg in segments)
    high = max(seg.paddr + seg.memsz for seg in segments)
    if low < MB_LOWEST_LOAD:
        raise BootImageError(f"Multiboot kernel loads at {low:#x}, below {MB_LOWEST_LOAD:#x} "
                             "where the firmware's option ROM keeps its data")
    if not any(seg.paddr <= entry < seg.paddr + seg.memsz for seg in segments):
        raise BootImageError(f"entry point {entry:#x} is not inside a loaded segment")
    data = bytearray(_page_align(high - low))
    for seg in segments:
        start = seg.paddr - low
        data[start:start + seg.filesz] = image[seg.file_offset:seg.file_offset + seg.filesz]
    mod_list_at = len(data)
    kernel_line = f"{kernel_name} {cmdline}".encode() + b"\0"
    names = [name.encode() + b"\0" for _, name in modules]
    strings = b"".join(names) + kernel_line
    loader = MB_LOADER_NAME.encode() + b"\0"
    strings_at = mod_list_at + MB_MODULE_ENTRY * len(modules)
    data += bytes(MB_MODULE_ENTRY * len(modules)) + strings + loader
    data += bytes(_page_align(len(data)) - len(data))
    name_at = strings_at
    for index, (module, name) in enumerate(modules):
        start = len(data)
        data += module + bytes(_page_align(len(module)) - len(module))
        struct.pack_into("<IIII", data, mod_list_at + MB_MODULE_ENTRY * index, low + start,
                         low + start + len(module), low + name_at, 0)
        name_at += len(names[index])
    if low + len(data) > low_ram_size - ACPI_DATA_SIZE:
        raise BootImageError(f"Multiboot kernel and modules ({len(data)} bytes from {low:#x}) "
                             "do not fit in guest RAM; give more memory with -m")
    info = bytearray(MB_INFO_SIZE)
    struct.pack_into("<I", info, 0, MB_INFO_FLAGS)
    struct.pack_into("<IIII", info, 12, MB_BOOT_DEVICE, low + name_at, len(modules),
                     low + mod_list_at)
    struct.pack_into("<I", info, 48, MB_MMAP_ADDR)
    struct.pack_into("<I", info, 64, low + strings_at + len(strings))
    items = KernelItems()
    items.keys.update({
        f.FW_CFG_KERNEL_ENTRY: struct.pack("<I", entry),
        f.FW_CFG_KERNEL_ADDR: struct.pack("<I", low),
        f.FW_CFG_KERNEL_SIZE: struct.pack("<I", len(data)),
        f.FW_CFG_KERNEL_DATA: bytes(data),
        f.FW_CFG_INITRD_ADDR: struct.pack("<I", MB_INFO_ADDR),
        f.FW_CFG_INITRD_SIZE: struct.pack("<I", MB_INFO_SIZE),
        f.FW_CFG_INITRD_DATA: bytes(info),
    })
    rom_path = find_option_rom(MULTIBOOT_ROM)
    if rom_path is None:
        raise FirmwareError(f"booting a Multiboot --kernel through firmware needs QEMU's "
                            f"{MULTIBOOT_ROM} (apt-get install qemu-system-data), or drop "
                            "--bios to boot it directly")
    items.files[f"genroms/{MULTIBOOT_ROM}"] = read_file(rom_path, "option ROM", ROM_MAX)
    return items


def is_linux_image(image: bytes) -> bool:
    return len(image) > 0x206 and image[0x202:0x206] == b"HdrS"

