"""A missing console font is a warning only where someone will look at text mode."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pyhvm.machine.display import load_default_font


@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING])
def test_a_missing_font_is_logged_once_at_the_level_asked(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, level: int) -> None:
    with caplog.at_level(logging.DEBUG, logger="pyhvm.vga"):
        assert load_default_font(str(tmp_path), missing_level=level) is None
    records = [r for r in caplog.records if "no VGA font" in r.getMessage()]
    assert [r.levelno for r in records] == [level]
