"""Multiboot 1 loader (ELF32 kernels, and the a.out kludge), per the Multiboot 0.6.96 spec.

The loader only touches guest memory through `GuestMemory`, checks every header field it
uses against the file and against RAM, and refuses a bad image with a `BootImageError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..memory import GuestMemory
from .image import BootEntry, BootImageError, HIGH_MEMORY, LOW_MEMORY_TOP, e820_map

HEADER_MAGIC = 0x1BADB002
BOOTLOADER_MAGIC = 0x2BADB002
HEADER_SEARCH = 8192
FLAG_PAGE_ALIGN = 1 << 0
FLAG_MEMORY_INFO = 1 << 1
FLAG_VIDEO_MODE = 1 << 2
FLAG_AOUT_KLUDGE = 1 << 16
SUPPORTED_FLAGS = FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO | FLAG_VIDEO_MODE | FLAG_AOUT_KLUDGE

INFO_MEMORY = 1 << 0
INFO_CMDLINE = 1 << 2
INFO_MODS = 1 << 3
INFO_MMAP = 1 << 6
INFO_LOADER_NAME = 1 << 9

# Where the loader puts its structures: conventional memory below the kernel at 1 MiB.
INFO_ADDR = 0x7000
MMAP_ADDR = 0x7400
LOADER_NAME_ADDR = 0x7F00
CMDLINE_ADDR = 0x8000
CMDLINE_MAX = 0x1000
MODULES_ADDR = 0x9000      # module descriptors (16 bytes each) then their strings
MODULES_AREA_END = 0x10000
LOW_RESERVED_END = 0x10000  # kernels may not load over the structures above

PT_LOAD = 1
EM_386 = 3
MAX_SEGMENTS = 64


@dataclass(frozen=True)
class Segment:
    paddr: int
    file_offset: int
    filesz: int
    memsz: int


def find_header(image: bytes) -> tuple[int, int]:
    """(offset, flags) of the Multiboot header, or BootImageError."""
    limit = min(len(image), HEADER_SEARCH) - 12
    for offset in range(0, limit + 1, 4):
        magic, flags, checksum = struct.unpack_from("<III", image, offset)
        if magic == HEADER_MAGIC and (magic + flags + checksum) & 0xFFFFFFFF == 0:
            return offset, flags
    raise BootImageError("no Multiboot header (magic 0x1BADB002 with a valid checksum) "
                         "in the first 8 KiB")


def elf_segments(image: bytes) -> tuple[int, list[Segment]]:
    """(entry, loadable segments) of an ELF32 i386 image."""
    if len(image) < 52 or image[:4] != b"\x7fELF":
        raise BootImageError("not an ELF file and no a.out kludge in the Multiboot header")
    if image[4] != 1 or image[5] != 1:
        raise BootImageError("not a little-endian ELF32 file (Multiboot 1 takes ELF32 only)")
    (e_type, e_machine, _version, e_entry, e_phoff, _shoff, _flags, _ehsize, e_phentsize,
     e_phnum) = struct.unpack_from("<HHIIIIIHHH", image, 16)
    if e_machine != EM_386:
        raise BootImageError(f"ELF machine {e_machine} is not i386")
    if e_phnum == 0 or e_phnum > MAX_SEGMENTS or e_phentsize < 32:
        raise BootImageError(f"ELF has an unusable program header table ({e_phnum} entries)")
    if e_phoff + e_phnum * e_phentsize > len(image):
        raise BootImageError("ELF program headers run past the end of the file (truncated?)")
    segments = []
    for i in range(e_phnum):
        p_type, p_offset, _vaddr, p_paddr, p_filesz, p_memsz = struct.unpack_from(
            "<IIIIII", image, e_phoff + i * e_phentsize)
        if p_type != PT_LOAD or p_memsz == 0:
            continue
        if p_filesz > p_memsz:
            raise BootImageError(f"ELF segment {i} has filesz > memsz")
        if p_offset + p_filesz > len(image):
            raise BootImageError(f"ELF segment {i} runs past the end of the file (truncated?)")
        segments.append(Segment(p_paddr, p_offset, p_filesz, p_memsz))
    if not segments:
        raise BootImageError("ELF has no loadable segment")
    return e_entry, segments


def aout_segments(image: bytes, header_offset: int) -> tuple[int, list[Segment]]:
    """(entry, segments) from the address fields of the header (flag 16)."""
    if header_offset + 32 > len(image):
        raise BootImageError("Multiboot header truncated")
    header_addr, load_addr, load_end, bss_end, entry = struct.unpack_from(
        "<IIIII", image, header_offset + 12)
    if load_addr > header_addr or header_addr - load_addr > header_offset:
        raise BootImageError("Multiboot header_addr/load_addr are inconsistent")
    file_offset = header_offset - (header_addr - load_addr)
    end = load_end if load_end else load_addr + (len(image) - file_offset)
    if end < load_addr or file_offset + (end - load_addr) > len(image):
        raise BootImageError("Multiboot load_end_addr runs past the end of the file")
    memsz = max(bss_end, end) - load_addr if bss_end else end - load_addr
    return entry, [Segment(load_addr, file_offset, end - load_addr, memsz)]


def _check_placement(segments: list[Segment], memory: GuestMemory) -> None:
    ordered = sorted(segments, key=lambda seg: seg.paddr)
    for seg in ordered:
        if seg.paddr < LOW_RESERVED_END:
            raise BootImageError(f"segment at {seg.paddr:#x} overlaps the loader's low "
                                 f"memory (kernels load at or above {LOW_RESERVED_END:#x})")
        if not memory.contains(seg.paddr, seg.memsz):
            raise BootImageError(f"segment {seg.paddr:#x}+{seg.memsz:#x} is outside guest RAM "
                                 f"({memory.size >> 20} MiB); give more memory with -m")
        if seg.paddr < HIGH_MEMORY and seg.paddr + seg.memsz > LOW_MEMORY_TOP:
            raise BootImageError(f"segment {seg.paddr:#x}+{seg.memsz:#x} overlaps the EBDA/VGA/"
                                 f"BIOS area {LOW_MEMORY_TOP:#x}-{HIGH_MEMORY:#x} (e820 reserved)")
    for before, after in zip(ordered, ordered[1:]):
        if before.paddr + before.memsz > after.paddr:
            raise BootImageError(f"segments at {before.paddr:#x} and {after.paddr:#x} overlap")


def load_multiboot(memory: GuestMemory, image: bytes, cmdline: str = "",
                   modules: list[tuple[bytes, str]] | None = None,
                   loader_name: str = "pyhvm") -> BootEntry:
    """Load `image`; returns the 32-bit protected-mode entry with EAX/EBX per the spec."""
    header_offset, flags = find_header(image)
    unsupported = flags & 0xFFFF & ~SUPPORTED_FLAGS
    if unsupported:
        raise BootImageError(f"Multiboot header asks for unsupported features {unsupported:#x}")
    if flags & FLAG_AOUT_KLUDGE:
        entry, segments = aout_segments(image, header_offset)
    else:
        entry, segments = elf_segments(image)
    _check_placement(segments, memory)
    if not any(seg.paddr <= entry < seg.paddr + seg.memsz for seg in segments):
        raise BootImageError(f"entry point {entry:#x} is not inside a loaded segment")
    for seg in segments:
        memory.write(seg.paddr, image[seg.file_offset:seg.file_offset + seg.filesz])
        memory.fill(seg.paddr + seg.filesz, seg.memsz - seg.filesz)
    kernel_end = max(seg.paddr + seg.memsz for seg in segments)

    memory.fill(INFO_ADDR, MODULES_AREA_END - INFO_ADDR)
    info_flags = INFO_MEMORY | INFO_MMAP | INFO_LOADER_NAME
    encoded = cmdline.encode()
    if len(encoded) >= CMDLINE_MAX or b"\0" in encoded:
        raise BootImageError(f"command line too long ({len(encoded)} bytes, at most "
                             f"{CMDLINE_MAX - 1}) or contains a NUL")
    memory.write(CMDLINE_ADDR, encoded + b"\0")
    info_flags |= INFO_CMDLINE
    memory.write(LOADER_NAME_ADDR, loader_name.encode()[:200] + b"\0")

    mods_count = _load_modules(memory, modules or [], kernel_end)
    if modules:
        info_flags |= INFO_MODS

    mmap = e820_map(memory)
    mmap_bytes = b"".join(struct.pack("<IQQI", 20, addr, length, kind)
                          for addr, length, kind in mmap)
    memory.write(MMAP_ADDR, mmap_bytes)
    first = memory.regions[0]
    mem_upper = (first.end - HIGH_MEMORY) // 1024 if first.end > HIGH_MEMORY else 0

    info = struct.pack(
        "<IIIIIIIII", info_flags, LOW_MEMORY_TOP // 1024, mem_upper, 0xFFFFFFFF,
        CMDLINE_ADDR, mods_count, MODULES_ADDR, 0, 0)
    info += b"\0" * 8  # syms (a.out/ELF section info) unused
    info += struct.pack("<II", len(mmap_bytes), MMAP_ADDR)
    # drives_length, drives_addr, config_table, then boot_loader_name at offset 64.
    info += struct.pack("<IIII", 0, 0, 0, LOADER_NAME_ADDR)
    memory.write(INFO_ADDR, info)
    return BootEntry("protected32", entry, {"rax": BOOTLOADER_MAGIC, "rbx": INFO_ADDR})


def _load_modules(memory: GuestMemory, modules: list[tuple[bytes, str]],
                  kernel_end: int) -> int:
    """Place each module page-aligned after the kernel; descriptors at MODULES_ADDR."""
    string_addr = MODULES_ADDR + 16 * len(modules)
    next_addr = (kernel_end + 0xFFF) & ~0xFFF
    for index, (data, name) in enumerate(modules):
        if next_addr < HIGH_MEMORY and next_addr + len(data) > LOW_MEMORY_TOP:
            next_addr = HIGH_MEMORY  # skip the e820-reserved hole below 1 MiB
        name_bytes = name.encode()[:255] + b"\0"
        if string_addr + len(name_bytes) > MODULES_AREA_END:
            raise BootImageError("too many modules or module names too long")
        if not memory.contains(next_addr, max(len(data), 1)):
            raise BootImageError(f"module {name!r} ({len(data)} bytes) does not fit in guest "
                                 "RAM after the kernel; give more memory with -m")
        memory.write(next_addr, data)
        memory.write(string_addr, name_bytes)
        memory.write(MODULES_ADDR + 16 * index,
                     struct.pack("<IIII", next_addr, next_addr + len(data), string_addr, 0))
        string_addr += len(name_bytes)
        next_addr = (next_addr + len(data) + 0xFFF) & ~0xFFF
    return len(modules)
