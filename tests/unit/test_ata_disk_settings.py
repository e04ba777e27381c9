"""A drive's settings as the guest changes them with SET FEATURES and INITIALIZE DEVICE
PARAMETERS, and the identity strings the host gives it (ATA/ATAPI-6, T13 1410D: "SET
FEATURES" subcommand 03h, "INITIALIZE DEVICE PARAMETERS", "ATA string convention")."""

from __future__ import annotations

import pytest

from pyhvm.devices.ata_disk import (ERR_ABRT, MAX_CYLINDERS, MODEL_LENGTH, PIO_MODE_MAX,
                                    SECTOR_SIZE, ST_ERR, ST_READY, AtaDisk)
from pyhvm.devices.blockio import MemoryBackend
from tests.unit.test_ata import COUNT, DEVICE, ERROR, Harness, disk_of

SET_FEATURES, SF_TRANSFER_MODE, INITIALIZE_PARAMETERS = 0xEF, 0x03, 0x91


def set_transfer_mode(h: Harness, value: int) -> int:
    h.set(COUNT, value)
    h.command(SET_FEATURES, features=SF_TRANSFER_MODE)
    return h.status()


@pytest.mark.parametrize("value", [0x00, 0x01])
def test_pio_default_mode_with_or_without_iordy_selects_pio_0(value: int) -> None:
    """Sector Count 00h: PIO default mode; 01h: PIO default mode, IORDY disabled."""
    disk = disk_of()
    h = Harness(disk)
    assert disk.pio_mode == PIO_MODE_MAX
    assert set_transfer_mode(h, value) == ST_READY
    assert disk.pio_mode == 0


@pytest.mark.parametrize("value", [0x02, 0x07, 0x0D, 0x10, 0x23, 0x48, 0xFF])
def test_undefined_transfer_modes_abort_and_change_nothing(value: int) -> None:
    """Reserved encodings (02h-07h, 00010nnn, 00011nnn...) and modes above what words 63,
    64 and 88 offer are aborted."""
    disk = disk_of()
    h = Harness(disk)
    before = h.identify()
    assert set_transfer_mode(h, value) == ST_READY | ST_ERR
    assert h.reg(ERROR) == ERR_ABRT
    assert disk.pio_mode == PIO_MODE_MAX and h.identify() == before


def test_initialize_parameters_with_zero_sectors_per_track_aborts() -> None:
    disk = disk_of(4 * 8 * 10)
    h = Harness(disk)
    before = h.identify()[54:59]
    h.set(COUNT, 0)
    h.set(DEVICE, 3)
    h.command(INITIALIZE_PARAMETERS)
    assert h.status() == ST_READY | ST_ERR and h.reg(ERROR) == ERR_ABRT
    assert h.identify()[54:59] == before


def test_current_cylinders_saturate_at_65535() -> None:
    """Word 54 is 16 bits: one head of one sector on a disk of 70000 sectors reports 65535
    cylinders, and the current capacity (words 57-58) follows the reported geometry."""
    h = Harness(disk_of(70_000))
    h.set(COUNT, 1)
    h.set(DEVICE, 0)
    h.command(INITIALIZE_PARAMETERS)
    assert h.status() == ST_READY
    words = h.identify()
    assert (words[54], words[55], words[56]) == (MAX_CYLINDERS, 1, 1)
    assert words[57] | words[58] << 16 == MAX_CYLINDERS


@pytest.mark.parametrize("identity", [{"serial": "S" * 21}, {"model": "M" * (MODEL_LENGTH + 1)},
                                      {"firmware": "1.0\n"}, {"model": "DISQUE É"}])
def test_identity_strings_must_fit_and_be_printable_ascii(identity: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        AtaDisk(MemoryBackend(8 * SECTOR_SIZE), **identity)
