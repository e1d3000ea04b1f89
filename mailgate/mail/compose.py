"""Outgoing mail as bytes: headers that cannot be injected, threading headers, loop markers (tier 1).

Every value that may come from a customer passes through `sanitize_header_value` before it is
set, because CPython 3.11's email generator does not refuse CR/LF in all paths (CVE-2024-6923)
and a decoded subject with a newline would otherwise make composing raise in the notifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from mailgate.domain.message import Address
from mailgate.mail.headers import sanitize_header_value

LOOP_HEADER = "X-Mailgate-Loop"
# RFC 5322 puts no limit on References, but clients and servers trim it; keep the oldest
# (the ticket's root) and the newest, as Request Tracker does.
MAX_REFERENCES = 10
REPLY_ABOVE_MARKER = "-- Reply above this line to add to the ticket --"


@dataclass(frozen=True)
class OutgoingAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class OutgoingMail:
    """One mail to one recipient, as the notifier decided it; `automatic` is the RFC 3834 value or None."""

    sender: Address
    to: Address
    subject: str
    text: str
    message_id: str
    loop_token: str
    html: str | None = None
    reply_to: Address | None = None
    cc: tuple[Address, ...] = ()
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    automatic: str | None = None
    language: str | None = None
    attachments: tuple[OutgoingAttachment, ...] = field(default=())


def _header_address(address: Address) -> HeaderAddress:
    display = sanitize_header_value(address.name, 200)
    local, _, domain = address.email.partition("@")
    return HeaderAddress(
        display_name=display, username=sanitize_header_value(local, 64), domain=sanitize_header_value(domain, 255)
    )


def trim_references(references: tuple[str, ...]) -> tuple[str, ...]:
    """At most MAX_REFERENCES ids: the first (the thread's root) and the most recent ones."""
    unique = tuple(dict.fromkeys(references))
    if len(unique) <= MAX_REFERENCES:
        return unique
    return (unique[0], *unique[-(MAX_REFERENCES - 1) :])


def compose(mail: OutgoingMail, date: datetime) -> bytes:
    """The mail as CRLF bytes, ready for an SMTP relay."""
    message = EmailMessage(policy=SMTP)
    message["From"] = _header_address(mail.sender)
    message["To"] = _header_address(mail.to)
    if mail.cc:
        message["Cc"] = [_header_address(a) for a in mail.cc]
    if mail.reply_to is not None:
        message["Reply-To"] = _header_address(mail.reply_to)
    message["Subject"] = sanitize_header_value(mail.subject, 500)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = f"<{sanitize_header_value(mail.message_id, 250)}>"
    if mail.in_reply_to:
        message["In-Reply-To"] = f"<{sanitize_header_value(mail.in_reply_to, 250)}>"
    references = trim_references(tuple(sanitize_header_value(r, 250) for r in mail.references if r))
    if references:
        message["References"] = " ".join(f"<{r}>" for r in references)
    if mail.automatic:
        # RFC 3834: automatic mail says so, and asks Exchange not to answer it with an OOF.
        message["Auto-Submitted"] = mail.automatic
        message["X-Auto-Response-Suppress"] = "All" if mail.automatic == "auto-replied" else "OOF, AutoReply"
    message[LOOP_HEADER] = sanitize_header_value(mail.loop_token, 200)
    if mail.language:
        message["Content-Language"] = sanitize_header_value(mail.language, 35)
    message.set_content(mail.text)
    if mail.html is not None:
        message.add_alternative(mail.html, subtype="html")
    for attachment in mail.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
        )
    return message.as_bytes()
