"""Interrupt-line tracing: a wrapper put between a device and its line only when on."""

from __future__ import annotations

import time

from ..devices.base import IrqLine
from .recorder import Recorder
from .records import Kind


class TracedIrqLine:
    """Records every level change of `line` (IRQ number `irq`) and passes it on."""

    def __init__(self, line: IrqLine, irq: int, recorder: Recorder) -> None:
        self._line = line
        self._irq = irq
        self._recorder = recorder
        self.level = False

    def set_level(self, level: bool) -> None:
        level = bool(level)
        if level != self.level:
            self.level = level
            self._recorder.buffer().add(Kind.IRQ_LEVEL, time.monotonic_ns(), 0, self._irq,
                                        int(level))
        self._line.set_level(level)
