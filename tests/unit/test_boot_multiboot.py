"""The Multiboot 1 loader (Multiboot Specification 0.6.96), on ELF32 and a.out-kludge images
built here."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhvm.boot import multiboot as mb
from pyhvm.boot.image import BootImageError, e820_map
from pyhvm.boot.loader import load_kernel
from pyhvm.memory import GuestMemory, MiB

RAM = 32 * MiB
DEFAULT_FLAGS = mb.FLAG_PAGE_ALIGN | mb.FLAG_MEMORY_INFO


def mb_header(flags: int = DEFAULT_FLAGS, addresses: tuple[int, ...] = ()) -> bytes:
    """Multiboot header (spec 3.1.1): magic, flags, checksum, then the a.out address fields."""
    checksum = (-(mb.HEADER_MAGIC + flags)) & 0xFFFFFFFF
    return struct.pack("<III", mb.HEADER_MAGIC, flags, checksum) + b"".join(
        struct.pack("<I", a) for a in addresses)


Seg = tuple[int, bytes, int]   # (paddr, file bytes, memsz)


def make_elf(segments: list[Seg], *, entry: int | None = None, flags: int = DEFAULT_FLAGS,
             ei_class: int = 1, machine: int = 3, extra_phdrs: int = 0) -> bytes:
    """ELF32 executable: header, program headers, each segment at a 4 KiB file offset.

    The Multiboot header is prepended to the first segment's bytes (so it is loaded too, as
    real kernels have it), which keeps it inside the first 8 KiB of the file.
    """
    first_paddr, first_data, first_memsz = segments[0]
    header = mb_header(flags)
    segments = [(first_paddr, header + first_data, first_memsz + len(header))] + segments[1:]
    phnum = len(segments) + extra_phdrs
    out = bytearray(0x1000)
    struct.pack_into("<4sBBBB8x", out, 0, b"\x7fELF", ei_class, 1, 1, 0)
    struct.pack_into("<HHIIIIIHHHHHH", out, 16, 2, machine, 1,
                     first_paddr + len(header) if entry is None else entry,
                     52, 0, 0, 52, 32, phnum, 40, 0, 0)
    for index, (paddr, data, memsz) in enumerate(segments):
        offset = len(out)
        struct.pack_into("<IIIIIIII", out, 52 + 32 * index, mb.PT_LOAD, offset, paddr, paddr,
                         len(data), memsz, 5, 0x1000)
        out += data + bytes(-len(data) % 0x1000)
    for index in range(len(segments), phnum):   # a PT_NOTE the loader must skip
        struct.pack_into("<IIIIIIII", out, 52 + 32 * index, 4, 0, 0, 0, 0, 0x10, 4, 4)
    return bytes(out)


def make_aout(*, load_addr: int = 0x100000, code: bytes = b"\x90" * 0x100, prefix: int = 0x20,
              bss: int = 0x2000, load_end: int | None = None, entry_offset: int = 0x40,
              header_addr: int | None = None) -> bytes:
    """Flat image with the a.out kludge (flag 16): the header's address fields say it all."""
    flags = DEFAULT_FLAGS | mb.FLAG_AOUT_KLUDGE
    size = prefix + 32 + len(code)
    end = load_addr + size if load_end is None else load_end
    fields = (load_addr + prefix if header_addr is None else header_addr, load_addr, end,
              load_addr + size + bss if bss else 0, load_addr + entry_offset)
    return b"\xCC" * prefix + mb_header(flags, fields) + code


