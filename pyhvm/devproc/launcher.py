"""Starting, asking and stopping a device process.

The process is `python -m pyhvm.devproc` (a fresh interpreter: nothing of the VMM's
state or threads is inherited, and its descriptors are close-on-exec but for the control
socket; stdin and stdout are /dev/null, stderr is shared with the VMM for its log). Its
setup, a JSON message, and every descriptor it will use travel over the control socket
(SCM_RIGHTS); it answers once built and sandboxed. Later the same socket carries the
rare requests that are not device accesses (statistics, shutdown), with a deadline.

The VMM may sandbox itself after the device process started (`pyhvm run --sandbox`): its
seccomp filter refuses waitpid, kill and pidfd_send_signal (in `strict` mode by killing the
VMM). So once the VMM is filtered, the process is watched through its pidfd only, killed
with tgkill (which the filter allows for vCPU kicks; the child is not reaped before, so its
pid cannot have been reused), and its exit status read from /proc if it can be; it is
spawned with posix_spawn rather than subprocess.Popen, whose finalizer would waitpid.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import socket
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


def seccomp_filtered() -> bool:
    """Whether this process runs under a seccomp filter (then only calls it surely allows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Seccomp:"):
                    return line.split()[1] != "0"
    except OSError:
        return True
    return False


def describe_status(status: int) -> str:
    """A waitpid status in words, e.g. `died (killed by SIGKILL)`."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"died (killed by {name})"
    return f"died (exit status {os.WEXITSTATUS(status)})"


class DeviceProcess:
    def __init__(self, setup: dict[str, Any], fds: list[tuple[str, int]],
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = parent
        self.pidfd = -1
        self.status: int | None = None  # the waitpid status, once reaped
        try:
            os.set_inheritable(child.fileno(), True)
            self.pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-m", "pyhvm.devproc", "--control-fd", str(child.fileno())],
                _env(), setsigmask=(), file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
        except OSError as err:
            parent.close()
            raise DevprocStartError(f"cannot start the device process: {err}") from None
        finally:
            child.close()
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
                detail = reply.get("error") or (self.describe_exit() if not self.alive()
                                                else "no answer")
                raise DevprocStartError(f"the device process could not start: {detail}")
        except (OSError, ValueError) as err:
            self.close()
            raise DevprocStartError(f"the device process could not start: {err}") from None
        except BaseException:
            self.close()
            raise
        self.report: dict[str, Any] = reply

    def alive(self) -> bool:
        """Asks the pidfd (readable once the process has exited), never waitpid."""
        if self.pidfd < 0 or self.status is not None:
            return False
        return not self._wait_exit(0)

    def _wait_exit(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the process to end; whether it has."""
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        return bool(poller.poll(int(timeout_s * 1000)))

    def _reap(self) -> int | None:
        """The exit status of an ended process, reaping it where this process may."""
        if self.status is None and not seccomp_filtered():
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == self.pid:
                self.status = status
        return self.status

    def _zombie_status(self) -> int | None:
        """The unreaped child's exit status from /proc/PID/stat (its last field, in
        waitpid's encoding); None where the kernel hides it (it reads 0 then, too)."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                raw = int(f.read().rsplit(None, 1)[-1])
        except (OSError, ValueError, IndexError):
            return None
        return raw or None

    def describe_exit(self) -> str:
        """How it ended, in words, e.g. `died (killed by SIGKILL)`."""
        if not self._wait_exit(0.5):
            return "stopped answering"
        status = self._reap()
        if status is None:
            status = self._zombie_status()
        return "died" if status is None else describe_status(status)

    def kill(self) -> None:
        """SIGKILL: through the pidfd, or with tgkill once the VMM is filtered."""
        if not self.alive():
            return
        if not seccomp_filtered():
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
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
        """Ask it to stop, then make sure: nothing is left running, and nothing unreaped
        where this process may still wait (a filtered VMM leaves the zombie to init when
        it exits itself)."""
        if self.pidfd >= 0:
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
            self._reap()
            os.close(self.pidfd)
            self.pidfd = -1
        self.sock.close()
