"""Starting, asking and stopping a device process.

The process is `python -m pyhvm.devproc` (a fresh interpreter: nothing of the VMM's
state, threads or descriptors is inherited; `close_fds` leaves it only the control
socket, stdin and stdout on /dev/null, and stderr shared with the VMM for its log). Its
setup, a JSON message, and every descriptor it will use travel over the control socket
(SCM_RIGHTS); it answers once built and sandboxed. Later the same socket carries the
rare requests that are not device accesses (statistics, shutdown), with a deadline.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import HostError

START_TIMEOUT_S = 30.0       # interpreter start and imports on a loaded host
STOP_TIMEOUT_S = 2.0
MAX_MESSAGE = 1 << 16
SYS_TGKILL = 234             # x86_64
PACKAGE_PARENT = Path(__file__).resolve().parent.parent.parent


class DevprocStartError(HostError):
    """The device process could not be started; the message says why."""


def _env() -> dict[str, str]:
    """This checkout's pyhvm on the child's path, whatever the current directory."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PACKAGE_PARENT) + (os.pathsep + path if path else "")
    return env


class DeviceProcess:
    def __init__(self, setup: dict[str, Any], fds: list[tuple[str, int]],
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = parent
        self.pidfd = -1
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pyhvm.devproc", "--control-fd", str(child.fileno())],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, env=_env(), close_fds=True)
        except OSError as err:
            parent.close()
            raise DevprocStartError(f"cannot start the device process: {err}") from None
        finally:
            child.close()
        self.pid = self.proc.pid
        try:
            self.pidfd = os.pidfd_open(self.pid)
            message = json.dumps({**setup, "fds": [name for name, _ in fds]}).encode()
            socket.send_fds(parent, [message], [fd for _, fd in fds])
            parent.settimeout(start_timeout_s)
            try:
                reply = json.loads(parent.recv(MAX_MESSAGE) or b"{}")
            except socket.timeout:
                raise DevprocStartError(f"the device process did not start within "
                                        f"{start_timeout_s:g} s") from None
            if not reply.get("ok"):
                status = self.proc.poll()
                detail = reply.get("error") or (f"it exited with status {status}"
                                                if status is not None else "no answer")
                raise DevprocStartError(f"the device process could not start: {detail}")
        except (OSError, ValueError) as err:
            self.close()
            raise DevprocStartError(f"the device process could not start: {err}") from None
        except BaseException:
            self.close()
            raise
        self.report: dict[str, Any] = reply

    def _wait_exit(self, timeout_s: float) -> None:
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        poller.poll(int(timeout_s * 1000))

    def alive(self) -> bool:
        """Asks the pidfd, not waitpid: a sandboxed VMM may not be allowed to wait."""
        if self.pidfd < 0:
            return False
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        return not poller.poll(0)

    def describe_exit(self) -> str:
        """How it ended, in words (reaps it), e.g. `died (killed by SIGKILL)`."""
        try:
            status = self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return "stopped answering"
        except OSError:  # waiting is not allowed here (the VMM's own sandbox)
            if self.alive():
                return "stopped answering"
            known = self._zombie_status()
            if known is None:
                return "died"
            status = known
        if status < 0:
            try:
                name = signal.Signals(-status).name
            except ValueError:
                name = str(-status)
            return f"died (killed by {name})"
        return f"died (exit status {status})"

    def _zombie_status(self) -> int | None:
        """The exit status of the unreaped child from /proc/PID/stat (its last field,
        `exit_code`, in waitpid's encoding), as Popen.returncode gives it."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                raw = int(f.read().rsplit(None, 1)[-1])
        except (OSError, ValueError, IndexError):
            return None
        if os.WIFSIGNALED(raw):
            return -os.WTERMSIG(raw)
        return os.WEXITSTATUS(raw)

    def kill(self) -> None:
        """SIGKILL, through the pidfd where allowed. A sandboxed VMM may be refused
        pidfd_send_signal and kill (EPERM from its filter) but not tgkill, which it needs
        for vCPU kicks: SIGKILL to the main thread ends the whole process. The pid cannot
        have been recycled: the child is not reaped before this."""
        if self.pidfd < 0 or not self.alive():
            return
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            return
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        try:
            os.kill(self.pid, signal.SIGKILL)
            return
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall(SYS_TGKILL, self.pid, self.pid, int(signal.SIGKILL))

    def query(self, op: str, timeout_s: float) -> dict[str, Any] | None:
        """One control request; its answer, or None (no answer within the deadline)."""
        if not self.alive():
            return None
        try:
            self.sock.settimeout(timeout_s)
            self.sock.send(json.dumps({"op": op}).encode())
            reply = json.loads(self.sock.recv(MAX_MESSAGE) or b"null")
        except (OSError, ValueError):
            return None
        return reply if isinstance(reply, dict) and reply.get("ok") else None

    def close(self) -> None:
        """Ask it to stop, then make sure: nothing is left running or unreaped (where this
        process may still wait; a sandboxed VMM's exit leaves the reaping to init)."""
        if self.alive():
            try:
                self.sock.settimeout(STOP_TIMEOUT_S)
                self.sock.send(json.dumps({"op": "shutdown"}).encode())
            except OSError:
                pass
            self._wait_exit(STOP_TIMEOUT_S)
        if self.alive():
            self.kill()
            self._wait_exit(STOP_TIMEOUT_S)
        try:
            self.proc.wait(timeout=0)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.sock.close()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
