"""Durable SQLite commits without holding the database's one writer through the disk wait.

A commit with synchronous=FULL waits for fsync of the write-ahead log while the writer lock is
still held, so every other writer waits for the disk too (an acceptance commit of a few messages
measured about 2 ms of fsync in its 3.5 ms turn). Instead, durable units of work commit with
synchronous=NORMAL, release the writer lock, and then fsync the log file here, before anything
acts on the commit (the 250 reply, the relay of a claimed mail, an IMAP move).

Why that is as durable as FULL:
- The log is one file written in order, and each frame's checksum chains to the frame before
  it; fsync makes everything written to it so far durable, our commit and any before it.
- Frames leave the log only through a checkpoint, which (synchronous=NORMAL) syncs the log
  before it copies frames into the database file and syncs the database file after; the log is
  reused from its start only after a complete checkpoint. If our frames are gone from the log
  by the time we sync it, they are already on disk in the database file.
- A log file new since the last sync here (SQLite deletes the log when the last connection
  closes, and the next commit creates it again) also needs its directory entry on disk: the
  directory is synced once per log file. An open descriptor of the log last synced is kept, so
  its inode cannot be reused by a new log file and "the same inode" means "the same file".
- No log file at all (the last connection closed, after checkpointing everything) cannot happen
  while this process's pool holds a connection; should it, everything is synced (`os.sync`).
  The database file itself is never opened here: closing a descriptor of it would drop the
  POSIX locks SQLite holds on it in this process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from mailgate.errors import storage_failure


class WalSync:
    """fsync of one SQLite database's write-ahead log (and its directory once per new log file)."""

    def __init__(self, database_path: Path) -> None:
        self.database_path = database_path
        self.wal_path = Path(f"{database_path}-wal")
        self._held: int | None = None  # the log file synced last, kept open
        self._lock = threading.Lock()

    def sync(self) -> None:
        """Return once every commit made so far is on disk; TemporaryFailure / StorageFull if not."""
        try:
            with self._lock:
                self._sync()
        except OSError as error:
            raise storage_failure(error, full="storage is full", failed="database log not synced") from error

    def _sync(self) -> None:
        try:
            current = os.stat(self.wal_path)
        except FileNotFoundError:
            os.sync()
            return
        if self._held is not None and os.path.samestat(os.fstat(self._held), current):
            os.fsync(self._held)
            return
        fd = os.open(self.wal_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
            _fsync_path(self.wal_path.parent)
        except BaseException:
            os.close(fd)
            raise
        self.close()
        self._held = fd

    def close(self) -> None:
        if self._held is not None:
            os.close(self._held)
            self._held = None


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def wal_sync_for(database_path: str | None) -> WalSync | None:
    """The log of an SQLite database file; None for PostgreSQL or an in-memory database."""
    if not database_path or database_path == ":memory:":
        return None
    return WalSync(Path(database_path))
