"""Kernel-side KVM events from tracefs, beside pyhvm's own trace.

pyhvm's recorder sees an exit only once KVM_RUN has returned; the kernel's `kvm` trace
events show what happened inside: exits handled without userspace, port and MMIO accesses
as KVM decoded them, interrupts injected. `KernelTrace` captures them for a set of threads.

It works in a private tracefs *instance* (`instances/pyhvm-<pid>-<n>`), never in the
global buffer: its own ring buffer, event switches, pid filter and clock, so nothing the
host's other tracing users set is touched, and removing the directory undoes it all. The
instance clock is `mono` where offered, the clock of `time.monotonic_ns()`, so kernel
timestamps line up with pyhvm's records (at the microsecond precision of the text format).
tracefs is mounted in a temporary directory only when asked (`mount=True`) and not already
mounted, and unmounted at stop().

Events are read from `trace_pipe` without blocking by `drain()`, which must run often
enough that the ring buffer (`buffer_kb` per CPU) does not fill: by default a thread of
this object calls it every `drain_s`; a VMM with an event loop passes `thread=False` and
schedules `drain()` itself (runtime/ is the layer that owns threads). Events the kernel had
to drop are counted in `lost`, never hidden.

Kernel notes worth knowing when reading the output:
- `kvm_pio` for an IN fires when the instruction completes, i.e. after userspace supplied
  the value (on the next KVM_RUN); for an OUT it fires before the exit to userspace.
- `kvm_exit`, `kvm_entry` and `kvm_inj_virq` are emitted by the vendor modules (VMX, SVM).
  KVM PVM emits none of them (seen on a kvm_pvm host, with either irqchip placement):
  there, `kvm_userspace_exit` is what marks each return to the VMM, so it is in the
  default set too; `kvm_pio` and `kvm_mmio` come from common code and fire everywhere.
"""

from __future__ import annotations

import atexit
import enum
import itertools
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Self

MOUNT_POINTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
DEFAULT_EVENTS = ("kvm_exit", "kvm_entry", "kvm_pio", "kvm_mmio", "kvm_inj_virq",
                  "kvm_userspace_exit")
DEFAULT_BUFFER_KB = 2048
DEFAULT_DRAIN_S = 0.05
INSTANCE_PREFIX = "pyhvm-"
MOUNT_PREFIX = "pyhvm-tracefs-"   # this module's temporary mount points
READ_CHUNK = 1 << 16
_instance_ids = itertools.count()


class KernelTraceUnavailable(Exception):
    """Kernel tracing cannot run here; the message is one line saying why."""


def event_path(event: str) -> tuple[str, str]:
    """(group, name) of an event given as `name` (a `kvm` event) or `group/name`, such as
    `kvmmmu/kvm_mmu_get_page`."""
    group, sep, name = event.partition("/")
    return (group, name) if sep else ("kvm", event)


