"""The firmware chain on QEMU with the same SeaBIOS ROM and the same disks as
tests/integration/test_firmware_boot.py: what QEMU shows is what pyhvm must show."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests import firmware_run as fr
from tests import guestkit, vga_pattern
from tests.disk_image_builder import BOOT_SECTOR_EXIT_CODE, build_disk, build_boot_sector_disk
from tests.firmware_run import BANNER, BOOTING, HELLO_OK
from tests.firmware_run import BOOT_MESSAGE as MESSAGE

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module", autouse=True)
def _qemu_present() -> None:
    reason = fr.qemu_skip_reason()
    if reason:
        pytest.skip(reason)


def test_qemu_shows_the_same_banner_and_boots_the_same_sector(tmp_path: Path) -> None:
    disk = build_boot_sector_disk(tmp_path / "disk.img")
    log = tmp_path / "seabios.log"
    run = fr.run(fr.qemu_command(disk, debug_log=log), fr.QUICK_TIMEOUT, log)
    assert run.returncode == BOOT_SECTOR_EXIT_CODE, run.describe()
    assert "Found QEMU fw_cfg" in run.debug and BANNER in run.debug
    console = run.console
    assert console.index(BANNER) < console.index(BOOTING) < console.index(MESSAGE)


def test_qemu_reset_reposts_like_pyhvm(tmp_path: Path) -> None:
    disk = build_boot_sector_disk(tmp_path / "disk.img", reboot_once=True)
    run = fr.run(fr.qemu_command(disk), fr.QUICK_TIMEOUT)
    assert run.returncode == BOOT_SECTOR_EXIT_CODE, run.describe()
    assert run.console.count(BANNER) == 2 and run.console.count(MESSAGE) == 1


def test_vga_screen_after_post_is_pixel_identical_on_pyhvm_and_qemu() -> None:
    """Both VMMs run the same SeaBIOS and SeaVGABIOS; once the boot sector runs (it halts),
    a QMP screendump of each must be the same picture, banner and cursor included."""
    pytest.importorskip("qemu.qmp", reason="qemu.qmp is not installed (pip install '.[test]')")
    shots = {}
    # A short directory: a Unix socket path must fit in 107 bytes.
    with tempfile.TemporaryDirectory(prefix="fwvga") as tmp:
        disk = build_boot_sector_disk(Path(tmp) / "disk.img", hold=True)
        for name, command in (("pyhvm", fr.pyhvm_command(disk, vga=True)),
                              ("qemu", fr.qemu_command(disk, vga=True))):
            sock, image = Path(tmp) / f"{name}.sock", Path(tmp) / f"{name}.ppm"
            command += ["-qmp", f"unix:{sock},server=on,wait=off"]
            run = guestkit.run_with_screendump(command, "", sock, MESSAGE, image,
                                               timeout=fr.QUICK_TIMEOUT)
            assert image.exists(), f"{name}: no screenshot\n{run.describe()}"
            shots[name] = vga_pattern.read_ppm(image)
    pyhvm, qemu = shots["pyhvm"], shots["qemu"]
    assert pyhvm.shape == qemu.shape == (400, 720, 3)
    assert qemu[:16].any()  # the banner is there to compare
    differing = np.argwhere(np.any(pyhvm != qemu, axis=2))
    assert len(differing) == 0, f"{len(differing)} pixels differ, first at {differing[:5]}"


def test_qemu_boots_the_same_kernel_through_its_linuxboot_rom(tmp_path: Path) -> None:
    kernel = fr.fake_linux_image(tmp_path / "bzImage")
    command = fr.qemu_command(None, kernel=kernel, append="console=ttyS0 through=fw_cfg")
    run = fr.run(command, fr.QUICK_TIMEOUT)
    assert run.returncode == fr.FAKE_LINUX_EXIT_CODE, run.describe()
    assert "Booting from ROM" in run.console
    assert "console=ttyS0 through=fw_cfg\n" in run.console


def test_qemu_boots_the_guest_kit_through_the_same_multiboot_rom(guestkit_elf: Path) -> None:
    command = fr.qemu_command(None, kernel=guestkit_elf, append="scenario=hello via=rom")
    run = fr.run(command, fr.QUICK_TIMEOUT)
    assert run.returncode == 1, run.describe()
    assert f"cmdline: {guestkit_elf} scenario=hello via=rom" in run.console.splitlines()
    assert fr.hello_fields(run.console) == HELLO_OK, run.describe()


def test_full_chain_on_qemu_gives_the_same_results(tmp_path: Path, guestkit_elf: Path) -> None:
    reason = fr.grub_skip_reason()
    if reason:
        pytest.skip(reason)
    disk = build_disk(tmp_path / "grub.img", guestkit_elf, "scenario=hello chain=grub")
    run = fr.run(fr.qemu_command(disk.path), fr.FULL_CHAIN_TIMEOUT)
    assert run.returncode == 1, run.describe()
    assert "GRUB loading" in run.console and "cmdline: scenario=hello chain=grub" in run.console
    assert fr.hello_fields(run.console) == HELLO_OK, run.describe()
