"""The rules configuration: the example and default files load; a bad rule names its index and problem."""

from __future__ import annotations

import itertools
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mailgate.domain.ticket import Priority
from mailgate.errors import ConfigError
from mailgate.rules.config_schema import RulesConfig, read_default_rules, read_rules_section
from mailgate.rules.engine import ROUND_ROBIN, ActionKind

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
TEMPLATES = {"acknowledgement", "holiday"}
AGENTS = {"agent@example.com", "Bob@Example.com"}
QUEUES = {"support", "billing"}
_NAMES = itertools.count()


def read(data: dict[str, Any]) -> RulesConfig:
    return read_rules_section(data, TEMPLATES, AGENTS, QUEUES)


def rule(*conditions: dict[str, Any], actions: list[dict[str, Any]] | None = None, name: str = "") -> dict[str, Any]:
    """A [[rules]] table; each gets its own name unless one is given."""
    return {
        "name": name or f"rule {next(_NAMES)}",
        "conditions": list(conditions),
        "actions": actions or [{"add_tag": "x"}],
    }


def test_example_file_loads() -> None:
    """config/rules.example.toml is valid, and "d" is the calendar's working day."""
    config = read(tomllib.loads((CONFIG_DIR / "rules.example.toml").read_text(encoding="utf-8")))
    standard = config.sla.policies["standard"]
    assert config.sla.default_policy == "standard" and config.sla.calendar_for(standard).name == "office"
    assert standard.for_priority(Priority.URGENT).resolution == timedelta(hours=8)
    assert config.sla.policies["premium"].for_priority(Priority.HIGH).resolution == timedelta(hours=24)
    assert config.lifecycle.for_queue("billing") == (14, 7) and config.lifecycle.for_queue("support") == (7, 7)
    assert config.rules[0].name == "outage reports to the on-call rota"
    assert config.rules[0].actions[-1].value == ROUND_ROBIN
    assert config.rules[-1].actions[-1].kind is ActionKind.STOP


def test_defaults_without_any_section() -> None:
    """With nothing configured: no SLA policy, 7-day timers, 3 replies an hour, default keywords on."""
    config = read({"storage": {"ignored": "by this reader"}})
    assert config.sla.policies == {} and config.sla.default_policy is None
    assert config.lifecycle.for_queue("support") == (7, 7)
    assert (config.autoreply.per_sender_per_hour, config.autoreply.per_ticket_per_day) == (3, 5)
    assert config.priority.header_max == Priority.HIGH
    assert config.all_rules() == read_default_rules()


def test_shipped_default_rules_are_the_package_file() -> None:
    """config/rules.default.toml is the package's default_rules.toml, and it loads."""
    assert (CONFIG_DIR / "rules.default.toml").resolve().name == "default_rules.toml"
    assert len(read_default_rules()) == 4


