"""The inbound queue: raw mail committed before it is acknowledged, then claimed by workers.

States: queued -> processing -> done | failed | ignored. A claim increments `attempts` in its own
short transaction, so a message that kills the worker is counted; at the limit it is parked as
failed instead of looping (Mailman's switchboard does the same with its .bak files).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, LargeBinary, bindparam, func, select, update
from sqlalchemy.orm import Session

from mailgate.store.core import execute
from mailgate.store.models import Inbound

QUEUED, PROCESSING, DONE, FAILED, IGNORED = "queued", "processing", "done", "failed", "ignored"


@dataclass(frozen=True)
class Envelope:
    """Where a message came from and whom it was addressed to, as the transport saw it."""

    source: str
    mail_from: str = ""
    rcpt_tos: tuple[str, ...] = ()
    peer: str = ""


@dataclass(frozen=True)
class InboundItem:
    id: int
    raw: bytes
    envelope: Envelope
    attempts: int


@dataclass(frozen=True)
class InboundSummary:
    id: int
    received_at: datetime
    source: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    size: int
    state: str
    attempts: int
    last_error: str | None
    ticket_number: int | None


def enqueue(session: Session, raw: bytes, envelope: Envelope, now: datetime) -> int:
    """Add raw bytes to the queue; the caller's commit is what makes them durable."""
    return enqueue_many(session, [(raw, envelope)], now)[0]


def enqueue_many(session: Session, messages: Sequence[tuple[bytes, Envelope]], now: datetime) -> list[int]:
    """Add several messages in the caller's transaction (one commit for all); their ids, in order."""
    rows = [
        Inbound(
            received_at=now,
            source=envelope.source,
            peer=envelope.peer[:100],
            mail_from=envelope.mail_from,
            rcpt_tos=json.dumps(list(envelope.rcpt_tos)),
            raw=raw,
            size=len(raw),
            state=QUEUED,
            attempts=0,
        )
        for raw, envelope in messages
    ]
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]


def has_queued(session: Session) -> bool:
    """Whether any message waits (a read: no claim, no lock)."""
    return session.scalar(select(Inbound.id).where(Inbound.state == QUEUED).limit(1)) is not None


_OLDEST_QUEUED = (
    select(Inbound.id, Inbound.raw, Inbound.source, Inbound.mail_from, Inbound.rcpt_tos, Inbound.peer, Inbound.attempts)
    .where(Inbound.state == QUEUED)
    .order_by(Inbound.id)
    .limit(1)
)
_OLDEST_QUEUED_UNLOCKED = _OLDEST_QUEUED.with_for_update(skip_locked=True)
_PARK = (
    update(Inbound)
    .where(Inbound.id == bindparam("inbound_id"))
    .values(state=FAILED, last_error=bindparam("error"))
)
_CLAIM = (
    update(Inbound)
    .where(Inbound.id == bindparam("inbound_id"))
    .values(state=PROCESSING, attempts=Inbound.attempts + 1, claimed_at=bindparam("now"), claimed_by=bindparam("owner"))
)


_OLDER_IN_FLIGHT = (
    select(Inbound.id)
    .where(
        Inbound.id < bindparam("inbound_id"),
        (Inbound.state == QUEUED) | ((Inbound.state == PROCESSING) & (Inbound.claimed_at >= bindparam("alive_since"))),
    )
    .limit(1)
)


@dataclass(frozen=True)
class MailHead:
    """The start of a queued message's raw bytes, and its envelope recipients."""

    head: bytes  # the first HEAD_BYTES of its raw bytes
    whole: bool  # head is all of it
    rcpt_tos: tuple[str, ...]


# The start of a message that holds its headers, unless they are hostile: read to tell its thread.
HEAD_BYTES = 32 * 1024
_HEAD = select(
    func.substr(Inbound.raw, 1, HEAD_BYTES, type_=LargeBinary).label("head"), Inbound.size, Inbound.rcpt_tos
).where(Inbound.id == bindparam("inbound_id"))
_OLDER_IN_FLIGHT_IDS = _OLDER_IN_FLIGHT.limit(bindparam("limit", type_=Integer))


def older_mail_in_flight(session: Session, inbound_id: int, alive_since: datetime, limit: int) -> list[int]:
    """Ids of up to `limit` messages older than `inbound_id` that are still queued or being filed
    (by a worker that claimed them after `alive_since`, so not a dead one's): they may be of its thread."""
    parameters = {"inbound_id": inbound_id, "alive_since": alive_since, "limit": limit}
    return list(execute(session, _OLDER_IN_FLIGHT_IDS, parameters).scalars())


