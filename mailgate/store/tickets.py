"""Tickets, their messages, participants, tags and events: the writes the worker makes.

The filing path's statements are prebuilt Core statements (see core.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, Executable, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailgate.domain.message import Address, ParsedMessage
from mailgate.domain.threading import TicketRef
from mailgate.domain.ticket import Priority, TicketStatus
from mailgate.store.core import execute
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

_TICKET_ID: BindParameter[int] = bindparam("ticket_id")


_IGNORING_CONFLICTS: dict[tuple[str, str], Executable] = {}


def _insert_ignoring_conflicts(session: Session, model: Any, values: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, which both SQLite and PostgreSQL speak (built once per table)."""
    if not values:
        return
    dialect = session.get_bind().dialect.name
    key = (dialect, model.__tablename__)
    statement = _IGNORING_CONFLICTS.get(key)
    if statement is None:
        dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = _IGNORING_CONFLICTS[key] = dialect_insert(model).on_conflict_do_nothing()
    execute(session, statement, values)


_NEXT_NUMBER = (
    update(Counter).where(Counter.name == TICKET_COUNTER).values(value=Counter.value + 1).returning(Counter.value)
)


def next_ticket_number(session: Session) -> int:
    """The next sequential ticket number; the counter row serialises concurrent creators."""
    number = execute(session, _NEXT_NUMBER, {}).scalar()
    if number is None:  # the first ticket of this database
        _insert_ignoring_conflicts(session, Counter, [{"name": TICKET_COUNTER, "value": FIRST_TICKET_NUMBER - 1}])
        number = execute(session, _NEXT_NUMBER, {}).scalar()
    assert number is not None
    return int(number)


_NUMBER_OF_MESSAGE = (
    select(Ticket.number)
    .join(Message, Message.ticket_id == Ticket.id)
    .where(Message.message_id == bindparam("message_id"))
    .limit(1)
)


def ticket_number_of_message(session: Session, message_id: str) -> int | None:
    """The ticket a stored message (inbound or outbound) belongs to, by its Message-ID."""
    found = execute(session, _NUMBER_OF_MESSAGE, {"message_id": message_id}).scalar()
    return None if found is None else int(found)


# Message-IDs looked up per statement: a prebuilt statement per list length up to this (most
# replies name one to three), longer lists in slices of it.
_REFERENCES_PER_LOOKUP = 8
_TICKETS_OF_MESSAGES = {
    size: select(Message.message_id, Message.ticket_id, Ticket.number)
    .join(Ticket, Message.ticket_id == Ticket.id)
    .where(Message.message_id.in_([bindparam(f"m{index}") for index in range(size)]))
    for size in range(1, _REFERENCES_PER_LOOKUP + 1)
}
# A message names at most this many (the oldest References beyond it are not looked up).
_MAX_REFERENCES = 100


