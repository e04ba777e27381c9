"""`pyhvm run --sandbox`: options, the run loop's allow-list, which paths keep a root run
from dropping its user, and the whole sandbox applied in a forked child (no KVM needed)."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from pyhvm.control.qmp import QmpSession, machine_commands
from pyhvm.runtime import sandbox as sb
from pyhvm.runtime import seccomp as sc
from tests.unit.test_seccomp import in_child, needs_seccomp, raw_call

NOBODY = 65534
KVM_RUN, KVM_IRQ_LINE, KVM_GET_DIRTY_LOG = 0xAE80, 0x4008AE61, 0x4010AE42
TUNSETIFF = 0x400454CA
SIOCSIFFLAGS = 0x8914


# --- options -----------------------------------------------------------------------------------
def test_limits_parse_any_subset_with_defaults() -> None:
    assert sb.parse_limits(None) == sb.Limits()
    limits = sb.parse_limits("files=100,memory=512M")
    assert (limits.files, limits.threads, limits.memory) == (100, sb.DEFAULT_MAX_THREADS,
                                                             512 << 20)
    assert [sb.parse_limits(f"memory={size}").memory for size in ("2G", "64", "1024KiB")] == \
        [2 << 30, 64 << 20, 1 << 20]


@pytest.mark.parametrize("text", ["files", "files=x", "cpus=2", "threads=0", "memory=lots",
                                  "memory=", "memory=G"])
def test_bad_limits_are_one_line_errors(text: str) -> None:
    with pytest.raises(sb.SandboxError, match="--sandbox-limits"):
        sb.parse_limits(text)


def test_modes_and_users_are_checked_before_any_setup() -> None:
    with pytest.raises(sb.SandboxError, match="use on, strict or off"):
        sb.parse_options("maybe")
    with pytest.raises(sb.SandboxError, match="no such user"):
        sb.parse_options("on", "no-such-user-here")
    with pytest.raises(sb.SandboxError, match="must not be root"):
        sb.parse_options("on", "0")
    assert sb.resolve_user("nobody") == (NOBODY, sb.resolve_user("nobody")[1])
    assert sb.resolve_user("12345:678") == (12345, 678)


# --- the run loop's filter ----------------------------------------------------------------------
def test_run_loop_filter_allows_the_hot_path() -> None:
    f = sb.run_loop_filter()
    for request in (KVM_RUN, KVM_IRQ_LINE, KVM_GET_DIRTY_LOG):
        assert f.decide("ioctl", 5, request) == sc.SECCOMP_RET_ALLOW
    for name in ("futex", "pselect6", "read", "write", "preadv", "pwritev", "accept4",
                 "sendto", "recvfrom", "openat", "rename", "mmap"):
        assert f.decide(name) == sc.SECCOMP_RET_ALLOW, name


def test_run_loop_filter_refuses_what_setup_alone_needs_or_nobody_should_do() -> None:
    f = sb.run_loop_filter()
    assert f.decide("ioctl", 5, TUNSETIFF) == sc.DENY_EPERM  # no new TAP after setup
    assert f.decide("ioctl", 5, SIOCSIFFLAGS) == sc.DENY_EPERM
    assert f.decide("ioctl", 5, 0x5413) == sc.DENY_EPERM  # TIOCGWINSZ: setup only
    assert f.decide("ioctl", 5, 0x5401) == f.decide("ioctl", 5, 0x5421) == \
        sc.SECCOMP_RET_ALLOW  # TCGETS (isatty in open()), FIONBIO (socket blocking mode)
    for name in ("execve", "execveat", "socket", "bind", "connect", "ptrace", "mount",
                 "umount2", "unshare", "setns", "setuid", "setresuid", "setgroups", "kill",
                 "init_module", "bpf", "perf_event_open", "process_vm_readv", "chroot",
                 "fork", "vfork", "keyctl", "userfaultfd", "memfd_create", "open_by_handle_at"):
        assert f.decide(name) == sc.DENY_EPERM, name
    assert f.decide("clone", 0x11) == sc.DENY_EPERM  # SIGCHLD: a fork
    assert f.decide("clone", 0x3D0F00) == sc.SECCOMP_RET_ALLOW  # pthread_create's flags
    assert f.decide("clone3") == sc.errno_action(errno.ENOSYS)


def test_strict_mode_kills_instead() -> None:
    assert sb.run_loop_filter(sc.KILL_PROCESS).decide("execve") == sc.KILL_PROCESS


def test_every_group_is_documented_and_names_are_unique() -> None:
    names = sb.all_syscall_names()
    assert len(names) == len(set(names))
    assert all(group and rules for group, rules in sb.SYSCALL_GROUPS.items())


# --- may the sandbox user go on with this run? ------------------------------------------------
@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A directory the sandbox user can reach (pytest's tmp_path sits in a root-only one)."""
    path = Path(tempfile.mkdtemp(prefix="pyhvm-sandbox-test-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _dir(path: Path, mode: int) -> Path:
    path.mkdir()
    path.chmod(mode)
    return path


def test_paths_the_user_cannot_reach_or_write_keep_root(open_tmp: Path) -> None:
    tmp_path = open_tmp
    open_dir = _dir(tmp_path / "open", 0o777)
    private = _dir(tmp_path / "private", 0o700)
    sticky = _dir(tmp_path / "sticky", 0o1777)
    (private / "kernel").write_bytes(b"x")
    readable = open_dir / "kernel"
    readable.write_bytes(b"x")
    readable.chmod(0o644)
    uid = gid = NOBODY
    assert sb.user_can_read(str(readable), uid, gid)
    assert not sb.user_can_read(str(private / "kernel"), uid, gid)
    assert sb.user_can_replace(str(open_dir / "q.sock"), uid, gid, owned_by_user=False)
    assert not sb.user_can_replace(str(private / "q.sock"), uid, gid, owned_by_user=True)
    # /tmp-like: only files handed to the user may be removed there
    assert sb.user_can_replace(str(sticky / "q.sock"), uid, gid, owned_by_user=True)
    assert not sb.user_can_replace(str(sticky / "q.sock"), uid, gid, owned_by_user=False)
    paths = [sb.LatePath(str(readable), "kernel", "read", False),
             sb.LatePath(str(private / "q.sock"), "QMP socket", "replace", True)]
    reason = sb.uid_drop_obstacle(paths, uid, gid)
    assert reason is not None and "QMP socket" in reason and str(private) in reason
    assert sb.uid_drop_obstacle(paths[:1], uid, gid) is None


def test_a_peer_socket_the_user_may_not_write_keeps_root(open_tmp: Path) -> None:
    peer = open_tmp / "peer.sock"
    late = [sb.LatePath(str(peer), "datagram peer's socket", "send", False)]
    assert sb.uid_drop_obstacle(late, NOBODY, NOBODY) is None  # not bound yet
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(peer))
        peer.chmod(0o755)
        reason = sb.uid_drop_obstacle(late, NOBODY, NOBODY)
        assert reason == f"uid {NOBODY} could not send to the datagram peer's socket {peer}"
        peer.chmod(0o777)
        assert sb.uid_drop_obstacle(late, NOBODY, NOBODY) is None
    finally:
        sock.close()


def fake_machine(**config: Any) -> Any:
    defaults: dict[str, Any] = dict(trace=None, trace_events=(), nic=None, displays=[],
                                    kernel=None, initrd=None, modules=[])
    defaults.update(config)
    return SimpleNamespace(config=SimpleNamespace(**defaults), firmware=None)


def test_late_paths_name_everything_touched_after_setup() -> None:
    from pyhvm.machine.displays import DisplaySpec
    from pyhvm.machine.nic import NicConfig

    nic = NicConfig("dgram,id=n0,local.type=unix,local.path=/run/a.sock,remote.type=unix,"
                    "remote.path=/run/b.sock", "rtl8139,netdev=n0")
    machine = fake_machine(kernel="/boot/k.elf", initrd="/boot/i.img",
                           modules=["/boot/m1 args"], nic=nic,
                           displays=[DisplaySpec("png", path="/srv/screen.png"),
                                     DisplaySpec("vnc", host="127.0.0.1", port=5900)])
    qmp = SimpleNamespace(address=SimpleNamespace(kind="unix", path="/run/q.sock"))
    found = {(p.what, p.path, p.access) for p in sb.late_paths(machine, qmp)}
    assert found == {("QMP socket", "/run/q.sock", "replace"),
                     ("datagram socket", "/run/a.sock", "replace"),
                     ("datagram peer's socket", "/run/b.sock", "send"),
                     ("png display", "/srv/screen.png", "replace"),
                     ("kernel", "/boot/k.elf", "read"), ("initrd", "/boot/i.img", "read"),
                     ("module", "/boot/m1", "read")}


def test_firmware_boot_rereads_nothing_at_reboot() -> None:
    machine = fake_machine(kernel="/boot/bzImage")
    machine.firmware = object()
    assert sb.late_paths(machine, None) == []


# --- the report --------------------------------------------------------------------------------
def test_off_and_mmu_runs_say_why() -> None:
    report = sb.apply(fake_machine(), sb.SandboxOptions(mode="off"))
    assert report.summary() == "off (--sandbox off)"
    report = sb.apply(fake_machine(trace="/tmp/t.trc", trace_events=("exits", "mmu")),
                      sb.SandboxOptions())
    assert report.mode == "off" and "tracefs" in report.summary()


def test_report_lists_layers_then_what_was_not_applied() -> None:
    report = sb.SandboxReport(mode="on", layers=["seccomp (90 syscalls, else EPERM)",
                                                 "no_new_privs", "uid 65534"],
                              skipped={"net ns": "Operation not permitted"})
    assert report.summary() == ("seccomp (90 syscalls, else EPERM), no_new_privs, uid 65534; "
                                "not applied: net ns (Operation not permitted)")
    assert report.as_dict()["summary"] == report.summary()


def test_qmp_query_shows_the_report() -> None:
    machine = SimpleNamespace(paused=False, stopping=False, exit_status=None,
                              sandbox=sb.SandboxReport(mode="on", layers=["no_new_privs"]))
    session = QmpSession(machine_commands(machine))  # type: ignore[arg-type]
    session.feed(b'{"execute": "qmp_capabilities"}')
    reply = session.handle({"execute": "x-pyhvm-sandbox"})
    assert reply["return"]["layers"] == ["no_new_privs"]  # type: ignore[index]
    assert reply["return"]["mode"] == "on"  # type: ignore[index]


# --- the whole sandbox, in a child -------------------------------------------------------------
def test_probes_without_a_filter_report_what_the_kernel_allows() -> None:
    """The control for the integration test's probes: unconfined, execve is tried (and finds
    no such file) and the socket is made."""
    status, out = in_child(lambda: sb.Prober(["execve", "socket"]).run())
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out
    assert out == {"execve": "main=ENOENT thread=ENOENT",
                   "socket": "main=allowed thread=allowed"}


def _open_files_limit(name: str = "Max open files") -> int:
    with open("/proc/self/limits") as f:
        for line in f:
            if line.startswith(name):
                return int(line[len(name):].split()[0])
    return -1


def _status_field(name: str) -> list[str]:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split()[1:]
    return []


@needs_seccomp
def test_applied_sandbox_refuses_calls_and_keeps_the_run_loop_working(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"root only")
    secret.chmod(0o600)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "peer.sock"))

    def body() -> dict[str, Any]:
        r, w = os.pipe()
        report = sb.apply(fake_machine(), sb.SandboxOptions(limits=sb.Limits(files=200)))
        out: dict[str, Any] = {"report": report.as_dict()}
        os.write(w, b"ok")  # the event loop's pipes still work
        out["pipe"] = os.read(r, 2).decode()
        out["execve"] = raw_call("execve", 0, 0, 0)
        out["socket"] = raw_call("socket", socket.AF_INET, socket.SOCK_DGRAM, 0)
        out["ptrace"] = raw_call("ptrace", 0, 0, 0, 0)  # PTRACE_TRACEME
        out["nofile"] = _open_files_limit()  # getrlimit and getresuid are not on the list
        out["uid"] = [int(uid) for uid in _status_field("Uid")[:3]]
        out["groups"] = _status_field("Groups")  # getgroups() is not on the list
        try:
            open(secret, "rb").close()
            out["secret"] = "read"
        except OSError as err:
            out["secret"] = errno.errorcode[err.errno or 0]
        return out

    status, out = in_child(body)
    listener.close()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out
    assert out["pipe"] == "ok"
    assert out["execve"] == out["socket"] == out["ptrace"] == -errno.EPERM
    assert out["nofile"] == 200 or out["nofile"] > 200 and "files" in out["report"]["summary"]
    layers = " ".join(out["report"]["layers"])
    assert "seccomp" in layers and "no_new_privs" in layers
    if os.geteuid() == 0:  # root: namespaces and the user change too
        assert out["uid"] == [NOBODY] * 3
        assert out["groups"] == []  # no supplementary groups
        assert out["secret"] == "EACCES"
        assert "uid 65534" in layers
        assert "mount ns" in layers or "mount ns" in out["report"]["skipped"]


