"""Shared by the integration and cross-check tests: build the guest kit, read its output."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUEST_DIR = ROOT / "guest"
GUESTKIT_ELF = GUEST_DIR / "build" / "guestkit.elf"
BOOT_TIMEOUT = 60  # seconds: every test that boots a guest stops it by then


def build_guestkit() -> Path:
    """`make -C guest` (incremental); the ELF, or a skip that says what is missing."""
    result = subprocess.run(["make", "-C", str(GUEST_DIR)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"make -C guest failed:\n{result.stdout}\n{result.stderr}")
    return GUESTKIT_ELF


def kvm_skip_reason() -> str | None:
    """Why KVM tests cannot run here, or None. With PYHVM_REQUIRE_KVM=1 (CI) they must."""
    reason = None
    if not os.path.exists("/dev/kvm"):
        reason = "/dev/kvm does not exist"
    elif not os.access("/dev/kvm", os.R_OK | os.W_OK):
        reason = "no permission to open /dev/kvm"
    if reason and os.environ.get("PYHVM_REQUIRE_KVM") == "1":
        pytest.fail(f"PYHVM_REQUIRE_KVM=1 but {reason}")
    return reason


def parse_results(output: str) -> dict[str, dict[str, str]]:
    """{scenario: {key: value}} from the guest's `RESULT <scenario> key=value ...` lines."""
    results: dict[str, dict[str, str]] = {}
    for line in output.splitlines():
        if line.startswith("RESULT "):
            tokens = shlex.split(line)
            fields = dict(token.split("=", 1) for token in tokens[2:] if "=" in token)
            results[tokens[1]] = fields
    return results


def run_pyhvm(*args: str, timeout: float = BOOT_TIMEOUT,
              input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m pyhvm run ...` in a child process (so a guest can never hang pytest)."""
    return subprocess.run([sys.executable, "-m", "pyhvm", "run", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          input=input.decode() if input is not None else None,
                          stdin=None if input is not None else subprocess.DEVNULL)