def tickets_of_messages(session: Session, message_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
    """(ticket id, ticket number) of each stored message among `message_ids`, by Message-ID."""
    wanted = list(dict.fromkeys(message_ids))
    found: dict[str, tuple[int, int]] = {}
    for start in range(0, len(wanted), _REFERENCES_PER_LOOKUP):
        part = wanted[start : start + _REFERENCES_PER_LOOKUP]
        rows = execute(session, _TICKETS_OF_MESSAGES[len(part)], {f"m{i}": value for i, value in enumerate(part)})
        found.update((message_id, (ticket_id, int(number))) for message_id, ticket_id, number in rows.all())
    return found


def nearest_referenced_ticket_id(session: Session, message_ids: tuple[str, ...]) -> int | None:
    """The id of the ticket of the first of `message_ids` (nearest parent first) that is stored."""
    wanted = message_ids[:_MAX_REFERENCES]
    found = tickets_of_messages(session, wanted)
    return next((found[m][0] for m in wanted if m in found), None)


class TicketRefs:
    """Tickets as threading sees them, each read once per transaction however often it is named
    (a reply's References, our signed Message-ID and its subject tag usually name one ticket)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._by_id: dict[int, TicketRef] = {}
        self._ids: dict[int, int | None] = {}

    def of_id(self, ticket_id: int | None) -> TicketRef | None:
        if ticket_id is None:
            return None
        ref = self._by_id.get(ticket_id)
        if ref is None:
            ref = self._by_id[ticket_id] = _ticket_ref(self.session, ticket_id)
            self._ids[ref.number] = ticket_id
        return ref

    def of_number(self, number: int) -> TicketRef | None:
        if number not in self._ids:
            self._ids[number] = ticket_id_by_number(self.session, number)
        return self.of_id(self._ids[number])


_ID_BY_NUMBER = select(Ticket.id).where(Ticket.number == bindparam("number"))


def ticket_id_by_number(session: Session, number: int) -> int | None:
    found = execute(session, _ID_BY_NUMBER, {"number": number}).scalar()
    return None if found is None else int(found)


_NUMBER_AND_STATUS = select(Ticket.number, Ticket.status).where(Ticket.id == _TICKET_ID)
_PARTICIPANTS = select(TicketParticipant.email).where(TicketParticipant.ticket_id == _TICKET_ID)


def _ticket_ref(session: Session, ticket_id: int) -> TicketRef:
    row: Any = execute(session, _NUMBER_AND_STATUS, {"ticket_id": ticket_id}).one()
    number, status = row
    emails = execute(session, _PARTICIPANTS, {"ticket_id": ticket_id}).scalars()
    return TicketRef(number=number, status=TicketStatus(status), participants=frozenset(emails))


_CONTACT_ID = select(Contact.id).where(Contact.email == bindparam("email"))


def upsert_contact(session: Session, address: Address, language: str | None, now: datetime) -> int:
    """Find a contact by address, creating it the first time it writes."""
    contact_id = execute(session, _CONTACT_ID, {"email": address.email}).scalar()
    if contact_id is not None:
        return int(contact_id)
    values = {"email": address.email, "name": address.name[:200], "language": language, "created_at": now}
    # RETURNING gives the new row's id; nothing when another transaction created it meanwhile.
    contact_id = execute(session, _new_contact_statement(session), values).scalar()
    if contact_id is None:
        contact_id = execute(session, _CONTACT_ID, {"email": address.email}).scalar()
    assert contact_id is not None
    return int(contact_id)


_NEW_CONTACT: dict[str, Executable] = {}


def _new_contact_statement(session: Session) -> Executable:
    dialect = session.get_bind().dialect.name
    statement = _NEW_CONTACT.get(dialect)
    if statement is None:
        dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = _NEW_CONTACT[dialect] = dialect_insert(Contact).on_conflict_do_nothing().returning(Contact.id)
    return statement


_INSERT_TICKET = insert(Ticket).returning(Ticket.id)


def create_ticket(
    session: Session, *, subject: str, queue: str, requester_id: int | None, priority: Priority, now: datetime
) -> tuple[int, int]:
    """Open a ticket in status new, entered now; returns (row id, ticket number)."""
    number = next_ticket_number(session)
    values = {
        "number": number,
        "subject": subject,
        "status": TicketStatus.NEW.value,
        "status_since": now,
        "priority": priority.value,
        "queue": queue,
        "requester_id": requester_id,
        "created_at": now,
        "updated_at": now,
    }
    ticket_id = execute(session, _INSERT_TICKET, values).scalar_one()
    return int(ticket_id), number


_INSERT_MESSAGE = insert(Message).returning(Message.id)
_INSERT_ATTACHMENT = insert(Attachment)


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
    values = {
        "ticket_id": ticket_id,
        "inbound_id": inbound_id,
        "direction": direction,
        "message_id": parsed.message_id,
        "author_email": sender.email if sender else None,
        "author_name": sender.name[:200] if sender else "",
        "sender_problem": parsed.sender.problem,
        "subject": parsed.subject,
        "in_reply_to": " ".join(parsed.in_reply_to),
        "references": " ".join(parsed.references),
        "to_addresses": json.dumps([a.email for a in parsed.to]),
        "cc_addresses": json.dumps([a.email for a in parsed.cc]),
        "text_body": parsed.text_body,
        "html_body": parsed.html_body,
        "internal": internal,
        "created_at": now,
    }
    message_id = int(execute(session, _INSERT_MESSAGE, values).scalar_one())
    attachments = [
        {
            "message_id": message_id,
            "sha256": attachment.sha256,
            "size": attachment.size,
            "filename": attachment.filename,
            "content_type": attachment.content_type[:255],
            "content_id": (attachment.content_id or None) and attachment.content_id[:255],
        }
        for attachment in parsed.attachments
    ]
    if attachments:
        execute(session, _INSERT_ATTACHMENT, attachments)
    return message_id


def add_participants(session: Session, ticket_id: int, emails: Iterable[str]) -> None:
    _insert_ignoring_conflicts(
        session, TicketParticipant, [{"ticket_id": ticket_id, "email": email} for email in sorted(set(emails))]
    )


def add_tag(session: Session, ticket_id: int, tag: str) -> None:
    _insert_ignoring_conflicts(session, TicketTag, [{"ticket_id": ticket_id, "tag": tag}])


_STATUS = select(Ticket.status).where(Ticket.id == _TICKET_ID)


def ticket_status(session: Session, ticket_id: int) -> TicketStatus:
    return TicketStatus(execute(session, _STATUS, {"ticket_id": ticket_id}).scalar_one())


_SET_STATUS = (
    update(Ticket).where(Ticket.id == _TICKET_ID).values(status=bindparam("status"), updated_at=bindparam("now"))
)


def set_status(session: Session, ticket_id: int, status: TicketStatus, now: datetime) -> None:
    execute(session, _SET_STATUS, {"ticket_id": ticket_id, "status": status.value, "now": now})


_TOUCH = update(Ticket).where(Ticket.id == _TICKET_ID).values(updated_at=bindparam("now"))


def touch(session: Session, ticket_id: int, now: datetime) -> None:
    execute(session, _TOUCH, {"ticket_id": ticket_id, "now": now})


_INSERT_EVENT = insert(Event)


def add_event(session: Session, ticket_id: int, kind: str, actor: str, now: datetime, /, **data: Any) -> None:
    """Append to the ticket's system log; there is no function to change or delete an event."""
    values = {"ticket_id": ticket_id, "created_at": now, "kind": kind, "actor": actor}
    execute(session, _INSERT_EVENT, {**values, "data": json.dumps(data, default=str)})


_QUEUE = select(Ticket.queue).where(Ticket.id == _TICKET_ID)


def ticket_queue(session: Session, ticket_id: int) -> str:
    return str(execute(session, _QUEUE, {"ticket_id": ticket_id}).scalar())


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


_SNAPSHOT = (
    select(
        Ticket.id,
        Ticket.number,
        Ticket.subject,
        Ticket.status,
        Ticket.priority,
        Ticket.queue,
        Ticket.assignee,
        Contact.email,
        Contact.name,
        Contact.language,
    )
    .outerjoin(Contact, Contact.id == Ticket.requester_id)
    .where(Ticket.id == _TICKET_ID)
)


def ticket_snapshot(session: Session, ticket_id: int) -> TicketSnapshot:
    row: Any = execute(session, _SNAPSHOT, {"ticket_id": ticket_id}).one()
    email, name, language = row[7], row[8], row[9]
    requester = Address(email, name or "") if email else None
    return TicketSnapshot(row[0], row[1], row[2], row[3], row[4], row[5], row[6], requester, language)


_THREAD_IDS = select(Message.message_id).where(Message.ticket_id == _TICKET_ID).order_by(Message.id)


def thread_message_ids(session: Session, ticket_id: int) -> list[str]:
    """Message-IDs of the ticket's messages, oldest first: the References of mail we send."""
    return list(execute(session, _THREAD_IDS, {"ticket_id": ticket_id}).scalars())


_CONVERSATION = (
    select(Message.created_at, Message.author_email, Message.text_body)
    .where(Message.ticket_id == _TICKET_ID)
    .order_by(Message.id.desc())
    .limit(bindparam("limit"))
)


def conversation(session: Session, ticket_id: int, limit: int = 10) -> list[tuple[datetime, str, str]]:
    """The newest `limit` messages (date, author, text), oldest first, for agents' copies."""
    rows = execute(session, _CONVERSATION, {"ticket_id": ticket_id, "limit": limit}).all()
    return [(created, author or "(unknown sender)", text) for created, author, text in reversed(rows)]


_NUMBER_OF_ID = select(Ticket.number).where(Ticket.id == _TICKET_ID)


def ticket_number_of_id(session: Session, ticket_id: int) -> int | None:
    found = execute(session, _NUMBER_OF_ID, {"ticket_id": ticket_id}).scalar()
    return None if found is None else int(found)


_PRIORITY = select(Ticket.priority).where(Ticket.id == _TICKET_ID)
_PRIORITY_AND_QUEUE = select(Ticket.priority, Ticket.queue).where(Ticket.id == _TICKET_ID)


def ticket_priority_and_queue(session: Session, ticket_id: int) -> tuple[Priority, str]:
    """Both in one statement: what the rules start from."""
    row = execute(session, _PRIORITY_AND_QUEUE, {"ticket_id": ticket_id}).one()
    return Priority(row.priority), str(row.queue)


def ticket_priority(session: Session, ticket_id: int) -> Priority:
    return Priority(execute(session, _PRIORITY, {"ticket_id": ticket_id}).scalar_one())


_SET_PRIORITY = (
    update(Ticket).where(Ticket.id == _TICKET_ID).values(priority=bindparam("priority"), updated_at=bindparam("now"))
)


def set_priority(session: Session, ticket_id: int, priority: Priority, now: datetime) -> None:
    execute(session, _SET_PRIORITY, {"ticket_id": ticket_id, "priority": priority.value, "now": now})


_ASSIGNEE = select(Ticket.assignee).where(Ticket.id == _TICKET_ID)


def ticket_assignee(session: Session, ticket_id: int) -> str | None:
    assignee: str | None = execute(session, _ASSIGNEE, {"ticket_id": ticket_id}).scalar_one()
    return assignee


def set_assignee(session: Session, ticket_id: int, assignee: str | None, now: datetime) -> None:
    session.execute(update(Ticket).where(Ticket.id == ticket_id).values(assignee=assignee, updated_at=now))


_TAGS = select(TicketTag.tag).where(TicketTag.ticket_id == _TICKET_ID)


def ticket_tags(session: Session, ticket_id: int) -> set[str]:
    return set(execute(session, _TAGS, {"ticket_id": ticket_id}).scalars())


def remove_tag(session: Session, ticket_id: int, tag: str) -> None:
    session.execute(
        TicketTag.__table__.delete().where(  # type: ignore[attr-defined]  # Table.delete exists
            TicketTag.ticket_id == ticket_id, TicketTag.tag == tag
        )
    )


def set_queue(session: Session, ticket_id: int, queue: str, now: datetime) -> None:
    session.execute(update(Ticket).where(Ticket.id == ticket_id).values(queue=queue, updated_at=now))


_SLA_POLICY = select(Ticket.sla_policy).where(Ticket.id == _TICKET_ID)


def ticket_sla_policy(session: Session, ticket_id: int) -> str | None:
    policy: str | None = execute(session, _SLA_POLICY, {"ticket_id": ticket_id}).scalar_one()
    return policy


def participants(session: Session, ticket_id: int) -> list[str]:
    return list(
        session.scalars(
            select(TicketParticipant.email)
            .where(TicketParticipant.ticket_id == ticket_id)
            .order_by(TicketParticipant.email)
        )
    )
