"""The `atheris` engine: libFuzzer mutates bytes, and the bytes drive the program generator.

Atheris (an optional extra: `pip install -e '.[fuzz]'`) instruments the device modules'
bytecode for its own coverage feedback, so they must be imported inside `instrumented()`,
before anything else imports them. Findings do not crash libFuzzer: they are recorded,
minimized and written like the other engines' (`Campaign.record`), and the run ends when
the op budget is spent. libFuzzer's `-seed` makes it repeatable on one machine.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def instrumented() -> Iterator[None]:
    import atheris

    with atheris.instrument_imports(include=["pyhvm.devices", "pyhvm.backends.blockexec"]):
        yield


class DataRng:
    """The `Rng` methods the generator uses, answered from libFuzzer's input bytes."""

    def __init__(self, provider: Any) -> None:
        self._fdp = provider

    def random(self) -> float:
        return self._fdp.ConsumeProbability()

    def randrange(self, start: int, stop: int | None = None) -> int:
        if stop is None:
            start, stop = 0, start
        if stop <= start:
            raise ValueError("empty range")
        return self._fdp.ConsumeIntInRange(start, stop - 1)

    def getrandbits(self, k: int) -> int:
        return self._fdp.ConsumeUInt((k + 7) // 8) & ((1 << k) - 1)

    def choice(self, seq):  # type: ignore[no-untyped-def]
        return seq[self.randrange(len(seq))]

    def randbytes(self, n: int) -> bytes:
        data = self._fdp.ConsumeBytes(n)
        return data + bytes(n - len(data))


def run(config: str, budget_ops: int, seed: int, campaign_factory: Callable[[], Any],
        finish: Callable[[Any], int]) -> None:
    """Fuzz until `budget_ops` ops ran, then call `finish(stats)` and exit with its status."""
    import os

    import atheris

    from .generate import generate

    campaign = campaign_factory()

    def one_input(data: bytes) -> None:
        program = generate(DataRng(atheris.FuzzedDataProvider(data)), campaign.profile)
        campaign.execute(program)
        if campaign.stats.ops >= budget_ops:
            status = finish(campaign.stats)
            sys.stdout.flush()
            os._exit(status)

    atheris.Setup([sys.argv[0], f"-seed={seed or 1}", "-print_final_stats=0"], one_input)
    atheris.Fuzz()
