"""IMAP import rate: messages/second from a Dovecot folder into the inbound queue, and on into tickets.

    python -m bench.imap_import [--messages 500] [--batch-size 100] [--database-url URL]

A throwaway Dovecot on loopback gets N generated messages (not timed); then the App starts with
one [[imap]] account and the clock runs until every message is committed to the inbound queue
(import) and until every one is filed into a ticket (import + ticket creation). SQLite in a
temporary directory unless --database-url is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from mailgate.app import App
from mailgate.config import build_config
from mailgate.logs import configure_logging
from mailgate.store import inbound, schema
from tests.support.dovecot import Dovecot, dovecot_unavailable_reason
from tests.support.mailfactory import make_mail


async def measure(
    server: Dovecot, total: int, batch_size: int, workdir: Path, database_url: str | None
) -> dict[str, Any]:
    storage: dict[str, Any] = {"data_dir": str(workdir / "data")}
    if database_url:
        storage["database_url"] = database_url
    config = build_config(
        {
            "storage": storage,
            "smtp": {"listen": "127.0.0.1:0"},
            "helpdesk": {"name": "Bench Support"},
            "imap": [server.account(batch_size=batch_size)],
        },
        workdir,
    )
    app = App(config)
    # The schema is created before the clock starts: migrations are not import work.
    await asyncio.to_thread(schema.upgrade, app.store.engine)
    started = time.perf_counter()
    await app.start()
    try:
        imported = await _until(app, lambda states: sum(states.values()) >= total) - started
        filed = await _until(app, lambda states: states.get(inbound.DONE, 0) + states.get(inbound.FAILED, 0) >= total)
    finally:
        await app.stop()
    filed -= started
    return {
        "messages": total,
        "import_seconds": round(imported, 3),
        "import_per_second": round(total / imported, 1),
        "import_and_file_seconds": round(filed, 3),
        "import_and_file_per_second": round(total / filed, 1),
    }


async def _until(app: App, done: Any, timeout: float = 600.0) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if done(await app.store.call(inbound.count_by_state)):
            return time.perf_counter()
        await asyncio.sleep(0.01)
    raise TimeoutError("the import did not finish in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary directory")
    args = parser.parse_args()
    reason = dovecot_unavailable_reason()
    if reason:
        raise SystemExit(f"bench.imap_import: {reason}")
    configure_logging("warning", "console")
    with Dovecot() as server, tempfile.TemporaryDirectory() as directory:
        server.append(
            make_mail(sender=f"c{i}@customer.example", subject=f"bench {i}", message_id=f"<bench-{i}@client.example>")
            for i in range(args.messages)
        )
        result = asyncio.run(measure(server, args.messages, args.batch_size, Path(directory), args.database_url))
    print(
        f"imap import: {result['messages']} messages committed to the inbound queue in {result['import_seconds']} s"
        f" = {result['import_per_second']} messages/s"
    )
    print(
        f"imap import + ticket creation: {result['import_and_file_seconds']} s"
        f" = {result['import_and_file_per_second']} messages/s"
    )
    print(json.dumps({"imap_import": result}))


if __name__ == "__main__":
    main()
