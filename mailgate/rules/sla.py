"""SLA targets in business time, the due times of one ticket, and durations in words (tier 1).

Due times follow Request Tracker's semantics: first response from creation, next response from
the customer's last unanswered message, resolution from creation; pending time does not count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from mailgate.domain.ticket import Priority, TicketStatus
from mailgate.rules.business_hours import BusinessCalendar, add_business_time, business_time_between

DEFAULT_WARNING_FRACTION = 0.8


class SlaTarget(StrEnum):
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


@dataclass(frozen=True)
class SlaTargets:
    """Business-time allowances; None means the target is not measured."""

    first_response: timedelta | None = None
    next_response: timedelta | None = None
    resolution: timedelta | None = None

    def get(self, target: SlaTarget) -> timedelta | None:
        value: timedelta | None = getattr(self, target.value)
        return value

    def scaled(self, fraction: float) -> SlaTargets:
        """The same targets shortened to a fraction, e.g. the 80% warning points."""
        return SlaTargets(
            *(None if t is None else t * fraction for t in (self.first_response, self.next_response, self.resolution))
        )


@dataclass(frozen=True)
class SlaPolicy:
    """Targets per priority, counted in one calendar's business hours."""

    name: str
    calendar_name: str
    targets: dict[Priority, SlaTargets] = field(hash=False)

    def for_priority(self, priority: Priority) -> SlaTargets:
        return self.targets.get(priority, SlaTargets())


@dataclass(frozen=True, kw_only=True)
class TicketTimeline:
    """What the SLA clock needs of a ticket; all datetimes aware.

    `resolved_at` is set while the ticket is resolved and cleared when it reopens.
    `pending_periods` are the spans the clock stood still: pending, and resolved before a
    reopen; an end of None means the ticket is in that state now.
    """

    created_at: datetime
    first_agent_response_at: datetime | None = None
    last_customer_message_at: datetime
    last_agent_reply_at: datetime | None = None
    resolved_at: datetime | None = None
    status: TicketStatus
    pending_periods: tuple[tuple[datetime, datetime | None], ...] = ()

    @property
    def resolved(self) -> bool:
        return self.resolved_at is not None or self.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED)

    @property
    def paused(self) -> bool:
        return self.status == TicketStatus.PENDING or any(end is None for _, end in self.pending_periods)

    @property
    def awaiting_next_response(self) -> bool:
        """An agent has answered before, and the customer wrote again since the last answer."""
        if self.first_agent_response_at is None:
            return False
        answered = max(self.first_agent_response_at, self.last_agent_reply_at or self.first_agent_response_at)
        return self.last_customer_message_at > answered


@dataclass(frozen=True)
class SlaDue:
    """When each target falls due; None when it is met, not measured, or the clock is paused."""

    first_response_due: datetime | None = None
    next_response_due: datetime | None = None
    resolution_due: datetime | None = None

    def get(self, target: SlaTarget) -> datetime | None:
        value: datetime | None = getattr(self, f"{target.value}_due")
        return value

    def items(self) -> tuple[tuple[SlaTarget, datetime | None], ...]:
        return tuple((target, self.get(target)) for target in SlaTarget)

    @property
    def earliest(self) -> datetime | None:
        """The due time to sort a queue by (`tickets list --sort due`)."""
        return min((due for _, due in self.items() if due is not None), default=None)


def compute_due(timeline: TicketTimeline, targets: SlaTargets, calendar: BusinessCalendar) -> SlaDue:
    """The due times of a ticket now; recompute after every change to the ticket.

    Nothing is due while the ticket is resolved, closed or pending (the clock stands still; the
    due times come back, pushed later by the paused business time, when it leaves pending).
    Next response is measured only after a first agent response; before it, first response is.
    """
    if timeline.resolved or timeline.paused:
        return SlaDue()

    def due(start: datetime, allowance: timedelta | None) -> datetime | None:
        if allowance is None:
            return None
        return _due_with_pauses(start, allowance, timeline.pending_periods, calendar)

    first = due(timeline.created_at, targets.first_response) if timeline.first_agent_response_at is None else None
    following = (
        due(timeline.last_customer_message_at, targets.next_response) if timeline.awaiting_next_response else None
    )
    return SlaDue(first, following, due(timeline.created_at, targets.resolution))


def compute_warnings(
    timeline: TicketTimeline,
    targets: SlaTargets,
    calendar: BusinessCalendar,
    fraction: float = DEFAULT_WARNING_FRACTION,
) -> SlaDue:
    """When each target reaches `fraction` of its allowance, with the same pauses as `compute_due`."""
    return compute_due(timeline, targets.scaled(fraction), calendar)


def _due_with_pauses(
    start: datetime,
    allowance: timedelta,
    pauses: tuple[tuple[datetime, datetime | None], ...],
    calendar: BusinessCalendar,
) -> datetime | None:
    """Business time from `start`, not counting the pauses; None if a pause is still open."""
    cursor, remaining = start, allowance
    for pause_start, pause_end in sorted(pauses, key=lambda pause: pause[0]):
        if pause_end is not None and pause_end <= cursor:
            continue
        pause_start = max(pause_start, cursor)
        candidate = add_business_time(cursor, remaining, calendar)
        if candidate <= pause_start:
            return candidate
        remaining -= business_time_between(cursor, pause_start, calendar)
        if pause_end is None:
            return None
        cursor = pause_end
    return add_business_time(cursor, remaining, calendar)


def warning_time(
    start: datetime, due: datetime, calendar: BusinessCalendar, fraction: float = DEFAULT_WARNING_FRACTION
) -> datetime:
    """The instant `fraction` of the business time from `start` to `due` has passed."""
    return add_business_time(start, business_time_between(start, due, calendar) * fraction, calendar)


# (singular, plural or partitive, "within" form(s)) per unit; Lithuanian has three number forms.
_EN = {"minute": ("minute", "minutes"), "hour": ("hour", "hours"), "day": ("day", "days")}
_FI = {
    "minute": ("minuutti", "minuuttia", "minuutin"),
    "hour": ("tunti", "tuntia", "tunnin"),
    "day": ("päivä", "päivää", "päivän"),
}
_LT_NOMINATIVE = {
    "minute": ("minutė", "minutės", "minučių"),
    "hour": ("valanda", "valandos", "valandų"),
    "day": ("diena", "dienos", "dienų"),
}
_LT_ACCUSATIVE = {
    "minute": ("minutę", "minutes", "minučių"),
    "hour": ("valandą", "valandas", "valandų"),
    "day": ("dieną", "dienas", "dienų"),
}


def describe_duration(
    duration: timedelta,
    language: str,
    *,
    business: bool = False,
    day_length: timedelta | None = None,
    within: bool = False,
) -> str:
    """A duration in words: "1 hour", "8 business hours", "2 business days"; fi and lt too.

    The largest unit that divides the duration exactly is used (days only when `day_length` is
    given or the time is not business time), rounded up to whole minutes; minutes are never
    called business minutes. `within` gives the form that follows "within" in the acknowledgement
    templates: Finnish genitive ("8 työtunnin kuluessa"), Lithuanian accusative ("per 8 darbo
    valandas"). Unknown languages get English.
    """
    minutes = max(0, math.ceil(duration.total_seconds() / 60))
    day = day_length if business else (day_length or timedelta(days=1))
    day_minutes = int(day.total_seconds() // 60) if day else 0
    if day_minutes and minutes >= day_minutes and minutes % day_minutes == 0:
        count, unit = minutes // day_minutes, "day"
    elif minutes >= 60 and minutes % 60 == 0:
        count, unit = minutes // 60, "hour"
    else:
        count, unit = minutes, "minute"
    business = business and unit != "minute"
    if language == "fi":
        return f"{count} {_finnish(count, unit, business, within)}"
    if language == "lt":
        return f"{count} {_lithuanian(count, unit, business, within)}"
    word = _EN[unit][0 if count == 1 else 1]
    return f"{count} business {word}" if business else f"{count} {word}"


def _finnish(count: int, unit: str, business: bool, within: bool) -> str:
    # One takes the nominative, other numbers the partitive; "kuluessa" wants the genitive.
    singular, partitive, genitive = _FI[unit]
    word = genitive if within else singular if count == 1 else partitive
    return f"työ{word}" if business else word


def _lithuanian(count: int, unit: str, business: bool, within: bool) -> str:
    # 1, 21, 31 ... singular; 2-9, 22-29 ... plural; 10-20, 30 ... genitive plural.
    forms = (_LT_ACCUSATIVE if within else _LT_NOMINATIVE)[unit]
    if count % 10 == 1 and count % 100 != 11:
        word = forms[0]
    elif 2 <= count % 10 <= 9 and not 12 <= count % 100 <= 19:
        word = forms[1]
    else:
        word = forms[2]
    return f"darbo {word}" if business else word


def describe_target(duration: timedelta, calendar: BusinessCalendar, language: str, *, within: bool = False) -> str:
    """A target in words as the calendar counts it: plain hours for 24/7, business hours otherwise."""
    business = not calendar.always_open
    return describe_duration(
        duration, language, business=business, day_length=calendar.day_length if business else None, within=within
    )
