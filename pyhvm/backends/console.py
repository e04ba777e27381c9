"""Where the serial port's bytes go, and where its input comes from."""

from __future__ import annotations

import os
import sys
from typing import BinaryIO, Callable

from ..errors import HostError


class ConsoleError(HostError):
    """The serial console cannot be opened as asked."""


class Console:
    """A serial console: `write` takes guest output; `input_fd` (or None) feeds the guest.

    Output is written through at each newline and otherwise gathered for a few
    milliseconds (`schedule` arranges the later flush), so a guest printing byte by byte
    costs one system call per line rather than one per byte. Callers hold the device lock.
    """

    FLUSH_LIMIT = 4096

    def __init__(self, out: BinaryIO | None, input_fd: int | None, close_out: bool = False):
        self._out = out
        self.input_fd = input_fd
        self._close_out = close_out
        self._buffer = bytearray()
        self._flush_pending = False
        self.schedule: Callable[[Callable[[], None]], None] | None = None

    def write(self, data: bytes) -> None:
        if self._out is None:
            return
        self._buffer += data
        if b"\n" in data or len(self._buffer) >= self.FLUSH_LIMIT or self.schedule is None:
            self.flush()
        elif not self._flush_pending:
            self._flush_pending = True  # at most one timer pending, whatever flushes meanwhile
            self.schedule(self._timed_flush)

    def _timed_flush(self) -> None:
        self._flush_pending = False
        self.flush()

    def flush(self) -> None:
        if self._buffer and self._out is not None:
            try:
                self._out.write(self._buffer)
                self._out.flush()
            except BrokenPipeError:
                self._out = None  # the reader went away; the guest keeps running
            self._buffer.clear()

    def close(self) -> None:
        self.flush()
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
