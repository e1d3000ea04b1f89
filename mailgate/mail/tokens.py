"""Signed identifiers in mailgate's own mail: Message-IDs, agent reply addresses, bounce addresses (tier 1).

Each carries an HMAC over what it names (ticket, recipient, outbox row) with the desk's secret,
so a reply proves the sender received our mail; the ticket number alone, which anyone can read
in a subject, proves nothing (the Zendesk 2024 report shows the cost of trusting it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_SIGNATURE_CHARS = 16
_MESSAGE_ID_RE = re.compile(r"mg\.(\d{1,12})\.([a-z0-9]{1,32})\.([a-z2-7]{16})@(.+)", re.IGNORECASE)


def sign(secret: bytes, *parts: str) -> str:
    """80 bits of HMAC-SHA256 in lower-case base32: short enough for a local part, long enough to be unguessable."""
    digest = hmac.new(secret, "\x1f".join(parts).encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:_SIGNATURE_CHARS]


def _matches(secret: bytes, signature: str, *parts: str) -> bool:
    return hmac.compare_digest(sign(secret, *parts), signature.lower())


def make_message_id(secret: bytes, *, ticket: int, recipient: str, nonce: str, domain: str) -> str:
    """`mg.<ticket>.<nonce>.<hmac>@<domain>`, without angle brackets."""
    return f"mg.{ticket}.{nonce}.{sign(secret, 'mid', str(ticket), nonce, recipient.lower())}@{domain}"


def ticket_of_message_id(message_id: str, domain: str) -> int | None:
    """The ticket a Message-ID of ours names, without checking who replies (a hint, not proof)."""
    match = _MESSAGE_ID_RE.fullmatch(message_id)
    if match is None or match.group(4).lower() != domain.lower():
        return None
    return int(match.group(1))


def verify_message_id(secret: bytes, message_id: str, *, sender: str, domain: str) -> int | None:
    """The ticket number when `message_id` is ours and was sent to `sender`, else None."""
    match = _MESSAGE_ID_RE.fullmatch(message_id)
    if match is None or match.group(4).lower() != domain.lower():
        return None
    ticket, nonce, signature = match.group(1), match.group(2), match.group(3)
    return int(ticket) if _matches(secret, signature, "mid", ticket, nonce, sender.lower()) else None


def is_signed_by_us(secret: bytes, message_id: str, recipients: tuple[str, ...], domain: str) -> bool:
    """True when a Message-ID is one we generated for one of `recipients` (our own mail coming back)."""
    return any(verify_message_id(secret, message_id, sender=r, domain=domain) is not None for r in recipients)


def _plus_address(mailbox: str, tag: str) -> str:
    local, _, domain = mailbox.partition("@")
    return f"{local.split('+', 1)[0]}+{tag}@{domain}"


def _plus_tag(address: str) -> str | None:
    local = address.partition("@")[0]
    return local.split("+", 1)[1] if "+" in local else None


def reply_address(secret: bytes, mailbox: str, *, ticket: int, agent: str) -> str:
    """The Reply-To for an agent's copy of a ticket: `support+t<ticket>.<hmac>@domain`."""
    return _plus_address(mailbox, f"t{ticket}.{sign(secret, 'reply', str(ticket), agent.lower())}")


def ticket_of_reply_address(address: str) -> int | None:
    """The ticket a reply address of ours names, without checking its signature (a hint, not proof)."""
    match = re.fullmatch(r"t(\d{1,12})\.[a-z2-7]{16}", _plus_tag(address) or "", re.IGNORECASE)
    return int(match.group(1)) if match else None


def verify_reply_address(secret: bytes, address: str, *, sender: str) -> int | None:
    """The ticket number when `address` is a reply address we issued to `sender` for it."""
    tag = _plus_tag(address)
    match = re.fullmatch(r"t(\d{1,12})\.([a-z2-7]{16})", tag or "", re.IGNORECASE)
    if match is None:
        return None
    ticket, signature = match.group(1), match.group(2)
    return int(ticket) if _matches(secret, signature, "reply", ticket, sender.lower()) else None


def bounce_address(secret: bytes, mailbox: str, *, outbox_id: int) -> str:
    """The envelope sender (VERP) of automatic mail: `support+b<row>.<hmac>@domain`."""
    return _plus_address(mailbox, f"b{outbox_id}.{sign(secret, 'bounce', str(outbox_id))}")


def outbox_of_bounce_address(secret: bytes, address: str) -> int | None:
    """The outbox row a bounce address names, when its signature is ours."""
    match = re.fullmatch(r"b(\d{1,18})\.([a-z2-7]{16})", _plus_tag(address) or "", re.IGNORECASE)
    if match is None or not _matches(secret, match.group(2), "bounce", match.group(1)):
        return None
    return int(match.group(1))