def test_durations_and_calendars() -> None:
    """'1d 4h' under a 9-17 calendar is 12 business hours; 0 lifecycle days means never."""
    config = read({
        "sla": {
            "calendars": [{"name": "office", "timezone": "Europe/Helsinki", "hours": {"mon": ["09:00-17:00"]},
                           "holidays": ["2026-12-24"]}],
            "policies": [{"name": "p", "calendar": "office", "urgent": {"first_response": "1d 4h"}}],
        },
        "lifecycle": {"pending_auto_resolve_days": 0},
    })  # fmt: skip
    assert config.sla.policies["p"].for_priority(Priority.URGENT).first_response == timedelta(hours=12)
    assert config.lifecycle.for_queue("support") == (None, 7)


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"rules": [rule(), rule(), rule(), rule({"field": "size", "op": "equals", "value": "1"})]},
         "rules[3].conditions[0].field", "one of from, from_domain"),
        ({"rules": [rule(), rule(), {"name": "x", "conditions": [{"field": "subject", "op": "contains", "value": "a"},
                                                                  {"field": "body", "op": "matches", "value": "("}],
                                     "actions": [{"stop": True}]}]},
         "rules[2].conditions[1].value", "a valid regular expression"),
        ({"rules": [rule(actions=[{"frobnicate": "x"}])]}, "rules[0].actions[0].frobnicate", "an action: one of"),
        ({"rules": [rule(actions=[{"assign": "stranger@example.com"}])]}, "rules[0].actions[0].assign",
         "agent@example.com"),
        ({"rules": [rule(actions=[{"auto_reply": "nonexistent"}])]}, "rules[0].actions[0].auto_reply", "holiday"),
        ({"rules": [rule(actions=[{"set_sla": "gold"}])]}, "rules[0].actions[0].set_sla", "one of"),
        ({"rules": [rule(actions=[{"set_priority": "critical"}])]}, "rules[0].actions[0].set_priority", "urgent"),
        ({"rules": [rule(actions=[{"set_queue": "sales"}])]}, "rules[0].actions[0].set_queue", "billing"),
        ({"rules": [rule(actions=[{"add_tag": "two words"}])]}, "rules[0].actions[0].add_tag", "without spaces"),
        ({"rules": [rule(actions=[{"add_tag": "a", "stop": True}])]}, "rules[0].actions[0]", "exactly one action"),
        ({"rules": [rule({"field": "subject", "op": "like", "value": "x"})]}, "rules[0].conditions[0].op",
         "contains_any"),
        ({"rules": [rule({"field": "subject", "op": "contains_any", "value": "x"})]}, "rules[0].conditions[0].value",
         "a non-empty list"),
        ({"rules": [rule({"field": "header:", "op": "contains", "value": "x"})]}, "rules[0].conditions[0].field",
         "header:NAME"),
        ({"rules": [rule({"field": "subject", "op": "contains", "value": "x", "negate": True})]},
         "rules[0].conditions[0].negate", "known keys"),
        ({"rules": [{**rule(), "priority": 1}]}, "rules[0].priority", "known keys"),
        ({"rules": [rule(name="a"), rule(name="a")]}, "rules[1].name", "not already used"),
        ({"rules": [{"name": "empty"}]}, "rules[0].actions", "at least one action"),
        ({"sla": {"policies": [{"name": "p", "urgent": {"first_response": "soon"}}]}},
         "sla.policies[0].urgent.first_response", "30m"),
        ({"sla": {"policies": [{"name": "p", "calendar": "office"}]}}, "sla.policies[0].calendar", "always"),
        ({"sla": {"calendars": [{"name": "c", "timezone": "Mars/Base", "hours": {"mon": ["09:00-17:00"]}}]}},
         "sla.calendars[0].timezone", "IANA"),
        ({"sla": {"calendars": [{"name": "c", "timezone": "UTC", "hours": {"mon": ["17:00-09:00"]}}]}},
         "sla.calendars[0].hours.mon", "HH:MM-HH:MM"),
        ({"sla": {"calendars": [{"name": "c", "timezone": "UTC", "hours": {}}]}}, "sla.calendars[0].hours",
         "at least one day"),
        ({"sla": {"warning_fraction": 1.5}}, "sla.warning_fraction", "between 0 and 1"),
        ({"sla": {"default_policy": "none"}}, "sla.default_policy", "one of the policies"),
        ({"lifecycle": {"queues": [{"queue": "sales"}]}}, "lifecycle.queues[0].queue", "a configured queue"),
        ({"autoreply": {"per_sender_per_hour": 0}}, "autoreply.per_sender_per_hour", "a positive integer"),
        ({"priority": {"header_max": "highest"}}, "priority.header_max", "urgent"),
        ({"escalation": {"notify": "everyone"}}, "escalation.notify", "queue_agents"),
    ],
)  # fmt: skip
def test_bad_configuration_names_the_key(data: dict[str, Any], key: str, expected: str) -> None:
    """Each bad rule or setting stops start-up with its key path and what was expected."""
    with pytest.raises(ConfigError) as error:
        read(data)
    assert error.value.key == key
    assert expected in str(error.value)


def test_bad_regex_error_carries_the_regex_problem() -> None:
    """The ConfigError for a bad regex quotes the regex engine's explanation as the value found."""
    with pytest.raises(ConfigError) as error:
        read({"rules": [rule({"field": "subject", "op": "matches", "value": "[a-"})]})
    assert "unterminated character set" in str(error.value.got)


def test_agent_addresses_and_booleans_are_normalised() -> None:
    """assign compares addresses case-insensitively; is_reply takes a TOML boolean."""
    config = read({"rules": [rule({"field": "is_reply", "op": "equals", "value": True},
                                  actions=[{"assign": "BOB@example.com"}])]})  # fmt: skip
    assert config.rules[0].actions[0].value == "bob@example.com"
    assert config.rules[0].conditions[0].value == "true"
