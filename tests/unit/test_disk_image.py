"""Raw images: positioned, vectored I/O; bounds; read-only; sparse files read as zeros."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhvm.backends.disk import DiskImageError, RawImage


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.truncate(1 << 20)  # sparse
    return path


def test_scatter_gather_round_trip(image: Path) -> None:
    disk = RawImage(str(image))
    a, b = bytearray(b"A" * 700), bytearray(b"B" * 324)
    disk.writefrom(512, [memoryview(a), memoryview(b)])
    disk.flush()
    out1, out2 = bytearray(1000), bytearray(24)
    disk.readinto(512, [memoryview(out1), memoryview(out2)])
    assert bytes(out1) == b"A" * 700 + b"B" * 300 and bytes(out2) == b"B" * 24
    assert disk.read(0, 512) == bytes(512)  # never written: a hole reads zeros
    disk.close()


@pytest.mark.parametrize("offset,length", [(-512, 512), ((1 << 20) - 256, 512), (0, -1)])
def test_out_of_range_access_fails_without_touching_the_file(image: Path, offset: int,
                                                             length: int) -> None:
    disk = RawImage(str(image))
    with pytest.raises(OSError):
        disk.read(offset, length)
    if length > 0:
        with pytest.raises(OSError):
            disk.write(offset, b"x" * length)
    assert image.stat().st_size == 1 << 20
    disk.close()


def test_readonly_image_refuses_writes(image: Path) -> None:
    disk = RawImage(str(image), readonly=True)
    with pytest.raises(OSError) as err:
        disk.write(0, b"x" * 512)
    assert err.value.errno == 30
    disk.close()


def test_missing_and_tiny_images_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DiskImageError, match="does not exist"):
        RawImage(str(tmp_path / "nope.img"))
    tiny = tmp_path / "tiny.img"
    tiny.write_bytes(b"x" * 100)
    with pytest.raises(DiskImageError, match="smaller than one"):
        RawImage(str(tiny))
