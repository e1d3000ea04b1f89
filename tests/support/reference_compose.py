"""The reference composer: the EmailMessage-based implementation `mailgate.mail.compose` replaced.

This is the oracle the fast, byte-building `mailgate.mail.compose.compose` is checked against in
tests/unit/test_compose_differential.py: for the same `OutgoingMail`, both outputs must read back
the same through `email.message_from_bytes(raw, policy=email.policy.default)`, except where this
implementation is known to be wrong (the differential test names each such case).

It is kept as it was in production: every customer value through `sanitize_header_value`, then
`EmailMessage(policy=SMTP)`, `set_content`, `add_alternative`, `add_attachment`, `as_bytes()`.
"""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from mailgate.domain.message import Address
from mailgate.mail.compose import LOOP_HEADER, OutgoingMail, trim_references
from mailgate.mail.headers import sanitize_header_value


def _header_address(address: Address) -> HeaderAddress:
    display = sanitize_header_value(address.name, 200)
    local, _, domain = address.email.partition("@")
    return HeaderAddress(
        display_name=display, username=sanitize_header_value(local, 64), domain=sanitize_header_value(domain, 255)
    )


def compose(mail: OutgoingMail, date: datetime) -> bytes:
    """The mail as CRLF bytes, as the stdlib's email package builds it."""
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
        # set_content() below clears every Content-* header, so this one never reaches the output.
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
