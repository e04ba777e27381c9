"""Linux x86 boot protocol loader: bzImage, setup header 2.12+, the 64-bit entry point.

See the kernel's Documentation/arch/x86/boot.rst. pyhvm skips the 16-bit setup code and
enters the protected-mode kernel's `startup_64` (load address + 0x200) in long mode, as the
"64-bit boot protocol" section describes: the loader fills `struct boot_params` (the zero
page) itself, and the machine builds identity page tables and a GDT with the selectors that
entry expects (CS 0x10, DS 0x18) and passes the zero page in RSI.

Guest-physical layout (everything the kernel must find is below 4 GiB, identity-mapped):

    0x00000-0x0FFFF  untouched (real-mode IVT and BIOS data area on a PC)
    0x10000-0x10FFF  zero page (struct boot_params)
    0x11000-0x1FFFF  kernel command line, NUL-terminated
    0x20000-0x27FFF  identity page tables and GDT, built by the machine (`page_table_base`)
    0x9FC00-0xFFFFF  EBDA, VGA hole and BIOS area (e820 reserved; never written)
    load address     the protected-mode kernel: `pref_address` for a relocatable kernel when
                     it fits, else 1 MiB; it needs `init_size` bytes from its run address
    top of low RAM   the initrd, page aligned, below `initrd_addr_max` and 4 GiB

Every header field is checked against the file and against RAM before anything is written;
a bad image raises `BootImageError` with a one-line message naming the problem.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..memory import GuestMemory, PAGE_SIZE
from .image import BootEntry, BootImageError, HIGH_MEMORY, e820_map

ZERO_PAGE_ADDR = 0x10000
CMDLINE_ADDR = 0x11000
CMDLINE_AREA_END = 0x20000
PAGE_TABLE_BASE = 0x20000
LOW_AREA_END = 0x28000       # page tables (6 pages for a 4 GiB map) + GDT page, rounded up
IDENTITY_MAP_END = 4 << 30   # what the machine's boot page tables map

# Setup header fields (boot.rst, "THE REAL-MODE KERNEL HEADER"): offsets in the image and
# in boot_params alike, since boot_params.hdr sits at 0x1F1.
SETUP_SECTS = 0x1F1
SYSSIZE = 0x1F4
VID_MODE = 0x1FA
BOOT_FLAG = 0x1FE
JUMP = 0x200
HEADER = 0x202
VERSION = 0x206
TYPE_OF_LOADER = 0x210
LOADFLAGS = 0x211
CODE32_START = 0x214
RAMDISK_IMAGE = 0x218
RAMDISK_SIZE = 0x21C
HEAP_END_PTR = 0x224
CMD_LINE_PTR = 0x228
INITRD_ADDR_MAX = 0x22C
KERNEL_ALIGNMENT = 0x230
RELOCATABLE_KERNEL = 0x234
XLOADFLAGS = 0x236
CMDLINE_SIZE = 0x238
SETUP_DATA = 0x250
PREF_ADDRESS = 0x258
INIT_SIZE = 0x260
HEADER_2_12_END = 0x260 + 4 + 4   # init_size and handover_offset: the 2.12 header's end

# boot_params fields outside the setup header (arch/x86/include/uapi/asm/bootparam.h).
EXT_RAMDISK_IMAGE = 0x0C0
EXT_RAMDISK_SIZE = 0x0C4
EXT_CMD_LINE_PTR = 0x0C8
ALT_MEM_K = 0x1E0
E820_ENTRIES = 0x1E8
HDR_AREA_END = 0x290              # boot_params.hdr is followed by edd_mbr_sig_buffer
E820_TABLE = 0x2D0
E820_MAX_ENTRIES = 128

BOOT_FLAG_MAGIC = 0xAA55
HEADER_MAGIC = b"HdrS"
MIN_VERSION = 0x0206
XLOADFLAGS_VERSION = 0x020C       # xloadflags (and so XLF_KERNEL_64) appeared in 2.12
LOADED_HIGH = 1 << 0
CAN_USE_HEAP = 1 << 7
XLF_KERNEL_64 = 1 << 0
LOADER_UNDEFINED = 0xFF           # type_of_loader: a boot loader with no assigned ID
VID_MODE_NORMAL = 0xFFFF
HEAP_END = 0xFE00                 # customary; only the (skipped) setup code uses it
ENTRY_64_OFFSET = 0x200           # startup_64 is 512 bytes into the protected-mode kernel
DEFAULT_INITRD_ADDR_MAX = 0x37FFFFFF  # boot.rst: what a header with the field zero means
MAX_ALIGNMENT = 1 << 30


@dataclass(frozen=True)
class SetupHeader:
    """The setup header fields the loader acts on, read from a bzImage."""

    setup_size: int               # bytes of boot sector + setup code before the kernel
    header_end: int               # image offset just past the setup header
    version: int
    syssize: int
    initrd_addr_max: int
    kernel_alignment: int
    relocatable: bool
    xloadflags: int
    cmdline_size: int
    pref_address: int
    init_size: int


def _u8(image: bytes, offset: int) -> int:
    return image[offset]


def _u16(image: bytes, offset: int) -> int:
    return int(struct.unpack_from("<H", image, offset)[0])


def _u32(image: bytes, offset: int) -> int:
    return int(struct.unpack_from("<I", image, offset)[0])


def _u64(image: bytes, offset: int) -> int:
    return int(struct.unpack_from("<Q", image, offset)[0])


def parse_setup_header(image: bytes) -> SetupHeader:
    """Read and check the setup header of a bzImage; BootImageError names what is wrong."""
    if len(image) < 0x400:
        raise BootImageError(f"Linux image is {len(image)} bytes, too short for a setup header")
    if image[HEADER:HEADER + 4] != HEADER_MAGIC:
        raise BootImageError("not a Linux bzImage (no \"HdrS\" setup header at 0x202)")
    if _u16(image, BOOT_FLAG) != BOOT_FLAG_MAGIC:
        raise BootImageError(f"Linux boot sector flag is {_u16(image, BOOT_FLAG):#06x}, "
                             "not 0xaa55")
    version = _u16(image, VERSION)
    if version < MIN_VERSION:
        raise BootImageError(f"Linux boot protocol {version >> 8}.{version & 0xFF:02d} is "
                             "too old (pyhvm needs 2.06 or later)")
    # The header ends where the jump at 0x200 lands (boot.rst, "jump" field).
    header_end = HEADER + _u8(image, JUMP + 1)
    if version >= XLOADFLAGS_VERSION and header_end < HEADER_2_12_END:
        raise BootImageError(f"Linux setup header ends at {header_end:#x}, before the fields "
                             f"its protocol version {version >> 8}.{version & 0xFF:02d} has")
    if not _u8(image, LOADFLAGS) & LOADED_HIGH:
        raise BootImageError("Linux kernel is a zImage (not LOADED_HIGH); pyhvm loads "
                             "bzImages only")
    xloadflags = _u16(image, XLOADFLAGS) if version >= XLOADFLAGS_VERSION else 0
    if not xloadflags & XLF_KERNEL_64:
        raise BootImageError("Linux kernel has no 64-bit entry point (XLF_KERNEL_64 unset, "
                             "or boot protocol older than 2.12); pyhvm enters in long mode")
    setup_sects = _u8(image, SETUP_SECTS) or 4   # boot.rst: 0 means 4
    setup_size = (setup_sects + 1) * 512
    if setup_size >= len(image):
        raise BootImageError(f"Linux image is truncated: {setup_sects} setup sectors, but "
                             f"the file is only {len(image)} bytes")
    return SetupHeader(
        setup_size=setup_size,
        header_end=min(header_end, HDR_AREA_END),
        version=version,
        syssize=_u32(image, SYSSIZE),
        initrd_addr_max=_u32(image, INITRD_ADDR_MAX) or DEFAULT_INITRD_ADDR_MAX,
        kernel_alignment=_u32(image, KERNEL_ALIGNMENT),
        relocatable=bool(_u8(image, RELOCATABLE_KERNEL)),
        xloadflags=xloadflags,
        cmdline_size=_u32(image, CMDLINE_SIZE),
        pref_address=_u64(image, PREF_ADDRESS),
        init_size=_u32(image, INIT_SIZE),
    )


def _align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) & ~(alignment - 1)


def _fits(memory: GuestMemory, start: int, end: int) -> bool:
    """[start, end) is RAM and identity-mapped at entry."""
    return end <= IDENTITY_MAP_END and memory.contains(start, end - start)


def place_kernel(memory: GuestMemory, hdr: SetupHeader, kernel_size: int) -> tuple[int, int]:
    """(load address, end of everything the kernel needs before it reads the e820 map)."""

    def span(load: int, run: int) -> int:
        # The file occupies [load, load+size); decompression needs [run, run+init_size).
        return max(load + kernel_size, run + hdr.init_size)

    if hdr.relocatable:
        align = hdr.kernel_alignment
        if align < PAGE_SIZE or align > MAX_ALIGNMENT or align & (align - 1):
            raise BootImageError(f"Linux kernel_alignment {align:#x} is not a power of two "
                                 "between 4 KiB and 1 GiB")
        candidates = [_align_up(max(hdr.pref_address, HIGH_MEMORY), align),
                      _align_up(HIGH_MEMORY, align)]
        for load in candidates:
            end = span(load, load)
            if _fits(memory, load, end):
                return load, end
        load = candidates[-1]
        end = span(load, load)
    else:
        # A non-relocatable kernel moves itself to pref_address (boot.rst, 2.10 fields).
        if hdr.pref_address < HIGH_MEMORY:
            raise BootImageError(f"Linux kernel is not relocatable and its pref_address "
                                 f"{hdr.pref_address:#x} is below 1 MiB")
        load = HIGH_MEMORY
        end = span(load, hdr.pref_address)
        if _fits(memory, load, end):
            return load, end
    raise BootImageError(f"Linux kernel needs RAM up to {end:#x} ({kernel_size} bytes, "
                         f"init_size {hdr.init_size:#x}) but guest RAM is "
                         f"{memory.size >> 20} MiB; give more memory with -m")


def place_initrd(memory: GuestMemory, hdr: SetupHeader, size: int, kernel_end: int) -> int:
    """Page-aligned address at the top of low RAM, below initrd_addr_max and the kernel's."""
    low_ram_end = memory.regions[0].end
    limit = min(hdr.initrd_addr_max + 1, low_ram_end, IDENTITY_MAP_END)
    start = (limit - size) & ~(PAGE_SIZE - 1)
    if start < kernel_end or not _fits(memory, start, start + size):
        raise BootImageError(f"initrd ({size} bytes) does not fit between the kernel's end "
                             f"{kernel_end:#x} and {limit:#x}; give more memory with -m")
    return start


