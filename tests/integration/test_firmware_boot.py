"""pyhvm booting through unmodified firmware: SeaBIOS (Debian's bios.bin) from the reset
vector, its VGA BIOS, a boot sector from the IDE disk, and the full chain SeaBIOS -> GRUB 2 ->
guest kit. The same disks boot under QEMU in tests/crosscheck/test_firmware_qemu.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import firmware_run as fr
from tests.disk_image_builder import BOOT_SECTOR_EXIT_CODE, build_disk, build_boot_sector_disk
from tests.firmware_run import BANNER, BOOTING, HELLO_OK
from tests.firmware_run import BOOT_MESSAGE as MESSAGE
from tests.guestkit import REPO_ROOT

pytestmark = pytest.mark.kvm


@pytest.fixture(scope="module", autouse=True)
def _firmware_present() -> None:
    reason = fr.firmware_skip_reason()
    if reason:
        pytest.skip(reason)


def test_seabios_banner_on_debug_port_and_serial_then_the_disk_boots(tmp_path: Path) -> None:
    disk = build_boot_sector_disk(tmp_path / "disk.img")
    log = tmp_path / "seabios.log"
    run = fr.run(fr.pyhvm_command(disk, debug_log=log), fr.QUICK_TIMEOUT, log)
    assert run.returncode == BOOT_SECTOR_EXIT_CODE, run.describe()  # DL was 0x80
    # SeaBIOS found what pyhvm offers it: QEMU's board, fw_cfg with DMA, the e820 table.
    for line in ("Running on QEMU (i440fx)", "Found QEMU fw_cfg",
                 "QEMU fw_cfg DMA interface supported",
                 "qemu/e820: addr 0x0000000000000000 len 0x0000000008000000 [RAM]",
                 "ata0-0: PYHVM ATA DISK", "Found 1 serial ports", "PS2 keyboard initialized",
                 BANNER):
        assert line in run.debug, f"{line!r} missing\n{run.describe()}"
    # Without a display SeaBIOS puts its console on COM1 (fw_cfg NOGRAPHIC, "sercon").
    console = run.console
    assert BANNER in console and BOOTING in console, run.describe()
    assert console.index(BANNER) < console.index(BOOTING) < console.index(MESSAGE)


def test_seabios_starts_and_counts_the_second_cpu(tmp_path: Path) -> None:
    """SeaBIOS sends INIT-SIPI-SIPI through the in-kernel local APIC and waits until every
    CPU fw_cfg announces has checked in (smp.c); the AP's KVM_RUN must survive the INIT."""
    disk = build_boot_sector_disk(tmp_path / "disk.img")
    log = tmp_path / "seabios.log"
    run = fr.run(fr.pyhvm_command(disk, debug_log=log, extra=["--cpus", "2"]),
                 fr.QUICK_TIMEOUT, log)
    assert run.returncode == BOOT_SECTOR_EXIT_CODE, run.describe()
    assert "Found 2 cpu(s) max supported 2 cpu(s)" in run.debug, run.describe()


def test_debug_port_is_absent_unless_asked_for(tmp_path: Path) -> None:
    """As on QEMU without isa-debugcon: port 0x402 floats, SeaBIOS stays silent there."""
    disk = build_boot_sector_disk(tmp_path / "disk.img")
    run = fr.run(fr.pyhvm_command(disk), fr.QUICK_TIMEOUT)
    assert run.returncode == BOOT_SECTOR_EXIT_CODE, run.describe()
    assert "Found QEMU fw_cfg" not in run.stderr and BANNER in run.console


def test_guest_reset_runs_seabios_again_from_the_reset_vector(tmp_path: Path) -> None:
    """The boot sector resets the machine once (i8042 0xFE): the vCPU restarts at
    0xFFFFFFF0, PAM maps the ROM back at 0xF0000 and SeaBIOS posts a second time."""
    disk = build_boot_sector_disk(tmp_path / "disk.img", reboot_once=True)
    run = fr.run(fr.pyhvm_command(disk), fr.QUICK_TIMEOUT)
    assert run.returncode == BOOT_SECTOR_EXIT_CODE, run.describe()
    assert run.console.count(BANNER) == 2 and run.console.count(BOOTING) == 2, run.describe()
    assert run.console.count(MESSAGE) == 1


