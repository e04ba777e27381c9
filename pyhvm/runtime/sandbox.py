"""Confining `pyhvm run` once its machine is built (`--sandbox on`, the default).

The guest controls every register write and DMA descriptor the device models see; a bug
there must not hand the guest the host. So after setup (VM created, RAM mapped, backends
opened, sockets listening) and before the first vCPU enters the guest, the process drops
what the run loop does not need, in this order:

1. resource limits: open files (RLIMIT_NOFILE) and address space (RLIMIT_AS: what setup
   mapped, guest RAM included, plus a margin for the VMM's own heap);
2. a private mount namespace and a network namespace (as root): the sockets and the TAP
   already open keep working, nothing new can reach the host's network. Linux gives each
   thread its namespaces: they cover the event loop and the vCPU threads started after;
   threads started during setup (the IDE workers) keep the host's, and like every thread
   are held by the filter below, which lets no thread create a socket or mount anything;
3. an unprivileged user (as root; `nobody` unless `--sandbox-user` names another), with no
   supplementary groups, so no capability is left. It is skipped, with the reason, when that
   user could not do what the run must do later: remove the QMP or datagram socket files,
   send to a datagram peer's socket, rewrite a `--display png:` file, reread the kernel at
   a guest reboot;
4. no_new_privs and a seccomp filter on every thread: only the system calls listed in
   `SYSCALL_GROUPS` (measured with `strace -f` on real runs, see below), ioctl only with
   KVM's requests, TCGETS and FIONBIO, clone only for threads. Anything else fails with
   EPERM (`--sandbox strict`: kills the process).

`--sandbox-limits threads=N` bounds the threads the run may start after setup with
RLIMIT_NPROC where the kernel enforces it (a user other than root). Files written later
must be writable by the sandbox user: QMP `screendump` writes as that user, and fails with
a QMP error where it cannot. `--trace-events mmu` mounts tracefs and runs `umount` at the
end as root: such a run stays unsandboxed, and says so.
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import importlib.abc
import logging
import os
import pwd
import resource
import stat
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ..errors import HostError
from . import seccomp as sc

if TYPE_CHECKING:
    from ..machine.pc import Machine

log = logging.getLogger("pyhvm")

MODES = ("on", "strict", "off")
DEFAULT_USER = "nobody"
DEFAULT_MAX_FILES = 256       # setup opens ~30; QMP, VNC and web clients are capped at 64
DEFAULT_MAX_THREADS = 16      # threads started after setup: a reboot's new vCPU thread
DEFAULT_HEAP_MARGIN = 1 << 30  # address space the VMM may map after setup
PROBE_ENV = "PYHVM_SANDBOX_PROBE"  # tests only: forbidden calls to try once sandboxed

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_THREAD = 0x00010000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
KVM_IOCTL_TYPE = 0xAE00       # _IO(KVMIO, n): KVMIO = 0xAE in bits 8-15 of the request
IOCTL_TYPE_MASK = 0xFF00
TCGETS, FIONBIO = 0x5401, 0x5421

# --- what the run loop may call --------------------------------------------------------------
# Measured with `strace -f` on the integration suite (tools/sandbox_syscalls.py counts what
# each pyhvm process called after its filter went in): hello and reboots, disk-* with --ide-dma
# sync and concurrent, net-* over dgram and TAP with a pcap, vga/vbe with VNC and web clients
# connected and png displays, QMP commands including screendump, --trace, --stats, --serial
# file:, SMP, --irqchip user, reboots on each memory backing (tests/integration/
# test_sandbox.py), firmware boots. Calls marked "(not seen)" were not in those
# runs but sit on a path that can be taken (named). Groups in order of frequency: the kernel
# walks the list at every call.
SYSCALL_GROUPS: dict[str, tuple[sc.Rule | str, ...]] = {
    # KVM_RUN, KVM_IRQ_LINE, KVM_INTERRUPT, registers (RIP samples, reboots, register dumps),
    # dirty logs, memory slots (PAM remaps, reboots): any ioctl of KVM's type, on the VM
    # and vCPU fds; TCGETS (isatty in open()) and FIONBIO (a socket's blocking mode).
    "kvm and terminal ioctls": (
        sc.Rule("ioctl", (sc.ArgIn(1, (KVM_IOCTL_TYPE,), mask=IOCTL_TYPE_MASK),)),
        sc.Rule("ioctl", (sc.ArgIn(1, (TCGETS, FIONBIO)),)),
    ),
    # Locks between vCPU threads, the loop and the workers; the event loop's select; a
    # pause's polling sleep; poll (not seen): QMP's last reply at exit, sent with a timeout;
    # sched_yield (not seen): numpy's BLAS worker threads spin with it.
    "waiting": ("futex", "pselect6", "clock_nanosleep", "poll", "sched_yield"),
    # Wake-up pipes, the console, TAP frames (readv), buffered files.
    "file descriptors": ("read", "write", "readv", "close", "pipe2", "lseek"),
    # vCPU kicks: SIGUSR1 to a thread (pthread_kill), handlers and masks, Ctrl-C.
    "signals": ("rt_sigprocmask", "rt_sigaction", "rt_sigreturn", "tgkill", "getpid",
                "gettid"),
    # Disk images: preadv/pwritev straight into guest RAM, pread for PIO, fdatasync for
    # FLUSH CACHE; the older preadv/pwritev (not seen) for Pythons without the v2 calls;
    # fallocate: a reboot gives file-backed RAM its blocks back after punching them out.
    "block I/O": ("pwritev2", "preadv2", "pread64", "preadv", "pwritev", "fdatasync",
                  "fallocate"),
    # Control and display clients (QMP, VNC, web) and datagram links: accept on the
    # sockets already listening, frames, hang-ups. No socket(), bind() or connect().
    "sockets": ("recvfrom", "sendto", "accept4", "getsockname", "shutdown"),
    # Files written by name after setup: QMP screendump and png displays (a temporary file
    # renamed over the old one; getcwd for a relative name), socket files removed at exit,
    # a reboot rereading the kernel, QMP stats reading /proc/self/smaps.
    "files by name": ("openat", "newfstatat", "getdents64", "rename", "unlink", "getcwd"),
    # The Python heap, numpy buffers, thread stacks, guest RAM discarded at a reboot.
    "memory": ("brk", "mmap", "munmap", "madvise", "mremap", "mprotect"),
    # Threads started after setup (vCPUs, a reboot's new vCPU thread): clone only with
    # CLONE_THREAD, so never a new process; clone3 answers ENOSYS (its flags are in memory,
    # out of a filter's reach) and glibc falls back to clone.
    "threads": (sc.Rule("clone", (sc.ArgHasBits(0, CLONE_THREAD),)),
                sc.Rule("clone3", action=sc.errno_action(errno.ENOSYS)),
                "set_robust_list", "rseq", "exit"),
    # Reaping a device process (--device-process) pyhvm started before the filter: waiting
    # can only collect this process's own children, and no new child can be made (above).
    "children": ("wait4", "waitid"),
    # The end of the run; clocks the vDSO does not serve (not seen); randomness (not seen)
    # for a new random.Random.
    "process": ("exit_group", "clock_gettime", "getrandom"),
}


def all_syscall_names() -> list[str]:
    names: dict[str, None] = {}
    for group in SYSCALL_GROUPS.values():
        for rule in group:
            names.setdefault(rule if isinstance(rule, str) else rule.name)
    return list(names)


def run_loop_filter(default: int = sc.DENY_EPERM) -> sc.Filter:
    rules = [rule for group in SYSCALL_GROUPS.values() for rule in group]
    return sc.Filter(rules, default)


# Modules the run may import after the sandbox is in place (a function-level import, a
# codec): imported first, since the sandbox user may not read Python's installation.
PRELOAD = ("json", "traceback", "linecache", "tokenize", "zlib", "encodings.idna",
           "pyhvm.boot.linux", "pyhvm.boot.multiboot", "pyhvm.backends.display.png")


# --- options ---------------------------------------------------------------------------------
class SandboxError(HostError):
    """A sandbox option cannot be used; the message says what to write instead."""


@dataclass(frozen=True)
class Limits:
    files: int = DEFAULT_MAX_FILES
    threads: int = DEFAULT_MAX_THREADS
    memory: int = DEFAULT_HEAP_MARGIN


@dataclass(frozen=True)
class SandboxOptions:
    mode: str = "on"
    user: str | None = None  # None: DEFAULT_USER, when started as root
    limits: Limits = field(default_factory=Limits)


_SIZE_UNITS = {"": 1 << 20, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _parse_size(text: str) -> int:
    """`512M`, `2G` or a number of MiB, as `-m` reads them (the runtime cannot import the
    machine layer's parser)."""
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1:] if text[-1:] in "KMGT" else ""
    number = text[:-1] if unit else text
    if not number.isdigit():
        raise ValueError(text)
    return int(number) * _SIZE_UNITS[unit]


