"""Raw disk images: the host side of a virtual disk.

A `RawImage` is a file opened once; reads and writes use positioned I/O (pread/pwrite and
their vector forms, straight into memoryviews of guest RAM for DMA), so any thread may use
it without a shared file offset. `flush()` returns only once the data is durable
(fdatasync). Short reads past the end of a sparse or shrunk file read as zeros.
"""

from __future__ import annotations

import os
from typing import Sequence

from ..errors import HostError

SECTOR = 512


class DiskImageError(HostError):
    """The image the user named cannot be used; the message says why."""


class RawImage:
    def __init__(self, path: str, *, readonly: bool = False) -> None:
        flags = os.O_RDONLY if readonly else os.O_RDWR
        try:
            self.fd = os.open(path, flags | os.O_CLOEXEC)
        except FileNotFoundError:
            raise DiskImageError(f"disk image {path!r} does not exist (create one with "
                                 f"`truncate -s 64M {path}`)") from None
        except PermissionError:
            hint = "" if readonly else "; add readonly=on to use it read-only"
            raise DiskImageError(f"no permission to open disk image {path!r}{hint}") from None
        except IsADirectoryError:
            raise DiskImageError(f"disk image {path!r} is a directory") from None
        size = os.fstat(self.fd).st_size
        if size < SECTOR:
            os.close(self.fd)
            raise DiskImageError(f"disk image {path!r} is smaller than one 512-byte sector")
        self.path = path
        self.size = size - size % SECTOR  # a trailing partial sector is not addressable
        self.readonly = readonly

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise OSError(22, f"range {offset}+{length} outside the {self.size}-byte image")

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        data = os.pread(self.fd, length, offset)
        return data + bytes(length - len(data))

    def readinto(self, offset: int, buffers: Sequence[memoryview]) -> None:
        """Scatter `sum(len(b))` bytes at `offset` into `buffers` (guest memory views)."""
        total = sum(len(b) for b in buffers)
        self._check(offset, total)
        done = os.preadv(self.fd, list(buffers), offset)
        if done < total:  # past the end of a shorter-than-declared file: zeros
            skip = done
            for buf in buffers:
                if skip >= len(buf):
                    skip -= len(buf)
                    continue
                buf[skip:] = bytes(len(buf) - skip)
                skip = 0

    def write(self, offset: int, data: bytes | memoryview) -> None:
        self.writefrom(offset, [memoryview(data)])

    def writefrom(self, offset: int, buffers: Sequence[memoryview]) -> None:
        """Gather `buffers` (guest memory views) into the image at `offset`."""
        if self.readonly:
            raise OSError(30, "read-only disk image")
        total = sum(len(b) for b in buffers)
        self._check(offset, total)
        pending = list(buffers)
        while pending:
            done = os.pwritev(self.fd, pending, offset)
            offset += done
            while pending and done >= len(pending[0]):
                done -= len(pending[0])
                pending.pop(0)
            if pending and done:
                pending[0] = pending[0][done:]

    def flush(self) -> None:
        if not self.readonly:
            os.fdatasync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
