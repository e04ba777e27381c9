"""i440FX PAM shadow RAM: which memory slot backs each segment, the KVM slot changes the
firmware memory map makes as SeaBIOS writes PAM, and the MMIO window that answers what no
slot does (82441FX datasheet, PAM registers; pyhvm/machine/firmware.py)."""

from __future__ import annotations

import pytest

from pyhvm.boot.firmware import Rom
from pyhvm.devices.pci_chipset import (I440fxHostBridge, PAM0, PAM_LAYOUT, PamRegion)
from pyhvm.kvm.constants import KVM_MEM_READONLY
from pyhvm.machine import firmware as fw
from pyhvm.memory import GuestMemory

ROM_SIZE = 128 << 10


def make_rom(size: int = ROM_SIZE) -> Rom:
    data = bytes((i * 7 + 3) & 0xFF for i in range(size))
    return Rom("test.bin", data)


class FakeVm:
    """KVM's memory slot rules: a slot is created, or deleted with size 0; it cannot change
    in place, and live slots never overlap (KVM returns EINVAL / EEXIST)."""

    def __init__(self) -> None:
        self.slots: dict[int, tuple[int, int, int, int]] = {}
        self.calls = 0

    def set_user_memory_region(self, slot: int, gpa: int, size: int, host: int,
                               flags: int = 0) -> None:
        self.calls += 1
        if size == 0:
            assert slot in self.slots, f"deleting slot {slot} that does not exist"
            del self.slots[slot]
            return
        assert slot not in self.slots, f"slot {slot} changed in place"
        for other, (base, length, _, _) in self.slots.items():
            assert gpa + size <= base or base + length <= gpa, \
                f"slot {slot} {gpa:#x}+{size:#x} overlaps slot {other}"
        self.slots[slot] = (gpa, size, host, flags)

    def at(self, gpa: int) -> tuple[int, int, int, int] | None:
        for base, size, host, flags in self.slots.values():
            if base <= gpa < base + size:
                return base, size, host, flags
        return None


@pytest.fixture
def memory() -> GuestMemory:
    mem = GuestMemory.with_size(4 << 20)
    yield mem
    mem.close()


def region(base: int, read: bool, write: bool) -> PamRegion:
    size = 0x10000 if base == 0xF0000 else 0x4000
    return PamRegion(base, size, read, write)


# -- which backing serves a segment ---------------------------------------------------------


@pytest.mark.parametrize("read, write, base, backing", [
    (True, True, 0xC0000, fw.RAM),
    (True, False, 0xF0000, fw.RAM_READONLY),
    (False, False, 0xF0000, fw.ROM),          # the ISA BIOS window: the ROM's last 128 KiB
    (False, False, 0xE4000, fw.ROM),
    (False, False, 0xC8000, fw.NOTHING),      # no ROM behind C/D: reads float
    (False, True, 0xF0000, fw.NOTHING),       # write-only: reads ROM, writes RAM, by MMIO
])
def test_segment_backing_follows_the_pam_nibble(read: bool, write: bool, base: int,
                                                backing: str) -> None:
    assert fw.segment_backing(region(base, read, write), make_rom()) == backing


def test_a_64k_rom_only_backs_the_f_segment() -> None:
    rom = make_rom(64 << 10)
    assert fw.segment_backing(region(0xF0000, False, False), rom) == fw.ROM
    assert fw.segment_backing(region(0xE0000, False, False), rom) == fw.NOTHING


# -- the slots -----------------------------------------------------------------------------------


def mapped(memory: GuestMemory, rom: Rom | None = None) -> tuple[FakeVm, fw.FirmwareMemory,
                                                                  I440fxHostBridge]:
    vm, bridge = FakeVm(), I440fxHostBridge()
    fmem = fw.FirmwareMemory(vm, memory, rom or make_rom())  # type: ignore[arg-type]
    fmem.map(bridge.pam_regions())
    bridge.on_pam_change = fmem.pam_changed
    return vm, fmem, bridge


def test_reset_map_rom_at_4g_and_isa_window_vga_hole_unmapped(memory: GuestMemory) -> None:
    vm, fmem, _ = mapped(memory)
    low = memory.regions[0].host_address
    rom_slot = vm.at(0xFFFFFFF0)
    assert rom_slot is not None and rom_slot[0] == (1 << 32) - ROM_SIZE
    assert rom_slot[3] == KVM_MEM_READONLY
    assert vm.at(0x9FFFF)[2] == low  # type: ignore[index]
    assert vm.at(0xA0000) is None and vm.at(0xBFFFF) is None  # the VGA window: MMIO
    assert vm.at(0xC0000) is None  # PAM 0, no ROM behind C/D
    f_seg = vm.at(0xFFFF0)
    assert f_seg is not None and f_seg[3] == KVM_MEM_READONLY
    assert f_seg[2] == rom_slot[2] + ROM_SIZE - 0x10000  # the ROM's last 64 KiB
    above = vm.at(0x100000)
    assert above is not None and above[2] == low + 0x100000


