"""Candidate parent messages from In-Reply-To and References, and our per-ticket pseudo reference (tier 1).

Outgoing mail carries `<ticket-NUMBER@DOMAIN>` in References (as RT does with
`RT-Ticket-<id>@<org>`), so a reply still threads after a client trims the chain.
"""

from __future__ import annotations

import re


def candidate_message_ids(in_reply_to: tuple[str, ...], references: tuple[str, ...]) -> tuple[str, ...]:
    """Message-IDs to look up, nearest parent first: In-Reply-To, then References right to left."""
    seen: dict[str, None] = {}
    for message_id in (*in_reply_to, *reversed(references)):
        seen.setdefault(message_id, None)
    return tuple(seen)


def pseudo_reference(number: int, domain: str) -> str:
    """The per-ticket reference for outgoing mail, without angle brackets."""
    return f"ticket-{number}@{domain}"


def pseudo_ticket_numbers(message_ids: tuple[str, ...], domain: str) -> tuple[int, ...]:
    """Ticket numbers named by our pseudo references among `message_ids`, in the given order."""
    pattern = re.compile(r"ticket-(\d{1,12})@" + re.escape(domain), re.IGNORECASE)
    numbers: dict[int, None] = {}
    for message_id in message_ids:
        match = pattern.fullmatch(message_id)
        if match:
            numbers.setdefault(int(match.group(1)), None)
    return tuple(numbers)
