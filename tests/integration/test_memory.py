"""Guest RAM under KVM: every backing this host offers runs the memory scenarios, a 5 GiB
guest sees RAM above 4 GiB where the memory map says, page tables pointing at no RAM are
the guest's problem (never the VMM's), the dirty log sees a guest's writes, and the
kernel's kvmmmu events are counted for a traced run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyhvm.machine.config import MachineConfig
from pyhvm.machine.pc import Machine
from pyhvm.memory_backing import BackingSpec, default_huge_page_size, huge_pool, mount_of
from pyhvm.memory_dirty import DirtyLog
from tests.guestkit import STATUS_FAIL, STATUS_OK, STATUS_USAGE, boot_pyhvm, run_pyhvm

pytestmark = pytest.mark.kvm

GiB = 1 << 30
MiB = 1 << 20
FOUR_GIB = 4 * GiB
HUGETLBFS = "/dev/hugepages"


def _huge_pages_reason(need_bytes: int) -> str | None:
    size = default_huge_page_size()
    pool = huge_pool(size)
    if pool.available * size < need_bytes:
        return (f"needs {need_bytes // size} free huge pages of {size >> 10} kB, the host "
                f"has {pool.available} (set /sys/kernel/mm/hugepages/.../nr_hugepages)")
    return None


def _backing_args(name: str, tmp_path: Path) -> list[str]:
    if name == "hugetlbfs":
        mount = mount_of(HUGETLBFS)
        if not os.path.isdir(HUGETLBFS) or mount is None or mount[1] != "hugetlbfs":
            pytest.skip(f"no hugetlbfs mounted at {HUGETLBFS}")
    if name in ("hugetlbfs", "memfd,hugepages=on"):
        reason = _huge_pages_reason(64 * MiB)
        if reason:
            pytest.skip(reason)
    return {"anon": ["--mem-backing", "anon"],
            "anon-thp-off": ["--mem-backing", "anon", "--mem-thp", "off"],
            "anon-prealloc": ["--mem-backing", "anon", "--mem-prealloc"],
            "memfd": ["--mem-backing", "memfd"],
            "memfd-prealloc": ["--mem-backing", "memfd", "--mem-prealloc"],
            "memfd,hugepages=on": ["--mem-backing", "memfd,hugepages=on"],
            "hugetlbfs": ["--mem-backing", f"hugetlbfs:{HUGETLBFS}"],
            "file": ["--mem-backing", f"file:{tmp_path}"]}[name]


@pytest.mark.parametrize("backing", ["anon", "anon-thp-off", "anon-prealloc", "memfd",
                                     "memfd-prealloc", "file", "memfd,hugepages=on",
                                     "hugetlbfs"])
def test_every_backing_runs_the_memory_scenarios(guestkit: Path, tmp_path: Path,
                                                 backing: str) -> None:
    extra = ["-m", "64M", *_backing_args(backing, tmp_path)]
    for cmdline in ("scenario=mem-touch mb=8", "scenario=mem-touch mb=8 pages=2m",
                    "scenario=mem-random mb=8 pages=2m reads=20000"):
        run = boot_pyhvm(guestkit, cmdline, *extra)
        assert run.status == STATUS_OK, run.describe()
        name = cmdline.split()[0].split("=")[1]
        result = run.result(name)
        assert result.num("cpl") == 3
        if name == "mem-touch":
            assert result.num("mismatches") == 0 and result.num("touched") == 2048
    assert list(tmp_path.iterdir()) == []  # file:DIR left nothing behind


def test_ptchurn_switches_address_spaces_and_remaps_pages(guestkit: Path) -> None:
    run = boot_pyhvm(guestkit, "scenario=mem-ptchurn n=20 spaces=3 pages=8")
    assert run.status == STATUS_OK, run.describe()
    result = run.result("mem-ptchurn")
    assert result.num("mismatches") == 0 and result.num("cpl") == 3
    for key in ("syscall_ns", "switch_ns", "pte_write_ns", "map_cycle_ns", "invlpg_ns"):
        assert float(result[key]) > 0


def test_a_5g_guest_sees_ram_above_4g_where_the_maps_say(guestkit: Path,
                                                         tmp_path: Path) -> None:
    """-m 5G: 3 GiB below the PCI hole, 2 GiB from 4 GiB in a second memslot. The
    Multiboot map the guest reads names the same ranges, and a guest writing RAM above
    4 GiB through its own page tables reads back what it wrote."""
    stats = tmp_path / "stats.json"
    hello = boot_pyhvm(guestkit, "scenario=hello", "-m", "5G", "--stats", str(stats))
    assert hello.status == STATUS_OK, hello.describe()
    ram = [(int(m[1], 16), int(m[2], 16)) for m in
           re.finditer(r"mmap: base=(0x[0-9a-f]+) len=(0x[0-9a-f]+) type=1", hello.console)]
    regions = json.loads(stats.read_text())["memory"]["regions"]
    assert [(r["gpa"], r["size"]) for r in regions] == [(0, 3 * GiB), (FOUR_GIB, 2 * GiB)]
    assert (FOUR_GIB, 2 * GiB) in ram
    assert all(any(r["gpa"] <= base and base + size <= r["gpa"] + r["size"] for r in regions)
               for base, size in ram)
    assert sum(size for _, size in ram) > 5 * GiB - 2 * MiB  # all but the low BIOS area

    high = boot_pyhvm(guestkit, "scenario=mem-touch mb=16 high=1", "-m", "5G")
    assert high.status == STATUS_OK, high.describe()
    result = high.result("mem-touch")
    assert result.num("phys") >= FOUR_GIB and result.num("mismatches") == 0
    top = boot_pyhvm(guestkit, f"scenario=mem-touch mb=2 phys={3 * GiB - 2 * MiB:#x}",
                     "-m", "5G")
    assert top.status == STATUS_OK, top.describe()  # the last 2 MiB below the hole


@pytest.mark.parametrize("phys", [3 * GiB, 8 * GiB])
def test_guest_page_tables_pointing_at_no_ram_are_the_guests_problem(guestkit: Path,
                                                                     phys: int) -> None:
    """The PCI hole of a 5 GiB guest, and far past its RAM: writes vanish and reads give
    all ones (the PC's answer to an access to nothing), the guest finds its data did not
    stick and says so; pyhvm keeps running and exits with the guest's status."""
    run = boot_pyhvm(guestkit, f"scenario=mem-touch mb=2 phys={phys:#x} force=1", "-m", "5G")
    assert run.status == STATUS_FAIL, run.describe()
    result = run.result("mem-touch")
    assert result.num("ram") == 0 and result.num("mismatches") == 512
    assert "Traceback" not in run.stderr
    refused = boot_pyhvm(guestkit, f"scenario=mem-touch mb=2 phys={phys:#x}", "-m", "5G")
    assert refused.status == STATUS_USAGE and refused.result("error").words == ("not-ram",)


def test_the_dirty_log_sees_the_pages_a_guest_writes(guestkit: Path, tmp_path: Path) -> None:
    """The RAM slot above 4 GiB, logged while the guest first-touches 8 MiB at its start:
    exactly those 2048 pages come back dirty, and a second fetch finds none."""
    config = MachineConfig(kernel=str(guestkit), append="scenario=mem-touch mb=8 high=1",
                           memory=5 * GiB, serial=f"file:{tmp_path / 'com1.log'}",
                           max_seconds=40, mem_backing=BackingSpec("anon"))
    machine = Machine(config)
    try:
        high = next(r for r in machine.memory.regions if r.gpa == FOUR_GIB)
        log = DirtyLog(machine.vm)
        log.enable(high)
        status = machine.run()
        console = (tmp_path / "com1.log").read_text()
        assert status == (STATUS_OK << 1) | 1, console
        bitmap = log.fetch(high)
        assert bitmap.ranges() == [(FOUR_GIB, 8 * MiB)]
        assert bitmap.count() == 2048
        assert log.fetch(high).count() == 0
        log.close()
    finally:
        machine.close()


def test_a_traced_run_counts_the_kernels_mmu_events(guestkit: Path, tmp_path: Path) -> None:
    from pyhvm.trace import tracefs

    reason = tracefs.unavailable_reason(mount=True)
    if reason:
        pytest.skip(reason)
    trace = tmp_path / "run.trc"
    mounts_before = Path("/proc/mounts").read_text().count(" tracefs ")
    run = boot_pyhvm(guestkit, "scenario=mem-touch mb=8", "--trace", str(trace),
                     "--trace-events", "exits,mmu")
    assert run.status == STATUS_OK, run.describe()
    data = json.loads(Path(f"{trace}.mmu.json").read_text())
    counts = data["counts"]
    faults = sum(counts.get(k, 0) for k in ("faults_4k", "faults_2m", "faults_1g"))
    assert faults >= 2048  # every page the guest touched first, and more at boot
    assert data["timing"]["threads"] and data["timing"]["lost_events"] == 0
    assert Path("/proc/mounts").read_text().count(" tracefs ") == mounts_before
    text = subprocess.run([sys.executable, "-m", "pyhvm", "report", str(trace), "--plain"],
                          capture_output=True, text=True, timeout=60).stdout
    assert "kernel MMU" in text and "faults KVM mapped" in text


@pytest.mark.parametrize("args,message", [
    (["-m", "100T"], "more than this host's memory"),
    (["--mem-backing", "hugetlbfs:/nonexistent"], "no such directory"),
    (["--mem-backing", "nonsense"], "--mem-backing"),
    (["--mem-thp", "sometimes"], "on or off"),
])
def test_bad_memory_options_are_one_line(guestkit: Path, args: list[str], message: str
                                         ) -> None:
    result = run_pyhvm("--kernel", str(guestkit), *args, "--max-seconds", "10")
    assert result.returncode == 4, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_hugepage_exhaustion_is_refused_at_start(guestkit: Path) -> None:
    size = default_huge_page_size()
    pool = huge_pool(size)
    ask = (pool.available + 1) * size + 64 * MiB
    result = run_pyhvm("--kernel", str(guestkit), "-m", f"{ask >> 20}M", "--mem-backing",
                       "memfd,hugepages=on", "--max-seconds", "10")
    assert result.returncode == 4, result.stderr
    assert "huge pages" in result.stderr and "Traceback" not in result.stderr


def test_bench_mem_smoke(guestkit: Path) -> None:
    """One short `pyhvm bench mem` run end to end: a pyhvm figure, the dirty-log timing."""
    proc = subprocess.run([sys.executable, "-m", "pyhvm", "bench", "mem", "--quick",
                           "--no-qemu", "--no-kvmmmu", "--backings", "anon+thp",
                           "--workloads", "touch-2m", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["bench"] == "mem"
    (run,) = result["runs"]
    assert run["metrics"]["ns_per_page"] > 0 and run["metrics"]["over_best"] == 1.0
    assert [s["pages"] for s in result["dirty_log"]["slots"]] == [16384, 262144, 1048576]
