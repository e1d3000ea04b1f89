"""The outcome of threading one message: which ticket it joins, and why (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mailgate.domain.ticket import TicketStatus


class ThreadVia(StrEnum):
    """How a message was threaded; written into the ticket's system log."""

    REFERENCES = "references"
    SUBJECT_TAG = "subject_tag"
    NEW = "new"
    STRANGER = "stranger"
    CLOSED_FOLLOWUP = "closed_followup"


@dataclass(frozen=True, slots=True)
class TicketRef:
    """What threading needs to know of an existing ticket."""

    number: int
    status: TicketStatus
    participants: frozenset[str]


@dataclass(frozen=True, slots=True)
class ThreadDecision:
    """Append to `ticket`, or open a new ticket (linked to `linked` when set).

    `reason` is a sentence for the system log: "why is this mail here?".
    """

    via: ThreadVia
    ticket: int | None
    linked: int | None
    reason: str

    @property
    def creates_ticket(self) -> bool:
        return self.ticket is None
