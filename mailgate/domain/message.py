"""Value objects for one parsed inbound message (stdlib only).

The mail parser produces these; the worker, threading and rules read them. Every string here
has already been decoded and stripped of CR, LF, NUL and bidi controls where it came from a
header, so nothing downstream can be tricked into header injection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: the addr-spec (lower-cased) and the decoded display name."""

    email: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Sender:
    """Who wrote a message, as far as the From header can tell.

    `address` is None when no single well-formed mailbox could be found. `problem` says why the
    identity is not trusted (two From headers, several mailboxes, an address hidden in the
    display name, a syntax the strict parser refuses); a sender with a problem never counts as a
    participant of an existing ticket.
    """

    address: Address | None
    problem: str | None = None

    @property
    def trusted(self) -> bool:
        return self.address is not None and self.problem is None


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment's bytes and its sanitised metadata; never a path on disk."""

    filename: str
    content_type: str
    data: bytes
    sha256: str
    content_id: str | None = None
    inline: bool = False

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """Everything the pure core needs from one inbound message.

    Message-IDs are stored without angle brackets. `message_id_synthetic` is true when the mail
    had no usable Message-ID and one was derived from a hash of the raw bytes, so that the same
    bytes delivered twice still dedupe.
    """

    message_id: str
    message_id_synthetic: bool
    subject: str
    sender: Sender
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    date: datetime | None = None
    text_body: str = ""
    html_body: str | None = None
    attachments: tuple[Attachment, ...] = ()
    language: str | None = None
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    defects: tuple[str, ...] = ()

    def header(self, name: str) -> tuple[str, ...]:
        """All values of a header (decoded, sanitised), by case-insensitive name."""
        return self.headers.get(name.lower(), ())
