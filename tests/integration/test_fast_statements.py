"""SQLite's fast path for prebuilt statements (store/core.py) files mail exactly as SQLAlchemy's
full execution path does: the same workload, filed both ways, leaves the same rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from mailgate.app import App
from mailgate.clock import FakeClock
from mailgate.store import core, inbound, schema, tickets
from mailgate.store.models import Message, Ticket
from mailgate.store.transaction import Store
from tests.conftest import make_config
from tests.support.workloads import varied_workload

START = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)

# Columns that are the same whichever way the statements ran (Message-IDs and tokens of our
# outgoing mail are random, so those columns are left out).
TABLES = {
    "tickets": "number, subject, status, priority, queue, assignee, sla_policy, status_since, resolved_at, "
    "first_response_due, next_response_due, resolution_due, sla_due_at, next_timer_at, last_customer_message_at, "
    "created_at, updated_at",
    "messages": "ticket_id, inbound_id, direction, message_id, author_email, subject, in_reply_to, text_body, "
    "created_at",
    "events": "ticket_id, created_at, kind, actor",
    "contacts": "email, name, language, created_at",
    "ticket_participants": "ticket_id, email",
    "ticket_tags": "ticket_id, tag",
    "inbound": "id, state, attempts, last_error, processed_at, ticket_number, claimed_at",
    "outbox": "ticket_id, kind, recipient, automatic, state, attempts, created_at",
    "attachments": "message_id, sha256, size, filename, content_type",
}


def _sqlite_url(root: Path) -> str:
    return f"sqlite:///{root / 'data' / 'mailgate.sqlite3'}"


@pytest.fixture(params=[True, False], ids=["fast", "full"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Store]:
    """An upgraded SQLite store, its prebuilt statements on the fast path or on SQLAlchemy's."""
    monkeypatch.setattr(core, "FAST_SQLITE", request.param)
    app = App(make_config(tmp_path, _sqlite_url(tmp_path)))
    await asyncio.to_thread(schema.upgrade, app.store.engine)
    yield app.store
    app.store.dispose()


def _rows(session: Session, table: str, columns: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in session.execute(text(f"SELECT {columns} FROM {table} ORDER BY 1, 2"))]


async def _file(root: Path, fast: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[Any, ...]]]:
    monkeypatch.setattr(core, "FAST_SQLITE", fast)
    clock = FakeClock(START)
    rule = {
        "name": "urgent words",
        "conditions": [{"field": "body", "op": "contains", "value": "urgent"}],
        "actions": [{"set_priority": "high"}, {"add_tag": "hurry"}, {"assign": "round_robin"}],
    }
    app = App(make_config(root, _sqlite_url(root), rules=[rule]), clock=clock)
    await asyncio.to_thread(schema.upgrade, app.store.engine)
    try:
        for raw in varied_workload():
            envelope = inbound.Envelope("smtp", "", ("support@example.com",))
            app.store.run(inbound.enqueue, raw, envelope, clock.now())
            clock.advance(timedelta(seconds=7))
            await app.worker.run_until_idle()
        return {table: app.store.read(_rows, table, columns) for table, columns in TABLES.items()}
    finally:
        app.store.dispose()


async def test_the_fast_path_files_mail_as_the_full_path_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = await _file(tmp_path / "full", False, monkeypatch)
    fast = await _file(tmp_path / "fast", True, monkeypatch)
    assert len(full["tickets"]) >= 12 and len(full["outbox"]) >= 12, "the workload exercised filing"
    assert {state for _, state, *_ in full["inbound"]} >= {"done", "failed", "ignored"}
    for table in TABLES:
        assert fast[table] == full[table], table


async def test_a_missing_table_is_the_same_error_both_ways(store: Store) -> None:
    """SQLite's errors come out as SQLAlchemy's, which the store maps to a temporary failure."""
    with Session(store.engine) as session, session.begin():
        session.execute(text("DROP TABLE ticket_tags"))
        with pytest.raises(OperationalError, match="no such table"):
            tickets.ticket_tags(session, 1)


async def test_an_insert_given_some_columns_gets_the_defaults_of_the_others(store: Store) -> None:
    """An INSERT's plan is made per set of columns given; the others get their column defaults."""
    statement = insert(Message).returning(Message.id)

    def insert_two(session: Session) -> list[int]:
        ticket = {"number": 7, "subject": "s", "status": "new", "priority": "medium", "queue": "support"}
        ticket_id = core.execute(
            session, insert(Ticket).returning(Ticket.id), {**ticket, "created_at": START, "updated_at": START}
        ).scalar_one()
        given = {"ticket_id": ticket_id, "direction": "in", "message_id": "a@x", "created_at": START}
        first = core.execute(session, statement, given).scalar_one()
        second = core.execute(session, statement, {**given, "message_id": "b@x", "subject": "told"}).scalar_one()
        return [first, second]

    ids = store.run(insert_two)
    rows = store.read(_rows, "messages", 'id, subject, author_name, text_body, internal, "references"')
    assert rows == [(ids[0], "", "", "", 0, ""), (ids[1], "told", "", "", 0, "")]


async def test_statements_built_per_call_do_not_fill_the_plan_cache(store: Store) -> None:
    def many(session: Session) -> None:
        for number in range(core.MAX_PLANS + 200):
            statement = select(Ticket.id).where(Ticket.number == number)  # a new object each time
            assert core.execute(session, statement, {}).first() is None

    store.run(many)
    assert len(core._PLANS) <= core.MAX_PLANS
