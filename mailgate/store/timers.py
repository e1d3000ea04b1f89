"""SLA and lifecycle timer state of tickets: what the scheduler and the SLA tracker read and write.

The scheduler finds work with `WHERE next_timer_at <= now` on an indexed column, so a tick costs
nothing for the tickets with nothing due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailgate.store.models import FiredEscalation, Outbox, RoundRobin, Ticket, TicketPause


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


def load_state(session: Session, ticket_id: int) -> TimerState:
    ticket = session.get_one(Ticket, ticket_id)
    pauses = session.execute(
        select(TicketPause.started_at, TicketPause.ended_at)
        .where(TicketPause.ticket_id == ticket_id)
        .order_by(TicketPause.id)
    ).all()
    fired = session.execute(
        select(FiredEscalation.target, FiredEscalation.kind).where(FiredEscalation.ticket_id == ticket_id)
    ).all()
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
    session.execute(
        update(Ticket)
        .where(Ticket.id == ticket_id)
        .values(
            first_response_due=first_response_due,
            next_response_due=next_response_due,
            resolution_due=resolution_due,
            sla_due_at=sla_due_at,
            next_timer_at=next_timer_at,
        )
    )


def set_sla_policy(session: Session, ticket_id: int, policy: str | None) -> None:
    session.execute(update(Ticket).where(Ticket.id == ticket_id).values(sla_policy=policy))


def note_customer_message(session: Session, ticket_id: int, now: datetime) -> None:
    """A human customer mail: the next-response clock starts again."""
    session.execute(update(Ticket).where(Ticket.id == ticket_id).values(last_customer_message_at=now))
    session.execute(
        FiredEscalation.__table__.delete().where(  # type: ignore[attr-defined]  # Table.delete exists
            FiredEscalation.ticket_id == ticket_id, FiredEscalation.target == "next_response"
        )
    )


def note_agent_reply(session: Session, ticket_id: int, now: datetime) -> None:
    ticket = session.get_one(Ticket, ticket_id)
    if ticket.first_agent_response_at is None:
        ticket.first_agent_response_at = now
    ticket.last_agent_reply_at = now


def note_status(session: Session, ticket_id: int, old: str, new: str, now: datetime) -> None:
    """Pauses while pending, the moment of resolution, and when the status was entered."""
    if new == "pending" and old != "pending":
        session.add(TicketPause(ticket_id=ticket_id, started_at=now))
    if old == "pending" and new != "pending":
        session.execute(
            update(TicketPause)
            .where(TicketPause.ticket_id == ticket_id, TicketPause.ended_at.is_(None))
            .values(ended_at=now)
        )
    values: dict[str, object] = {"status_since": now}
    if new == "resolved":
        values["resolved_at"] = now
    elif new in ("open", "new", "answered", "pending"):
        values["resolved_at"] = None
    session.execute(update(Ticket).where(Ticket.id == ticket_id).values(**values))


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
    query = select(func.count()).where(Outbox.kind.in_(kinds), Outbox.created_at >= since)
    if recipient is not None:
        query = query.where(Outbox.recipient == recipient)
    if ticket_id is not None:
        query = query.where(Outbox.ticket_id == ticket_id)
    return int(session.scalar(query) or 0)


def due_count(session: Session, now: datetime) -> int:
    """How many tickets have a timer due, without taking locks (for health checks and tests)."""
    return int(session.scalar(select(func.count()).where(Ticket.next_timer_at <= now)) or 0)


def postpone_timer(session: Session, ticket_id: int, when: datetime) -> None:
    session.execute(update(Ticket).where(Ticket.id == ticket_id).values(next_timer_at=when))
