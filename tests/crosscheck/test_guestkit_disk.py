"""The guest kit's ATA driver on QEMU's PIIX3 IDE: the reference for tests/integration/test_disk.py.

QEMU gets a 64 MiB sparse raw image from tmp_path as `-drive file=IMG,if=ide,format=raw`
(the primary master). These tests pin semantics (ok=1, sizes, the data in the image), not
timings. QEMU refuses read-only IDE disks ("Block node is read-only"), so the read-only
and kill-after-flush checks are pyhvm's alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import guestkit
from tests import guestkit_disk as gd
from tests.guestkit import STATUS_FAIL, STATUS_OK, Result

pytestmark = pytest.mark.qemu

TIMEOUT = 120  # seconds per boot (SeaBIOS first; PIO moves one dword per exit)


@pytest.fixture
def qemu_disk(guestkit_elf: Path, tmp_path: Path):
    """boot(cmdline) -> (GuestRun, image) under QEMU with a fresh image on ide0 master."""
    reason = guestkit.qemu_missing_reason()
    if reason:
        pytest.skip(reason)
    image = gd.make_image(tmp_path / "disk.img")

    def boot(cmdline: str) -> tuple[guestkit.GuestRun, Path]:
        run = guestkit.run_qemu(guestkit_elf, cmdline, timeout=TIMEOUT,
                                extra_args=("-drive", gd.drive_arg(image)))
        return run, image

    return boot


def _assert_clean_interrupts(r: Result) -> None:
    assert r.num("irqs") > 0 and r.num("no_irq") == 0 and r.num("bm_noint") == 0


def test_identify_finds_piix3_ide_and_the_qemu_harddisk(qemu_disk) -> None:
    run, _ = qemu_disk("scenario=disk-identify")
    assert run.status == STATUS_OK, run.describe()
    r = run.result("disk-identify")
    assert r["ok"] == "1"
    assert r.num("sectors") == r.num("sectors28") == r.num("sectors48") == gd.IMAGE_SECTORS
    assert r["lba48"] == "1" and r["dma"] == "1" and r["flush_ext"] == "1"
    assert r["model"] == "QEMU_HARDDISK"
    assert r["pci"] == "00:01.1" and r["id"] == "8086:7010"
    assert r.num("pci_cmd") & 0x5 == 0x5  # the driver turned bus mastering on
    _assert_clean_interrupts(r)


@pytest.mark.parametrize("args,mb", [("mode=both", 4), ("mode=dma mb=8 seed=3", 8),
                                     ("mode=pio mb=1 seed=5", 1),
                                     ("mode=both mb=2 lba48=1 seed=9", 2)])
def test_verify_writes_flushes_and_reads_back_the_pattern(qemu_disk, args: str,
                                                          mb: int) -> None:
    run, image = qemu_disk(f"scenario=disk-verify {args}")
    assert run.status == STATUS_OK, run.describe()
    r = run.result("disk-verify")
    assert r["ok"] == "1" and r.num("errors") == 0 and r.num("bad_sectors") == 0
    assert r.num("mb") == mb and r.num("sectors") == mb * 2048
    assert r["checksum"] == r["expected"]
    _assert_clean_interrupts(r)
    expected = gd.pattern(r.num("seed"), 0, mb * 2048)
    assert int(r["checksum"], 16) == gd.fnv1a64(expected)  # the same number as on pyhvm
    assert gd.first_difference(gd.read_sectors(image, 0, mb * 2048), expected) is None


@pytest.mark.parametrize("op", ["read", "write"])
@pytest.mark.parametrize("size,mb", [(4, 1), (64, 8), (128, 8), (32768, 64)])
def test_seq_moves_every_byte_in_commands_of_the_given_size(qemu_disk, op: str, size: int,
                                                            mb: int) -> None:
    run, image = qemu_disk(f"scenario=disk-seq op={op} size={size} mb={mb}")
    assert run.status == STATUS_OK, run.describe()
    r = run.result("disk-seq")
    commands = mb * 1024 // size
    assert r["ok"] == "1" and r.num("commands") == commands
    assert r.num("bytes") == mb << 20
    assert r.num("dma_cmds") == commands + 1  # and the untimed warm-up command
    if size * 2 > 256:
        assert r.num("lba48_cmds") == commands + 1
    _assert_clean_interrupts(r)
    if op == "write":
        count = size * 2
        head = gd.pattern(1, 0, min(count, 8))
        for lba in (0, (commands - 1) * count):
            assert gd.read_sectors(image, lba, min(count, 8)) == head


def test_overlap_runs_io_alone_compute_alone_and_both(qemu_disk) -> None:
    run, _ = qemu_disk("scenario=disk-overlap mb=16 size=256")
    assert run.status == STATUS_OK, run.describe()
    r = run.result("disk-overlap")
    assert r["ok"] == "1"
    assert r.num("bytes") == 16 << 20 and r.num("commands") == 64
    assert r.num("irqs_together") == 64 and r.num("work") > 0
    assert r.num("total_cycles") == max(r.num("io_cycles"), r.num("compute_cycles"))
    _assert_clean_interrupts(r)


def test_without_interrupts_the_driver_polls_and_reports_failure(qemu_disk) -> None:
    run, _ = qemu_disk("scenario=disk-verify mode=both mb=1 noirq=1 irq_timeout_ms=300")
    assert run.status == STATUS_FAIL, run.describe()
    r = run.result("disk-verify")
    assert r["ok"] == "0" and r.num("no_irq") == 1 and r.num("irqs") == 0
    assert r.num("errors") == 0 and r["checksum"] == r["expected"]
