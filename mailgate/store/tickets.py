"""Tickets, their messages, participants, tags and events: the writes the worker makes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailgate.domain.message import Address, ParsedMessage
from mailgate.domain.threading import TicketRef
from mailgate.domain.ticket import Priority, TicketStatus
from mailgate.store.models import (
    Attachment,
    Contact,
    Counter,
    Event,
    Message,
    Ticket,
    TicketParticipant,
    TicketTag,
)

TICKET_COUNTER = "ticket_number"
FIRST_TICKET_NUMBER = 1000


def _insert_ignoring_conflicts(session: Session, model: Any, values: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, which both SQLite and PostgreSQL speak."""
    if not values:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(model).values(values).on_conflict_do_nothing())


def next_ticket_number(session: Session) -> int:
    """The next sequential ticket number; the counter row serialises concurrent creators."""
    _insert_ignoring_conflicts(session, Counter, [{"name": TICKET_COUNTER, "value": FIRST_TICKET_NUMBER - 1}])
    number = session.scalar(
        update(Counter).where(Counter.name == TICKET_COUNTER).values(value=Counter.value + 1).returning(Counter.value)
    )
    assert number is not None
    return int(number)


def ticket_number_of_message(session: Session, message_id: str) -> int | None:
    """The ticket a stored message (inbound or outbound) belongs to, by its Message-ID."""
    return session.scalar(
        select(Ticket.number).join(Message, Message.ticket_id == Ticket.id).where(Message.message_id == message_id)
    )


def nearest_referenced_ticket(session: Session, message_ids: tuple[str, ...]) -> TicketRef | None:
    """The ticket of the first of `message_ids` (nearest parent first) that is stored."""
    if not message_ids:
        return None
    rows = session.execute(
        select(Message.message_id, Message.ticket_id).where(Message.message_id.in_(message_ids[:100]))
    ).all()
    by_message = {message_id: ticket_id for message_id, ticket_id in rows}
    for message_id in message_ids:
        if message_id in by_message:
            return _ticket_ref(session, by_message[message_id])
    return None


def ticket_ref_by_number(session: Session, number: int) -> TicketRef | None:
    ticket_id = session.scalar(select(Ticket.id).where(Ticket.number == number))
    return None if ticket_id is None else _ticket_ref(session, ticket_id)


def ticket_id_by_number(session: Session, number: int) -> int | None:
    return session.scalar(select(Ticket.id).where(Ticket.number == number))


def _ticket_ref(session: Session, ticket_id: int) -> TicketRef:
    number, status = session.execute(select(Ticket.number, Ticket.status).where(Ticket.id == ticket_id)).one()
    emails = session.scalars(select(TicketParticipant.email).where(TicketParticipant.ticket_id == ticket_id))
    return TicketRef(number=number, status=TicketStatus(status), participants=frozenset(emails))


def upsert_contact(session: Session, address: Address, language: str | None, now: datetime) -> int:
    """Find a contact by address, creating it the first time it writes."""
    _insert_ignoring_conflicts(
        session,
        Contact,
        [{"email": address.email, "name": address.name[:200], "language": language, "created_at": now}],
    )
    contact_id = session.scalar(select(Contact.id).where(Contact.email == address.email))
    assert contact_id is not None
    return contact_id


