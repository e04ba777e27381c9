"""Boot the guest kit under KVM and check what it prints and how it exits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.guestkit import parse_results, run_pyhvm

pytestmark = pytest.mark.kvm


def test_hello_prints_banner_and_cmdline_and_exits_with_debug_exit_status(
        guestkit: Path) -> None:
    result = run_pyhvm("--kernel", str(guestkit), "--append", "scenario=hello x=1 y=2",
                       "--max-seconds", "30")
    assert result.returncode == 1, result.stderr  # guest wrote 0: (0 << 1) | 1
    assert "pyhvm guest kit" in result.stdout
    assert "cmdline: scenario=hello x=1 y=2" in result.stdout
    assert parse_results(result.stdout)["hello"] == {"ok": "1", "args": "3"}
