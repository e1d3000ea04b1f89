"""The rule engine: ordered rules of conditions and actions over plain message facts (tier 1).

Every decision is a RuleHit naming the rule, so the worker can write "which rule did it" events;
keyword conditions match whole words ignoring case and accents, regexes are compiled at load.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from mailgate.domain.message import ParsedMessage
from mailgate.domain.ticket import Priority
from mailgate.rules.priority import raise_one
from mailgate.rules.text import KeywordMatcher, normalize

ROUND_ROBIN = "round_robin"
FIELDS = (
    "from", "from_domain", "to", "cc", "subject", "body", "header:NAME", "queue", "priority", "is_reply",
    "has_attachment",
)  # fmt: skip
# A header name is printable ASCII without a colon (RFC 5322 section 2.2).
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")
# A regex meets at most this much of a body: Python's re can backtrack badly on hostile input.
MAX_REGEX_INPUT = 100_000


class Operator(StrEnum):
    CONTAINS = "contains"
    CONTAINS_ANY = "contains_any"
    EQUALS = "equals"
    MATCHES = "matches"


class ActionKind(StrEnum):
    SET_PRIORITY = "set_priority"
    RAISE_PRIORITY = "raise_priority"
    SET_QUEUE = "set_queue"
    ADD_TAG = "add_tag"
    ASSIGN = "assign"
    SET_SLA = "set_sla"
    AUTO_REPLY = "auto_reply"
    NO_AUTO_REPLY = "no_auto_reply"
    STOP = "stop"


def is_known_field(name: str) -> bool:
    if name.startswith("header:"):
        return bool(_HEADER_NAME.match(name.removeprefix("header:")))
    return name in FIELDS and name != "header:NAME"


@dataclass(frozen=True)
class MessageFacts:
    """What rules may look at: plain data, built once per message and rule run."""

    sender: str | None
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    subject: str = ""
    body: str = ""
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    queue: str = ""
    priority: Priority = Priority.MEDIUM
    is_reply: bool = False
    has_attachment: bool = False

    @classmethod
    def from_parsed(cls, parsed: ParsedMessage, queue: str, priority: Priority, is_reply: bool) -> MessageFacts:
        """Facts of a parsed message; an untrusted sender identity counts as no sender at all,
        and inline parts (signature logos) are not attachments."""
        return cls(
            sender=parsed.sender.address.email if parsed.sender.trusted and parsed.sender.address else None,
            to=tuple(address.email for address in parsed.to),
            cc=tuple(address.email for address in parsed.cc),
            subject=parsed.subject,
            body=parsed.text_body,
            headers={name.lower(): values for name, values in parsed.headers.items()},
            queue=queue,
            priority=priority,
            is_reply=is_reply,
            has_attachment=any(not attachment.inline for attachment in parsed.attachments),
        )

    def values(self, name: str) -> tuple[str, ...]:
        """The field's values; a condition holds when any of them satisfies it."""
        if name.startswith("header:"):
            return self.headers.get(name.removeprefix("header:").lower(), ())
        match name:
            case "from":
                return (self.sender,) if self.sender else ()
            case "from_domain":
                return (self.sender.rpartition("@")[2],) if self.sender else ()
            case "to" | "cc":
                return self.to if name == "to" else self.cc
            case "subject" | "body" | "queue":
                return (getattr(self, name),)
            case "priority":
                return (self.priority.value,)
            case "is_reply" | "has_attachment":
                return ("true" if getattr(self, name) else "false",)
        raise ValueError(f"unknown field {name!r}")


@dataclass(frozen=True)
class Condition:
    """`field operator value`, or its negation; raises ValueError when it cannot be compiled."""

    field: str
    operator: Operator
    value: str | tuple[str, ...]
    negate: bool = False
    # `field` names the condition's field here, hence the qualified dataclasses.field.
    _test: Callable[[str], bool] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not is_known_field(self.field):
            raise ValueError(f"unknown field {self.field!r}")
        object.__setattr__(self, "_test", _compile(Operator(self.operator), self.value))

    def __reduce__(self) -> tuple[type[Condition], tuple[str, Operator, str | tuple[str, ...], bool]]:
        """Pickled as what it was made from (the filing processes get the rules so); the test is compiled again."""
        return (Condition, (self.field, self.operator, self.value, self.negate))

    def holds(self, facts: MessageFacts) -> bool:
        found = any(self._test(value) for value in facts.values(self.field))
        return found != self.negate

    def describe(self) -> str:
        return f"{self.field} {'not ' if self.negate else ''}{self.operator} {self.value!r}"


def _compile(operator: Operator, value: str | tuple[str, ...]) -> Callable[[str], bool]:
    if operator is Operator.CONTAINS_ANY:
        if isinstance(value, str) or not value:
            raise ValueError("contains_any needs a non-empty list of words or phrases")
        return _keyword_test(value)
    if not isinstance(value, str):
        raise ValueError(f"{operator} needs a single text value")
    if operator is Operator.CONTAINS:
        return _keyword_test((value,))
    if operator is Operator.EQUALS:
        wanted = normalize(value.strip())
        return lambda text: normalize(text.strip()) == wanted
    try:
        pattern = re.compile(value, re.IGNORECASE)
    except re.error as error:
        raise ValueError(str(error)) from None
    return lambda text: pattern.search(text[:MAX_REGEX_INPUT]) is not None


