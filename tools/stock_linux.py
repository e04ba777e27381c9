#!/usr/bin/env python3
"""Build what it takes to boot a stock Debian kernel on pyhvm and watch its drivers use ours.

On these development machines a stock kernel cannot boot (kvm_pvm emulates CPL 0: the
decompressor alone runs for tens of minutes, see ../shared/docs/host.md); on a host with
hardware VT it is the most telling test pyhvm has. This fetches Debian's kernel and
busybox-static with `apt-get download` (a developer tool: nothing here runs in CI), then
writes into DIR:

  vmlinuz          the distribution kernel (bzImage)
  initrd.cpio.gz   busybox plus the modules for the PIIX IDE (ata_piix, sd_mod) and the
                   RTL8139 (8139too/8139cp); /init probes them and prints what it saw
  disk.img         16 MiB whose first sector is a known signature

/init prints PYHVM-LINUX-USERSPACE-OK, the PCI functions, the disk's first sector and md5,
a read and a write through ata_piix, the NIC's MAC and TX counters after a ping, the
interrupts and selected dmesg lines, then PYHVM-LINUX-DONE, and reboots. Boot it with

  pyhvm run --kernel DIR/vmlinuz --initrd DIR/initrd.cpio.gz -m 512M --no-reboot \\
      --append 'console=ttyS0 panic=-1' --drive file=DIR/disk.img \\
      --netdev socket,id=n0,udp=127.0.0.1:9000,localaddr=127.0.0.1:9001 \\
      --device rtl8139,netdev=n0 --max-seconds 300

and the same with `--irqchip user --ide-dma sync --net-mode poll` (add `nolapic` to the
command line) for the paper's "before". The same files boot under `qemu-system-x86_64
-accel tcg` in seconds, which checks the initramfs itself.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

MODULES = ("crct10dif_common crct10dif_generic crc-t10dif crc64 crc64_rocksoft_generic "
           "crc64-rocksoft t10-pi scsi_common scsi_mod sd_mod libata ata_piix mii 8139too "
           "8139cp").split()  # in load order: each after what it depends on
DISK_SIGNATURE = b"PYHVM-DISK-SIGNATURE-v1\n"
DISK_SIZE = 16 << 20

INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
echo PYHVM-LINUX-USERSPACE-OK; uname -a
echo "--- pci"
for d in /sys/bus/pci/devices/*; do
  echo "$(basename $d) $(cat $d/vendor):$(cat $d/device) class $(cat $d/class) irq $(cat $d/irq)"
done
echo "--- modules"; for m in MODULES; do insmod /mod/$m.ko 2>&1 | head -2; done; sleep 2
echo "--- disk"; cat /proc/partitions
if [ -b /dev/sda ]; then
  echo "sector0: $(dd if=/dev/sda bs=512 count=1 2>/dev/null | head -c 24)"
  echo "disk md5: $(md5sum /dev/sda | cut -d' ' -f1)"
  echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/sda of=/dev/null bs=1M 2>&1 | tail -1
  echo PYHVM-WRITE-OK-FROM-LINUX | dd of=/dev/sda bs=512 seek=2048 conv=sync,fsync 2>/dev/null
  sync && echo "disk write done"
fi
echo "--- net"
if [ -e /sys/class/net/eth0 ]; then
  cat /sys/class/net/eth0/address; ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0
  sleep 1; ping -c 3 -W 1 10.0.2.2 2>&1 | tail -1
  s=/sys/class/net/eth0/statistics
  echo "tx_packets $(cat $s/tx_packets) rx_packets $(cat $s/rx_packets) tx_errors $(cat $s/tx_errors)"
fi
echo "--- interrupts"; cat /proc/interrupts
echo "--- dmesg"; dmesg | grep -i -E "clocksource|apic|8250|ata[0-9]|sd |8139|eth0|error|fail|bug" | head -60
echo PYHVM-LINUX-DONE
reboot -f
""".replace("MODULES", " ".join(MODULES))


def run(*command: str, cwd: Path) -> str:
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout


def debian_packages(work: Path) -> tuple[Path, Path]:
    """(the kernel image .deb, the busybox-static .deb) from the host's apt sources."""
    depends = run("apt-cache", "depends", "linux-image-amd64", cwd=work)
    image = next(line.split(":", 1)[1].strip() for line in depends.splitlines()
                 if line.strip().startswith("Depends:") and "linux-image-" in line)
    run("apt-get", "download", image, "busybox-static", cwd=work)
    return next(work.glob("linux-image-*.deb")), next(work.glob("busybox-static*.deb"))


def deb_members(deb: Path, work: Path, wanted: list[str]) -> dict[str, bytes]:
    """Files of a .deb whose path holds one of `wanted` (by dpkg-deb, no root needed)."""
    data = work / (deb.name + ".tar")
    with open(data, "wb") as out:
        subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=out, check=True)
    found: dict[str, bytes] = {}
    with tarfile.open(data) as archive:
        for member in archive:
            for name in wanted:
                if member.isfile() and name in member.name and name not in found:
                    extracted = archive.extractfile(member)
                    assert extracted is not None
                    found[name] = extracted.read()
    missing = [name for name in wanted if name not in found]
    if missing:
        raise SystemExit(f"stock_linux: {deb.name} lacks {', '.join(missing)}")
    return found


def cpio_newc(entries: list[tuple[str, int, bytes, tuple[int, int]]]) -> bytes:
    """An initramfs archive (the "newc" cpio format the kernel unpacks)."""
    out = bytearray()
    for inode, (name, mode, data, (major, minor)) in enumerate(
            entries + [("TRAILER!!!", 0, b"", (0, 0))], start=1):
        fields = (inode, mode, 0, 0, 1, 0, len(data), 0, 0, major, minor, len(name) + 1, 0)
        out += b"070701" + "".join(f"{value:08X}" for value in fields).encode()
        out += name.encode() + b"\0"
        out += bytes(-len(out) % 4) + data
        out += bytes(-len(out) % 4)
    return bytes(out)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pyhvm-stock-linux-") as scratch:
        work = Path(scratch)
        kernel_deb, busybox_deb = debian_packages(work)
        modules = deb_members(kernel_deb, work, [f"/{name}.ko" for name in MODULES])
        kernel = deb_members(kernel_deb, work, ["/boot/vmlinuz-"])["/boot/vmlinuz-"]
        busybox = deb_members(busybox_deb, work, ["bin/busybox"])["bin/busybox"]
    directory = stat.S_IFDIR | 0o755
    entries = [(name, directory, b"", (0, 0)) for name in ("bin", "dev", "mod", "proc",
                                                            "sys", "tmp")]
    entries += [("bin/busybox", stat.S_IFREG | 0o755, busybox, (0, 0)),
                ("init", stat.S_IFREG | 0o755, INIT.encode(), (0, 0)),
                ("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)),
                ("dev/ttyS0", stat.S_IFCHR | 0o600, b"", (4, 64))]
    entries += [(f"mod{name}", stat.S_IFREG | 0o644, data, (0, 0))
                for name, data in modules.items()]
    (out / "vmlinuz").write_bytes(kernel)
    (out / "initrd.cpio.gz").write_bytes(gzip.compress(cpio_newc(entries)))
    disk = bytearray(os.urandom(DISK_SIZE))
    disk[:len(DISK_SIGNATURE)] = DISK_SIGNATURE
    (out / "disk.img").write_bytes(disk)
    print(f"{out}: vmlinuz, initrd.cpio.gz, disk.img (md5 {hashlib.md5(disk).hexdigest()}, "
          "which /init prints back)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
