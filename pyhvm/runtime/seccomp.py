"""Seccomp filters: an allow-list of system calls as classic BPF, installed through ctypes.

The kernel runs the filter at every system call of every thread that carries it and acts on
its verdict: allow, fail with an errno, or kill the process. pyhvm builds the program
itself (no libseccomp) for x86_64 only:

1. `seccomp_data.arch` must be AUDIT_ARCH_X86_64, else the process is killed: a 32-bit
   `int 0x80` call uses other numbers, and a filter that read them as x86_64 ones would
   allow the wrong calls.
2. x32 calls (number with bit 30 set) get the default action: they alias x86_64 numbers.
3. Each allowed call is one comparison of the number, in the order given (put the hot calls
   first: the kernel walks the list), optionally followed by checks of its arguments' low 32
   bits (enough for ioctl request numbers, socket families and clone flags, which the kernel
   itself reads as 32-bit ints or only tests bits of).
4. Anything else gets the default action: SECCOMP_RET_ERRNO(EPERM), so a call nobody
   foresaw fails like a refused permission, or SECCOMP_RET_KILL_PROCESS.

`install()` sets no_new_privs (required to install a filter without CAP_SYS_ADMIN, and it
keeps execve from gaining privileges) and installs with SECCOMP_FILTER_FLAG_TSYNC, so every
thread of the process gets the filter at once; threads started later inherit it. A filter
can never be removed: test it in a child process. `evaluate()` runs a program on a
made-up call, so the decisions can be tested without a kernel.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..errors import HostError
from .syscalls_x86_64 import SYSCALLS

# linux/audit.h, linux/seccomp.h, linux/prctl.h
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_KILL_THREAD = 0x00000000
SECCOMP_RET_TRAP = 0x00030000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_LOG = 0x7FFC0000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ACTION_FULL = 0xFFFF0000
SECCOMP_RET_DATA = 0x0000FFFF
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_FILTER_FLAG_TSYNC = 1
PR_GET_SECCOMP = 21
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
SECCOMP_MODE_FILTER = 2
BPF_MAXINSNS = 4096

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6];
DATA_NR = 0
DATA_ARCH = 4
DATA_ARGS = 16

# linux/filter.h: classic BPF opcodes (the subset used here)
BPF_LD, BPF_ALU, BPF_JMP, BPF_RET = 0x00, 0x04, 0x05, 0x06
BPF_W, BPF_ABS, BPF_K = 0x00, 0x20, 0x00
BPF_AND = 0x50
BPF_JA, BPF_JEQ, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x30, 0x40
LD_ABS = BPF_LD | BPF_W | BPF_ABS
RET_K = BPF_RET | BPF_K
JEQ_K, JGE_K, JSET_K = BPF_JMP | BPF_JEQ | BPF_K, BPF_JMP | BPF_JGE | BPF_K, \
    BPF_JMP | BPF_JSET | BPF_K
AND_K = BPF_ALU | BPF_AND | BPF_K
_INSN = struct.Struct("=HBBI")  # struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }

MASK32 = 0xFFFFFFFF


class SeccompError(HostError):
    """A filter cannot be built or installed here; the message says why."""


def errno_action(code: int = errno.EPERM) -> int:
    """SECCOMP_RET_ERRNO with `code`: the call returns -1 and sets errno to it."""
    return SECCOMP_RET_ERRNO | (code & SECCOMP_RET_DATA)


DENY_EPERM = errno_action(errno.EPERM)
KILL_PROCESS = SECCOMP_RET_KILL_PROCESS


# --- argument checks (on an argument's low 32 bits) -----------------------------------------
@dataclass(frozen=True)
class ArgIn:
    """Passes when `(arg[index] & mask)` is one of `values`."""

    index: int
    values: tuple[int, ...]
    mask: int = MASK32


@dataclass(frozen=True)
class ArgHasBits:
    """Passes when `arg[index] & bits` is not zero."""

    index: int
    bits: int


@dataclass(frozen=True)
class ArgLacksBits:
    """Passes when `arg[index] & bits` is zero."""

    index: int
    bits: int


ArgCheck = ArgIn | ArgHasBits | ArgLacksBits


@dataclass(frozen=True)
class Rule:
    """What happens to one system call: `action` when every check passes (no checks: always).

    Several rules may name the same call; they are tried in order, and a call that passes
    none gets the filter's default action.
    """

    name: str
    checks: tuple[ArgCheck, ...] = ()
    action: int = SECCOMP_RET_ALLOW


def syscall_number(name: str) -> int:
    try:
        return SYSCALLS[name]
    except KeyError:
        raise SeccompError(f"unknown x86_64 system call {name!r}") from None


# --- building the program -----------------------------------------------------------------
class _Asm:
    """Instructions with symbolic jump targets, resolved to cBPF's 8-bit relative offsets."""

    def __init__(self) -> None:
        self.code: list[tuple[int, object, object, int]] = []
        self.labels: dict[object, int] = {}

    def emit(self, code: int, k: int = 0, jt: object = 0, jf: object = 0) -> None:
        self.code.append((code, jt, jf, k & MASK32))

    def label(self, name: object) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> list[tuple[int, int, int, int]]:
        out = []
        for index, (code, jt, jf, k) in enumerate(self.code):
            out.append((code, self._offset(index, jt), self._offset(index, jf), k))
        return out

    def _offset(self, index: int, target: object) -> int:
        if isinstance(target, int):
            return target
        offset = self.labels[target] - index - 1
        if not 0 <= offset <= 255:
            raise SeccompError(f"filter jump of {offset} instructions does not fit cBPF")
        return offset


