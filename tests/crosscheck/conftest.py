"""Fixtures for booting the guest kit under QEMU (helpers live in guestkit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import guestkit


@pytest.fixture(scope="session")
def guestkit_elf() -> Path:
    """guest/build/guestkit.elf, (re)built by make at the start of the session."""
    try:
        return guestkit.build_guestkit()
    except (OSError, RuntimeError) as exc:
        pytest.fail(f"cannot build the guest kit: {exc}")


@pytest.fixture(scope="session")
def qemu_boot(guestkit_elf):
    """boot(cmdline) -> GuestRun under QEMU; skips when QEMU or /dev/kvm is missing."""
    reason = guestkit.qemu_missing_reason()
    if reason:
        pytest.skip(reason)

    def boot(cmdline: str, timeout: float = 60) -> guestkit.GuestRun:
        return guestkit.run_qemu(guestkit_elf, cmdline, timeout=timeout)

    return boot
