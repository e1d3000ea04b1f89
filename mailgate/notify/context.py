"""Template contexts for outgoing mail, as plain JSON-ready dicts (tier 1).

The context is stored on the outbox row when the mail is decided and rendered when it is sent,
so a retry renders the same mail. Words that depend on the language live here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailgate.mail.compose import REPLY_ABOVE_MARKER

LANGUAGES = ("en", "fi", "lt")

STATUS_NAMES: dict[str, dict[str, str]] = {
    "en": {
        "new": "new",
        "open": "open",
        "answered": "answered",
        "pending": "pending",
        "resolved": "resolved",
        "closed": "closed",
    },
    "fi": {
        "new": "uusi",
        "open": "avoin",
        "answered": "vastattu",
        "pending": "odottaa",
        "resolved": "ratkaistu",
        "closed": "suljettu",
    },
    "lt": {
        "new": "nauja",
        "open": "atvira",
        "answered": "atsakyta",
        "pending": "laukiama",
        "resolved": "išspręsta",
        "closed": "uždaryta",
    },
}
STATUS_SUBJECTS: dict[str, dict[str, str]] = {
    "en": {
        "new": "Received",
        "open": "Open",
        "reopened": "Reopened",
        "answered": "Answered",
        "pending": "Waiting for you",
        "resolved": "Resolved",
        "closed": "Closed",
    },
    "fi": {
        "new": "Vastaanotettu",
        "open": "Avoinna",
        "reopened": "Avattu uudelleen",
        "answered": "Vastattu",
        "pending": "Odottaa sinua",
        "resolved": "Ratkaistu",
        "closed": "Suljettu",
    },
    "lt": {
        "new": "Gauta",
        "open": "Atvira",
        "reopened": "Vėl atidaryta",
        "answered": "Atsakyta",
        "pending": "Laukiama jūsų",
        "resolved": "Išspręsta",
        "closed": "Uždaryta",
    },
}
REPLY_ABOVE: dict[str, str] = {
    "en": REPLY_ABOVE_MARKER,
    "fi": "-- Kirjoita vastauksesi tämän rivin yläpuolelle --",
    "lt": "-- Atsakymą rašykite virš šios eilutės --",
}


def pick_language(wanted: str | None, default: str) -> str:
    """The first supported language of a Content-Language value (`fi-FI, en` -> `fi`), else the default."""
    for tag in (wanted or "").replace(";", ",").split(","):
        primary = tag.strip().lower().split("-", 1)[0]
        if primary in LANGUAGES:
            return primary
    return default if default in LANGUAGES else "en"


@dataclass(frozen=True)
class TicketFacts:
    """What a template may show of a ticket."""

    number: int
    subject: str
    status: str
    priority: str
    queue: str
    requester: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "subject": self.subject,
            "status": self.status,
            "priority": self.priority,
            "queue": self.queue,
            "requester": self.requester,
        }


def base_context(ticket: TicketFacts, *, tag: str, desk_name: str, language: str) -> dict[str, Any]:
    """What every template gets: the ticket, the desk, the tag, the status words, the reply marker."""
    return {
        "ticket": ticket.as_dict(),
        "tag": tag,
        "desk": {"name": desk_name},
        "language": language,
        "status_name": STATUS_NAMES[language].get(ticket.status, ticket.status),
        "reply_above": REPLY_ABOVE[language],
        "status_line": "",
    }


def status_context(old: str, new: str, language: str) -> dict[str, Any]:
    reopened = old in ("resolved", "closed") and new == "open"
    key = "reopened" if reopened else new
    return {
        "old_status": old,
        "new_status": new,
        "reopened": reopened,
        "status_subject": STATUS_SUBJECTS[language].get(key, new),
        "status_line": STATUS_NAMES[language].get(new, new),
    }
