"""Outbox throughput: how many mails per second the notifier hands to a loopback relay.

    python -m bench.outbox [--mails 500] [--backends sqlite,postgresql] [--repeat 1]

Tickets are created through the real inbound worker first (not timed); then the outbox worker
renders, composes and sends every acknowledgement to an aiosmtpd sink on 127.0.0.1, and the time
for that is measured. The application is built but not started: no listener and no background
workers, so nothing is sent before the clock starts and the outbox worker alone does the timed
work. SQLite in a temporary directory; PostgreSQL in a fresh schema on
`postgresql://postgres@127.0.0.1:5432/test` (or `MAILGATE_TEST_PG_URL`), skipped with the reason
when no server answers. Logging is the daemon's default off a terminal (JSON lines at level
info, on stderr). The sink's connection count shows how many SMTP sessions the mails took.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from mailgate.app import App
from mailgate.config import build_config
from mailgate.logs import configure_logging
from mailgate.store import inbound, schema
from tests.support.databases import postgres_schema_url, postgres_unavailable_reason
from tests.support.mailfactory import make_mail
from tests.support.smtp_sink import SmtpSink

BACKENDS = ("sqlite", "postgresql")


async def measure(mails: int, workdir: Path, database_url: str | None, sink: SmtpSink) -> dict[str, Any]:
    storage: dict[str, str] = {"data_dir": str(workdir / "data")}
    if database_url is not None:
        storage["database_url"] = database_url
    config = build_config(
        {
            "storage": storage,
            "smtp": {"listen": "127.0.0.1:0"},
            "helpdesk": {"name": "Bench Support"},
            "outgoing": {"relay_port": sink.port, "max_automatic_per_minute": 10**9},
        },
        workdir,
    )
    config.storage.data_dir.mkdir(parents=True, exist_ok=True)
    app = App(config)
    try:
        await asyncio.to_thread(schema.upgrade, app.store.engine)
        for index in range(mails):
            raw = make_mail(sender=f"c{index}@customer.example", subject=f"bench {index}")
            await app.store.call(inbound.enqueue, raw, inbound.Envelope("bench"), app.clock.now())
        await app.worker.run_until_idle()
        received_before, connections_before = len(sink.received), sink.connections
        started = time.perf_counter()
        sent = await app.outbox_worker.run_until_idle()
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.to_thread(app.store.dispose)
    return {
        "mails": sent,
        "seconds": round(elapsed, 3),
        "mails_per_second": round(sent / elapsed, 1),
        "received_by_sink": len(sink.received) - received_before,
        "smtp_connections": sink.connections - connections_before,
    }


def run_backend(backend: str, mails: int, sink: SmtpSink) -> dict[str, Any]:
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url: str | None = None
        if backend == "postgresql":
            url = stack.enter_context(postgres_schema_url())
        return asyncio.run(measure(mails, directory, url, sink))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=500)
    parser.add_argument("--backends", default="sqlite", help="sqlite,postgresql (default: sqlite)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per backend; each is printed")
    args = parser.parse_args()
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(unknown)}")
    # As the daemon logs off a terminal: JSON lines on stderr, level info (one line per mail sent).
    configure_logging("info", "json")
    results: dict[str, list[dict[str, Any]]] = {}
    sink = SmtpSink()
    sink.start()
    try:
        for backend in backends:
            if backend == "postgresql" and (reason := postgres_unavailable_reason()):
                print(f"outbox [{backend}]: skipped: {reason}")
                continue
            for _ in range(max(args.repeat, 1)):
                result = run_backend(backend, args.mails, sink)
                results.setdefault(backend, []).append(result)
                print(
                    f"outbox [{backend}]: {result['mails']} mails in {result['seconds']} s = "
                    f"{result['mails_per_second']} mails/s (sink received {result['received_by_sink']} "
                    f"over {result['smtp_connections']} SMTP connection(s))"
                )
    finally:
        sink.stop()
    print(json.dumps({"outbox": results}))


if __name__ == "__main__":
    main()
