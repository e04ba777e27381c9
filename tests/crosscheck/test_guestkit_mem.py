"""The memory scenarios under QEMU (KVM): the same RESULT lines as under pyhvm
(tests/integration/test_memory.py), with QEMU's own RAM backings, a 5 GiB guest, and
page tables that point at no RAM."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from tests import guestkit
from tests.guestkit import STATUS_FAIL, STATUS_OK, STATUS_USAGE

pytestmark = pytest.mark.qemu

GiB = 1 << 30
MiB = 1 << 20


@pytest.fixture(scope="session")
def qemu_mem(guestkit_elf):
    """boot(cmdline, *qemu_args) -> GuestRun under QEMU with extra arguments."""
    reason = guestkit.qemu_missing_reason()
    if reason:
        pytest.skip(reason)

    def boot(cmdline: str, *extra: str, memory_mib: int = 128) -> guestkit.GuestRun:
        command = guestkit.qemu_command(guestkit_elf, cmdline, memory_mib=memory_mib,
                                        extra_args=extra)
        proc = subprocess.run(command, capture_output=True, timeout=90,
                              stdin=subprocess.DEVNULL)
        return guestkit.GuestRun(cmdline, proc.returncode,
                                 proc.stdout.decode("utf-8", "replace"),
                                 proc.stderr.decode("utf-8", "replace"))

    return boot


QEMU_BACKINGS: dict[str, Sequence[str]] = {
    "default": (),
    "memfd": ("-object", "memory-backend-memfd,id=ram0,size=128M",
              "-machine", "memory-backend=ram0"),
    "prealloc": ("-mem-prealloc",),
}


# Each QEMU boot takes seconds (SeaBIOS): every scenario on the default backing, one on
# each other backing.
CASES = [("default", "scenario=mem-touch mb=8"),
         ("default", "scenario=mem-random mb=8 reads=20000"),
         ("default", "scenario=mem-random mb=8 pages=2m reads=20000")] + \
        [(backing, "scenario=mem-touch mb=8 pages=2m") for backing in QEMU_BACKINGS]


@pytest.mark.parametrize("backing,cmdline", CASES)
def test_touch_and_random_reads_with_each_backing(qemu_mem, backing: str, cmdline: str
                                                  ) -> None:
    run = qemu_mem(cmdline, *QEMU_BACKINGS[backing])
    assert run.status == STATUS_OK, run.describe()
    name = cmdline.split()[0].split("=")[1]
    result = run.result(name)
    assert result.num("cpl") == 3
    assert result["pages"] == ("2m" if "pages=2m" in cmdline else "4k")
    if name == "mem-touch":
        assert result.num("mismatches") == 0 and result.num("touched") == 2048
    else:
        assert result.num("reads") == 20000 and float(result["ns_per_read"]) > 0


def test_ptchurn(qemu_mem) -> None:
    run = qemu_mem("scenario=mem-ptchurn n=20 spaces=3 pages=8")
    assert run.status == STATUS_OK, run.describe()
    result = run.result("mem-ptchurn")
    assert result.num("mismatches") == 0 and result.num("n") == 20
    for key in ("syscall_ns", "switch_ns", "pte_write_ns", "map_cycle_ns", "invlpg_ns"):
        assert float(result[key]) > 0


def test_ram_above_4g(qemu_mem) -> None:
    run = qemu_mem("scenario=mem-touch mb=16 high=1", memory_mib=5 * 1024)
    assert run.status == STATUS_OK, run.describe()
    result = run.result("mem-touch")
    assert result.num("phys") >= 4 * GiB and result.num("mismatches") == 0


def test_page_tables_pointing_at_no_ram(qemu_mem) -> None:
    run = qemu_mem(f"scenario=mem-touch mb=2 phys={8 * GiB:#x} force=1")
    assert run.status == STATUS_FAIL, run.describe()
    result = run.result("mem-touch")
    assert result.num("ram") == 0 and result.num("mismatches") == 512


@pytest.mark.parametrize("cmdline,key", [
    ("scenario=mem-touch mb=3 pages=2m", "mb"),
    ("scenario=mem-random pages=1g", "pages"),
    ("scenario=mem-ptchurn spaces=1", "spaces"),
])
def test_bad_arguments(qemu_mem, cmdline: str, key: str) -> None:
    run = qemu_mem(cmdline)
    assert run.status == STATUS_USAGE, run.describe()
    assert run.result("error")["key"] == key


def test_more_than_the_guest_has(qemu_mem) -> None:
    run = qemu_mem("scenario=mem-touch mb=512")
    assert run.status == STATUS_USAGE, run.describe()
    error = run.result("error")
    assert error.words == ("no-memory",) and error.num("need_mb") == 512
