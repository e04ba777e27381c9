"""The guest kit's VGA/VBE scenarios on pyhvm's std VGA, screenshots against the expected
pictures: the same cases and checks as tests/crosscheck/test_guestkit_vga.py runs on QEMU
(tests/vga_pattern.py SCREEN_CASES, check_scenario_screen), in both video-memory
placements (`--vga-mem shared`, the default; `trap` for a smaller set: every framebuffer
access is an exit there).

Each case boots with hold=1 and `--qmp`; once the guest prints "READY <name>" and halts,
the test takes pyhvm's `screendump` (PPM) over QMP with QEMU's client library and quits.
The tests skip, saying why, where pyhvm has no VGA device (`pyhvm run --help` does not
mention --vga) or no screendump command.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests import guestkit, vga_pattern
from tests.guestkit import BOOT_TIMEOUT, REPO_ROOT, STATUS_FAIL

pytestmark = pytest.mark.kvm

Shoot = Callable[..., tuple[guestkit.GuestRun, np.ndarray]]

SHARED_CASES = [pytest.param(cmdline, id=name) for name, cmdline in vga_pattern.SCREEN_CASES]
# Trapped video memory: every LFB access exits to the device model, so smaller pictures.
TRAP_CASES = [
    pytest.param("scenario=vga-text", id="vga-text"),
    pytest.param("scenario=vbe mode=320x240x8", id="vbe-8"),
    pytest.param("scenario=vbe mode=160x120x32 io=mmio", id="vbe-32-mmio"),
    pytest.param("scenario=fb-fill mode=160x120x16 frames=3", id="fb-fill"),
    pytest.param("scenario=fb-blit mode=160x120x24 frames=4 src=fb", id="fb-blit"),
    pytest.param("scenario=fb-scroll mode=160x120x8 frames=3 lines=4", id="fb-scroll"),
]


def pyhvm_vga_missing() -> str | None:
    """Why pyhvm cannot run these yet, or None."""
    proc = subprocess.run([sys.executable, "-m", "pyhvm", "run", "--help"], capture_output=True,
                          text=True, timeout=30, cwd=REPO_ROOT)
    if "--vga" not in proc.stdout:
        return "pyhvm has no VGA device yet (`pyhvm run --help` does not mention --vga)"
    if "--qmp" not in proc.stdout:
        return "pyhvm has no QMP control socket (`pyhvm run --help` does not mention --qmp)"
    return None


def pyhvm_command(elf: Path, cmdline: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pyhvm", "run", "--kernel", str(elf), "--append", cmdline,
            "--max-seconds", str(BOOT_TIMEOUT - 5), *extra]


@pytest.fixture(scope="module")
def pyhvm_vga(guestkit: Path) -> Path:
    """The guest kit's ELF, once pyhvm is known to have a VGA device."""
    reason = pyhvm_vga_missing()
    if reason:
        pytest.skip(reason)
    return guestkit


@pytest.fixture(scope="module")
def pyhvm_shoot(pyhvm_vga: Path) -> Shoot:
    """shoot(cmdline, *pyhvm_args) -> (run, screenshot), with hold=1 appended."""
    pytest.importorskip("qemu.qmp", reason="qemu.qmp is not installed (pip install '.[test]')")

    def shoot(cmdline: str, *extra: str) -> tuple[guestkit.GuestRun, np.ndarray]:
        # A short directory: a Unix socket path must fit in 107 bytes.
        with tempfile.TemporaryDirectory(prefix="gkvga") as tmp:
            sock, image = Path(tmp) / "qmp.sock", Path(tmp) / "screen.ppm"
            command = pyhvm_command(pyhvm_vga, f"{cmdline} hold=1", *extra,
                                    "--qmp", f"unix:{sock},server,wait=off")
            ready = f"READY {vga_pattern.scenario_of(cmdline)}\n"
            try:
                run = guestkit.run_with_screendump(command, cmdline, sock, ready, image)
            except guestkit.ScreendumpUnsupported as exc:
                pytest.skip(f"pyhvm has no screendump QMP command yet ({exc})")
            assert image.exists(), f"no screenshot\n{run.describe()}"
            assert "Traceback" not in run.stderr, run.describe()
            return run, vga_pattern.read_ppm(image)

    return shoot


@pytest.mark.parametrize("cmdline", SHARED_CASES)
def test_scenario_screen_matches_the_expected_picture(pyhvm_shoot: Shoot, cmdline: str) -> None:
    run, image = pyhvm_shoot(cmdline, "--vga-mem", "shared")
    vga_pattern.check_scenario_screen(run, image, cmdline)


@pytest.mark.parametrize("cmdline", TRAP_CASES)
def test_scenario_screen_with_trapped_video_memory(pyhvm_shoot: Shoot, cmdline: str) -> None:
    run, image = pyhvm_shoot(cmdline, "--vga-mem", "trap")
    vga_pattern.check_scenario_screen(run, image, cmdline)


def test_driver_reads_video_memory_size_and_refuses_a_mode_too_big(pyhvm_vga: Path) -> None:
    """`--vga std,vgamem=4M`: VIDEO_MEMORY_64K says 64, and a 1280x1024x32 mode (5 MiB)
    is refused by the kit before it touches the device."""
    proc = subprocess.run(pyhvm_command(pyhvm_vga, "scenario=vbe mode=1280x1024x32",
                                        "--vga", "std,vgamem=4M"),
                          capture_output=True, text=True, timeout=BOOT_TIMEOUT,
                          stdin=subprocess.DEVNULL, cwd=REPO_ROOT)
    run = guestkit.GuestRun("scenario=vbe mode=1280x1024x32", proc.returncode, proc.stdout,
                            proc.stderr)
    assert run.status == STATUS_FAIL, run.describe()
    r = run.result("vbe")
    assert r["ok"] == "0" and r["error"] == "mode-too-big" and r.num("vram_kb") == 4096


def test_text_mode_pyhvm_leaves_at_reset(pyhvm_shoot: Shoot) -> None:
    """No BIOS runs before a direct kernel boot: with setmode=0 the kit writes its text
    into whatever mode the VMM left, which must be mode 03h with a font in plane 2."""
    cmdline = "scenario=vga-text setmode=0"
    run, image = pyhvm_shoot(cmdline)
    vga_pattern.check_scenario_screen(run, image, cmdline)
