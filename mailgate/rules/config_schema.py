"""The rules part of the TOML configuration ([sla], [lifecycle], [autoreply], [priority], [[rules]],
[escalation]) read into frozen dataclasses (tier 1: stdlib, zoneinfo and the package's own file).

Like config.py, every error names the key path, the expected form and the value found:
`rules[2].conditions[1].value: expected a valid regular expression, got 'unbalanced parenthesis'`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cache
from importlib import resources
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailgate.domain.ticket import Priority
from mailgate.errors import ConfigError
from mailgate.rules.autoresponse import DEFAULT_PER_SENDER_PER_HOUR, DEFAULT_PER_TICKET_PER_DAY
from mailgate.rules.business_hours import ALWAYS_OPEN, MIDNIGHT, BusinessCalendar
from mailgate.rules.engine import ROUND_ROBIN, Action, ActionKind, Condition, Operator, Rule, is_known_field
from mailgate.rules.sla import DEFAULT_WARNING_FRACTION, SlaPolicy, SlaTargets
from mailgate.rules.timers import DEFAULT_PENDING_DAYS, DEFAULT_RESOLVED_DAYS
from mailgate.toml_tables import TomlTable as _Section

T = TypeVar("T")

# The top-level keys this module reads; build_config must leave them to it.
RULES_SECTION_KEYS = ("sla", "lifecycle", "autoreply", "priority", "rules", "escalation")
QUEUE_AGENTS = "queue_agents"
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*$")
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_FIELDS_TEXT = "one of from, from_domain, to, cc, subject, body, header:NAME, queue, priority, is_reply, has_attachment"
_PRIORITIES_TEXT = '"low", "medium", "high" or "urgent"'


@dataclass(frozen=True)
class SlaConfig:
    warning_fraction: float = DEFAULT_WARNING_FRACTION
    calendars: dict[str, BusinessCalendar] = field(default_factory=lambda: {ALWAYS_OPEN.name: ALWAYS_OPEN})
    policies: dict[str, SlaPolicy] = field(default_factory=dict)
    default_policy: str | None = None

    def calendar_for(self, policy: SlaPolicy) -> BusinessCalendar:
        return self.calendars[policy.calendar_name]


@dataclass(frozen=True)
class LifecycleConfig:
    """Days of customer silence before pending -> resolved and resolved -> closed; None: never."""

    pending_auto_resolve_days: int | None = DEFAULT_PENDING_DAYS
    resolved_auto_close_days: int | None = DEFAULT_RESOLVED_DAYS
    queues: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)

    def for_queue(self, queue: str) -> tuple[int | None, int | None]:
        return self.queues.get(queue, (self.pending_auto_resolve_days, self.resolved_auto_close_days))


@dataclass(frozen=True)
class AutoReplyConfig:
    enabled: bool = True
    per_sender_per_hour: int = DEFAULT_PER_SENDER_PER_HOUR
    per_ticket_per_day: int = DEFAULT_PER_TICKET_PER_DAY
    template: str = "acknowledgement"


@dataclass(frozen=True)
class PriorityConfig:
    vip_senders: frozenset[str] = frozenset()
    vip_domains: frozenset[str] = frozenset()
    header_max: Priority = Priority.HIGH
    use_default_keywords: bool = True


@dataclass(frozen=True)
class EscalationConfig:
    """Who hears of a warning or breach; at breach the priority goes up and the tag is added."""

    notify: tuple[str, ...] = (QUEUE_AGENTS,)
    raise_priority: bool = True
    tag: str = "sla-breached"


@dataclass(frozen=True)
class RulesConfig:
    sla: SlaConfig = field(default_factory=SlaConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    autoreply: AutoReplyConfig = field(default_factory=AutoReplyConfig)
    priority: PriorityConfig = field(default_factory=PriorityConfig)
    escalation: EscalationConfig = field(default_factory=EscalationConfig)
    rules: tuple[Rule, ...] = ()

    def all_rules(self) -> tuple[Rule, ...]:
        """The shipped keyword rules (unless switched off), then the configured ones."""
        return (read_default_rules() if self.priority.use_default_keywords else ()) + self.rules


@dataclass(frozen=True)
class _Known:
    templates: frozenset[str]
    agents: frozenset[str]
    queues: frozenset[str]
    policies: frozenset[str] = frozenset()


def read_rules_section(
    data: dict[str, Any], known_templates: Iterable[str], known_agents: Iterable[str], known_queues: Iterable[str]
) -> RulesConfig:
    """Validate the rules sections of a parsed TOML document; other top-level keys are ignored."""
    root = _Section("", {key: data[key] for key in RULES_SECTION_KEYS if key in data})
    sla = _read_sla(root.table("sla"))
    known = _Known(
        frozenset(known_templates),
        frozenset(agent.lower() for agent in known_agents),
        frozenset(known_queues),
        frozenset(sla.policies),
    )
    config = RulesConfig(
        sla=sla,
        lifecycle=_read_lifecycle(root.table("lifecycle"), known),
        autoreply=_read_autoreply(root.table("autoreply"), known),
        priority=_read_priority(root.table("priority")),
        escalation=_read_escalation(root.table("escalation")),
        rules=_read_rules(root.tables("rules"), known),
    )
    root.finish()
    return config


@cache
def read_default_rules() -> tuple[Rule, ...]:
    """The shipped keyword rules (mailgate/rules/default_rules.toml, also config/rules.default.toml)."""
    text = resources.files("mailgate.rules").joinpath("default_rules.toml").read_text(encoding="utf-8")
    root = _Section("", tomllib.loads(text))
    rules = _read_rules(root.tables("rules"), _Known(frozenset(), frozenset(), frozenset()))
    root.finish()
    return rules


# --- [sla] -----------------------------------------------------------------------------------


def _read_sla(table: _Section) -> SlaConfig:
    fraction = table.convert("warning_fraction", DEFAULT_WARNING_FRACTION, "a number between 0 and 1", _fraction)
    calendars = {ALWAYS_OPEN.name: ALWAYS_OPEN}
    for section in table.tables("calendars"):
        calendar = _read_calendar(section)
        if calendar.name in calendars:
            raise ConfigError(
                section.key("name"), f'a name not already used ("{ALWAYS_OPEN.name}" is built in)', calendar.name
            )
        calendars[calendar.name] = calendar
    policies: dict[str, SlaPolicy] = {}
    for section in table.tables("policies"):
        policy = _read_policy(section, calendars)
        if policy.name in policies:
            raise ConfigError(section.key("name"), "a policy name not already used", policy.name)
        policies[policy.name] = policy
    default = table.get("default_policy", str, next(iter(policies), ""), "the name of a [[sla.policies]] entry")
    if default and default not in policies:
        raise ConfigError(table.key("default_policy"), f"one of the policies ({', '.join(policies)})", default)
    table.finish()
    return SlaConfig(fraction, calendars, policies, default or None)


def _read_calendar(table: _Section) -> BusinessCalendar:
    name = _required(table, "name", "a calendar name")
    timezone = _required(table, "timezone", 'an IANA time zone such as "Europe/Helsinki"')
    hours_table = table.table("hours")
    weekly = {index: _read_hours(hours_table, day) for index, day in enumerate(_WEEKDAYS)}
    hours_table.finish()
    holidays = table.get("holidays", list, [], 'a list of dates ("2026-12-24")')
    days = frozenset(_read_date(table.key("holidays"), value) for value in holidays)
    table.finish()
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(table.key("timezone"), 'an IANA time zone such as "Europe/Helsinki"', timezone) from None
    calendar = BusinessCalendar(name, timezone, {k: v for k, v in weekly.items() if v}, days)
    if calendar.is_empty:
        raise ConfigError(table.key("hours"), "at least one day with opening hours", "no open hours")
    return calendar


def _read_hours(table: _Section, day: str) -> tuple[tuple[time, time], ...]:
    expected = 'a list of "HH:MM-HH:MM" intervals in order, not overlapping ("09:00-17:00")'
    spans = table.strings(day, expected)
    intervals: list[tuple[time, time]] = []
    for span in spans:
        interval = _parse_interval(span)
        if interval is None or (intervals and (intervals[-1][1] == MIDNIGHT or interval[0] < intervals[-1][1])):
            raise ConfigError(table.key(day), expected, span)
        intervals.append(interval)
    return tuple(intervals)


def _parse_interval(span: str) -> tuple[time, time] | None:
    match = _HOURS.match(span)
    if not match:
        return None
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        return None
    start, end = time(h1, m1), time(h2 % 24, m2)
    return (start, end) if end == MIDNIGHT or end > start else None


def _read_date(key: str, value: object) -> date:
    # TOML has a date type (holidays = [2026-12-24]); quoted ISO dates are accepted as well.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(key, 'dates such as "2026-12-24"', value)


def _read_policy(table: _Section, calendars: dict[str, BusinessCalendar]) -> SlaPolicy:
    name = _required(table, "name", "a policy name")
    calendar_name = table.get("calendar", str, ALWAYS_OPEN.name, "the name of a [[sla.calendars]] entry")
    if calendar_name not in calendars:
        raise ConfigError(table.key("calendar"), f"one of the calendars ({', '.join(calendars)})", calendar_name)
    day = calendars[calendar_name].day_length
    targets = {priority: _read_targets(table.table(priority.value), day) for priority in Priority}
    table.finish()
    return SlaPolicy(name, calendar_name, targets)


def _read_targets(table: _Section, day: timedelta) -> SlaTargets:
    expected = 'a business duration such as "30m", "4h", "2d" or "1d 4h" (d = the calendar\'s longest day)'
    parse: Callable[[Any], timedelta | None] = lambda value: parse_duration(value, day)  # noqa: E731
    targets = SlaTargets(
        first_response=table.convert("first_response", None, expected, parse),
        next_response=table.convert("next_response", None, expected, parse),
        resolution=table.convert("resolution", None, expected, parse),
    )
    table.finish()
    return targets


def parse_duration(value: object, day: timedelta) -> timedelta | None:
    """ "1d 4h" -> day + 4 h; "h" and "m" are business hours and minutes, "d" is `day`. None if bad."""
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match or not any(match.groups()):
        return None
    days, hours, minutes = (int(part or 0) for part in match.groups())
    duration = day * days + timedelta(hours=hours, minutes=minutes)
    return duration if duration > timedelta(0) else None


# --- [lifecycle], [autoreply], [priority], [escalation] ---------------------------------------


def _read_lifecycle(table: _Section, known: _Known) -> LifecycleConfig:
    pending, resolved = _read_days(table, (DEFAULT_PENDING_DAYS, DEFAULT_RESOLVED_DAYS))
    queues: dict[str, tuple[int | None, int | None]] = {}
    for section in table.tables("queues"):
        queue = _required(section, "queue", "a queue name")
        if queue not in known.queues:
            raise ConfigError(section.key("queue"), f"a configured queue ({', '.join(sorted(known.queues))})", queue)
        queues[queue] = _read_days(section, (pending, resolved))
        section.finish()
    table.finish()
    return LifecycleConfig(pending, resolved, queues)


def _read_days(table: _Section, defaults: tuple[int | None, int | None]) -> tuple[int | None, int | None]:
    expected = "a whole number of days (0: never)"
    pending = table.convert("pending_auto_resolve_days", defaults[0] or 0, expected, _non_negative)
    resolved = table.convert("resolved_auto_close_days", defaults[1] or 0, expected, _non_negative)
    return pending or None, resolved or None


def _read_autoreply(table: _Section, known: _Known) -> AutoReplyConfig:
    template = table.get("template", str, "acknowledgement", "a template name")
    if "template" in table.data and template not in known.templates:
        raise ConfigError(table.key("template"), f"a known template ({', '.join(sorted(known.templates))})", template)
    config = AutoReplyConfig(
        enabled=table.get("enabled", bool, True, "true or false"),
        per_sender_per_hour=table.convert(
            "per_sender_per_hour", DEFAULT_PER_SENDER_PER_HOUR, "a positive integer", _positive
        ),
        per_ticket_per_day=table.convert(
            "per_ticket_per_day", DEFAULT_PER_TICKET_PER_DAY, "a positive integer", _positive
        ),
        template=template,
    )
    table.finish()
    return config


def _read_priority(table: _Section) -> PriorityConfig:
    senders = table.strings("vip_senders", "a list of email addresses")
    if not all("@" in sender for sender in senders):
        raise ConfigError(table.key("vip_senders"), "a list of email addresses", list(senders))
    config = PriorityConfig(
        vip_senders=frozenset(sender.lower() for sender in senders),
        vip_domains=frozenset(
            domain.lower().lstrip("@") for domain in table.strings("vip_domains", "a list of domains")
        ),
        header_max=table.convert("header_max", Priority.HIGH, _PRIORITIES_TEXT, _priority),
        use_default_keywords=table.get("use_default_keywords", bool, True, "true or false"),
    )
    table.finish()
    return config


def _read_escalation(table: _Section) -> EscalationConfig:
    expected = f'"{QUEUE_AGENTS}" or a list of email addresses (and/or "{QUEUE_AGENTS}")'
    raw = table.data.get("notify", [QUEUE_AGENTS])
    notify = (raw,) if isinstance(raw, str) else raw
    if not isinstance(notify, list | tuple) or not all(
        isinstance(item, str) and (item == QUEUE_AGENTS or "@" in item) for item in notify
    ):
        raise ConfigError(table.key("notify"), expected, raw)
    table.used.add("notify")
    config = EscalationConfig(
        notify=tuple(item.strip().lower() for item in notify),
        raise_priority=table.get("raise_priority", bool, True, "true or false"),
        tag=table.get("tag", str, "sla-breached", 'a tag, or "" for none').strip(),
    )
    table.finish()
    return config


# --- [[rules]] -------------------------------------------------------------------------------


def _read_rules(tables: list[_Section], known: _Known) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    for table in tables:
        name = _required(table, "name", "a rule name")
        if any(rule.name == name for rule in rules):
            raise ConfigError(table.key("name"), "a rule name not already used", name)
        conditions = tuple(_read_condition(section) for section in table.tables("conditions"))
        actions = [_read_action(section, known) for section in table.tables("actions")]
        if table.get("stop", bool, False, "true or false"):
            actions.append(Action(ActionKind.STOP))
        if not actions:
            raise ConfigError(table.key("actions"), "at least one action (or stop = true)", [])
        table.finish()
        rules.append(Rule(name, conditions, tuple(actions)))
    return tuple(rules)


def _read_condition(table: _Section) -> Condition:
    name = _required(table, "field", _FIELDS_TEXT)
    if not is_known_field(name):
        raise ConfigError(table.key("field"), _FIELDS_TEXT, name)
    operators = ", ".join(Operator)
    op = table.convert("op", None, f"one of {operators}", lambda v: Operator(v) if v in list(Operator) else None)
    if op is None:
        raise ConfigError(table.key("op"), f"one of {operators} (the key is required)")
    negate = table.get("not", bool, False, "true or false")
    value = _condition_value(table, name, op)
    table.finish()
    try:
        return Condition(name, op, value, negate)
    except ValueError as error:
        expected = "a valid regular expression" if op is Operator.MATCHES else "words or phrases with letters"
        raise ConfigError(table.key("value"), expected, str(error)) from None


def _condition_value(table: _Section, name: str, op: Operator) -> str | tuple[str, ...]:
    table.used.add("value")
    value = table.data.get("value")
    if op is Operator.CONTAINS_ANY:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise ConfigError(table.key("value"), "a non-empty list of words or phrases", value)
        return tuple(value)
    if isinstance(value, bool) and name in ("is_reply", "has_attachment") and op is Operator.EQUALS:
        return "true" if value else "false"
    if not isinstance(value, str) or (op is not Operator.MATCHES and not value.strip()):
        raise ConfigError(table.key("value"), "a text value (the key is required)", value)
    if op is Operator.EQUALS and name == "priority" and _priority(value) is None:
        raise ConfigError(table.key("value"), _PRIORITIES_TEXT, value)
    return value


def _read_action(table: _Section, known: _Known) -> Action:
    if len(table.data) != 1:
        raise ConfigError(table.path, 'a table with exactly one action, such as { add_tag = "x" }', table.data)
    name, value = next(iter(table.data.items()))
    table.used.add(name)
    key = table.key(name)
    if name not in list(ActionKind):
        raise ConfigError(key, f"an action: one of {', '.join(ActionKind)}", "unknown action")
    kind = ActionKind(name)
    if kind in (ActionKind.RAISE_PRIORITY, ActionKind.NO_AUTO_REPLY, ActionKind.STOP):
        if value is not True:
            raise ConfigError(key, "true", value)
        return Action(kind)
    choices = _action_choices(kind, known)
    listed = "a tag without spaces or commas" if choices is None else f"one of {', '.join(sorted(choices)) or '(none)'}"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, listed, value)
    # Addresses and priorities are case-insensitive; queue, policy and template names are not.
    text = value.strip().lower() if kind in (ActionKind.ASSIGN, ActionKind.SET_PRIORITY) else value.strip()
    bad_tag = choices is None and any(char.isspace() or char == "," for char in text)
    if bad_tag or (choices is not None and text not in choices):
        raise ConfigError(key, listed, value)
    return Action(kind, text)


def _action_choices(kind: ActionKind, known: _Known) -> frozenset[str] | None:
    """The values an action accepts; None: free text (a tag)."""
    return {
        ActionKind.SET_PRIORITY: frozenset(Priority),
        ActionKind.SET_QUEUE: known.queues,
        ActionKind.ASSIGN: known.agents | {ROUND_ROBIN},
        ActionKind.SET_SLA: known.policies,
        ActionKind.AUTO_REPLY: known.templates,
    }.get(kind)


# --- small parsers ---------------------------------------------------------------------------


def _required(table: _Section, name: str, expected: str) -> str:
    value = table.get(name, str, "", expected)
    if not value.strip():
        raise ConfigError(table.key(name), f"{expected} (the key is required)")
    return value.strip()


def _priority(value: Any) -> Priority | None:
    return Priority(value.lower()) if isinstance(value, str) and value.lower() in list(Priority) else None


def _fraction(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1
    return float(value) if ok else None


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _non_negative(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