def parse_limits(text: str | None) -> Limits:
    """`files=N,threads=N,memory=SIZE` (any subset); SIZE as -m takes it (default MiB)."""
    values: dict[str, int] = {}
    for item in (text or "").split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or key not in ("files", "threads", "memory"):
            raise SandboxError(f"--sandbox-limits {text!r}: use files=N,threads=N,memory=SIZE")
        try:
            values[key] = _parse_size(value) if key == "memory" else int(value)
        except ValueError:
            raise SandboxError(f"--sandbox-limits {key}={value!r} is not a number") from None
        if values[key] < 1:
            raise SandboxError(f"--sandbox-limits {key}= must be at least 1")
    return Limits(**values)


def parse_options(mode: str, user: str | None = None, limits: str | None = None
                  ) -> SandboxOptions:
    if mode not in MODES:
        raise SandboxError(f"--sandbox {mode!r}: use on, strict or off")
    if user is not None:
        resolve_user(user)  # refuse a user that does not exist before any setup
    return SandboxOptions(mode, user, parse_limits(limits))


def resolve_user(spec: str) -> tuple[int, int]:
    """`NAME`, `UID` or `UID:GID` into (uid, gid); a name's gid is its primary group."""
    name, _, group = spec.partition(":")
    try:
        if name.isdigit():
            uid = int(name)
            try:
                gid = pwd.getpwuid(uid).pw_gid
            except KeyError:
                gid = uid
        else:
            entry = pwd.getpwnam(name)
            uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        raise SandboxError(f"--sandbox-user {spec!r}: no such user (give a name from "
                           f"/etc/passwd or a number)") from None
    if group:
        if not group.isdigit():
            raise SandboxError(f"--sandbox-user {spec!r}: write UID:GID with numbers")
        gid = int(group)
    if uid == 0:
        raise SandboxError("--sandbox-user must not be root")
    return uid, gid


