"""Outbox throughput: how many mails per second the notifier hands to a loopback relay.

    python -m bench.outbox [--mails 500]

Tickets are created through the real worker first (not timed); then the outbox worker renders,
composes and sends every acknowledgement to an aiosmtpd sink on 127.0.0.1, and the time for
that is measured. SQLite in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from mailgate.app import App
from mailgate.config import build_config
from mailgate.store import inbound
from tests.support.mailfactory import make_mail
from tests.support.smtp_sink import SmtpSink


async def measure(mails: int, workdir: Path, relay_port: int) -> dict[str, float]:
    config = build_config(
        {
            "storage": {"data_dir": str(workdir / "data")},
            "smtp": {"listen": "127.0.0.1:0"},
            "helpdesk": {"name": "Bench Support"},
            "outgoing": {"relay_port": relay_port, "max_automatic_per_minute": 10**9},
        },
        workdir,
    )
    app = App(config)
    await app.start()
    try:
        for index in range(mails):
            raw = make_mail(sender=f"c{index}@customer.example", subject=f"bench {index}")
            await app.store.call(inbound.enqueue, raw, inbound.Envelope("bench"), app.clock.now())
        app.request_stop()  # stop the background workers; the bench drives them itself
        await asyncio.sleep(0)
        await app.worker.run_until_idle()
        started = time.perf_counter()
        sent = await app.outbox_worker.run_until_idle()
        elapsed = time.perf_counter() - started
    finally:
        await app.stop()
    return {"mails": sent, "seconds": round(elapsed, 3), "mails_per_second": round(sent / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mails", type=int, default=500)
    args = parser.parse_args()
    sink = SmtpSink()
    sink.start()
    try:
        with tempfile.TemporaryDirectory() as directory:
            result = asyncio.run(measure(args.mails, Path(directory), sink.port))
    finally:
        sink.stop()
    result["received_by_sink"] = len(sink.received)
    print(f"outbox: {result['mails']} mails in {result['seconds']} s = {result['mails_per_second']} mails/s "
          f"(sink received {result['received_by_sink']})")
    print(json.dumps({"outbox": result}))


if __name__ == "__main__":
    main()
