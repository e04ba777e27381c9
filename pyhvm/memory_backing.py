"""Where guest RAM lives on the host, how it is populated, and how others can map it.

Backings (`pyhvm run --mem-backing`):
- `anon`: private anonymous memory, the default. Only this process can map it.
- `memfd[,hugepages=on]`: one memfd (shmem, or hugetlb pages with `hugepages=on`) holding
  all of RAM, mapped MAP_SHARED.
- `hugetlbfs:PATH`: an unlinked file in the hugetlbfs mount PATH, MAP_SHARED; the pages
  are reserved when it is mapped, so a short pool fails at start, never at run time.
- `file:PATH`: a named file (created if missing, extended if short; a directory gets an
  unlinked temporary file), MAP_SHARED; its blocks are reserved with posix_fallocate, so
  a full disk fails at start instead of killing the VMM with SIGBUS mid-run.

A shared backing keeps all RAM in one file descriptor, region after region; `share()` lists
the fd and each region's offset in it: what a device model in another process maps (it
gets the fd over a Unix socket, or opens /proc/<pid>/fd/<fd>).

`--mem-prealloc` populates everything up front (MADV_POPULATE_WRITE, else one write per
page): no first-touch faults in the guest, and a host short of memory fails at start.
`--mem-thp on|off` advises transparent huge pages (MADV_HUGEPAGE / MADV_NOHUGEPAGE) on
anonymous memory and on memfd's shmem (where the host's shmem_enabled allows it); anon's
mapping is 2 MiB-aligned so KVM can map guest 2 MiB ranges with huge pages.

Every problem a user can fix is a `BackingError`, one line that says what to do.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import stat
import tempfile
from dataclasses import dataclass, field

from .errors import HostError

KINDS = ("anon", "memfd", "hugetlbfs", "file")
# From `pyhvm bench mem` on a kvm_pvm host (README, "Guest RAM"): with THP, random reads
# over 128 MiB took 0.64x the time with 2 MiB guest pages (KVM maps them with 2 MiB host
# pages) and 0.83x with 4 KiB ones; first touches varied between runs by more than THP
# changed them. QEMU advises THP on its RAM too.
DEFAULT_THP = True

PAGE_SIZE = 4096
THP_SIZE = 2 << 20
MADV_REMOVE = 9
MADV_DONTNEED = 4
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_POPULATE_WRITE = 23      # Linux 5.14
MFD_CLOEXEC = 0x0001
MFD_HUGETLB = 0x0004
MFD_HUGE_SHIFT = 26
EHWPOISON = getattr(errno, "EHWPOISON", 133)
POPULATE_CHUNK = 256 << 20    # populate in steps: a Ctrl-C is seen between them
ZERO_CHUNK = 16 << 20

MEMINFO = "/proc/meminfo"
MOUNTS = "/proc/mounts"
HUGEPAGES_SYSFS = "/sys/kernel/mm/hugepages"
THP_SYSFS = "/sys/kernel/mm/transparent_hugepage"


class BackingError(HostError):
    """Guest RAM cannot be backed as asked; the message says why and what to do."""


# --- the user's choice ----------------------------------------------------------------------
@dataclass(frozen=True)
class BackingSpec:
    """What `--mem-backing`, `--mem-prealloc` and `--mem-thp` asked for."""

    kind: str = "anon"
    path: str | None = None       # hugetlbfs mount or file (or directory) for `file`
    hugepages: bool = False       # memfd: hugetlb pages instead of shmem
    prealloc: bool = False
    thp: bool = DEFAULT_THP

    @property
    def shared(self) -> bool:
        """MAP_SHARED on a file descriptor other processes can map."""
        return self.kind != "anon"

    @property
    def hugetlb(self) -> bool:
        return self.kind == "hugetlbfs" or (self.kind == "memfd" and self.hugepages)

    def describe(self) -> str:
        """The options as a user writes them, e.g. `memfd,hugepages=on prealloc thp=on`."""
        text = {"anon": "anon", "memfd": "memfd,hugepages=on" if self.hugepages else "memfd",
                "hugetlbfs": f"hugetlbfs:{self.path}", "file": f"file:{self.path}"}[self.kind]
        if self.prealloc:
            text += " prealloc"
        if self.kind in ("anon", "memfd") and not self.hugetlb:
            text += f" thp={'on' if self.thp else 'off'}"
        return text


def parse_switch(text: str, option: str) -> bool:
    """`on`/`off` (also yes/no, true/false, 1/0)."""
    value = text.strip().lower()
    if value in ("on", "yes", "true", "1"):
        return True
    if value in ("off", "no", "false", "0"):
        return False
    raise BackingError(f"{option} {text!r}: write on or off")


def parse_backing(text: str, *, prealloc: bool = False, thp: bool = DEFAULT_THP) -> BackingSpec:
    """`anon`, `memfd[,hugepages=on|off]`, `hugetlbfs:PATH` or `file:PATH`."""
    text = text.strip()
    kind, sep, rest = text.partition(":")
    if kind in ("hugetlbfs", "file"):
        if not sep or not rest:
            raise BackingError(f"--mem-backing {text!r}: write {kind}:PATH")
        return BackingSpec(kind, rest, prealloc=prealloc, thp=thp)
    name, _, options = text.partition(",")
    if sep or name not in ("anon", "memfd"):
        raise BackingError(f"--mem-backing {text!r}: use anon, memfd[,hugepages=on], "
                           "hugetlbfs:PATH or file:PATH")
    hugepages = False
    for item in filter(None, options.split(",")):
        key, eq, value = item.partition("=")
        if name != "memfd" or key != "hugepages" or not eq:
            raise BackingError(f"--mem-backing {text!r}: unknown option {item!r} (memfd "
                               "takes hugepages=on|off)")
        hugepages = parse_switch(value, "--mem-backing memfd,hugepages=")
    return BackingSpec(name, None, hugepages, prealloc, thp)


# --- what the host offers -------------------------------------------------------------------
def read_meminfo(path: str = MEMINFO) -> dict[str, int]:
    """/proc/meminfo in bytes (counts such as HugePages_Free stay counts)."""
    out: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    except OSError:
        pass
    return out


def mount_of(path: str, mounts: str = MOUNTS) -> tuple[str, str] | None:
    """(mount point, filesystem type) of the mount holding `path`, from /proc/mounts."""
    real = os.path.realpath(path)
    best: tuple[str, str] | None = None
    try:
        with open(mounts) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                point = parts[1].replace("\\040", " ")
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and (best is None or len(point) >= len(best[0])):
                    best = (point, parts[2])
    except OSError:
        return None
    return best


@dataclass(frozen=True)
class HugePool:
    """One huge page size's pool (/sys/kernel/mm/hugepages/hugepages-<kB>kB)."""

    page_size: int
    total: int
    free: int
    reserved: int

    @property
    def available(self) -> int:
        """Pages a new mapping can still reserve."""
        return max(self.free - self.reserved, 0)


