"""Campaigns: generate or mutate programs, run them, keep the ones that reach new branches,
minimize each new finding and write it as a reproducer.

Engines: `cov` (default when coverage.py is installed) keeps a corpus of programs that
reached new arcs of the device modules and mutates them; `random` only generates; `atheris`
(an optional extra) lets libFuzzer mutate the bytes that drive the same generator, with its
own coverage instrumentation. `cov` and `random` are deterministic from the seed: the same
seed, configuration and op budget run the same programs (the CPU-time oracle aside, which is
confirmed by a re-run before it counts).
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import ops as o
from .configs import CONFIGS
from .generate import Profile, generate, mutate
from .harness import RunResult, Target, run_program
from .oracles import Violation
from .ops import Op

MINIMIZE_RUNS = 600  # programs one minimization may run


@dataclass
class Finding:
    violation: Violation
    program: list[Op]
    seen: int = 1
    path: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {**self.violation.as_dict(), "seen": self.seen, "ops": len(self.program),
                "reproducer": self.path}


@dataclass
class CampaignStats:
    config: str
    seed: int
    engine: str
    ops: int = 0
    programs: int = 0
    rejected_dma: int = 0
    corpus: int = 0
    flaky_timing: int = 0
    cut_short: int = 0  # programs stopped at the harness's timer-callback budget
    seconds: float = 0.0
    findings: dict[str, Finding] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"config": self.config, "seed": self.seed, "engine": self.engine,
                "ops": self.ops, "programs": self.programs,
                "seconds": round(self.seconds, 3),
                "ops_per_s": round(self.ops / self.seconds) if self.seconds else 0,
                "violations": [f.as_dict() for f in self.findings.values()],
                "rejected_dma": self.rejected_dma, "corpus": self.corpus,
                "flaky_timing": self.flaky_timing, "cut_short": self.cut_short}


def builder(config: str) -> Callable[[], Target]:
    try:
        return CONFIGS[config]
    except KeyError:
        raise o.ProgramError(f"no fuzz configuration {config!r}; choose from "
                             f"{', '.join(CONFIGS)}") from None


def profile_of(config: str) -> Profile:
    target = builder(config)()
    try:
        return target.profile
    finally:
        target.close()


# -- minimization ---------------------------------------------------------------------------

def reproduces(build: Callable[[], Target], program: list[Op], signature: str) -> bool:
    """Whether `program` still fails the same way (timed only when the finding is slowness,
    so a busy host cannot turn another finding into a slow one)."""
    slow = signature.startswith("slow:")
    result = run_program(build, program, time_ops=slow, cpu_clock=True)
    return result.violation is not None and result.violation.signature == signature


def minimize(build: Callable[[], Target], program: list[Op], violation: Violation,
             max_runs: int = MINIMIZE_RUNS) -> list[Op]:
    """Delta debugging over the op list, then smaller repeat counts; keeps the signature."""
    runs = [0]

    def test(candidate: list[Op]) -> bool:
        if runs[0] >= max_runs or not candidate:
            return False
        runs[0] += 1
        return reproduces(build, candidate, violation.signature)

    items = program[:violation.op_index + 1] if violation.op_index >= 0 else list(program)
    if not test(items):
        items = list(program)
    parts = 2
    while len(items) >= 2 and runs[0] < max_runs:
        chunk = -(-len(items) // parts)
        for start in range(0, len(items), chunk):
            complement = items[:start] + items[start + chunk:]
            if test(complement):
                items = complement
                parts = max(parts - 1, 2)
                break
        else:
            if parts >= len(items):
                break
            parts = min(len(items), parts * 2)
    for i, op in enumerate(items):
        if op.kind != "repeat":
            continue
        count = op.args[0]
        while count > 1:
            smaller = o.repeat(count // 2, op.args[1])
            if not test(items[:i] + [smaller] + items[i + 1:]):
                break
            items[i], count = smaller, count // 2
    return items


def write_reproducer(directory: Path, config: str, program: list[Op], violation: Violation,
                     seed: int | None = None) -> Path:
    text_ops = "\n".join(map(str, program))
    digest = hashlib.sha1(f"{config}\n{text_ops}".encode()).hexdigest()[:10]
    kind = violation.signature.split(":")[0]
    path = directory / f"{config}-{kind}-{digest}.txt"
    comments = [f"violation: {violation.message}", f"signature: {violation.signature}"]
    if seed is not None:
        comments.append(f"found by: pyhvm fuzz --config {config} --seed {seed}")
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(o.format_program(program, config, comments))
    return path


# -- campaigns ------------------------------------------------------------------------------

class Campaign:
    def __init__(self, config: str, *, seed: int = 0, engine: str = "random",
                 arcs: Callable[[], int] | None = None, save_dir: Path | None = None,
                 minimize_findings: bool = True, deadline: float | None = None,
                 corpus_dir: Path | None = None) -> None:
        self.build = builder(config)
        self.profile = profile_of(config)
        self.stats = CampaignStats(config, seed, engine)
        self.rng = random.Random(f"pyhvm-fuzz:{config}:{seed}")
        self.arcs = arcs if engine == "cov" else None
        self.save_dir = save_dir
        self.minimize_findings = minimize_findings
        self.deadline = deadline
        self.corpus: list[list[Op]] = []
        self._best = arcs() if arcs is not None else 0
        self.corpus_dir = corpus_dir / config if corpus_dir is not None else None
        self._loading = False

    def load_corpus(self) -> int:
        """Run the programs a previous campaign kept (`--corpus DIR`): the new one starts
        from the coverage they reach. Returns how many were read."""
        if self.corpus_dir is None or not self.corpus_dir.is_dir():
            return 0
        paths = sorted(self.corpus_dir.glob("*.txt"))
        self._loading = True
        try:
            for path in paths:
                _, program = o.parse_program(path.read_text(), str(path))
                self.execute(program)
        finally:
            self._loading = False
        return len(paths)

    def _keep(self, program: list[Op]) -> None:
        self.corpus.append(program)
        if self.corpus_dir is not None and not self._loading:
            text = o.format_program(program, self.stats.config)
            digest = hashlib.sha1(text.encode()).hexdigest()[:12]
            self.corpus_dir.mkdir(parents=True, exist_ok=True)
            (self.corpus_dir / f"{digest}.txt").write_text(text)

    def next_program(self) -> list[Op]:
        rng = self.rng
        if self.arcs is not None and self.corpus and rng.random() < 0.75:
            # Favour recent finds, which sit nearest the frontier of what is covered.
            parent = self.corpus[-1 - int(rng.random() ** 2 * len(self.corpus))]
            return mutate(rng, parent, self.profile, rng.choice(self.corpus))
        return generate(rng, self.profile)

    def run(self, budget_ops: int) -> CampaignStats:
        stats = self.stats
        start = time.monotonic()
        self.load_corpus()
        while stats.ops < budget_ops:
            if self.deadline is not None and time.monotonic() > self.deadline:
                break
            self.execute(self.next_program())
        stats.seconds += time.monotonic() - start
        stats.corpus = len(self.corpus)
        return stats

    def execute(self, program: list[Op]) -> RunResult:
        result = run_program(self.build, program)
        stats = self.stats
        stats.ops += result.ops
        stats.programs += 1
        stats.rejected_dma += result.rejected
        stats.cut_short += result.cut_short
        if result.violation is not None:
            self.record(program, result.violation)
        elif result.slow is not None:
            self.record(program, result.slow)
        if self.arcs is not None:
            arcs = self.arcs()
            if arcs > self._best:
                self._best = arcs
                self._keep(program)
        return result

    def record(self, program: list[Op], violation: Violation) -> None:
        stats = self.stats
        if violation.kind == "slow" and not self._slow_again(program, violation):
            stats.flaky_timing += 1
            return
        known = stats.findings.get(violation.signature)
        if known is not None:
            known.seen += 1
            return
        small = program
        if self.minimize_findings:
            small = minimize(self.build, program, violation)
            rerun = run_program(self.build, small, cpu_clock=True).violation
            violation = rerun if rerun is not None else violation
        finding = Finding(violation, small)
        if self.save_dir is not None:
            finding.path = str(write_reproducer(self.save_dir, stats.config, small, violation,
                                                stats.seed))
        stats.findings[violation.signature] = finding

    def _slow_again(self, program: list[Op], violation: Violation) -> bool:
        """A slow op counts only if a re-run, timed on the thread's CPU clock with the
        garbage collector off, is slow too (another process may have had the CPU)."""
        again = run_program(self.build, program[:violation.op_index + 1],
                            cpu_clock=True, timed_op=violation.executed).violation
        return again is not None and again.signature == violation.signature


def replay(path: Path, config: str | None = None) -> tuple[str, RunResult]:
    """Run a reproducer file: (its configuration, the result)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise o.ProgramError(f"cannot read {path}: {error.strerror}") from None
    named, program = o.parse_program(text, str(path))
    config = config or named
    if config is None:
        raise o.ProgramError(f"{path}: no `config NAME` line; pass --config")
    return config, run_program(builder(config), program, cpu_clock=True)
