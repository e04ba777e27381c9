"""The device process's confinement, applied once its devices are built and before it
serves the first request (the guest's first chance to drive it):

1. only the descriptors it needs stay open (the request, response and event eventfds,
   the control socket, disk images, irqfds, stderr; the ring and guest RAM are mapped and
   their fds closed); it never had /dev/kvm (the VMM's fds are O_CLOEXEC and the launcher
   passes only the control socket);
2. PR_SET_NO_NEW_PRIVS: no execve can ever gain privileges again;
3. started as root, it becomes `nobody` (no supplementary groups): the disk images and
   RAM it holds stay usable through the open descriptors, nothing else on the host is;
4. a seccomp filter (pyhvm/runtime/seccomp.py) allows the calls a Python event loop,
   its worker threads and positioned disk I/O make; opening files fails with EACCES (a
   traceback's source lines, a late import), creating processes is impossible (clone only
   with CLONE_THREAD), and anything else kills the process.

`options` (from the VMM's setup): `seccomp` "kill" (default), "errno" (unlisted calls fail
with EPERM: for finding a missing call) or "off"; `user` the account to drop to as root.
"""

from __future__ import annotations

import errno
import os
import pwd
from typing import Any

CLONE_THREAD = 0x00010000
TCGETS = 0x5401
FIONBIO = 0x5421
FIOCLEX = 0x5451

# The calls the device process makes once confined, hottest first (the kernel walks the
# list): its loop (select, eventfd reads and writes, clock), positioned disk I/O, memory
# management, threads (futex, clone with CLONE_THREAD), signals, the control socket.
ALLOWED = (
    "read", "write", "select", "pselect6", "poll", "ppoll", "futex", "clock_gettime",
    "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2", "readv", "writev",
    "fdatasync", "fsync", "lseek", "clock_nanosleep", "nanosleep", "sched_yield",
    "getpid", "gettid", "getuid", "geteuid", "getgid", "getegid",
    "mmap", "munmap", "mremap", "mprotect", "madvise", "brk",
    "rt_sigprocmask", "rt_sigaction", "rt_sigreturn", "sigaltstack", "restart_syscall",
    "close", "fstat", "newfstatat", "fcntl", "dup",
    "sendto", "recvfrom", "sendmsg", "recvmsg", "getsockname",
    "set_robust_list", "rseq", "getrandom", "sched_getaffinity",
    "exit", "exit_group",
)


def close_other_fds(keep: set[int]) -> list[int]:
    """Close every descriptor not in `keep`; the ones left open."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own descriptor, already gone
    left = []
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:
            continue  # the listing's own descriptor, closed by now
        left.append(int(name))
    return sorted(left)


def drop_user(name: str) -> int:
    """As root, become `name` (its uid and gid, no supplementary groups); the uid now."""
    if os.geteuid() != 0:
        return os.geteuid()
    account = pwd.getpwnam(name)
    os.setgroups([])
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)
    return os.geteuid()


def build_filter(action: str) -> Any:
    """The device process's seccomp filter (pyhvm.runtime.seccomp.Filter)."""
    from ..runtime import seccomp as sc

    default = sc.KILL_PROCESS if action == "kill" else sc.DENY_EPERM
    rules: list[Any] = list(ALLOWED)
    rules += [
        sc.Rule("clone", (sc.ArgHasBits(0, CLONE_THREAD),)),   # threads, never processes
        sc.Rule("clone3", action=sc.errno_action(errno.ENOSYS)),  # glibc falls back to clone
        sc.Rule("ioctl", (sc.ArgIn(1, (TCGETS, FIONBIO, FIOCLEX)),)),
        sc.Rule("ioctl", action=sc.errno_action(errno.ENOTTY)),
        sc.Rule("openat", action=sc.errno_action(errno.EACCES)),
        sc.Rule("open", action=sc.errno_action(errno.EACCES)),
        sc.Rule("stat", action=sc.errno_action(errno.EACCES)),
        sc.Rule("lstat", action=sc.errno_action(errno.EACCES)),
        sc.Rule("access", action=sc.errno_action(errno.EACCES)),
        sc.Rule("readlink", action=sc.errno_action(errno.EACCES)),
        sc.Rule("getcwd", action=sc.errno_action(errno.EACCES)),
    ]
    return sc.Filter(rules, default=default)


def confine(keep: set[int], options: dict[str, Any]) -> dict[str, Any]:
    """Apply 1-4 above; what was done, for the VMM's log and tests."""
    report: dict[str, Any] = {"fds": close_other_fds(keep)}
    action = options.get("seccomp", "kill")
    try:
        from ..runtime import seccomp as sc
    except ImportError as err:  # the VMM's seccomp module is missing from this checkout
        _no_new_privs()
        report.update(no_new_privs=True, uid=drop_user(str(options.get("user", "nobody"))),
                      seccomp=f"unavailable: {err}")
        return report
    sc.set_no_new_privs()
    report["no_new_privs"] = sc.no_new_privs()
    report["uid"] = drop_user(str(options.get("user", "nobody")))
    if action == "off":
        report["seccomp"] = "off"
        return report
    reason = sc.unsupported_reason()
    if reason is not None:
        report["seccomp"] = f"unavailable: {reason}"
        return report
    build_filter(action).install()
    report["seccomp"] = action
    return report


def _no_new_privs() -> None:
    import ctypes

    PR_SET_NO_NEW_PRIVS = 38
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