def _emit_check(asm: _Asm, check: ArgCheck, fail: object) -> None:
    """Load the argument's low word and fall through when the check passes."""
    if not 0 <= check.index < 6:
        raise SeccompError(f"system calls have six arguments, not {check.index + 1}")
    asm.emit(LD_ABS, DATA_ARGS + 8 * check.index)  # little-endian: the low word comes first
    if isinstance(check, ArgIn):
        if not check.values:
            raise SeccompError("ArgIn needs at least one value")
        if check.mask != MASK32:
            asm.emit(AND_K, check.mask)
        passed = object()
        for value in check.values[:-1]:
            asm.emit(JEQ_K, value & check.mask, jt=passed, jf=0)
        asm.emit(JEQ_K, check.values[-1] & check.mask, jt=0, jf=fail)
        asm.label(passed)
    elif isinstance(check, ArgHasBits):
        asm.emit(JSET_K, check.bits, jt=0, jf=fail)
    else:
        asm.emit(JSET_K, check.bits, jt=fail, jf=0)


def build_program(rules: Iterable[Rule | str], default: int = DENY_EPERM
                  ) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions. A plain name allows that call."""
    by_number: dict[int, list[Rule]] = {}
    for rule in rules:
        if isinstance(rule, str):
            rule = Rule(rule)
        by_number.setdefault(syscall_number(rule.name), []).append(rule)
    asm = _Asm()
    asm.emit(LD_ABS, DATA_ARCH)
    asm.emit(JEQ_K, AUDIT_ARCH_X86_64, jt=1, jf=0)
    asm.emit(RET_K, SECCOMP_RET_KILL_PROCESS)
    asm.emit(LD_ABS, DATA_NR)
    asm.emit(JGE_K, X32_SYSCALL_BIT, jt=0, jf=1)
    asm.emit(RET_K, default)
    for number, group in by_number.items():
        skip = object()
        asm.emit(JEQ_K, number, jt=0, jf=skip)
        for rule in group:
            next_rule = object()
            for check in rule.checks:
                _emit_check(asm, check, next_rule)
            asm.emit(RET_K, rule.action)
            asm.label(next_rule)
            if not rule.checks:
                break  # an unconditional rule: the ones after it are never reached
        asm.emit(RET_K, default)  # the accumulator now holds an argument, not the number
        asm.label(skip)
    asm.emit(RET_K, default)
    program = asm.assemble()
    if len(program) > BPF_MAXINSNS:
        raise SeccompError(f"filter has {len(program)} instructions, the kernel takes "
                           f"{BPF_MAXINSNS}")
    return program


def encode(program: Sequence[tuple[int, int, int, int]]) -> bytes:
    """The program as the kernel's array of struct sock_filter."""
    return b"".join(_INSN.pack(*insn) for insn in program)


