"""Host-side failures of the KVM layer, each with a message that says what to do."""

from __future__ import annotations

from ..errors import HostError


class KvmError(HostError):
    """KVM refused or is unavailable; the message is meant for the user as it is."""


class KvmUnavailable(KvmError):
    """/dev/kvm cannot be opened."""


def ioctl_error(what: str, err: OSError) -> KvmError:
    return KvmError(f"{what} failed: {err.strerror or err} (errno {err.errno})")
