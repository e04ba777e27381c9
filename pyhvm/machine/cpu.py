"""CPU setup: the CPUID table a VMM must give, and the entry states boot protocols require."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..kvm import structs as s
from ..kvm.vcpu import Vcpu
from ..memory import GuestMemory

CR0_PE = 1 << 0
CR0_MP = 1 << 1
CR0_ET = 1 << 4
CR0_NE = 1 << 5
CR0_WP = 1 << 16
CR0_PG = 1 << 31
CR4_PAE = 1 << 5
EFER_LME = 1 << 8
EFER_LMA = 1 << 10
RFLAGS_RESERVED = 1 << 1

CPUID_1_ECX_CX16 = 1 << 13
CPUID_1_ECX_XSAVE = 1 << 26
CPUID_1_ECX_OSXSAVE = 1 << 27
CPUID_1_ECX_AVX = 1 << 28
CPUID_1_ECX_HYPERVISOR = 1 << 31
CPUID_7_EBX_AVX2 = 1 << 5
CPUID_7_EBX_AVX512F = 1 << 16
HYPERVISOR_TSC_LEAF = 0x40000010  # EAX: TSC frequency in kHz (the VMware convention)


def host_is_pvm() -> bool:
    """The nested, VT-less KVM of our build machines (see shared/docs/host.md)."""
    return os.path.exists("/sys/module/kvm_pvm")


def adjust_cpuid(entries: list[s.kvm_cpuid_entry2], *, vcpu_id: int, ncpus: int,
                 tsc_khz: int, limited_host: bool) -> list[s.kvm_cpuid_entry2]:
    """Turn KVM's supported CPUID into what one vCPU of this machine should see."""
    out: list[s.kvm_cpuid_entry2] = []
    hypervisor_max_seen = False
    for original in entries:
        entry = s.kvm_cpuid_entry2.from_buffer_copy(original)
        if entry.function == 1:
            entry.ecx |= CPUID_1_ECX_HYPERVISOR
            # EBX[31:24] initial APIC ID, EBX[23:16] logical processors per package.
            entry.ebx = (entry.ebx & 0x0000FFFF) | (vcpu_id << 24) | (max(ncpus, 1) << 16)
            if ncpus > 1:
                entry.edx |= 1 << 28  # HTT: the EBX count above is meaningful
            if limited_host:
                # KVM's emulator here cannot run cmpxchg16b or xrstor at CPL 0.
                entry.ecx &= ~(CPUID_1_ECX_CX16 | CPUID_1_ECX_XSAVE | CPUID_1_ECX_OSXSAVE
                               | CPUID_1_ECX_AVX)
        elif entry.function == 7 and entry.index == 0 and limited_host:
            entry.ebx &= ~(CPUID_7_EBX_AVX2 | CPUID_7_EBX_AVX512F)
        elif entry.function == 0xB:
            # Extended topology: one thread per core, ncpus cores per package.
            if entry.index == 0:
                entry.ebx = 1
            elif entry.index == 1:
                entry.ebx = ncpus
            entry.edx = vcpu_id
        elif entry.function == 0x40000000:
            entry.eax = max(entry.eax, HYPERVISOR_TSC_LEAF)
            hypervisor_max_seen = True
        elif entry.function == HYPERVISOR_TSC_LEAF:
            continue
        out.append(entry)
    if hypervisor_max_seen and tsc_khz > 0:
        leaf = s.kvm_cpuid_entry2()
        leaf.function = HYPERVISOR_TSC_LEAF
        leaf.eax = tsc_khz
        leaf.ebx = 0  # local APIC bus frequency unknown
        out.append(leaf)
    return out


def _segment(selector: int, *, code: bool, long: bool = False, dpl: int = 0) -> s.kvm_segment:
    seg = s.kvm_segment()
    seg.base = 0
    seg.limit = 0xFFFFFFFF
    seg.selector = selector
    seg.type = 0xB if code else 0x3  # execute/read accessed, or read/write accessed
    seg.present = 1
    seg.dpl = dpl
    seg.s = 1
    seg.l = 1 if long else 0
    seg.db = 0 if long else 1
    seg.g = 1
    return seg


def _task_register() -> s.kvm_segment:
    tr = s.kvm_segment()
    tr.limit = 0x67
    tr.type = 0xB  # busy 32/64-bit TSS: VM entry insists on a usable TR
    tr.present = 1
    return tr


def set_protected_mode_entry(vcpu: Vcpu, *, eip: int, eax: int, ebx: int) -> None:
    """32-bit flat protected mode, paging off, interrupts off (Multiboot 1, section 3.2)."""
    sregs = vcpu.get_sregs()
    code, data = _segment(0x08, code=True), _segment(0x10, code=False)
    sregs.cs = code
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data
    sregs.tr = _task_register()
    sregs.cr0 = CR0_PE | CR0_ET
    sregs.cr4 = 0
    sregs.efer = 0
    vcpu.set_sregs(sregs)
    regs = s.kvm_regs()
    regs.rip = eip
    regs.rax = eax
    regs.rbx = ebx
    regs.rflags = RFLAGS_RESERVED
    vcpu.set_regs(regs)


