"""Store's three kinds of unit of work, on both databases: durable writes, repeatable writes, reads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from mailgate.store import inbound, schema
from mailgate.store.db import make_engine
from mailgate.store.transaction import Store


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    engine = make_engine(db_url)
    schema.upgrade(engine)
    built = Store(engine)
    yield built
    built.dispose()


def _durability(session: Session) -> str:
    if session.get_bind().dialect.name == "sqlite":
        level = session.execute(text("PRAGMA synchronous")).scalar_one()
        return {1: "no wait", 2: "waits for the disk"}[int(level)]
    setting = session.execute(text("SHOW synchronous_commit")).scalar_one()
    return {"off": "no wait", "on": "waits for the disk"}[setting]


def test_run_waits_for_the_disk_and_run_repeatable_does_not(store: Store) -> None:
    assert store.run(_durability) == "waits for the disk"
    assert store.run_repeatable(_durability) == "no wait"
    assert store.run(_durability) == "waits for the disk", "a pooled connection does not keep the last setting"
    assert store.run_repeatable(_durability) == "no wait"


def test_a_repeatable_commit_is_visible_to_the_next_unit(store: Store) -> None:
    from datetime import UTC, datetime

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