@needs_seccomp
def test_address_space_limit_makes_a_runaway_allocation_fail_not_the_host() -> None:
    def body() -> dict[str, Any]:
        sb.apply(fake_machine(), sb.SandboxOptions(limits=sb.Limits(memory=64 << 20)))
        try:
            bytearray(512 << 20)
            return {"allocated": True}
        except MemoryError:
            return {"allocated": False}

    status, out = in_child(body)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out
    assert out == {"allocated": False}


@needs_seccomp
@pytest.mark.skipif(os.geteuid() != 0, reason="the user change needs root")
def test_socket_files_are_handed_to_the_user_in_a_sticky_directory(open_tmp: Path) -> None:
    tmp_path = open_tmp
    sticky = _dir(tmp_path / "sticky", 0o1777)
    path = sticky / "q.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    qmp = SimpleNamespace(address=SimpleNamespace(kind="unix", path=str(path)))

    def body() -> dict[str, Any]:
        report = sb.apply(fake_machine(), sb.SandboxOptions(), qmp)
        os.unlink(path)  # as the QMP server does at exit, now as nobody
        return {"uid": report.uid}

    status, out = in_child(body)
    server.close()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out
    assert out["uid"] == NOBODY
    assert not path.exists()
    assert stat.S_ISDIR(sticky.stat().st_mode)


@needs_seccomp
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become an ordinary user first")
def test_an_unprivileged_run_keeps_its_user_and_bounds_its_threads() -> None:
    import threading

    def body() -> dict[str, Any]:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)  # as if started by an ordinary user
        report = sb.apply(fake_machine(), sb.SandboxOptions(limits=sb.Limits(threads=4)))
        thread = threading.Thread(target=lambda: None)
        thread.start()  # clone, under the filter and the limit
        thread.join()
        return {"report": report.as_dict(), "nproc": _open_files_limit("Max processes")}

    status, out = in_child(body)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out
    report = out["report"]
    assert report["skipped"]["namespaces"] == "not root"
    assert report["uid"] is None  # nothing to drop
    assert report["limits"]["tasks"] == out["nproc"] >= 4
    assert any(layer.startswith(f"uid {NOBODY} tasks <= ") for layer in report["layers"])
