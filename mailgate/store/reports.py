"""The rows `mailgate report` aggregates: tickets created in a period with the events that time them."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailgate.reporting import ACTIVE_STATES, ESCALATION, EventRecord, OpenTicket, TicketHistory
from mailgate.store.models import Event, Inbound, Message, Ticket

# The events that decide first response, resolution, reopening and escalation.
REPORT_EVENT_KINDS = ("agent_replied", "status_changed", ESCALATION)


def _in_period(since: datetime, queue: str | None) -> Any:
    condition = Ticket.created_at >= since
    return condition & (Ticket.queue == queue) if queue else condition


def ticket_histories(session: Session, *, since: datetime, queue: str | None = None) -> list[TicketHistory]:
    """Tickets created at or after `since` (in `queue`), oldest first, each with its timing events."""
    first_message = (
        select(Message.ticket_id, func.min(Message.id).label("message_id")).group_by(Message.ticket_id).subquery()
    )
    rows = session.execute(
        select(Ticket, Inbound.source)
        .outerjoin(first_message, first_message.c.ticket_id == Ticket.id)
        .outerjoin(Message, Message.id == first_message.c.message_id)
        .outerjoin(Inbound, Inbound.id == Message.inbound_id)
        .where(_in_period(since, queue))
        .order_by(Ticket.created_at, Ticket.id)
    ).all()
    events = _timing_events(session, since, queue)
    return [
        TicketHistory(
            number=ticket.number,
            created_at=ticket.created_at,
            queue=ticket.queue,
            priority=ticket.priority,
            status=ticket.status,
            channel=source or "other",
            first_agent_response_at=ticket.first_agent_response_at,
            first_response_due=ticket.first_response_due,
            resolution_due=ticket.resolution_due,
            events=tuple(events.get(ticket.id, ())),
        )
        for ticket, source in rows
    ]


def _timing_events(session: Session, since: datetime, queue: str | None) -> dict[int, list[EventRecord]]:
    rows = session.execute(
        select(Event.ticket_id, Event.kind, Event.created_at, Event.data)
        .join(Ticket, Ticket.id == Event.ticket_id)
        .where(_in_period(since, queue), Event.kind.in_(REPORT_EVENT_KINDS))
        .order_by(Event.ticket_id, Event.created_at, Event.id)
    )
    events: dict[int, list[EventRecord]] = defaultdict(list)
    for ticket_id, kind, created_at, data in rows:
        events[ticket_id].append(EventRecord(kind, created_at, _data(data)))
    return events


def _data(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def open_tickets(session: Session, *, queue: str | None = None) -> list[OpenTicket]:
    """Every unresolved ticket, whenever it was created: the backlog."""
    query = select(Ticket.status, Ticket.created_at).where(Ticket.status.in_(ACTIVE_STATES))
    if queue:
        query = query.where(Ticket.queue == queue)
    return [OpenTicket(status, created_at) for status, created_at in session.execute(query)]
