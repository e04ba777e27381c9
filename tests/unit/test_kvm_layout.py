"""The ctypes mirrors in pyhvm.kvm match the kernel headers byte for byte.

A tiny C program is compiled against <linux/kvm.h>; it prints sizeof/offsetof for each
structure and field and the value of each ioctl number, and we compare with the Python side.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from pyhvm.kvm import constants as k
from pyhvm.kvm import structs as s

# (C struct name, ctypes class, {ctypes field path: C member designator})
FIELDS: list[tuple[str, type, dict[str, str]]] = [
    ("kvm_userspace_memory_region", s.kvm_userspace_memory_region,
     {f: f for f in ("slot", "flags", "guest_phys_addr", "memory_size", "userspace_addr")}),
    ("kvm_regs", s.kvm_regs, {f: f for f in ("rax", "r8", "r15", "rip", "rflags")}),
    ("kvm_segment", s.kvm_segment,
     {f: f for f in ("base", "limit", "selector", "type", "present", "dpl", "db", "s", "l",
                     "g", "avl", "unusable")}),
    ("kvm_dtable", s.kvm_dtable, {"base": "base", "limit": "limit"}),
    ("kvm_sregs", s.kvm_sregs,
     {f: f for f in ("cs", "ss", "tr", "ldt", "gdt", "idt", "cr0", "cr3", "cr4", "cr8",
                     "efer", "apic_base", "interrupt_bitmap")}),
    ("kvm_fpu", s.kvm_fpu, {f: f for f in ("fpr", "fcw", "last_ip", "xmm", "mxcsr")}),
    ("kvm_cpuid_entry2", s.kvm_cpuid_entry2,
     {f: f for f in ("function", "index", "flags", "eax", "ebx", "ecx", "edx")}),
    ("kvm_cpuid2", s.kvm_cpuid2, {"nent": "nent"}),
    ("kvm_msr_entry", s.kvm_msr_entry, {"index": "index", "data": "data"}),
    ("kvm_msrs", s.kvm_msrs, {"nmsrs": "nmsrs"}),
    ("kvm_interrupt", s.kvm_interrupt, {"irq": "irq"}),
    ("kvm_irq_level", s.kvm_irq_level, {"irq": "irq", "level": "level"}),
    ("kvm_pit_config", s.kvm_pit_config, {"flags": "flags"}),
    ("kvm_irqfd", s.kvm_irqfd, {f: f for f in ("fd", "gsi", "flags", "resamplefd")}),
    ("kvm_ioeventfd", s.kvm_ioeventfd,
     {f: f for f in ("datamatch", "addr", "len", "fd", "flags")}),
    ("kvm_dirty_log", s.kvm_dirty_log, {"slot": "slot", "dirty_bitmap": "dirty_bitmap"}),
    ("kvm_signal_mask", s.kvm_signal_mask, {"len": "len"}),
    ("kvm_vcpu_events", s.kvm_vcpu_events,
     {"exception": "exception", "interrupt": "interrupt", "nmi": "nmi",
      "sipi_vector": "sipi_vector", "flags": "flags", "smi": "smi",
      "triple_fault_pending": "triple_fault.pending",
      "exception_has_payload": "exception_has_payload",
      "exception_payload": "exception_payload"}),
    ("kvm_mp_state", s.kvm_mp_state, {"mp_state": "mp_state"}),
    ("kvm_lapic_state", s.kvm_lapic_state, {"regs": "regs"}),
    ("kvm_enable_cap", s.kvm_enable_cap, {"cap": "cap", "flags": "flags", "args": "args"}),
    ("kvm_msi", s.kvm_msi, {f: f for f in ("address_lo", "address_hi", "data", "flags")}),
    ("kvm_run", s.kvm_run,
     {"request_interrupt_window": "request_interrupt_window",
      "immediate_exit": "immediate_exit", "exit_reason": "exit_reason",
      "ready_for_interrupt_injection": "ready_for_interrupt_injection",
      "if_flag": "if_flag", "flags": "flags", "cr8": "cr8", "apic_base": "apic_base",
      "u.io.direction": "io.direction", "u.io.size": "io.size", "u.io.port": "io.port",
      "u.io.count": "io.count", "u.io.data_offset": "io.data_offset",
      "u.mmio.phys_addr": "mmio.phys_addr", "u.mmio.data": "mmio.data",
      "u.mmio.len": "mmio.len", "u.mmio.is_write": "mmio.is_write",
      "u.internal.suberror": "internal.suberror", "u.internal.ndata": "internal.ndata",
      "u.internal.data": "internal.data",
      "u.fail_entry.hardware_entry_failure_reason":
          "fail_entry.hardware_entry_failure_reason",
      "u.fail_entry.cpu": "fail_entry.cpu",
      "u.system_event.type": "system_event.type",
      "u.msr.reason": "msr.reason", "u.msr.index": "msr.index", "u.msr.data": "msr.data",
      "kvm_valid_regs": "kvm_valid_regs", "kvm_dirty_regs": "kvm_dirty_regs"}),
]

IOCTLS = [name for name in dir(k) if name.startswith("KVM_") and name.isupper()
          and not name.startswith(("KVM_EXIT", "KVM_CAP", "KVM_MEM_", "KVM_IOEVENTFD_FLAG",
                                   "KVM_IRQFD_FLAG", "KVM_INTERNAL_ERROR"))]
CONSTANTS = [name for name in dir(k) if name.startswith(("KVM_EXIT_", "KVM_CAP_", "KVM_MEM_"))]


def _offset(cls: type, path: str) -> int:
    total = 0
    for part in path.split("."):
        field = getattr(cls, part)
        total += field.offset
        cls = dict(cls._fields_)[part]
    return total


@pytest.fixture(scope="module")
def c_values(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (apt-get install gcc)")
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <linux/kvm.h>",
             "int main(void) {"]
    for cname, _cls, fields in FIELDS:
        lines.append(f'printf("sizeof:{cname}=%zu\\n", sizeof(struct {cname}));')
        for pypath, cpath in fields.items():
            lines.append(f'printf("offsetof:{cname}.{pypath}=%zu\\n", '
                         f'offsetof(struct {cname}, {cpath}));')
    for name in IOCTLS + CONSTANTS:
        lines.append(f'printf("value:{name}=%lu\\n", (unsigned long)({name}));')
    lines += ["return 0;", "}"]
    work = tmp_path_factory.mktemp("layout")
    src, exe = work / "layout.c", work / "layout"
    src.write_text("\n".join(lines))
    subprocess.run(["gcc", "-o", str(exe), str(src)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {key: int(value) for key, value in (line.split("=") for line in out.split())}


@pytest.mark.parametrize("cname,cls,fields", FIELDS, ids=[f[0] for f in FIELDS])
def test_struct_layout_matches_kernel_header(c_values: dict[str, int], cname: str, cls: type,
                                             fields: dict[str, str]) -> None:
    assert ctypes.sizeof(cls) == c_values[f"sizeof:{cname}"]
    for pypath in fields:
        assert _offset(cls, pypath) == c_values[f"offsetof:{cname}.{pypath}"], pypath


@pytest.mark.parametrize("name", IOCTLS + CONSTANTS)
def test_ioctl_numbers_and_constants_match_kernel_header(c_values: dict[str, int],
                                                         name: str) -> None:
    assert getattr(k, name) == c_values[f"value:{name}"]
