"""The measurements: a load at N connections, idle latency and `mailgate deliver`, store size, soak.

Each scenario gets a fresh daemon on a fresh database (`running_instance`), so every load run
files the same corpus into an empty (or identically pre-filled) store.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.corpus import FIRST_TICKET_NUMBER, Mail, soak_stream
from bench.dbprobe import DbProbe
from bench.driver import (
    SESSION_MODE,
    ClientResult,
    LoadResult,
    connect,
    partition,
    quit_quietly,
    run_load,
    send_one,
)
from bench.instance import (
    DaemonProcess,
    database,
    deliver_command,
    free_port,
    python_env,
    upgrade_schema,
    write_config,
)
from bench.metrics import latency_ms, per_second, rss_summary, slope_mb_per_10min
from bench.prefill import ARCHIVE_FIRST_NUMBER, prefill
from bench.procstat import CpuWindow, TreeSampler
from bench.profile import summarise
from bench.sink import Sink


@dataclass
class Options:
    seed: int
    load_timeout: float
    idle_trials: int
    deliver_runs: int
    py_spy: str | None
    output_dir: Path
    log: Callable[[str], None]
    # [worker] processes of the daemon; None: its default.
    processes: int | None = None


@dataclass
class Running:
    backend: str
    database_url: str
    port: int
    config: Path
    daemon: DaemonProcess
    probe: DbProbe
    sampler: TreeSampler
    startup_seconds: float
    prefill_seconds: float | None


@contextmanager
def running_instance(
    root: Path, sink: Sink, backend: str, options: Options, store_size: int = 0, sample_interval: float = 0.2
) -> Iterator[Running]:
    """A started daemon on a fresh database; everything is stopped and removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{backend}-", dir=root))
    try:
        with database(backend, workdir) as url:
            port = free_port()
            config = write_config(
                workdir / "mailgate.toml",
                data_dir=workdir / "data",
                database_url=url,
                port=port,
                relay_port=sink.port,
                processes=options.processes,
            )
            prefill_seconds = None
            if store_size:
                upgrade_schema(config)
                options.log(f"  pre-filling {store_size:,} tickets ({backend})")
                prefill_seconds = round(prefill(url, store_size, options.log), 3)
            yield from _run_daemon(backend, url, port, config, prefill_seconds, sample_interval)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_daemon(
    backend: str, url: str, port: int, config: Path, prefill_seconds: float | None, sample_interval: float
) -> Iterator[Running]:
    daemon = DaemonProcess(config, port)
    probe = DbProbe(url)
    sampler: TreeSampler | None = None
    try:
        startup = daemon.start()
        sampler = TreeSampler(daemon.pid, interval=sample_interval).start()
        yield Running(backend, url, port, config, daemon, probe, sampler, round(startup, 2), prefill_seconds)
    finally:
        if sampler is not None:
            sampler.stop()
        probe.close()
        daemon.stop()


