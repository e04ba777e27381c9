#!/usr/bin/env python3
"""Branch coverage of every device model, from the unit tests and the saved fuzz corpus.

Issue 10 sets the goal: every module of pyhvm/devices/ at >= 90 % branch coverage (covered
branches over branches, not coverage.py's line+branch blend) from the corpus and the tests.
This runs the unit tests under coverage.py, then replays every corpus program
(tests/fuzz/corpus/<config>/*.txt, kept by `pyhvm fuzz --corpus`) into the same data, and
prints one row per module. The fuzz tests themselves are left out of the first step: their
campaigns start a coverage meter of their own, and coverage.py allows one tracer at a time.

    python3 tools/device_coverage.py [--min 90] [--corpus DIR] [--json FILE] [--no-tests]

Exit status: 0 every module at or above --min, 1 one below it, 2 a step failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "pyhvm/devices"
DEFAULT_CORPUS = ROOT / "tests" / "fuzz" / "corpus"


def coverage_run(data_file: Path, args: list[str], append: bool, quiet: bool = False) -> int:
    """Run `python3 ARGS` under coverage.py; `quiet` shows its output only if it fails."""
    command = [sys.executable, "-m", "coverage", "run", "--branch", f"--source={SOURCE}",
               f"--data-file={data_file}"] + (["--append"] if append else []) + args
    if not quiet:
        return subprocess.run(command, cwd=ROOT).returncode
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
    return result.returncode


def unit_tests(data_file: Path) -> int:
    fuzz_tests = sorted(str(path.relative_to(ROOT))
                        for path in (ROOT / "tests" / "unit").glob("test_fuzz*.py"))
    ignores = [f"--ignore={path}" for path in fuzz_tests]
    return coverage_run(data_file, ["-m", "pytest", "tests/unit", "-q", "-p",
                                    "no:cacheprovider", *ignores], append=data_file.exists())


def corpus_replay(data_file: Path, corpus: Path) -> tuple[int, int]:
    """Replay the corpus in one process; returns (exit status, programs replayed)."""
    programs = sorted(str(path) for path in corpus.glob("*/*.txt"))
    if not programs:
        return 0, 0
    status = coverage_run(data_file, ["-m", "pyhvm", "fuzz", "--replay", *programs],
                          append=data_file.exists(), quiet=True)
    return status, len(programs)


def branch_table(data_file: Path) -> dict[str, dict[str, float | int]]:
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        subprocess.run([sys.executable, "-m", "coverage", "json", "-q",
                        f"--data-file={data_file}", "-o", report.name], cwd=ROOT, check=True)
        files = json.loads(Path(report.name).read_text())["files"]
    table: dict[str, dict[str, float | int]] = {}
    for name, entry in sorted(files.items()):
        summary = entry["summary"]
        branches, covered = summary["num_branches"], summary["covered_branches"]
        table[Path(name).name] = {
            "branches": branches, "covered_branches": covered,
            "branch_percent": round(100.0 * covered / branches, 1) if branches else 100.0}
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min", type=float, default=90.0, metavar="PERCENT",
                        help="lowest branch coverage a module may have (default 90)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, metavar="DIR",
                        help="fuzz corpus, one folder per configuration "
                             "(default tests/fuzz/corpus)")
    parser.add_argument("--no-tests", action="store_true",
                        help="the corpus alone (what fuzzing reaches by itself)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the table here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="pyhvm-devcov-") as scratch:
        data_file = Path(scratch) / "coverage.dat"
        if not args.no_tests and unit_tests(data_file) != 0:
            print("device_coverage: the unit tests failed under coverage", file=sys.stderr)
            return 2
        status, replayed = corpus_replay(data_file, args.corpus)
        if status not in (0, 1):  # 1: a corpus program shows a violation, reported above
            print(f"device_coverage: the corpus replay failed ({status})", file=sys.stderr)
            return 2
        if status == 1:
            print("device_coverage: a corpus program violates an oracle", file=sys.stderr)
            return 2
        if not data_file.exists():
            print("device_coverage: nothing was measured", file=sys.stderr)
            return 2
        table = branch_table(data_file)

    below = [name for name, row in table.items() if row["branch_percent"] < args.min]
    sources = ("unit tests + " if not args.no_tests else "") + \
        f"{replayed} corpus programs from {args.corpus}"
    print(f"branch coverage of {SOURCE} ({sources}):")
    for name, row in table.items():
        mark = "  <-- below" if name in below else ""
        print(f"  {name:>18} {row['branch_percent']:5.1f}%  "
              f"({row['covered_branches']}/{row['branches']}){mark}")
    if args.json:
        args.json.write_text(json.dumps({"sources": sources, "modules": table}, indent=2))
    if below:
        print(f"below {args.min:g}%: {', '.join(below)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
