"""A bootable raw disk for firmware tests: MBR, one FAT16 partition, GRUB 2 for i386-pc.

    python3 -m tests.disk_image_builder OUT.img [--cmdline 'scenario=hello'] [--kernel ELF]

builds the disk SeaBIOS boots in the firmware tests: GRUB's boot sector in the MBR, GRUB's
core image in the gap before the first partition (as grub-install embeds it), and on the FAT
partition `/boot/grub/grub.cfg`, GRUB's modules and the guest kit, which grub.cfg loads with
`multiboot` and the command line asked for. No loop devices and no root: the partition table
is written here, the file system by `mkfs.fat --offset`, files copied by mtools, and the GRUB
images come from Debian's `grub-pc-bin` (`grub-mkimage`, boot.img). Debian packages needed:
grub-pc-bin, mtools, dosfstools.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

GRUB_DIR = Path("/usr/lib/grub/i386-pc")
SECTOR = 512
PARTITION_START = 2048  # sectors: 1 MiB, the gap GRUB's core image is embedded in
DEFAULT_SIZE = 32 << 20
FAT16_TYPE = 0x06
BOOTABLE = 0x80
MBR_PARTITION_TABLE = 0x1BE
MBR_SIGNATURE = b"\x55\xaa"
BOOT_CODE_END = 0x1B8  # boot.img's code ends where the disk signature and table begin
BOOT_KERNEL_SECTOR = 0x5C  # boot.img: 64-bit LBA of core.img's first sector
# Modules linked into core.img: only what finds $prefix on the FAT partition, as grub-install
# chooses; `normal` and the rest load from $prefix. core.img is LZMA-compressed and its
# decompressor runs in KVM's instruction emulator on hosts without VT (see host.md): every
# module left out of it saves seconds of boot.
CORE_MODULES = ("biosdisk", "part_msdos", "fat")
PREFIX = "(hd0,msdos1)/boot/grub"
REQUIRED_TOOLS = ("grub-mkimage", "mkfs.fat", "mcopy", "mmd")


class DiskBuildError(Exception):
    """The disk could not be built; the message names the missing piece."""


@dataclass(frozen=True)
class BootDisk:
    path: Path
    cmdline: str
    kernel: Path


def missing_tools() -> list[str]:
    """What this host lacks to build the disk (empty when it can)."""
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if not (GRUB_DIR / "boot.img").exists():
        missing.append(f"{GRUB_DIR}/boot.img (grub-pc-bin)")
    return missing


def grub_cfg(kernel_name: str, cmdline: str) -> str:
    """No menu, no timeout: load the guest kit and boot it at once."""
    return (
        "set timeout=0\n"
        "echo 'GRUB: loading the guest kit'\n"
        f"multiboot /boot/{kernel_name} {cmdline}\n"
        "boot\n"
    )


def partition_entry(start: int, sectors: int, kind: int, bootable: bool) -> bytes:
    """One MBR partition entry; CHS fields say 'use LBA' (0xFE/0xFF/0xFF) as tools do."""
    chs_lba = b"\xfe\xff\xff"
    return struct.pack("<B3sB3sII", BOOTABLE if bootable else 0, chs_lba, kind, chs_lba,
                       start, sectors)


def build_mbr(boot_img: bytes, disk_sectors: int) -> bytes:
    """GRUB's boot code, one bootable FAT16 partition from 1 MiB to the end, the signature."""
    if len(boot_img) != SECTOR:
        raise DiskBuildError(f"boot.img is {len(boot_img)} bytes, not {SECTOR}")
    mbr = bytearray(boot_img[:BOOT_CODE_END]) + bytearray(SECTOR - BOOT_CODE_END)
    mbr[BOOT_KERNEL_SECTOR:BOOT_KERNEL_SECTOR + 8] = struct.pack("<Q", 1)
    entry = partition_entry(PARTITION_START, disk_sectors - PARTITION_START, FAT16_TYPE,
                            bootable=True)
    mbr[MBR_PARTITION_TABLE:MBR_PARTITION_TABLE + 16] = entry
    mbr[510:512] = MBR_SIGNATURE
    return bytes(mbr)


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DiskBuildError(f"{' '.join(argv)} failed ({proc.returncode}): "
                             f"{proc.stderr.strip() or proc.stdout.strip()}")


