"""Read models for the command line: ticket lists and one ticket's full record."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailgate.store.models import Attachment, Contact, Event, Message, Ticket, TicketParticipant, TicketTag


@dataclass(frozen=True)
class TicketSummary:
    number: int
    subject: str
    status: str
    priority: str
    queue: str
    requester: str | None
    assignee: str | None
    tags: tuple[str, ...]
    message_count: int
    created_at: datetime
    updated_at: datetime
    sla_due_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "subject": self.subject,
            "status": self.status,
            "priority": self.priority,
            "queue": self.queue,
            "requester": self.requester,
            "assignee": self.assignee,
            "tags": list(self.tags),
            "message_count": self.message_count,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "sla_due_at": self.sla_due_at.isoformat() if self.sla_due_at else None,
        }


@dataclass(frozen=True)
class MessageView:
    id: int
    direction: str
    message_id: str
    author: str | None
    sender_problem: str | None
    subject: str
    text_body: str
    internal: bool
    created_at: datetime
    attachments: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class EventView:
    created_at: datetime
    kind: str
    actor: str
    data: dict[str, Any]


@dataclass(frozen=True)
class TicketDetail:
    summary: TicketSummary
    participants: tuple[str, ...]
    messages: tuple[MessageView, ...]
    events: tuple[EventView, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            **self.summary.as_json(),
            "participants": list(self.participants),
            "messages": [
                {
                    "direction": m.direction,
                    "message_id": m.message_id,
                    "author": m.author,
                    "sender_problem": m.sender_problem,
                    "subject": m.subject,
                    "text_body": m.text_body,
                    "internal": m.internal,
                    "created_at": m.created_at.isoformat(),
                    "attachments": list(m.attachments),
                }
                for m in self.messages
            ],
            "events": [
                {"created_at": e.created_at.isoformat(), "kind": e.kind, "actor": e.actor, "data": e.data}
                for e in self.events
            ],
        }


def _summaries(session: Session, where: Any, limit: int | None, sort: str = "number") -> list[TicketSummary]:
    message_count = select(func.count()).where(Message.ticket_id == Ticket.id).correlate(Ticket).scalar_subquery()
    query = (
        select(Ticket, Contact.email, message_count)
        .outerjoin(Contact, Contact.id == Ticket.requester_id)
        .where(where)
        .order_by(*_ORDERS[sort])
    )
    if limit is not None:
        query = query.limit(limit)
    rows = session.execute(query).all()
    ids = [ticket.id for ticket, _, _ in rows]
    tags: dict[int, list[str]] = defaultdict(list)
    for ticket_id, tag in session.execute(
        select(TicketTag.ticket_id, TicketTag.tag).where(TicketTag.ticket_id.in_(ids)).order_by(TicketTag.tag)
    ):
        tags[ticket_id].append(tag)
    return [
        TicketSummary(
            ticket.number,
            ticket.subject,
            ticket.status,
            ticket.priority,
            ticket.queue,
            requester,
            ticket.assignee,
            tuple(tags[ticket.id]),
            int(count),
            ticket.created_at,
            ticket.updated_at,
            ticket.sla_due_at,
        )
        for ticket, requester, count in rows
    ]


# "due": the ticket closest to (or furthest past) its SLA target first; no target last.
_ORDERS: dict[str, tuple[Any, ...]] = {
    "number": (Ticket.number,),
    "due": (Ticket.sla_due_at.is_(None), Ticket.sla_due_at, Ticket.number),
    "updated": (Ticket.updated_at.desc(), Ticket.number),
}


def list_tickets(
    session: Session, *, status: str | None = None, limit: int | None = None, sort: str = "number"
) -> list[TicketSummary]:
    where = Ticket.status == status if status else Ticket.id.is_not(None)
    return _summaries(session, where, limit, sort)


def show_ticket(session: Session, number: int) -> TicketDetail | None:
    summaries = _summaries(session, Ticket.number == number, 1)
    if not summaries:
        return None
    ticket_id = session.scalar(select(Ticket.id).where(Ticket.number == number))
    participants = session.scalars(
        select(TicketParticipant.email)
        .where(TicketParticipant.ticket_id == ticket_id)
        .order_by(TicketParticipant.email)
    )
    messages = session.scalars(select(Message).where(Message.ticket_id == ticket_id).order_by(Message.id)).all()
    attachments: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in session.scalars(
        select(Attachment).where(Attachment.message_id.in_([m.id for m in messages])).order_by(Attachment.id)
    ):
        attachments[row.message_id].append(
            {"filename": row.filename, "content_type": row.content_type, "size": row.size, "sha256": row.sha256}
        )
    events = session.scalars(select(Event).where(Event.ticket_id == ticket_id).order_by(Event.id))
    return TicketDetail(
        summary=summaries[0],
        participants=tuple(participants),
        messages=tuple(
            MessageView(
                m.id,
                m.direction,
                m.message_id,
                m.author_email,
                m.sender_problem,
                m.subject,
                m.text_body,
                m.internal,
                m.created_at,
                tuple(attachments[m.id]),
            )
            for m in messages
        ),
        events=tuple(EventView(e.created_at, e.kind, e.actor, json.loads(e.data)) for e in events),
    )