def huge_pool(page_size: int, root: str = HUGEPAGES_SYSFS) -> HugePool:
    directory = os.path.join(root, f"hugepages-{page_size >> 10}kB")

    def count(name: str) -> int:
        try:
            with open(os.path.join(directory, name)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return 0
    return HugePool(page_size, count("nr_hugepages"), count("free_hugepages"),
                    count("resv_hugepages"))


def default_huge_page_size() -> int:
    return read_meminfo().get("Hugepagesize", THP_SIZE)


def thp_mode(name: str = "enabled", root: str = THP_SYSFS) -> str | None:
    """The bracketed choice of /sys/kernel/mm/transparent_hugepage/<name>, or None."""
    try:
        with open(os.path.join(root, name)) as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else None


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.0f} MiB"


def check_host_memory(size: int, spec: BackingSpec, meminfo: dict[str, int] | None = None
                      ) -> None:
    """Refuse RAM the host cannot give: more than it has, or (prealloc) than is free."""
    info = read_meminfo() if meminfo is None else meminfo
    total, available = info.get("MemTotal"), info.get("MemAvailable")
    if total is not None and size > total:
        raise BackingError(f"-m {size >> 20}M is more than this host's memory "
                           f"({total >> 20} MiB); ask for less")
    if spec.prealloc and not spec.hugetlb and available is not None and size > available:
        raise BackingError(f"--mem-prealloc needs {_mib(size)} but the host has only "
                           f"{_mib(available)} available; ask for less with -m or drop "
                           "--mem-prealloc")