def build_disk(path: Path, kernel: Path, cmdline: str = "scenario=hello",
               size: int = DEFAULT_SIZE) -> BootDisk:
    """Write the bootable disk to `path` (overwritten); DiskBuildError if a tool is missing."""
    missing = missing_tools()
    if missing:
        raise DiskBuildError(f"missing {', '.join(missing)}: apt-get install grub-pc-bin "
                             "mtools dosfstools")
    if not kernel.is_file():
        raise DiskBuildError(f"kernel {kernel} does not exist (make -C guest)")
    if size % SECTOR or size < 8 << 20:
        raise DiskBuildError("the disk must be at least 8 MiB, in whole sectors")
    sectors = size // SECTOR
    with tempfile.TemporaryDirectory(prefix="pyhvm-disk-") as tmp:
        core = Path(tmp) / "core.img"
        _run(["grub-mkimage", "-O", "i386-pc", "-d", str(GRUB_DIR), "-o", str(core),
              "-p", PREFIX, *CORE_MODULES])
        core_img = core.read_bytes()
        if len(core_img) > (PARTITION_START - 1) * SECTOR:
            raise DiskBuildError(f"core.img ({len(core_img)} bytes) does not fit the gap")
        with open(path, "wb") as f:
            f.truncate(size)
            f.write(build_mbr((GRUB_DIR / "boot.img").read_bytes(), sectors))
            f.seek(SECTOR)
            f.write(core_img)
        # FAT16 on the partition, written in place into the image file.
        _run(["mkfs.fat", "-F", "16", "-n", "PYHVMBOOT", "--offset", str(PARTITION_START),
              str(path), str((sectors - PARTITION_START) // 2)])
        image = f"{path}@@{PARTITION_START * SECTOR}"
        cfg = Path(tmp) / "grub.cfg"
        cfg.write_text(grub_cfg(kernel.name, cmdline))
        modules = Path(tmp) / "i386-pc"
        modules.mkdir()
        for item in GRUB_DIR.iterdir():
            if item.suffix in (".mod", ".lst"):
                shutil.copy(item, modules / item.name)
        env_mtools = ["-i", image]
        _run(["mmd", *env_mtools, "::/boot", "::/boot/grub"])
        _run(["mcopy", *env_mtools, str(cfg), "::/boot/grub/grub.cfg"])
        _run(["mcopy", *env_mtools, "-s", str(modules), "::/boot/grub/"])
        _run(["mcopy", *env_mtools, str(kernel), f"::/boot/{kernel.name}"])
    return BootDisk(path, cmdline, kernel)


# A tiny real-mode boot sector (hand-assembled; offsets in the comments). It prints
# BOOT_SECTOR_MESSAGE on COM1 and writes DL - 0x70 to the debug-exit port, so a firmware
# that boots it from the first hard disk (DL = 0x80) ends the VMM with status 0x10, i.e.
# exit code 0x21. With reboot_once, the first boot instead sets CMOS byte 0x50 and resets
# the machine through the i8042 (command 0xFE); the second boot finds the byte set.
BOOT_SECTOR_MESSAGE = b"pyhvm boot sector: running at 0000:7c00"
BOOT_SECTOR_EXIT_CODE = 0x21
BOOT_SECTOR_CMOS_FLAG = 0x50
_BOOT_SECTOR_CODE = bytes.fromhex(
    "31c0"      # 00 xor ax, ax
    "8ed8"      # 02 mov ds, ax
    "fc"        # 04 cld
    "b050"      # 05 mov al, 0x50
    "e670"      # 07 out 0x70, al
    "e471"      # 09 in al, 0x71
    "08c0"      # 0b or al, al
    "750f"      # 0d jnz 0x1e          (patched to jmp 0x1e without reboot_once)
    "b050"      # 0f mov al, 0x50
    "e670"      # 11 out 0x70, al
    "b001"      # 13 mov al, 1
    "e671"      # 15 out 0x71, al
    "b0fe"      # 17 mov al, 0xfe
    "e664"      # 19 out 0x64, al      (i8042: pulse the reset line)
    "f4"        # 1b hlt
    "ebfe"      # 1c jmp $
    "88d3"      # 1e mov bl, dl        (the boot drive, before DX is reused)
    "be377c"    # 20 mov si, 0x7c37    (the message)
    "baf803"    # 23 mov dx, 0x3f8
    "ac"        # 26 lodsb
    "08c0"      # 27 or al, al
    "7403"      # 29 jz 0x2e
    "ee"        # 2b out dx, al
    "ebf8"      # 2c jmp 0x26
    "88d8"      # 2e mov al, bl
    "2c70"      # 30 sub al, 0x70
    "e6f4"      # 32 out 0xf4, al
    "f4"        # 34 hlt
    "ebfe"      # 35 jmp $
)


def boot_sector(reboot_once: bool = False, hold: bool = False) -> bytes:
    """The 512-byte MBR described above (0x55AA signature, no partitions). With `hold` it
    halts after the message instead of exiting (for a screenshot)."""
    code = bytearray(_BOOT_SECTOR_CODE)
    assert len(code) == 0x37
    if not reboot_once:
        code[0x0D] = 0xEB  # jnz -> jmp: straight to the message
    if hold:
        code[0x32:0x34] = b"\x90\x90"  # out 0xf4, al -> nop, nop
    code += BOOT_SECTOR_MESSAGE + b"\r\n\0"
    sector = code.ljust(SECTOR, b"\0")
    sector[510:512] = MBR_SIGNATURE
    return bytes(sector)


def build_boot_sector_disk(path: Path, reboot_once: bool = False, hold: bool = False,
                           size: int = 1 << 20) -> Path:
    """A raw disk whose MBR is `boot_sector`: a firmware test that needs no GRUB."""
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(boot_sector(reboot_once, hold))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--kernel", type=Path,
                        default=Path(__file__).resolve().parents[1] / "guest" / "build" /
                        "guestkit.elf")
    parser.add_argument("--cmdline", default="scenario=hello")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE >> 20, help="MiB")
    args = parser.parse_args(argv)
    try:
        build_disk(args.output, args.kernel, args.cmdline, args.size << 20)
    except DiskBuildError as err:
        print(f"disk_image_builder: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