def simple_elf(**kwargs: object) -> bytes:
    text = bytes(range(256)) * 8
    return make_elf([(0x100000, text, 0x3000), (0x200000, b"DATA" * 64, 0x100)],
                    **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def memory() -> Iterator[GuestMemory]:
    mem = GuestMemory.with_size(RAM)
    yield mem
    mem.close()


def info_field(memory: GuestMemory, offset: int) -> int:
    return memory.read_u32(mb.INFO_ADDR + offset)


def cstring(memory: GuestMemory, addr: int) -> bytes:
    data = memory.read(addr, 512)
    return data[:data.index(b"\0")]


# -- machine state at entry (spec 3.2) and the boot information (spec 3.3) -------------------
def test_entry_has_magic_in_eax_and_info_in_ebx(memory: GuestMemory) -> None:
    entry = mb.load_multiboot(memory, simple_elf())
    assert entry.mode == "protected32"
    assert entry.rip == 0x100000 + 12
    assert entry.registers == {"rax": 0x2BADB002, "rbx": mb.INFO_ADDR}


def test_elf_segments_loaded_at_paddr_and_bss_zeroed(memory: GuestMemory) -> None:
    memory.fill(0, RAM, 0xAA)
    image = simple_elf()
    mb.load_multiboot(memory, image)
    text = mb_header() + bytes(range(256)) * 8
    assert memory.read(0x100000, len(text)) == text
    bss_len = 0x3000 + 12 - len(text)
    assert memory.read(0x100000 + len(text), bss_len) == bytes(bss_len)
    assert memory.read_u8(0x100000 + 0x3000 + 12) == 0xAA     # just past memsz: untouched
    assert memory.read(0x200000, 0x100) == b"DATA" * 64


def test_info_flags_and_memory_sizes(memory: GuestMemory) -> None:
    mb.load_multiboot(memory, simple_elf())
    flags = info_field(memory, 0)
    assert flags == (mb.INFO_MEMORY | mb.INFO_CMDLINE | mb.INFO_MMAP | mb.INFO_LOADER_NAME)
    assert info_field(memory, 4) == 639                      # mem_lower, KiB
    assert info_field(memory, 8) == (RAM - MiB) // 1024      # mem_upper, KiB above 1 MiB


def test_cmdline_is_a_c_string(memory: GuestMemory) -> None:
    mb.load_multiboot(memory, simple_elf(), "scenario=hello n=3")
    assert cstring(memory, info_field(memory, 16)) == b"scenario=hello n=3"


def test_loader_name_is_at_offset_64(memory: GuestMemory) -> None:
    mb.load_multiboot(memory, simple_elf())
    assert cstring(memory, info_field(memory, 64)) == b"pyhvm"
    assert info_field(memory, 72) == 0                       # vbe_control_info: none


def test_mmap_entries_match_e820(memory: GuestMemory) -> None:
    mb.load_multiboot(memory, simple_elf())
    expected = e820_map(memory)
    length, addr = info_field(memory, 44), info_field(memory, 48)
    assert length == 24 * len(expected)
    entries = [struct.unpack("<IQQI", memory.read(addr + 24 * i, 24))
               for i in range(len(expected))]
    assert entries == [(20, base, size, kind) for base, size, kind in expected]


def test_modules_are_page_aligned_after_the_kernel(memory: GuestMemory) -> None:
    mods = [(b"first module" * 100, "initrd"), (b"", "empty"), (b"\x01" * 5000, "third x=1")]
    entry = mb.load_multiboot(memory, simple_elf(), "", mods)
    assert entry.registers["rbx"] == mb.INFO_ADDR
    assert info_field(memory, 0) & mb.INFO_MODS
    assert info_field(memory, 20) == 3
    base = info_field(memory, 24)
    previous_end = 0x200100                                  # the kernel's last byte + 1
    for index, (data, name) in enumerate(mods):
        start, end, string, reserved = struct.unpack("<IIII", memory.read(base + 16 * index, 16))
        assert start % 4096 == 0 and start >= previous_end
        assert end == start + len(data) and reserved == 0
        assert memory.read(start, len(data)) == data
        assert cstring(memory, string) == name.encode()
        previous_end = end


def test_modules_skip_the_reserved_area_below_1mib(memory: GuestMemory) -> None:
    image = make_elf([(0x10000, b"\xF4" * 16, 0x1000)])
    mb.load_multiboot(memory, image, "", [(b"m" * (600 << 10), "big")])
    start, end = struct.unpack("<II", memory.read(info_field(memory, 24), 8))
    assert start == 0x100000 and end == 0x100000 + (600 << 10)


def test_loader_passes_initrd_as_first_module(memory: GuestMemory) -> None:
    load_kernel(memory, simple_elf(), "", b"INITRD", [(b"M", "mod")])
    base = info_field(memory, 24)
    start, end, string, _ = struct.unpack("<IIII", memory.read(base, 16))
    assert memory.read(start, end - start) == b"INITRD" and cstring(memory, string) == b"initrd"


def test_aout_kludge_loads_by_header_addresses(memory: GuestMemory) -> None:
    memory.fill(0, RAM, 0xAA)
    image = make_aout()
    entry = mb.load_multiboot(memory, image)
    assert memory.read(0x100000, len(image)) == image
    assert memory.read(0x100000 + len(image), 0x2000) == bytes(0x2000)
    assert memory.read_u8(0x100000 + len(image) + 0x2000) == 0xAA
    assert entry.rip == 0x100040


def test_aout_kludge_load_end_zero_means_whole_file(memory: GuestMemory) -> None:
    image = make_aout(load_end=0, bss=0)
    mb.load_multiboot(memory, image)
    assert memory.read(0x100000, len(image)) == image


def test_aout_kludge_loads_only_up_to_load_end(memory: GuestMemory) -> None:
    memory.fill(0, RAM, 0xAA)
    image = make_aout(load_end=0x100080, bss=0)
    mb.load_multiboot(memory, image)
    assert memory.read(0x100000, 0x80) == image[:0x80]
    assert memory.read_u8(0x100080) == 0xAA


# -- refusals ---------------------------------------------------------------------------------
def refuse(memory: GuestMemory, image: bytes, match: str, **kwargs: object) -> None:
    with pytest.raises(BootImageError, match=match):
        mb.load_multiboot(memory, image, **kwargs)  # type: ignore[arg-type]


def test_no_header_or_bad_checksum_is_refused(memory: GuestMemory) -> None:
    refuse(memory, b"\0" * 100, "no Multiboot header")
    bad = bytearray(simple_elf())
    bad[0x1008] ^= 1                                          # the checksum
    refuse(memory, bytes(bad), "no Multiboot header")


def test_header_past_first_8k_is_refused(memory: GuestMemory) -> None:
    image = make_elf([(0x100000, b"x", 0x10)])
    moved = image[:0x1000] + b"\0" * 0x1000 + image[0x1000:]
    refuse(memory, moved, "first 8 KiB")


def test_unsupported_required_flag_is_refused(memory: GuestMemory) -> None:
    refuse(memory, simple_elf(flags=DEFAULT_FLAGS | 1 << 3), "unsupported")


def test_not_elf_without_aout_flag_is_refused(memory: GuestMemory) -> None:
    refuse(memory, mb_header() + b"\0" * 64, "not an ELF")


def test_elf64_and_wrong_machine_are_refused(memory: GuestMemory) -> None:
    refuse(memory, simple_elf(ei_class=2), "ELF32")
    refuse(memory, simple_elf(machine=62), "not i386")


@pytest.mark.parametrize("cut", [40, 52 + 40, 0x1800, 0x20FF])
def test_truncated_elf_is_refused(memory: GuestMemory, cut: int) -> None:
    with pytest.raises(BootImageError):
        mb.load_multiboot(memory, simple_elf()[:cut])


def test_truncated_elf_messages(memory: GuestMemory) -> None:
    image = simple_elf()
    refuse(memory, image[:0x1800], "past the end of the file")
    phdrs_cut = bytearray(image)
    struct.pack_into("<I", phdrs_cut, 28, len(image) - 40)   # e_phoff: 2 headers, 40 bytes left
    refuse(memory, bytes(phdrs_cut), "program headers run past the end")


def test_filesz_above_memsz_is_refused(memory: GuestMemory) -> None:
    refuse(memory, make_elf([(0x100000, b"x" * 100, 50)]), "filesz > memsz")


def test_segment_outside_ram_is_refused(memory: GuestMemory) -> None:
    refuse(memory, make_elf([(RAM - 0x10, b"x" * 4, 0x100)]), "outside guest RAM")
    refuse(memory, make_elf([(0xFFFFF000, b"x", 0x10)]), "outside guest RAM")


def test_overlapping_segments_are_refused(memory: GuestMemory) -> None:
    image = make_elf([(0x100000, b"a", 0x2000), (0x101000, b"b", 0x10)])
    refuse(memory, image, "overlap")


def test_segment_below_64k_is_refused(memory: GuestMemory) -> None:
    refuse(memory, make_elf([(0x8000, b"x", 0x10)]), "low memory")


def test_segment_in_reserved_area_is_refused(memory: GuestMemory) -> None:
    refuse(memory, make_elf([(0x9F000, b"x", 0x2000)]), "reserved")
    refuse(memory, make_elf([(0xB8000, b"x", 0x10)]), "reserved")


def test_entry_outside_segments_is_refused(memory: GuestMemory) -> None:
    refuse(memory, simple_elf(entry=0x400000), "entry point")


def test_cmdline_too_long_or_with_nul_is_refused(memory: GuestMemory) -> None:
    mb.load_multiboot(memory, simple_elf(), "x" * (mb.CMDLINE_MAX - 1))
    refuse(memory, simple_elf(), "command line", cmdline="x" * mb.CMDLINE_MAX)
    refuse(memory, simple_elf(), "command line", cmdline="a\0b")


def test_module_too_big_for_ram_is_refused(memory: GuestMemory) -> None:
    refuse(memory, simple_elf(), "does not fit", modules=[(b"z" * RAM, "huge")])


def test_aout_inconsistent_or_truncated_header_is_refused(memory: GuestMemory) -> None:
    refuse(memory, make_aout(header_addr=0x0F0000), "inconsistent")
    refuse(memory, make_aout(load_end=0x200000), "past the end of the file")
    refuse(memory, make_aout(load_end=0x0F0000), "past the end of the file")
    refuse(memory, make_aout(entry_offset=0x10000), "entry point")
    refuse(memory, make_aout()[:0x20 + 24], "truncated")


# -- fuzzing: BootImageError is the only way to fail; success stays within what it claims ----
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
FUZZ_RAM = 4 * MiB


def _check_load(image: bytes, modules: list[tuple[bytes, str]]) -> None:
    mem = GuestMemory.with_size(FUZZ_RAM)
    try:
        mem.fill(0, 0x100000, 0xAA)
        try:
            entry = mb.load_multiboot(mem, image, "fuzz", modules)
        except BootImageError as error:
            assert "\n" not in str(error)
            return
        offset, flags = mb.find_header(image)
        if flags & mb.FLAG_AOUT_KLUDGE:
            _, segments = mb.aout_segments(image, offset)
        else:
            _, segments = mb.elf_segments(image)
        assert any(s.paddr <= entry.rip < s.paddr + s.memsz for s in segments)
        # Below 1 MiB the loader may write only its structures, the segments and the modules.
        claimed = [(s.paddr, s.paddr + s.memsz) for s in segments]
        for index in range(len(modules)):
            claimed.append(struct.unpack("<II", mem.read(mb.MODULES_ADDR + 16 * index, 8)))
        assert all(start >= mb.LOW_RESERVED_END for start, _ in claimed)
        claimed.append((mb.INFO_ADDR, mb.MODULES_AREA_END))
        cursor = 0
        for start, end in sorted(claimed) + [(0x100000, 0x100000)]:
            if start > cursor:
                hi = min(start, 0x100000)
                assert mem.read(cursor, hi - cursor) == b"\xAA" * (hi - cursor)
            cursor = max(cursor, end)
            if cursor >= 0x100000:
                break
    finally:
        mem.close()


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_only_raise_boot_image_error(data: bytes) -> None:
    _check_load(data, [])


@FUZZ
@given(st.binary(max_size=2048), st.binary(max_size=64), st.integers(0, 0xFFFFFFFF),
       st.lists(st.integers(0, 0xFFFFFFFF), min_size=5, max_size=5))
def test_random_bytes_around_a_valid_header(before: bytes, after: bytes, flags: int,
                                            fields: list[int]) -> None:
    pad = before + bytes(-len(before) % 4)
    _check_load(pad + mb_header(flags, tuple(fields)) + after, [(b"mod", "m")])


FLIPS = st.lists(st.tuples(st.integers(0, 0x1FFF), st.integers(0, 255)), max_size=8)
CUTS = st.one_of(st.none(), st.integers(0, 0x3000))


def _mutate(image: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(image)
    for offset, value in flips:
        if offset < len(out):
            out[offset] = value
    return bytes(out[:cut] if cut is not None else out)


@FUZZ
@given(FLIPS, CUTS, st.booleans())
def test_mutated_elf_images_only_raise_boot_image_error(
        flips: list[tuple[int, int]], cut: int | None, with_module: bool) -> None:
    image = make_elf([(0x100000, b"\x90" * 0x400, 0x2000), (0x40000, b"low", 0x800)])
    _check_load(_mutate(image, flips, cut), [(b"M" * 3000, "mod")] if with_module else [])


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 0x60), st.integers(0, 255)), max_size=8), CUTS)
def test_mutated_aout_images_only_raise_boot_image_error(
        flips: list[tuple[int, int]], cut: int | None) -> None:
    _check_load(_mutate(make_aout(load_addr=0x20000), flips, cut), [(b"M", "mod")])
