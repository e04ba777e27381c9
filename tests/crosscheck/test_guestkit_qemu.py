"""The guest kit boots under QEMU (KVM) and each scenario reports what it should.

These runs pin the kit's behaviour on a reference VMM, so that a difference under pyhvm
points at pyhvm. Each boot takes a few seconds (SeaBIOS runs first under QEMU).
"""

from __future__ import annotations

from tests import guestkit
import pytest
from tests.guestkit import STATUS_OK, STATUS_PANIC, STATUS_USAGE

pytestmark = pytest.mark.qemu


def _assert_banner_first(run: guestkit.GuestRun) -> None:
    assert run.lines(), run.describe()
    assert run.lines()[0].startswith(guestkit.BANNER_PREFIX), run.describe()


def test_hello_counts_key_value_args_and_echoes_cmdline(qemu_boot):
    run = qemu_boot("scenario=hello alpha=1 beta=0x20")
    _assert_banner_first(run)
    assert run.status == STATUS_OK, run.describe()
    r = run.result("hello")
    assert r.fields == {"ok": "1", "args": "3"}
    cmdline_lines = [line for line in run.lines() if line.startswith("cmdline: ")]
    # QEMU's Multiboot loader puts the kernel path first; the kit ignores it.
    assert len(cmdline_lines) == 1
    assert cmdline_lines[0].endswith("scenario=hello alpha=1 beta=0x20")


def test_hello_shows_multiboot_memory_info(qemu_boot):
    run = qemu_boot("scenario=hello")
    assert run.status == STATUS_OK, run.describe()
    mem = [line for line in run.lines() if line.startswith("mem: ")]
    assert mem, run.describe()
    fields = dict(tok.split("=") for tok in mem[0].split()[1:])
    assert int(fields["lower_kb"]) >= 600
    assert 100 * 1024 < int(fields["upper_kb"]) <= 127 * 1024
    mmap = [dict(tok.split("=") for tok in line.split()[1:])
            for line in run.lines() if line.startswith("mmap: ")]
    assert any(int(e["base"], 0) == 0x100000 and e["type"] == "1" for e in mmap), mmap


def test_unknown_scenario_exits_with_usage_status(qemu_boot):
    run = qemu_boot("scenario=no-such-thing")
    assert run.status == STATUS_USAGE, run.describe()
    r = run.result("error")
    assert r.words == ("unknown-scenario",)
    assert r["name"] == "no-such-thing"


def test_malformed_number_is_a_usage_error(qemu_boot):
    run = qemu_boot("scenario=exits n=12abc")
    assert run.status == STATUS_USAGE, run.describe()
    r = run.result("error")
    assert r.words == ("bad-arg",)
    assert (r["key"], r["value"]) == ("n", "12abc")


def test_exits_pio_default_port(qemu_boot):
    run = qemu_boot("scenario=exits n=5000")
    assert run.status == STATUS_OK, run.describe()
    r = run.result("exits")
    assert (r["kind"], r.num("port"), r.num("n")) == ("pio", 0x404, 5000)
    assert r.num("cycles") > 0
    assert r.num("cycles_per_exit") == r.num("cycles") // 5000
    assert r.num("tsc_khz") > 0 and r["tsc_source"]


def test_exits_mmio_to_unassigned_address(qemu_boot):
    run = qemu_boot("scenario=exits n=5000 mmio=0xd0000000")
    assert run.status == STATUS_OK, run.describe()
    r = run.result("exits")
    assert (r["kind"], r.num("addr"), r.num("n")) == ("mmio", 0xD0000000, 5000)
    # A write to nothing must trap: thousands of cycles each, not a few (plain RAM).
    assert r.num("cycles_per_exit") > 1000


def test_exits_to_uart_keeps_result_line_parseable(qemu_boot):
    run = qemu_boot("scenario=exits n=300 port=0x3f8")
    assert run.status == STATUS_OK, run.describe()
    r = run.result("exits")
    assert (r["kind"], r.num("port"), r.num("n")) == ("pio", 0x3F8, 300)
    assert any(line.startswith("RESULT exits ") for line in run.lines())


def test_compute_runs_at_cpl3_for_the_requested_time(qemu_boot):
    run = qemu_boot("scenario=compute ms=300")
    assert run.status == STATUS_OK, run.describe()
    r = run.result("compute")
    assert r.num("cpl") == 3
    assert r.num("work") > 0
    assert r["tsc_source"] in {"cmdline", "cpuid-40000010", "cpuid-15", "cpuid-16", "pit",
                               "default"}
    expected = 300 * r.num("tsc_khz")
    assert expected <= r.num("cycles") < expected * 1.05
    assert "compute: running at CPL 3" in run.lines()


def test_compute_takes_tsc_khz_from_cmdline(qemu_boot):
    run = qemu_boot("scenario=compute ms=50 tsc_khz=1234567")
    assert run.status == STATUS_OK, run.describe()
    r = run.result("compute")
    assert (r["tsc_source"], r.num("tsc_khz")) == ("cmdline", 1234567)
    assert r.num("cycles") >= 50 * 1234567


def test_strio_string_io_round_trip(qemu_boot):
    run = qemu_boot("scenario=strio")
    assert run.status == STATUS_OK, run.describe()
    assert "strio: rep outsb of 64 bytes to COM1 0123456789abcdefghijklmnop" in run.lines()
    r = run.result("strio")
    assert r.fields == {"ok": "1", "insb": "ff" * 16}


def test_triple_fault_shuts_the_machine_down(qemu_boot):
    run = qemu_boot("scenario=triple")
    # No debug-exit write: QEMU with -no-reboot turns the shutdown into exit code 0.
    assert run.returncode == 0, run.describe()
    assert run.result("triple").fields == {"expect": "shutdown", "how": "ud2"}
    assert guestkit.parse_panic(run.console) is None
    assert run.lines()[-1].startswith("RESULT triple"), run.describe()


@pytest.mark.parametrize(("kind", "cpl", "vector"), [("ud", 0, 6), ("pf", 3, 14)])
def test_fault_prints_panic_and_exits_with_panic_status(qemu_boot, kind, cpl, vector):
    run = qemu_boot(f"scenario=fault kind={kind} cpl={cpl}")
    assert run.status == STATUS_PANIC, run.describe()
    assert run.result("fault").num("vector") == vector
    panic = guestkit.parse_panic(run.console)
    assert panic is not None, run.describe()
    assert int(panic["vector"]) == vector
    assert int(panic["cs"], 0) & 3 == cpl      # the faulting code's privilege level
    assert int(panic["cpl"]) == 0               # the handler's
    if kind == "pf":
        assert int(panic["cr2"], 0) == 0x1_0000_0000
