"""Pick the loader an image needs: Linux bzImage (setup header "HdrS") or Multiboot 1."""

from __future__ import annotations

from ..memory import GuestMemory
from .image import BootEntry, BootImageError
from .multiboot import load_multiboot

LINUX_HEADER_MAGIC_OFFSET = 0x202


def is_linux_bzimage(image: bytes) -> bool:
    return image[LINUX_HEADER_MAGIC_OFFSET:LINUX_HEADER_MAGIC_OFFSET + 4] == b"HdrS"


def load_kernel(memory: GuestMemory, image: bytes, cmdline: str, initrd: bytes | None,
                modules: list[tuple[bytes, str]]) -> BootEntry:
    if not image:
        raise BootImageError("kernel file is empty")
    if is_linux_bzimage(image):
        from .linux import load_linux

        if modules:
            raise BootImageError("modules are a Multiboot feature; a Linux kernel takes "
                                 "--initrd")
        return load_linux(memory, image, cmdline, initrd)
    if initrd is not None:
        # Multiboot has no initrd; like QEMU, pass it as the first module.
        modules = [(initrd, "initrd")] + modules
    return load_multiboot(memory, image, cmdline, modules)
