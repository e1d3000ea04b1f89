"""The outbox: mail to send, written in the same transaction as the change that causes it.

States: queued -> sending -> sent | failed | bounced; a temporary failure puts a row back to
queued with a later `next_attempt_at`. Rows are claimed in a short transaction and sent outside
any transaction, so no lock is held across a network call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Update, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from mailgate.store.core import execute
from mailgate.store.models import Contact, Outbox

QUEUED, SENDING, SENT, FAILED, BOUNCED = "queued", "sending", "sent", "failed", "bounced"


@dataclass(frozen=True)
class OutboxItem:
    id: int
    ticket_id: int | None
    kind: str
    recipient: str
    message_id: str
    automatic: bool
    payload: dict[str, Any]
    attempts: int
    created_at: datetime


@dataclass(frozen=True)
class OutboxSummary:
    id: int
    created_at: datetime
    kind: str
    recipient: str
    message_id: str
    state: str
    attempts: int
    last_error: str | None
    sent_at: datetime | None


_INSERT = insert(Outbox).returning(Outbox.id)


def add(
    session: Session,
    *,
    ticket_id: int | None,
    kind: str,
    recipient: str,
    message_id: str,
    automatic: bool,
    payload: dict[str, Any],
    now: datetime,
) -> int:
    values = {
        "created_at": now,
        "ticket_id": ticket_id,
        "kind": kind,
        "recipient": recipient,
        "message_id": message_id,
        "automatic": automatic,
        "payload": json.dumps(payload, ensure_ascii=False),
        "state": QUEUED,
        "attempts": 0,
        "next_attempt_at": now,
    }
    outbox_id: int = execute(session, _INSERT, values).scalar_one()
    return outbox_id


@dataclass(frozen=True)
class ClaimedBatch:
    items: list[OutboxItem]
    # Automatic mails that left since the window's start, counted in the claiming transaction;
    # 0 (not counted) when no claimed row is automatic.
    automatic_sent_in_window: int


def _claim_statement(*, skip_locked: bool) -> Update:
    due = (
        select(Outbox.id)
        .where(Outbox.state == QUEUED, Outbox.next_attempt_at <= bindparam("now"))
        .order_by(Outbox.next_attempt_at, Outbox.id)
        .limit(bindparam("limit", type_=Integer))
    )
    if skip_locked:
        due = due.with_for_update(skip_locked=True)
    return (
        update(Outbox)
        .where(Outbox.id.in_(due.scalar_subquery()))
        .values(state=SENDING, claimed_at=bindparam("now"), claimed_by=bindparam("owner"), attempts=Outbox.attempts + 1)
        .returning(
            Outbox.id,
            Outbox.ticket_id,
            Outbox.kind,
            Outbox.recipient,
            Outbox.message_id,
            Outbox.automatic,
            Outbox.payload,
            Outbox.attempts,
            Outbox.created_at,
            Outbox.next_attempt_at,
        )
    )


# One statement claims the batch; PostgreSQL's SKIP LOCKED lets several processes share the outbox.
_CLAIM = _claim_statement(skip_locked=False)
_CLAIM_SKIP_LOCKED = _claim_statement(skip_locked=True)

_AUTOMATIC_SENT_SINCE = select(func.count()).where(
    Outbox.automatic.is_(True), Outbox.sent_at >= bindparam("since")
)


@dataclass(frozen=True)
class ClaimedRows:
    """A claim as the transaction saw it; `batch()` decodes it after the commit."""

    rows: list[Any]
    automatic_sent_in_window: int

    def batch(self) -> ClaimedBatch:
        ordered = sorted(self.rows, key=lambda row: (row.next_attempt_at, row.id))
        items = [
            OutboxItem(
                row.id,
                row.ticket_id,
                row.kind,
                row.recipient,
                row.message_id,
                row.automatic,
                json.loads(row.payload),
                row.attempts,
                row.created_at,
            )
            for row in ordered
        ]
        return ClaimedBatch(items, self.automatic_sent_in_window)


def claim_rows(session: Session, now: datetime, limit: int, owner: str, window_start: datetime) -> ClaimedRows:
    """Take up to `limit` due rows, oldest due first, and count the automatic mail sent since
    `window_start` for the circuit breaker (only when a claimed row is automatic), in one short
    transaction: one UPDATE ... RETURNING, a COUNT on an index, nothing decoded."""
    statement = _CLAIM_SKIP_LOCKED if session.get_bind().dialect.name == "postgresql" else _CLAIM
    rows = list(execute(session, statement, {"now": now, "limit": limit, "owner": owner}).all())
    sent = 0
    if any(row.automatic for row in rows):
        sent = int(execute(session, _AUTOMATIC_SENT_SINCE, {"since": window_start}).scalar() or 0)
    return ClaimedRows(rows, sent)


def claim_batch(session: Session, now: datetime, limit: int, owner: str, window_start: datetime) -> ClaimedBatch:
    """`claim_rows`, decoded (tests and tools; the outbox worker decodes after its commit)."""
    return claim_rows(session, now, limit, owner, window_start).batch()


_MARK_SENT = (
    update(Outbox)
    .where(Outbox.id == bindparam("outbox_id"))
    .values(state=SENT, sent_at=bindparam("sent_when"), last_error=None)
)


def mark_sent(session: Session, outbox_id: int, now: datetime) -> None:
    execute(session, _MARK_SENT, {"outbox_id": outbox_id, "sent_when": now})


def schedule_retry(session: Session, outbox_id: int, error: str, when: datetime) -> None:
    session.execute(
        update(Outbox).where(Outbox.id == outbox_id).values(state=QUEUED, next_attempt_at=when, last_error=error)
    )


def postpone(session: Session, outbox_id: int, when: datetime, reason: str) -> None:
    """Put a claimed row back without counting an attempt (the circuit breaker holds it)."""
    session.execute(
        update(Outbox)
        .where(Outbox.id == outbox_id)
        .values(state=QUEUED, next_attempt_at=when, attempts=Outbox.attempts - 1, last_error=reason)
    )


def mark_failed(session: Session, outbox_id: int, error: str) -> None:
    session.execute(update(Outbox).where(Outbox.id == outbox_id).values(state=FAILED, last_error=error))


def mark_bounced(session: Session, outbox_id: int, reason: str) -> tuple[int | None, str] | None:
    """Record a bounce; returns (ticket id, recipient) of the row, None when no such row exists."""
    row = session.get(Outbox, outbox_id)
    if row is None:
        return None
    row.state, row.last_error = BOUNCED, reason[:1000]
    return row.ticket_id, row.recipient


def requeue_stale(session: Session, claimed_before: datetime, owner: str | None = None) -> int:
    """Rows left `sending` by a dead process are sent again, with the same Message-ID."""
    dead = Outbox.claimed_at < claimed_before
    if owner is not None:
        dead = dead | (Outbox.claimed_by == owner)
    result = session.execute(update(Outbox).where(Outbox.state == SENDING, dead).values(state=QUEUED))
    return int(result.rowcount)  # type: ignore[attr-defined]  # CursorResult of an UPDATE has rowcount


def retry(session: Session, outbox_id: int, now: datetime) -> str | None:
    row = session.get(Outbox, outbox_id)
    if row is None:
        return None
    previous = row.state
    if previous in (FAILED, BOUNCED):
        row.state, row.next_attempt_at, row.attempts, row.last_error = QUEUED, now, 0, None
    return previous


def list_outbox(session: Session, *, failed_only: bool = False, limit: int = 100) -> list[OutboxSummary]:
    query = (
        select(
            Outbox.id,
            Outbox.created_at,
            Outbox.kind,
            Outbox.recipient,
            Outbox.message_id,
            Outbox.state,
            Outbox.attempts,
            Outbox.last_error,
            Outbox.sent_at,
        )
        .order_by(Outbox.id.desc())
        .limit(limit)
    )
    if failed_only:
        query = query.where(Outbox.state.in_((FAILED, BOUNCED)))
    return [OutboxSummary(*row) for row in session.execute(query)]


def mark_contact_bouncing(session: Session, email: str, until: datetime, reason: str) -> None:
    session.execute(
        update(Contact).where(Contact.email == email).values(bouncing_until=until, bounce_reason=reason[:500])
    )


_BOUNCING_UNTIL = select(Contact.bouncing_until).where(Contact.email == bindparam("email"))


def is_bouncing(session: Session, email: str, now: datetime) -> bool:
    """Whether automatic mail to `email` is held after a permanent bounce (asked for every
    customer mail the worker queues, so a prebuilt statement)."""
    until = execute(session, _BOUNCING_UNTIL, {"email": email}).scalar()
    return until is not None and until > now


def outbox_id_by_message_id(session: Session, message_id: str) -> int | None:
    return session.scalar(select(Outbox.id).where(Outbox.message_id == message_id))


def unsent_due_count(session: Session, now: datetime) -> int:
    """Rows being sent, or due to be: zero means the outbox has nothing to do before a retry time."""
    due = (Outbox.state == QUEUED) & (Outbox.next_attempt_at <= now)
    return int(session.scalar(select(func.count()).where(due | (Outbox.state == SENDING))) or 0)
