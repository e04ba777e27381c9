"""The device process's confinement (pyhvm/devproc/sandbox.py), applied in child processes:
a filter can never be removed from the process that installs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyhvm.devproc import sandbox
from pyhvm.runtime import seccomp as sc

pytestmark = pytest.mark.skipif(sc.unsupported_reason() is not None,
                                reason=str(sc.unsupported_reason()))


def run_child(body: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent("""
        import errno, os, socket, sys, threading
        from pyhvm.devproc import sandbox
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=Path(sandbox.__file__).resolve().parents[2])


def test_the_filter_lets_the_device_loop_work_and_refuses_the_rest() -> None:
    child = run_child("""
        r, w = os.pipe()
        sandbox.build_filter("errno").install()
        os.write(w, b"x"); assert os.read(r, 1) == b"x"           # the loop's own calls
        t = threading.Thread(target=lambda: None); t.start(); t.join()  # threads: yes
        for what, call in (("open", lambda: open("/etc/hostname")),
                           ("socket", lambda: socket.socket()),
                           ("fork", os.fork)):
            try:
                call()
            except OSError as err:
                print(what, errno.errorcode[err.errno])
    """)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split("\n")[:3] == ["open EACCES", "socket EPERM", "fork EPERM"]


def test_with_the_kill_action_a_refused_call_kills_the_process() -> None:
    child = run_child("""
        sandbox.build_filter("kill").install()
        print("installed", flush=True)
        socket.socket()
        print("still alive", flush=True)
    """)
    assert child.stdout == "installed\n"
    assert child.returncode == -signal.SIGSYS


def test_confine_closes_descriptors_sets_no_new_privs_and_drops_root() -> None:
    child = run_child("""
        import json
        keep = {0, 1, 2}
        os.open("/dev/null", os.O_RDONLY)   # closed by confine
        report = sandbox.confine(keep, {"seccomp": "errno", "user": "nobody"})
        print(json.dumps(report))
    """)
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    assert report["fds"] == [0, 1, 2]
    assert report["no_new_privs"] is True and report["seccomp"] == "errno"
    if os.geteuid() == 0:
        assert report["uid"] == 65534
