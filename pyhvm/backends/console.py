"""Where the serial port's bytes go, and where its input comes from."""

from __future__ import annotations

import os
import sys
from typing import BinaryIO

from ..errors import HostError


class ConsoleError(HostError):
    """The serial console cannot be opened as asked."""


class Console:
    """A serial console: `write` takes guest output; `input_fd` (or None) feeds the guest."""

    def __init__(self, out: BinaryIO | None, input_fd: int | None, close_out: bool = False):
        self._out = out
        self.input_fd = input_fd
        self._close_out = close_out

    def write(self, data: bytes) -> None:
        if self._out is not None:
            self._out.write(data)
            self._out.flush()

    def close(self) -> None:
        if self._close_out and self._out is not None:
            self._out.close()


def open_console(spec: str) -> Console:
    """`stdio`, `file:PATH` or `none` (QEMU's -serial names)."""
    if spec == "stdio":
        stdin_fd: int | None = sys.stdin.fileno() if sys.stdin is not None else None
        if stdin_fd is not None:
            try:
                os.fstat(stdin_fd)
            except OSError:
                stdin_fd = None
        return Console(sys.stdout.buffer, stdin_fd)
    if spec == "none":
        return Console(None, None)
    if spec.startswith("file:"):
        path = spec[len("file:"):]
        try:
            return Console(open(path, "wb", buffering=0), None, close_out=True)
        except OSError as err:
            raise ConsoleError(f"cannot open serial output file {path!r}: "
                               f"{err.strerror}") from None
    raise ConsoleError(f"unknown --serial {spec!r}: use stdio, file:PATH or none")
