"""The seccomp filter builder: its decisions (a cBPF interpreter, no kernel), then the real
kernel running it in forked children (a filter can never be removed from a process)."""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import signal
import threading
from typing import Any, Callable

import pytest

from pyhvm.runtime import seccomp as sc
from pyhvm.runtime.syscalls_x86_64 import SYSCALLS

CLONE_THREAD = 0x00010000
KVM_RUN = 0xAE80
FIONBIO = 0x5421


def small_filter(default: int = sc.DENY_EPERM) -> sc.Filter:
    return sc.Filter([
        sc.Rule("ioctl", (sc.ArgIn(1, (0xAE00,), mask=0xFF00),)),
        sc.Rule("ioctl", (sc.ArgIn(1, (FIONBIO, 0x5401)),)),
        "read",
        sc.Rule("clone", (sc.ArgHasBits(0, CLONE_THREAD),)),
        sc.Rule("socket", (sc.ArgIn(0, (1,)), sc.ArgLacksBits(1, 0x80000))),
        sc.Rule("clone3", action=sc.errno_action(errno.ENOSYS)),
    ], default)


# --- decisions, without a kernel ---------------------------------------------------------------
def test_listed_call_is_allowed_and_unlisted_gets_default() -> None:
    f = small_filter()
    assert f.decide("read") == sc.SECCOMP_RET_ALLOW
    assert f.decide("write") == sc.errno_action(errno.EPERM)
    assert small_filter(sc.KILL_PROCESS).decide("write") == sc.SECCOMP_RET_KILL_PROCESS


def test_ioctl_allowed_only_for_listed_request_numbers() -> None:
    f = small_filter()
    assert f.decide("ioctl", 3, KVM_RUN) == sc.SECCOMP_RET_ALLOW  # any KVM (0xAE) request
    assert f.decide("ioctl", 3, 0xAE01) == sc.SECCOMP_RET_ALLOW
    assert f.decide("ioctl", 3, FIONBIO) == sc.SECCOMP_RET_ALLOW
    assert f.decide("ioctl", 3, 0x5401) == sc.SECCOMP_RET_ALLOW
    assert f.decide("ioctl", 3, 0x400454CA) == sc.DENY_EPERM  # TUNSETIFF
    assert f.decide("ioctl", 3, 0x5402) == sc.DENY_EPERM


def test_ioctl_request_checked_on_the_low_32_bits_as_the_kernel_reads_it() -> None:
    f = small_filter()
    assert f.decide("ioctl", 3, (1 << 32) | KVM_RUN) == sc.SECCOMP_RET_ALLOW
    assert f.decide("ioctl", 3, (1 << 32) | 0x5402) == sc.DENY_EPERM


def test_clone_allowed_only_for_threads() -> None:
    f = small_filter()
    assert f.decide("clone", CLONE_THREAD | 0x3D0F00) == sc.SECCOMP_RET_ALLOW
    assert f.decide("clone", signal.SIGCHLD) == sc.DENY_EPERM  # fork()
    assert f.decide("clone3") == sc.errno_action(errno.ENOSYS)


def test_every_check_of_a_rule_must_pass() -> None:
    f = small_filter()
    assert f.decide("socket", 1, 2) == sc.SECCOMP_RET_ALLOW
    assert f.decide("socket", 1, 2 | 0x80000) == sc.DENY_EPERM
    assert f.decide("socket", 17, 3) == sc.DENY_EPERM  # AF_PACKET


def test_other_architecture_is_killed_before_anything_else() -> None:
    f = small_filter()
    assert sc.evaluate(f.program, SYSCALLS["read"], arch=0x40000003) == \
        sc.SECCOMP_RET_KILL_PROCESS  # AUDIT_ARCH_I386


def test_x32_numbers_get_the_default_action() -> None:
    f = small_filter()
    assert sc.evaluate(f.program, sc.X32_SYSCALL_BIT | SYSCALLS["read"]) == sc.DENY_EPERM


def test_unknown_name_and_bad_argument_index_are_refused() -> None:
    with pytest.raises(sc.SeccompError, match="unknown x86_64 system call"):
        sc.Filter(["no_such_call"])
    with pytest.raises(sc.SeccompError, match="six arguments"):
        sc.Filter([sc.Rule("read", (sc.ArgIn(6, (0,)),))])


def test_encoded_program_is_eight_bytes_per_instruction() -> None:
    f = small_filter()
    raw = sc.encode(f.program)
    assert len(raw) == 8 * len(f.program)
    code, jt, jf, k = f.program[0]
    assert raw[:8] == code.to_bytes(2, "little") + bytes([jt, jf]) + k.to_bytes(4, "little")


def test_names_lists_allowed_calls_once() -> None:
    assert small_filter().names == ["ioctl", "read", "clone", "socket"]


# --- the kernel runs it (in forked children) -----------------------------------------------
REASON = sc.unsupported_reason()
needs_seccomp = pytest.mark.skipif(REASON is not None, reason=REASON or "")

