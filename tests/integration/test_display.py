"""Displays on a booted guest: a VNC viewer (the test client) sees what the guest drew and
its keys reach the guest through the i8042 and IRQ 1; png:PATH and `pyhvm screenshot`
write the screen; option mistakes are one line. The keyboard scenario is also run under
QEMU, with keys from QMP's send-key, to check the controller and scan codes against it."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from pyhvm.bench.common import run_watching
from pyhvm.control.qmp import parse_address
from pyhvm.control.top import SyncQmpClient
from tests.guestkit import (BOOT_TIMEOUT, REPO_ROOT, GuestRun, qemu_command,
                            qemu_missing_reason)
from tests.rfb_client import DESKTOP_SIZE, RAW, ZRLE, RfbClient
from tests.unit.test_png import decode_png
from tests.vga_pattern import pattern_rgb

pytestmark = pytest.mark.kvm

SHIFT_L, RETURN, UP = 0xFFE1, 0xFF0D, 0xFF52
# Shift+A, Return, Up (pressed) through the 8042's translation to set 1.
KEYS = [(SHIFT_L, True), (ord("A"), True), (ord("A"), False), (SHIFT_L, False),
        (RETURN, True), (RETURN, False), (UP, True)]
KEY_BYTES = "2a1e9eaa1c9ce048"


def free_vnc_display() -> int:
    """A display number N whose port 5900+N is free on loopback now."""
    for number in range(150, 400):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", 5900 + number))
            except OSError:
                continue
            return number
    raise AssertionError("no free VNC port between 6050 and 6300")


def boot_watching(elf: Path, cmdline: str, extra: list[str], marker: str,
                  on_marker: Callable[[], None], timeout: float = BOOT_TIMEOUT) -> GuestRun:
    """Boot under pyhvm; once the console shows `marker`, run `on_marker` (which must end
    the guest, or let it end). Its failure is raised after the VMM ended."""
    failure: list[BaseException] = []

    def guarded() -> None:
        try:
            on_marker()
        except BaseException as exc:
            failure.append(exc)

    command = [sys.executable, "-m", "pyhvm", "run", "--kernel", str(elf), "--append",
               cmdline, "--max-seconds", str(int(timeout) - 5), *extra]
    proc = run_watching(command, timeout, marker=marker, on_marker=guarded, cwd=REPO_ROOT)
    run = GuestRun(cmdline, proc.returncode, proc.stdout.decode("utf-8", "replace"),
                   proc.stderr.decode("utf-8", "replace"))
    if failure:
        raise AssertionError(f"{failure[0]!r}\n{run.describe()}") from failure[0]
    return run


def quit_vm(qmp: Path) -> None:
    client = SyncQmpClient(parse_address(str(qmp), server=False))
    try:
        client.execute("quit")
    except Exception:
        pass  # the VMM hangs up as it goes
    finally:
        client.close()


def test_a_vnc_viewer_sees_the_picture_and_a_screenshot_agrees(guestkit: Path,
                                                               tmp_path: Path) -> None:
    display = free_vnc_display()
    qmp = tmp_path / "qmp.sock"
    shot = tmp_path / "shot.png"
    seen: dict[str, object] = {}

    def look() -> None:
        try:
            viewer = RfbClient("127.0.0.1", 5900 + display)
            try:
                viewer.set_encodings(ZRLE, RAW, DESKTOP_SIZE)
                viewer.request(incremental=False)
                viewer.read_update()
                seen["size"] = (viewer.width, viewer.height)
                seen["viewer"] = viewer.fb.copy()
            finally:
                viewer.close()
            subprocess.run([sys.executable, "-m", "pyhvm", "screenshot", "--qmp", str(qmp),
                            str(shot)], check=True, timeout=30, cwd=REPO_ROOT)
        finally:
            quit_vm(qmp)

    run = boot_watching(guestkit, "scenario=vbe mode=640x480x32 hold=1",
                        ["--display", f"vnc:127.0.0.1:{display}", "--qmp",
                         f"unix:{qmp},server,wait=off"], "READY vbe", look)
    assert run.result("vbe").fields["ok"] == "1", run.describe()
    expected = pattern_rgb(640, 480)
    assert seen["size"] == (640, 480)
    assert np.array_equal(seen["viewer"], expected)
    assert np.array_equal(decode_png(shot.read_bytes())[0], expected)
    assert not qmp.exists()


@pytest.mark.parametrize("irqchip", ["kernel", "user"])
def test_keys_typed_in_a_vnc_viewer_reach_the_guest_on_irq1(guestkit: Path,
                                                            irqchip: str) -> None:
    display = free_vnc_display()

    def type_keys() -> None:
        viewer = RfbClient("127.0.0.1", 5900 + display)
        try:
            for keysym, down in KEYS:
                viewer.key(keysym, down)
            viewer.request(incremental=False)
            viewer.read_update()  # the server has read the keys before this answer
        finally:
            viewer.close()

    run = boot_watching(guestkit, "scenario=kbd n=8", ["--irqchip", irqchip, "--display",
                                                       f"vnc:127.0.0.1:{display}"],
                        "kbd: waiting for 8 bytes", type_keys)
    result = run.result("kbd")
    assert run.status == 0, run.describe()
    assert result.fields["hex"] == KEY_BYTES
    assert int(result.fields["irqs"]) >= 1


def test_png_display_holds_the_last_screen(guestkit: Path, tmp_path: Path) -> None:
    path = tmp_path / "screen.png"
    command = [sys.executable, "-m", "pyhvm", "run", "--kernel", str(guestkit), "--append",
               "scenario=vbe mode=320x200x32", "--display", f"png:{path}",
               "--max-seconds", "60"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=BOOT_TIMEOUT,
                          cwd=REPO_ROOT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the guest's success
    assert np.array_equal(decode_png(path.read_bytes())[0], pattern_rgb(320, 200))
    assert [p.name for p in tmp_path.iterdir()] == ["screen.png"]


@pytest.mark.parametrize("extra, needle", [
    (["--vga", "none", "--display", "vnc:127.0.0.1:150"], "no VGA"),
    (["--display", "web:http"], "web:[HOST:]PORT"),
    (["--display", "vnc:127.0.0.1:x"], "vnc:[HOST]:N"),
])
def test_display_option_mistakes_are_one_line(guestkit: Path, extra: list[str],
                                              needle: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pyhvm", "run", "--kernel", str(guestkit),
                           *extra], capture_output=True, text=True, timeout=60,
                          cwd=REPO_ROOT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 4
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_busy_vnc_port_is_one_line(guestkit: Path) -> None:
    display = free_vnc_display()
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 5900 + display))
        busy.listen(1)
        proc = subprocess.run([sys.executable, "-m", "pyhvm", "run", "--kernel",
                               str(guestkit), "--display", f"vnc:127.0.0.1:{display}"],
                              capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
                              stdin=subprocess.DEVNULL)
    assert proc.returncode == 4
    assert "cannot listen" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# --- the same keyboard on QEMU --------------------------------------------------------------

@pytest.mark.qemu
def test_kbd_scenario_matches_qemu_probe_and_scan_codes(guestkit: Path,
                                                        tmp_path: Path) -> None:
    """QEMU's i8042 and PS/2 keyboard answer the probe alike, and its send-key of
    shift+a gives the scan codes a VNC viewer's Shift, A gives here."""
    reason = qemu_missing_reason()
    if reason:
        pytest.skip(reason)
    from qemu.qmp import QMPClient  # a test dependency

    qmp = tmp_path / "qemu-qmp.sock"

    async def send_keys() -> None:
        client = QMPClient("kbd-crosscheck")
        await asyncio.wait_for(client.connect(str(qmp)), 20)
        try:
            await asyncio.wait_for(client.execute("send-key", {"keys": [
                {"type": "qcode", "data": "shift"}, {"type": "qcode", "data": "a"}]}), 20)
        finally:
            await client.disconnect()

    command = qemu_command(guestkit, "scenario=kbd n=4",
                           extra_args=["-qmp", f"unix:{qmp},server=on,wait=off"])
    proc = run_watching(command, 60, marker="kbd: waiting for 4 bytes",
                        on_marker=lambda: asyncio.run(send_keys()))
    qemu = GuestRun("scenario=kbd n=4", proc.returncode, proc.stdout.decode(errors="replace"),
                    proc.stderr.decode(errors="replace"))
    display = free_vnc_display()

    def type_keys() -> None:
        viewer = RfbClient("127.0.0.1", 5900 + display)
        try:
            for keysym, down in KEYS[:4]:
                viewer.key(keysym, down)
            viewer.request(incremental=False)
            viewer.read_update()
        finally:
            viewer.close()

    ours = boot_watching(guestkit, "scenario=kbd n=4",
                         ["--display", f"vnc:127.0.0.1:{display}"],
                         "kbd: waiting for 4 bytes", type_keys)
    assert qemu.status == 0, qemu.describe()
    assert ours.status == 0, ours.describe()
    theirs, mine = qemu.result("kbd").fields, ours.result("kbd").fields
    assert mine["hex"] == theirs["hex"] == KEY_BYTES[:8]
    for field in ("selftest", "iftest", "reset", "ident", "set", "leds", "echo", "enable"):
        assert mine[field] == theirs[field], field
