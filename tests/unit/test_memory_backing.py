"""Guest RAM backings: parsing the options, the host checks that refuse what cannot work
with one line, and each backing's behaviour (sharing through the fd, prealloc, reset).
No KVM needed: these map host memory the way a VM would, without a VM."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from pyhvm import memory_backing as mb
from pyhvm.memory import GiB, GuestMemory
from pyhvm.memory_backing import BackingError, BackingSpec, HugePool, parse_backing

MiB = 1 << 20


# --- the options ----------------------------------------------------------------------------
@pytest.mark.parametrize("text,kind,path,huge", [
    ("anon", "anon", None, False),
    ("memfd", "memfd", None, False),
    ("memfd,hugepages=on", "memfd", None, True),
    ("memfd,hugepages=off", "memfd", None, False),
    ("hugetlbfs:/dev/hugepages", "hugetlbfs", "/dev/hugepages", False),
    ("file:/tmp/ram.img", "file", "/tmp/ram.img", False),
    ("file:/path/with:colon", "file", "/path/with:colon", False),
])
def test_backing_syntax(text: str, kind: str, path: str | None, huge: bool) -> None:
    spec = parse_backing(text, prealloc=True, thp=False)
    assert (spec.kind, spec.path, spec.hugepages, spec.prealloc, spec.thp) == \
        (kind, path, huge, True, False)
    assert spec.shared == (kind != "anon")


@pytest.mark.parametrize("text", ["bogus", "hugetlbfs", "hugetlbfs:", "file:", "anon,x=1",
                                  "anon,hugepages=on", "memfd,hugepages", "memfd,size=1G",
                                  "memfd,hugepages=maybe", "memfd:/x"])
def test_bad_backing_syntax_is_one_line(text: str) -> None:
    with pytest.raises(BackingError) as info:
        parse_backing(text)
    assert "\n" not in str(info.value)


def test_describe_says_what_was_asked() -> None:
    assert BackingSpec("anon", thp=True).describe() == "anon thp=on"
    assert BackingSpec("memfd", hugepages=True, prealloc=True).describe() == \
        "memfd,hugepages=on prealloc"
    assert BackingSpec("file", "/x", thp=False).describe() == "file:/x"


@pytest.mark.parametrize("text,value", [("on", True), ("OFF", False), ("1", True),
                                        ("no", False)])
def test_switches(text: str, value: bool) -> None:
    assert mb.parse_switch(text, "--mem-thp") is value
    with pytest.raises(BackingError, match="on or off"):
        mb.parse_switch("maybe", "--mem-thp")


# --- host checks ----------------------------------------------------------------------------
def test_more_ram_than_the_host_has_is_refused() -> None:
    info = {"MemTotal": 8 * GiB, "MemAvailable": 2 * GiB}
    with pytest.raises(BackingError, match="more than this host's memory"):
        mb.check_host_memory(9 * GiB, BackingSpec(), info)
    mb.check_host_memory(4 * GiB, BackingSpec(), info)  # not touched: fine
    with pytest.raises(BackingError, match="--mem-prealloc needs"):
        mb.check_host_memory(4 * GiB, BackingSpec(prealloc=True), info)


def test_huge_page_pool_checks() -> None:
    page = 2 * MiB
    with pytest.raises(BackingError, match="no huge pages of 2048 kB are reserved"):
        mb.check_huge_pages(64 * MiB, page, HugePool(page, 0, 0, 0))
    with pytest.raises(BackingError, match="needs 32 huge pages of 2048 kB, only 10 of 40"):
        mb.check_huge_pages(64 * MiB, page, HugePool(page, 40, 14, 4))
    with pytest.raises(BackingError, match="not a multiple"):
        mb.check_huge_pages(65 * MiB, page, HugePool(page, 100, 100, 0))
    mb.check_huge_pages(64 * MiB, page, HugePool(page, 40, 40, 0))


def test_huge_pool_reads_sysfs(tmp_path: Path) -> None:
    d = tmp_path / "hugepages-2048kB"
    d.mkdir()
    for name, value in (("nr_hugepages", 8), ("free_hugepages", 6), ("resv_hugepages", 2)):
        (d / name).write_text(f"{value}\n")
    pool = mb.huge_pool(2 * MiB, str(tmp_path))
    assert (pool.total, pool.free, pool.reserved, pool.available) == (8, 6, 2, 4)
    assert mb.huge_pool(1 << 30, str(tmp_path)).total == 0  # no such pool


def test_mount_of_takes_the_longest_prefix(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda / ext4 rw 0 0\nnone /dev/hugepages hugetlbfs rw 0 0\n"
                      "none /dev/hugepages2 tmpfs rw 0 0\n")
    assert mb.mount_of("/dev/hugepages/x", str(mounts)) == ("/dev/hugepages", "hugetlbfs")
    assert mb.mount_of("/dev/hugepages2", str(mounts)) == ("/dev/hugepages2", "tmpfs")
    assert mb.mount_of("/etc", str(mounts)) == ("/", "ext4")


def test_hugetlbfs_path_must_exist_and_be_a_hugetlbfs_mount(tmp_path: Path) -> None:
    with pytest.raises(BackingError, match="no such directory"):
        GuestMemory.with_size(4 * MiB, BackingSpec("hugetlbfs", str(tmp_path / "none")))
    with pytest.raises(BackingError, match="is not a hugetlbfs mount"):
        GuestMemory.with_size(4 * MiB, BackingSpec("hugetlbfs", str(tmp_path)))


def test_memfd_huge_pages_without_a_pool_fail_at_start(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setattr(mb, "huge_pool", lambda size: HugePool(size, 0, 0, 0))
    with pytest.raises(BackingError, match="no huge pages"):
        GuestMemory.with_size(4 * MiB, BackingSpec("memfd", hugepages=True))


def test_a_kernel_without_memfd_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(name: str, flags: int = 0) -> int:
        raise OSError(errno.ENOSYS, "Function not implemented")
    monkeypatch.setattr(mb.os, "memfd_create", refuse)
    with pytest.raises(BackingError, match="does not support memfd_create"):
        GuestMemory.with_size(4 * MiB, BackingSpec("memfd"))


# --- the backings at work -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["anon", "memfd", "file"])
def test_each_backing_holds_what_is_written_and_resets_to_zero(kind: str,
                                                               tmp_path: Path) -> None:
    spec = BackingSpec(kind, str(tmp_path) if kind == "file" else None)
    memory = GuestMemory.with_size(8 * MiB, spec)
    try:
        memory.write(0x123000, b"pyhvm")
        memory.write_u64(8 * MiB - 8, 0x1122334455667788)
        assert memory.read(0x123000, 5) == b"pyhvm"
        memory.discard()
        assert memory.read(0x123000, 5) == bytes(5)
        assert memory.read_u64(8 * MiB - 8) == 0
    finally:
        memory.close()
    assert list(tmp_path.iterdir()) == []  # file:DIR uses an unlinked temporary file


def test_shared_ram_is_visible_through_the_fd_at_each_regions_offset() -> None:
    """A 3 GiB + 8 MiB guest: low RAM up to the PCI hole, the rest at 4 GiB. ftruncate only:
    nothing is touched but the two words written."""
    memory = GuestMemory.with_size(3 * GiB + 8 * MiB, BackingSpec("memfd"))
    try:
        memory.write(0x1000, b"low")
        memory.write(4 * GiB + 0x2000, b"high")
        info = memory.share()
        regions = {r["gpa"]: r for r in info["regions"]}
        assert set(regions) == {0, 4 * GiB}
        assert regions[0]["offset"] == 0 and regions[0]["size"] == 3 * GiB
        assert regions[4 * GiB]["offset"] == 3 * GiB and regions[4 * GiB]["size"] == 8 * MiB
        fd = os.open(info["path"], os.O_RDONLY)  # another process would do the same
        try:
            assert os.pread(fd, 3, 0x1000) == b"low"
            assert os.pread(fd, 4, 3 * GiB + 0x2000) == b"high"
        finally:
            os.close(fd)
    finally:
        memory.close()


def test_anon_ram_has_nothing_to_share() -> None:
    memory = GuestMemory.with_size(4 * MiB)
    try:
        assert memory.share()["regions"] == []
    finally:
        memory.close()


def test_a_named_file_keeps_guest_ram_and_is_extended(tmp_path: Path) -> None:
    path = tmp_path / "ram.img"
    path.write_bytes(b"old")
    memory = GuestMemory.with_size(4 * MiB, BackingSpec("file", str(path)))
    try:
        assert memory.read(0, 3) == b"old"  # the file's content is the RAM's
        memory.write(0x10, b"new")
        assert memory.share()["path"] == str(path)
    finally:
        memory.close()
    assert path.stat().st_size == 4 * MiB
    assert path.read_bytes()[0x10:0x13] == b"new"


def test_a_file_backing_that_is_not_a_regular_file_is_refused() -> None:
    with pytest.raises(BackingError, match="not a regular file"):
        GuestMemory.with_size(4 * MiB, BackingSpec("file", "/dev/null"))


def test_a_full_disk_is_refused_at_start(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(mb.os, "posix_fallocate", full)
    with pytest.raises(BackingError, match="no space left"):
        GuestMemory.with_size(4 * MiB, BackingSpec("file", str(tmp_path / "ram.img")))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_file_on_a_really_full_filesystem_is_refused(tmp_path: Path) -> None:
    """A 2 MiB tmpfs cannot hold 8 MiB of RAM: one line at start, never SIGBUS later."""
    point = tmp_path / "small"
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "none", str(point)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with pytest.raises(BackingError, match="free|no space") as info:
            GuestMemory.with_size(8 * MiB, BackingSpec("file", str(point / "ram.img")))
        assert "\n" not in str(info.value)
    finally:
        subprocess.run(["umount", str(point)], check=True)


def test_prealloc_populates_every_page() -> None:
    memory = GuestMemory.with_size(8 * MiB, BackingSpec("anon", prealloc=True, thp=False))
    try:
        assert memory.host_stats()["rss_bytes"] == 8 * MiB
    finally:
        memory.close()
    lazy = GuestMemory.with_size(8 * MiB, BackingSpec("anon", thp=False))
    try:
        assert lazy.host_stats()["rss_bytes"] < 8 * MiB
    finally:
        lazy.close()


def test_thp_anon_ram_starts_on_a_huge_page_boundary() -> None:
    memory = GuestMemory.with_size(8 * MiB, BackingSpec("anon", thp=True))
    try:
        assert all(r.host_address % mb.THP_SIZE == 0 for r in memory.regions)
    finally:
        memory.close()


def test_smaps_totals_only_count_mappings_inside_the_range(tmp_path: Path) -> None:
    smaps = tmp_path / "smaps"
    smaps.write_text(
        "7f0000000000-7f0000400000 rw-p 00000000 00:00 0\n"
        "Rss:                4096 kB\nAnonHugePages:      2048 kB\n"
        "7f0000400000-7f0000800000 rw-s 00000000 00:01 5   /memfd:pyhvm-ram (deleted)\n"
        "Rss:                 100 kB\nShared_Hugetlb:     2048 kB\n")
    totals = mb.host_page_sizes(0x7F0000000000, 4 * MiB, str(smaps))
    assert totals == {"rss": 4096 * 1024, "anon_huge": 2 * MiB, "shmem_pmd": 0, "hugetlb": 0}
    both = mb.host_page_sizes(0x7F0000000000, 8 * MiB, str(smaps))
    assert both["hugetlb"] == 2 * MiB and both["rss"] == 4196 * 1024