def encode_cmdline(cmdline: str, hdr: SetupHeader) -> bytes:
    """The command line with its NUL, or BootImageError if the kernel cannot take it."""
    encoded = cmdline.encode()
    limit = min(hdr.cmdline_size, CMDLINE_AREA_END - CMDLINE_ADDR - 1)
    if len(encoded) > limit:
        raise BootImageError(f"kernel command line is {len(encoded)} bytes; this kernel "
                             f"takes at most {limit}")
    if b"\0" in encoded:
        raise BootImageError("kernel command line contains a NUL byte")
    return encoded + b"\0"


def build_zero_page(image: bytes, hdr: SetupHeader, memory: GuestMemory, *, load: int,
                    cmdline_addr: int, initrd_addr: int, initrd_size: int) -> bytes:
    """struct boot_params as the 16-bit setup code would have left it for startup_64."""
    page = bytearray(PAGE_SIZE)
    page[SETUP_SECTS:hdr.header_end] = image[SETUP_SECTS:hdr.header_end]
    struct.pack_into("<H", page, VID_MODE, VID_MODE_NORMAL)
    page[TYPE_OF_LOADER] = LOADER_UNDEFINED
    page[LOADFLAGS] |= CAN_USE_HEAP
    struct.pack_into("<I", page, CODE32_START, load)
    struct.pack_into("<II", page, RAMDISK_IMAGE, initrd_addr, initrd_size)
    struct.pack_into("<H", page, HEAP_END_PTR, HEAP_END)
    struct.pack_into("<I", page, CMD_LINE_PTR, cmdline_addr)
    struct.pack_into("<Q", page, SETUP_DATA, 0)    # no setup_data chain: never trust the file's
    struct.pack_into("<III", page, EXT_RAMDISK_IMAGE, 0, 0, 0)   # everything is below 4 GiB
    first = memory.regions[0]
    struct.pack_into("<I", page, ALT_MEM_K, max(first.end - HIGH_MEMORY, 0) // 1024)
    entries = e820_map(memory)[:E820_MAX_ENTRIES]
    page[E820_ENTRIES] = len(entries)
    for index, (addr, length, kind) in enumerate(entries):
        struct.pack_into("<QQI", page, E820_TABLE + 20 * index, addr, length, kind)
    return bytes(page)


def load_linux(memory: GuestMemory, image: bytes, cmdline: str = "",
               initrd: bytes | None = None) -> BootEntry:
    """Load a bzImage (and initrd) into `memory`; returns the 64-bit entry, RSI = zero page."""
    hdr = parse_setup_header(image)
    kernel = memoryview(image)[hdr.setup_size:]
    if hdr.syssize and len(kernel) < hdr.syssize * 16:
        raise BootImageError(f"Linux image is truncated: the header says the kernel is "
                             f"{hdr.syssize * 16} bytes, the file holds {len(kernel)}")
    if not memory.contains(0, LOW_AREA_END):
        raise BootImageError(f"guest RAM is too small for the boot structures below "
                             f"{LOW_AREA_END:#x}")
    encoded_cmdline = encode_cmdline(cmdline, hdr)
    load, kernel_end = place_kernel(memory, hdr, len(kernel))
    initrd_addr = initrd_size = 0
    if initrd:
        initrd_size = len(initrd)
        initrd_addr = place_initrd(memory, hdr, initrd_size, kernel_end)
    zero_page = build_zero_page(image, hdr, memory, load=load, cmdline_addr=CMDLINE_ADDR,
                                initrd_addr=initrd_addr, initrd_size=initrd_size)

    # Every check has passed: only now touch guest memory.
    memory.write(ZERO_PAGE_ADDR, zero_page)
    memory.fill(CMDLINE_ADDR, CMDLINE_AREA_END - CMDLINE_ADDR)
    memory.write(CMDLINE_ADDR, encoded_cmdline)
    memory.write(load, kernel)
    if initrd:
        memory.write(initrd_addr, initrd)
    return BootEntry("long64", load + ENTRY_64_OFFSET, {"rsi": ZERO_PAGE_ADDR},
                     page_table_base=PAGE_TABLE_BASE)
