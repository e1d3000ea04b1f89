"""Whether a mail may get an automatic reply, and why not (tier 1, stdlib only).

The caller passes what it knows (the automatic-mail reason from mail/classify.py, counts of
auto-replies already sent); every refusal is a sentence for the ticket's system log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mailgate.rules.routing import base_address, is_own_address

DEFAULT_PER_SENDER_PER_HOUR = 3
# Five a day still allows an acknowledgement plus a few rule-driven replies on a busy ticket,
# but stops a loop with an unmarked auto-responder that stays under the hourly limit (72 a day).
DEFAULT_PER_TICKET_PER_DAY = 5

# System mailboxes that nobody reads; an answer to them is at best lost, at worst a loop.
_SYSTEM_LOCAL_PART = re.compile(
    r"^(mailer-daemon|postmaster|abuse|root|bounces?|(no[-_.]?reply|do[-_.]?not[-_.]?reply)([-_.].*)?)$",
    re.IGNORECASE,
)


def is_system_sender(sender: str) -> bool:
    """MAILER-DAEMON, postmaster, noreply, no-reply.billing, donotreply, bounces and the like."""
    local = base_address(sender).rpartition("@")[0]
    return bool(_SYSTEM_LOCAL_PART.match(local))


def acknowledgement_decision(
    automatic_reason: str | None,
    sender: str | None,
    own_addresses: Iterable[str],
    sent_to_sender_last_hour: int,
    sent_on_ticket_last_day: int,
    per_sender_per_hour: int = DEFAULT_PER_SENDER_PER_HOUR,
    per_ticket_per_day: int = DEFAULT_PER_TICKET_PER_DAY,
    rule_allows: bool = True,
) -> tuple[bool, str]:
    """(True, why) when an automatic reply may go out, else (False, why not).

    The counts are the automatic replies already sent, before this one.
    """
    if automatic_reason is not None:
        return False, f"No automatic reply: the mail is automatic ({automatic_reason})."
    if not sender or "@" not in sender:
        return False, "No automatic reply: the mail has no usable sender address."
    if is_own_address(sender, own_addresses):
        return False, f"No automatic reply: {sender} is one of our own addresses (a mail loop)."
    if is_system_sender(sender):
        return False, f"No automatic reply: {sender} is a system address that does not read replies."
    if not rule_allows:
        return False, "No automatic reply: a rule said no_auto_reply."
    if sent_to_sender_last_hour >= per_sender_per_hour:
        return False, (
            f"No automatic reply: {sender} already got {sent_to_sender_last_hour} in the last hour "
            f"(limit {per_sender_per_hour})."
        )
    if sent_on_ticket_last_day >= per_ticket_per_day:
        return False, (
            f"No automatic reply: this ticket already got {sent_on_ticket_last_day} in the last day "
            f"(limit {per_ticket_per_day})."
        )
    return True, f"Automatic reply to {sender} allowed."
