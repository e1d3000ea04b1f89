"""SLA and lifecycle timer state of tickets: what the scheduler and the SLA tracker read and write.

The scheduler finds work with `WHERE next_timer_at <= now` on an indexed column, so a tick costs
nothing for the tickets with nothing due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailgate.store.core import execute
from mailgate.store.models import FiredEscalation, Outbox, RoundRobin, Ticket, TicketPause

_TICKET_ID: BindParameter[int] = bindparam("ticket_id")


@dataclass(frozen=True)
class TimerState:
    """A ticket's timeline as stored: everything SLA and lifecycle decisions need."""

    ticket_id: int
    number: int
    status: str
    priority: str
    queue: str
    sla_policy: str | None
    created_at: datetime
    status_since: datetime
    first_agent_response_at: datetime | None
    last_agent_reply_at: datetime | None
    last_customer_message_at: datetime
    resolved_at: datetime | None
    pauses: tuple[tuple[datetime, datetime | None], ...]
    fired: frozenset[tuple[str, str]]
    stored_first_response_due: datetime | None = None
    stored_resolution_due: datetime | None = None


_STATE = select(
    Ticket.id,
    Ticket.number,
    Ticket.status,
    Ticket.priority,
    Ticket.queue,
    Ticket.sla_policy,
    Ticket.created_at,
    Ticket.status_since,
    Ticket.first_agent_response_at,
    Ticket.last_agent_reply_at,
    Ticket.last_customer_message_at,
    Ticket.resolved_at,
    Ticket.first_response_due,
    Ticket.resolution_due,
).where(Ticket.id == _TICKET_ID)
_PAUSES = (
    select(TicketPause.started_at, TicketPause.ended_at)
    .where(TicketPause.ticket_id == _TICKET_ID)
    .order_by(TicketPause.id)
)
_FIRED = select(FiredEscalation.target, FiredEscalation.kind).where(FiredEscalation.ticket_id == _TICKET_ID)


def load_state(session: Session, ticket_id: int) -> TimerState:
    parameters = {"ticket_id": ticket_id}
    ticket: Any = execute(session, _STATE, parameters).one()
    pauses: list[Any] = list(execute(session, _PAUSES, parameters).all())
    fired: list[Any] = list(execute(session, _FIRED, parameters).all())
    return TimerState(
        ticket_id=ticket.id,
        number=ticket.number,
        status=ticket.status,
        priority=ticket.priority,
        queue=ticket.queue,
        sla_policy=ticket.sla_policy,
        created_at=ticket.created_at,
        status_since=ticket.status_since or ticket.created_at,
        first_agent_response_at=ticket.first_agent_response_at,
        last_agent_reply_at=ticket.last_agent_reply_at,
        last_customer_message_at=ticket.last_customer_message_at or ticket.created_at,
        resolved_at=ticket.resolved_at,
        pauses=tuple((start, end) for start, end in pauses),
        fired=frozenset((target, kind) for target, kind in fired),
        stored_first_response_due=ticket.first_response_due,
        stored_resolution_due=ticket.resolution_due,
    )


def save_due(
    session: Session,
    ticket_id: int,
    *,
    first_response_due: datetime | None,
    next_response_due: datetime | None,
    resolution_due: datetime | None,
    next_timer_at: datetime | None,
    sla_due_at: datetime | None,
) -> None:
    """Store the targets (kept after they are met, for reports) and what is still running."""
    execute(
        session,
        _SAVE_DUE,
        {
            "ticket_id": ticket_id,
            "first_response_due": first_response_due,
            "next_response_due": next_response_due,
            "resolution_due": resolution_due,
            "sla_due_at": sla_due_at,
            "next_timer_at": next_timer_at,
        },
    )


_SAVE_DUE = (
    update(Ticket)
    .where(Ticket.id == _TICKET_ID)
    .values(
        first_response_due=bindparam("first_response_due"),
        next_response_due=bindparam("next_response_due"),
        resolution_due=bindparam("resolution_due"),
        sla_due_at=bindparam("sla_due_at"),
        next_timer_at=bindparam("next_timer_at"),
    )
)
_SET_POLICY = update(Ticket).where(Ticket.id == _TICKET_ID).values(sla_policy=bindparam("policy"))


def set_sla_policy(session: Session, ticket_id: int, policy: str | None) -> None:
    execute(session, _SET_POLICY, {"ticket_id": ticket_id, "policy": policy})


_CUSTOMER_MESSAGE = update(Ticket).where(Ticket.id == _TICKET_ID).values(last_customer_message_at=bindparam("now"))
_REARM_NEXT_RESPONSE = delete(FiredEscalation).where(
    FiredEscalation.ticket_id == _TICKET_ID, FiredEscalation.target == "next_response"
)


def note_customer_message(session: Session, ticket_id: int, now: datetime) -> None:
    """A human customer mail: the next-response clock starts again."""
    execute(session, _CUSTOMER_MESSAGE, {"ticket_id": ticket_id, "now": now})
    execute(session, _REARM_NEXT_RESPONSE, {"ticket_id": ticket_id})