def test_vga_bios_shows_the_banner_on_screen(tmp_path: Path) -> None:
    """SeaBIOS runs SeaVGABIOS (fw_cfg pci1234,1111.rom) for the std VGA at 00:02.0; the
    banner is drawn in text mode and the png display holds it at exit."""
    from tests.unit.test_png import decode_png  # an independent decoder

    disk = build_boot_sector_disk(tmp_path / "disk.img")
    log, shot = tmp_path / "seabios.log", tmp_path / "screen.png"
    run = fr.run(fr.pyhvm_command(disk, vga=True, debug_log=log,
                                  extra=["--display", f"png:{shot}"]), fr.QUICK_TIMEOUT, log)
    assert run.returncode == BOOT_SECTOR_EXIT_CODE, run.describe()
    for line in ("PCI: Using 00:02.0 for primary VGA", "Start SeaVGABIOS", "set VGA mode 3"):
        assert line in run.debug, f"{line!r} missing\n{run.describe()}"
    pixels = decode_png(shot.read_bytes())[0]
    assert pixels.shape == (400, 720, 3)  # mode 03h: 80x25 cells of 9x16
    lit_rows = np.nonzero(pixels.any(axis=(1, 2)))[0]
    # Two lines of text (banner, "Booting from...") and the cursor on the third line.
    assert lit_rows.min() < 16 and 16 <= lit_rows.max() < 48, lit_rows
    banner_width = np.nonzero(pixels[:16].any(axis=(0, 2)))[0].max() + 1
    assert banner_width > 9 * (len("SeaBIOS (version 1.16") - 1)


def test_seabios_boots_a_kernel_from_fw_cfg_through_the_linuxboot_rom(tmp_path: Path) -> None:
    """`--bios` with `--kernel`: the kernel, its setup code and command line go into fw_cfg,
    QEMU's linuxboot_dma.bin (a genroms/ file, first in `bootorder`) loads them by DMA and
    enters the setup code in real mode, which prints the command line it finds at 0x20000."""
    from pyhvm.boot.firmware import LINUXBOOT_ROM, find_option_rom

    if find_option_rom(LINUXBOOT_ROM) is None:
        pytest.skip(fr._required(f"QEMU's {LINUXBOOT_ROM} is not installed "
                                 "(apt-get install qemu-system-data)") or "")
    kernel = fr.fake_linux_image(tmp_path / "bzImage")
    log = tmp_path / "seabios.log"
    command = fr.pyhvm_command(None, kernel=kernel, append="console=ttyS0 through=fw_cfg",
                               debug_log=log)
    run = fr.run(command, fr.QUICK_TIMEOUT, log)
    assert run.returncode == fr.FAKE_LINUX_EXIT_CODE, run.describe()
    assert "Booting from ROM" in run.console
    assert "console=ttyS0 through=fw_cfg\n" in run.console, run.describe()
    assert f"Searching bootorder for: /rom@genroms/{LINUXBOOT_ROM}" in run.debug


def test_seabios_boots_the_guest_kit_through_the_multiboot_rom(tmp_path: Path,
                                                               guestkit: Path) -> None:
    """`--bios` with a Multiboot `--kernel`: the layout QEMU gives multiboot_dma.bin (kernel
    image, modules, command line, the information at 0x9500); the ROM adds the BIOS's e820
    map and enters the kernel in protected mode. Its GDT sits in read-only shadow RAM."""
    from pyhvm.boot.firmware import MULTIBOOT_ROM, find_option_rom

    if find_option_rom(MULTIBOOT_ROM) is None:
        pytest.skip(fr._required(f"QEMU's {MULTIBOOT_ROM} is not installed "
                                 "(apt-get install qemu-system-data)") or "")
    command = fr.pyhvm_command(None, kernel=guestkit, append="scenario=hello via=rom")
    run = fr.run(command, fr.QUICK_TIMEOUT)
    assert run.returncode == 1, run.describe()
    lines = run.console.splitlines()
    assert f"cmdline: {guestkit} scenario=hello via=rom" in lines, run.describe()
    # The memory map is the firmware's e820, not pyhvm's loader's.
    assert "mmap: base=0x100000 len=0x7f00000 type=1" in lines, run.describe()
    assert fr.hello_fields(run.console) == HELLO_OK, run.describe()


def test_full_chain_seabios_grub_guest_kit(tmp_path: Path, guestkit: Path) -> None:
    """SeaBIOS boots GRUB 2 from the disk's MBR; GRUB reads grub.cfg from the FAT partition
    and multiboot-loads the guest kit, which runs its scenario."""
    reason = fr.grub_skip_reason()
    if reason:
        pytest.skip(reason)
    disk = build_disk(tmp_path / "grub.img", guestkit, "scenario=hello chain=grub")
    command = fr.pyhvm_command(disk.path, max_seconds=fr.FULL_CHAIN_TIMEOUT - 20)
    run = fr.run(command, fr.FULL_CHAIN_TIMEOUT)
    assert run.returncode == 1, run.describe()  # the guest kit's success
    console = run.console
    for text in (BANNER, BOOTING, "GRUB loading", "GRUB: loading the guest kit",
                 "cmdline: scenario=hello chain=grub"):
        assert text in console, f"{text!r} missing\n{run.describe()}"
    assert fr.hello_fields(console) == HELLO_OK, run.describe()


@pytest.mark.parametrize("size, words", [
    (0, "empty"), (1000, "multiple of 64 KiB"), (17 << 20, "16 MiB"),
])
def test_unusable_rom_files_are_one_line_errors(tmp_path: Path, size: int,
                                                words: str) -> None:
    rom = tmp_path / "bios.bin"
    rom.write_bytes(bytes(size))
    proc = subprocess.run([sys.executable, "-m", "pyhvm", "run", "--bios", str(rom)],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 4
    assert proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
