"""The guest kit boots under QEMU (KVM) and each scenario reports what it should.

These runs pin the kit's behaviour on a reference VMM, so that a difference under pyhvm
points at pyhvm. Each boot takes a few seconds (SeaBIOS runs first under QEMU).
"""

from __future__ import annotations

import datetime

from tests import guestkit
import pytest
from tests.guestkit import STATUS_FAIL, STATUS_OK, STATUS_PANIC, STATUS_USAGE

pytestmark = pytest.mark.qemu

PIT_HZ = 1193182
# QEMU's default puts the i8259 and i8254 in KVM; kernel-irqchip=off puts them in QEMU.
IRQCHIPS = ["on", "off"]


@pytest.fixture(scope="session")
def qemu_run(guestkit_elf):
    """boot(cmdline, irqchip="on"|"off", input=, input_after=) -> GuestRun under QEMU."""
    reason = guestkit.qemu_missing_reason()
    if reason:
        pytest.skip(reason)

    def boot(cmdline: str, irqchip: str = "on", timeout: float = 60,
             input: bytes | None = None, input_after: str | None = None) -> guestkit.GuestRun:
        extra = () if irqchip == "on" else guestkit.QEMU_KERNEL_IRQCHIP_OFF
        return guestkit.run_qemu(guestkit_elf, cmdline, timeout=timeout, extra_args=extra,
                                 input=input, input_after=input_after)

    return boot


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
    assert (r.num("hz"), r.num("ticks")) == (0, 0)     # no timer unless hz= asks for one


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


# --- interrupts and time --------------------------------------------------------------
# Timings are only checked loosely (the hosts are shared and noisy): counts must be there
# and within a generous factor of the nominal rate.

@pytest.mark.parametrize("irqchip", IRQCHIPS)
def test_compute_with_pit_ticks_at_cpl3(qemu_run, irqchip):
    run = qemu_run("scenario=compute ms=1000 hz=100", irqchip)
    assert run.status == STATUS_OK, run.describe()
    r = run.result("compute")
    assert (r.num("hz"), r.num("ms"), r.num("cpl")) == (100, 1000, 3)
    assert 50 <= r.num("ticks") <= 150, run.describe()
    assert r.num("work") > 0
    assert r.num("cycles") >= 1000 * r.num("tsc_khz")


@pytest.mark.parametrize("irqchip", IRQCHIPS)
def test_timer_counts_pit_ticks_against_tsc_and_rtc(qemu_run, irqchip):
    run = qemu_run("scenario=timer hz=100 seconds=1", irqchip)
    assert run.status == STATUS_OK, run.describe()
    r = run.result("timer")
    assert r.words == ()                                # no rtc-timeout
    divisor = round(PIT_HZ / 100)
    assert (r.num("hz"), r.num("divisor"), r.num("ms"), r.num("expected")) == \
        (100, divisor, 1000, 100)
    ticks = r.num("ticks")
    assert 50 <= ticks <= 150, run.describe()
    # ppm against the divisor's exact rate, truncated toward zero as C does
    exact = 1000 * PIT_HZ
    diff = ticks * divisor * 1000 - exact
    assert r.num("tsc_rate_ppm") == int(diff * 1_000_000 / exact)
    assert r.num("rtc_seconds") == 1
    assert 50 <= r.num("rtc_ticks_per_second") <= 150, run.describe()
    assert r.num("rtc_ticks") == r.num("rtc_ticks_per_second")


def test_timer_rejects_zero_hz(qemu_run):
    run = qemu_run("scenario=timer hz=0")
    assert run.status == STATUS_USAGE, run.describe()
    r = run.result("error")
    assert (r.words, r["key"], r["value"]) == (("bad-arg",), "hz", "0")


@pytest.mark.parametrize("irqchip", IRQCHIPS)
def test_pic_self_test_passes(qemu_run, irqchip):
    run = qemu_run("scenario=pic", irqchip)
    assert run.status == STATUS_OK, run.describe()
    r = run.result("pic")
    assert r.fields == {"ok": "1", "checks": r["checks"], "failed": "none", "spurious": "0",
                        "unexpected": "0"}, run.describe()
    check_lines = [line.split() for line in run.lines() if line.startswith("pic: ")]
    assert len(check_lines) == r.num("checks") >= 20
    assert all(words[2] == "ok" for words in check_lines), run.describe()
    names = {words[1] for words in check_lines}
    assert {"irr-pending-while-masked", "isr-set-in-handler", "specific-eoi-clears-isr",
            "priority-fixed", "priority-rotated", "cascade-vector-0x28",
            "cascade-master-isr2", "auto-eoi", "poll-pending-irq0",
            "elcr-edge-only-bits"} <= names


@pytest.mark.parametrize("irqchip", IRQCHIPS)
def test_rtc_date_flags_and_periodic_interrupt(qemu_run, irqchip):
    run = qemu_run("scenario=rtc", irqchip)
    assert run.status == STATUS_OK, run.describe()
    r = run.result("rtc")
    assert r.num("ok") == 1, run.describe()
    # QEMU's RTC starts at the host's UTC time (-rtc base=utc); a day's slack for midnight.
    guest_day = datetime.date(r.num("year"), r.num("month"), r.num("day"))
    assert r.num("year") >= 2024
    assert abs((guest_day - datetime.datetime.now(datetime.timezone.utc).date()).days) <= 1
    assert 0 <= r.num("hour") < 24 and 0 <= r.num("minute") < 60 and 0 <= r.num("second") < 60
    assert r["bcd"] in {"0", "1"} and r["h24"] in {"0", "1"}
    assert (r.num("rs"), r.num("nominal_hz")) == (6, 1024)
    assert (r.num("pf"), r.num("irqf"), r.num("pf_cleared"), r.num("vrt")) == (1, 1, 1, 1)
    assert r.num("irqs_without_flags") == 0
    assert 512 <= r.num("periodic_hz") <= 1536, run.describe()


def test_echo_reads_console_input_after_the_prompt(qemu_run):
    data = b"hi\x00\xff\n\x7f!"
    run = qemu_run(f"scenario=echo n={len(data)}", input=data, input_after="echo: waiting")
    assert run.status == STATUS_OK, run.describe()
    r = run.result("echo")
    assert r.fields == {"n": str(len(data)), "got": str(len(data)), "hex": data.hex()}


def test_echo_gives_up_and_reports_what_arrived(qemu_run):
    run = qemu_run("scenario=echo n=4 ms=1000", input=b"ab", input_after="echo: waiting")
    assert run.status == STATUS_FAIL, run.describe()
    assert run.result("echo").fields == {"n": "4", "got": "2", "hex": "6162"}


def test_reset_through_the_keyboard_controller(qemu_run):
    run = qemu_run("scenario=reset")
    # QEMU -no-reboot exits with status 0 on a reset request, without a debug-exit write.
    assert run.returncode == 0, run.describe()
    assert [(r.scenario, r.fields, r.words) for r in run.results] == \
        [("reset", {"writing": "0xfe"}, ())]
    assert run.lines()[-1].startswith("RESULT reset"), run.describe()