_AGENT_REPLY = (
    update(Ticket)
    .where(Ticket.id == _TICKET_ID)
    .values(
        first_agent_response_at=func.coalesce(Ticket.first_agent_response_at, bindparam("now")),
        last_agent_reply_at=bindparam("now"),
    )
)


def note_agent_reply(session: Session, ticket_id: int, now: datetime) -> None:
    execute(session, _AGENT_REPLY, {"ticket_id": ticket_id, "now": now})


_START_PAUSE = insert(TicketPause)
_END_PAUSE = (
    update(TicketPause)
    .where(TicketPause.ticket_id == bindparam("of_ticket"), TicketPause.ended_at.is_(None))
    .values(ended_at=bindparam("now"))
)
_ENTERED = update(Ticket).where(Ticket.id == _TICKET_ID).values(status_since=bindparam("now"))
_ENTERED_RESOLVED = (
    update(Ticket).where(Ticket.id == _TICKET_ID).values(status_since=bindparam("now"), resolved_at=bindparam("now"))
)
_ENTERED_UNRESOLVED = (
    update(Ticket).where(Ticket.id == _TICKET_ID).values(status_since=bindparam("now"), resolved_at=None)
)


def note_status(session: Session, ticket_id: int, old: str, new: str, now: datetime) -> None:
    """Pauses while pending, the moment of resolution, and when the status was entered."""
    parameters = {"ticket_id": ticket_id, "now": now}
    if new == "pending" and old != "pending":
        execute(session, _START_PAUSE, {"ticket_id": ticket_id, "started_at": now})
    if old == "pending" and new != "pending":
        execute(session, _END_PAUSE, {"of_ticket": ticket_id, "now": now})
    if new == "resolved":
        execute(session, _ENTERED_RESOLVED, parameters)
    elif new in ("open", "new", "answered", "pending"):
        execute(session, _ENTERED_UNRESOLVED, parameters)
    else:
        execute(session, _ENTERED, parameters)


def record_fired(session: Session, ticket_id: int, target: str, kind: str) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(FiredEscalation).values(ticket_id=ticket_id, target=target, kind=kind).on_conflict_do_nothing()
    )


def due_ticket_ids(session: Session, now: datetime, limit: int = 100) -> list[int]:
    """Tickets with a timer due, oldest first; on PostgreSQL rows another instance holds are skipped."""
    query = select(Ticket.id).where(Ticket.next_timer_at <= now).order_by(Ticket.next_timer_at).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def lock_due_ticket(session: Session, ticket_id: int, now: datetime) -> bool:
    """Take the ticket for this tick if its timer is still due (another instance may have run it)."""
    query = select(Ticket.id).where(Ticket.id == ticket_id, Ticket.next_timer_at <= now)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return session.scalar(query) is not None


def earliest_timer(session: Session) -> datetime | None:
    return session.scalar(select(func.min(Ticket.next_timer_at)))


def last_round_robin(session: Session, queue: str) -> str | None:
    return session.scalar(select(RoundRobin.last_agent).where(RoundRobin.queue == queue))


def save_round_robin(session: Session, queue: str, agent: str) -> None:
    row = session.get(RoundRobin, queue)
    if row is None:
        session.add(RoundRobin(queue=queue, last_agent=agent))
    else:
        row.last_agent = agent


def automatic_replies_since(
    session: Session,
    *,
    recipient: str | None = None,
    ticket_id: int | None = None,
    since: datetime,
    kinds: tuple[str, ...] = ("acknowledgement",),
) -> int:
    """Auto-replies queued to a recipient (or on a ticket) since a moment: the rate limits' measure."""
    if kinds == ("acknowledgement",) and (recipient is None) != (ticket_id is None):
        # The two counts every new ticket makes, prebuilt.
        statement, key = (_ACKS_TO, recipient) if recipient is not None else (_ACKS_ON, ticket_id)
        return int(execute(session, statement, {"key": key, "since": since}).scalar() or 0)
    query = select(func.count()).where(Outbox.kind.in_(kinds), Outbox.created_at >= since)
    if recipient is not None:
        query = query.where(Outbox.recipient == recipient)
    if ticket_id is not None:
        query = query.where(Outbox.ticket_id == ticket_id)
    return int(session.scalar(query) or 0)


_ACKS_SINCE = select(func.count()).where(Outbox.kind == "acknowledgement", Outbox.created_at >= bindparam("since"))
_ACKS_TO = _ACKS_SINCE.where(Outbox.recipient == bindparam("key"))
_ACKS_ON = _ACKS_SINCE.where(Outbox.ticket_id == bindparam("key"))


def due_count(session: Session, now: datetime) -> int:
    """How many tickets have a timer due, without taking locks (for health checks and tests)."""
    return int(session.scalar(select(func.count()).where(Ticket.next_timer_at <= now)) or 0)


def postpone_timer(session: Session, ticket_id: int, when: datetime) -> None:
    session.execute(update(Ticket).where(Ticket.id == ticket_id).values(next_timer_at=when))
