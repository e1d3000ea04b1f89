"""Ticket statuses, priorities and the status transitions a customer's mail causes (stdlib only)."""

from __future__ import annotations

from enum import StrEnum


class TicketStatus(StrEnum):
    """The lifecycle of a ticket, in the order a ticket usually walks it."""

    NEW = "new"
    OPEN = "open"
    ANSWERED = "answered"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Priority(StrEnum):
    """How urgent a ticket is; ordered from least to most urgent."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        return _PRIORITY_ORDER.index(self)


_PRIORITY_ORDER = (Priority.LOW, Priority.MEDIUM, Priority.HIGH, Priority.URGENT)


def status_after_customer_reply(current: TicketStatus) -> TicketStatus:
    """A customer writing again puts a ticket the team had answered back into the team's hands.

    New stays new (nobody has acted yet); answered, pending and resolved become open. A closed
    ticket receives mail only when its queue allows reopening (reopen_days); it opens again.
    """
    if current in (TicketStatus.ANSWERED, TicketStatus.PENDING, TicketStatus.RESOLVED, TicketStatus.CLOSED):
        return TicketStatus.OPEN
    return current