# --- the report ------------------------------------------------------------------------------
@dataclass
class SandboxReport:
    """What was applied, and what was not and why (QMP `x-pyhvm-sandbox`, `-v`)."""

    mode: str = "off"
    layers: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    syscalls: int = 0
    uid: int | None = None
    limits: dict[str, int] = field(default_factory=dict)
    probes: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        if self.mode == "off":
            reason = self.skipped.get("sandbox")
            return f"off ({reason})" if reason else "off"
        text = ", ".join(self.layers) or "nothing applied"
        if self.skipped:
            text += "; not applied: " + "; ".join(f"{k} ({v})" for k, v in self.skipped.items())
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "layers": list(self.layers), "skipped": dict(self.skipped),
                "syscalls": self.syscalls, "uid": self.uid, "limits": dict(self.limits),
                "summary": self.summary()}


# --- checks on what a user may do with a path ------------------------------------------------
def _may(st: os.stat_result, uid: int, gid: int, want: int) -> bool:
    """Whether (uid, gid) has the permission bits `want` (4 r, 2 w, 1 x) on a file."""
    if st.st_uid == uid:
        bits = (st.st_mode >> 6) & 7
    elif st.st_gid == gid:
        bits = (st.st_mode >> 3) & 7
    else:
        bits = st.st_mode & 7
    return bits & want == want


