"""What `pyhvm bench paper` shows while it runs: which section and configuration runs now
and about how long is left. A live `rich` display on a terminal; one plain line per step
elsewhere (CI logs), so a log still says where a slow run was.

The estimate: each section has a rough duration (paper_sections); the benchmarks say
"rep r/R: <config>" through `common.progress_to`, which gives the share of the current
section done once its first repetition has shown how many configurations it holds
(before that, and in one-repetition runs, the section's estimate stands);
sections already finished scale the estimates of those to come (a slow host is slow
throughout).
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any, Sequence, TextIO

_REP = re.compile(r"rep (\d+)/(\d+): ")


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


class Estimator:
    """Time left, from the sections' estimates and what has been seen so far."""

    def __init__(self, estimates: Sequence[float], clock: Any = time.monotonic) -> None:
        self.estimates = list(estimates)
        self.clock = clock
        self.index = -1
        self.section_start = 0.0
        self.spent: list[float] = []           # seconds each finished section took
        self.fraction = 0.0                    # of the current section
        self._configs: list[str] = []          # labels seen in the first repetition
        self._per_rep: int | None = None

    def start(self, index: int) -> None:
        self.index, self.section_start, self.fraction = index, self.clock(), 0.0
        self._configs, self._per_rep = [], None

    def finish(self, ran: bool = True) -> None:
        """The current section is over; one that did not run (a missing benchmark) takes
        no time, so its estimate leaves the totals instead of skewing the scale."""
        if ran:
            self.spent.append(self.clock() - self.section_start)
        else:
            self.estimates[self.index] = 0.0
            self.spent.append(0.0)
        self.fraction = 1.0

    def step(self, message: str) -> None:
        """A benchmark's progress message: `rep r/R: label` moves the fraction on."""
        match = _REP.match(message)
        if not match:
            return
        rep, reps = int(match.group(1)), int(match.group(2))
        label = message[match.end():]
        if rep == 1:      # the configurations are still being counted
            if label not in self._configs:
                self._configs.append(label)
            return
        if self._per_rep is None:
            self._per_rep = max(len(self._configs), 1)
        index = self._configs.index(label) if label in self._configs else 0
        done = (rep - 1) * self._per_rep + index
        self.fraction = min(0.99, done / (reps * self._per_rep))

    def scale(self) -> float:
        """How much slower (> 1) or faster than estimated this host has been."""
        done = self.estimates[:len(self.spent)]
        if not done or sum(done) <= 0:
            return 1.0
        return max(0.25, min(4.0, sum(self.spent) / sum(done)))

    def left_s(self) -> float:
        scale = self.scale()
        later = sum(self.estimates[self.index + 1:]) * scale
        if self.index < 0:
            return sum(self.estimates) * scale
        if len(self.spent) > self.index:       # between sections
            return later
        elapsed = self.clock() - self.section_start
        expected = self.estimates[self.index] * scale
        if self.fraction > 0.05 and elapsed > 1.0:
            current = elapsed * (1 - self.fraction) / self.fraction
        else:
            current = max(expected - elapsed, 0.0)
        return current + later

    def done_share(self) -> float:
        total = sum(self.estimates) or 1.0
        finished = sum(self.estimates[:len(self.spent)])
        current = 0.0
        if 0 <= self.index and len(self.spent) <= self.index:
            current = self.estimates[self.index] * self.fraction
        return min(1.0, (finished + current) / total)


class Progress:
    """The display: `section(i, title)` / `message(text)` / `done()`; a context manager."""

    def __init__(self, titles: Sequence[str], estimates: Sequence[float], quick: bool,
                 stream: TextIO | None = None, live: bool | None = None) -> None:
        self.titles = list(titles)
        self.estimator = Estimator(estimates)
        self.quick = quick
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self._rich: Any = None
        self._task: Any = None
        self._what = ""

    def __enter__(self) -> "Progress":
        kind = "quick smoke run, not for figures" if self.quick else "full run"
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, Progress as RichProgress, TextColumn, \
                TimeElapsedColumn

            estimator = self.estimator

            class Left(TextColumn):
                def render(self, task: Any) -> Any:   # recomputed at every refresh
                    from rich.text import Text
                    return Text(f"about {fmt_duration(estimator.left_s())} left")

            self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(20),
                                      TimeElapsedColumn(), Left(""),
                                      console=Console(file=self.stream), transient=False)
            self._rich.start()
            self._task = self._rich.add_task(f"pyhvm bench paper ({kind})", total=1.0)
        else:
            self._line(f"{kind}; {len(self.titles)} sections, about "
                       f"{fmt_duration(self.estimator.left_s())}")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._rich is not None:
            self._rich.stop()

    def section(self, index: int, what: str) -> None:
        self.estimator.start(index)
        self._what = f"[{index + 1}/{len(self.titles)}] {self.titles[index]}"
        self._show(what)

    def message(self, text: str) -> None:
        """A benchmark's own progress message (the sink given to common.progress_to)."""
        self.estimator.step(text)
        self._show(text)

    def finish_section(self, outcome: str = "done", ran: bool = True) -> None:
        elapsed = self.estimator.clock() - self.estimator.section_start
        self.estimator.finish(ran)
        if self._rich is not None:   # a line that stays above the live display
            self._rich.console.print(f"{self._what}: {outcome}"
                                     + (f" in {fmt_duration(elapsed)}" if ran else ""),
                                     markup=False, highlight=False)
        self._show(outcome)

    def _show(self, text: str) -> None:
        if self._rich is not None:
            self._rich.update(self._task, description=f"{self._what}: {text}",
                              completed=self.estimator.done_share(), refresh=True)
        else:
            self._line(f"{self._what}: {text} (about "
                       f"{fmt_duration(self.estimator.left_s())} left)")

    def _line(self, text: str) -> None:
        self.stream.write(f"pyhvm bench paper: {text}\n")
        self.stream.flush()
