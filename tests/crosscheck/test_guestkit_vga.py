"""The guest kit's VGA/VBE driver and scenarios on QEMU's std VGA (`-vga std`).

Each screen scenario runs with hold=1: it prints its RESULT line, then "READY <name>", and
halts with its picture on screen; the test takes QEMU's `screendump` over QMP (PPM) and
compares it with the picture tests/vga_pattern.py computes: pixel for pixel for graphics
modes, cell by cell (colours and positions, whatever the font) for text mode. The
checksums the guest reads back from video memory are compared with the expected bytes too.
This pins the kit on the reference device, so that a difference under pyhvm points at
pyhvm (tests/integration/test_guestkit_vga.py runs the same cases there). Each boot takes
a few seconds (SeaBIOS and its VGA BIOS run first); resolutions and frame counts stay small.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests import guestkit, vga_pattern
from tests.guestkit import STATUS_FAIL, STATUS_USAGE

pytestmark = pytest.mark.qemu

QEMU_VGA = ("-vga", "std")

Shoot = Callable[[str], tuple[guestkit.GuestRun, np.ndarray]]
SCREEN_CASES = [pytest.param(cmdline, id=name) for name, cmdline in vga_pattern.SCREEN_CASES]


@pytest.fixture(scope="module")
def qemu_shoot(guestkit_elf: Path) -> Shoot:
    """shoot(cmdline) -> (run, screenshot) under QEMU -vga std, with hold=1 appended."""
    reason = guestkit.qemu_missing_reason()
    if reason:
        pytest.skip(reason)
    pytest.importorskip("qemu.qmp", reason="qemu.qmp is not installed (pip install '.[test]')")

    def shoot(cmdline: str) -> tuple[guestkit.GuestRun, np.ndarray]:
        # A short directory: a Unix socket path must fit in 107 bytes.
        with tempfile.TemporaryDirectory(prefix="gkvga") as tmp:
            sock, image = Path(tmp) / "qmp.sock", Path(tmp) / "screen.ppm"
            command = guestkit.qemu_command(guestkit_elf, f"{cmdline} hold=1", extra_args=(
                *QEMU_VGA, "-qmp", f"unix:{sock},server=on,wait=off"))
            ready = f"READY {vga_pattern.scenario_of(cmdline)}\n"
            run = guestkit.run_with_screendump(command, cmdline, sock, ready, image)
            assert image.exists(), f"no screenshot\n{run.describe()}"
            return run, vga_pattern.read_ppm(image)

    return shoot


@pytest.fixture(scope="module")
def qemu_vga_boot(guestkit_elf: Path) -> Callable[..., guestkit.GuestRun]:
    """boot(cmdline, *qemu_args) -> GuestRun under QEMU -vga std (no screenshot)."""
    reason = guestkit.qemu_missing_reason()
    if reason:
        pytest.skip(reason)
    return lambda cmdline, *extra: guestkit.run_qemu(guestkit_elf, cmdline,
                                                     extra_args=(*QEMU_VGA, *extra))


@pytest.mark.parametrize("cmdline", SCREEN_CASES)
def test_scenario_screen_matches_the_expected_picture(qemu_shoot: Shoot, cmdline: str) -> None:
    run, image = qemu_shoot(cmdline)
    vga_pattern.check_scenario_screen(run, image, cmdline)


def test_driver_reads_bars_and_video_memory_size_from_the_device(qemu_vga_boot) -> None:
    """With 4 MiB of video memory (vgamem_mb=4) SeaBIOS gives BAR0 a 4 MiB slot elsewhere
    than its usual 0xFD000000 (16 MiB), and VIDEO_MEMORY_64K says 64: the driver reads
    both from the device, and refuses a 1280x1024x32 mode (5 MiB) before setting it."""
    run = qemu_vga_boot("scenario=vbe mode=1280x1024x32", "-global", "VGA.vgamem_mb=4")
    assert run.status == STATUS_FAIL, run.describe()
    r = run.result("vbe")
    assert r["ok"] == "0" and r["error"] == "mode-too-big" and r.num("vram_kb") == 4096
    probe = [line for line in run.lines() if line.startswith("vbe: pci=")]
    assert probe, run.describe()
    fields = dict(tok.split("=", 1) for tok in probe[0].split()[1:])
    lfb = int(fields["lfb"], 16)
    assert lfb and lfb % (4 << 20) == 0 and lfb != 0xFD000000, probe[0]
    assert int(fields["mmio"], 16), probe[0]


def test_bad_mode_argument_is_a_usage_error(qemu_vga_boot) -> None:
    run = qemu_vga_boot("scenario=vbe mode=641x480x32")        # width not a multiple of 8
    assert run.status == STATUS_USAGE, run.describe()
    r = run.result("error")
    assert r.words == ("bad-arg",) and r["key"] == "mode"
