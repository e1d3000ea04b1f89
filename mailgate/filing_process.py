"""A filing process: one more inbound worker, on a core of its own (tier 4).

With `[worker] processes = N`, `mailgate run` starts N - 1 of these beside its own worker
(`python -m mailgate.filing_process`, see child_process.py for the pipes). Each claims queued
messages, parses them and files them exactly as the daemon's worker does: claims are atomic
(SQLite's one writer, PostgreSQL's SKIP LOCKED), so a message is filed by one process, and a
mail that may join a thread waits while older mail is in another worker's hands (worker.py),
so mail of one thread is filed in arrival order. Parsing runs in parallel; on SQLite the
filing transactions take turns at the one writer.

On stdin: FilingProcessSettings, first and again on a reload, and `wake` when mail was queued.
On stdout: `ready`, `applied`, `filed` after a run of messages (the daemon wakes its outbox and
scheduler), and `received`/`processed`/`failed SOURCE` and `latency SECONDS` for the daemon's
metrics. Each process claims under its own name, so a restarted one takes back only the claims
of its crashed predecessor; it dies with the daemon (SIGKILL from the kernel), whose next start
takes back every claim of the instance.
"""

from __future__ import annotations

import base64
import json
import pickle
import sys
from dataclasses import dataclass
from datetime import timedelta

import structlog

from mailgate.child_process import (
    ReportedCounter,
    ReportedHistogram,
    Reports,
    die_with_parent,
    read_settings,
    run_child,
    serve_worker,
)
from mailgate.clock import Clock, SystemClock
from mailgate.config import Config
from mailgate.logs import configure_logging
from mailgate.metrics import Metrics
from mailgate.parts import build_inbound_worker, build_store, filing_parts, use_filing_parts
from mailgate.signing_key import load_or_create_secret
from mailgate.store import inbound
from mailgate.store.transaction import Store

log = structlog.get_logger("mailgate.filing_process")

FILED = b"filed"
RECEIVED = b"received"
PROCESSED = b"processed"
FAILED = b"failed"
LATENCY = b"latency"


@dataclass(frozen=True)
class FilingProcessSettings:
    """The daemon's validated configuration and this process's claim name.

    The configuration travels pickled (base64, in one JSON line on the stdin pipe from the
    daemon that started this process, never on a command line): the worker is then built by the
    same code from the same objects as the daemon's own, rules and templates included.
    """

    config: Config
    owner: str

    def to_json(self) -> bytes:
        config = base64.b64encode(pickle.dumps(self.config)).decode("ascii")
        return json.dumps({"owner": self.owner, "config": config}).encode() + b"\n"

    @classmethod
    def from_json(cls, line: bytes) -> FilingProcessSettings:
        data = json.loads(line)
        config = pickle.loads(base64.b64decode(data["config"]))
        if not isinstance(config, Config):
            raise TypeError(f"expected a Config, got {type(config).__name__}")
        return cls(config=config, owner=str(data["owner"]))


def reporting_metrics(reports: Reports) -> Metrics:
    """What the worker counts, sent to the daemon line by line instead of kept here."""
    metrics = Metrics()
    metrics.received = ReportedCounter(metrics.received, reports, RECEIVED)
    metrics.processed = ReportedCounter(metrics.processed, reports, PROCESSED)
    metrics.failed = ReportedCounter(metrics.failed, reports, FAILED)
    metrics.latency = ReportedHistogram(metrics.latency, reports, LATENCY)
    return metrics


async def requeue_own_claims(store: Store, clock: Clock, owner: str, claim_timeout: timedelta) -> int:
    """Messages this process's crashed predecessor had claimed are queued again; the daemon's
    and the sibling processes' claims are theirs (and a dead instance's, after the timeout)."""
    count = await store.call(inbound.requeue_stale, clock.now() - claim_timeout, owner)
    if count:
        log.warning("inbound_requeued_after_crash", count=count)
    return count


async def serve(reports: Reports) -> int:
    """Read the settings, file mail until SIGTERM or the daemon's end of file; the exit status."""
    parent, first = await read_settings()
    if not first:
        return 0
    settings = FilingProcessSettings.from_json(first)
    config = settings.config
    configure_logging(config.logging.level, config.logging.format)
    structlog.contextvars.bind_contextvars(filing_process=settings.owner.rpartition("/")[2])
    store = build_store(config)
    clock = SystemClock()
    secret = load_or_create_secret(config.security.secret_file)
    worker, actions = build_inbound_worker(
        config,
        store,
        clock,
        secret,
        owner=settings.owner,
        on_filed=lambda: reports.send(FILED),
        metrics=reporting_metrics(reports),
    )
    await requeue_own_claims(store, clock, settings.owner, worker.settings.claim_timeout)

    def apply_settings(line: bytes) -> None:
        new = FilingProcessSettings.from_json(line)
        use_filing_parts(worker, actions, filing_parts(new.config, secret, actions, new.owner))

    def clean_up() -> None:
        worker.close()
        store.dispose()

    return await serve_worker("filing", worker, parent, reports, apply_settings, clean_up)


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m mailgate.filing_process  (started by `mailgate run`)", file=sys.stderr)
        return 64
    die_with_parent()
    return run_child(lambda: serve(Reports(sys.stdout.buffer)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
