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

# Scenario command lines (hold=1 is appended). Small modes and few frames: the guest's
# CPL 0 code runs in KVM's emulator on these hosts (its drawing loops run at CPL 3).
SCREEN_CASES = [
    pytest.param("scenario=vga-text", id="vga-text"),
    pytest.param("scenario=vbe mode=640x480x8", id="vbe-8"),
    pytest.param("scenario=vbe mode=640x480x16", id="vbe-16"),
    pytest.param("scenario=vbe mode=640x480x24", id="vbe-24"),
    pytest.param("scenario=vbe mode=640x480x32", id="vbe-32"),
    pytest.param("scenario=vbe mode=800x600x15 io=mmio", id="vbe-15-mmio"),
    pytest.param("scenario=fb-fill mode=640x480x32 ms=100", id="fb-fill"),
    pytest.param("scenario=fb-blit mode=640x480x16 frames=20 src=fb", id="fb-blit-fb"),
    pytest.param("scenario=fb-blit mode=640x480x32 frames=20 src=ram", id="fb-blit-ram"),
    pytest.param("scenario=fb-scroll mode=640x480x8 frames=20 lines=8", id="fb-scroll-pixel"),
    pytest.param("scenario=fb-scroll kind=text frames=10", id="fb-scroll-text"),
]


def scenario_of(cmdline: str) -> str:
    return dict(tok.split("=", 1) for tok in cmdline.split())["scenario"]


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
            run = guestkit.run_with_screendump(command, cmdline, sock,
                                               f"READY {scenario_of(cmdline)}\n", image)
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


def check_screen(run: guestkit.GuestRun, image: np.ndarray, cmdline: str) -> None:
    """What a screen scenario must show and say, on any VMM with a std VGA: its RESULT says
    ok, its checksum matches the expected video memory, the screenshot shows the expected
    picture (or text cells), and the fields it reports agree with its arguments."""
    name = scenario_of(cmdline)
    args = dict(tok.split("=", 1) for tok in cmdline.split())
    r = run.result(name)
    assert r["ok"] == "1", run.describe()
    expected = vga_pattern.expected_screen(name, r.fields)
    assert r.num("sum") == expected.checksum, \
        f"video memory checksum {r['sum']} != expected {expected.checksum:#018x}"
    if expected.cells is not None:
        problems = vga_pattern.check_text_screen(image, expected.cells, expected.cursor)
        assert not problems, "\n".join(problems[:20])
    else:
        assert expected.picture is not None
        diff = vga_pattern.describe_difference(image, expected.picture, expected.bits)
        assert diff == "identical", diff

    if name == "vga-text":
        assert (r.num("cursor_row"), r.num("cursor_col")) == (vga_pattern.CURSOR_ROW,
                                                             vga_pattern.CURSOR_COL)
        assert (r.num("cursor_start"), r.num("cursor_end")) == (vga_pattern.CURSOR_FIRST,
                                                               vga_pattern.CURSOR_LAST)
        assert (r.num("char_width"), r.num("char_height")) == (9, 16)
        assert image.shape == (25 * 16, 80 * 9, 3)      # mode 03h: 720x400
        return
    if "mode" in args:
        assert r["mode"] == args["mode"]
    if name == "vbe":
        w, h, bpp = vga_pattern.parse_mode(r["mode"])
        assert r.num("pitch") == w * vga_pattern.bytes_per_pixel(bpp)
        assert r.num("bytes") == r.num("pitch") * h
        assert r["dac_ok"] == "1" and r["io"] == args.get("io", "port")
        assert r.num("lfb") and 0xB0C0 <= r.num("id") <= 0xB0CF and r.num("vram_kb") >= 1024
        return
    assert r.num("frames") >= 1 and r.num("cycles") > 0
    if "frames" in args:
        assert r.num("frames") == int(args["frames"])
    assert float(r["mbps"]) > 0 and float(r["fps"]) > 0


@pytest.mark.parametrize("cmdline", SCREEN_CASES)
def test_scenario_screen_matches_the_expected_picture(qemu_shoot: Shoot, cmdline: str) -> None:
    run, image = qemu_shoot(cmdline)
    check_screen(run, image, cmdline)


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
