"""Engine factory: SQLite in WAL mode with BEGIN IMMEDIATE, or PostgreSQL.

A transaction that claims work and updates it must not interleave with another, so SQLite
writers take the write lock at BEGIN (SQLAlchemy's documented pysqlite recipe); read-only units
of work begin deferred.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

# Execution option of the engine Store.read uses: on SQLite, BEGIN (deferred) instead of IMMEDIATE.
READ_ONLY = "mailgate_read_only"
# Execution option of Store.run_repeatable: the commit does not wait for the disk (SQLite
# synchronous=NORMAL, PostgreSQL synchronous_commit=off). On SQLite, Store.run uses it too and
# then syncs the log itself, outside the writer's turn (store/wal_sync.py). The next commit that does wait makes
# it durable too, as both logs are written in order; see Store.run_repeatable for when that is safe.
REPEATABLE = "mailgate_repeatable"


def normalise_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain postgresql:// URLs."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def stale_claim_cutoff(engine: Engine, now: datetime, claim_timeout: timedelta) -> datetime:
    """Claims made before this belong to a process that died. On PostgreSQL, which instances may
    share, another instance's live claims are younger than `claim_timeout` (its own claims are
    found by owner name instead); on SQLite, one instance with its data directory locked, every
    claim left at a start is its own."""
    return now - claim_timeout if engine.dialect.name == "postgresql" else now


def make_engine(url: str, busy_timeout_seconds: float = 5.0) -> Engine:
    """Build the process's one engine for `url`, creating the SQLite file's directory."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        return _make_sqlite_engine(url, busy_timeout_seconds)
    engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(REPEATABLE, False):
            connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")

    return engine


def _use_wal(cursor: sqlite3.Cursor, busy_timeout_seconds: float) -> None:
    """Put the database in WAL mode (a setting kept in the file, so usually there already).

    Switching a new database's journal mode needs the file to itself, and SQLite answers
    "database is locked" at once, without its busy handler, while another connection does the
    same (several processes starting on a new database); so that is retried for the busy timeout.
    """
    deadline = time.monotonic() + busy_timeout_seconds
    pause = 0.001
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


def _make_sqlite_engine(url: str, busy_timeout_seconds: float) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        # Pooled connections are handed from thread to thread, never used by two at once.
        connect_args={"timeout": busy_timeout_seconds, "check_same_thread": False},
        # Keep connections open: closing the last connection to a WAL database checkpoints and
        # truncates the log (several fsyncs), which measured 7 ms per unit of work with NullPool.
        pool_size=5,
        max_overflow=10,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _use_wal(cursor, busy_timeout_seconds)
        # FULL for work outside Store (schema upgrades, tools): a commit is on disk when it returns.
        # Store's units of work set NORMAL and, when durable, sync the log themselves (wal_sync.py).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_seconds * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        options = connection.get_execution_options()
        if options.get(READ_ONLY, False):
            # A unit of work that only reads waits for no writer (WAL readers see the last commit).
            connection.exec_driver_sql("BEGIN")
            return
        # Store.run on a database file commits with NORMAL too and syncs the log after the writer's turn.
        synchronous = "NORMAL" if options.get(REPEATABLE, False) else "FULL"
        if connection.info.get("synchronous") != synchronous:
            connection.exec_driver_sql(f"PRAGMA synchronous={synchronous}")
            connection.info["synchronous"] = synchronous
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
