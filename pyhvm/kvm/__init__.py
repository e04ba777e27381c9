"""A thin typed binding of the Linux KVM API: one class per file descriptor, no policy."""

from .errors import KvmError, KvmUnavailable
from .exits import decode
from .system import Kvm
from .vcpu import Vcpu
from .vm import Vm

__all__ = ["Kvm", "Vm", "Vcpu", "KvmError", "KvmUnavailable", "decode"]