def _wait(predicate: Callable[[], bool], timeout: float, interval: float) -> float | None:
    """perf_counter() when predicate() first held, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.perf_counter()
        time.sleep(interval)
    return None


class DaemonDied(RuntimeError):
    """The daemon exited during a measurement; the message carries the end of its log."""


def _alive(running: Running) -> None:
    process = running.daemon.process
    if process is not None and process.poll() is not None:
        raise DaemonDied(f"the daemon exited with {process.returncode}: {running.daemon.log_tail()}")


def _all_filed(running: Running, total: int, expected_ack_tickets: tuple[int, int]) -> Callable[[], bool]:
    probe = running.probe

    def check() -> bool:
        _alive(running)
        if probe.inbound_final() < total:
            return False
        return probe.tickets_without_acknowledgement(*expected_ack_tickets) == 0

    return check


@contextmanager
def _py_spy(options: Options, pid: int, name: str) -> Iterator[Path | None]:
    """py-spy record of the daemon (all threads, child processes) for the block, when asked for."""
    if not options.py_spy:
        yield None
        return
    output = options.output_dir / f"profile-{name}.txt"
    with (options.output_dir / f"profile-{name}.log").open("wb") as log_file:
        process = subprocess.Popen(
            [options.py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--subprocesses",
             "--nonblocking", "--output", str(output)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(0.5)  # py-spy attaches
        yield output
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def measure_load(running: Running, corpus: Sequence[Mail], connections: int, sink: Sink, options: Options,
                 profile_name: str | None = None) -> dict[str, Any]:
    """Send the corpus at `connections` and wait until every mail is filed with its acknowledgement."""
    time.sleep(0.5)  # let the worker, outbox worker and scheduler reach their idle waits
    running.sampler.sample()
    idle_rss = running.sampler.series[-1][1] if running.sampler.series else 0.0
    cpu_before, sink_before = running.sampler.cpu_total(), sink.count()
    roles_before = running.sampler.cpu_by_role()
    window = CpuWindow().start()
    with (_py_spy(options, running.daemon.pid, profile_name) if profile_name else _no_profile()) as profile:
        load = run_load(running.port, partition(corpus, connections), options.load_timeout)
        filed_at = _wait(_all_filed(running, load.accepted, _new_ticket_range()), options.load_timeout, 0.02)
        running.sampler.sample()
        cpu_filed = running.sampler.cpu_total()
        roles_filed = running.sampler.cpu_by_role()
        machine = window.stop(cpu_filed - cpu_before)
    drained_at = _wait(lambda: running.probe.outbox_unsent() == 0, 120, 0.05)
    running.sampler.sample()
    time.sleep(1.0)
    steady = running.sampler.rss_between(time.monotonic() - 1.0, time.monotonic() + 1)
    result = _load_result(running, load, corpus, filed_at, drained_at)
    result["cpu"] = {**_cpu(cpu_filed - cpu_before, load, filed_at, running.sampler.processes()), **machine}
    result["cpu"]["ms_per_message_by_process"] = {
        role: round((seconds - roles_before.get(role, 0.0)) * 1000 / load.accepted, 2) if load.accepted else 0.0
        for role, seconds in sorted(roles_filed.items())
    }
    result["rss_mb"] = {
        "idle_before_total": round(idle_rss, 1),
        **rss_summary(running.sampler.rss_between(0, time.monotonic())),
        "steady_after_total": rss_summary(steady)["total_median_mb"],
        "kernel_peak_process_mb": round(running.sampler.peak_hwm_mb(), 1),
    }
    result["end_to_end"]["sink_received"] = sink.count() - sink_before
    if profile is not None and profile.exists():
        result["profile"] = summarise(profile)
    return result


@contextmanager
def _no_profile() -> Iterator[None]:
    yield None


def _new_ticket_range() -> tuple[int, int]:
    return FIRST_TICKET_NUMBER, ARCHIVE_FIRST_NUMBER


def _load_result(running: Running, load: LoadResult, corpus: Sequence[Mail], filed_at: float | None,
                 drained_at: float | None) -> dict[str, Any]:
    accept_seconds = load.last_accept - load.started
    e2e_seconds = (filed_at - load.started) if filed_at else None
    probe = running.probe
    first, below = _new_ticket_range()
    return {
        "backend": running.backend,
        "connections": load.connections,
        "mails": len(corpus),
        "session_mode": SESSION_MODE,
        "startup_seconds": running.startup_seconds,
        "acceptance": {
            "accepted": load.accepted,
            "seconds": round(accept_seconds, 3),
            "per_second": per_second(load.accepted, accept_seconds),
            "retries": sum(client.retries for client in load.clients),
            "reconnects": sum(client.reconnects for client in load.clients),
            "errors": load.errors,
        },
        "latency_ms": {
            "dot_to_250": latency_ms(load.latencies("dot_to_reply")),
            "data_call": latency_ms(load.latencies("data_call")),
        },
        "end_to_end": {
            "seconds": round(e2e_seconds, 3) if e2e_seconds else None,
            "per_second": per_second(load.accepted, e2e_seconds) if e2e_seconds else 0.0,
            "complete": filed_at is not None,
            "inbound_states": probe.inbound_states(),
            "tickets_created": probe.tickets_from(first, below),
            "tickets_expected": sum(not mail.spec.is_reply for mail in corpus),
            "tickets_without_acknowledgement": probe.tickets_without_acknowledgement(first, below),
            "outbox_states": probe.outbox_states(),
            "outbox_drained_seconds": round(drained_at - load.started, 3) if drained_at else None,
        },
    }


def _cpu(seconds: float, load: LoadResult, filed_at: float | None, processes: int) -> dict[str, float]:
    elapsed = (filed_at or time.perf_counter()) - load.started
    return {
        "seconds": round(seconds, 2),
        "ms_per_message": round(seconds * 1000 / load.accepted, 2) if load.accepted else 0.0,
        "cores_busy": round(seconds / elapsed, 2) if elapsed > 0 else 0.0,
        "processes": processes,
    }


def fresh_requests(corpus: Sequence[Mail], seed: int, count: int, first_round: int) -> list[Mail]:
    """`count` new requests not in the corpus (renamed copies of its requests)."""
    found: list[Mail] = []
    for round_number, mail in soak_stream([m for m in corpus if not m.spec.is_reply], seed, first_round):
        if len(found) >= count or round_number > first_round + count:
            break
        found.append(mail)
    return found


def measure_idle(running: Running, mails: Sequence[Mail], options: Options) -> dict[str, Any]:
    """One mail at a time to an idle daemon: from the final dot until its ticket is visible."""
    to_ticket: list[float] = []
    after_250: list[float] = []
    failures = 0
    client = connect(running.port)
    try:
        for mail in mails:
            _wait(lambda: running.probe.outbox_unsent() == 0, 10, 0.05)
            time.sleep(0.3)
            result = ClientResult()
            send_one(client, mail, result)
            filed = _wait(partial(running.probe.message_filed, mail.message_id), 10, 0.001)
            if filed is None:
                failures += 1
                continue
            to_ticket.append(filed - client.last_sent_at)
            after_250.append(filed - result.accepted_at[-1])
    finally:
        quit_quietly(client)
    return {"dot_to_ticket_ms": latency_ms(to_ticket), "reply_250_to_ticket_ms": latency_ms(after_250),
            "not_filed": failures}


def measure_deliver(running: Running, mails: Sequence[Mail]) -> dict[str, Any]:
    """`mailgate deliver` as an MTA pipe runs it: a fresh process per message, LF line ends on stdin."""
    walls: list[float] = []
    failures: list[str] = []
    command = deliver_command(running.config)
    for mail in mails:
        started = time.perf_counter()
        result = subprocess.run(command, input=mail.raw.replace(b"\r\n", b"\n"), capture_output=True, timeout=60,
                                check=False, env=python_env())
        walls.append(time.perf_counter() - started)
        if result.returncode != 0:
            failures.append(f"exit {result.returncode}: {result.stderr.decode(errors='replace').strip()[:200]}")
    shown = " ".join("CONFIG" if part == str(running.config) else part for part in command)
    return {"command": shown, "wall_ms": latency_ms(walls), "failures": failures}


def run_soak(running: Running, corpus: Sequence[Mail], options: Options, sink: Sink, *, minutes: float,
             rate: float, connections: int = 4) -> dict[str, Any]:
    """A constant `rate` for `minutes`, paced over `connections`; memory sampled throughout."""
    total = max(1, int(minutes * 60 * rate))
    shares = [_limited(soak_stream(share, options.seed, 1), total // connections + (i < total % connections))
              for i, share in enumerate(partition(corpus, connections))]
    started = time.perf_counter() + 0.5
    backlog: list[tuple[float, int]] = []
    monitor = _Monitor(running.database_url, backlog, sink, interval=max(1.0, minutes * 60 / 120))
    cpu_before = running.sampler.cpu_total()
    window = CpuWindow().start()
    monitor.start()
    try:
        load = run_load(running.port, shares, minutes * 60 + options.load_timeout, _pacer(started, rate, connections))
        sent_seconds = time.perf_counter() - load.started
        filed_when_sent = running.probe.inbound_final()
        # A backlog is reported, not waited out for long: the memory figures are what a soak is for.
        filed_at = _wait(_all_filed(running, load.accepted, _new_ticket_range()), min(options.load_timeout, 120), 0.1)
    finally:
        monitor.stop()
    running.sampler.sample()
    cpu = running.sampler.cpu_total() - cpu_before
    result = _soak_result(running, load, total, rate, minutes, filed_at, backlog, cpu)
    result["machine"] = window.stop(cpu)
    result["filed_while_sending_per_second"] = per_second(filed_when_sent, sent_seconds)
    result["backlog_at_end"] = load.accepted - running.probe.inbound_final()
    return result


def _limited(mails: Iterator[tuple[int, Mail]], count: int) -> Iterator[Mail]:
    for number, (_round, mail) in enumerate(mails):
        if number >= count:
            return
        yield mail


def _pacer(started: float, rate: float, connections: int) -> Callable[[int], Callable[[int], None]]:
    def for_client(index: int) -> Callable[[int], None]:
        def pace(number: int) -> None:
            due = started + (number * connections + index) / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

        return pace

    return for_client


class _Monitor(threading.Thread):
    """Samples the inbound backlog during a soak, and keeps the sink's memory flat."""

    def __init__(self, url: str, backlog: list[tuple[float, int]], sink: Sink, interval: float) -> None:
        super().__init__(daemon=True, name="soak-monitor")
        self.url, self.backlog, self.sink, self.interval = url, backlog, sink, interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        probe = DbProbe(self.url)
        try:
            while not self._stop_event.wait(self.interval):
                states = probe.inbound_states()
                self.backlog.append((time.monotonic(), states.get("queued", 0) + states.get("processing", 0)))
                self.sink.forget()
        finally:
            probe.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


