"""Firmware boot pieces that need no KVM: the ROM file checks, -boot parsing, what CMOS and
fw_cfg tell SeaBIOS, kernel items for the linuxboot option ROM, the debug console, port 0x92
and the RESET register state."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pyhvm.boot import firmware as bf
from pyhvm.boot.image import BootImageError
from pyhvm.devices import fw_cfg as f
from pyhvm.devices.debugcon import READBACK, DebugCon, LineLog
from pyhvm.devices.port92 import Port92
from pyhvm.errors import HostError
from pyhvm.kvm import structs as s
from pyhvm.machine import cpu
from pyhvm.machine import firmware as fw
from pyhvm.memory import GuestMemory
from tests.unit.test_boot_linux import make_bzimage

# -- the ROM file -------------------------------------------------------------------------------


def write(tmp_path: Path, size: int) -> str:
    path = tmp_path / "bios.bin"
    path.write_bytes(bytes(size))
    return str(path)


def test_rom_is_mapped_to_end_at_4g_with_its_isa_window(tmp_path: Path) -> None:
    rom = bf.load_rom(write(tmp_path, 256 << 10))
    assert rom.base == 0xFFFC0000
    assert len(rom.isa_window) == 128 << 10 and rom.isa_base == 0xE0000


@pytest.mark.parametrize("size, words", [
    (0, "empty"), (100_000, "multiple of 64 KiB"), ((16 << 20) + (64 << 10), "16 MiB"),
])
def test_bad_rom_sizes_give_one_line_host_errors(tmp_path: Path, size: int,
                                                 words: str) -> None:
    with pytest.raises(HostError) as info:
        bf.load_rom(write(tmp_path, size))
    assert words in str(info.value) and "\n" not in str(info.value)


def test_missing_rom_says_so(tmp_path: Path) -> None:
    with pytest.raises(bf.FirmwareError, match="does not exist"):
        bf.load_rom(str(tmp_path / "nope.bin"))


def test_directory_as_rom_is_a_host_error(tmp_path: Path) -> None:
    with pytest.raises(HostError):
        bf.load_rom(str(tmp_path))


# -- -boot, CMOS, e820, bootorder -----------------------------------------------------------------


def test_parse_boot_takes_qemu_syntax() -> None:
    assert fw.parse_boot(None) == fw.BootOptions("c", False, -1)
    assert fw.parse_boot("order=dc,menu=on,reboot-timeout=5000") == \
        fw.BootOptions("dc", True, 5000)
    assert fw.parse_boot("cd").order == "cd"


@pytest.mark.parametrize("spec", ["order=x", "order=cdna", "menu=maybe", "reboot-timeout=s",
                                  "splash=on", "reboot-timeout=70000"])
def test_parse_boot_refuses_nonsense(spec: str) -> None:
    with pytest.raises(HostError):
        fw.parse_boot(spec)


def test_cmos_boot_order_as_qemu_writes_it() -> None:
    """0x3D: second device << 4 | first; 0x38: third << 4 | 1 (skip the floppy check)."""
    assert fw.cmos_boot_bytes("c") == {0x3D: 0x02, 0x38: 0x01}
    assert fw.cmos_boot_bytes("cdn") == {0x3D: 0x32, 0x38: 0x41}


def e820(raw: bytes) -> list[tuple[int, int, int]]:
    return [fw.E820_ENTRY.unpack_from(raw, i) for i in range(0, len(raw), fw.E820_ENTRY.size)]


def test_e820_has_ram_below_the_hole_above_4g_and_kvm_pages() -> None:
    assert e820(fw.e820_table(128 << 20)) == [(0, 128 << 20, 1), (0xFEFFC000, 0x4000, 2)]
    assert e820(fw.e820_table(4 << 30)) == [(0, 3 << 30, 1), (4 << 30, 1 << 30, 1),
                                            (0xFEFFC000, 0x4000, 2)]


def test_bootorder_names_ide_disks_like_qemu() -> None:
    assert fw.ide_bootorder([2, 0]) == (b"/pci@i0cf8/ide@1,1/drive@0/disk@0\n"
                                        b"/pci@i0cf8/ide@1,1/drive@1/disk@0\n\0")
    assert fw.ide_bootorder([]) == b""


# -- fw_cfg contents -----------------------------------------------------------------------------


@pytest.fixture
def memory() -> GuestMemory:
    mem = GuestMemory.with_size(16 << 20)
    yield mem
    mem.close()


def test_fw_cfg_for_seabios(memory: GuestMemory) -> None:
    dev = fw.build_fw_cfg(memory, memory_size=16 << 20, cpus=2, boot=fw.BootOptions(),
                          drive_indexes=[0], graphics=False)
    assert dev.item(f.FW_CFG_NB_CPUS) == b"\2\0" and dev.item(f.FW_CFG_MAX_CPUS) == b"\2\0"
    assert dev.item(f.FW_CFG_NOGRAPHIC) == b"\1\0"  # SeaBIOS then uses COM1 (sercon)
    assert dev.item(f.FW_CFG_BOOT_MENU) == b"\0\0"
    assert dev.item(f.FW_CFG_RAM_SIZE) == struct.pack("<Q", 16 << 20)
    assert e820(dev.item(dev.file_key("etc/e820")) or b"")[0] == (0, 16 << 20, 1)
    assert dev.item(dev.file_key("etc/boot-fail-wait")) == b"\xff\xff\xff\xff"
    assert dev.item(dev.file_key("bootorder")).startswith(b"/pci@i0cf8/ide@1,1")


def test_linux_kernel_items_for_linuxboot_rom(memory: GuestMemory) -> None:
    if bf.find_option_rom(bf.LINUXBOOT_ROM) is None:
        pytest.skip("QEMU's linuxboot_dma.bin is not installed (qemu-system-data)")
    image = make_bzimage(setup_sects=4)
    items = bf.linux_fw_cfg_items(image, "console=ttyS0", b"INITRD", 64 << 20)
    setup = items.keys[f.FW_CFG_SETUP_DATA]
    assert len(setup) == 5 * 512 and items.keys[f.FW_CFG_KERNEL_DATA] == image[5 * 512:]
    assert setup[0x210] == bf.LOADER_QEMU and setup[0x211] & bf.CAN_USE_HEAP
    assert struct.unpack_from("<I", setup, 0x228)[0] == bf.LINUX_CMDLINE_ADDR
    initrd_at, initrd_size = struct.unpack_from("<II", setup, 0x218)
    assert initrd_size == 6 and initrd_at % 4096 == 0
    assert initrd_at + 6 <= (64 << 20) - bf.ACPI_DATA_SIZE
    assert items.keys[f.FW_CFG_CMDLINE_DATA] == b"console=ttyS0\0"
    assert "genroms/linuxboot_dma.bin" in items.files


def test_a_kernel_that_is_neither_linux_nor_multiboot_is_refused(memory: GuestMemory,
                                                                  tmp_path: Path) -> None:
    elf = tmp_path / "kernel.elf"
    elf.write_bytes(b"\x7fELF" + bytes(100))
    with pytest.raises(BootImageError, match="Multiboot header"):
        fw.build_fw_cfg(memory, memory_size=16 << 20, cpus=1, boot=fw.BootOptions(),
                        drive_indexes=[], graphics=False, kernel=str(elf))


# -- debug console, port 0x92 ----------------------------------------------------------------------


def test_debugcon_reads_e9_and_forwards_bytes() -> None:
    out: list[bytes] = []
    con = DebugCon(out.append)
    assert con.read(0, 1) == READBACK == 0xE9
    con.write(0, 1, ord("S"))
    con.write(0, 2, 0x1234)  # the low byte, as QEMU's isa-debugcon
    assert out == [b"S", b"\x34"]


def test_line_log_splits_lines_and_bounds_them() -> None:
    lines: list[str] = []
    log = LineLog(lines.append)
    log(b"SeaBIOS (version x)\r\nnext")
    assert lines == ["SeaBIOS (version x)"]
    log(b"a" * (LineLog.MAX_LINE + 10))
    assert len(lines) == 2 and len(lines[1]) == LineLog.MAX_LINE
    log.flush()
    assert len(lines) == 3


def test_port92_fast_reset_on_rising_bit0_only() -> None:
    resets: list[int] = []
    port = Port92(lambda: resets.append(1))
    port.write(0, 1, 0x02)
    assert port.read(0, 1) == 0x02 and port.a20_enabled and not resets
    port.write(0, 1, 0x03)
    port.write(0, 1, 0x03)
    assert resets == [1]
    port.reset()
    assert port.read(0, 1) == 0


# -- the RESET state -------------------------------------------------------------------------------


class FakeVcpu:
    def __init__(self) -> None:
        self.sregs = s.kvm_sregs()
        self.regs = s.kvm_regs()

    def get_sregs(self) -> s.kvm_sregs:
        return self.sregs

    def set_sregs(self, sregs: s.kvm_sregs) -> None:
        self.sregs = sregs

    def set_regs(self, regs: s.kvm_regs) -> None:
        self.regs = regs


def test_reset_state_fetches_from_the_reset_vector() -> None:
    """SDM Vol. 3A Table 9-1: CS 0xF000 with base 0xFFFF0000, IP 0xFFF0, real mode."""
    vcpu = FakeVcpu()
    vcpu.sregs.cr0 = 0x80000011
    vcpu.sregs.efer = 0x500
    cpu.set_reset_state(vcpu)  # type: ignore[arg-type]
    sregs, regs = vcpu.sregs, vcpu.regs
    assert sregs.cs.selector == 0xF000 and sregs.cs.base == 0xFFFF0000
    assert sregs.cs.base + regs.rip == 0xFFFFFFF0
    assert sregs.cs.limit == 0xFFFF and sregs.cs.present and sregs.cs.db == 0
    assert sregs.cr0 == 0x60000010 and not sregs.cr0 & 1 and sregs.efer == 0
    assert sregs.ds.base == 0 and sregs.ss.limit == 0xFFFF
    assert regs.rflags == 2 and regs.rdx == 0x600


# -- a Multiboot kernel for QEMU's multiboot option ROM -----------------------------------------


def test_multiboot_items_follow_qemus_layout() -> None:
    """KERNEL_DATA spans the lowest to the highest loaded byte (page-aligned), then the module
    list, command lines and loader name, then each module; INITRD_DATA is the 88-byte
    Multiboot information the ROM completes at 0x9500 (mmap at 0x9000)."""
    if bf.find_option_rom(bf.MULTIBOOT_ROM) is None:
        pytest.skip("QEMU's multiboot_dma.bin is not installed (qemu-system-data)")
    from tests.unit.test_boot_multiboot import simple_elf

    image = simple_elf()
    items = bf.multiboot_fw_cfg_items(image, "/k.elf", "scenario=hello",
                                      [(b"MODULE", "/m.bin arg")], 64 << 20)
    keys = items.keys
    low = struct.unpack("<I", keys[f.FW_CFG_KERNEL_ADDR])[0]
    data = keys[f.FW_CFG_KERNEL_DATA]
    assert low == 0x100000 and len(data) % 4096 == 0
    assert struct.unpack("<I", keys[f.FW_CFG_KERNEL_SIZE])[0] == len(data)
    assert data[0x100000 - low + 12:0x100000 - low + 12 + 256] == bytes(range(256))
    assert data[0x200000 - low:0x200000 - low + 4] == b"DATA"
    assert struct.unpack("<I", keys[f.FW_CFG_INITRD_ADDR])[0] == bf.MB_INFO_ADDR == 0x9500
    info = keys[f.FW_CFG_INITRD_DATA]
    assert len(info) == 88 and struct.unpack_from("<I", info, 48)[0] == 0x9000

    def cstring(address: int) -> bytes:
        start = address - low
        return data[start:data.index(b"\0", start)]

    flags, = struct.unpack_from("<I", info, 0)
    assert flags & (1 << 2) and flags & (1 << 3) and flags & (1 << 6) and flags & (1 << 9)
    assert cstring(struct.unpack_from("<I", info, 16)[0]) == b"/k.elf scenario=hello"
    assert cstring(struct.unpack_from("<I", info, 64)[0]) == b"pyhvm"
    count, mods = struct.unpack_from("<II", info, 20)
    start, end, name, _ = struct.unpack_from("<IIII", data, mods - low)
    assert count == 1 and start % 4096 == 0 and data[start - low:end - low] == b"MODULE"
    assert cstring(name) == b"/m.bin arg"
    assert "genroms/multiboot_dma.bin" in items.files


def test_multiboot_kernel_that_does_not_fit_is_refused() -> None:
    if bf.find_option_rom(bf.MULTIBOOT_ROM) is None:
        pytest.skip("QEMU's multiboot_dma.bin is not installed (qemu-system-data)")
    from tests.unit.test_boot_multiboot import simple_elf

    with pytest.raises(BootImageError, match="-m"):
        bf.multiboot_fw_cfg_items(simple_elf(), "k", "", [], 2 << 20)
    with pytest.raises(BootImageError, match="Multiboot"):
        bf.multiboot_fw_cfg_items(b"\x7fELF" + bytes(100), "k", "", [], 64 << 20)
