"""The rule engine and the shipped keyword rules, in English, Finnish, Lithuanian and German."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mailgate.domain.message import Address, Attachment, ParsedMessage, Sender
from mailgate.domain.ticket import Priority
from mailgate.rules.config_schema import read_default_rules
from mailgate.rules.engine import (
    ROUND_ROBIN,
    Action,
    ActionKind,
    Condition,
    MessageFacts,
    Operator,
    Rule,
    evaluate,
)


def facts(subject: str = "", body: str = "", priority: Priority = Priority.MEDIUM, **more: Any) -> MessageFacts:
    """A message from a customer to the support queue."""
    base = MessageFacts(sender="customer@example.net", subject=subject, body=body, priority=priority, queue="support")
    return replace(base, **more)


def keyword_priority(subject: str, body: str = "", priority: Priority = Priority.MEDIUM) -> Priority:
    return evaluate(read_default_rules(), facts(subject, body, priority)).priority


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Website DOWN since 9:00", Priority.URGENT),
        ("Security breach in the admin panel", Priority.URGENT),
        ("Payments failing for all customers", Priority.URGENT),
        ("Login error", Priority.HIGH),
        ("URGENT: invoice", Priority.HIGH),
        ("Urgent question", Priority.HIGH),
        ("Question about my invoice", Priority.LOW),
        ("Feature request: dark mode", Priority.LOW),
        ("Download link for the manual", Priority.MEDIUM),
    ],
)
def test_english_keywords(subject: str, expected: Priority) -> None:
    """English subjects get urgent, high or low by whole words; 'download' is not 'down'."""
    assert keyword_priority(subject) == expected


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Palvelu alhaalla!", Priority.URGENT),
        ("TIETOMURTO", Priority.URGENT),
        ("Maksu epaonnistui", Priority.URGENT),
        ("Kiireellinen: laskutus", Priority.HIGH),
        ("KIIREELLINEN", Priority.HIGH),
        ("Sovellus ei toimi", Priority.HIGH),
        ("Kysymys laskusta", Priority.LOW),
    ],
)
def test_finnish_keywords(subject: str, expected: Priority) -> None:
    """Finnish keywords match in any case and with or without ä and ö."""
    assert keyword_priority(subject) == expected


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Mokėjimas nepavyko", Priority.URGENT),
        ("MOKEJIMAS NEPAVYKO", Priority.URGENT),
        ("Įsilaužimas", Priority.URGENT),
        ("SKUBU", Priority.HIGH),
        ("Skubiai: sąskaita", Priority.HIGH),
        ("Svetainė neveikia", Priority.HIGH),
        ("Klausimas dėl sąskaitos", Priority.LOW),
        ("Ūžsakymas", Priority.MEDIUM),
    ],
)
def test_lithuanian_keywords(subject: str, expected: Priority) -> None:
    """Lithuanian keywords match with or without ė, į, ū and in capitals."""
    assert keyword_priority(subject) == expected


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Ausfall des Servers", Priority.URGENT),
        ("Zahlung fehlgeschlagen", Priority.URGENT),
        ("STÖRUNG", Priority.URGENT),
        ("DRINGEND: Rechnung", Priority.HIGH),
        ("Login funktioniert nicht", Priority.HIGH),
        ("Frage zur Rechnung", Priority.LOW),
        ("Anfrage", Priority.MEDIUM),
    ],
)
def test_german_keywords(subject: str, expected: Priority) -> None:
    """German keywords match whole words: 'Frage' is low, 'Anfrage' is not."""
    assert keyword_priority(subject) == expected


def test_body_keywords_are_urgent_phrases_only() -> None:
    """A body saying the site is down is urgent; 'scroll down' or a stray 'error' in a body is not."""
    assert keyword_priority("Help", "Hello, our site is down since nine.") == Priority.URGENT
    assert keyword_priority("Help", "Please scroll down and see the error log.") == Priority.MEDIUM
    assert keyword_priority("Hilfe", "Entschuldigen Sie die Störung.") == Priority.MEDIUM


def test_low_words_never_lower_a_stated_urgency() -> None:
    """A ticket already high (say from X-Priority) stays high when the subject says 'question'."""
    assert keyword_priority("A question", priority=Priority.HIGH) == Priority.HIGH
    assert keyword_priority("Login error", priority=Priority.URGENT) == Priority.URGENT


def test_rules_run_in_order_and_see_earlier_decisions() -> None:
    """A later rule sees the priority an earlier rule set, and every action is a hit naming its rule."""
    rules = (
        Rule("outage", (Condition("subject", Operator.CONTAINS, "outage"),),
             (Action(ActionKind.SET_PRIORITY, "urgent"), Action(ActionKind.ADD_TAG, "outage"))),
        Rule("urgent to ops", (Condition("priority", Operator.EQUALS, "urgent"),),
             (Action(ActionKind.SET_QUEUE, "ops"), Action(ActionKind.ASSIGN, ROUND_ROBIN))),
    )  # fmt: skip
    outcome = evaluate(rules, facts("Outage in EU"))
    assert (outcome.priority, outcome.queue, outcome.tags, outcome.assignee) == (
        Priority.URGENT, "ops", ("outage",), ROUND_ROBIN,
    )  # fmt: skip
    assert [(hit.rule, hit.action) for hit in outcome.hits] == [
        ("outage", ActionKind.SET_PRIORITY), ("outage", ActionKind.ADD_TAG),
        ("urgent to ops", ActionKind.SET_QUEUE), ("urgent to ops", ActionKind.ASSIGN),
    ]  # fmt: skip
    assert outcome.hits[0].detail == "priority medium -> urgent"


def test_stop_ends_evaluation_and_misses_are_reported() -> None:
    """After a rule with stop no further rule runs; a rule whose condition fails is a miss."""
    rules = (
        Rule("not billing", (Condition("queue", Operator.EQUALS, "billing"),), (Action(ActionKind.ADD_TAG, "b"),)),
        Rule("first", (), (Action(ActionKind.ADD_TAG, "one"), Action(ActionKind.STOP))),
        Rule("second", (), (Action(ActionKind.ADD_TAG, "two"),)),
    )
    outcome = evaluate(rules, facts("x"))
    assert outcome.tags == ("one",)
    assert [miss.rule for miss in outcome.misses] == ["not billing"]
    assert "queue" in outcome.misses[0].condition


def test_conditions_on_headers_addresses_and_flags() -> None:
    """Header regexes, negation, from_domain, recipients and boolean fields all work as conditions."""
    message = facts("x", headers={"x-foo": ("xyz",)}, to=("a@example.com", "billing@example.com"), is_reply=True)
    assert Condition("header:X-Foo", Operator.MATCHES, "^X").holds(message)
    assert not Condition("header:X-Foo", Operator.MATCHES, "^X", negate=True).holds(message)
    assert not Condition("header:X-Missing", Operator.MATCHES, ".").holds(message)
    assert Condition("from_domain", Operator.EQUALS, "EXAMPLE.net").holds(message)
    assert Condition("to", Operator.EQUALS, "billing@example.com").holds(message)
    assert Condition("is_reply", Operator.EQUALS, "true").holds(message)
    assert Condition("has_attachment", Operator.EQUALS, "false").holds(message)
    assert Condition("body", Operator.CONTAINS_ANY, ("a", "b"), negate=True).holds(message)


def test_bad_conditions_fail_when_built() -> None:
    """An unknown field or a bad regex fails when the rule is loaded, not when mail arrives."""
    with pytest.raises(ValueError, match="unknown field"):
        Condition("size", Operator.EQUALS, "1")
    with pytest.raises(ValueError):
        Condition("subject", Operator.MATCHES, "(")


def test_raise_priority_caps_and_no_auto_reply_wins() -> None:
    """raise_priority stops at urgent; no_auto_reply forbids a reply even if a later rule picks a template."""
    rules = (
        Rule("raise", (), (Action(ActionKind.RAISE_PRIORITY), Action(ActionKind.RAISE_PRIORITY))),
        Rule("quiet", (), (Action(ActionKind.NO_AUTO_REPLY),)),
        Rule("reply", (), (Action(ActionKind.AUTO_REPLY, "holiday"), Action(ActionKind.SET_SLA, "premium"))),
    )
    outcome = evaluate(rules, facts("x", priority=Priority.HIGH))
    assert outcome.priority == Priority.URGENT
    assert (outcome.auto_reply_allowed, outcome.auto_reply_template, outcome.sla_policy) == (
        False,
        "holiday",
        "premium",
    )


def test_facts_from_a_parsed_message() -> None:
    """An untrusted sender counts as none, and inline images are not attachments."""
    logo = Attachment("logo.png", "image/png", b"x", "0" * 64, inline=True)
    parsed = ParsedMessage(
        message_id="m@x", message_id_synthetic=False, subject="Hi", text_body="body",
        sender=Sender(Address("a@example.net"), problem="two From headers"),
        to=(Address("support@example.com"),), attachments=(logo,), headers={"x-foo": ("1",)},
    )  # fmt: skip
    result = MessageFacts.from_parsed(parsed, "support", Priority.MEDIUM, is_reply=False)
    assert result.sender is None and not result.has_attachment
    assert result.to == ("support@example.com",) and result.values("header:X-FOO") == ("1",)


def test_conditions_pickle_as_what_they_were_made_from() -> None:
    """The filing processes get the rules pickled: each condition still tests the same way."""
    import pickle

    from mailgate.rules.engine import Condition, Operator

    for operator, value in [
        (Operator.CONTAINS, "outage"),
        (Operator.CONTAINS_ANY, ("data loss", "down")),
        (Operator.EQUALS, "Support"),
        (Operator.MATCHES, r"\binvoice\s+\d+"),
    ]:
        condition = Condition("subject", operator, value, negate=operator is Operator.EQUALS)
        copy = pickle.loads(pickle.dumps(condition))
        assert copy == condition
        for text in ("Network OUTAGE today", "we have data loss", "support", "Invoice 42", "nothing"):
            assert copy._test(text) == condition._test(text), (operator, text)