def user_can_reach(path: str, uid: int, gid: int) -> bool:
    """Every directory above `path` is searchable by the user."""
    parts = os.path.abspath(path).split("/")[1:-1]
    current = "/"
    for part in [""] + parts:
        current = os.path.join(current, part) if part else current
        try:
            if not _may(os.stat(current), uid, gid, 1):
                return False
        except OSError:
            return False
    return True


def user_can_read(path: str, uid: int, gid: int) -> bool:
    try:
        return user_can_reach(path, uid, gid) and _may(os.stat(path), uid, gid, 4)
    except OSError:
        return False


def user_can_send(path: str, uid: int, gid: int) -> bool:
    """A Unix socket at `path` (if there is one yet) takes datagrams from the user."""
    if not user_can_reach(path, uid, gid):
        return False
    try:
        return _may(os.stat(path), uid, gid, 2)
    except FileNotFoundError:
        return True  # the peer binds later; its socket's mode is its own business
    except OSError:
        return False


def user_can_replace(path: str, uid: int, gid: int, owned_by_user: bool) -> bool:
    """The user may create, rename over or remove `path` in its directory. In a sticky
    directory (/tmp) that needs the file (`owned_by_user`: we hand it over) or the
    directory to be the user's."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(directory)
    except OSError:
        return False
    if not (user_can_reach(path, uid, gid) and _may(st, uid, gid, 3)):
        return False
    return not st.st_mode & stat.S_ISVTX or owned_by_user or st.st_uid == uid


@dataclass(frozen=True)
class LatePath:
    """A path the run touches after setup, and how."""

    path: str
    what: str      # shown in the report: "QMP socket", "png display", "kernel"
    access: str    # "read" (reopened), "replace" (created, renamed over or removed) or
                   # "send" (a peer's socket: needs write permission, if it exists yet)
    ours: bool     # created by this run: handed to the sandbox user before the drop


def late_paths(machine: "Machine", qmp: object | None) -> list[LatePath]:
    """What the run opens, rewrites or removes by name after setup."""
    config = machine.config
    paths: list[LatePath] = []
    address = getattr(qmp, "address", None)
    if address is not None and getattr(address, "kind", None) == "unix":
        paths.append(LatePath(address.path, "QMP socket", "replace", True))
    if config.nic is not None:
        from ..backends.net import parse_netdev

        netdev = parse_netdev(config.nic.netdev)
        if netdev.kind == "unix" and isinstance(netdev.local, str):
            paths.append(LatePath(netdev.local, "datagram socket", "replace", True))
        if netdev.kind == "unix" and isinstance(netdev.remote, str):
            paths.append(LatePath(netdev.remote, "datagram peer's socket", "send", False))
    for spec in config.displays:
        if getattr(spec, "kind", None) == "png":
            paths.append(LatePath(spec.path, "png display", "replace", True))
    if machine.firmware is None and config.kernel:  # a guest reboot reloads them
        paths.append(LatePath(config.kernel, "kernel", "read", False))
        if config.initrd:
            paths.append(LatePath(config.initrd, "initrd", "read", False))
        for module in config.modules:
            paths.append(LatePath(module.split(" ", 1)[0], "module", "read", False))
    return paths


def uid_drop_obstacle(paths: Sequence[LatePath], uid: int, gid: int) -> str | None:
    """Why the run could not go on as (uid, gid), or None."""
    for late in paths:
        if late.access == "read":
            ok = user_can_read(late.path, uid, gid)
            verb = "read"
        elif late.access == "send":
            ok = user_can_send(late.path, uid, gid)
            verb = "send to"
        else:
            ok = user_can_replace(late.path, uid, gid, late.ours)
            verb = "write in the directory of"
        if not ok:
            return f"uid {uid} could not {verb} the {late.what} {late.path}"
    return None


# --- applying --------------------------------------------------------------------------------
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_void_p]
    return libc


def _unshare(flags: int) -> str | None:
    libc = _libc()
    if libc.unshare(flags) != 0:
        return os.strerror(ctypes.get_errno())
    return None


def _make_mounts_private() -> str | None:
    """Nothing mounted or unmounted in our namespace propagates back (mount --make-rprivate)."""
    libc = _libc()
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return os.strerror(ctypes.get_errno())
    return None


def _address_space() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _open_fds() -> int:
    try:
        return max(int(name) for name in os.listdir("/proc/self/fd")) + 1
    except (OSError, ValueError):
        return 64


def _tasks_of(uid: int) -> int:
    """Threads the kernel counts against `uid`'s RLIMIT_NPROC (every task of that user)."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                real_uid = threads = None
                for line in f:
                    if line.startswith("Uid:"):
                        real_uid = int(line.split()[1])
                    elif line.startswith("Threads:"):
                        threads = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if real_uid == uid and threads:
            total += threads
    return total