def create_ticket(
    session: Session, *, subject: str, queue: str, requester_id: int | None, priority: Priority, now: datetime
) -> tuple[int, int]:
    """Open a ticket in status new; returns (row id, ticket number)."""
    ticket = Ticket(
        number=next_ticket_number(session),
        subject=subject,
        status=TicketStatus.NEW.value,
        priority=priority.value,
        queue=queue,
        requester_id=requester_id,
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    session.flush()
    return ticket.id, ticket.number


def add_message(
    session: Session,
    ticket_id: int,
    parsed: ParsedMessage,
    *,
    inbound_id: int | None,
    direction: str,
    now: datetime,
    internal: bool = False,
) -> int:
    sender = parsed.sender.address
    message = Message(
        ticket_id=ticket_id,
        inbound_id=inbound_id,
        direction=direction,
        message_id=parsed.message_id,
        author_email=sender.email if sender else None,
        author_name=sender.name[:200] if sender else "",
        sender_problem=parsed.sender.problem,
        subject=parsed.subject,
        in_reply_to=" ".join(parsed.in_reply_to),
        references=" ".join(parsed.references),
        to_addresses=json.dumps([a.email for a in parsed.to]),
        cc_addresses=json.dumps([a.email for a in parsed.cc]),
        text_body=parsed.text_body,
        html_body=parsed.html_body,
        internal=internal,
        created_at=now,
    )
    session.add(message)
    session.flush()
    for attachment in parsed.attachments:
        session.add(
            Attachment(
                message_id=message.id,
                sha256=attachment.sha256,
                size=attachment.size,
                filename=attachment.filename,
                content_type=attachment.content_type[:255],
                content_id=(attachment.content_id or None) and attachment.content_id[:255],
            )
        )
    return message.id


def add_participants(session: Session, ticket_id: int, emails: Iterable[str]) -> None:
    _insert_ignoring_conflicts(
        session, TicketParticipant, [{"ticket_id": ticket_id, "email": email} for email in sorted(set(emails))]
    )


def add_tag(session: Session, ticket_id: int, tag: str) -> None:
    _insert_ignoring_conflicts(session, TicketTag, [{"ticket_id": ticket_id, "tag": tag}])


def ticket_status(session: Session, ticket_id: int) -> TicketStatus:
    return TicketStatus(session.scalars(select(Ticket.status).where(Ticket.id == ticket_id)).one())


def set_status(session: Session, ticket_id: int, status: TicketStatus, now: datetime) -> None:
    session.execute(update(Ticket).where(Ticket.id == ticket_id).values(status=status.value, updated_at=now))


def touch(session: Session, ticket_id: int, now: datetime) -> None:
    session.execute(update(Ticket).where(Ticket.id == ticket_id).values(updated_at=now))


def add_event(session: Session, ticket_id: int, kind: str, actor: str, now: datetime, /, **data: Any) -> None:
    """Append to the ticket's system log; there is no function to change or delete an event."""
    session.add(Event(ticket_id=ticket_id, created_at=now, kind=kind, actor=actor, data=json.dumps(data, default=str)))


def ticket_queue(session: Session, ticket_id: int) -> str:
    return str(session.scalar(select(Ticket.queue).where(Ticket.id == ticket_id)))


def noted_queues(session: Session, ticket_id: int) -> set[str]:
    """Queues already recorded as also addressed, so a third copy adds no second note."""
    rows = session.scalars(select(Event.data).where(Event.ticket_id == ticket_id, Event.kind == "also_addressed_to"))
    return {str(json.loads(data).get("queue")) for data in rows}


@dataclass(frozen=True)
class TicketSnapshot:
    """A ticket as notifications see it."""

    id: int
    number: int
    subject: str
    status: str
    priority: str
    queue: str
    assignee: str | None
    requester: Address | None
    requester_language: str | None


def ticket_snapshot(session: Session, ticket_id: int) -> TicketSnapshot:
    ticket, email, name, language = session.execute(
        select(Ticket, Contact.email, Contact.name, Contact.language)
        .outerjoin(Contact, Contact.id == Ticket.requester_id)
        .where(Ticket.id == ticket_id)
    ).one()
    requester = Address(email, name or "") if email else None
    return TicketSnapshot(
        ticket.id,
        ticket.number,
        ticket.subject,
        ticket.status,
        ticket.priority,
        ticket.queue,
        ticket.assignee,
        requester,
        language,
    )


def thread_message_ids(session: Session, ticket_id: int) -> list[str]:
    """Message-IDs of the ticket's messages, oldest first: the References of mail we send."""
    return list(session.scalars(select(Message.message_id).where(Message.ticket_id == ticket_id).order_by(Message.id)))


def conversation(session: Session, ticket_id: int, limit: int = 10) -> list[tuple[datetime, str, str]]:
    """The newest `limit` messages (date, author, text), oldest first, for agents' copies."""
    rows = session.execute(
        select(Message.created_at, Message.author_email, Message.text_body)
        .where(Message.ticket_id == ticket_id)
        .order_by(Message.id.desc())
        .limit(limit)
    ).all()
    return [(created, author or "(unknown sender)", text) for created, author, text in reversed(rows)]


def ticket_number_of_id(session: Session, ticket_id: int) -> int | None:
    return session.scalar(select(Ticket.number).where(Ticket.id == ticket_id))


def ticket_priority(session: Session, ticket_id: int) -> Priority:
    return Priority(session.scalars(select(Ticket.priority).where(Ticket.id == ticket_id)).one())


def set_priority(session: Session, ticket_id: int, priority: Priority, now: datetime) -> None:
    session.execute(update(Ticket).where(Ticket.id == ticket_id).values(priority=priority.value, updated_at=now))


def ticket_assignee(session: Session, ticket_id: int) -> str | None:
    return session.scalars(select(Ticket.assignee).where(Ticket.id == ticket_id)).one()


def set_assignee(session: Session, ticket_id: int, assignee: str | None, now: datetime) -> None:
    session.execute(update(Ticket).where(Ticket.id == ticket_id).values(assignee=assignee, updated_at=now))


def ticket_tags(session: Session, ticket_id: int) -> set[str]:
    return set(session.scalars(select(TicketTag.tag).where(TicketTag.ticket_id == ticket_id)))


def remove_tag(session: Session, ticket_id: int, tag: str) -> None:
    session.execute(
        TicketTag.__table__.delete().where(  # type: ignore[attr-defined]  # Table.delete exists
            TicketTag.ticket_id == ticket_id, TicketTag.tag == tag
        )
    )


def set_queue(session: Session, ticket_id: int, queue: str, now: datetime) -> None:
    session.execute(update(Ticket).where(Ticket.id == ticket_id).values(queue=queue, updated_at=now))


def ticket_sla_policy(session: Session, ticket_id: int) -> str | None:
    return session.scalars(select(Ticket.sla_policy).where(Ticket.id == ticket_id)).one()


def participants(session: Session, ticket_id: int) -> list[str]:
    return list(
        session.scalars(
            select(TicketParticipant.email)
            .where(TicketParticipant.ticket_id == ticket_id)
            .order_by(TicketParticipant.email)
        )
    )
