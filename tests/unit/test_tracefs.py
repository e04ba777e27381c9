"""Kernel trace lines: the parser and converter on text shaped like the kernel's `kvm` event
formats (VMX and SVM hosts, PVM, several kernel generations, the optional columns), and
the one-line reasons KernelTrace gives where it cannot run. No tracefs needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyhvm.trace import tracefs
from pyhvm.trace.tracefs import KernelKind, parse_line, parse_text, to_records

# A VMX host running QEMU: an OUT to the UART through userspace, an MMIO write, an
# interrupt injected on the way back in (kernel 6.x formats, irq-info flags on).
VMX_TRACE = """\
# tracer: nop
#
# entries-in-buffer/entries-written: 8/8   #P:8
#
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
 CPU 0/KVM-4242    [003] d..1. 51234.567890: kvm_exit: vcpu 0 reason IO_INSTRUCTION rip 0xffffffff81a3c2d4 info1 0x0000000003f80008 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000 requests 0x0000000000000000
 CPU 0/KVM-4242    [003] ..... 51234.567893: kvm_pio: pio_write at 0x3f8 size 1 count 1 val 0x41 
 CPU 0/KVM-4242    [003] ..... 51234.567895: kvm_userspace_exit: reason KVM_EXIT_IO (2)
 CPU 0/KVM-4242    [003] d..1. 51234.567921: kvm_entry: vcpu 0, rip 0xffffffff81a3c2d5 intr_info 0x00000000 error_code 0x00000000
 CPU 0/KVM-4242    [003] d..1. 51234.567930: kvm_exit: vcpu 0 reason EPT_MISCONFIG rip 0xffffffff8160e1c2 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000 requests 0x0000000000000000
 CPU 0/KVM-4242    [003] ..... 51234.567934: kvm_mmio: mmio write len 4 gpa 0xfebf0010 val 0x1
 CPU 0/KVM-4242    [003] d..1. 51234.567960: kvm_inj_virq: IRQ 0x20
 CPU 0/KVM-4242    [003] d..1. 51234.567961: kvm_entry: vcpu 0, rip 0xffffffff8160e1c8 intr_info 0x00000000 error_code 0x00000000[immediate exit]
"""

# Lines as trace_pipe gives them on other hosts and with other options.
SVM_EXIT = (" qemu-system-x86-7781  [012] d..2. 912.000123: kvm_exit: vcpu 1 reason io rip "
            "0xffffffff81001234 info1 0x0000000000710210 info2 0x000000000000c0de intr_info "
            "0x00000000 error_code 0x00000000 requests 0x0000000000000000")
OLD_EXIT = ("  qemu-system-x86-1234  [001] ....  1234.123456: kvm_exit: reason "
            "EXTERNAL_INTERRUPT rip 0xffffffff810538d6 info 0 800000ef")
OLD_ENTRY = "  qemu-system-x86-1234  [001] ....  1234.123470: kvm_entry: vcpu 0"
OLD_VIRQ = "  qemu-system-x86-1234  [001] d...  1234.123469: kvm_inj_virq: irq 32"
TGID = ("         python3-4084  (   4080) [001] .....  3225.232935: kvm_pio: pio_write at "
        "0x404 size 2 count 1 val 0x1234 ")
NO_FLAGS = ("         python3-4084    [001]  3225.233188: kvm_pio: pio_read at 0x3fd size 1 "
            "count 1 val 0x60 ")
COUNTER_CLOCK = ("         python3-4084    [001] ..... 8512345678901: kvm_userspace_exit: "
                 "reason KVM_EXIT_MMIO (6)")
UNKNOWN_COMM = ("           <...>-5150    [000] d..1.   77.000001: kvm_inj_virq: Soft/INTn 0x80 "
                "[reinjected]")
STRING_IO = ("  CPU 1/KVM-4243    [002] .....   99.000001: kvm_pio: pio_write at 0x1f0 size 2 "
             "count 256 val 0x4e4f (...)")
MMIO_READS = """\
  CPU 1/KVM-4243    [002] .....   99.000010: kvm_mmio: mmio unsatisfied-read len 4 gpa 0xfee00030 val 0x0
  CPU 1/KVM-4243    [002] .....   99.000011: kvm_mmio: mmio read len 4 gpa 0xfee00030 val 0x50014
