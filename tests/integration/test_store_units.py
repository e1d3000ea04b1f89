"""Store's three kinds of unit of work, on both databases: durable writes, repeatable writes, reads;
and on SQLite, how a durable write reaches the disk after the writer's turn (store/wal_sync.py)."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from mailgate.domain.ticket import Priority
from mailgate.errors import StorageFull, TemporaryFailure
from mailgate.store import inbound, schema, tickets, wal_sync
from mailgate.store.db import make_engine
from mailgate.store.models import Message
from mailgate.store.transaction import Store


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    engine = make_engine(db_url)
    schema.upgrade(engine)
    built = Store(engine)
    yield built
    built.dispose()


def _commit_setting(session: Session) -> str:
    if session.get_bind().dialect.name == "sqlite":
        level = session.execute(text("PRAGMA synchronous")).scalar_one()
        return {1: "no wait", 2: "waits for the disk"}[int(level)]
    setting = session.execute(text("SHOW synchronous_commit")).scalar_one()
    return {"off": "no wait", "on": "waits for the disk"}[setting]


_REAL_FSYNC = os.fsync


class FsyncRecorder:
    """os.fsync as wal_sync.py calls it: what each call synced, and whether the writer lock was free."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, fd: int) -> None:
        self.calls.append((os.readlink(f"/proc/self/fd/{fd}"), self._writer_lock_free()))
        _REAL_FSYNC(fd)

    def _writer_lock_free(self) -> bool:
        lock = self.store._writer_lock
        assert lock is not None
        probe = os.open(lock.path, os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(probe)
        return True


def test_run_is_durable_and_run_repeatable_does_not_wait(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: run commits with synchronous_commit on, run_repeatable with it off. SQLite:
    both commit without waiting inside the writer's turn; run then syncs the log, after the turn."""
    sqlite = store.engine.dialect.name == "sqlite"
    fsyncs = FsyncRecorder(store)
    monkeypatch.setattr(wal_sync.os, "fsync", fsyncs)
    assert store.run(_commit_setting) == ("no wait" if sqlite else "waits for the disk")
    assert store.run_repeatable(_commit_setting) == "no wait"
    assert store.run(_commit_setting) == ("no wait" if sqlite else "waits for the disk")
    assert store.run_repeatable(_commit_setting) == "no wait"
    if not sqlite:
        assert fsyncs.calls == []
        return
    database = str(store.engine.url.database)
    wal, directory = f"{database}-wal", os.path.dirname(database)
    # The first sync also syncs the log's directory entry; later ones only the log, each with the writer lock free.
    assert fsyncs.calls == [(wal, True), (directory, True), (wal, True)]


def test_a_new_log_file_has_its_directory_synced_again(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    if store.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write-ahead log")
    fsyncs = FsyncRecorder(store)
    monkeypatch.setattr(wal_sync.os, "fsync", fsyncs)
    now = datetime.now(UTC)
    store.run(inbound.enqueue, b"Subject: 1\r\n\r\none\r\n", inbound.Envelope("smtp"), now)
    database = str(store.engine.url.database)
    store.engine.dispose()  # the last connection closes: SQLite checkpoints and deletes the log
    assert not os.path.exists(f"{database}-wal")
    store.run(inbound.enqueue, b"Subject: 2\r\n\r\ntwo\r\n", inbound.Envelope("smtp"), now)
    wal, directory = f"{database}-wal", os.path.dirname(database)
    assert fsyncs.calls == [(wal, True), (directory, True), (wal, True), (directory, True)]
    assert store.read(inbound.count_by_state) == {"queued": 2}


def test_a_failed_log_sync_is_a_temporary_failure(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit happened but is not known to be on disk: the caller must not act on it (4xx)."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write-ahead log")

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(wal_sync.os, "fsync", failing)
    with pytest.raises(TemporaryFailure, match="database log not synced"):
        store.run(inbound.count_by_state)
    monkeypatch.setattr(wal_sync.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(StorageFull):
        store.run(inbound.count_by_state)


def test_a_repeatable_commit_is_visible_to_the_next_unit(store: Store) -> None:
    now = datetime.now(UTC)
    inbound_id = store.run(inbound.enqueue, b"Subject: x\r\n\r\nbody\r\n", inbound.Envelope("smtp"), now)
    item = store.run_repeatable(inbound.claim_next, 3, now, "me")
    assert item is not None and item.id == inbound_id
    assert store.read(inbound.count_by_state) == {"processing": 1}
    assert store.read(inbound.has_queued) is False


def test_a_read_unit_does_not_wait_for_a_writer(store: Store) -> None:
    """On SQLite a read begins deferred: it runs while another connection holds the write lock."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL readers never wait for writers")
    with store.engine.connect() as writer:
        writer.exec_driver_sql("INSERT INTO counters (name, value) VALUES ('held', 1)")
        assert writer.in_transaction()
        assert store.read(inbound.count_by_state) == {}
        writer.rollback()


def test_the_nearest_stored_parent_is_found_among_many_references(store: Store) -> None:
    """Looked up eight Message-IDs per statement: the nearest stored one wins, wherever it is."""
    now = datetime.now(UTC)

    def file_two(session: Session) -> tuple[int, int]:
        opened = [
            tickets.create_ticket(
                session, subject=subject, queue="support", requester_id=None, priority=Priority.MEDIUM, now=now
            )[0]
            for subject in ("one", "two")
        ]
        first, second = opened
        for ticket_id, message_id in ((first, "far@x"), (second, "near@x")):
            session.add(Message(ticket_id=ticket_id, direction="in", message_id=message_id, created_at=now))
        return first, second

    first, second = store.run(file_two)
    unknown = tuple(f"gone-{index}@x" for index in range(20))
    lookup = tickets.nearest_referenced_ticket_id
    assert store.read(lookup, ("near@x", *unknown, "far@x")) == second
    assert store.read(lookup, (*unknown[:9], "far@x", *unknown[9:], "near@x")) == first
    assert store.read(lookup, unknown) is None
    assert store.read(lookup, ()) is None
