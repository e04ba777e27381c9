"""The guest kit's ATA driver against pyhvm's PIIX3 IDE, in both DMA placements.

Each test boots the kit with a raw image (64 MiB, sparse, in tmp_path) on the primary
master: `--drive file=IMG,if=ide,format=raw` and `--ide-dma sync|concurrent`. The guest
finds the controller on PCI, runs IDENTIFY, PIO and bus-master DMA commands with IRQ 14
completion (guest/src/ata.c), and reports RESULT lines; after a run the test reads the image
from the host side and checks it holds what the guest wrote (tests/guestkit_disk.py).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import guestkit_disk as gd
from tests.guestkit import (REPO_ROOT, STATUS_FAIL, STATUS_OK, GuestRun, Result, boot_pyhvm,
                            parse_result_line)

pytestmark = pytest.mark.kvm

DMA_PLACEMENTS = ["sync", "concurrent"]
TIMEOUT = 90  # seconds per boot; PIO moves one dword per exit at CPL 0 (~1 s per 1000 sectors)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return gd.make_image(tmp_path / "disk.img")


def boot_disk(elf: Path, image: Path, cmdline: str, placement: str, readonly: bool = False,
              timeout: float = TIMEOUT) -> GuestRun:
    return boot_pyhvm(elf, cmdline, "--drive", gd.drive_arg(image, readonly), "--ide-dma",
                      placement, timeout=timeout)


def assert_clean_interrupts(result: Result) -> None:
    """Every command completed through IRQ 14, with the bus-master Interrupt bit set."""
    assert result.num("irqs") > 0
    assert result.num("no_irq") == 0
    assert result.num("bm_noint") == 0


@pytest.mark.parametrize("placement", DMA_PLACEMENTS)
def test_identify_reports_capacity_model_and_dma(guestkit: Path, image: Path,
                                                 placement: str) -> None:
    run = boot_disk(guestkit, image, "scenario=disk-identify", placement)
    assert run.status == STATUS_OK, run.describe()
    r = run.result("disk-identify")
    assert r["ok"] == "1"
    assert r.num("sectors") == r.num("sectors28") == r.num("sectors48") == gd.IMAGE_SECTORS
    assert r["lba48"] == "1" and r["dma"] == "1" and r["flush_ext"] == "1"
    assert r["model"] == "PYHVM_ATA_DISK"
    assert r["integrity"] == "ok"
    assert r["pci"] == "00:01.1" and r["id"] == "8086:7010"
    assert r.num("pci_cmd") & 0x5 == 0x5  # I/O decode and bus mastering on
    assert_clean_interrupts(r)


@pytest.mark.parametrize("placement", DMA_PLACEMENTS)
@pytest.mark.parametrize("args,mb", [("mode=both mb=4", 4), ("mode=dma mb=8 seed=3", 8),
                                     ("mode=pio mb=1 seed=5", 1),
                                     ("mode=both mb=2 lba48=1 seed=9", 2)])
def test_verify_writes_flushes_and_reads_back_the_pattern(guestkit: Path, image: Path,
                                                          placement: str, args: str,
                                                          mb: int) -> None:
    run = boot_disk(guestkit, image, f"scenario=disk-verify {args}", placement)
    assert run.status == STATUS_OK, run.describe()
    r = run.result("disk-verify")
    seed = r.num("seed")
    assert r["ok"] == "1" and r.num("errors") == 0 and r.num("bad_sectors") == 0
    assert r.num("mb") == mb and r.num("sectors") == mb * 2048
    assert r["checksum"] == r["expected"]
    assert_clean_interrupts(r)
    if "mode=pio" not in args:
        assert r.num("lba48_cmds") >= 2  # the > 256-sector DMA EXT write and read
    if "lba48=1" in args:
        assert r.num("lba48_cmds") == r.num("ata_cmds") - 2  # all but IDENTIFY and FLUSH
    # The host sees exactly the pattern in the region, and nothing written past it.
    data = gd.read_sectors(image, 0, mb * 2048)
    expected = gd.pattern(seed, 0, mb * 2048)
    assert gd.first_difference(data, expected) is None
    assert int(r["checksum"], 16) == gd.fnv1a64(expected)
    assert gd.read_sectors(image, mb * 2048, 64) == bytes(64 * gd.SECTOR)


@pytest.mark.parametrize("placement", DMA_PLACEMENTS)
@pytest.mark.parametrize("op", ["read", "write"])
@pytest.mark.parametrize("size,mb", [(4, 1), (64, 8), (128, 8), (32768, 64)])
def test_seq_moves_every_byte_in_commands_of_the_given_size(guestkit: Path, image: Path,
                                                            placement: str, op: str,
                                                            size: int, mb: int) -> None:
    run = boot_disk(guestkit, image, f"scenario=disk-seq op={op} size={size} mb={mb}",
                    placement)
    assert run.status == STATUS_OK, run.describe()
    r = run.result("disk-seq")
    commands = mb * 1024 // size
    assert r["ok"] == "1" and r["op"] == op
    assert r.num("commands") == commands
    assert r.num("bytes") == commands * size * 1024 == mb << 20
    assert r.num("cycles") > 0 and float(r["mbps"]) > 0
    assert r.num("dma_cmds") == commands + 1  # and the untimed warm-up command
    if size * 2 > 256:
        assert r.num("lba48_cmds") == commands + 1
    assert_clean_interrupts(r)
    if op == "write":  # every command wrote the first command's pattern at its own LBAs
        count = size * 2
        head = gd.pattern(1, 0, min(count, 8))
        for lba in (0, (commands - 1) * count):
            assert gd.read_sectors(image, lba, min(count, 8)) == head


@pytest.mark.parametrize("placement", DMA_PLACEMENTS)
def test_overlap_runs_io_alone_compute_alone_and_both(guestkit: Path, image: Path,
                                                      placement: str) -> None:
    run = boot_disk(guestkit, image, "scenario=disk-overlap mb=16 size=256", placement)
    assert run.status == STATUS_OK, run.describe()
    r = run.result("disk-overlap")
    assert r["ok"] == "1"
    assert r.num("bytes") == 16 << 20 and r.num("commands") == 64
    assert r.num("irqs_together") == 64
    assert r.num("work") > 0
    assert r.num("total_cycles") == max(r.num("io_cycles"), r.num("compute_cycles"))
    assert_clean_interrupts(r)
    if placement == "sync":
        # Each transfer runs inside the bus-master start, in the IRQ 14 handler: IRQ 14 is
        # pending again when the handler returns, so the compute only starts once the
        # reads are done (the design being measured, not a timing accident).
        assert r["io_done_first"] == "1"
        assert r.num("compute_cycles") > r.num("io_cycles")


@pytest.mark.parametrize("placement", DMA_PLACEMENTS)
def test_read_only_drive_refuses_writes_with_abort(guestkit: Path, image: Path,
                                                   placement: str) -> None:
    seed = 0x5EED
    gd.write_sectors(image, 0, gd.pattern(seed, 0, 2048))
    before = gd.read_sectors(image, 0, gd.IMAGE_SECTORS)
    run = boot_disk(guestkit, image, f"scenario=disk-verify expect_ro=1 mb=1 seed={seed}",
                    placement, readonly=True)
    assert run.status == STATUS_OK, run.describe()
    r = run.result("disk-verify")
    assert r["ok"] == "1" and r["ro"] == "1"
    assert r.num("write_attempts") == 2 and r.num("rejected") == 2  # one PIO, one DMA
    assert r.num("bad_sectors") == 0 and r["checksum"] == r["expected"]
    assert "read-only pio write: device-error status=0x51 error=0x04" in run.console
    assert "read-only dma write: device-error status=0x51 error=0x04" in run.console
    assert gd.read_sectors(image, 0, gd.IMAGE_SECTORS) == before


def test_read_only_violation_fails_the_scenario_when_writes_were_expected(
        guestkit: Path, image: Path) -> None:
    run = boot_disk(guestkit, image, "scenario=disk-verify mode=dma mb=1", "concurrent",
                    readonly=True)
    assert run.status == STATUS_FAIL, run.describe()
    r = run.result("disk-verify")
    assert r["ok"] == "0" and r.num("write_errors") > 0


@pytest.mark.parametrize("placement", DMA_PLACEMENTS)
def test_without_interrupts_the_driver_polls_and_reports_failure(guestkit: Path, image: Path,
                                                                 placement: str) -> None:
    # noirq=1 leaves IRQ 14 masked at the PIC: the first wait times out, the driver sets
    # nIEN and polls every command to the end. The data is right, the run is not.
    run = boot_disk(guestkit, image,
                    "scenario=disk-verify mode=both mb=1 noirq=1 irq_timeout_ms=300", placement)
    assert run.status == STATUS_FAIL, run.describe()
    r = run.result("disk-verify")
    assert r["ok"] == "0" and r.num("no_irq") == 1 and r.num("irqs") == 0
    assert r.num("errors") == 0 and r["checksum"] == r["expected"]
    assert "ata: no interrupt for 300 ms (command 0xec lba 0): polling" in run.console


def _run_until_result(args: list[str], scenario: str, timeout: float
                      ) -> tuple[dict[str, str], str]:
    """Start pyhvm, wait for `RESULT <scenario>`, SIGKILL it at once; (fields, console)."""
    proc = subprocess.Popen([sys.executable, "-m", "pyhvm", "run", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    assert proc.stdout is not None
    out = bytearray()
    found = None
    deadline = time.monotonic() + timeout
    try:
        while found is None and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out.extend(chunk)
            complete = out[:out.rfind(b"\n") + 1].decode("utf-8", "replace")
            for line in complete.splitlines():  # whole lines only
                result = parse_result_line(line)
                if result is not None and result.scenario == scenario:
                    found = result
                    break
        if found is not None:
            proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
    console = out.decode("utf-8", "replace")
    assert found is not None, f"no RESULT {scenario} within {timeout}s:\n{console}"
    assert proc.returncode == -signal.SIGKILL, console
    return found.fields, console


@pytest.mark.parametrize("placement,mode", [("sync", "dma"), ("concurrent", "dma"),
                                            ("concurrent", "pio")])
def test_flushed_data_survives_sigkill_of_the_vmm(guestkit: Path, image: Path,
                                                  placement: str, mode: str) -> None:
    args = ["--kernel", str(guestkit), "--append", f"scenario=disk-flush mode={mode}",
            "--drive", gd.drive_arg(image), "--ide-dma", placement, "--max-seconds", "60"]
    fields, console = _run_until_result(args, "disk-flush", timeout=TIMEOUT)
    assert fields["done"] == "1", console
    seed = int(fields["pattern"], 16)
    assert int(fields["sectors"]) == 64
    assert gd.read_sectors(image, 0, 64) == gd.pattern(seed, 0, 64)
    assert gd.read_sectors(image, 64, 8) == bytes(8 * gd.SECTOR)