def check_huge_pages(size: int, page_size: int, pool: HugePool | None = None) -> None:
    """Enough free pages of `page_size` for `size` bytes of RAM, or BackingError."""
    if size % page_size:
        raise BackingError(f"-m {size >> 20}M is not a multiple of the {page_size >> 10} kB "
                           "huge page size")
    pool = huge_pool(page_size) if pool is None else pool
    need = size // page_size
    sysfs = os.path.join(HUGEPAGES_SYSFS, f"hugepages-{page_size >> 10}kB", "nr_hugepages")
    if pool.total == 0:
        raise BackingError(f"no huge pages of {page_size >> 10} kB are reserved on this host: "
                           f"echo {need} > {sysfs} (as root), or use another --mem-backing")
    if pool.available < need:
        raise BackingError(f"guest RAM needs {need} huge pages of {page_size >> 10} kB, only "
                           f"{pool.available} of {pool.total} are free: raise {sysfs} or "
                           "ask for less with -m")


# --- the mappings ---------------------------------------------------------------------------
@dataclass
class Mapping:
    """Host memory behind one guest RAM region."""

    buffer: mmap.mmap = field(repr=False)
    offset: int                   # where the region starts in `buffer` (anon: alignment)
    size: int
    fd_offset: int                # where it starts in the backing file; -1 for anon
    host_address: int = field(repr=False)
    view: memoryview = field(repr=False)


def _address(buffer: mmap.mmap) -> int:
    anchor = ctypes.c_char.from_buffer(buffer)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor  # an exported buffer could not be closed later


def _errno_text(err: OSError) -> str:
    return err.strerror or str(err)


