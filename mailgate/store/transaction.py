"""Store: one synchronous Session per unit of work, run in one thread hop, errors mapped.

An AsyncSession awaiting each statement pays a thread hop per statement (some 57 per processed
message, measured at 88 messages/s); one synchronous unit of work per hop measured 226/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailgate.errors import StorageFull, TemporaryFailure
from mailgate.store.db import READ_ONLY, REPEATABLE
from mailgate.store.wal_sync import wal_sync_for
from mailgate.store.writer_lock import writer_lock_for

T = TypeVar("T")
P = ParamSpec("P")

# psycopg's SQLSTATE for a full disk; SQLite says it in words.
_PG_DISK_FULL = "53100"


def _is_disk_full(error: BaseException) -> bool:
    original = getattr(error, "orig", error)
    if isinstance(original, OSError) and original.errno == errno.ENOSPC:
        return True
    if getattr(original, "sqlstate", None) == _PG_DISK_FULL:
        return True
    return "database or disk is full" in str(original)


class Store:
    """The database as units of work: `run(work)` commits `work(session)` or rolls it back.

    On SQLite, `run` takes the write lock at BEGIN (and the writer lock file first, see
    writer_lock.py) and syncs the log after giving both back (wal_sync.py); `read` is for units
    that only look, and waits for no writer.
    """

    def __init__(self, engine: Engine, busy_timeout_seconds: float = 5.0, *, urgent_writes: bool = False) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._readers = sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
        self._repeatables = sessionmaker(engine.execution_options(**{REPEATABLE: True}), expire_on_commit=False)
        sqlite_file = engine.url.database if engine.dialect.name == "sqlite" else None
        # urgent_writes: someone waits for each commit (an SMTP client for its 250), so on SQLite
        # this store's writers go before the others' next turn (writer_lock.py).
        self._writer_lock = writer_lock_for(sqlite_file, busy_timeout_seconds, urgent=urgent_writes)
        self._wal = wal_sync_for(sqlite_file)

    def run(self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `work` in one transaction, on disk when this returns; database outages become
        TemporaryFailure. On an SQLite file the commit does not wait for the disk inside the
        writer's turn: the log is synced after the turn is over (wal_sync.py), so the other
        writers do not wait for this one's fsync."""
        if self._wal is None:
            return self._write(self._sessions, work, *args, **kwargs)
        result = self._write(self._repeatables, work, *args, **kwargs)
        self._wal.sync()
        return result

    def run_repeatable(
        self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`run` for a unit of work that, lost in a power cut, is simply done again: its commit
        does not wait for the disk. Safe when nothing outside the database acts on it before a
        later commit that does wait (which makes this one durable too): the worker's claims and
        filings qualify (a 250 was given by the acceptance commit before; the outbox sends only
        after its own claim commit, which waits); an acceptance or an IMAP import does not."""
        return self._write(self._repeatables, work, *args, **kwargs)

    def read(self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `work`, which only reads, in one snapshot without waiting for writers."""
        return self._unit(self._readers, work, *args, **kwargs)

    async def call_read(self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`read` in a worker thread."""
        return await asyncio.to_thread(functools.partial(self.read, work, *args, **kwargs))

    def _write(
        self,
        sessions: sessionmaker[Session],
        work: Callable[Concatenate[Session, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """A unit that writes: on SQLite, in this process's turn at the writer lock."""
        turn = self._writer_lock.held() if self._writer_lock is not None else contextlib.nullcontext()
        with turn:
            return self._unit(sessions, work, *args, **kwargs)

    def _unit(
        self,
        sessions: sessionmaker[Session],
        work: Callable[Concatenate[Session, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        try:
            with sessions.begin() as session:
                return work(session, *args, **kwargs)
        except (OperationalError, OSError) as error:
            if _is_disk_full(error):
                raise StorageFull(f"storage is full: {_short(error)}") from error
            raise TemporaryFailure(f"database unavailable: {_short(error)}") from error
        except DBAPIError as error:
            if error.connection_invalidated:
                raise TemporaryFailure(f"database connection lost: {_short(error)}") from error
            raise

    async def call(self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`run` in a worker thread: one hop for the whole unit of work."""
        return await asyncio.to_thread(functools.partial(self.run, work, *args, **kwargs))

    def dispose(self) -> None:
        self.engine.dispose()
        if self._writer_lock is not None:
            self._writer_lock.close()
        if self._wal is not None:
            self._wal.close()


def _short(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    return str(original).splitlines()[0][:200] if str(original) else type(original).__name__
