"""Is a message machine-generated? Bounce reports and the reasons not to answer a mail (tier 1).

The union of what RT, Zammad, osTicket, FreeScout, Mailman and Roundup check: RFC 3834
Auto-Submitted, Precedence, Microsoft's X-Auto-Response-Suppress, list headers, the usual
auto-responder headers and null or daemon senders. RFC 3464 delivery reports are parsed here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.policy import compat32

from mailgate.domain.message import ParsedMessage
from mailgate.mail.headers import parse_message_ids

_DAEMON_SENDER = re.compile(
    r"^(mailer-daemon|postmaster|abuse|root|noreply|no-reply|do-not-reply|donotreply|noreply[.+-].*|no-reply[.+-].*)@",
    re.IGNORECASE,
)
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponse", "x-autoreply-from", "x-mail-autoreply")
_SUPPRESS_VALUES = {"all", "autoreply", "oof", "dr"}
_BOUNCE_SUBJECTS = re.compile(
    r"^(undeliverable|undelivered mail returned|delivery status notification|mail delivery failed|"
    r"returned mail|failure notice)",
    re.IGNORECASE,
)


def _first(parsed: ParsedMessage, name: str) -> str:
    values = parsed.header(name)
    return values[0].strip() if values else ""


def _without_comment(value: str) -> str:
    return re.sub(r"\([^)]*\)", "", value).strip().lower()


def automatic_reason(parsed: ParsedMessage, envelope_sender: str | None = None) -> str | None:
    """Why this mail must not get an automatic answer (nor reopen a ticket), or None for human mail."""
    auto_submitted = _without_comment(_first(parsed, "auto-submitted"))
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    precedence = (_first(parsed, "precedence") or _first(parsed, "x-precedence")).lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {precedence}"
    for name in ("list-id", "list-unsubscribe", "mailing-list"):
        if parsed.header(name):
            return f"mailing-list mail ({name})"
    for name in _AUTO_HEADERS:
        if parsed.header(name):
            return f"auto-responder header {name}"
    suppress = {v.strip().lower() for v in _first(parsed, "x-auto-response-suppress").split(",")}
    if suppress & _SUPPRESS_VALUES:
        return "X-Auto-Response-Suppress asks for no automatic replies"
    if envelope_sender is not None and envelope_sender.strip() in ("", "<>"):
        return "null envelope sender"
    sender = parsed.sender.address
    if sender is None:
        return "no trustworthy sender address"
    if _DAEMON_SENDER.match(sender.email):
        return f"sender {sender.email} is a system address"
    if _BOUNCE_SUBJECTS.match(parsed.subject):
        return "delivery failure notice"
    return None


@dataclass(frozen=True)
class DeliveryReport:
    """The essentials of an RFC 3464 report: whether delivery failed for good, and what was sent."""

    action: str
    status: str
    recipient: str
    diagnostic: str
    original_message_id: str | None

    @property
    def permanent(self) -> bool:
        return self.action == "failed" and self.status.startswith("5")


def parse_delivery_report(raw: bytes) -> DeliveryReport | None:
    """The report of a multipart/report; report-type=delivery-status message, else None."""
    message = message_from_bytes(raw, policy=compat32)
    if message.get_content_type() != "multipart/report":
        return None
    status_part, original = _report_parts(message)
    if status_part is None:
        return None
    fields = _delivery_fields(status_part)
    original_ids = parse_message_ids(original.get("Message-ID", "")) if original is not None else ()
    return DeliveryReport(
        action=fields.get("action", "").lower(),
        status=fields.get("status", ""),
        recipient=fields.get("final-recipient", "").split(";")[-1].strip().lower(),
        diagnostic=fields.get("diagnostic-code", "")[:500],
        original_message_id=original_ids[0] if original_ids else None,
    )


def _report_parts(message: Message) -> tuple[Message | None, Message | None]:
    status_part: Message | None = None
    original: Message | None = None
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "message/delivery-status":
            status_part = part
        elif content_type in ("message/rfc822", "text/rfc822-headers") and original is None:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                original = payload[0]
            elif isinstance(payload, str):
                original = message_from_bytes(payload.encode("utf-8", "replace"), policy=compat32)
    return status_part, original


def _delivery_fields(part: Message) -> dict[str, str]:
    """Per-recipient fields of the first recipient block; the stdlib gives the blocks as messages."""
    fields: dict[str, str] = {}
    payload = part.get_payload()
    blocks: list[Message] = (
        [block for block in payload if isinstance(block, Message)] if isinstance(payload, list) else []
    )
    if isinstance(payload, str):
        text = payload.replace("\r\n", "\n")
        blocks = [message_from_bytes(block.encode(), policy=compat32) for block in text.split("\n\n") if block]
    for block in blocks:
        for name, value in block.items():
            fields.setdefault(name.lower(), " ".join(str(value).split()))
    return fields