def _keyword_test(phrases: Iterable[str]) -> Callable[[str], bool]:
    matcher = KeywordMatcher(phrases)
    return lambda text: matcher.find(text) is not None


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    value: str | None = None


@dataclass(frozen=True)
class Rule:
    """All conditions must hold (none: always); then the actions run in order."""

    name: str
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class RuleHit:
    """One decision: which rule, which action, and a sentence for the system log."""

    rule: str
    action: ActionKind
    detail: str


@dataclass(frozen=True)
class RuleMiss:
    rule: str
    condition: str


@dataclass(frozen=True)
class RuleOutcome:
    """Everything the rules decided; `assignee` may be ROUND_ROBIN (pick among the queue's agents).

    `auto_reply_template` replaces the default acknowledgement; `auto_reply_allowed` is False
    when any matching rule said no_auto_reply, whatever the order.
    """

    priority: Priority
    queue: str
    tags: tuple[str, ...] = ()
    assignee: str | None = None
    sla_policy: str | None = None
    auto_reply_template: str | None = None
    auto_reply_allowed: bool = True
    hits: tuple[RuleHit, ...] = ()
    misses: tuple[RuleMiss, ...] = ()


def evaluate(rules: Iterable[Rule], facts: MessageFacts) -> RuleOutcome:
    """Run the rules in order; later rules see the priority and queue earlier ones set."""
    outcome = RuleOutcome(priority=facts.priority, queue=facts.queue)
    hits: list[RuleHit] = []
    misses: list[RuleMiss] = []
    for rule in rules:
        current = replace(facts, priority=outcome.priority, queue=outcome.queue)
        failed = next((c for c in rule.conditions if not c.holds(current)), None)
        if failed is not None:
            misses.append(RuleMiss(rule.name, failed.describe()))
            continue
        stop = False
        for action in rule.actions:
            outcome, detail = _APPLY[action.kind](outcome, action.value or "")
            hits.append(RuleHit(rule.name, action.kind, detail))
            stop = stop or action.kind is ActionKind.STOP
        if stop:
            break
    return replace(outcome, hits=tuple(hits), misses=tuple(misses))


def _set_priority(outcome: RuleOutcome, value: str) -> tuple[RuleOutcome, str]:
    new = Priority(value)
    return replace(outcome, priority=new), f"priority {outcome.priority} -> {new}"


def _raise_priority(outcome: RuleOutcome, _: str) -> tuple[RuleOutcome, str]:
    new = raise_one(outcome.priority)
    return replace(outcome, priority=new), f"priority {outcome.priority} -> {new}"


def _set_queue(outcome: RuleOutcome, value: str) -> tuple[RuleOutcome, str]:
    return replace(outcome, queue=value), f"queue {outcome.queue} -> {value}"


def _add_tag(outcome: RuleOutcome, value: str) -> tuple[RuleOutcome, str]:
    tags = outcome.tags if value in outcome.tags else (*outcome.tags, value)
    return replace(outcome, tags=tags), f"tag {value} added"


def _assign(outcome: RuleOutcome, value: str) -> tuple[RuleOutcome, str]:
    detail = "assigned round robin among the queue's agents" if value == ROUND_ROBIN else f"assigned to {value}"
    return replace(outcome, assignee=value), detail


def _set_sla(outcome: RuleOutcome, value: str) -> tuple[RuleOutcome, str]:
    return replace(outcome, sla_policy=value), f"SLA policy {value}"


def _auto_reply(outcome: RuleOutcome, value: str) -> tuple[RuleOutcome, str]:
    return replace(outcome, auto_reply_template=value), f"auto-reply with template {value}"


def _no_auto_reply(outcome: RuleOutcome, _: str) -> tuple[RuleOutcome, str]:
    return replace(outcome, auto_reply_allowed=False), "no automatic reply"


def _stop(outcome: RuleOutcome, _: str) -> tuple[RuleOutcome, str]:
    return outcome, "no further rules evaluated"


_APPLY: dict[ActionKind, Callable[[RuleOutcome, str], tuple[RuleOutcome, str]]] = {
    ActionKind.SET_PRIORITY: _set_priority,
    ActionKind.RAISE_PRIORITY: _raise_priority,
    ActionKind.SET_QUEUE: _set_queue,
    ActionKind.ADD_TAG: _add_tag,
    ActionKind.ASSIGN: _assign,
    ActionKind.SET_SLA: _set_sla,
    ActionKind.AUTO_REPLY: _auto_reply,
    ActionKind.NO_AUTO_REPLY: _no_auto_reply,
    ActionKind.STOP: _stop,
}