# What a forked Python child needs to report back and exit.
CHILD_BASE = ["read", "write", "close", "exit", "exit_group", "mmap", "munmap", "mprotect",
              "brk", "madvise", "futex", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
              "getpid", "gettid", "set_robust_list", "rseq", "sched_yield", "newfstatat",
              "fstat", "lseek", "getrandom", "poll", "select", "pselect6", "fcntl", "ioctl",
              "sigaltstack", "munlock", "mremap", "clock_nanosleep", "nanosleep", "prctl"]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def raw_call(name_or_number: str | int, *args: int) -> int:
    """A system call by number, bypassing anything Python caches; -errno on failure."""
    number = SYSCALLS[name_or_number] if isinstance(name_or_number, str) else name_or_number
    libc = _libc()
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
    return -ctypes.get_errno() if result == -1 else result


def in_child(body: Callable[[], Any]) -> tuple[int, Any]:
    """Run `body` in a forked child; its wait status and the JSON it returned."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(r)
            os.write(w, json.dumps(body()).encode())
        except BaseException as err:
            os.write(w, json.dumps({"error": repr(err)}).encode())
            code = 3
        os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    return status, json.loads(data) if data else None


@needs_seccomp
def test_allowed_call_works_and_blocked_call_returns_eperm() -> None:
    def body() -> dict[str, int]:
        sc.Filter(CHILD_BASE).install()
        return {"getpid": raw_call("getpid"), "pid": os.getpid(),
                "getppid": raw_call("getppid"), "nnp": int(sc.no_new_privs())}

    status, out = in_child(body)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out
    assert out["getpid"] == out["pid"] > 0
    assert out["getppid"] == -errno.EPERM
    assert out["nnp"] == 1


@needs_seccomp
def test_filter_applies_to_threads_started_before_it() -> None:
    def body() -> dict[str, int]:
        go_r, go_w = os.pipe()
        seen: dict[str, int] = {}

        def worker() -> None:
            os.read(go_r, 1)  # blocks until the filter is in place
            seen["thread_getppid"] = raw_call("getppid")
            seen["thread_getpid"] = raw_call("getpid")

        thread = threading.Thread(target=worker)
        thread.start()
        assert raw_call("getppid") > 0  # no filter yet
        sc.Filter(CHILD_BASE).install(tsync=True)
        os.write(go_w, b"x")
        thread.join()
        return seen

    status, out = in_child(body)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out
    assert out["thread_getppid"] == -errno.EPERM
    assert out["thread_getpid"] > 0


@needs_seccomp
def test_kill_process_default_kills_with_sigsys() -> None:
    def body() -> dict[str, int]:
        sc.Filter(CHILD_BASE, default=sc.KILL_PROCESS).install()
        raw_call("getppid")
        return {"survived": 1}

    status, out = in_child(body)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS
    assert out is None


@needs_seccomp
def test_argument_checks_in_the_kernel() -> None:
    def body() -> dict[str, int]:
        sc.Filter(CHILD_BASE + [sc.Rule("socket", (sc.ArgIn(0, (1,)),)),
                                sc.Rule("clone3", action=sc.errno_action(errno.ENOSYS))]
                  ).install()
        unix = raw_call("socket", 1, 2, 0)  # AF_UNIX, SOCK_DGRAM
        if unix >= 0:
            os.close(unix)
        return {"unix": unix, "inet": raw_call("socket", 2, 2, 0),
                "clone3": raw_call("clone3", 0, 0)}

    status, out = in_child(body)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out
    assert out["unix"] >= 0
    assert out["inet"] == -errno.EPERM
    assert out["clone3"] == -errno.ENOSYS


@needs_seccomp
def test_x32_call_is_refused() -> None:
    def body() -> dict[str, int]:
        sc.Filter(CHILD_BASE).install()
        return {"x32_getpid": raw_call(sc.X32_SYSCALL_BIT | SYSCALLS["getpid"])}

    status, out = in_child(body)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out
    assert out["x32_getpid"] == -errno.EPERM


# mov eax, 20 (getpid in the i386 table); int 0x80; ret
I386_GETPID = bytes([0xB8, 0x14, 0x00, 0x00, 0x00, 0xCD, 0x80, 0xC3])


def _int80_getpid() -> int:
    code = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    code.write(I386_GETPID)
    address = ctypes.addressof(ctypes.c_char.from_buffer(code))
    return ctypes.CFUNCTYPE(ctypes.c_int)(address)()


@needs_seccomp
def test_i386_call_through_int80_kills_the_process() -> None:
    status, out = in_child(lambda: {"pid": _int80_getpid(), "real": os.getpid()})
    if not (os.WIFEXITED(status) and out and out.get("pid") == out.get("real")):
        pytest.skip("this kernel runs no 32-bit system calls (no IA32 emulation)")

    def body() -> dict[str, int]:
        sc.Filter(CHILD_BASE).install()
        return {"pid": _int80_getpid()}

    status, out = in_child(body)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS
