"""Business-hours arithmetic: add business time to an instant, measure it between two (tier 1).

A calendar is a time zone, weekly opening hours in local wall-clock time and holiday dates; the
instants in and out are aware datetimes (UTC out), so DST changes are handled by zoneinfo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# An interval ending at 00:00 ends at midnight after its start: that is how "24:00" is written.
MIDNIGHT = time(0)
_DAY = timedelta(days=1)

Interval = tuple[time, time]


@dataclass(frozen=True)
class BusinessCalendar:
    """Opening hours: `weekly` maps a weekday (0 = Monday) to its open intervals, local time.

    Intervals must be sorted and must not overlap; an end of 00:00 means midnight (24:00), so
    `(time(0), time(0))` is a whole day. Days missing from `weekly` and holidays are closed.
    """

    name: str
    timezone: str
    weekly: dict[int, tuple[Interval, ...]] = field(hash=False)
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {self.timezone!r}") from error
        for weekday, intervals in self.weekly.items():
            if weekday not in range(7):
                raise ValueError(f"weekday {weekday} is not 0 (Monday) to 6 (Sunday)")
            _check_intervals(intervals)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # ZoneInfo caches instances by key

    @property
    def is_empty(self) -> bool:
        return not any(self.weekly.values())

    @property
    def always_open(self) -> bool:
        whole_day = ((MIDNIGHT, MIDNIGHT),)
        return not self.holidays and all(self.weekly.get(day) == whole_day for day in range(7))

    @property
    def day_length(self) -> timedelta:
        """The open hours of the longest working day (wall clock): 8 h for 09-17, 24 h for 24/7."""
        return max((_wall_length(intervals) for intervals in self.weekly.values()), default=timedelta(0))

    def is_open_day(self, day: date) -> bool:
        return bool(self.weekly.get(day.weekday())) and day not in self.holidays

    def next_open_day(self, day: date) -> date:
        """The first open day after `day`; closed days cost no time-zone work."""
        day += _DAY
        while not self.is_open_day(day):
            day += _DAY
        return day

    def open_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's open intervals as UTC instants (empty on a closed day)."""
        if not self.is_open_day(day):
            return []
        zone = self.zone
        result = []
        for start, end in self.weekly[day.weekday()]:
            end_day = day + _DAY if end == MIDNIGHT else day
            opens = datetime.combine(day, start, zone).astimezone(UTC)
            closes = datetime.combine(end_day, end, zone).astimezone(UTC)
            if closes > opens:  # an interval inside a skipped DST hour has no length
                result.append((opens, closes))
        return result


def _check_intervals(intervals: tuple[Interval, ...]) -> None:
    previous_end: time | None = None
    for start, end in intervals:
        if start.tzinfo is not None or end.tzinfo is not None:
            raise ValueError("opening hours are local wall-clock times without a time zone")
        if end != MIDNIGHT and end <= start:
            raise ValueError(f"interval {start}-{end} ends before it starts")
        if previous_end is not None and (previous_end == MIDNIGHT or start < previous_end):
            raise ValueError(f"interval {start}-{end} overlaps or precedes the one before it")
        previous_end = end


def _wall_length(intervals: tuple[Interval, ...]) -> timedelta:
    total = timedelta(0)
    for start, end in intervals:
        end_day = 1 if end == MIDNIGHT else 0
        total += datetime.combine(date(2000, 1, 1 + end_day), end) - datetime.combine(date(2000, 1, 1), start)
    return total


ALWAYS_OPEN = BusinessCalendar(name="always", timezone="UTC", weekly={day: ((MIDNIGHT, MIDNIGHT),) for day in range(7)})


def _check(instant: datetime, calendar: BusinessCalendar) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{instant!r} is a naive datetime; business time needs aware datetimes")
    if calendar.is_empty:
        raise ValueError(f"calendar {calendar.name!r} has no open hours")
    return instant.astimezone(UTC)


def add_business_time(start: datetime, duration: timedelta, calendar: BusinessCalendar) -> datetime:
    """The earliest instant by which `duration` of open time has passed since `start` (UTC).

    A zero duration gives `start` itself. Raises ValueError for a negative duration, a naive
    datetime or a calendar without open hours (which could never reach any duration).
    """
    cursor = _check(start, calendar)
    if duration < timedelta(0):
        raise ValueError("a business duration cannot be negative")
    if duration == timedelta(0) or calendar.always_open:
        return cursor + duration
    remaining = duration
    day = cursor.astimezone(calendar.zone).date()
    while True:
        for opens, closes in calendar.open_intervals(day):
            if closes <= cursor:
                continue
            begin = max(opens, cursor)
            if remaining <= closes - begin:
                return begin + remaining
            remaining -= closes - begin
        day = calendar.next_open_day(day)


def business_time_between(a: datetime, b: datetime, calendar: BusinessCalendar) -> timedelta:
    """The open time from `a` to `b`; when `a` is after `b` it is the same amount, negated.

    So `business_time_between(due, now, c)` is how far past due a ticket is (negative: time left).
    """
    start, end = _check(a, calendar), _check(b, calendar)
    if start > end:
        return -business_time_between(b, a, calendar)
    if calendar.always_open:
        return end - start
    zone = calendar.zone
    day, last_day = start.astimezone(zone).date(), end.astimezone(zone).date()
    if not calendar.is_open_day(day):
        day = calendar.next_open_day(day)
    total = timedelta(0)
    while day <= last_day:
        for opens, closes in calendar.open_intervals(day):
            overlap = min(closes, end) - max(opens, start)
            if overlap > timedelta(0):
                total += overlap
        day = calendar.next_open_day(day)
    return total