def _set_limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _hand_over(paths: Iterable[LatePath], uid: int, gid: int) -> None:
    """Give the files this run created (sockets, png screens) to the sandbox user, so it may
    rename over or remove them in a sticky directory such as /tmp."""
    for late in paths:
        if late.ours and os.path.lexists(late.path):
            try:
                os.lchown(late.path, uid, gid)
            except OSError as err:
                log.debug("sandbox: cannot hand %s to uid %d: %s", late.path, uid, err.strerror)


def _drop_user(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or \
            os.getgroups():
        raise SandboxError(f"the switch to uid {uid} did not take")


class _LateImportWatch(importlib.abc.MetaPathFinder):
    """Says which module was first imported after the sandbox went in (it may be unreadable
    to the sandbox user); costs nothing for modules already loaded."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        log.warning("sandbox: module %s imported after the sandbox went in", name)
        return None


def preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def apply(machine: "Machine", options: SandboxOptions, qmp: object | None = None
          ) -> SandboxReport:
    """Confine this process for the rest of the run; what was applied. Never raises for a
    layer the host cannot give: that layer is reported as not applied."""
    report = SandboxReport(mode=options.mode)
    if options.mode == "off":
        report.skipped["sandbox"] = "--sandbox off"
        return report
    if "mmu" in getattr(machine.config, "trace_events", ()) and machine.config.trace:
        report.mode = "off"
        report.skipped["sandbox"] = ("--trace-events mmu mounts tracefs and unmounts it "
                                     "as root at the end of the run")
        return report
    preload()
    root = os.geteuid() == 0
    target: tuple[int, int] | None = None
    paths = late_paths(machine, qmp)
    if root:
        target = resolve_user(options.user or DEFAULT_USER)
        obstacle = uid_drop_obstacle(paths, *target)
        if obstacle is not None:
            report.skipped["user"] = obstacle
            target = None
    elif options.user is not None:
        report.skipped["user"] = f"started as uid {os.geteuid()}: only root changes user"
    _apply_limits(report, options.limits)
    if root:
        _apply_namespaces(report)
    else:
        report.skipped["namespaces"] = "not root"
    if target is not None:
        _hand_over(paths, *target)
        try:
            _drop_user(*target)
            report.uid = target[0]
            report.layers.append(f"uid {target[0]}")
        except (OSError, SandboxError) as err:
            report.skipped["user"] = str(getattr(err, "strerror", None) or err)
    _apply_thread_limit(report, options.limits.threads)
    probes = os.environ.get(PROBE_ENV)
    prober = Prober(probes.split(",")) if probes else None  # its thread predates the filter
    _apply_seccomp(report, options.mode)
    if prober is not None:
        report.probes = prober.run()
    sys.meta_path.insert(0, _LateImportWatch())
    return report


def _apply_limits(report: SandboxReport, limits: Limits) -> None:
    files = max(limits.files, _open_fds() + 8)
    try:
        _set_limit(resource.RLIMIT_NOFILE, files)
        report.limits["files"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError) as err:
        report.skipped["files limit"] = str(err)
    mapped = _address_space()
    if mapped is None:
        report.skipped["memory limit"] = "/proc/self/status has no VmSize"
    else:
        try:
            _set_limit(resource.RLIMIT_AS, mapped + limits.memory)
            report.limits["address_space"] = resource.getrlimit(resource.RLIMIT_AS)[0]
        except (OSError, ValueError) as err:
            report.skipped["memory limit"] = str(err)
    if report.limits:
        shown = [f"files {report.limits.get('files')}"] if "files" in report.limits else []
        if "address_space" in report.limits:
            shown.append(f"address space {report.limits['address_space'] >> 20}M")
        report.layers.append("limits: " + ", ".join(shown))


def _apply_namespaces(report: SandboxReport) -> None:
    error = _unshare(CLONE_NEWNS)
    if error is None:
        error = _make_mounts_private()
    if error is None:
        report.layers.append("mount ns")
    else:
        report.skipped["mount ns"] = error
    error = _unshare(CLONE_NEWNET)
    if error is None:
        report.layers.append("net ns")
    else:
        report.skipped["net ns"] = error


def _apply_thread_limit(report: SandboxReport, threads: int) -> None:
    uid = os.getuid()
    if uid == 0:
        report.skipped["threads limit"] = "root is exempt from RLIMIT_NPROC"
        return
    try:
        value = _tasks_of(uid) + threads
        _set_limit(resource.RLIMIT_NPROC, value)
        report.limits["tasks"] = value
        report.layers.append(f"uid {uid} tasks <= {value}")
    except (OSError, ValueError) as err:
        report.skipped["threads limit"] = str(err)


def _apply_seccomp(report: SandboxReport, mode: str) -> None:
    reason = sc.unsupported_reason()
    if reason is not None:
        report.skipped["seccomp"] = reason
        try:
            sc.set_no_new_privs()
            report.layers.append("no_new_privs")
        except sc.SeccompError as err:
            report.skipped["no_new_privs"] = str(err)
        return
    default = sc.KILL_PROCESS if mode == "strict" else sc.DENY_EPERM
    filt = run_loop_filter(default)
    try:
        filt.install(tsync=True)
    except sc.SeccompError as err:
        report.skipped["seccomp"] = str(err)
        return
    report.syscalls = len(filt.names)
    action = "kill" if mode == "strict" else "EPERM"
    report.layers.insert(0, "no_new_privs")
    report.layers.insert(0, f"seccomp ({report.syscalls} syscalls, else {action})")


# --- tests only: show that a forbidden call is refused inside a real run ---------------------
def _probe_execve() -> int:
    """execve of a path that does not exist: ENOENT where allowed, EPERM where refused;
    either way nothing runs."""
    try:
        os.execv("/nonexistent/pyhvm-sandbox-probe", ["pyhvm-sandbox-probe"])
    except OSError as err:
        return err.errno or 0
    return 0


def _probe_socket() -> int:
    """An INET datagram socket, which any user may create: 0 where allowed (closed at once)."""
    import socket

    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
    except OSError as err:
        return err.errno or 0
    return 0


PROBES = {"execve": _probe_execve, "socket": _probe_socket}


class Prober:
    """Tries each probe on the calling thread and on a thread started now, before the
    filter goes in, so the result shows that the filter reached threads already running;
    one line each on stderr (`sandbox probe: execve main=EPERM thread=EPERM`)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.probes = [(name.strip(), PROBES[name.strip()]) for name in names
                       if name.strip() in PROBES]
        self._go = threading.Event()
        self._seen: dict[str, int] = {}
        self._thread = threading.Thread(target=self._in_thread, name="sandbox-probe",
                                        daemon=True)
        self._thread.start()

    def _in_thread(self) -> None:
        self._go.wait()
        for name, probe in self.probes:
            self._seen[name] = probe()

    def run(self) -> dict[str, str]:
        self._go.set()
        self._thread.join()
        results: dict[str, str] = {}
        for name, probe in self.probes:
            shown = [errno.errorcode.get(value, str(value)) if value else "allowed"
                     for value in (probe(), self._seen.get(name, -1))]
            results[name] = f"main={shown[0]} thread={shown[1]}"
            print(f"pyhvm: sandbox probe: {name} {results[name]}", file=sys.stderr)
        return results


__all__ = ["DEFAULT_USER", "LatePath", "Limits", "MODES", "SYSCALL_GROUPS", "SandboxError",
           "Prober", "SandboxOptions", "SandboxReport", "all_syscall_names", "apply", "late_paths",
           "parse_limits", "parse_options", "resolve_user", "run_loop_filter",
           "uid_drop_obstacle", "user_can_read", "user_can_replace"]