def evaluate(program: Sequence[tuple[int, int, int, int]], nr: int,
             args: Sequence[int] = (), arch: int = AUDIT_ARCH_X86_64) -> int:
    """Run `program` on one made-up call, as the kernel would; its return value (action).

    Interprets only what `build_program` emits (absolute word loads, AND, JEQ/JGE/JSET, RET).
    """
    words = [nr & MASK32, arch & MASK32, 0, 0]
    for value in list(args) + [0] * (6 - len(args)):
        words += [value & MASK32, (value >> 32) & MASK32]
    acc, pc = 0, 0
    while pc < len(program):
        code, jt, jf, k = program[pc]
        pc += 1
        if code == LD_ABS:
            acc = words[k // 4]
        elif code == AND_K:
            acc &= k
        elif code == RET_K:
            return k
        elif code in (JEQ_K, JGE_K, JSET_K):
            taken = {JEQ_K: acc == k, JGE_K: acc >= k, JSET_K: bool(acc & k)}[code]
            pc += jt if taken else jf
        else:
            raise ValueError(f"instruction {code:#x} is not one build_program emits")
    raise ValueError("the program ran off its end")


# --- installing ---------------------------------------------------------------------------
class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong]
    return libc


def unsupported_reason() -> str | None:
    """Why seccomp filters cannot be used here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "seccomp is Linux-only"
    if platform.machine() != "x86_64":
        return f"the filter is written for x86_64, not {platform.machine()}"
    libc = _libc()
    if libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0:
        return f"the kernel has no seccomp ({os.strerror(ctypes.get_errno())})"
    action = ctypes.c_uint32(SECCOMP_RET_KILL_PROCESS)
    if libc.syscall(SYSCALLS["seccomp"], SECCOMP_GET_ACTION_AVAIL, 0,
                    ctypes.byref(action)) != 0:
        return "the kernel has no SECCOMP_RET_KILL_PROCESS (Linux 4.14 or later needed)"
    return None


def set_no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: execve can never again grant privileges (setuid, file caps)."""
    libc = _libc()
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SeccompError(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")


def no_new_privs() -> bool:
    return _libc().prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1


def install(program: Sequence[tuple[int, int, int, int]], tsync: bool = True) -> None:
    """Set no_new_privs and install `program` on every thread (TSYNC) or this one only."""
    set_no_new_privs()
    raw = ctypes.create_string_buffer(encode(program))
    fprog = _SockFprog(len(program), ctypes.addressof(raw))
    libc = _libc()
    flags = SECCOMP_FILTER_FLAG_TSYNC if tsync else 0
    result = libc.syscall(SYSCALLS["seccomp"], SECCOMP_SET_MODE_FILTER, flags,
                          ctypes.byref(fprog))
    if result < 0:
        raise SeccompError(f"seccomp(SECCOMP_SET_MODE_FILTER): "
                           f"{os.strerror(ctypes.get_errno())}")
    if result > 0:  # TSYNC: the id of a thread that could not take the filter
        raise SeccompError(f"seccomp: thread {result} could not take the filter (it has "
                           f"another filter of its own)")


class Filter:
    """An allow-list and a default action; `install()` applies it to the whole process."""

    def __init__(self, rules: Iterable[Rule | str], default: int = DENY_EPERM) -> None:
        self.rules = [Rule(r) if isinstance(r, str) else r for r in rules]
        self.default = default
        self.program = build_program(self.rules, default)

    @property
    def names(self) -> list[str]:
        """The calls this filter lets through (some only with certain arguments)."""
        seen: dict[str, None] = {}
        for rule in self.rules:
            if rule.action == SECCOMP_RET_ALLOW:
                seen.setdefault(rule.name)
        return list(seen)

    def decide(self, name: str, *args: int) -> int:
        return evaluate(self.program, syscall_number(name), args)

    def install(self, tsync: bool = True) -> None:
        install(self.program, tsync)


__all__ = ["AUDIT_ARCH_X86_64", "ArgHasBits", "ArgIn", "ArgLacksBits", "DENY_EPERM", "Filter",
           "KILL_PROCESS", "Rule", "SECCOMP_RET_ALLOW", "SECCOMP_RET_KILL_PROCESS",
           "SeccompError", "build_program", "encode", "errno_action", "evaluate", "install",
           "no_new_privs", "set_no_new_privs", "syscall_number", "unsupported_reason"]
