"""CPU seconds and resident memory of the daemon and its child processes, read from /proc.

CPU is utime+stime of /proc/PID/stat (plus cutime+cstime, the children it reaped); children
still running are found through /proc/PID/task/*/children and added. A sampler thread keeps the
last value seen per process, so a child that exits between samples loses at most one interval.
RSS is VmRSS of /proc/PID/status, summed over the tree and also reported per process; the
kernel's own peak VmHWM is reported per process as well.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    pid: int
    cpu_seconds: float
    rss_mb: float
    hwm_mb: float
    name: str
    role: str


def process_role(pid: int) -> str:
    """Which of mailgate's processes `pid` is, from its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    for word in argv:
        if word.endswith(b"acceptance_process"):
            return "acceptance"
        if word.endswith(b"outbox_process"):
            return "outbox"
    return "daemon"


def _read_stat(pid: int) -> tuple[str, float] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    # fields[11..14] are utime, stime, cutime, cstime (fields 14-17 of proc(5)).
    ticks = sum(int(value) for value in fields[11:15])
    return name, ticks / CLOCK_TICKS


def _read_memory(pid: int) -> tuple[float, float]:
    rss = hwm = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss, hwm


def descendants(pid: int) -> list[int]:
    """pid and every live process below it."""
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 1000:
        current = todo.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(child) for child in children.read_text().split()]
            except OSError:
                continue
    return found


def sample_tree(pid: int) -> list[ProcSample]:
    samples = []
    for member in descendants(pid):
        stat = _read_stat(member)
        if stat is None:
            continue
        rss, hwm = _read_memory(member)
        samples.append(ProcSample(member, stat[1], rss, hwm, stat[0], process_role(member)))
    return samples


@dataclass
class TreeSampler:
    """Samples the process tree every `interval` seconds in a thread until stopped."""

    pid: int
    interval: float = 0.2
    cpu: dict[int, float] = field(default_factory=dict)
    hwm: dict[int, float] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    roles: dict[int, str] = field(default_factory=dict)
    series: list[tuple[float, float, float]] = field(default_factory=list)  # (t, total MB, largest MB)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> TreeSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        samples = sample_tree(self.pid)
        with self._lock:
            for item in samples:
                self.cpu[item.pid] = item.cpu_seconds
                self.hwm[item.pid] = max(self.hwm.get(item.pid, 0.0), item.hwm_mb)
                self.names[item.pid] = item.name
                self.roles.setdefault(item.pid, item.role)
            if samples:
                total = sum(item.rss_mb for item in samples)
                self.series.append((time.monotonic(), total, max(item.rss_mb for item in samples)))

    def cpu_total(self) -> float:
        with self._lock:
            return sum(self.cpu.values())

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds per process role (daemon, acceptance, outbox), restarted processes summed."""
        with self._lock:
            totals: dict[str, float] = {}
            for pid, seconds in self.cpu.items():
                role = self.roles.get(pid, "daemon")
                totals[role] = totals.get(role, 0.0) + seconds
            return totals

    def processes(self) -> int:
        with self._lock:
            return len(self.cpu)

    def rss_between(self, start: float, end: float) -> list[tuple[float, float, float]]:
        with self._lock:
            return [row for row in self.series if start <= row[0] <= end]

    def peak_hwm_mb(self) -> float:
        with self._lock:
            return max(self.hwm.values(), default=0.0)


def machine_cpu_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (the `cpu` line of /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """This harness process: its threads (SMTP clients, sink, samplers) included."""
    times = os.times()
    return times.user + times.system


def postgres_cpu_seconds() -> float | None:
    """CPU seconds of the local PostgreSQL server's processes, None when none is visible here.

    A backend that exits is reaped by the postmaster, whose cutime/cstime then hold its time,
    so the sum only grows.
    """
    total, found = 0.0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        read = _read_stat(int(stat.parent.name))
        if read is not None and read[0] == "postgres":
            total, found = total + read[1], True
    return total if found else None


def load_average() -> list[float]:
    return [float(value) for value in Path("/proc/loadavg").read_text().split()[:3]]


@dataclass
class CpuWindow:
    """Who used the machine's CPU between start() and stop(): daemon, harness, everyone else."""

    machine: float = 0.0
    harness: float = 0.0
    wall: float = 0.0

    def start(self) -> CpuWindow:
        self.machine, self.harness, self.wall = machine_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        return self

    def stop(self, daemon_cpu: float) -> dict[str, float]:
        wall = max(time.perf_counter() - self.wall, 1e-9)
        machine = machine_cpu_seconds() - self.machine
        harness = own_cpu_seconds() - self.harness
        return {
            "machine_cores_busy": round(machine / wall, 2),
            "harness_cores_busy": round(harness / wall, 2),
            "other_processes_cores_busy": round(max(0.0, machine - harness - daemon_cpu) / wall, 2),
        }
