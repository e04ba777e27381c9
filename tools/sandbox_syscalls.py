#!/usr/bin/env python3
"""Which system calls sandboxed `pyhvm run` processes made, from an `strace -f` log.

How pyhvm/runtime/sandbox.py's allow-list was measured: run real workloads (the
integration tests, or single `pyhvm run` commands) under strace, then count, per call, what
every pyhvm process made after its seccomp filter went in (the `seccomp(...)` call marks
the point), and which of those calls the filter refused (EPERM while not on the list):

    strace -f -qq -o /tmp/run.strace python3 -m pytest -q tests/integration/test_disk.py
    python3 tools/sandbox_syscalls.py /tmp/run.strace

Threads are followed through clone/clone3 with CLONE_THREAD, so vCPU and worker threads
count with their process; only processes started as `python -m pyhvm` count (a browser a
test drives has seccomp filters of its own).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyhvm.runtime.sandbox import all_syscall_names  # noqa: E402

_LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")
_RESULT = re.compile(r"=\s+(-?\d+|0x[0-9a-f]+|\?)(?:\s+(E[A-Z0-9]+))?")
_IOCTL = re.compile(r"^(?:\d+|\d+<[^>]*>), ([A-Z_0-9]+|0x[0-9a-f]+|_IOC\([^)]*\))")


def analyse(lines: list[str]) -> dict[str, object]:
    tgid: dict[int, int] = {}
    pyhvm: set[int] = set()  # processes that exec'd `python -m pyhvm ...`
    sandboxed: set[int] = set()  # thread-group leaders past their filter
    calls: collections.Counter[str] = collections.Counter()
    refused: collections.Counter[str] = collections.Counter()
    ioctls: collections.Counter[str] = collections.Counter()
    allowed = set(all_syscall_names())
    for line in lines:
        match = _LINE.match(line)
        if not match:
            continue
        tid = int(match.group(1))
        name = match.group(2) or match.group(3)
        rest = match.group(4)
        group = tgid.setdefault(tid, tid)
        if name == "execve" and match.group(3):
            (pyhvm.add if '"pyhvm"' in rest else pyhvm.discard)(group)
        if name in ("clone", "clone3") and "CLONE_THREAD" in rest:
            result = _RESULT.search(rest)
            if result and result.group(1).isdigit():
                tgid[int(result.group(1))] = group
        if name == "seccomp" and "SECCOMP_SET_MODE_FILTER" in rest and \
                "unfinished" not in rest and group in pyhvm:
            sandboxed.add(group)
            continue
        if group not in sandboxed or "unfinished ..." in rest:
            continue
        calls[name] += 1
        result = _RESULT.search(rest)
        if result and result.group(2) == "EPERM" and name not in allowed:
            refused[name] += 1
        if name == "ioctl" and match.group(3):
            request = _IOCTL.match(rest)
            if request:
                ioctls[request.group(1)] += 1
    return {"processes": len(sandboxed), "calls": dict(calls.most_common()),
            "refused": dict(refused.most_common()), "ioctls": dict(ioctls.most_common()),
            "listed_but_unused": sorted(allowed - set(calls))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", help="strace -f -o output files")
    args = parser.parse_args(argv)
    lines: list[str] = []
    for path in args.logs:
        lines += Path(path).read_text(errors="replace").splitlines()
    print(json.dumps(analyse(lines), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
