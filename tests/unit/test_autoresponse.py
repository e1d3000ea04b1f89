"""When an acknowledgement may go out: never to automatic mail, loops or system senders; rate-limited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailgate.domain.message import Address, ParsedMessage, Sender
from mailgate.mail.classify import automatic_reason
from mailgate.rules.autoresponse import acknowledgement_decision

OWN = frozenset({"support@example.com", "billing@example.com"})


def message(sender: str = "customer@example.net", subject: str = "Help", **headers: str) -> ParsedMessage:
    return ParsedMessage(
        message_id="m@x",
        message_id_synthetic=False,
        subject=subject,
        sender=Sender(Address(sender)),
        headers={name.replace("_", "-").lower(): (value,) for name, value in headers.items()},
    )


def decide(sender: str | None = "customer@example.net", reason: str | None = None, **counts: int) -> tuple[bool, str]:
    return acknowledgement_decision(
        reason, sender, OWN, counts.get("hour", 0), counts.get("day", 0), rule_allows=bool(counts.get("allowed", 1))
    )


@pytest.mark.parametrize(
    ("parsed", "envelope"),
    [
        (message(Auto_Submitted="auto-replied"), None),
        (message(Auto_Submitted="auto-generated (vacation)"), None),
        (message(Precedence="bulk"), None),
        (message(Precedence="junk"), None),
        (message(Precedence="list"), None),
        (message(List_Id="<news.example.net>"), None),
        (message(List_Unsubscribe="<mailto:leave@example.net>"), None),
        (message(X_Auto_Response_Suppress="OOF, AutoReply"), None),
        (message(X_Auto_Response_Suppress="All"), None),
        (message(), "<>"),
        (message("MAILER-DAEMON@mx.example.net"), None),
        (message("postmaster@example.net"), None),
        (message("noreply@shop.example"), None),
        (message(subject="Undeliverable: Help"), None),
    ],
)
def test_no_acknowledgement_to_automatic_mail(parsed: ParsedMessage, envelope: str | None) -> None:
    """Every kind of automatic mail the classifier names gets no reply, and the reason says why."""
    reason = automatic_reason(parsed, envelope)
    assert reason is not None
    allowed, why = decide(reason=reason)
    assert not allowed and reason in why


@pytest.mark.parametrize("parsed", [message(Auto_Submitted="no"), message(Precedence="first-class"), message()])
def test_human_mail_is_acknowledged(parsed: ParsedMessage) -> None:
    """Auto-Submitted: no and other Precedence values are human mail (RFC 3834)."""
    assert automatic_reason(parsed) is None
    assert decide() == (True, "Automatic reply to customer@example.net allowed.")


@pytest.mark.parametrize(
    ("sender", "words"),
    [
        (None, "no usable sender"),
        ("support+loop@example.com", "our own addresses"),
        ("BILLING@example.com", "our own addresses"),
        ("no-reply@shop.example", "system address"),
        ("noreply-billing@shop.example", "system address"),
        ("DoNotReply@shop.example", "system address"),
        ("mailer-daemon@mx.example", "system address"),
        ("bounces+123@lists.example", "system address"),
    ],
)
def test_no_acknowledgement_to_missing_own_or_system_senders(sender: str | None, words: str) -> None:
    """No sender, our own addresses (plus-tagged too) and noreply-style senders get no reply."""
    allowed, why = decide(sender)
    assert not allowed and words in why


def test_a_rule_can_forbid_the_reply() -> None:
    """A rule's no_auto_reply is honoured and named in the reason."""
    assert decide(allowed=0) == (False, "No automatic reply: a rule said no_auto_reply.")


def test_flood_from_one_sender_gets_at_most_three_an_hour() -> None:
    """100 new tickets from one sender over two hours get at most 3 acknowledgements in any hour."""
    start = datetime(2026, 3, 10, 9, tzinfo=UTC)
    sent: list[datetime] = []
    for index in range(100):
        now = start + timedelta(seconds=72 * index)
        last_hour = sum(1 for at in sent if at > now - timedelta(hours=1))
        allowed, why = decide(hour=last_hour)
        if allowed:
            sent.append(now)
        elif last_hour >= 3:
            assert "already got 3 in the last hour (limit 3)" in why
    assert len(sent) == 6
    assert all(sum(1 for at in sent if t - timedelta(hours=1) < at <= t) <= 3 for t in sent)


def test_per_ticket_daily_limit() -> None:
    """A ticket that already got five automatic replies today gets no sixth."""
    assert decide(day=4)[0]
    allowed, why = decide(day=5)
    assert not allowed and "this ticket already got 5" in why
