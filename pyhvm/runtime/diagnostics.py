"""What a person needs when the guest dies: registers, segments, the bytes at RIP."""

from __future__ import annotations

from ..kvm.vcpu import Vcpu
from ..memory import GuestMemory, GuestMemoryError

CR0_PG = 1 << 31
CR4_PAE = 1 << 5
EFER_LMA = 1 << 10


def translate(memory: GuestMemory, cr0: int, cr4: int, efer: int, cr3: int,
              linear: int) -> int | None:
    """Guest-physical address of `linear` under the guest's paging, or None."""
    if not cr0 & CR0_PG:
        return linear & 0xFFFFFFFF
    if not (efer & EFER_LMA and cr4 & CR4_PAE):
        return None  # legacy paging cannot run on the hosts we target; not walked
    table = cr3 & 0x000FFFFFFFFFF000
    try:
        for level, shift in enumerate((39, 30, 21, 12)):
            entry = memory.read_u64(table + ((linear >> shift) & 0x1FF) * 8)
            if not entry & 1:
                return None
            if level in (1, 2) and entry & 0x80:  # 1 GiB or 2 MiB page
                mask = (1 << shift) - 1
                return (entry & 0x000FFFFFFFFFF000 & ~mask) | (linear & mask)
            table = entry & 0x000FFFFFFFFFF000
        return table | (linear & 0xFFF)
    except GuestMemoryError:
        return None


def register_dump(vcpu: Vcpu, memory: GuestMemory) -> str:
    regs = vcpu.get_regs()
    sregs = vcpu.get_sregs()
    lines = [f"vCPU {vcpu.id}:"]
    names = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
    for i in range(0, len(names), 4):
        lines.append("  " + "  ".join(f"{n:>3}={getattr(regs, n):016x}" for n in names[i:i + 4]))
    lines.append(f"  rip={regs.rip:016x} rflags={regs.rflags:08x}")
    for seg_name in ("cs", "ds", "ss", "tr"):
        seg = getattr(sregs, seg_name)
        lines.append(f"  {seg_name}={seg.selector:04x} base={seg.base:016x} "
                     f"limit={seg.limit:08x} type={seg.type} dpl={seg.dpl} l={seg.l} "
                     f"db={seg.db}")
    lines.append(f"  gdt={sregs.gdt.base:016x}/{sregs.gdt.limit:04x} "
                 f"idt={sregs.idt.base:016x}/{sregs.idt.limit:04x}")
    lines.append(f"  cr0={sregs.cr0:08x} cr2={sregs.cr2:016x} cr3={sregs.cr3:016x} "
                 f"cr4={sregs.cr4:08x} efer={sregs.efer:x}")
    linear = (sregs.cs.base + regs.rip) & 0xFFFFFFFFFFFFFFFF
    physical = translate(memory, sregs.cr0, sregs.cr4, sregs.efer, sregs.cr3, linear)
    code = "unavailable"
    if physical is not None:
        for length in (16, 8, 1):
            try:
                code = memory.read(physical, length).hex(" ")
                break
            except GuestMemoryError:
                continue
    lines.append(f"  code at rip: {code}")
    return "\n".join(lines)
