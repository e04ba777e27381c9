"""What the device process loads: the device models and their ports, never the KVM binding
or the machine (it must not be able to reach /dev/kvm even by a bug)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_device_process_loads_no_kvm_binding_and_no_machine() -> None:
    code = ("import json, sys; import pyhvm.devproc.server; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('pyhvm'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60, check=True).stdout
    modules = json.loads(out)
    assert "pyhvm.devices.uart16550" in modules and "pyhvm.devproc.ring" in modules
    forbidden = [m for m in modules if m.startswith(("pyhvm.kvm", "pyhvm.machine"))]
    assert forbidden == []
