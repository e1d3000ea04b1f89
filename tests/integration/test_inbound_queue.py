"""The inbound queue on SQLite and PostgreSQL: claims, crash recovery, parking poison messages, retry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from mailgate.store import inbound, schema
from mailgate.store.db import make_engine
from mailgate.store.transaction import Store

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    engine = make_engine(db_url)
    schema.upgrade(engine)
    yield Store(engine)
    engine.dispose()


def test_upgrade_is_idempotent(store: Store) -> None:
    """Running the migrations twice changes nothing and leaves the schema current."""
    schema.upgrade(store.engine)
    assert schema.is_current(store.engine)


def test_claims_are_in_arrival_order_and_count_attempts(store: Store) -> None:
    """The oldest queued message is claimed first and its attempt is counted."""
    first = store.run(inbound.enqueue, b"one", inbound.Envelope("smtp", "a@b", ("support@example.com",)), NOW)
    store.run(inbound.enqueue, b"two", inbound.Envelope("smtp"), NOW)
    item = store.run(inbound.claim_next, 3, NOW)
    assert item is not None and item.id == first and item.raw == b"one" and item.attempts == 1
    assert item.envelope.rcpt_tos == ("support@example.com",)


def test_message_that_crashes_the_worker_three_times_is_parked(store: Store) -> None:
    """Three claims that never finish (the process died each time) park the message as failed."""
    message_id = store.run(inbound.enqueue, b"poison", inbound.Envelope("smtp"), NOW)
    for _ in range(3):
        item = store.run(inbound.claim_next, 3, NOW)
        assert item is not None and item.id == message_id
        # The process dies here; at the next start the row is queued again.
        assert store.run(inbound.requeue_stale, NOW + timedelta(seconds=1)) == 1
    assert store.run(inbound.claim_next, 3, NOW) is None
    (row,) = store.run(inbound.list_inbound)
    assert row.state == "failed" and "crashed the worker 3 times" in (row.last_error or "")
    assert store.run(inbound.get_raw, message_id) == b"poison"


def test_recent_claims_are_not_requeued_on_a_shared_database(store: Store) -> None:
    """Only claims older than the cut-off count as dead, so another live instance keeps its message."""
    store.run(inbound.enqueue, b"x", inbound.Envelope("smtp"), NOW)
    store.run(inbound.claim_next, 3, NOW)
    assert store.run(inbound.requeue_stale, NOW - timedelta(minutes=10)) == 0


def test_retry_requeues_only_failed_messages(store: Store) -> None:
    """`inbound retry` queues a failed message again with its attempts reset; a done one stays done."""
    failed_id = store.run(inbound.enqueue, b"x", inbound.Envelope("smtp"), NOW)
    store.run(inbound.claim_next, 3, NOW)
    store.run(inbound.finish, failed_id, inbound.FAILED, NOW, error="broken")
    assert store.run(inbound.retry, failed_id) == "failed"
    item = store.run(inbound.claim_next, 3, NOW)
    assert item is not None and item.attempts == 1
    store.run(inbound.finish, failed_id, inbound.DONE, NOW)
    assert store.run(inbound.retry, failed_id) == "done"
    assert store.run(inbound.retry, 424242) is None


def test_two_claimers_never_get_the_same_message(store: Store) -> None:
    """Concurrent claims (threads, as two workers would) take distinct messages."""
    import concurrent.futures

    for index in range(40):
        store.run(inbound.enqueue, str(index).encode(), inbound.Envelope("smtp"), NOW)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(lambda _: store.run(inbound.claim_next, 3, NOW), range(40)))
    ids = [c.id for c in claims if c is not None]
    assert len(ids) == 40 and len(set(ids)) == 40
