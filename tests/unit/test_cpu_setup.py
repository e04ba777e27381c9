"""CPUID as a VMM must adjust it, and the identity page tables of the 64-bit entry."""

from __future__ import annotations

from pyhvm.kvm.structs import kvm_cpuid_entry2
from pyhvm.machine import cpu
from pyhvm.machine.config import ConfigError, parse_size
from pyhvm.memory import GuestMemory

import pytest


def leaf(function: int, index: int = 0, **regs: int) -> kvm_cpuid_entry2:
    entry = kvm_cpuid_entry2()
    entry.function, entry.index = function, index
    for name, value in regs.items():
        setattr(entry, name, value)
    return entry


def find(entries: list[kvm_cpuid_entry2], function: int) -> kvm_cpuid_entry2:
    return next(e for e in entries if e.function == function)


def test_cpuid_sets_hypervisor_bit_apic_id_and_tsc_leaf() -> None:
    host = [leaf(1, ecx=cpu.CPUID_1_ECX_CX16 | cpu.CPUID_1_ECX_XSAVE, ebx=0x0800),
            leaf(0x40000000, eax=0x40000001)]
    out = cpu.adjust_cpuid(host, vcpu_id=1, ncpus=2, tsc_khz=2_500_000, limited_host=False)
    one = find(out, 1)
    assert one.ecx & cpu.CPUID_1_ECX_HYPERVISOR
    assert one.ebx >> 24 == 1 and (one.ebx >> 16) & 0xFF == 2 and one.ebx & 0xFFFF == 0x0800
    assert one.ecx & cpu.CPUID_1_ECX_CX16  # a capable host keeps it
    assert find(out, 0x40000000).eax == cpu.HYPERVISOR_TSC_LEAF
    assert find(out, cpu.HYPERVISOR_TSC_LEAF).eax == 2_500_000
    assert host[0].ecx & cpu.CPUID_1_ECX_HYPERVISOR == 0  # the input is not modified


def test_cpuid_hides_what_the_limited_host_cannot_emulate() -> None:
    host = [leaf(1, ecx=cpu.CPUID_1_ECX_CX16 | cpu.CPUID_1_ECX_XSAVE | cpu.CPUID_1_ECX_AVX),
            leaf(7, ebx=cpu.CPUID_7_EBX_AVX2)]
    out = cpu.adjust_cpuid(host, vcpu_id=0, ncpus=1, tsc_khz=0, limited_host=True)
    assert find(out, 1).ecx & (cpu.CPUID_1_ECX_CX16 | cpu.CPUID_1_ECX_XSAVE
                               | cpu.CPUID_1_ECX_AVX) == 0
    assert find(out, 7).ebx & cpu.CPUID_7_EBX_AVX2 == 0


def test_identity_page_tables_map_4_gib_with_2_mib_pages() -> None:
    memory = GuestMemory.with_size(16 << 20)
    tables = cpu.build_identity_page_tables(memory, 0x20000)
    pml4e = memory.read_u64(tables.pml4)
    pdpt = pml4e & ~0xFFF
    for gib in range(4):
        pd = memory.read_u64(pdpt + 8 * gib) & ~0xFFF
        for index in (0, 511):
            pde = memory.read_u64(pd + 8 * index)
            assert pde & 0x83 == 0x83  # present, writable, 2 MiB page
            assert pde & ~0xFFF == (gib << 30) + (index << 21)
    assert memory.read_u64(tables.gdt + 0x10) == 0x00AF9A000000FFFF  # 64-bit code at 0x10
    memory.close()


@pytest.mark.parametrize("text,size", [("128", 128 << 20), ("128M", 128 << 20),
                                       ("2G", 2 << 30), ("512k", 512 << 10),
                                       ("1GiB", 1 << 30)])
def test_memory_sizes_follow_qemu_syntax(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-5M", "1.5G", "12Q"])
def test_bad_memory_sizes_say_what_to_write(text: str) -> None:
    with pytest.raises(ConfigError, match="e.g."):
        parse_size(text)