# --- parsing trace lines --------------------------------------------------------------------
# `<comm>-<pid> [(<tgid>)] [<cpu>] [<flags>] <timestamp>: <event>: <text>`; a comm may hold
# spaces and dashes ("CPU 0/KVM-4242"), so the pid is the last `-digits` before the cpu.
_LINE = re.compile(
    r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+(?:\(\s*(?P<tgid>[\d-]+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[^\s\[\]]{4,6})\s+)?(?P<ts>\d+(?:\.\d+)?):\s+(?P<event>\w+):\s?(?P<text>.*)$")
_LOST = re.compile(r"CPU:(\d+)\s+\[LOST (\d+) EVENTS\]")
_PIO = re.compile(r"pio_(read|write) at 0x([0-9a-fA-F]+) size (\d+) count (\d+)"
                  r"(?: val 0x([0-9a-fA-F]+))?")
_MMIO = re.compile(r"mmio (\S+) len (\d+) gpa 0x([0-9a-fA-F]+) val 0x([0-9a-fA-F]+)")
_HEX_FIELD = re.compile(r"\b(vcpu|rip|info1|info2|intr_info|error_code|requests)[ ,]+"
                        r"(0x[0-9a-fA-F]+|\d+)")
_EXIT_REASON = re.compile(r"reason (.+?) rip ")
_OLD_EXIT_INFO = re.compile(r"\binfo ([0-9a-fA-F]+) ([0-9a-fA-F]+)")
_VIRQ = re.compile(r"(IRQ|Soft/INTn|irq) (0x[0-9a-fA-F]+|\d+)( \[reinjected\])?")
_USER_EXIT = re.compile(r"reason (\S+) \((-?\d+)\)")
MMIO_TYPES = {"unsatisfied-read": 0, "read": 1, "write": 2}


@dataclass(frozen=True, slots=True)
class KernelEvent:
    """One line of kernel trace output, with the event's own fields decoded where known
    (`fields` is empty for an event this module does not decode; `text` keeps the rest)."""

    ts_ns: int        # the instance clock in ns (CLOCK_MONOTONIC with `mono`)
    cpu: int          # the host CPU the event fired on
    tid: int          # the thread (a vCPU thread for kvm events)
    comm: str
    name: str         # "kvm_pio", ...
    text: str
    fields: dict[str, int | str] = field(default_factory=dict, hash=False)


def parse_timestamp(text: str) -> int:
    """`seconds.fraction` to ns; a bare integer (a counter clock) stays in its own units."""
    if "." not in text:
        return int(text)
    seconds, fraction = text.split(".", 1)
    return int(seconds) * 1_000_000_000 + int(fraction.ljust(9, "0")[:9])


def parse_line(line: str) -> KernelEvent | None:
    """One event line, or None for headers, blank and `[LOST ...]` lines."""
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    match = _LINE.match(line.rstrip("\n"))
    if match is None:
        return None
    name, text = match["event"], match["text"].rstrip()
    return KernelEvent(parse_timestamp(match["ts"]), int(match["cpu"]), int(match["pid"]),
                       match["comm"].strip(), name, text, decode_fields(name, text))


def parse_lost(line: str) -> int:
    """Events the kernel reported dropped on this line (0 if it says nothing of it)."""
    match = _LOST.search(line)
    return int(match.group(2)) if match else 0


def parse_text(text: str) -> tuple[list[KernelEvent], int]:
    """Every event in a block of `trace` / `trace_pipe` output, and the events lost."""
    events, lost = [], 0
    for line in text.splitlines():
        event = parse_line(line)
        if event is not None:
            events.append(event)
        else:
            lost += parse_lost(line)
    return events, lost


def _int(text: str) -> int:
    return int(text, 16) if text.lower().startswith("0x") else int(text)


def decode_fields(name: str, text: str) -> dict[str, int | str]:
    """The fields of the kvm events this module knows, from their print formats (several
    kernel generations: kvm_exit's `info1 ... info2 ...` and the older `info A B`)."""
    if name == "kvm_pio":
        m = _PIO.search(text)
        if m:
            return {"write": int(m[1] == "write"), "port": int(m[2], 16), "size": int(m[3]),
                    "count": int(m[4]), "val": int(m[5], 16) if m[5] else 0}
    elif name == "kvm_mmio":
        m = _MMIO.search(text)
        if m:
            return {"type": m[1], "len": int(m[2]), "gpa": int(m[3], 16), "val": int(m[4], 16)}
    elif name in ("kvm_exit", "kvm_entry"):
        out: dict[str, int | str] = {k: _int(v) for k, v in _HEX_FIELD.findall(text)}
        reason = _EXIT_REASON.search(text)
        if reason:
            out["reason"] = reason[1]
        old = _OLD_EXIT_INFO.search(text)
        if old and "info1" not in out:
            out["info1"], out["info2"] = int(old[1], 16), int(old[2], 16)
        if name == "kvm_entry":
            out["immediate_exit"] = int("[immediate exit]" in text)
        return out
    elif name == "kvm_inj_virq":
        m = _VIRQ.search(text)
        if m:
            return {"vector": _int(m[2]), "soft": int(m[1] == "Soft/INTn"),
                    "reinjected": int(bool(m[3]))}
    elif name == "kvm_userspace_exit":
        m = _USER_EXIT.search(text)
        if m:
            return {"reason": m[1], "code": int(m[2])}
    return {}


# --- converting to pyhvm's record shape ----------------------------------------------------
class KernelKind(enum.Enum):
    """The record kinds kernel events would need in `trace.records.Kind` (values proposed
    there: 11 and up); each converted record follows that module's a/b/c conventions."""

    KVM_EXIT = "KVM_EXIT"          # a=vCPU, b=guest RIP, c=info1; dur=until kvm_entry
    KVM_PIO = "KVM_PIO"            # a=port, b=value, c=size | is_write << 8 | count << 16
    KVM_MMIO = "KVM_MMIO"          # a=len | type << 8 (0 unsatisfied read, 1 read, 2 write),
    #                                b=gpa, c=value
    KVM_INJ_VIRQ = "KVM_INJ_VIRQ"  # a=vector, b=soft (INTn), c=reinjected
    KVM_USERSPACE_EXIT = "KVM_USERSPACE_EXIT"  # a=KVM_EXIT_* number, or the errno for
    #                                "restart"/"error" (label says which); dur=until the next
    #                                kvm_entry (VMX/SVM only: 0 on PVM)


@dataclass(frozen=True, slots=True)
class KernelRecord:
    """A kernel event in `trace.records.Record`'s shape, with its thread in place of the
    vCPU index (the VMM maps threads to vCPUs) and the exit reason's name as `label`."""

    ts_ns: int
    dur_ns: int
    kind: KernelKind
    tid: int
    a: int
    b: int
    c: int
    label: str = ""


def to_records(events: Iterable[KernelEvent]) -> list[KernelRecord]:
    """Records for the events this module decodes, in time order. A kvm_exit or
    kvm_userspace_exit lasts until the same thread's next kvm_entry (0 if none follows)."""
    records: list[KernelRecord] = []
    open_exit: dict[int, int] = {}  # tid -> index of the record waiting for its kvm_entry
    for event in sorted(events, key=lambda e: e.ts_ns):
        f = event.fields
        if event.name == "kvm_entry":
            index = open_exit.pop(event.tid, None)
            if index is not None:
                r = records[index]
                records[index] = KernelRecord(r.ts_ns, event.ts_ns - r.ts_ns, r.kind, r.tid,
                                              r.a, r.b, r.c, r.label)
            continue
        record = _record(event, f)
        if record is None:
            continue
        if record.kind in (KernelKind.KVM_EXIT, KernelKind.KVM_USERSPACE_EXIT):
            if record.kind is KernelKind.KVM_EXIT or event.tid not in open_exit:
                open_exit[event.tid] = len(records)
        records.append(record)
    return records


def _record(event: KernelEvent, f: dict[str, int | str]) -> KernelRecord | None:
    ts, tid = event.ts_ns, event.tid

    def num(key: str) -> int:
        value = f.get(key, 0)
        return value if isinstance(value, int) else 0

    if not f:
        return None
    if event.name == "kvm_pio":
        return KernelRecord(ts, 0, KernelKind.KVM_PIO, tid, num("port"), num("val"),
                            num("size") | num("write") << 8 | num("count") << 16)
    if event.name == "kvm_mmio":
        kind = MMIO_TYPES.get(str(f.get("type")), 0)
        return KernelRecord(ts, 0, KernelKind.KVM_MMIO, tid, num("len") | kind << 8,
                            num("gpa"), num("val"), str(f.get("type", "")))
    if event.name == "kvm_exit":
        return KernelRecord(ts, 0, KernelKind.KVM_EXIT, tid, num("vcpu"), num("rip"),
                            num("info1"), str(f.get("reason", "")))
    if event.name == "kvm_inj_virq":
        return KernelRecord(ts, 0, KernelKind.KVM_INJ_VIRQ, tid, num("vector"), num("soft"),
                            num("reinjected"))
    if event.name == "kvm_userspace_exit":
        return KernelRecord(ts, 0, KernelKind.KVM_USERSPACE_EXIT, tid, num("code") & 0xFFFF,
                            0, 0, str(f.get("reason", "")))
    return None


# --- where tracefs is -----------------------------------------------------------------------
def mounted_tracefs(mounts: str = "/proc/mounts") -> str | None:
    """A directory where tracefs is mounted now (the usual places first), or None. The
    temporary mounts of other pyhvm processes do not count: each is unmounted when its
    owner stops, so a capture inside it would make that fail and then lose its mount."""
    found = []
    try:
        with open(mounts) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "tracefs":
                    point = parts[1].replace("\\040", " ")
                    if not os.path.basename(point).startswith(MOUNT_PREFIX):
                        found.append(point)
    except OSError:
        return None
    for preferred in MOUNT_POINTS:
        if preferred in found:
            return preferred
    return found[0] if found else None


def tracefs_supported(filesystems: str = "/proc/filesystems") -> bool:
    try:
        with open(filesystems) as f:
            return any(line.split()[-1:] == ["tracefs"] for line in f)
    except OSError:
        return False


def unavailable_reason(mount: bool = False) -> str | None:
    """Why kernel tracing cannot start here, or None; changes nothing on the host."""
    if os.geteuid() != 0:
        return "kernel tracing needs root (tracefs is root-only)"
    root = mounted_tracefs()
    if root is None:
        if not tracefs_supported():
            return "this kernel has no tracefs (CONFIG_TRACING off)"
        if not mount:
            return ("tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing, "
                    "or let pyhvm mount it)")
        return None  # mountable: whether the kvm events exist is known once mounted
    if not os.path.isdir(os.path.join(root, "events", "kvm")):
        return "the kernel has no kvm trace events (is the kvm module loaded?)"
    if not os.path.isdir(os.path.join(root, "instances")):
        return "this kernel's tracefs has no instances (needs Linux 3.10 or later)"
    return None


# --- capturing ------------------------------------------------------------------------------
class _TracefsSession:
    """What KernelTrace and EventCounter share: the pids filtered on, tracefs found or
    mounted for the session, instances named for this process, a setup that undoes itself
    when it fails (KernelTraceUnavailable, one line), and stop() at interpreter exit."""

    def __init__(self, pids: Iterable[int], *, follow_children: bool, mount: bool,
                 buffer_kb: int) -> None:
        self.pids = [int(p) for p in pids]
        if not self.pids:
            raise ValueError(f"{type(self).__name__} needs at least one pid to filter on")
        self.follow_children = follow_children
        self.mount = mount
        self.buffer_kb = buffer_kb
        self.root: str | None = None     # the tracefs directory used
        self._mounted: str | None = None
        self.leftover: str | None = None  # what stop() could not undo, said in one line

    def start(self) -> None:
        reason = unavailable_reason(self.mount)
        if reason:
            raise KernelTraceUnavailable(reason)
        try:
            self.root = mounted_tracefs()
            if self.root is None:
                self.root = self._mounted = _mount_tracefs()
            self._setup()
        except KernelTraceUnavailable:
            self._teardown()
            raise
        except OSError as err:
            self._teardown()
            raise KernelTraceUnavailable(f"tracefs refused the setup: {err}") from None
        atexit.register(self.stop)

    def _setup(self) -> None:
        """Make the instances and switch tracing on (under `self.root`)."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def mountpoint(self) -> str | None:
        """Where this object mounted tracefs (None when it used an existing mount)."""
        return self._mounted

    def _new_instance(self) -> str:
        """A new instance directory, named for this process (see remove_stale_instances)."""
        assert self.root is not None
        path = os.path.join(self.root, "instances",
                            f"{INSTANCE_PREFIX}{os.getpid()}-{next(_instance_ids)}")
        os.mkdir(path)
        return path

    def _remove_instance(self, path: str) -> None:
        try:
            os.rmdir(path)  # disables its events and frees its buffers
        except OSError as err:
            self.leftover = f"cannot remove {path}: {err.strerror}"

    def _teardown(self) -> None:
        """Unmount a tracefs this object mounted (a subclass removes its instances first)."""
        if self._mounted is not None:
            if not _unmount_tracefs(self._mounted):
                self.leftover = f"cannot unmount {self._mounted}"
            self._mounted = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class KernelTrace(_TracefsSession):
    """Capture kvm events (or `group/name` events of other groups, kvmmmu's) of `pids` (and, with `follow_children`, of every thread or process
    they create from start() on) into a private tracefs instance.

    Usage: `kt = KernelTrace([os.getpid()]); kt.start(); ...; kt.stop(); kt.events()`.
    start() raises KernelTraceUnavailable with a one-line reason when it cannot run; after
    stop() (also run at interpreter exit) no event is enabled, the instance is gone, and a
    tracefs this object mounted is unmounted.
    """

    def __init__(self, pids: Iterable[int], events: Iterable[str] = DEFAULT_EVENTS, *,
                 follow_children: bool = True, mount: bool = False,
                 buffer_kb: int = DEFAULT_BUFFER_KB, drain_s: float = DEFAULT_DRAIN_S,
                 thread: bool = True, clock: str = "mono") -> None:
        super().__init__(pids, follow_children=follow_children, mount=mount,
                         buffer_kb=buffer_kb)
        self.wanted = tuple(events)
        self.drain_s = drain_s
        self.thread = thread
        self.clock = clock
        self.enabled: list[str] = []     # events switched on (those this kernel has)
        self.missing: list[str] = []     # events asked for that this kernel lacks
        self.clock_used: str | None = None
        self._pipe_lost = 0              # `[LOST n EVENTS]` lines in trace_pipe
        self._stats_lost = 0             # overruns and drops in the per-CPU stats
        self._instance: str | None = None
        self._pipe: int | None = None
        self._chunks: list[bytes] = []
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._events: list[KernelEvent] | None = None

    # -- lifecycle --
    def _setup(self) -> None:
        assert self.root is not None
        if not os.path.isdir(os.path.join(self.root, "events", "kvm")):
            raise KernelTraceUnavailable("the kernel has no kvm trace events "
                                         "(is the kvm module loaded?)")
        path = self._instance = self._new_instance()
        self._write("tracing_on", "0")
        clocks = self._read("trace_clock")
        if self.clock in clocks.replace("[", " ").replace("]", " ").split():
            self._write("trace_clock", self.clock)
        self.clock_used = next((w[1:-1] for w in self._read("trace_clock").split()
                                if w.startswith("[")), None)
        self._write("buffer_size_kb", str(self.buffer_kb))
        self._write("options/event-fork", "1" if self.follow_children else "0")
        self._write("set_event_pid", " ".join(map(str, self.pids)))
        for event in self.wanted:
            group, name = event_path(event)
            enable = os.path.join(path, "events", group, name, "enable")
            if os.path.exists(enable):
                self._write(f"events/{group}/{name}/enable", "1")
                self.enabled.append(event)
            else:
                self.missing.append(event)
        if not self.enabled:
            raise KernelTraceUnavailable(f"none of the events {', '.join(self.wanted)} "
                                         "exists in this kernel")
        self._pipe = os.open(os.path.join(path, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        if self.thread:
            self._reader = threading.Thread(target=self._drain_loop, name="kernel-trace",
                                            daemon=True)
            self._reader.start()
        self._write("tracing_on", "1")

    @property
    def instance(self) -> str | None:
        """The instance directory while capturing, else None."""
        return self._instance

    def add_pids(self, pids: Iterable[int]) -> None:
        """Filter on more threads (e.g. vCPU threads started before start())."""
        new = [int(p) for p in pids]
        if self._instance is None or not new:
            return
        with open(os.path.join(self._instance, "set_event_pid"), "a") as f:
            f.write(" ".join(map(str, new)))
        self.pids += new

    def stop(self) -> None:
        """Stop, collect what is left, and remove every trace of the capture. Idempotent."""
        if self._instance is not None:
            try:
                self._write("tracing_on", "0")
            except OSError:
                pass
        self._stop.set()
        if self._reader is not None:
            self._reader.join()
            self._reader = None
        self.drain()
        self._stats_lost = max(self._stats_lost, self._overruns())
        self._teardown()
        atexit.unregister(self.stop)

    def _teardown(self) -> None:
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        if self._instance is not None:
            self._remove_instance(self._instance)
            self._instance = None
        super()._teardown()

    # -- reading --
    def _drain_loop(self) -> None:
        while not self._stop.wait(self.drain_s):
            self.drain()

    def drain(self) -> None:
        """Move what the kernel has buffered into this object; never blocks."""
        with self._lock:
            if self._pipe is None:
                return
            while True:
                try:
                    data = os.read(self._pipe, READ_CHUNK)
                except BlockingIOError:
                    return
                except OSError:
                    return
                if not data:
                    return
                self._chunks.append(data)

    def _overruns(self) -> int:
        """Events the ring buffer overwrote or dropped, from each CPU's stats."""
        if self._instance is None:
            return 0
        total = 0
        per_cpu = os.path.join(self._instance, "per_cpu")
        try:
            cpus = os.listdir(per_cpu)
        except OSError:
            return 0
        for cpu in cpus:
            try:
                with open(os.path.join(per_cpu, cpu, "stats")) as f:
                    for line in f:
                        key, _, value = line.partition(":")
                        if key.strip() in ("overrun", "dropped events"):
                            total += int(value.split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return total

    def events(self) -> list[KernelEvent]:
        """Every captured event, in the order read (parsed once, after stop())."""
        if self._events is not None:
            return self._events
        with self._lock:
            text = b"".join(self._chunks).decode("utf-8", "replace")
        events, self._pipe_lost = parse_text(text)
        if self._instance is None:  # stopped: nothing more will come
            self._events = events
        return events

    @property
    def lost(self) -> int:
        """Events the kernel dropped (a full buffer): the pipe's `[LOST n EVENTS]` notes
        and the per-CPU stats count the same events, so the larger of the two."""
        self.events()
        return max(self._pipe_lost, self._stats_lost)

    def records(self) -> list[KernelRecord]:
        return to_records(self.events())

    # -- files in the instance --
    def _write(self, name: str, value: str) -> None:
        assert self._instance is not None
        with open(os.path.join(self._instance, name), "w") as f:
            f.write(value)

    def _read(self, name: str) -> str:
        assert self._instance is not None
        with open(os.path.join(self._instance, name)) as f:
            return f.read()


# --- counting without reading ----------------------------------------------------------------
COUNTER_BUFFER_KB = 8


@dataclass(frozen=True)
class CounterSpec:
    """One count: events of `event` (`name` for a kvm event, or `group/name`) that pass
    `filter` (tracefs filter syntax on the event's fields, e.g. `level == 1`)."""

    key: str
    event: str
    filter: str | None = None


def read_buffer_stats(text: str) -> tuple[int, int]:
    """(entries, overrun) from one per_cpu/cpuN/stats file."""
    entries = overrun = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if not parts or not parts[0].isdigit():
            continue
        if key.strip() == "entries":
            entries = int(parts[0])
        elif key.strip() == "overrun":
            overrun = int(parts[0])
    return entries, overrun


class EventCounter(_TracefsSession):
    """Count events of `pids` (and, with `follow_children`, of the threads and processes
    they create after start()) without reading a single one.

    Each counter gets its own small private instance whose ring buffer overwrites itself;
    the count is what the buffer still holds plus what it overwrote (each CPU's `entries`
    and `overrun` in per_cpu/cpuN/stats). So the count is exact however many events fire,
    nothing is formatted or read while the guest runs, and a traced thread pays only the
    event's record in the ring buffer. Counters whose event this kernel lacks are listed
    in `missing` and absent from `counts()`.
    Usage: `c = EventCounter([os.getpid()], specs, mount=True); c.start(); ...; c.stop();
    c.counts()`; start() raises KernelTraceUnavailable with a one-line reason.
    """

    def __init__(self, pids: Iterable[int], counters: Iterable[CounterSpec], *,
                 follow_children: bool = True, mount: bool = False,
                 buffer_kb: int = COUNTER_BUFFER_KB) -> None:
        super().__init__(pids, follow_children=follow_children, mount=mount,
                         buffer_kb=buffer_kb)
        self.specs = list(counters)
        self.missing: list[str] = []
        self._instances: dict[str, str] = {}   # key -> instance directory
        self._counts: dict[str, int] = {}

    def _setup(self) -> None:
        for spec in self.specs:
            self._add(spec)
        if not self._instances:
            raise KernelTraceUnavailable("none of the events to count exists in this "
                                         "kernel: " + ", ".join(self.missing))
        for path in self._instances.values():
            _write(path, "tracing_on", "1")

    def _add(self, spec: CounterSpec) -> None:
        assert self.root is not None
        group, name = event_path(spec.event)
        if not os.path.isdir(os.path.join(self.root, "events", group, name)):
            self.missing.append(spec.key)
            return
        path = self._instances[spec.key] = self._new_instance()
        _write(path, "tracing_on", "0")
        _write(path, "buffer_size_kb", str(self.buffer_kb))
        _write(path, "options/overwrite", "1")
        _write(path, "options/event-fork", "1" if self.follow_children else "0")
        _write(path, "set_event_pid", " ".join(map(str, self.pids)))
        if spec.filter:
            try:
                _write(path, f"events/{group}/{name}/filter", spec.filter)
            except OSError:
                raise KernelTraceUnavailable(f"the kernel refused the filter {spec.filter!r} "
                                             f"on {spec.event}") from None
        _write(path, f"events/{group}/{name}/enable", "1")

    def stop(self) -> None:
        """Stop counting, keep the counts, remove the instances (and a tracefs this object
        mounted). Idempotent."""
        for key, path in self._instances.items():
            try:
                _write(path, "tracing_on", "0")
                self._counts[key] = self._read_count(path)
            except OSError:
                continue
        self._teardown()
        atexit.unregister(self.stop)

    def _read_count(self, path: str) -> int:
        total = 0
        per_cpu = os.path.join(path, "per_cpu")
        for cpu in os.listdir(per_cpu):
            with open(os.path.join(per_cpu, cpu, "stats")) as f:
                entries, overrun = read_buffer_stats(f.read())
            total += entries + overrun
        return total

    def _teardown(self) -> None:
        for key, path in list(self._instances.items()):
            self._remove_instance(path)
            del self._instances[key]
        super()._teardown()

    def counts(self) -> dict[str, int]:
        """Events counted per key (after stop())."""
        return dict(self._counts)


def _write(directory: str, name: str, value: str) -> None:
    with open(os.path.join(directory, name), "w") as f:
        f.write(value)


def _mount_tracefs() -> str:
    """Mount tracefs in a new temporary directory; its path, or KernelTraceUnavailable."""
    where = tempfile.mkdtemp(prefix=MOUNT_PREFIX)
    proc = subprocess.run(["mount", "-t", "tracefs", "nodev", where], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        os.rmdir(where)
        detail = proc.stderr.strip().splitlines()
        raise KernelTraceUnavailable("cannot mount tracefs: "
                                     + (detail[-1] if detail else f"status {proc.returncode}"))
    return where


def _unmount_tracefs(where: str) -> bool:
    """Unmount and remove a temporary mount; a busy one (something still has a file open
    in it) is detached lazily, so it goes when that is closed."""
    for command in (["umount", where], ["umount", "-l", where]):
        if subprocess.run(command, capture_output=True,
                          stdin=subprocess.DEVNULL).returncode == 0:
            os.rmdir(where)
            return True
    return False


def remove_stale_instances(root: str) -> list[str]:
    """Remove instances a killed pyhvm left (their pid is gone): left alone, an instance
    keeps tracing into its buffer forever. Returns the names removed. Not called by
    start(): a pyhvm in another pid namespace on the same kernel looks dead from here (an
    instance in use with its pipe open refuses rmdir, but one being set up does not)."""
    removed: list[str] = []
    try:
        names = os.listdir(os.path.join(root, "instances"))
    except OSError:
        return removed
    for name in names:
        if not name.startswith(INSTANCE_PREFIX):
            continue
        pid = name[len(INSTANCE_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
            continue
        try:
            os.rmdir(os.path.join(root, "instances", name))
            removed.append(name)
        except OSError:
            pass
    return removed


def count(events: Iterable[KernelEvent], name: str, **fields: int | str) -> int:
    """How many `name` events have all of `fields` (a test's and a report's question)."""
    return sum(1 for e in events
               if e.name == name and all(e.fields.get(k) == v for k, v in fields.items()))


def summarize(events: Iterable[KernelEvent]) -> Iterator[tuple[str, int]]:
    """(event name, count), most frequent first."""
    counts: dict[str, int] = {}
    for event in events:
        counts[event.name] = counts.get(event.name, 0) + 1
    return iter(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


__all__ = ["DEFAULT_EVENTS", "CounterSpec", "EventCounter", "KernelEvent", "KernelKind",
           "KernelRecord", "KernelTrace", "KernelTraceUnavailable", "count", "decode_fields",
           "event_path", "parse_line", "parse_text", "read_buffer_stats", "summarize",
           "to_records", "unavailable_reason"]
