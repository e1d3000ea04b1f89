"""Priority from the sender's stated urgency and from VIP lists (tier 1, stdlib only).

A sender can say a mail is important (X-Priority, Importance, Priority headers); that raises a
ticket to high at most, because anyone can set those headers. VIPs get one level more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mailgate.domain.message import ParsedMessage
from mailgate.domain.ticket import Priority
from mailgate.rules.routing import base_address

_ORDER = tuple(Priority)  # definition order: least to most urgent
_LEADING_DIGIT = re.compile(r"\s*(\d)")
_COMMENT = re.compile(r"\([^)]*\)")


def raise_one(priority: Priority, cap: Priority = Priority.URGENT) -> Priority:
    """One level more urgent, never above `cap` (and never lowered by it)."""
    if priority.rank >= cap.rank:
        return priority
    return _ORDER[priority.rank + 1]


def highest(*priorities: Priority) -> Priority:
    return max(priorities, key=lambda priority: priority.rank)


def _first(parsed: ParsedMessage, name: str) -> str:
    values = parsed.header(name)
    return _COMMENT.sub("", values[0]).strip().lower() if values else ""


def _states_urgency(parsed: ParsedMessage) -> bool:
    # X-Priority is 1 (highest) to 5 (lowest), often with a comment: "1 (Highest)".
    digit = _LEADING_DIGIT.match(_first(parsed, "x-priority"))
    if digit and digit.group(1) in ("1", "2"):
        return True
    if _first(parsed, "importance") == "high" or _first(parsed, "x-msmail-priority") == "high":
        return True
    return _first(parsed, "priority") == "urgent"  # RFC 2156: normal, urgent, non-urgent


def stated_urgency(parsed: ParsedMessage, cap: Priority = Priority.HIGH) -> Priority | None:
    """High (or `cap`, if lower) when the sender marked the mail urgent; None otherwise.

    Low-priority markings are ignored: a sender's header never lowers a ticket.
    """
    if not _states_urgency(parsed):
        return None
    return Priority.HIGH if Priority.HIGH.rank <= cap.rank else cap


def is_vip(sender: str | None, vip_senders: Iterable[str], vip_domains: Iterable[str]) -> bool:
    """A listed address (plus-tags ignored) or an address at a listed domain or its subdomain."""
    if not sender or "@" not in sender:
        return False
    address = base_address(sender)
    if address in {base_address(vip) for vip in vip_senders}:
        return True
    domain = address.rpartition("@")[2]
    return any(domain == d or domain.endswith(f".{d}") for d in (v.strip().lower().lstrip("@") for v in vip_domains))


def vip_raise(
    priority: Priority, sender: str | None, vip_senders: Iterable[str], vip_domains: Iterable[str]
) -> Priority:
    """One level up for a VIP sender, capped at urgent; pass only a trusted sender's address."""
    return raise_one(priority) if is_vip(sender, vip_senders, vip_domains) else priority
