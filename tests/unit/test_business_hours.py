"""Business-hours arithmetic: weekends, holidays, DST and long durations."""

from __future__ import annotations

import time as clock
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailgate.rules.business_hours import (
    ALWAYS_OPEN,
    MIDNIGHT,
    BusinessCalendar,
    add_business_time,
    business_time_between,
)

HELSINKI = ZoneInfo("Europe/Helsinki")


def office(opens: int = 9, closes: int = 17, holidays: frozenset[date] = frozenset()) -> BusinessCalendar:
    hours = ((time(opens), time(closes)),)
    return BusinessCalendar("office", "Europe/Helsinki", {day: hours for day in range(5)}, holidays)


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=HELSINKI)


FRIDAY_17_55 = local(2026, 3, 6, 17, 55)


def test_friday_evening_ticket_is_due_monday_at_ten() -> None:
    """Friday 17:55 is after a 9-17 day, so a 1 h target counts from Monday 09:00: due 10:00 local."""
    due = add_business_time(FRIDAY_17_55, timedelta(hours=1), office())
    assert due == local(2026, 3, 9, 10, 0)
    assert due.tzinfo is UTC


def test_friday_17_55_under_9_to_18_is_due_monday_09_55() -> None:
    """Under 9-18 hours, five minutes count on Friday and the other 55 on Monday: due 09:55."""
    assert add_business_time(FRIDAY_17_55, timedelta(hours=1), office(9, 18)) == local(2026, 3, 9, 9, 55)


def test_monday_holiday_moves_the_due_time_to_tuesday() -> None:
    """With Monday a holiday, the same tickets are due on Tuesday at the same minute."""
    holiday = frozenset({date(2026, 3, 9)})
    assert add_business_time(FRIDAY_17_55, timedelta(hours=1), office(holidays=holiday)) == local(2026, 3, 10, 10, 0)
    assert add_business_time(FRIDAY_17_55, timedelta(hours=1), office(9, 18, holiday)) == local(2026, 3, 10, 9, 55)


def test_time_inside_opening_hours_and_around_a_lunch_break() -> None:
    """Business time flows through open hours only, skipping a lunch break and the night."""
    lunch = BusinessCalendar("lunch", "Europe/Helsinki", {1: ((time(9), time(12)), (time(13), time(17)))})
    assert add_business_time(local(2026, 3, 10, 11, 30), timedelta(hours=1), lunch) == local(2026, 3, 10, 13, 30)
    assert add_business_time(local(2026, 3, 10, 10), timedelta(hours=8), office()) == local(2026, 3, 11, 10)
    assert add_business_time(local(2026, 3, 10, 16), timedelta(hours=1), office()) == local(2026, 3, 10, 17)


def test_dst_week_uses_local_wall_clock_hours() -> None:
    """Across the spring change (29 March 2026) a day is still 09-17 local, now three hours ahead of UTC."""
    due = add_business_time(local(2026, 3, 27, 16), timedelta(hours=2), office())
    assert due == local(2026, 3, 30, 10)
    assert due == datetime(2026, 3, 30, 7, tzinfo=UTC)
    assert business_time_between(local(2026, 3, 23, 0), local(2026, 4, 6, 0), office()) == timedelta(hours=80)


def test_dst_changes_the_length_of_a_24_hour_day() -> None:
    """A day open around the clock lasts 23 real hours in spring and 25 in autumn."""
    whole_day = ((MIDNIGHT, MIDNIGHT),)
    calendar = BusinessCalendar(
        "nonstop", "Europe/Helsinki", {d: whole_day for d in range(7)}, frozenset({date(2026, 1, 1)})
    )
    assert business_time_between(local(2026, 3, 29, 0), local(2026, 3, 30, 0), calendar) == timedelta(hours=23)
    assert business_time_between(local(2026, 10, 25, 0), local(2026, 10, 26, 0), calendar) == timedelta(hours=25)
    assert add_business_time(local(2026, 3, 28, 12), timedelta(hours=24), calendar) == local(2026, 3, 29, 13)


def test_between_is_negative_when_reversed() -> None:
    """From a later to an earlier instant the business time is the same amount, negated."""
    a, b = local(2026, 3, 9, 9), local(2026, 3, 9, 12)
    assert business_time_between(a, b, office()) == timedelta(hours=3)
    assert business_time_between(b, a, office()) == -timedelta(hours=3)
    assert business_time_between(local(2026, 3, 7, 9), local(2026, 3, 8, 9), office()) == timedelta(0)


def test_always_open_is_plain_arithmetic() -> None:
    """The 24/7 calendar adds and measures wall time as it is."""
    start = datetime(2026, 3, 6, 17, 55, tzinfo=UTC)
    assert add_business_time(start, timedelta(hours=1), ALWAYS_OPEN) == start + timedelta(hours=1)
    assert business_time_between(start, start + timedelta(days=2), ALWAYS_OPEN) == timedelta(days=2)
    assert ALWAYS_OPEN.day_length == timedelta(hours=24) and office().day_length == timedelta(hours=8)


def test_long_durations_and_long_holidays_are_fast() -> None:
    """400 days of business time and a 90-day closure finish in milliseconds and add up exactly."""
    closure = frozenset(date(2026, 6, 1) + timedelta(days=n) for n in range(90))
    calendar = office(holidays=closure)
    started = clock.perf_counter()
    due = add_business_time(FRIDAY_17_55, timedelta(days=400), calendar)
    assert business_time_between(FRIDAY_17_55, due, calendar) == timedelta(days=400)
    assert clock.perf_counter() - started < 0.5


def test_bad_calendars_and_inputs_raise() -> None:
    """An empty calendar, a naive datetime, a negative duration and overlapping hours are errors."""
    empty = BusinessCalendar("empty", "UTC", {})
    with pytest.raises(ValueError, match="no open hours"):
        add_business_time(FRIDAY_17_55, timedelta(hours=1), empty)
    with pytest.raises(ValueError, match="naive"):
        add_business_time(datetime(2026, 3, 6, 12), timedelta(hours=1), office())
    with pytest.raises(ValueError, match="negative"):
        add_business_time(FRIDAY_17_55, -timedelta(hours=1), office())
    with pytest.raises(ValueError, match="overlaps"):
        BusinessCalendar("x", "UTC", {0: ((time(9), time(12)), (time(11), time(13)))})
    with pytest.raises(ValueError, match="time zone"):
        BusinessCalendar("x", "Mars/Olympus", {0: ((time(9), time(12)),)})
