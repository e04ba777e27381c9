"""Booting disks through SeaBIOS, under pyhvm and under QEMU with the same ROM.

Both VMMs get the same machine: i440FX PC, 128 MiB, SeaBIOS from Debian's `seabios`
package, the disk on the primary IDE master, COM1 on stdout, isa-debug-exit at 0xF4, and
(optionally) SeaBIOS's debug log from port 0x402 in a file. SeaBIOS shows its console on
COM1 (QEMU: `-machine graphics=off`; pyhvm: when no display is attached).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pyhvm.boot.firmware import DEFAULT_BIOS
from tests.disk_image_builder import BOOT_SECTOR_MESSAGE, missing_tools
from tests.guestkit import (DEBUG_EXIT_PORT, QEMU, REPO_ROOT, kvm_skip_reason, parse_results,
                            qemu_missing_reason)

SEABIOS = DEFAULT_BIOS
MEMORY_MIB = 128
# The full chain (SeaBIOS, GRUB, the guest kit) runs mostly in KVM's instruction emulator
# here (real mode and CPL 0 are emulated on these hosts, host.md): 40 s alone, several
# times that on a machine shared with other work.
FULL_CHAIN_TIMEOUT = 600
QUICK_TIMEOUT = 120
BANNER = "SeaBIOS (version "  # on the console once per POST
BOOTING = "Booting from Hard Disk..."
BOOT_MESSAGE = BOOT_SECTOR_MESSAGE.decode()  # what the test boot sector prints


def _required(reason: str | None) -> str | None:
    """In CI (PYHVM_REQUIRE_KVM=1) a missing package is a failure, not a skip."""
    if reason and os.environ.get("PYHVM_REQUIRE_KVM") == "1":
        raise AssertionError(f"PYHVM_REQUIRE_KVM=1 but {reason}")
    return reason


def firmware_skip_reason() -> str | None:
    reason = kvm_skip_reason()
    if reason:
        return reason
    if not os.path.isfile(SEABIOS):
        return _required(f"{SEABIOS} is missing (apt-get install seabios)")
    return None


def grub_skip_reason() -> str | None:
    missing = missing_tools()
    if missing:
        return _required(f"cannot build a GRUB disk: missing {', '.join(missing)} "
                         "(apt-get install grub-pc-bin mtools dosfstools)")
    return None


# SeaBIOS's serial console ("sercon") speaks ANSI: it clears the screen and moves the cursor
# in the middle of text it relays for the boot loader.
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|[A-Za-z])")


def console_text(raw: str) -> str:
    """COM1 output with the terminal escape sequences taken out."""
    return _ANSI.sub("", raw)


@dataclass(frozen=True)
class FirmwareRun:
    returncode: int
    raw_console: str  # COM1, as written
    debug: str  # SeaBIOS's port 0x402 log ("" when not asked for)
    stderr: str

    @property
    def console(self) -> str:
        return console_text(self.raw_console)

    def describe(self) -> str:
        return (f"rc={self.returncode}\n--- console ---\n{self.raw_console!r}\n"
                f"--- debug log ---\n{self.debug[-3000:]}\n--- stderr ---\n{self.stderr}")


def pyhvm_command(disk: Path | None, *, vga: bool = False, debug_log: Path | None = None,
                  max_seconds: int = QUICK_TIMEOUT - 10, kernel: Path | None = None,
                  append: str = "", extra: Sequence[str] = ()) -> list[str]:
    """pyhvm on SeaBIOS with `disk` on the primary IDE master, or booting `kernel` (with
    `append`) through the option ROM QEMU would use."""
    command = [sys.executable, "-m", "pyhvm", "run", "--bios", SEABIOS,
               "-m", f"{MEMORY_MIB}M", "--max-seconds", str(max_seconds)]
    if disk is not None:
        command += ["--drive", f"file={disk},if=ide,format=raw"]
    if kernel is not None:
        command += ["--kernel", str(kernel), "--append", append]
    if not vga:
        command += ["--vga", "none"]
    if debug_log is not None:
        command += ["--debugcon", f"file:{debug_log}"]
    return command + list(extra)


def qemu_command(disk: Path | None, *, vga: bool = False, debug_log: Path | None = None,
                 kernel: Path | None = None, append: str = "", extra: Sequence[str] = ()
                 ) -> list[str]:
    """The same machine as `pyhvm_command`'s, on QEMU."""
    command = [QEMU, "-enable-kvm", "-cpu", "qemu64", "-m", str(MEMORY_MIB),
               "-machine", "pc,graphics=off", "-nodefaults", "-display", "none",
               "-bios", SEABIOS, "-serial", "stdio",
               "-device", f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=4"]
    if disk is not None:
        command += ["-drive", f"file={disk},if=ide,format=raw"]
    if kernel is not None:
        command += ["-kernel", str(kernel), "-append", append]
    command += ["-vga", "std"] if vga else ["-vga", "none"]
    if debug_log is not None:
        command += ["-chardev", f"file,id=seabios,path={debug_log}",
                    "-device", "isa-debugcon,iobase=0x402,chardev=seabios"]
    return command + list(extra)


def hello_fields(console: str) -> dict[str, str] | None:
    """The fields of the first `hello` scenario result on `console`, if any."""
    results = [r for r in parse_results(console) if r.scenario == "hello"]
    return results[0].fields if results else None


HELLO_OK = {"ok": "1", "args": "2"}  # the hello scenario's success, two arguments


def run(command: list[str], timeout: float, debug_log: Path | None = None) -> FirmwareRun:
    proc = subprocess.run(command, capture_output=True, timeout=timeout, cwd=REPO_ROOT,
                          stdin=subprocess.DEVNULL)
    debug = ""
    if debug_log is not None and debug_log.exists():
        debug = debug_log.read_text("utf-8", "replace")
    return FirmwareRun(proc.returncode, proc.stdout.decode("utf-8", "replace"), debug,
                       proc.stderr.decode("utf-8", "replace"))


def qemu_skip_reason() -> str | None:
    return qemu_missing_reason() or firmware_skip_reason()


# A bzImage whose real-mode setup code (entered by the firmware's option ROM at 0x1020:0000,
# the jump at setup offset 0x200) prints the kernel command line from 0x20000, where QEMU's
# x86 loader places it, and exits with status 0x11 (exit code 0x23). Hand-assembled:
FAKE_LINUX_EXIT_CODE = 0x23
_FAKE_LINUX_SETUP = bytes.fromhex(
    "b80020"    # mov ax, 0x2000
    "8ed8"      # mov ds, ax
    "31f6"      # xor si, si
    "fc"        # cld
    "baf803"    # mov dx, 0x3f8
    "ac"        # lodsb
    "08c0"      # or al, al
    "7403"      # jz +3
    "ee"        # out dx, al
    "ebf8"      # jmp lodsb
    "b00a"      # mov al, 10
    "ee"        # out dx, al
    "b011"      # mov al, 0x11
    "e6f4"      # out 0xf4, al
    "f4"        # hlt
    "ebfe"      # jmp $
)


def fake_linux_image(path: Path) -> Path:
    """Write the bzImage described above (a protocol 2.15 header; the kernel is filler)."""
    from tests.unit.test_boot_linux import make_bzimage

    header_end = 0x26C
    image = bytearray(make_bzimage(setup_sects=4, header_end=header_end))
    image[header_end:header_end + len(_FAKE_LINUX_SETUP)] = _FAKE_LINUX_SETUP
    path.write_bytes(bytes(image))
    return path
