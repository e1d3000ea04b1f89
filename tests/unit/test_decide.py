"""thread_message(): references first, the tag only for participants, closed tickets start anew."""

from __future__ import annotations

from mailgate.domain.threading import ThreadVia, TicketRef
from mailgate.domain.ticket import TicketStatus
from mailgate.threading import ThreadingFacts, candidate_message_ids, pseudo_ticket_numbers, thread_message

OPEN_7 = TicketRef(7, TicketStatus.OPEN, frozenset({"alice@example.net", "bob@example.net"}))
CLOSED_7 = TicketRef(7, TicketStatus.CLOSED, frozenset({"alice@example.net"}))
AGENTS = frozenset({"agent@example.com"})


def test_reference_to_a_stored_message_joins_its_ticket() -> None:
    """A reply to a known message joins that ticket, whoever sent it."""
    decision = thread_message(ThreadingFacts(sender="someone@else.example", agents=AGENTS, by_reference=OPEN_7))
    assert (decision.via, decision.ticket) == (ThreadVia.REFERENCES, 7)


def test_tag_from_participant_joins() -> None:
    """The requester or a Cc participant joins by tag."""
    decision = thread_message(ThreadingFacts(sender="bob@example.net", agents=AGENTS, by_tag=OPEN_7, tag_number=7))
    assert (decision.via, decision.ticket) == (ThreadVia.SUBJECT_TAG, 7)


def test_tag_from_agent_joins() -> None:
    """Agents are participants of every ticket."""
    decision = thread_message(ThreadingFacts(sender="agent@example.com", agents=AGENTS, by_tag=OPEN_7, tag_number=7))
    assert decision.ticket == 7


def test_tag_from_stranger_opens_linked_ticket() -> None:
    """A stranger quoting the tag gets a new ticket linked to the one named."""
    decision = thread_message(ThreadingFacts(sender="mallory@evil.example", agents=AGENTS, by_tag=OPEN_7, tag_number=7))
    assert decision.via is ThreadVia.STRANGER and decision.creates_ticket and decision.linked == 7
    assert "not one of its participants" in decision.reason


def test_untrusted_sender_is_a_stranger_even_with_a_participant_address() -> None:
    """A sender whose identity is doubtful (sender=None) cannot join by tag."""
    decision = thread_message(ThreadingFacts(sender=None, agents=AGENTS, by_tag=OPEN_7, tag_number=7))
    assert decision.via is ThreadVia.STRANGER


def test_pseudo_reference_is_held_to_the_participant_rule() -> None:
    """Our per-ticket reference is guessable, so it counts only from participants."""
    ok = thread_message(ThreadingFacts(sender="alice@example.net", agents=AGENTS, by_pseudo_reference=OPEN_7))
    bad = thread_message(ThreadingFacts(sender="eve@evil.example", agents=AGENTS, by_pseudo_reference=OPEN_7))
    assert ok.ticket == 7 and bad.via is ThreadVia.STRANGER


def test_closed_ticket_gets_a_linked_followup() -> None:
    """Mail to a closed ticket starts a new ticket linked to the old one."""
    decision = thread_message(ThreadingFacts(sender="alice@example.net", agents=AGENTS, by_reference=CLOSED_7))
    assert decision.via is ThreadVia.CLOSED_FOLLOWUP and decision.linked == 7 and decision.creates_ticket


def test_unknown_tag_number_starts_a_new_ticket_and_says_so() -> None:
    """A tag naming no ticket starts a new one, with the reason recorded."""
    decision = thread_message(ThreadingFacts(sender="alice@example.net", agents=AGENTS, tag_number=99))
    assert decision.via is ThreadVia.NEW and "#99" in decision.reason


def test_candidates_put_in_reply_to_first_then_references_newest_first() -> None:
    """The nearest parent is tried first."""
    assert candidate_message_ids(("c",), ("a", "b", "c")) == ("c", "b", "a")


def test_pseudo_references_name_ticket_numbers_of_our_domain_only() -> None:
    """`ticket-N@our.domain` names a ticket; another domain's does not."""
    ids = ("x@y", "ticket-42@example.com", "ticket-9@other.example")
    assert pseudo_ticket_numbers(ids, "example.com") == (42,)
