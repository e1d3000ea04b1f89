"""Builders for test mail as raw CRLF bytes, the way real clients send it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

_counter = itertools.count(1)


def make_mail(
    *,
    sender: str = "alice@customer.example",
    to: str = "support@example.com",
    subject: str = "Printer is on fire",
    body: str = "Hello,\nthe printer is on fire.\n",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    cc: str | None = None,
    extra_headers: dict[str, str] | None = None,
    html: str | None = None,
    attachments: list[tuple[str, str, bytes]] | None = None,
) -> bytes:
    """One message as bytes with CRLF line endings; ids are unique per call unless given."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime(2026, 11, 2, 9, 30, tzinfo=UTC))
    message["Message-ID"] = message_id or make_msgid(f"t{next(_counter)}", domain="client.example")
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = references
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for filename, content_type, data in attachments or []:
        maintype, subtype = content_type.split("/", 1)
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    # After set_content, which clears Content-* headers such as Content-Language.
    for name, value in (extra_headers or {}).items():
        message[name] = value
    return message.as_bytes()


def with_raw_subject(raw: bytes, encoded_subject: str) -> bytes:
    """Replace the Subject header with an already-encoded value (RFC 2047 as clients write it)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"subject:")]
    lines.append(b"Subject: " + encoded_subject.encode("ascii"))
    return b"\r\n".join(lines) + sep + body
