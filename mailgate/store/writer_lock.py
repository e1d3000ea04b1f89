"""One SQLite writer at a time across the daemon's threads and processes, handed over promptly.

SQLite lets one writer in; the others retry in its busy handler, which sleeps 1, 2, 5, 10 ... up
to 100 ms between tries. Two processes writing all the time (acceptance and filing) then starve
each other: a message waited for its 250 up to a second while the worker kept re-taking the
lock in the gaps. Writers here first take an advisory lock (flock) on a file beside the
database, tried every 0.5-2 ms, so a waiting writer starts within about a millisecond of the
other's commit.

Urgent writers (the acceptance process: an SMTP client waits for its 250) also hold a gate file
while they wait; the others pass the gate before they try, so an urgent writer waits for at
most the one transaction already running, however busy the workers are.

The locks only order writers; SQLite's own locking still guards the data, so a writer that does
not take them (`mailgate deliver`) is merely not ordered.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mailgate.errors import TemporaryFailure

_FIRST_PAUSE, _LONGEST_PAUSE = 0.0005, 0.002


class WriterLock:
    def __init__(self, path: Path, timeout_seconds: float, *, urgent: bool = False) -> None:
        self.path = path
        self.gate_path = path.with_name(path.name + ".gate")
        self.timeout_seconds = timeout_seconds
        self.urgent = urgent
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._gate_fd: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for one transaction; TemporaryFailure after `timeout_seconds` of waiting."""
        deadline = time.monotonic() + self.timeout_seconds
        if not self._threads.acquire(timeout=self.timeout_seconds):
            raise TemporaryFailure(f"database busy: no write turn within {self.timeout_seconds:g} s")
        try:
            fd, gate = self._open()
            if self.urgent:
                # Announce the wait: others stop at the gate until we have the lock.
                self._take(gate, fcntl.LOCK_EX, deadline)
                try:
                    self._take(fd, fcntl.LOCK_EX, deadline)
                finally:
                    fcntl.flock(gate, fcntl.LOCK_UN)
            else:
                self._take(gate, fcntl.LOCK_SH, deadline)
                fcntl.flock(gate, fcntl.LOCK_UN)
                self._take(fd, fcntl.LOCK_EX, deadline)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _open(self) -> tuple[int, int]:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if self._gate_fd is None:
            self._gate_fd = os.open(self.gate_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd, self._gate_fd

    def _take(self, fd: int, mode: int, deadline: float) -> None:
        pause = _FIRST_PAUSE
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TemporaryFailure(
                        f"database busy: another writer held it for {self.timeout_seconds:g} s"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, _LONGEST_PAUSE)

    def close(self) -> None:
        for fd in (self._fd, self._gate_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._gate_fd = None


def writer_lock_for(database_path: str | None, timeout_seconds: float, *, urgent: bool = False) -> WriterLock | None:
    """The lock file beside an SQLite database file; None for PostgreSQL or an in-memory database."""
    if not database_path or database_path == ":memory:":
        return None
    return WriterLock(Path(f"{database_path}-writer.lock"), timeout_seconds, urgent=urgent)
