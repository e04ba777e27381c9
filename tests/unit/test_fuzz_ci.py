"""CI's share of fuzzing: a short campaign from a fixed seed per configuration, and every
saved reproducer (tests/fuzz/reproducers/*.txt must now run clean; open/*.txt are bugs in
code the fuzzer does not own, which must still fail the way their file says until fixed),
and every program of the saved corpus (tests/fuzz/corpus/<config>/*.txt) must run clean.
Long campaigns run outside CI: `pyhvm fuzz --config NAME --ops N`."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhvm.fuzz.configs import CONFIGS
from pyhvm.fuzz.engine import Campaign, replay

REPRODUCERS = Path(__file__).resolve().parents[1] / "fuzz" / "reproducers"
FIXED = sorted(REPRODUCERS.glob("*.txt"))
OPEN = sorted((REPRODUCERS / "open").glob("*.txt"))
CI_SEED = 2026
CI_OPS = 3000  # per configuration: a few seconds in all


def _recorded_signature(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# signature: "):
            return line.split(": ", 1)[1].strip()
    raise AssertionError(f"{path.name} has no '# signature:' line")


OPEN_SIGNATURES = {_recorded_signature(path) for path in OPEN}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_short_campaign_from_a_fixed_seed_finds_nothing_new(config: str) -> None:
    stats = Campaign(config, seed=CI_SEED, engine="random", minimize_findings=False).run(CI_OPS)
    assert stats.ops >= CI_OPS
    new = {signature: finding.violation.message for signature, finding in stats.findings.items()
           if signature not in OPEN_SIGNATURES}
    assert not new, f"{config}: {new}"


@pytest.mark.parametrize("path", FIXED, ids=[path.name for path in FIXED])
def test_fixed_reproducer_runs_clean(path: Path) -> None:
    config, result = replay(path)
    assert result.violation is None, f"{path.name} on {config}: {result.violation.message}"


@pytest.mark.parametrize("path", OPEN, ids=[path.name for path in OPEN])
def test_open_reproducer_still_shows_its_bug(path: Path) -> None:
    """When this fails because the bug is gone, move the file up to reproducers/."""
    config, result = replay(path)
    assert result.violation is not None, f"{path.name} runs clean now: move it to {REPRODUCERS}"
    assert result.violation.signature == _recorded_signature(path)


def test_every_reproducer_names_a_known_configuration() -> None:
    for path in FIXED + OPEN:
        first = next(line for line in path.read_text().splitlines()
                     if line and not line.startswith("#"))
        assert first.split()[:1] == ["config"] and first.split()[1] in CONFIGS, path.name


CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"


def test_the_saved_corpus_has_programs_for_every_configuration() -> None:
    """The corpus tools/device_coverage.py replays: a folder per configuration, kept by
    `pyhvm fuzz --corpus tests/fuzz/corpus` (the last long campaign's finds)."""
    assert {path.parent.name for path in CORPUS.glob("*/*.txt")} == set(CONFIGS)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_the_saved_corpus_replays_clean(config: str) -> None:
    programs = sorted((CORPUS / config).glob("*.txt"))
    assert programs, f"no corpus for {config}"
    for path in programs:
        used, result = replay(path)
        assert used == config, path.name
        assert result.violation is None, f"{path.name}: {result.violation.message}"
