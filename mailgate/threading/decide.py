"""thread_message(): the threading decision, with the participant rule (tier 1).

Order: (a) a reference to a message stored or sent for a ticket; (b) a link anyone could forge
(our subject tag, or our guessable per-ticket pseudo reference), honoured only for the
ticket's participants; (c) a new ticket. osTicket applies the same rule to its subject
fallback "to avoid message injection by third-party"; the 2024 Zendesk report shows why.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailgate.domain.threading import ThreadDecision, ThreadVia, TicketRef
from mailgate.domain.ticket import TicketStatus


@dataclass(frozen=True, slots=True)
class ThreadingFacts:
    """What the worker looked up for one message before asking where it belongs.

    `by_reference` is the ticket of the nearest stored message named in In-Reply-To/References;
    `by_pseudo_reference` the ticket named by our pseudo reference; `by_tag` the ticket named by
    the subject tag, and `tag_number` the number the tag named (even if no such ticket exists).
    `sender` is None when the sender's identity is not trusted.
    """

    sender: str | None
    agents: frozenset[str]
    by_reference: TicketRef | None = None
    by_pseudo_reference: TicketRef | None = None
    by_tag: TicketRef | None = None
    tag_number: int | None = None


def thread_message(facts: ThreadingFacts) -> ThreadDecision:
    """Decide which ticket a message joins, or that it opens a new one, and say why."""
    if facts.by_reference is not None:
        return _join(facts.by_reference, ThreadVia.REFERENCES, "it replies to a message of")
    for ticket, via, what in (
        (facts.by_pseudo_reference, ThreadVia.REFERENCES, "its References name"),
        (facts.by_tag, ThreadVia.SUBJECT_TAG, "its subject carries the tag of"),
    ):
        if ticket is None:
            continue
        if _is_participant(facts, ticket):
            return _join(ticket, via, what)
        return ThreadDecision(
            via=ThreadVia.STRANGER,
            ticket=None,
            linked=ticket.number,
            reason=f"{what} ticket #{ticket.number}, but the sender is not one of its participants",
        )
    if facts.tag_number is not None:
        return ThreadDecision(
            ThreadVia.NEW, None, None, f"its subject names ticket #{facts.tag_number}, which does not exist"
        )
    return ThreadDecision(ThreadVia.NEW, None, None, "it names no ticket of this help desk")


def _is_participant(facts: ThreadingFacts, ticket: TicketRef) -> bool:
    sender = facts.sender
    return sender is not None and (sender in ticket.participants or sender in facts.agents)


def _join(ticket: TicketRef, via: ThreadVia, what: str) -> ThreadDecision:
    if ticket.status is TicketStatus.CLOSED:
        return ThreadDecision(
            via=ThreadVia.CLOSED_FOLLOWUP,
            ticket=None,
            linked=ticket.number,
            reason=f"{what} ticket #{ticket.number}, which is closed",
        )
    return ThreadDecision(via=via, ticket=ticket.number, linked=None, reason=f"{what} ticket #{ticket.number}")
