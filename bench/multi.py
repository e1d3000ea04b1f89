"""Several daemons on one PostgreSQL database: throughput for 1, 2, ... instances, and exactly-once.

Each daemon is its own `python -m mailgate --config CFG run` process with its own data directory
and SMTP port; all of them use one fresh schema and one signing secret file (`[security]
secret_file`), so every instance verifies what another one signed. The schema is created once
with `mailgate db upgrade` before any daemon starts, so no two migrations race. Inbound and
outbox rows are claimed with FOR UPDATE SKIP LOCKED by whichever daemon gets there first.

The corpus's conversations are dealt to the client connections as in every load (a follow-up
goes after its request, on the same session), and the connections to the daemons in turn, so
each daemon receives its share over SMTP. After the load, the database and the relay sink show
whether every message was processed once and every outbox row sent once.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.corpus import FIRST_TICKET_NUMBER, Mail
from bench.dbprobe import DbProbe
from bench.driver import SESSION_MODE, LoadResult, partition, run_load
from bench.instance import DaemonProcess, database, free_port, upgrade_schema, write_config, write_secret
from bench.metrics import latency_ms, per_second, rss_summary
from bench.prefill import ARCHIVE_FIRST_NUMBER
from bench.procstat import CpuWindow, TreeSampler, postgres_cpu_seconds
from bench.scenarios import DaemonDied
from bench.sink import Sink

PROCESSED_STATES = ("done", "ignored")
POLL_SECONDS = 0.05


@dataclass
class Member:
    """One daemon of the cluster."""

    number: int
    port: int
    data_dir: Path
    config: Path
    daemon: DaemonProcess
    sampler: TreeSampler | None = None
    startup_seconds: float = 0.0

    def owns(self, claimed_by: str) -> bool:
        """Whether a claimed_by value names this daemon (it holds the daemon's data directory)."""
        return bool(claimed_by) and str(self.data_dir.resolve()) in claimed_by


@dataclass
class Cluster:
    database_url: str
    members: list[Member]
    probe: DbProbe

    def check_alive(self) -> None:
        for member in self.members:
            process = member.daemon.process
            if process is not None and process.poll() is not None:
                raise DaemonDied(f"instance {member.number} exited with {process.returncode}: "
                                 f"{member.daemon.log_tail()}")

    def samplers(self) -> list[TreeSampler]:
        return [member.sampler for member in self.members if member.sampler is not None]


@contextmanager
def running_cluster(
    root: Path, sink: Sink, count: int, log: Callable[[str], None], processes: int | None = None
) -> Iterator[Cluster]:
    """`count` started daemons on one fresh PostgreSQL schema; all stopped and removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=f"instances{count}-", dir=root))
    try:
        with database("postgresql", workdir) as url:
            secret = write_secret(workdir / "shared" / "secret.key")
            members = []
            for number in range(1, count + 1):
                home = workdir / f"instance{number}"
                home.mkdir()
                port = free_port()
                config = write_config(home / "mailgate.toml", data_dir=home / "data", database_url=url, port=port,
                                      relay_port=sink.port, secret_file=secret, processes=processes)
                members.append(Member(number, port, home / "data", config, DaemonProcess(config, port)))
            upgrade_schema(members[0].config)
            yield from _run_members(url, members, log)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_members(url: str, members: list[Member], log: Callable[[str], None]) -> Iterator[Cluster]:
    probe = DbProbe(url)
    try:
        for member in members:
            member.startup_seconds = round(member.daemon.start(), 2)
            member.sampler = TreeSampler(member.daemon.pid).start()
        log(f"  {len(members)} daemon(s) listening on ports {', '.join(str(m.port) for m in members)}")
        yield Cluster(url, members, probe)
    finally:
        for member in members:
            if member.sampler is not None:
                member.sampler.stop()
        probe.close()
        for member in members:
            member.daemon.stop()


def _wait(cluster: Cluster, predicate: Callable[[], bool], deadline: float) -> float | None:
    """perf_counter() when predicate() first held, or None at the deadline (time.monotonic())."""
    while time.monotonic() < deadline:
        cluster.check_alive()
        if predicate():
            return time.perf_counter()
        time.sleep(POLL_SECONDS)
    return None


def _all_filed(cluster: Cluster, total: int) -> Callable[[], bool]:
    probe = cluster.probe

    def check() -> bool:
        if probe.inbound_final() < total:
            return False
        return probe.tickets_without_acknowledgement(FIRST_TICKET_NUMBER, ARCHIVE_FIRST_NUMBER) == 0

    return check


def measure_cluster(cluster: Cluster, corpus: Sequence[Mail], connections: int, sink: Sink,
                    timeout: float) -> dict[str, Any]:
    """The corpus over `connections` sessions dealt to the daemons; then the exactly-once checks.

    `timeout` bounds the whole run, from the first message sent until the outbox is drained.
    """
    time.sleep(0.5)  # let every daemon's workers reach their idle waits
    deadline = time.monotonic() + timeout
    sink.forget()
    samplers = cluster.samplers()
    for sampler in samplers:
        sampler.sample()
    cpu_before = [sampler.cpu_total() for sampler in samplers]
    sink_before, pg_before = sink.count(), postgres_cpu_seconds()
    window = CpuWindow().start()
    load = run_load([member.port for member in cluster.members], partition(corpus, connections), timeout)
    filed_at = _wait(cluster, _all_filed(cluster, load.accepted), deadline)
    for sampler in samplers:
        sampler.sample()
    cpu_filed = [sampler.cpu_total() - before for sampler, before in zip(samplers, cpu_before, strict=True)]
    pg_filed = postgres_cpu_seconds()
    machine = window.stop(sum(cpu_filed))
    drained_at = _wait(cluster, lambda: cluster.probe.outbox_unsent() == 0, deadline)
    e2e_seconds = filed_at - load.started if filed_at else None
    accept_seconds = load.last_accept - load.started
    cpu_seconds = sum(cpu_filed)
    pg_seconds = pg_filed - pg_before if pg_filed is not None and pg_before is not None else None
    elapsed = (filed_at or time.perf_counter()) - load.started
    checks = exactly_once(cluster, corpus, load, sink)
    if not checks["exactly_once"]:
        checks["kept_logs"] = keep_logs(cluster)
    return {
        "backend": "postgresql",
        "instances": len(cluster.members),
        "connections": connections,
        "mails": len(corpus),
        "session_mode": SESSION_MODE,
        "startup_seconds": [member.startup_seconds for member in cluster.members],
        "acceptance": {
            "accepted": load.accepted,
            "seconds": round(accept_seconds, 3),
            "per_second": per_second(load.accepted, accept_seconds),
            "retries": sum(client.retries for client in load.clients),
            "reconnects": sum(client.reconnects for client in load.clients),
            "errors": load.errors,
        },
        "latency_ms": {"dot_to_250": latency_ms(load.latencies("dot_to_reply"))},
        "end_to_end": {
            "seconds": round(e2e_seconds, 3) if e2e_seconds else None,
            "per_second": per_second(load.accepted, e2e_seconds) if e2e_seconds else 0.0,
            "complete": filed_at is not None,
            "outbox_drained_seconds": round(drained_at - load.started, 3) if drained_at else None,
            "sink_received": sink.count() - sink_before,
        },
        "cpu": {
            "seconds": round(cpu_seconds, 2),
            "ms_per_message": round(cpu_seconds * 1000 / load.accepted, 2) if load.accepted else 0.0,
            "cores_busy": round(cpu_seconds / elapsed, 2) if elapsed > 0 else 0.0,
            "postgresql_seconds": round(pg_seconds, 2) if pg_seconds is not None else None,
            "postgresql_cores_busy": round(pg_seconds / elapsed, 2) if pg_seconds is not None and elapsed > 0
            else None,
            **machine,
        },
        "per_instance": _per_instance(cluster, load, cpu_filed, checks),
        "exactly_once": checks,
    }


def keep_logs(cluster: Cluster) -> list[str]:
    """Copies of the daemons' logs, kept after the run's directory is removed: what happened to a
    message or mail handled twice is in them."""
    kept = Path(tempfile.mkdtemp(prefix="mailgate-bench-logs-"))
    copies = []
    for member in cluster.members:
        copy = kept / f"instance{member.number}.log"
        shutil.copyfile(member.daemon.log_path, copy)
        copies.append(str(copy))
    return copies


def _per_instance(cluster: Cluster, load: LoadResult, cpu: list[float], checks: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for member, cpu_seconds in zip(cluster.members, cpu, strict=True):
        sampler = member.sampler
        rss = rss_summary(sampler.rss_between(0, time.monotonic())) if sampler else rss_summary([])
        rows.append({
            "instance": member.number,
            "smtp_connections": sum(client.port == member.port for client in load.clients),
            "accepted": sum(client.accepted for client in load.clients if client.port == member.port),
            "inbound_processed": checks["inbound_processed_by"].get(str(member.number), 0),
            "outbox_sent": checks["outbox_sent_by"].get(str(member.number), 0),
            "cpu_seconds": round(cpu_seconds, 2),
            "rss_peak_mb": rss["total_peak_mb"],
        })
    return rows


def _owner_number(cluster: Cluster, claimed_by: str) -> str:
    for member in cluster.members:
        if member.owns(claimed_by):
            return str(member.number)
    return "unclaimed" if not claimed_by else "unknown"


def exactly_once(cluster: Cluster, corpus: Sequence[Mail], load: LoadResult, sink: Sink) -> dict[str, Any]:
    """Every inbound row processed once, every message stored once, every outbox row sent once.

    From the database (inbound states and attempts, messages per Message-ID, tickets, outbox
    states and attempts, who claimed what) and the sink (how often each outbox Message-ID arrived).
    """
    probe = cluster.probe
    inbound_states = probe.inbound_states()
    inbound_rows = sum(inbound_states.values())
    processed = sum(inbound_states.get(state, 0) for state in PROCESSED_STATES)
    inbound_attempts = probe.attempts("inbound")

    expected_ids = {_bare(mail.message_id) for mail in corpus}
    incoming = probe.incoming_messages()
    stored = Counter(message_id for message_id, _ticket in incoming)
    links = probe.inbound_rows_with_messages()

    outbox = probe.outbox_rows()
    outbox_states = Counter(state for _mid, state, _attempts, _owner in outbox)
    received = sink.deliveries(message_id for message_id, _state, _attempts, _owner in outbox)
    sink_duplicates = sum(count - 1 for count in received.values() if count > 1)
    sink_missing = sum(1 for message_id, state, _a, _o in outbox if state == "sent" and received[message_id] == 0)
    sent_but_unmarked = sum(1 for message_id, state, _a, _o in outbox if state != "sent" and received[message_id])

    processed_by: Counter[str] = Counter()
    for owner, states in probe.claims("inbound").items():
        processed_by[_owner_number(cluster, owner)] += sum(states.get(state, 0) for state in PROCESSED_STATES)
    sent_by: Counter[str] = Counter()
    for _mid, state, _attempts, owner in outbox:
        if state == "sent":
            sent_by[_owner_number(cluster, owner)] += 1

    tickets_created = probe.tickets_from(FIRST_TICKET_NUMBER, ARCHIVE_FIRST_NUMBER)
    checks: dict[str, Any] = {
        "accepted": load.accepted,
        "inbound_rows": inbound_rows,
        "inbound_states": inbound_states,
        "inbound_processed": processed,
        "inbound_not_processed": inbound_rows - processed,
        "inbound_attempts": {str(k): v for k, v in sorted(inbound_attempts.items())},
        "inbound_attempts_not_1": sum(count for attempts, count in inbound_attempts.items() if attempts != 1),
        "messages_stored": sum(stored.values()),
        "messages_missing": len(expected_ids - stored.keys()),
        "messages_duplicated": sum(count - 1 for count in stored.values() if count > 1),
        "messages_unexpected": len(stored.keys() - expected_ids),
        "processed_without_message": links["done_without_message"],
        "inbound_with_several_messages": links["with_several_messages"],
        "tickets_created": tickets_created,
        "tickets_expected": sum(not mail.spec.is_reply for mail in corpus),
        "tickets_without_acknowledgement": probe.tickets_without_acknowledgement(FIRST_TICKET_NUMBER,
                                                                                  ARCHIVE_FIRST_NUMBER),
        "replies_apart_from_request": _replies_apart(corpus, dict(incoming)),
        "outbox_rows": len(outbox),
        "outbox_states": dict(outbox_states),
        "outbox_not_sent": len(outbox) - outbox_states.get("sent", 0),
        "outbox_attempts_not_1": sum(1 for _mid, _state, attempts, _owner in outbox if attempts != 1),
        "sink_received_outbox_ids": sum(received.values()),
        "sink_missing": sink_missing,
        "sink_duplicates": sink_duplicates,
        "sink_received_but_not_marked_sent": sent_but_unmarked,
        "sink_without_message_id": sink.without_message_id(),
        "inbound_processed_by": dict(sorted(processed_by.items())),
        "outbox_sent_by": dict(sorted(sent_by.items())),
    }
    checks["duplicates"] = (checks["messages_duplicated"] + checks["inbound_with_several_messages"]
                            + sink_duplicates + max(0, inbound_rows - load.accepted))
    checks["every_message_processed"] = (
        load.accepted == len(corpus) and inbound_rows == load.accepted and checks["inbound_not_processed"] == 0
        and checks["messages_missing"] == 0 and checks["messages_unexpected"] == 0
        and checks["processed_without_message"] == 0
    )
    checks["every_outbox_row_sent_once"] = (
        checks["outbox_not_sent"] == 0 and sink_missing == 0 and sink_duplicates == 0 and sent_but_unmarked == 0
    )
    workers = [number for number, count in processed_by.items() if count and number.isdigit()]
    checks["instances_that_processed"] = len(workers)
    checks["exactly_once"] = (
        checks["every_message_processed"] and checks["every_outbox_row_sent_once"] and checks["duplicates"] == 0
        and checks["inbound_attempts_not_1"] == 0 and checks["outbox_attempts_not_1"] == 0
    )
    return checks


def _bare(message_id: str) -> str:
    return message_id.strip().removeprefix("<").removesuffix(">")


def _replies_apart(corpus: Sequence[Mail], ticket_of: dict[str, int]) -> int:
    """Follow-ups stored in another ticket than their conversation's request (a threading
    difference, e.g. a follow-up filed by one daemon while another was still filing its request)."""
    request_ticket: dict[int, int | None] = {}
    apart = 0
    for mail in corpus:
        ticket = ticket_of.get(_bare(mail.message_id))
        if not mail.spec.is_reply:
            request_ticket.setdefault(mail.spec.conversation, ticket)
        elif ticket is not None and request_ticket.get(mail.spec.conversation) not in (None, ticket):
            apart += 1
    return apart


def scaling(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each run's rates against the single-instance run (1.0 = no gain)."""
    base = next((run for run in runs if run["instances"] == 1), None)
    if base is None:
        return {}
    ratios = {}
    for run in runs:
        if run is base:
            continue
        ratios[str(run["instances"])] = {
            "end_to_end": round(run["end_to_end"]["per_second"] / max(base["end_to_end"]["per_second"], 1e-9), 2),
            "acceptance": round(run["acceptance"]["per_second"] / max(base["acceptance"]["per_second"], 1e-9), 2),
        }
    return ratios