def mail_head(session: Session, inbound_id: int) -> MailHead | None:
    row = execute(session, _HEAD, {"inbound_id": inbound_id}).first()
    if row is None:
        return None
    return MailHead(bytes(row.head), row.size <= HEAD_BYTES, tuple(json.loads(row.rcpt_tos)))


def claim_next(session: Session, max_attempts: int, now: datetime, owner: str = "") -> InboundItem | None:
    """Take the oldest queued message; park it as failed if it already crashed the worker."""
    query = _OLDEST_QUEUED_UNLOCKED if session.get_bind().dialect.name == "postgresql" else _OLDEST_QUEUED
    while True:
        row: Any = execute(session, query, {}).first()
        if row is None:
            return None
        if row.attempts < max_attempts:
            break
        error = f"crashed the worker {row.attempts} times; not retried automatically"
        execute(session, _PARK, {"inbound_id": row.id, "error": error})
    execute(session, _CLAIM, {"inbound_id": row.id, "now": now, "owner": owner})
    envelope = Envelope(row.source, row.mail_from, tuple(json.loads(row.rcpt_tos)), row.peer)
    return InboundItem(row.id, row.raw, envelope, row.attempts + 1)


def requeue_stale(session: Session, claimed_before: datetime, owner: str | None = None) -> int:
    """Queue again rows whose worker died: claimed by `owner` (our previous life), or before the cut-off."""
    dead = Inbound.claimed_at < claimed_before
    if owner is not None:
        dead = dead | (Inbound.claimed_by == owner)
    result = session.execute(update(Inbound).where(Inbound.state == PROCESSING, dead).values(state=QUEUED))
    return int(result.rowcount)  # type: ignore[attr-defined]  # CursorResult of an UPDATE has rowcount


def release(session: Session, inbound_id: int) -> None:
    """Give a message back after a temporary failure, without counting it as a crash."""
    session.execute(
        update(Inbound)
        .where(Inbound.id == inbound_id, Inbound.state == PROCESSING)
        .values(state=QUEUED, attempts=Inbound.attempts - 1)
    )


def finish(
    session: Session,
    inbound_id: int,
    state: str,
    now: datetime,
    *,
    error: str | None = None,
    ticket_number: int | None = None,
) -> None:
    """Record the outcome; the raw bytes stay, whatever the outcome."""
    parameters = {"inbound_id": inbound_id, "state": state, "error": error, "now": now, "ticket_number": ticket_number}
    execute(session, _FINISH, parameters)


_FINISH = (
    update(Inbound)
    .where(Inbound.id == bindparam("inbound_id"))
    .values(
        state=bindparam("state"),
        last_error=bindparam("error"),
        processed_at=bindparam("now"),
        ticket_number=bindparam("ticket_number"),
    )
)


def retry(session: Session, inbound_id: int) -> str | None:
    """Queue a failed or ignored message again; returns its previous state, None if unknown."""
    row = session.get(Inbound, inbound_id)
    if row is None:
        return None
    previous = row.state
    if previous in (FAILED, IGNORED):
        row.state, row.attempts, row.last_error = QUEUED, 0, None
    return previous


def list_inbound(session: Session, *, failed_only: bool = False, limit: int = 100) -> list[InboundSummary]:
    """The newest messages first, without their raw bytes."""
    query = (
        select(
            Inbound.id,
            Inbound.received_at,
            Inbound.source,
            Inbound.mail_from,
            Inbound.rcpt_tos,
            Inbound.size,
            Inbound.state,
            Inbound.attempts,
            Inbound.last_error,
            Inbound.ticket_number,
        )
        .order_by(Inbound.id.desc())
        .limit(limit)
    )
    if failed_only:
        query = query.where(Inbound.state == FAILED)
    return [
        InboundSummary(
            row.id,
            row.received_at,
            row.source,
            row.mail_from,
            tuple(json.loads(row.rcpt_tos)),
            row.size,
            row.state,
            row.attempts,
            row.last_error,
            row.ticket_number,
        )
        for row in session.execute(query)
    ]


def count_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(select(Inbound.state, func.count()).group_by(Inbound.state))
    return {state: int(count) for state, count in rows}


def get_raw(session: Session, inbound_id: int) -> bytes | None:
    return session.scalar(select(Inbound.raw).where(Inbound.id == inbound_id))