def test_seabios_unlock_and_lock_sequence_remaps_to_shadow_ram(memory: GuestMemory) -> None:
    """make_bios_writable: PAM1-6 = 0x33, PAM0 = 0x30 (dword writes at 0x58/0x5C); later
    make_bios_readonly: PAM0 = 0x10 (read-only RAM)."""
    vm, fmem, bridge = mapped(memory)
    low = memory.regions[0].host_address
    bridge.config_write(0x58, 4, 0x33333000 | bridge.config_read(0x58, 1))
    bridge.config_write(0x5C, 4, 0x33333333)
    for _, _, base, size in PAM_LAYOUT:
        slot = vm.at(base)
        assert slot == (base, size, low + base, 0), hex(base)
    bridge.config_write(PAM0, 1, 0x10)
    # Read-only shadow RAM is a writable slot under KVM, as QEMU maps it (module docstring).
    flags = 0 if fw.RE_ONLY_SLOT_WRITABLE else KVM_MEM_READONLY
    assert vm.at(0xF0000) == (0xF0000, 0x10000, low + 0xF0000, flags)
    assert fmem.backing(0xF0000) == fw.RAM_READONLY


def test_unchanged_segments_are_not_remapped(memory: GuestMemory) -> None:
    vm, fmem, bridge = mapped(memory)
    bridge.config_write(0x5A, 1, 0x33)
    calls = vm.calls
    bridge.config_write(0x5A, 1, 0x33)
    assert vm.calls == calls


def test_every_pam_value_keeps_slots_consistent(memory: GuestMemory) -> None:
    """All 16 nibble values, reserved bits included, in every register: never an overlap,
    never a change in place (FakeVm asserts), and the map matches the attributes."""
    vm, fmem, bridge = mapped(memory)
    rom = make_rom()
    for value in range(256):
        for register in range(PAM0, PAM0 + 7):
            bridge.config_write(register, 1, value)
        for pam in bridge.pam_regions():
            expected = fw.segment_backing(pam, rom)
            assert fmem.backing(pam.base) == expected
            assert (vm.at(pam.base) is None) == (expected == fw.NOTHING)


def test_write_only_segment_reads_rom_and_writes_ram(memory: GuestMemory) -> None:
    rom = make_rom()
    bridge = I440fxHostBridge()
    window = fw.ShadowWindow(memory, rom, bridge.pam_regions())
    bridge.config_write(PAM0, 1, 0x20)  # F segment: WE only
    window.update(bridge.pam_regions())
    offset = 0xF0010 - fw.SHADOW_BASE
    expected = rom.isa_window[0x10010]
    assert window.read(offset, 1) == expected
    window.write(offset, 1, 0x5A)
    assert memory.read(0xF0010, 1) == b"\x5a"
    assert window.read(offset, 1) == expected  # reads still come from the ROM


def test_window_drops_writes_to_rom_and_read_only_ram(memory: GuestMemory) -> None:
    rom = make_rom()
    bridge = I440fxHostBridge()
    window = fw.ShadowWindow(memory, rom, bridge.pam_regions())
    window.write(0xF0000 - fw.SHADOW_BASE, 4, 0xDEADBEEF)
    bridge.config_write(PAM0, 1, 0x10)
    window.update(bridge.pam_regions())
    window.write(0xF0000 - fw.SHADOW_BASE, 4, 0xDEADBEEF)
    assert memory.read(0xF0000, 4) == bytes(4)
    assert window.dropped_writes == 8


def test_window_floats_where_nothing_decodes(memory: GuestMemory) -> None:
    window = fw.ShadowWindow(memory, make_rom(), I440fxHostBridge().pam_regions())
    assert window.read(0, 4) == 0xFFFFFFFF  # 0xC0000 with PAM 0 and no ROM there
    # A wide access at the window's top edge: bytes past 1 MiB float too.
    assert window.read(fw.SHADOW_SIZE - 1, 2) >> 8 == 0xFF


def test_rom_window_drops_writes() -> None:
    window = fw.RomWindow(make_rom())
    window.write(0, 4, 0)
    assert window.read(0, 2) == int.from_bytes(make_rom().data[:2], "little")
    assert window.dropped_writes == 1
    assert window.read(ROM_SIZE - 1, 2) >> 8 == 0xFF
