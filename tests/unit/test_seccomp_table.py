"""The shipped x86_64 system call table against the host's <asm/unistd_64.h>, compiled.

The filter matches numbers; a wrong number would allow one call and refuse another. A C
program built against the kernel header prints each number the table holds.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pyhvm.runtime import sandbox
from pyhvm.runtime.syscalls_x86_64 import SYSCALLS
from tools.gen_syscalls import DEFAULT_HEADER, parse_header, render

REPO = Path(__file__).resolve().parents[2]


def compiled_numbers(names: list[str], tmp_path: Path) -> dict[str, int]:
    lines = ["#include <stdio.h>", "#include <asm/unistd_64.h>", "int main(void) {"]
    for name in names:
        lines += [f"#ifdef __NR_{name}", f'    printf("{name} %d\\n", __NR_{name});',
                  "#else", f'    printf("{name} -1\\n");', "#endif"]
    lines += ["    return 0;", "}"]
    source = tmp_path / "numbers.c"
    source.write_text("\n".join(lines) + "\n")
    binary = tmp_path / "numbers"
    subprocess.run(["gcc", "-o", str(binary), str(source)], check=True, capture_output=True)
    out = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    return {name: int(number) for name, number in (line.split() for line in out.splitlines())}


@pytest.mark.skipif(shutil.which("gcc") is None or not Path(DEFAULT_HEADER).exists(),
                    reason="needs gcc and the kernel headers (linux-libc-dev)")
def test_table_matches_compiled_header(tmp_path: Path) -> None:
    names = sorted(SYSCALLS)
    assert compiled_numbers(names, tmp_path) == SYSCALLS


def test_every_call_the_sandbox_names_is_in_the_table() -> None:
    for name in sandbox.all_syscall_names():
        assert name in SYSCALLS, name


@pytest.mark.skipif(not Path(DEFAULT_HEADER).exists(), reason="no kernel headers")
def test_generator_reproduces_the_shipped_table() -> None:
    generated = render(parse_header(Path(DEFAULT_HEADER).read_text()), DEFAULT_HEADER)
    shipped = (REPO / "pyhvm" / "runtime" / "syscalls_x86_64.py").read_text()
    assert parse_header_from_module(generated) == parse_header_from_module(shipped)


def parse_header_from_module(text: str) -> dict[str, int]:
    namespace: dict[str, object] = {}
    exec(compile(text, "syscalls", "exec"), namespace)
    table = namespace["SYSCALLS"]
    assert isinstance(table, dict)
    return table
