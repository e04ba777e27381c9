"""The dependency rules of shared/docs/architecture.md, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pyhvm"
DEVICE_FILES = sorted((PACKAGE / "devices").glob("*.py"))
# Device models are sans-I/O: no OS, sockets, threads, clocks, KVM, or upper layers.
FORBIDDEN_IN_DEVICES = {"os", "socket", "threading", "time", "selectors", "subprocess",
                        "pyhvm.kvm", "pyhvm.runtime", "pyhvm.machine", "pyhvm.backends"}


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules `path` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                names.add(node.module)
    return names


@pytest.mark.parametrize("path", DEVICE_FILES, ids=[p.name for p in DEVICE_FILES])
def test_device_models_import_no_io_threads_clock_or_kvm(path: Path) -> None:
    bad = {name for name in _imports(path)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_DEVICES)}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_import_resolver_sees_relative_imports() -> None:
    """Guard the guard: a relative import of the KVM binding is resolved and caught."""
    names = _imports(PACKAGE / "runtime" / "vcpu_runner.py")
    assert "pyhvm.kvm.exits" in names
