"""`Kvm`: the /dev/kvm file descriptor (API version, capabilities, supported CPUID)."""

from __future__ import annotations

import errno
import fcntl
import os

from . import constants as k
from . import structs as s
from .errors import KvmError, KvmUnavailable, ioctl_error

KVM_API_VERSION = 12


class Kvm:
    """An open /dev/kvm. Creates VMs; answers what the host's KVM can do."""

    def __init__(self, path: str = "/dev/kvm") -> None:
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KvmUnavailable(
                f"{path} does not exist: load the KVM module (modprobe kvm_intel or kvm_amd) "
                "or run on a host with hardware virtualization") from None
        except PermissionError:
            raise KvmUnavailable(
                f"no permission to open {path}: add your user to the 'kvm' group "
                "or run as root") from None
        version = fcntl.ioctl(self.fd, k.KVM_GET_API_VERSION, 0)
        if version != KVM_API_VERSION:
            os.close(self.fd)
            raise KvmUnavailable(f"{path} speaks KVM API {version}; pyhvm needs "
                                 f"{KVM_API_VERSION}")
        self.api_version = version

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Kvm":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_extension(self, cap: int) -> int:
        """0 when the capability is absent, else its (capability-specific) value."""
        return fcntl.ioctl(self.fd, k.KVM_CHECK_EXTENSION, cap)

    def vcpu_mmap_size(self) -> int:
        return fcntl.ioctl(self.fd, k.KVM_GET_VCPU_MMAP_SIZE, 0)

    def supported_cpuid(self) -> list[s.kvm_cpuid_entry2]:
        """The CPUID leaves this KVM can expose, as copies the caller may edit."""
        nent = 64
        while nent <= 4096:
            buf = s.cpuid2_buffer(nent)
            try:
                fcntl.ioctl(self.fd, k.KVM_GET_SUPPORTED_CPUID, buf)
            except OSError as err:
                if err.errno == errno.E2BIG:
                    nent *= 2
                    continue
                raise ioctl_error("KVM_GET_SUPPORTED_CPUID", err) from None
            return [s.kvm_cpuid_entry2.from_buffer_copy(buf.entries[i])
                    for i in range(buf.nent)]
        raise KvmError("KVM_GET_SUPPORTED_CPUID: too many entries")

    def create_vm(self) -> "Vm":
        from .vm import Vm

        try:
            vm_fd = fcntl.ioctl(self.fd, k.KVM_CREATE_VM, 0)
        except OSError as err:
            raise ioctl_error("KVM_CREATE_VM", err) from None
        return Vm(self, vm_fd)

