"""Tickets with their messages and events as JSON-ready records, a page at a time, for `mailgate export`.

Pages follow the ticket id (keyset pagination), so an export of any size holds one page in memory
and each page is its own short transaction.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.store.models import Attachment, Contact, Event, Message, Ticket, TicketParticipant, TicketTag


def ticket_page(
    session: Session, *, since: datetime | None, after_id: int, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Up to `limit` tickets with an id above `after_id`, updated at or after `since`; and the next cursor."""
    query = (
        select(Ticket, Contact.email)
        .outerjoin(Contact, Contact.id == Ticket.requester_id)
        .where(Ticket.id > after_id)
        .order_by(Ticket.id)
        .limit(limit)
    )
    if since is not None:
        query = query.where(Ticket.updated_at >= since)
    rows = session.execute(query).all()
    if not rows:
        return [], None
    ids = [ticket.id for ticket, _ in rows]
    related = _related(session, ids)
    records = [_ticket_record(ticket, requester, related) for ticket, requester in rows]
    return records, ids[-1]


def _related(session: Session, ids: list[int]) -> dict[str, dict[int, list[Any]]]:
    """Tags, participants, messages (with attachments) and events of the page's tickets, by ticket id."""
    related: dict[str, dict[int, list[Any]]] = {
        name: defaultdict(list) for name in ("tags", "participants", "messages", "events")
    }
    tags = select(TicketTag.ticket_id, TicketTag.tag).where(TicketTag.ticket_id.in_(ids))
    for ticket_id, tag in session.execute(tags):
        related["tags"][ticket_id].append(tag)
    participants = select(TicketParticipant.ticket_id, TicketParticipant.email).where(
        TicketParticipant.ticket_id.in_(ids)
    )
    for ticket_id, email in session.execute(participants):
        related["participants"][ticket_id].append(email)
    messages = session.scalars(select(Message).where(Message.ticket_id.in_(ids)).order_by(Message.id)).all()
    attachments = _attachments(session, [m.id for m in messages])
    for message in messages:
        related["messages"][message.ticket_id].append(_message_record(message, attachments.get(message.id, [])))
    for event in session.scalars(select(Event).where(Event.ticket_id.in_(ids)).order_by(Event.id)):
        related["events"][event.ticket_id].append(_event_record(event))
    return related


def _attachments(session: Session, message_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    query = select(Attachment).where(Attachment.message_id.in_(message_ids)).order_by(Attachment.id)
    for row in session.scalars(query):
        found[row.message_id].append(
            {
                "filename": row.filename,
                "content_type": row.content_type,
                "size": row.size,
                "sha256": row.sha256,
                "content_id": row.content_id,
            }
        )
    return found


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _ticket_record(ticket: Ticket, requester: str | None, related: dict[str, dict[int, list[Any]]]) -> dict[str, Any]:
    ticket_id = ticket.id
    return {
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "queue": ticket.queue,
        "assignee": ticket.assignee,
        "requester": requester,
        "created_at": _iso(ticket.created_at),
        "updated_at": _iso(ticket.updated_at),
        "sla_policy": ticket.sla_policy,
        "first_agent_response_at": _iso(ticket.first_agent_response_at),
        "resolved_at": _iso(ticket.resolved_at),
        "tags": sorted(related["tags"][ticket_id]),
        "participants": sorted(related["participants"][ticket_id]),
        "messages": related["messages"][ticket_id],
        "events": related["events"][ticket_id],
    }


def _message_record(message: Message, attachments: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "direction": message.direction,
        "internal": message.internal,
        "author_email": message.author_email,
        "author_name": message.author_name,
        "sender_problem": message.sender_problem,
        "subject": message.subject,
        "in_reply_to": message.in_reply_to,
        "references": message.references,
        "to": json.loads(message.to_addresses or "[]"),
        "cc": json.loads(message.cc_addresses or "[]"),
        "text_body": message.text_body,
        "html_body": message.html_body,
        "created_at": _iso(message.created_at),
        "attachments": attachments,
    }


def _event_record(event: Event) -> dict[str, Any]:
    return {
        "created_at": _iso(event.created_at),
        "kind": event.kind,
        "actor": event.actor,
        "data": json.loads(event.data or "{}"),
    }
