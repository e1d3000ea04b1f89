"""SLA due times in business hours: first and next response, resolution, pauses, warnings, words."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mailgate.domain.ticket import Priority, TicketStatus
from mailgate.rules.business_hours import ALWAYS_OPEN, BusinessCalendar
from mailgate.rules.sla import (
    SlaDue,
    SlaPolicy,
    SlaTarget,
    SlaTargets,
    TicketTimeline,
    compute_due,
    compute_warnings,
    describe_duration,
    describe_target,
    warning_time,
)

HELSINKI = ZoneInfo("Europe/Helsinki")
OFFICE = BusinessCalendar(
    "office", "Europe/Helsinki", {day: ((time(9), time(17)),) for day in range(5)}, frozenset({date(2026, 3, 9)})
)
URGENT = SlaTargets(first_response=timedelta(hours=1), next_response=timedelta(hours=2), resolution=timedelta(hours=8))
H = timedelta(hours=1)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A time in March 2026, Helsinki: the 6th is a Friday, the 9th a holiday Monday."""
    return datetime(2026, 3, day, hour, minute, tzinfo=HELSINKI)


def timeline(**changes: Any) -> TicketTimeline:
    """An open ticket created Tuesday 09:00, changed as given."""
    base = TicketTimeline(created_at=local(10, 9), last_customer_message_at=local(10, 9), status=TicketStatus.OPEN)
    return replace(base, **changes)


def test_friday_evening_urgent_ticket_with_monday_holiday() -> None:
    """Created Friday 17:55, 1 h first response, Monday a holiday: due Tuesday 10:00 local."""
    new = timeline(created_at=local(6, 17, 55), last_customer_message_at=local(6, 17, 55), status=TicketStatus.NEW)
    due = compute_due(new, URGENT, OFFICE)
    assert due.first_response_due == local(10, 10)
    assert due.resolution_due == local(10, 17)
    assert due.next_response_due is None


def test_first_response_met_and_next_response_semantics() -> None:
    """An agent reply clears first response; a customer mail after the last reply starts next response."""
    answered = timeline(first_agent_response_at=local(10, 9, 30), last_agent_reply_at=local(10, 9, 30))
    assert compute_due(answered, URGENT, OFFICE).first_response_due is None
    assert compute_due(answered, URGENT, OFFICE).next_response_due is None
    followed_up = timeline(
        first_agent_response_at=local(10, 9, 30),
        last_agent_reply_at=local(10, 9, 30),
        last_customer_message_at=local(10, 16),
    )
    assert compute_due(followed_up, URGENT, OFFICE).next_response_due == local(11, 10)
    replied_again = timeline(
        first_agent_response_at=local(10, 9, 30),
        last_agent_reply_at=local(10, 16, 5),
        last_customer_message_at=local(10, 16),
    )
    assert compute_due(replied_again, URGENT, OFFICE).next_response_due is None


def test_pending_pauses_extend_due_times() -> None:
    """Two business hours spent pending push every due time two business hours later."""
    paused = timeline(pending_periods=((local(10, 9, 30), local(10, 11, 30)),))
    due = compute_due(paused, URGENT, OFFICE)
    assert due.first_response_due == local(10, 12)
    assert due.resolution_due == local(11, 11)


def test_pending_over_a_closed_night_counts_only_business_time() -> None:
    """Pending from 16:00 to 10:00 the next morning pauses two business hours, not eighteen."""
    paused = timeline(pending_periods=((local(10, 16), local(11, 10)),))
    assert compute_due(paused, URGENT, OFFICE).resolution_due == local(11, 11)


def test_nothing_is_due_while_pending_resolved_or_unmeasured() -> None:
    """A pending, resolved or closed ticket has no due times, and a target of None gives None."""
    pending = timeline(status=TicketStatus.PENDING, pending_periods=((local(10, 10), None),))
    assert compute_due(pending, URGENT, OFFICE) == SlaDue()
    assert compute_due(timeline(status=TicketStatus.RESOLVED, resolved_at=local(10, 12)), URGENT, OFFICE) == SlaDue()
    assert compute_due(timeline(status=TicketStatus.CLOSED), URGENT, OFFICE) == SlaDue()
    assert compute_due(timeline(), SlaTargets(first_response=H), OFFICE).resolution_due is None


def test_warning_at_eighty_percent_of_business_time() -> None:
    """The warning point is 80% of the business time between start and due, counted in open hours."""
    assert warning_time(local(10, 9), local(10, 14), OFFICE) == local(10, 13)
    assert warning_time(local(10, 16), local(11, 13), OFFICE, 0.5) == local(11, 10, 30)
    warnings = compute_warnings(timeline(pending_periods=((local(10, 9, 30), local(10, 11, 30)),)), URGENT, OFFICE)
    assert warnings.first_response_due == local(10, 11, 48)
    assert warnings.get(SlaTarget.RESOLUTION) == local(11, 9, 24)


def test_policy_gives_empty_targets_for_unlisted_priorities() -> None:
    """A policy without targets for a priority measures nothing for it."""
    policy = SlaPolicy("standard", "office", {Priority.URGENT: URGENT})
    assert policy.for_priority(Priority.URGENT) is URGENT
    assert policy.for_priority(Priority.LOW) == SlaTargets()


@pytest.mark.parametrize(
    ("duration", "language", "options", "words"),
    [
        (H, "en", {}, "1 hour"),
        (8 * H, "en", {"business": True}, "8 business hours"),
        (16 * H, "en", {"business": True, "day_length": 8 * H}, "2 business days"),
        (timedelta(minutes=30), "en", {"business": True}, "30 minutes"),
        (H, "fi", {}, "1 tunti"),
        (8 * H, "fi", {"business": True}, "8 työtuntia"),
        (8 * H, "fi", {"business": True, "within": True}, "8 työtunnin"),
        (16 * H, "fi", {"business": True, "day_length": 8 * H}, "2 työpäivää"),
        (H, "lt", {}, "1 valanda"),
        (8 * H, "lt", {"business": True}, "8 darbo valandos"),
        (12 * H, "lt", {"business": True}, "12 darbo valandų"),
        (21 * H, "lt", {"business": True}, "21 darbo valanda"),
        (8 * H, "lt", {"business": True, "within": True}, "8 darbo valandas"),
        (H, "lt", {"within": True}, "1 valandą"),
        (timedelta(days=2), "de", {}, "2 days"),
    ],
)
def test_describe_duration(duration: timedelta, language: str, options: dict[str, Any], words: str) -> None:
    """Durations read naturally in English, Finnish and Lithuanian, with the right number forms."""
    assert describe_duration(duration, language, **options) == words


def test_describe_target_follows_the_calendar() -> None:
    """A 24/7 policy says plain hours; an office policy says business hours and days."""
    assert describe_target(H, ALWAYS_OPEN, "en") == "1 hour"
    assert describe_target(H, OFFICE, "en") == "1 business hour"
    assert describe_target(16 * H, OFFICE, "en") == "2 business days"
