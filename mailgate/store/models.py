"""SQLAlchemy 2.0 typed models; relationships are deliberately absent so nothing lazy-loads."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite stores no time zone; every timestamp mailgate writes is UTC, so it is read back as UTC.


class UtcDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use a timezone-aware UTC time")
        return value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


# BigInteger ids on PostgreSQL, but SQLite only auto-increments an INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Counter(Base):
    """Named counters; ticket numbers come from here so they are sequential per help desk."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str | None] = mapped_column(String(35))
    bouncing_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    bounce_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Ticket(Base):
    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, unique=True)
    subject: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    priority: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str] = mapped_column(String(100), index=True)
    assignee: Mapped[str | None] = mapped_column(String(320))
    requester_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    # SLA and lifecycle timers, recomputed on every change (see sla_tracking.py).
    sla_policy: Mapped[str | None] = mapped_column(String(100))
    status_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    first_agent_response_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_agent_reply_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_customer_message_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    first_response_due: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_response_due: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolution_due: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The earliest SLA due time: the queue's sort order (`tickets list --sort due`).
    sla_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    # When the scheduler must next look at this ticket; NULL when nothing can happen.
    next_timer_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class TicketTag(Base):
    __tablename__ = "ticket_tags"
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)


class TicketParticipant(Base):
    """Addresses that take part in a ticket: its requester and everyone in its To/Cc so far."""

    __tablename__ = "ticket_participants"
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), primary_key=True)


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"))
    direction: Mapped[str] = mapped_column(String(3))
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    author_email: Mapped[str | None] = mapped_column(String(320))
    author_name: Mapped[str] = mapped_column(String(200), default="")
    sender_problem: Mapped[str | None] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(Text, default="")
    in_reply_to: Mapped[str] = mapped_column(Text, default="")
    references: Mapped[str] = mapped_column(Text, default="")
    to_addresses: Mapped[str] = mapped_column(Text, default="")
    cc_addresses: Mapped[str] = mapped_column(Text, default="")
    text_body: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str | None] = mapped_column(Text)
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Attachment(Base):
    """Metadata of a stored attachment; its bytes live in the blob store under `sha256`."""

    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    content_id: Mapped[str | None] = mapped_column(String(255))


class Event(Base):
    """The ticket's system log. Append-only: the store never updates or deletes a row here."""

    __tablename__ = "events"
    __table_args__ = (
        # /metrics counts SLA breaches at every scrape: a partial index holds only escalation
        # events, so the count does not read the whole log.
        Index(
            "ix_events_sla_escalation",
            "id",
            sqlite_where=text("kind = 'sla_escalation'"),
            postgresql_where=text("kind = 'sla_escalation'"),
        ),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(320))
    data: Mapped[str] = mapped_column(Text, default="{}")


class Inbound(Base):
    """The inbound queue: raw bytes exactly as received, and what became of them."""

    __tablename__ = "inbound"
    __table_args__ = (Index("ix_inbound_state_id", "state", "id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    source: Mapped[str] = mapped_column(String(16))
    peer: Mapped[str] = mapped_column(String(100), default="")
    mail_from: Mapped[str] = mapped_column(Text, default="")
    rcpt_tos: Mapped[str] = mapped_column(Text, default="[]")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(300))
    last_error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ticket_number: Mapped[int | None] = mapped_column(BigInteger)


class TicketPause(Base):
    """A stretch of time in pending, during which SLA clocks stand still."""

    __tablename__ = "ticket_pauses"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class FiredEscalation(Base):
    """An SLA warning or breach already acted on, so each fires once per ticket and target."""

    __tablename__ = "fired_escalations"
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    target: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)


class RoundRobin(Base):
    """The agent who last got a ticket by round robin, per queue."""

    __tablename__ = "round_robin"
    queue: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_agent: Mapped[str] = mapped_column(String(320))


class Outbox(Base):
    """Mail to send. The Message-ID is fixed when the row is written, so a retry is the same mail."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_state_due", "state", "next_attempt_at"),
        Index("ix_outbox_recipient_kind_created", "recipient", "kind", "created_at"),
        # The circuit breaker counts automatic mail sent in the last minute at every claim.
        Index("ix_outbox_automatic_sent", "automatic", "sent_at"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    automatic: Mapped[bool] = mapped_column(Boolean, default=True)
    payload: Mapped[str] = mapped_column(Text, default="{}")
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(300))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ImapState(Base):
    """Per IMAP account and folder: the UIDVALIDITY seen and the highest UID already queued (RFC 3501 2.3.1.1)."""

    __tablename__ = "imap_state"
    account: Mapped[str] = mapped_column(String(1000), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ImapMessage(Base):
    """Where an inbound row came from on an IMAP server; one row per (account, UIDVALIDITY, UID)."""

    __tablename__ = "imap_messages"
    __table_args__ = (UniqueConstraint("account", "uidvalidity", "uid", name="uq_imap_messages_uid"),)
    inbound_id: Mapped[int] = mapped_column(ForeignKey("inbound.id"), primary_key=True)
    account: Mapped[str] = mapped_column(String(1000))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)


__all__ = [
    "Attachment",
    "Base",
    "Contact",
    "Counter",
    "Event",
    "ImapMessage",
    "ImapState",
    "Inbound",
    "Message",
    "Outbox",
    "Ticket",
    "TicketParticipant",
    "TicketTag",
]
