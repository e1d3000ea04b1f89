"""The sender's stated urgency (capped) and VIP raising."""

from __future__ import annotations

import pytest

from mailgate.domain.message import Address, ParsedMessage, Sender
from mailgate.domain.ticket import Priority
from mailgate.rules.priority import highest, stated_urgency, vip_raise


def message(**headers: str) -> ParsedMessage:
    return ParsedMessage(
        message_id="m@x",
        message_id_synthetic=False,
        subject="Hello",
        sender=Sender(Address("customer@example.net")),
        headers={name.replace("_", "-").lower(): (value,) for name, value in headers.items()},
    )


@pytest.mark.parametrize(
    "headers",
    [{"X_Priority": "1"}, {"X_Priority": "1 (Highest)"}, {"X_Priority": "2 (High)"}, {"Importance": "High"},
     {"Priority": "urgent"}, {"X_MSMail_Priority": "High"}],
)  # fmt: skip
def test_stated_urgency_raises_to_high(headers: dict[str, str]) -> None:
    """X-Priority 1 or 2, Importance: high and Priority: urgent each state high urgency."""
    assert stated_urgency(message(**headers)) == Priority.HIGH


@pytest.mark.parametrize("headers", [{}, {"X_Priority": "3 (Normal)"}, {"X_Priority": "5"}, {"Importance": "low"},
                                     {"Priority": "non-urgent"}])  # fmt: skip
def test_no_or_low_stated_urgency_changes_nothing(headers: dict[str, str]) -> None:
    """Normal or low markings give None: a sender's header never lowers a ticket."""
    assert stated_urgency(message(**headers)) is None


def test_header_urgency_is_capped() -> None:
    """The header gives at most high, and never more than the configured cap."""
    urgent = message(X_Priority="1")
    assert stated_urgency(urgent, cap=Priority.URGENT) == Priority.HIGH
    assert stated_urgency(urgent, cap=Priority.MEDIUM) == Priority.MEDIUM
    assert highest(Priority.URGENT, Priority.HIGH) == Priority.URGENT


def test_vip_raise_one_level_capped_at_urgent() -> None:
    """A VIP address (plus-tags too) or domain (subdomains too) raises one level, never past urgent."""
    senders, domains = ["boss@client.example"], ["bigcorp.example"]
    assert vip_raise(Priority.MEDIUM, "Boss+x@client.example", senders, domains) == Priority.HIGH
    assert vip_raise(Priority.HIGH, "anyone@eu.bigcorp.example", senders, domains) == Priority.URGENT
    assert vip_raise(Priority.URGENT, "anyone@bigcorp.example", senders, domains) == Priority.URGENT
    assert vip_raise(Priority.LOW, "x@notbigcorp.example", senders, domains) == Priority.LOW
    assert vip_raise(Priority.LOW, None, senders, domains) == Priority.LOW
