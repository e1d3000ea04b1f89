"""A lean enqueue for `mailgate deliver`: raw SQL on the plain database driver, no SQLAlchemy.

An MTA starts one process per message; importing SQLAlchemy alone costs 200-285 ms, so this path
speaks to the database with the standard library's sqlite3 (or psycopg for PostgreSQL), each
imported only by its own backend. It writes the same row `store.inbound.enqueue` writes, and its
commit is just as durable.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from mailgate.errors import StorageFull, TemporaryFailure

_COLUMNS = "received_at, source, peer, mail_from, rcpt_tos, raw, size, state, attempts"


def enqueue_raw(
    database_url: str,
    raw: bytes,
    *,
    source: str,
    mail_from: str,
    rcpt_tos: tuple[str, ...],
    busy_timeout_seconds: float = 5.0,
) -> int:
    """Commit one message to the inbound queue and return its id."""
    now = datetime.now(UTC)
    if database_url.startswith("sqlite"):
        return _enqueue_sqlite(database_url, raw, now, source, mail_from, rcpt_tos, busy_timeout_seconds)
    return _enqueue_postgresql(database_url, raw, now, source, mail_from, rcpt_tos)


def _sqlite_path(database_url: str) -> str:
    # sqlite:///relative/path or sqlite:////absolute/path, as SQLAlchemy reads them.
    return unquote(database_url.split(":///", 1)[1]) if ":///" in database_url else ":memory:"


def _enqueue_sqlite(
    url: str, raw: bytes, now: datetime, source: str, mail_from: str, rcpt_tos: tuple[str, ...], busy_timeout: float
) -> int:
    import sqlite3

    try:
        connection = sqlite3.connect(_sqlite_path(url), timeout=busy_timeout, isolation_level=None)
    except sqlite3.Error as error:
        raise TemporaryFailure(f"cannot open the database: {error}") from error
    try:
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("BEGIN IMMEDIATE")
        # SQLAlchemy's SQLite DateTime format, so both writers store comparable timestamps.
        stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
        cursor = connection.execute(
            f"INSERT INTO inbound ({_COLUMNS}) VALUES (?, ?, '', ?, ?, ?, ?, 'queued', 0)",
            (stamp, source, mail_from, json.dumps(list(rcpt_tos)), raw, len(raw)),
        )
        connection.execute("COMMIT")
        assert cursor.lastrowid is not None
        return cursor.lastrowid
    except sqlite3.Error as error:
        if "full" in str(error):
            raise StorageFull(f"storage is full: {error}") from error
        if "no such table" in str(error):
            raise TemporaryFailure("the database has no schema yet; run `mailgate db upgrade`") from error
        raise TemporaryFailure(f"database unavailable: {error}") from error
    finally:
        connection.close()


def _enqueue_postgresql(
    url: str, raw: bytes, now: datetime, source: str, mail_from: str, rcpt_tos: tuple[str, ...]
) -> int:
    import psycopg  # Imported here: only PostgreSQL deployments pay for it.

    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1))
    conninfo: Any = parts._replace(scheme="postgresql").geturl()
    try:
        # One statement, so autocommit: the INSERT commits on its own, without BEGIN and COMMIT round trips.
        with psycopg.connect(conninfo, connect_timeout=10, autocommit=True) as connection:
            row = connection.execute(
                f"INSERT INTO inbound ({_COLUMNS}) VALUES (%s, %s, '', %s, %s, %s, %s, 'queued', 0) RETURNING id",
                (now, source, mail_from, json.dumps(list(rcpt_tos)), raw, len(raw)),
            ).fetchone()
            assert row is not None
            return int(row[0])
    except psycopg.errors.DiskFull as error:
        raise StorageFull(f"storage is full: {error}") from error
    except psycopg.Error as error:
        raise TemporaryFailure(
            f"database unavailable: {str(error).splitlines()[0] if str(error) else error}"
        ) from error
