"""The Linux bzImage loader (Documentation/arch/x86/boot.rst), on images built here."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhvm.boot import linux
from pyhvm.boot.image import BootImageError, e820_map
from pyhvm.boot.loader import load_kernel
from pyhvm.memory import GuestMemory, MiB

ZP = linux.ZERO_PAGE_ADDR


def make_bzimage(*, setup_sects: int = 4, version: int = 0x020F, loadflags: int = 0x01,
                 xloadflags: int = 0x01, relocatable: int = 1, kernel_alignment: int = 0x200000,
                 pref_address: int = 0x1000000, init_size: int = 0x200000,
                 initrd_addr_max: int = 0x7FFFFFFF, cmdline_size: int = 2047,
                 kernel_size: int = 0x3000, header_end: int = 0x26C, syssize: int | None = None,
                 boot_flag: int = 0xAA55, magic: bytes = b"HdrS") -> bytes:
    """A bzImage-shaped file: boot sector + setup sectors with a header, then a kernel."""
    setup = bytearray((setup_sects or 4) * 512 + 512)
    setup[0x1F1] = setup_sects
    if syssize is None:
        syssize = (kernel_size + 15) // 16
    struct.pack_into("<I", setup, 0x1F4, syssize)
    struct.pack_into("<H", setup, 0x1FE, boot_flag)
    setup[0x200] = 0xEB
    setup[0x201] = header_end - 0x202
    setup[0x202:0x206] = magic
    struct.pack_into("<H", setup, 0x206, version)
    setup[0x211] = loadflags
    struct.pack_into("<I", setup, 0x214, 0x100000)
    struct.pack_into("<I", setup, 0x22C, initrd_addr_max)
    struct.pack_into("<I", setup, 0x230, kernel_alignment)
    setup[0x234] = relocatable
    struct.pack_into("<H", setup, 0x236, xloadflags)
    struct.pack_into("<I", setup, 0x238, cmdline_size)
    struct.pack_into("<Q", setup, 0x258, pref_address)
    struct.pack_into("<I", setup, 0x260, init_size)
    kernel = bytes((i * 7 + 3) & 0xFF for i in range(kernel_size))
    return bytes(setup) + kernel


@pytest.fixture
def memory() -> Iterator[GuestMemory]:
    mem = GuestMemory.with_size(64 * MiB)
    yield mem
    mem.close()


def cstring(memory: GuestMemory, addr: int, limit: int = 4096) -> bytes:
    data = memory.read(addr, limit)
    assert b"\0" in data
    return data[:data.index(b"\0")]


# -- what the zero page says (boot.rst "64-bit BOOT PROTOCOL", bootparam.h) --------------------
def test_entry_is_startup_64_with_zero_page_in_rsi(memory: GuestMemory) -> None:
    entry = linux.load_linux(memory, make_bzimage())
    assert entry.mode == "long64"
    assert entry.rip == 0x1000000 + 0x200        # relocatable: loaded at pref_address
    assert entry.registers == {"rsi": ZP}
    assert entry.page_table_base == linux.PAGE_TABLE_BASE


def test_protected_mode_kernel_is_loaded_at_the_load_address(memory: GuestMemory) -> None:
    image = make_bzimage(setup_sects=7)
    linux.load_linux(memory, image)
    kernel = image[8 * 512:]
    assert memory.read(0x1000000, len(kernel)) == kernel


def test_setup_sects_zero_means_four(memory: GuestMemory) -> None:
    image = make_bzimage(setup_sects=0)
    linux.load_linux(memory, image)
    assert memory.read(0x1000000, 16) == image[5 * 512:5 * 512 + 16]


def test_setup_header_is_copied_and_loader_fields_set(memory: GuestMemory) -> None:
    image = make_bzimage()
    linux.load_linux(memory, image)
    hdr = memory.read(ZP + 0x1F1, 0x26C - 0x1F1)
    assert hdr[:0x1FA - 0x1F1] == image[0x1F1:0x1FA]
    assert memory.read(ZP + 0x202, 4) == b"HdrS"
    assert memory.read_u16(ZP + 0x206) == 0x020F
    assert memory.read_u16(ZP + 0x1FA) == 0xFFFF            # vid_mode "normal"
    assert memory.read_u8(ZP + 0x210) == 0xFF               # type_of_loader: undefined
    assert memory.read_u8(ZP + 0x211) == 0x01 | 0x80        # LOADED_HIGH | CAN_USE_HEAP
    assert memory.read_u16(ZP + 0x224) == 0xFE00            # heap_end_ptr
    assert memory.read_u32(ZP + 0x214) == 0x1000000         # code32_start = load address
    assert memory.read_u8(ZP + 0x1EF) == 0                  # sentinel: we zeroed the page
    assert memory.read_u64(ZP + 0x250) == 0                 # no setup_data


def test_cmd_line_ptr_points_to_nul_terminated_cmdline(memory: GuestMemory) -> None:
    linux.load_linux(memory, make_bzimage(), "console=ttyS0 root=/dev/ram0")
    ptr = memory.read_u32(ZP + 0x228)
    assert ptr == linux.CMDLINE_ADDR
    assert memory.read_u32(ZP + 0x0C8) == 0                 # ext_cmd_line_ptr
    assert cstring(memory, ptr) == b"console=ttyS0 root=/dev/ram0"


def test_empty_cmdline_is_still_a_valid_pointer(memory: GuestMemory) -> None:
    linux.load_linux(memory, make_bzimage())
    assert cstring(memory, memory.read_u32(ZP + 0x228)) == b""


def test_e820_table_matches_e820_map(memory: GuestMemory) -> None:
    linux.load_linux(memory, make_bzimage())
    expected = e820_map(memory)
    assert memory.read_u8(ZP + 0x1E8) == len(expected)
    for i, entry in enumerate(expected):
        assert struct.unpack("<QQI", memory.read(ZP + 0x2D0 + 20 * i, 20)) == entry


def test_e820_covers_ram_above_4g() -> None:
    # 4 GiB of RAM: 3 GiB low + 1 GiB above the hole; mmap is lazy, so this is cheap.
    mem = GuestMemory.with_size(4 << 30)
    try:
        linux.load_linux(mem, make_bzimage())
        count = mem.read_u8(ZP + 0x1E8)
        last = struct.unpack("<QQI", mem.read(ZP + 0x2D0 + 20 * (count - 1), 20))
        assert last == (4 << 30, 1 << 30, 1)
    finally:
        mem.close()


def test_initrd_at_top_of_low_ram_page_aligned(memory: GuestMemory) -> None:
    initrd = bytes(range(256)) * 40 + b"tail"          # not a page multiple
    linux.load_linux(memory, make_bzimage(), initrd=initrd)
    addr, size = memory.read_u32(ZP + 0x218), memory.read_u32(ZP + 0x21C)
    assert size == len(initrd)
    assert addr % 4096 == 0
    assert addr + size <= 64 * MiB and addr + size > 64 * MiB - 4096
    assert memory.read(addr, size) == initrd
    assert memory.read_u32(ZP + 0x0C0) == 0 and memory.read_u32(ZP + 0x0C4) == 0


def test_initrd_stays_below_initrd_addr_max(memory: GuestMemory) -> None:
    initrd = b"x" * 5000
    linux.load_linux(memory, make_bzimage(initrd_addr_max=0x1FFFFFF), initrd=initrd)
    addr = memory.read_u32(ZP + 0x218)
    assert addr % 4096 == 0
    assert addr + len(initrd) - 1 <= 0x1FFFFFF
    assert addr >= 0x1FFFFFF + 1 - len(initrd) - 4096


def test_no_initrd_leaves_ramdisk_fields_zero(memory: GuestMemory) -> None:
    linux.load_linux(memory, make_bzimage())
    assert memory.read_u32(ZP + 0x218) == 0 and memory.read_u32(ZP + 0x21C) == 0


def test_initrd_between_kernel_and_limit_is_refused(memory: GuestMemory) -> None:
    # Kernel needs up to pref 16 MiB + 16 MiB init_size; the initrd must sit above 32 MiB.
    image = make_bzimage(init_size=16 * MiB, initrd_addr_max=33 * MiB - 1)
    with pytest.raises(BootImageError, match="initrd"):
        linux.load_linux(memory, image, initrd=b"y" * (2 * MiB))


def test_relocatable_kernel_falls_back_below_pref_address_when_ram_is_small() -> None:
    mem = GuestMemory.with_size(16 * MiB)
    try:
        entry = linux.load_linux(mem, make_bzimage(init_size=8 * MiB))
        assert entry.rip == 0x200000 + 0x200   # 1 MiB aligned up to kernel_alignment
    finally:
        mem.close()


def test_non_relocatable_kernel_loads_at_1mib(memory: GuestMemory) -> None:
    entry = linux.load_linux(memory, make_bzimage(relocatable=0))
    assert entry.rip == 0x100000 + 0x200


def test_loader_dispatches_hdrs_images_to_linux(memory: GuestMemory) -> None:
    entry = load_kernel(memory, make_bzimage(), "quiet", None, [])
    assert entry.mode == "long64"


def test_structures_stay_in_their_documented_areas(memory: GuestMemory) -> None:
    memory.fill(0, 2 * MiB, 0xAA)
    linux.load_linux(memory, make_bzimage(relocatable=0), "a=b")
    low = memory.read(0, 0x100000)
    touched = [i for i, b in enumerate(low) if b != 0xAA]
    assert touched and min(touched) >= ZP and max(touched) < linux.CMDLINE_AREA_END


# -- refusals ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"magic": b"HdrT"}, "HdrS"),
    ({"boot_flag": 0x1234}, "0xaa55"),
    ({"version": 0x0205}, "too old"),
    ({"version": 0x020B}, "XLF_KERNEL_64"),
    ({"xloadflags": 0x02}, "XLF_KERNEL_64"),
    ({"loadflags": 0x00}, "LOADED_HIGH"),
    ({"header_end": 0x240}, "setup header ends"),
    ({"kernel_alignment": 0x3000}, "kernel_alignment"),
    ({"relocatable": 0, "pref_address": 0x8000}, "pref_address"),
    ({"init_size": 0xF0000000}, "give more memory"),
    ({"kernel_size": 0x100, "syssize": 0x100}, "truncated"),
])
def test_bad_headers_are_refused(memory: GuestMemory, kwargs: dict[str, object],
                                 message: str) -> None:
    with pytest.raises(BootImageError, match=message):
        linux.load_linux(memory, make_bzimage(**kwargs))  # type: ignore[arg-type]


def test_setup_sects_past_end_of_file_is_truncated(memory: GuestMemory) -> None:
    image = make_bzimage(setup_sects=4)
    with pytest.raises(BootImageError, match="truncated"):
        linux.load_linux(memory, image[:5 * 512])
    short = bytearray(image)
    short[0x1F1] = 200
    with pytest.raises(BootImageError, match="truncated"):
        linux.load_linux(memory, bytes(short))


def test_tiny_file_is_refused(memory: GuestMemory) -> None:
    with pytest.raises(BootImageError, match="too short"):
        linux.load_linux(memory, b"MZ" + b"\0" * 100)


def test_cmdline_longer_than_cmdline_size_is_refused(memory: GuestMemory) -> None:
    image = make_bzimage(cmdline_size=16)
    linux.load_linux(memory, image, "x" * 16)
    with pytest.raises(BootImageError, match="at most 16"):
        linux.load_linux(memory, image, "x" * 17)


def test_cmdline_with_nul_is_refused(memory: GuestMemory) -> None:
    with pytest.raises(BootImageError, match="NUL"):
        linux.load_linux(memory, make_bzimage(), "a\0b")


def test_kernel_larger_than_ram_is_refused() -> None:
    mem = GuestMemory.with_size(2 * MiB)
    try:
        with pytest.raises(BootImageError, match="give more memory"):
            linux.load_linux(mem, make_bzimage(init_size=4 * MiB))
    finally:
        mem.close()


def test_refusal_writes_nothing(memory: GuestMemory) -> None:
    memory.fill(0, 32 * MiB, 0xAA)
    with pytest.raises(BootImageError):
        linux.load_linux(memory, make_bzimage(cmdline_size=4), "too long")
    assert memory.read(0, 32 * MiB) == b"\xAA" * (32 * MiB)


# -- fuzzing: BootImageError is the only way to fail, and RAM outside the plan is untouched ---
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
FUZZ_RAM = 24 * MiB


def _check_load(image: bytes, initrd: bytes | None) -> None:
    mem = GuestMemory.with_size(FUZZ_RAM)
    try:
        mem.fill(0, 0x100000, 0xAA)
        try:
            entry = linux.load_linux(mem, image, "console=ttyS0", initrd)
        except BootImageError as error:
            assert "\n" not in str(error)
            assert mem.read(0, 0x100000) == b"\xAA" * 0x100000
            return
        assert entry.mode == "long64" and entry.registers["rsi"] == ZP
        assert 0x100000 <= entry.rip - 0x200 < FUZZ_RAM
        low = mem.read(0, 0x100000)
        assert low[:ZP] == b"\xAA" * ZP
        assert low[linux.CMDLINE_AREA_END:] == b"\xAA" * (0x100000 - linux.CMDLINE_AREA_END)
        if initrd:
            addr, size = mem.read_u32(ZP + 0x218), mem.read_u32(ZP + 0x21C)
            assert addr % 4096 == 0 and size == len(initrd) and addr >= entry.rip
            assert mem.read(addr, size) == initrd
    finally:
        mem.close()


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_only_raise_boot_image_error(data: bytes) -> None:
    _check_load(data, None)


@FUZZ
@given(st.binary(min_size=0x400, max_size=0x1400), st.data())
def test_random_bytes_with_hdrs_only_raise_boot_image_error(data: bytes,
                                                            draw: st.DataObject) -> None:
    image = bytearray(data)
    image[0x202:0x206] = b"HdrS"
    if draw.draw(st.booleans()):
        image[0x1FE:0x200] = b"\x55\xAA"
    _check_load(bytes(image), None)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 0x26F), st.integers(0, 255)), max_size=8),
       st.one_of(st.none(), st.integers(0, 0x3C00)),
       st.one_of(st.none(), st.binary(max_size=64)))
def test_mutated_valid_images_only_raise_boot_image_error(
        flips: list[tuple[int, int]], cut: int | None, initrd: bytes | None) -> None:
    image = bytearray(make_bzimage(init_size=0x400000, pref_address=0x400000))
    for offset, value in flips:
        image[offset] = value
    if cut is not None:
        del image[cut:]
    _check_load(bytes(image), initrd)