class HostRam:
    """The host side of guest RAM: one backing, a mapping per region (`map_region`)."""

    def __init__(self, spec: BackingSpec, total: int) -> None:
        self.spec = spec
        self.total = total
        self.fd = -1
        self.path: str | None = None  # the file others may open by name (file: only)
        self.page_size = PAGE_SIZE
        self.mappings: list[Mapping] = []
        self._next_offset = 0
        if spec.kind not in KINDS:
            raise BackingError(f"unknown memory backing {spec.kind!r}")
        if total:
            check_host_memory(total, spec)
        try:
            if spec.kind == "memfd":
                self._open_memfd()
            elif spec.kind == "hugetlbfs":
                self._open_hugetlbfs()
            elif spec.kind == "file":
                self._open_file()
        except BaseException:
            self.close()
            raise

    # -- opening the backing --
    def _open_memfd(self) -> None:
        create = getattr(os, "memfd_create", None)
        if create is None:
            raise BackingError("this Python has no os.memfd_create: use --mem-backing anon")
        flags = MFD_CLOEXEC
        if self.spec.hugepages:
            self.page_size = default_huge_page_size()
            check_huge_pages(self.total, self.page_size)
            flags |= MFD_HUGETLB | ((self.page_size.bit_length() - 1) << MFD_HUGE_SHIFT)
        try:
            self.fd = create("pyhvm-ram", flags)
        except OSError as err:
            if err.errno in (errno.ENOSYS, errno.EINVAL):
                what = "memfd_create with huge pages" if self.spec.hugepages else "memfd_create"
                raise BackingError(f"this kernel does not support {what} "
                                   f"({_errno_text(err)}): use --mem-backing anon") from None
            raise BackingError(f"cannot create the RAM memfd: {_errno_text(err)}") from None
        self._set_size()

    def _open_hugetlbfs(self) -> None:
        path = self.spec.path or ""
        if not os.path.isdir(path):
            raise BackingError(f"--mem-backing hugetlbfs:{path}: no such directory (mount "
                               f"one: mount -t hugetlbfs none {path or 'DIR'})")
        mount = mount_of(path)
        if mount is None or mount[1] != "hugetlbfs":
            fs = f"on {mount[1]} at {mount[0]}" if mount else "not a mount point"
            raise BackingError(f"--mem-backing hugetlbfs:{path} is not a hugetlbfs mount "
                               f"({fs}): mount -t hugetlbfs none {path}")
        self.page_size = os.statvfs(path).f_bsize
        check_huge_pages(self.total, self.page_size)
        try:
            self.fd, name = tempfile.mkstemp(prefix="pyhvm-ram-", dir=path)
            os.unlink(name)
        except OSError as err:
            raise BackingError(f"cannot create guest RAM in {path}: {_errno_text(err)}") \
                from None
        self._set_size()

    def _open_file(self) -> None:
        path = self.spec.path or ""
        try:
            if os.path.isdir(path):
                self.fd, name = tempfile.mkstemp(prefix="pyhvm-ram-", dir=path)
                os.unlink(name)
            else:
                self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self.path = path
        except OSError as err:
            raise BackingError(f"--mem-backing file:{path}: {_errno_text(err)}") from None
        st = os.fstat(self.fd)
        if not stat.S_ISREG(st.st_mode):
            raise BackingError(f"--mem-backing file:{path} is not a regular file or directory")
        if st.st_size < self.total:
            self._set_size()
        try:
            disk = os.fstatvfs(self.fd)
            free = disk.f_bavail * disk.f_frsize
            allocated = st.st_blocks * 512
            if self.total - allocated > free:
                raise BackingError(
                    f"--mem-backing file:{path}: the disk has {_mib(free)} free, guest RAM "
                    f"needs {_mib(self.total - allocated)} more; free some space or ask for "
                    "less with -m")
            os.posix_fallocate(self.fd, 0, self.total)
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise BackingError(f"--mem-backing file:{path}: no space left on its disk for "
                                   f"{_mib(self.total)} of guest RAM") from None
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise BackingError(f"--mem-backing file:{path}: cannot reserve its blocks: "
                                   f"{_errno_text(err)}") from None

    def _set_size(self) -> None:
        try:
            os.ftruncate(self.fd, self.total)
        except OSError as err:
            raise BackingError(f"cannot size the guest RAM {self.spec.kind} to "
                               f"{_mib(self.total)}: {_errno_text(err)}") from None

    # -- mapping regions --
    def map_region(self, size: int) -> Mapping:
        """Host memory for the next `size` bytes of guest RAM (offsets follow one another)."""
        if size <= 0 or size % self.page_size:
            raise BackingError(f"a RAM region of {size:#x} bytes is not a multiple of the "
                               f"backing's {self.page_size >> 10} kB pages")
        if self.spec.shared and self._next_offset + size > self.total:
            raise ValueError("map_region past the size the backing was opened with")
        mapping = self._map_anon(size) if self.fd < 0 else self._map_shared(size)
        self.mappings.append(mapping)
        try:
            self._advise(mapping)
            if self.spec.prealloc:
                self.populate(mapping)
        except BaseException:
            self.mappings.remove(mapping)
            mapping.view.release()
            mapping.buffer.close()
            raise
        return mapping

    def _map_anon(self, size: int) -> Mapping:
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        try:
            buffer = mmap.mmap(-1, size, flags, prot)
            offset = 0
            base = _address(buffer)
            if self.spec.thp and base % THP_SIZE:
                # Kernels before 6.7 need not align large anonymous mappings; without it
                # no 2 MiB guest range lines up with a host huge page.
                buffer.close()
                buffer = mmap.mmap(-1, size + THP_SIZE, flags, prot)
                base = _address(buffer)
                offset = -base % THP_SIZE
        except OSError as err:
            raise BackingError(f"cannot map {_mib(size)} of guest RAM: {_errno_text(err)}; "
                               "ask for less with -m") from None
        view = memoryview(buffer)[offset:offset + size]
        return Mapping(buffer, offset, size, -1, base + offset, view)

    def _map_shared(self, size: int) -> Mapping:
        fd_offset = self._next_offset
        try:
            buffer = mmap.mmap(self.fd, size, mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE, offset=fd_offset)
        except OSError as err:
            if self.spec.hugetlb and err.errno == errno.ENOMEM:
                raise BackingError(f"not enough free huge pages for {_mib(size)} of guest RAM "
                                   "(another process took them?): raise nr_hugepages or ask "
                                   "for less with -m") from None
            raise BackingError(f"cannot map {_mib(size)} of guest RAM from the "
                               f"{self.spec.kind} backing: {_errno_text(err)}") from None
        self._next_offset += size
        return Mapping(buffer, 0, size, fd_offset, _address(buffer), memoryview(buffer))

    def _advise(self, mapping: Mapping) -> None:
        if self.spec.hugetlb or self.spec.kind not in ("anon", "memfd"):
            return
        if self.spec.kind == "memfd" and not self.spec.thp:
            return
        advice = MADV_HUGEPAGE if self.spec.thp else MADV_NOHUGEPAGE
        try:
            mapping.buffer.madvise(advice, mapping.offset, mapping.size)
        except OSError:
            pass  # a kernel without THP: the advice is only a hint

    def populate(self, mapping: Mapping) -> None:
        """Fault every page in now, writable: MADV_POPULATE_WRITE, else a write per page."""
        for start in range(0, mapping.size, POPULATE_CHUNK):
            length = min(POPULATE_CHUNK, mapping.size - start)
            try:
                mapping.buffer.madvise(MADV_POPULATE_WRITE, mapping.offset + start, length)
            except OSError as err:
                if err.errno == errno.EINVAL:  # before Linux 5.14
                    self._touch(mapping, start, length)
                    continue
                if err.errno in (errno.ENOMEM, errno.EFAULT, EHWPOISON):
                    raise BackingError(f"--mem-prealloc: the host could not give "
                                       f"{_mib(mapping.size)} of guest RAM "
                                       f"({_errno_text(err)}); ask for less with -m") from None
                raise BackingError(f"--mem-prealloc failed: {_errno_text(err)}") from None

    def _touch(self, mapping: Mapping, start: int, length: int) -> None:
        view = mapping.view
        for address in range(start, start + length, self.page_size):
            view[address] = view[address]

    # -- lifetime --
    def discard(self, mapping: Mapping) -> None:
        """Make the region read as zeros again (a reset), freeing what it held."""
        try:
            if not self.spec.shared:
                mapping.buffer.madvise(MADV_DONTNEED, mapping.offset, mapping.size)
            elif self.spec.hugetlb:
                # A hole punched in hugetlbfs gives its reservation back: write zeros.
                zeros = bytes(min(ZERO_CHUNK, mapping.size))
                for start in range(0, mapping.size, len(zeros)):
                    end = min(start + len(zeros), mapping.size)
                    mapping.view[start:end] = zeros[:end - start]
                return
            else:
                mapping.buffer.madvise(MADV_REMOVE, 0, mapping.size)
                if self.spec.kind == "file":
                    os.posix_fallocate(self.fd, mapping.fd_offset, mapping.size)
        except OSError as err:
            # MADV_REMOVE unsupported by the file's filesystem: zeros by hand.
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise BackingError(f"cannot clear guest RAM: {_errno_text(err)}") from None
            zeros = bytes(min(ZERO_CHUNK, mapping.size))
            for start in range(0, mapping.size, len(zeros)):
                end = min(start + len(zeros), mapping.size)
                mapping.view[start:end] = zeros[:end - start]
            return
        if self.spec.prealloc:
            self.populate(mapping)

    def share(self) -> dict[str, object]:
        """What another process needs to map guest RAM: the fd (and a path to open it by),
        and each region's offset in it. Empty `regions` for anon: nothing to share."""
        if self.fd < 0:
            return {"backing": "anon", "fd": None, "path": None, "regions": []}
        return {"backing": self.spec.kind, "fd": self.fd,
                "path": self.path or f"/proc/{os.getpid()}/fd/{self.fd}",
                "page_size": self.page_size, "size": self.total,
                "regions": [{"size": m.size, "offset": m.fd_offset} for m in self.mappings]}

    def unmap(self, mapping: Mapping) -> None:
        mapping.view.release()
        mapping.buffer.close()
        if mapping in self.mappings:
            self.mappings.remove(mapping)

    def close(self) -> None:
        for mapping in list(self.mappings):
            self.unmap(mapping)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def host_page_sizes(address: int, size: int, smaps: str = "/proc/self/smaps") -> dict[str, int]:
    """How the host backs [address, address + size): bytes resident, in THP, in hugetlb,
    summed over the mappings inside it (from /proc/self/smaps)."""
    totals = {"rss": 0, "anon_huge": 0, "shmem_pmd": 0, "hugetlb": 0}
    keys = {"Rss": "rss", "AnonHugePages": "anon_huge", "ShmemPmdMapped": "shmem_pmd",
            "Private_Hugetlb": "hugetlb", "Shared_Hugetlb": "hugetlb"}
    end = address + size
    inside = False
    try:
        with open(smaps) as f:
            for line in f:
                head = line.split(None, 1)[0] if line.strip() else ""
                if "-" in head and ":" not in head:
                    lo, _, hi = head.partition("-")
                    try:
                        start, stop = int(lo, 16), int(hi, 16)
                    except ValueError:
                        continue
                    inside = start < end and address < stop
                    continue
                if inside and head.rstrip(":") in keys:
                    parts = line.split()
                    if len(parts) >= 2 and parts[1].isdigit():
                        totals[keys[head.rstrip(":")]] += int(parts[1]) * 1024
    except OSError:
        pass
    return totals


__all__ = ["BackingError", "BackingSpec", "DEFAULT_THP", "HostRam", "HugePool", "KINDS",
           "Mapping", "check_host_memory", "check_huge_pages", "huge_pool",
           "host_page_sizes", "mount_of", "parse_backing", "parse_switch", "read_meminfo",
           "thp_mode"]
