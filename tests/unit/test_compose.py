"""Composing outgoing mail: headers, threading, no injection."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

from mailgate.domain.message import Address
from mailgate.mail.compose import MAX_REFERENCES, OutgoingMail, compose, trim_references


def build(**overrides: object) -> bytes:
    values: dict[str, object] = {
        "sender": Address("support@example.com", "Acme Support"),
        "to": Address("alice@customer.example", "Alice"),
        "subject": "[Acme Support #1] Hello",
        "text": "Body\n",
        "message_id": "mg.1.aa.bbbbbbbbbbbbbbbb@example.com",
        "loop_token": "example.com",
        "automatic": "auto-replied",
    }
    values.update(overrides)
    return compose(OutgoingMail(**values), datetime(2026, 11, 26, tzinfo=UTC))  # type: ignore[arg-type]


def test_headers_carry_threading_and_loop_markers() -> None:
    """Message-ID, In-Reply-To, References, Auto-Submitted and the loop header are all set."""
    message = message_from_bytes(
        build(in_reply_to="c1@x", references=("c1@x", "ticket-1@example.com")), policy=policy.default
    )
    assert message["Message-ID"] == "<mg.1.aa.bbbbbbbbbbbbbbbb@example.com>"
    assert message["In-Reply-To"] == "<c1@x>"
    assert message["References"] == "<c1@x> <ticket-1@example.com>"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message["X-Mailgate-Loop"] == "example.com"


def test_crlf_in_subject_and_names_cannot_inject_headers() -> None:
    """CR/LF from a customer's subject or display name are flattened, never a new header."""
    raw = build(subject="hi\r\nBcc: victim@evil.example", to=Address("a@b.example", "Eve\r\nBcc: x@y.example"))
    message = message_from_bytes(raw, policy=policy.default)
    assert message["Bcc"] is None
    assert b"\r\nBcc:" not in raw


def test_references_keep_the_root_and_the_newest() -> None:
    """Long chains are trimmed to the first and the most recent ids."""
    ids = tuple(f"m{i}@x" for i in range(30))
    trimmed = trim_references(ids)
    assert len(trimmed) == MAX_REFERENCES and trimmed[0] == "m0@x" and trimmed[-1] == "m29@x"