"""
LOST = "CPU:1 [LOST 1234 EVENTS]"
RESTART = "  CPU 1/KVM-4243    [002] .....   99.000020: kvm_userspace_exit: reason restart (4)"


def test_a_vmx_trace_parses_line_by_line() -> None:
    events, lost = parse_text(VMX_TRACE)
    assert lost == 0
    assert [e.name for e in events] == ["kvm_exit", "kvm_pio", "kvm_userspace_exit",
                                        "kvm_entry", "kvm_exit", "kvm_mmio", "kvm_inj_virq",
                                        "kvm_entry"]
    first = events[0]
    assert (first.comm, first.tid, first.cpu) == ("CPU 0/KVM", 4242, 3)
    assert first.ts_ns == 51234_567890_000
    assert first.fields == {"vcpu": 0, "reason": "IO_INSTRUCTION", "rip": 0xFFFFFFFF81A3C2D4,
                            "info1": 0x3F80008, "info2": 0, "intr_info": 0, "error_code": 0,
                            "requests": 0}
    assert events[1].fields == {"write": 1, "port": 0x3F8, "size": 1, "count": 1, "val": 0x41}
    assert events[1].text == "pio_write at 0x3f8 size 1 count 1 val 0x41"
    assert events[2].fields == {"reason": "KVM_EXIT_IO", "code": 2}
    assert events[3].fields == {"vcpu": 0, "rip": 0xFFFFFFFF81A3C2D5, "intr_info": 0,
                                "error_code": 0, "immediate_exit": 0}
    assert events[4].fields["reason"] == "EPT_MISCONFIG"
    assert events[5].fields == {"type": "write", "len": 4, "gpa": 0xFEBF0010, "val": 1}
    assert events[6].fields == {"vector": 0x20, "soft": 0, "reinjected": 0}
    assert events[7].fields["immediate_exit"] == 1


def test_svm_and_older_kernel_formats() -> None:
    svm = parse_line(SVM_EXIT)
    assert svm is not None and svm.comm == "qemu-system-x86" and svm.tid == 7781
    assert svm.fields["reason"] == "io" and svm.fields["vcpu"] == 1
    assert svm.fields["info1"] == 0x710210 and svm.fields["info2"] == 0xC0DE
    old = parse_line(OLD_EXIT)
    assert old is not None
    assert old.fields == {"reason": "EXTERNAL_INTERRUPT", "rip": 0xFFFFFFFF810538D6,
                          "info1": 0, "info2": 0x800000EF}
    entry = parse_line(OLD_ENTRY)
    assert entry is not None and entry.fields == {"vcpu": 0, "immediate_exit": 0}
    virq = parse_line(OLD_VIRQ)
    assert virq is not None and virq.fields["vector"] == 32  # decimal in the old format


def test_optional_columns_and_clocks() -> None:
    tgid = parse_line(TGID)
    assert tgid is not None and (tgid.comm, tgid.tid, tgid.cpu) == ("python3", 4084, 1)
    assert tgid.fields == {"write": 1, "port": 0x404, "size": 2, "count": 1, "val": 0x1234}
    bare = parse_line(NO_FLAGS)
    assert bare is not None and bare.fields["write"] == 0 and bare.fields["port"] == 0x3FD
    assert bare.ts_ns == 3225_233188_000
    counter = parse_line(COUNTER_CLOCK)
    assert counter is not None and counter.ts_ns == 8512345678901  # counter units, as is
    assert counter.fields == {"reason": "KVM_EXIT_MMIO", "code": 6}
    unknown = parse_line(UNKNOWN_COMM)
    assert unknown is not None and unknown.comm == "<...>" and unknown.tid == 5150
    assert unknown.fields == {"vector": 0x80, "soft": 1, "reinjected": 1}


def test_string_io_and_mmio_reads() -> None:
    rep = parse_line(STRING_IO)
    assert rep is not None and rep.fields["count"] == 256 and rep.fields["size"] == 2
    events, _ = parse_text(MMIO_READS)
    assert [e.fields["type"] for e in events] == ["unsatisfied-read", "read"]
    assert events[1].fields["val"] == 0x50014


def test_headers_blanks_and_lost_lines() -> None:
    assert parse_line("# tracer: nop") is None
    assert parse_line("") is None
    assert parse_line(LOST) is None
    assert tracefs.parse_lost(LOST) == 1234
    events, lost = parse_text(f"{LOST}\n{TGID}\nCPU:0 [LOST 6 EVENTS]\n")
    assert len(events) == 1 and lost == 1240


def test_an_unknown_event_keeps_its_text() -> None:
    event = parse_line("  CPU 0/KVM-4242    [003] .....  10.000001: kvm_fpu: unload")
    assert event is not None and event.name == "kvm_fpu"
    assert event.fields == {} and event.text == "unload"
    assert to_records([event]) == []


def test_parse_timestamp_pads_the_fraction() -> None:
    assert tracefs.parse_timestamp("1.5") == 1_500_000_000
    assert tracefs.parse_timestamp("3225.232935") == 3225_232935_000
    assert tracefs.parse_timestamp("0.000000001") == 1
    assert tracefs.parse_timestamp("42") == 42


def test_records_follow_the_pyhvm_layout_and_pair_exits_with_entries() -> None:
    events, _ = parse_text(VMX_TRACE)
    records = to_records(events)
    kinds = [r.kind for r in records]
    assert kinds == [KernelKind.KVM_EXIT, KernelKind.KVM_PIO, KernelKind.KVM_USERSPACE_EXIT,
                     KernelKind.KVM_EXIT, KernelKind.KVM_MMIO, KernelKind.KVM_INJ_VIRQ]
    exit_io, pio, user, exit_ept, mmio, virq = records
    assert exit_io.dur_ns == 31_000 and exit_io.label == "IO_INSTRUCTION"
    assert (exit_io.a, exit_io.b, exit_io.c) == (0, 0xFFFFFFFF81A3C2D4, 0x3F80008)
    assert (pio.a, pio.b, pio.c) == (0x3F8, 0x41, 1 | 1 << 8 | 1 << 16)
    assert (user.a, user.label, user.dur_ns) == (2, "KVM_EXIT_IO", 0)  # the exit holds dur
    assert exit_ept.dur_ns == 31_000
    assert (mmio.a, mmio.b, mmio.c) == (4 | 2 << 8, 0xFEBF0010, 1)
    assert (virq.a, virq.b, virq.c) == (0x20, 0, 0)
    assert all(r.tid == 4242 for r in records)


def test_on_pvm_userspace_exits_stand_alone() -> None:
    """PVM emits no kvm_exit/kvm_entry: a userspace exit is an instant, pio as usual."""
    text = "\n".join(
        f"         python3-4084    [001] .....  3225.2{i:05d}: {line}"
        for i, line in enumerate(["kvm_pio: pio_write at 0x404 size 1 count 1 val 0x0 ",
                                  "kvm_userspace_exit: reason KVM_EXIT_IO (2)"] * 3))
    events, _ = parse_text(text)
    records = to_records(events)
    assert [r.kind for r in records] == [KernelKind.KVM_PIO, KernelKind.KVM_USERSPACE_EXIT] * 3
    assert all(r.dur_ns == 0 for r in records)
    assert tracefs.count(events, "kvm_pio", port=0x404, write=1) == 3
    assert list(tracefs.summarize(events)) == [("kvm_pio", 3), ("kvm_userspace_exit", 3)]


def test_restart_exits_map_to_their_errno() -> None:
    event = parse_line(RESTART)
    assert event is not None and event.fields == {"reason": "restart", "code": 4}
    (record,) = to_records([event])
    assert record.a == 4 and record.label == "restart"


# --- availability -------------------------------------------------------------------------
def test_not_root_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracefs.os, "geteuid", lambda: 1000)
    reason = tracefs.unavailable_reason(mount=True)
    assert reason is not None and "root" in reason and "\n" not in reason
    trace = tracefs.KernelTrace([1])
    with pytest.raises(tracefs.KernelTraceUnavailable, match="root"):
        trace.start()
    trace.stop()  # harmless after a failed start
    assert trace.events() == [] and trace.lost == 0


def test_unmounted_tracefs_needs_mount_or_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracefs.os, "geteuid", lambda: 0)
    monkeypatch.setattr(tracefs, "mounted_tracefs", lambda: None)
    monkeypatch.setattr(tracefs, "tracefs_supported", lambda: True)
    assert "not mounted" in (tracefs.unavailable_reason(mount=False) or "")
    assert tracefs.unavailable_reason(mount=True) is None
    monkeypatch.setattr(tracefs, "tracefs_supported", lambda: False)
    assert "no tracefs" in (tracefs.unavailable_reason(mount=True) or "")


def test_a_mounted_tracefs_without_kvm_events(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.setattr(tracefs.os, "geteuid", lambda: 0)
    monkeypatch.setattr(tracefs, "mounted_tracefs", lambda: str(tmp_path))
    assert "kvm trace events" in (tracefs.unavailable_reason() or "")
    (tmp_path / "events" / "kvm").mkdir(parents=True)
    assert "instances" in (tracefs.unavailable_reason() or "")
    (tmp_path / "instances").mkdir()
    assert tracefs.unavailable_reason() is None


def test_mounted_tracefs_prefers_the_usual_place(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("proc /proc proc rw 0 0\n"
                      "nodev /tmp/elsewhere tracefs rw,relatime 0 0\n"
                      "tracefs /sys/kernel/tracing tracefs rw,nosuid 0 0\n")
    assert tracefs.mounted_tracefs(str(mounts)) == "/sys/kernel/tracing"
    mounts.write_text("nodev /tmp/my\\040dir tracefs rw 0 0\n")
    assert tracefs.mounted_tracefs(str(mounts)) == "/tmp/my dir"
    mounts.write_text("proc /proc proc rw 0 0\n")
    assert tracefs.mounted_tracefs(str(mounts)) is None
    assert tracefs.mounted_tracefs(str(tmp_path / "missing")) is None


def test_tracefs_supported_reads_proc_filesystems(tmp_path: Path) -> None:
    fs = tmp_path / "filesystems"
    fs.write_text("nodev\tsysfs\nnodev\ttracefs\n\text4\n")
    assert tracefs.tracefs_supported(str(fs))
    fs.write_text("nodev\tsysfs\n\text4\n")
    assert not tracefs.tracefs_supported(str(fs))


def test_no_pids_is_a_usage_error() -> None:
    with pytest.raises(ValueError):
        tracefs.KernelTrace([])


def test_stale_instances_of_dead_pyhvms_are_removed(tmp_path: Path) -> None:
    instances = tmp_path / "instances"
    for name in ("pyhvm-999999999-0", f"pyhvm-{os.getpid()}-0", "other-1",
                 "pyhvm-x-1"):
        (instances / name).mkdir(parents=True)
    assert tracefs.remove_stale_instances(str(tmp_path)) == ["pyhvm-999999999-0"]
    assert sorted(p.name for p in instances.iterdir()) == sorted(
        [f"pyhvm-{os.getpid()}-0", "other-1", "pyhvm-x-1"])
