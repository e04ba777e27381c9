"""The std VGA under KVM: the screen a directly booted kernel finds, in both `--vga-mem`
placements, and the guest kit's VGA/VBE scenarios (same bytes read back whether the
framebuffer traps or is shared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyhvm.machine.config import MachineConfig
from pyhvm.machine.display import LFB_SLOT
from pyhvm.machine.pc import Machine
from tests.guestkit import STATUS_OK, GuestRun, boot_pyhvm

pytestmark = pytest.mark.kvm

GREY = (0xA8, 0xA8, 0xA8)  # attribute 7 through the EGA palette


def run_in_process(elf: Path, cmdline: str, **config: object) -> Machine:
    machine = Machine(MachineConfig(kernel=str(elf), append=cmdline, serial="none",
                                    max_seconds=30, **config))  # type: ignore[arg-type]
    try:
        status = machine.run()
    except BaseException:
        machine.close()
        raise
    assert status == 1, machine.stop_reason
    return machine


@pytest.mark.parametrize("placement", ["shared", "trap"])
def test_direct_boot_leaves_a_blank_80x25_text_screen_with_the_cursor_home(
        guestkit: Path, placement: str) -> None:
    machine = run_in_process(guestkit, "scenario=hello", vga_mem=placement)
    try:
        assert machine.vga is not None
        assert (LFB_SLOT in machine.vga._slots) == (placement == "shared")
        with machine.io_lock:
            frame = machine.vga.frame()
        assert frame.pixels.shape == (400, 720, 3)
        cursor = np.zeros((400, 720), bool)
        cursor[13:15, 0:9] = True  # mode 03h cursor: scan lines 13-14 of cell (0, 0)
        assert (frame.pixels[cursor] == GREY).all()
        assert not frame.pixels[~cursor].any()
    finally:
        machine.close()


def test_vga_none_leaves_pci_slot_2_empty_and_the_window_as_ram(guestkit: Path) -> None:
    machine = run_in_process(guestkit, "scenario=hello", vga="none")
    try:
        assert machine.vga is None
        assert machine.chipset.host.function_at(2, 0) is None
        assert machine.buses.mmio.find(0xA0000) is None
    finally:
        machine.close()


def scenario(elf: Path, cmdline: str, *extra: str) -> GuestRun:
    run = boot_pyhvm(elf, cmdline, *extra, timeout=90)
    errors = [r for r in run.results if r.scenario == "error"]
    if errors and "unknown-scenario" in errors[0].words:
        pytest.skip(f"the guest kit has no {cmdline.split()[0]} scenario (not built yet)")
    assert run.status == STATUS_OK, run.describe()
    return run


def test_vbe_scenario_reads_back_the_same_bytes_trapped_and_shared(guestkit: Path) -> None:
    results = {}
    for placement in ("shared", "trap"):
        run = scenario(guestkit, "scenario=vbe mode=320x200x32", "--vga-mem", placement)
        results[placement] = run.result("vbe").fields
    shared, trap = results["shared"], results["trap"]
    assert shared["ok"] == trap["ok"] == "1"
    assert shared["sum"] == trap["sum"]
    assert (shared["lfb"], shared["mmio"], shared["id"], shared["vram_kb"]) == \
        ("0xfd000000", "0xfebf0000", "0xb0c5", "16384")


def test_vga_text_scenario_in_both_placements(guestkit: Path) -> None:
    sums = set()
    for placement in ("shared", "trap"):
        run = scenario(guestkit, "scenario=vga-text", "--vga-mem", placement)
        fields = run.result("vga-text").fields
        assert fields["ok"] == "1"
        sums.add(fields["sum"])
    assert len(sums) == 1
