"""The outbox process: rendering, composing and relaying outgoing mail on a core of its own.

`mailgate run` starts this as a child (`python -m mailgate.notify.outbox_process`, see
child_process.py for the pipes) so that the daemon's core files incoming mail while this one
sends. On stdin: OutboxProcessSettings as JSON, first and again on a reload (relay, templates and
limits are swapped between mails), and `wake` after the daemon queued mail. On stdout: `ready`,
then `sent` or `failed REASON` per mail (the daemon keeps the metrics). It dies with the daemon
(SIGKILL from the kernel): a mail it had claimed is sent again by the next daemon, with the same
Message-ID, exactly as when one process dies mid-send.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog

from mailgate.child_process import (
    ReportedCounter,
    Reports,
    die_with_parent,
    read_settings,
    run_child,
    serve_worker,
)
from mailgate.clock import Clock, SystemClock
from mailgate.cpu_share import lower_this_process
from mailgate.logs import configure_logging
from mailgate.metrics import Metrics
from mailgate.notify.outbox_worker import OutboxSettings, OutboxWorker
from mailgate.notify.relay import RelaySettings, SmtpRelay
from mailgate.notify.render import TemplateRenderer
from mailgate.store import outbox
from mailgate.store.blobs import BlobStore
from mailgate.store.db import make_engine, stale_claim_cutoff
from mailgate.store.transaction import Store

log = structlog.get_logger("mailgate.notify.outbox_process")

SENT = b"sent"
FAILED = b"failed"


@dataclass(frozen=True)
class OutboxProcessSettings:
    """What the outbox process needs, sent as JSON on its stdin (never on its command line)."""

    database_url: str
    busy_timeout_seconds: float
    blobs_dir: str
    templates_dir: str | None
    relay: RelaySettings
    outbox: OutboxSettings
    log_level: str = "info"
    log_format: str = "auto"

    def to_json(self) -> bytes:
        data = asdict(self)
        outbox_data = data["outbox"]
        outbox_data["secret"] = self.outbox.secret.hex()
        outbox_data["max_age"] = self.outbox.max_age.total_seconds()
        outbox_data["claim_timeout"] = self.outbox.claim_timeout.total_seconds()
        return json.dumps(data).encode() + b"\n"

    @classmethod
    def from_json(cls, line: bytes) -> OutboxProcessSettings:
        data: dict[str, Any] = json.loads(line)
        outbox_data = data.pop("outbox")
        outbox_data["secret"] = bytes.fromhex(outbox_data["secret"])
        outbox_data["max_age"] = timedelta(seconds=outbox_data["max_age"])
        outbox_data["claim_timeout"] = timedelta(seconds=outbox_data["claim_timeout"])
        return cls(relay=RelaySettings(**data.pop("relay")), outbox=OutboxSettings(**outbox_data), **data)


def _reporting_metrics(reports: Reports) -> Metrics:
    metrics = Metrics()
    metrics.outbox_sent = ReportedCounter(metrics.outbox_sent, reports, SENT)
    metrics.outbox_failures = ReportedCounter(metrics.outbox_failures, reports, FAILED)
    return metrics


def _apply(worker: OutboxWorker, settings: OutboxProcessSettings) -> None:
    """A reload: the next mail uses the new relay, templates and limits (restart-only parts stay)."""
    worker.relay = SmtpRelay(settings.relay)
    worker.renderer = TemplateRenderer(Path(settings.templates_dir) if settings.templates_dir else None)
    worker.settings = settings.outbox


async def requeue_own_claims(store: Store, clock: Clock, settings: OutboxSettings) -> int:
    """Rows this instance's outbox claimed before (a crashed predecessor of this process) go again;
    another instance's rows it is sending now on a shared database are left to it."""
    cutoff = stale_claim_cutoff(store.engine, clock.now(), settings.claim_timeout)
    resend = await store.call(outbox.requeue_stale, cutoff, settings.owner)
    if resend:
        log.warning("outbox_requeued_after_crash", count=resend, note="sent again with the same Message-ID")
    return resend


async def serve(reports: Reports) -> int:
    """Read the settings, send until SIGTERM or the daemon's end of file; returns the exit status."""
    parent, first = await read_settings()
    if not first:
        return 0
    settings = OutboxProcessSettings.from_json(first)
    configure_logging(settings.log_level, settings.log_format)
    timeout = settings.busy_timeout_seconds
    store = Store(make_engine(settings.database_url, timeout), timeout)
    clock = SystemClock()
    await requeue_own_claims(store, clock, settings.outbox)
    worker = OutboxWorker(
        store,
        SmtpRelay(settings.relay),
        TemplateRenderer(Path(settings.templates_dir) if settings.templates_dir else None),
        BlobStore(Path(settings.blobs_dir)),
        clock,
        settings.outbox,
        metrics=_reporting_metrics(reports),
    )

    def apply_settings(line: bytes) -> None:
        _apply(worker, OutboxProcessSettings.from_json(line))

    return await serve_worker("outbox", worker, parent, reports, apply_settings, store.dispose)


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m mailgate.notify.outbox_process  (started by `mailgate run`)", file=sys.stderr)
        return 64
    die_with_parent()
    lower_this_process()  # sending yields the CPU to SMTP acceptance (cpu_share.py)
    return run_child(lambda: serve(Reports(sys.stdout.buffer)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
