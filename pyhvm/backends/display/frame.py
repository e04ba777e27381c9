"""The one thing a display backend receives: a rendered frame of the guest's screen.

The VGA device's renderer makes frames; PNG, VNC and web displays consume them. Keeping the
contract this small lets each side be tested without the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np


@dataclass(frozen=True)
class Frame:
    """An RGB picture of the screen.

    `pixels` is a C-contiguous (height, width, 3) uint8 array owned by the receiver (the
    renderer never changes it afterwards). `dirty_rows` is the half-open range of rows that
    changed since the previous frame from the same source, or None when everything may have
    changed (first frame, mode switch). `serial` grows by one per frame from a source.
    """

    pixels: np.ndarray
    dirty_rows: tuple[int, int] | None
    serial: int

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


class FrameSource(Protocol):
    """Something that can render the current screen (the VGA device's renderer)."""

    def frame(self) -> Frame: ...


# A key press or release from a display client, as an X11 keysym (what RFB sends).
KeyEventSink = Callable[[int, bool], None]