@dataclass(frozen=True)
class LongModeTables:
    """Where `build_identity_page_tables` put the boot page tables and GDT."""

    pml4: int
    gdt: int
    gdt_limit: int


def build_identity_page_tables(memory: GuestMemory, base: int, *,
                               span: int = 4 << 30) -> LongModeTables:
    """Identity-map [0, span) with 2 MiB pages at `base` (PML4, PDPT, PDs), plus a GDT."""
    npd = (span + (1 << 30) - 1) >> 30
    pml4, pdpt, pds = base, base + 0x1000, base + 0x2000
    gdt = pds + npd * 0x1000
    memory.fill(base, gdt + 0x1000 - base)
    present_rw = 0x3
    memory.write_u64(pml4, pdpt | present_rw)
    for i in range(npd):
        memory.write_u64(pdpt + 8 * i, (pds + 0x1000 * i) | present_rw)
        table = bytearray()
        for j in range(512):
            table += ((((i << 30) + (j << 21))) | present_rw | 0x80).to_bytes(8, "little")
        memory.write(pds + 0x1000 * i, table)
    # Null, 64-bit code (0x10), data (0x18): the selectors Linux's 64-bit entry expects.
    descriptors = [0, 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF]
    memory.write(gdt, b"".join(d.to_bytes(8, "little") for d in descriptors))
    return LongModeTables(pml4, gdt, 8 * len(descriptors) - 1)


def set_long_mode_entry(vcpu: Vcpu, tables: LongModeTables, *, rip: int, rsi: int) -> None:
    """64-bit mode with identity paging (Linux x86 boot protocol, 64-bit entry)."""
    sregs = vcpu.get_sregs()
    sregs.cs = _segment(0x10, code=True, long=True)
    data = _segment(0x18, code=False)
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data
    sregs.tr = _task_register()
    sregs.gdt.base = tables.gdt
    sregs.gdt.limit = tables.gdt_limit
    sregs.cr3 = tables.pml4
    sregs.cr4 = CR4_PAE
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG
    sregs.efer = EFER_LME | EFER_LMA
    vcpu.set_sregs(sregs)
    regs = s.kvm_regs()
    regs.rip = rip
    regs.rsi = rsi
    regs.rflags = RFLAGS_RESERVED
    vcpu.set_regs(regs)


RESET_CR0 = 0x60000010  # CD, NW, ET: caches off, as after RESET (Intel SDM Vol. 3A 9.1.1)
RESET_CS_SELECTOR = 0xF000
RESET_CS_BASE = 0xFFFF0000  # with IP 0xFFF0: the first fetch is at 0xFFFFFFF0
RESET_RIP = 0xFFF0
RESET_EDX = 0x00000600  # family 6: what EDX holds after RESET (SDM Table 9-1)


def _real_mode_segment(selector: int, base: int, *, code: bool) -> s.kvm_segment:
    seg = s.kvm_segment()
    seg.selector = selector
    seg.base = base
    seg.limit = 0xFFFF
    seg.type = 0xB if code else 0x3  # accessed code (execute/read), accessed data (read/write)
    seg.present = 1
    seg.s = 1
    return seg


def set_reset_state(vcpu: Vcpu) -> None:
    """The processor state after RESET (SDM Vol. 3A Table 9-1): real mode, CS:IP at the reset
    vector 0xFFFFFFF0 (CS base 0xFFFF0000, selector 0xF000), caches disabled, flags 0x2."""
    sregs = vcpu.get_sregs()
    sregs.cs = _real_mode_segment(RESET_CS_SELECTOR, RESET_CS_BASE, code=True)
    data = _real_mode_segment(0, 0, code=False)
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data
    tr = _real_mode_segment(0, 0, code=True)
    tr.s = 0  # a system segment: busy TSS, as KVM's reset leaves it
    sregs.tr = tr
    ldt = _real_mode_segment(0, 0, code=False)
    ldt.s = 0
    ldt.type = 0x2  # LDT
    sregs.ldt = ldt
    sregs.gdt.base = sregs.idt.base = 0
    sregs.gdt.limit = sregs.idt.limit = 0xFFFF
    sregs.cr0 = RESET_CR0
    sregs.cr2 = sregs.cr3 = sregs.cr4 = 0
    sregs.efer = 0
    vcpu.set_sregs(sregs)
    regs = s.kvm_regs()
    regs.rip = RESET_RIP
    regs.rdx = RESET_EDX
    regs.rflags = RFLAGS_RESERVED
    vcpu.set_regs(regs)
