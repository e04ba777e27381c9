from __future__ import annotations

from pathlib import Path

import pytest

from tests.guestkit import build_guestkit, kvm_skip_reason


@pytest.fixture(scope="session")
def guestkit() -> Path:
    reason = kvm_skip_reason()
    if reason:
        pytest.skip(reason)
    return build_guestkit()
