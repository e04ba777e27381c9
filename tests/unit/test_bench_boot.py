"""`pyhvm bench boot` without KVM: milestones timed on a stand-in VMM's output, the exit
profile drawn from `x-pyhvm-stats`, the table, the commands and the CLI."""

from __future__ import annotations

import sys

import pytest

from pyhvm.bench import boot
from pyhvm.bench.common import BenchError
from pyhvm.cli import build_parser

FAKE_VMM = """
import sys, time
for text in ("SeaBIOS (version x)\\r\\n", "Booting from Hard Disk...\\r\\n",
             "GRUB loading.\\r\\n", "pyhvm guest kit\\nRESULT hello ok=1 args=1\\n"):
    sys.stdout.write(text); sys.stdout.flush(); time.sleep(0.05)
"""


def test_milestones_are_timed_in_order_from_the_console() -> None:
    timing = boot.time_chain([sys.executable, "-c", FAKE_VMM], None, None, timeout=30)
    assert timing.status == 0
    names = [name for name, _ in boot.MILESTONES]
    assert list(timing.milestones_s) == names
    times = [timing.milestones_s[n] for n in names]
    assert times == sorted(times) and times[-1] <= timing.exit_s
    assert timing.firmware_stats is None  # no QMP socket given


def test_a_hung_vmm_is_killed_at_the_timeout() -> None:
    with pytest.raises(BenchError, match="within"):
        boot.time_chain([sys.executable, "-c", "import time; time.sleep(30)"], None, None,
                        timeout=0.5)


def test_exit_profile_sums_ports_per_device_and_sorts() -> None:
    stats = {"exits": 120, "mmio_exits": 30,
             "pio_exits": {"0x01f0 ide0-command": 40, "0x01f7 ide0-command": 20,
                           "0x0402 debugcon": 25, "0x0092 unclaimed": 5},
             "other_exits": {"HltExit": 0}}
    assert boot.total_exits(stats) == 120
    assert boot.exit_profile(stats, top=3) == [
        {"what": "pio ide0-command", "exits": 60}, {"what": "mmio", "exits": 30},
        {"what": "pio debugcon", "exits": 25}]


def envelope(with_qemu: bool) -> dict:
    def run(vmm: str, scale: float) -> dict:
        metrics = {f"{name}_ms_reps": [scale * (i + 1) * 1000] for i, (name, _) in
                   enumerate(boot.MILESTONES)}
        metrics["exit_ms_reps"] = [scale * 5000]
        if vmm == "pyhvm":
            metrics["firmware_exit_profile"] = [{"what": "pio debugcon", "exits": 7}]
            metrics["firmware_exits"] = 9
        return {"config": {"vmm": vmm, "reps": 1}, "metrics": metrics}
    runs = [run("pyhvm", 1.0)] + ([run("qemu", 2.0)] if with_qemu else [])
    return {"bench": "boot", "host": {"kernel": "k", "python": "p"}, "runs": runs,
            "ratios": {"result_pyhvm_over_qemu": 0.5} if with_qemu else {}}


def test_render_shows_milestones_ratio_and_profile() -> None:
    text = boot.render(envelope(True))
    assert "banner" in text and "grub" in text and "result" in text
    assert "pyhvm/qemu: 0.50" in text
    assert "pio debugcon" in text and "9 exits" in text


def test_render_without_qemu_says_so() -> None:
    assert "pyhvm only" in boot.render(envelope(False))


def test_both_vmms_get_the_same_rom_and_leave_the_disk_alone(tmp_path) -> None:
    disk = tmp_path / "d.img"
    pyhvm = " ".join(boot.pyhvm_command(disk, tmp_path / "q.sock"))
    qemu = " ".join(boot.qemu_command(disk))
    assert boot.SEABIOS in pyhvm and boot.SEABIOS in qemu
    assert f"file={disk},if=ide,format=raw,readonly=on" in pyhvm
    assert f"file={disk},if=ide,format=raw,snapshot=on" in qemu
    assert "graphics=off" in qemu and "--vga none" in pyhvm


def test_cli_knows_bench_boot() -> None:
    args = build_parser().parse_args(["bench", "boot", "--disk", "x.img", "--json"])
    assert args.disk == "x.img" and args.json and args.reps == 1