def _thin(series: list[tuple[float, float, float]], points: int) -> list[tuple[float, float, float]]:
    return series[:: max(1, len(series) // points)]


def _soak_result(running: Running, load: LoadResult, total: int, rate: float, minutes: float,
                 filed_at: float | None, backlog: list[tuple[float, int]], cpu: float) -> dict[str, Any]:
    series = running.sampler.rss_between(0, time.monotonic())
    warm = [row for row in series if row[0] >= series[0][0] + min(60.0, minutes * 60 / 4)] if series else []
    window = max(1, len(warm) // 6)
    return {
        "backend": running.backend,
        "connections": load.connections,
        "minutes": minutes,
        "rate_target": rate,
        "mails": total,
        "accepted": load.accepted,
        "errors": load.errors,
        "rate_achieved": per_second(load.accepted, load.last_accept - load.started),
        "all_filed": filed_at is not None,
        "backlog_max": max((count for _t, count in backlog), default=0),
        "latency_ms": {"dot_to_250": latency_ms(load.latencies("dot_to_reply"))},
        "cpu_seconds": round(cpu, 1),
        "rss_mb": {
            **rss_summary(series),
            "first_window_median": rss_summary(warm[:window])["total_median_mb"],
            "last_window_median": rss_summary(warm[-window:])["total_median_mb"],
            "slope_mb_per_10min": slope_mb_per_10min(warm),
            "kernel_peak_process_mb": round(running.sampler.peak_hwm_mb(), 1),
        },
        "rss_series_mb": [(round(t - series[0][0], 1), round(mb, 1)) for t, mb, _ in _thin(series, 60)],
    }
