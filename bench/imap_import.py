"""IMAP import rate: messages/second from a Dovecot folder into the inbound queue, and on into tickets.

    python -m bench.imap_import [--messages 500] [--batch-size 100] [--postgresql]

A throwaway Dovecot on loopback gets N generated messages in each of two folders (not timed).
Run 1 imports one folder with the worker held back: the IMAP import alone, until every message
is committed to the inbound queue. Run 2 imports the other folder into a fresh database with the
daemon as it runs: the import (worker filing beside it) and import + ticket creation. SQLite in a
temporary directory, or with --postgresql a throwaway schema on the test server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mailgate.app import App
from mailgate.config import build_config
from mailgate.logs import configure_logging
from mailgate.store import inbound, schema
from tests.support.databases import postgres_schema_url
from tests.support.dovecot import Dovecot, dovecot_unavailable_reason
from tests.support.mailfactory import make_mail


async def measure(
    server: Dovecot, folder: str, total: int, batch_size: int, workdir: Path, url: str, *, file: bool
) -> dict[str, Any]:
    config = build_config(
        {
            "storage": {"data_dir": str(workdir / "data"), "database_url": url},
            "smtp": {"listen": "127.0.0.1:0"},
            "helpdesk": {"name": "Bench Support"},
            "imap": [server.account(folder=folder, batch_size=batch_size)],
        },
        workdir,
    )
    app = App(config)
    if not file:
        app.worker.run = _held_back  # type: ignore[method-assign]  # the import alone, no filing beside it
    # The schema is created before the clock starts: migrations are not import work.
    await asyncio.to_thread(schema.upgrade, app.store.engine)
    started = time.perf_counter()
    await app.start()
    try:
        imported = await _until(app, lambda states: sum(states.values()) >= total) - started
        result = {
            "messages": total,
            "import_seconds": round(imported, 3),
            "import_per_second": round(total / imported, 1),
        }
        if file:
            filed = await _until(app, lambda s: s.get(inbound.DONE, 0) + s.get(inbound.FAILED, 0) >= total) - started
            result |= {
                "import_and_file_seconds": round(filed, 3),
                "import_and_file_per_second": round(total / filed, 1),
            }
    finally:
        await app.stop()
    return result


async def _held_back(stop: asyncio.Event) -> None:
    await stop.wait()


async def _until(app: App, done: Callable[[dict[str, int]], bool], timeout: float = 900.0) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if done(await app.store.call(inbound.count_by_state)):
            return time.perf_counter()
        await asyncio.sleep(0.01)
    raise TimeoutError("the import did not finish in time")


@contextmanager
def database(postgresql: bool, workdir: Path) -> Iterator[str]:
    if not postgresql:
        yield f"sqlite:///{workdir / 'data' / 'mailgate.sqlite3'}"
        return
    with postgres_schema_url() as url:
        yield url


def run(server: Dovecot, args: argparse.Namespace, folder: str, *, file: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory, database(args.postgresql, Path(directory)) as url:
        return asyncio.run(measure(server, folder, args.messages, args.batch_size, Path(directory), url, file=file))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--postgresql", action="store_true", help="a throwaway schema on the test PostgreSQL")
    args = parser.parse_args()
    reason = dovecot_unavailable_reason()
    if reason:
        raise SystemExit(f"bench.imap_import: {reason}")
    configure_logging("warning", "console")
    with Dovecot() as server:
        for folder in ("Alone", "Daemon"):
            server.append(
                (
                    make_mail(
                        sender=f"c{i}@customer.example", subject=f"bench {i}", message_id=f"<b{i}@client.example>"
                    )
                    for i in range(args.messages)
                ),
                folder,
            )
        alone = run(server, args, "Alone", file=False)
        daemon = run(server, args, "Daemon", file=True)
    database_name = "PostgreSQL" if args.postgresql else "SQLite"
    print(f"{database_name}, {args.messages} messages, batch_size {args.batch_size}:")
    print(f"  import alone (committed to the inbound queue): {alone['import_per_second']} messages/s")
    print(f"  import with the worker filing beside it:      {daemon['import_per_second']} messages/s")
    print(f"  import + ticket creation:                     {daemon['import_and_file_per_second']} messages/s")
    print(json.dumps({"imap_import": {"database": database_name, "alone": alone, "daemon": daemon}}))


if __name__ == "__main__":
    main()
