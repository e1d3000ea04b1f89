"""Help desk figures from ticket histories: pure aggregation, no I/O (the queries are in store/reports.py).

Definitions: first response is the earliest `agent_replied` event or `first_agent_response_at`;
resolution the first status change to resolved or closed; a target counts as met when that moment
is at or before the due time on the ticket (or, once cleared, the due time of its SLA escalation).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

RESOLVED_STATES = frozenset({"resolved", "closed"})
ACTIVE_STATES = ("new", "open", "answered", "pending")
PRIORITIES = ("low", "medium", "high", "urgent")
CHANNELS = ("smtp", "lmtp", "pipe", "imap", "other")
ESCALATION = "sla_escalation"
AGE_BUCKETS: tuple[tuple[str, timedelta], ...] = (
    ("<1d", timedelta(days=1)),
    ("1-3d", timedelta(days=3)),
    ("3-7d", timedelta(days=7)),
    ("7-30d", timedelta(days=30)),
    (">30d", timedelta.max),
)
RESPONSE_BUCKETS: tuple[tuple[str, timedelta], ...] = (
    ("<1h", timedelta(hours=1)),
    ("1-4h", timedelta(hours=4)),
    ("4-8h", timedelta(hours=8)),
    ("8-24h", timedelta(hours=24)),
    ("1-3d", timedelta(days=3)),
    (">3d", timedelta.max),
)
_PERIOD = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


@dataclass(frozen=True)
class EventRecord:
    kind: str
    created_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TicketHistory:
    """One ticket as the report needs it; `channel` is the inbound source of its first message."""

    number: int
    created_at: datetime
    queue: str
    priority: str
    status: str
    channel: str
    first_agent_response_at: datetime | None = None
    first_response_due: datetime | None = None
    resolution_due: datetime | None = None
    events: tuple[EventRecord, ...] = ()


@dataclass(frozen=True)
class OpenTicket:
    status: str
    created_at: datetime


@dataclass(frozen=True)
class Durations:
    """Elapsed seconds over the tickets that reached the moment; None when none did."""

    count: int
    median_seconds: float | None
    p90_seconds: float | None


@dataclass(frozen=True)
class Compliance:
    measured: int
    met: int

    @property
    def rate(self) -> float | None:
        return self.met / self.measured if self.measured else None


@dataclass(frozen=True)
class Report:
    generated_at: datetime
    since: datetime
    queue: str | None
    tickets: int
    by_day: tuple[tuple[str, int], ...]
    by_channel: dict[str, int]
    by_priority: dict[str, int]
    first_response: Durations
    resolution: Durations
    response_distribution: tuple[tuple[str, int], ...]
    sla: dict[str, Compliance]
    escalated: int
    reopened: int
    backlog: dict[str, dict[str, int]]

    @property
    def escalation_rate(self) -> float | None:
        return self.escalated / self.tickets if self.tickets else None

    @property
    def reopen_rate(self) -> float | None:
        return self.reopened / self.tickets if self.tickets else None

    def as_json(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "since": self.since.isoformat(),
            "queue": self.queue,
            "tickets": self.tickets,
            "volume": {
                "by_day": [{"day": day, "tickets": count} for day, count in self.by_day],
                "by_channel": self.by_channel,
                "by_priority": self.by_priority,
            },
            "first_response": vars(self.first_response),
            "resolution": vars(self.resolution),
            "first_response_distribution": dict(self.response_distribution),
            "sla": {
                target: {"measured": c.measured, "met": c.met, "compliance": c.rate} for target, c in self.sla.items()
            },
            "escalated": self.escalated,
            "escalation_rate": self.escalation_rate,
            "reopened": self.reopened,
            "reopen_rate": self.reopen_rate,
            "backlog": self.backlog,
        }


def parse_since(text: str, now: datetime) -> datetime:
    """"30d", "12h", "2w" back from `now`, or a date / ISO time (UTC when no offset is given)."""
    period = _PERIOD.match(text)
    if period:
        return now - int(period.group(1)) * _UNITS[period.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        expected = 'a period such as "30d", "12h", "2w" or a date such as 2026-01-31'
        raise ValueError(f"expected {expected}, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile with linear interpolation between closest ranks (q=50 is the median)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def durations(seconds: Sequence[float]) -> Durations:
    return Durations(len(seconds), percentile(seconds, 50), percentile(seconds, 90))


def first_response_at(ticket: TicketHistory) -> datetime | None:
    replies = [e.created_at for e in ticket.events if e.kind == "agent_replied"]
    if ticket.first_agent_response_at is not None:
        replies.append(ticket.first_agent_response_at)
    return min(replies, default=None)


def resolved_at(ticket: TicketHistory) -> datetime | None:
    return min(
        (e.created_at for e in ticket.events if e.kind == "status_changed" and e.data.get("new") in RESOLVED_STATES),
        default=None,
    )


def was_escalated(ticket: TicketHistory) -> bool:
    return any(e.kind == ESCALATION for e in ticket.events)


def was_reopened(ticket: TicketHistory) -> bool:
    """Moved from resolved or closed back to an active status."""
    return any(
        e.kind == "status_changed" and e.data.get("old") in RESOLVED_STATES and e.data.get("new") not in RESOLVED_STATES
        for e in ticket.events
    )


def due_time(ticket: TicketHistory, target: str) -> datetime | None:
    """The due time stored on the ticket (kept after the target is met); for tickets recorded before
    that was so, the due time named by the ticket's last escalation of that target."""
    stored = ticket.first_response_due if target == "first_response" else ticket.resolution_due
    if stored is not None:
        return stored
    named = [e.data.get("due") for e in ticket.events if e.kind == ESCALATION and e.data.get("target") == target]
    return _as_datetime(named[-1]) if named else None


def _as_datetime(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def compliance(outcomes: Iterable[tuple[datetime | None, datetime | None]], now: datetime) -> Compliance:
    """(done_at, due) pairs: measured when a due time exists and the target is done or already overdue."""
    measured = met = 0
    for done_at, due in outcomes:
        if due is None or (done_at is None and now <= due):
            continue
        measured += 1
        met += done_at is not None and done_at <= due
    return Compliance(measured, met)


def bucket(elapsed: timedelta, buckets: tuple[tuple[str, timedelta], ...]) -> str:
    return next(label for label, limit in buckets if elapsed < limit)


def backlog(open_tickets: Iterable[OpenTicket], now: datetime) -> dict[str, dict[str, int]]:
    """Unresolved tickets by status, each by age since creation."""
    table = {status: {label: 0 for label, _ in AGE_BUCKETS} for status in ACTIVE_STATES}
    for ticket in open_tickets:
        row = table.setdefault(ticket.status, {label: 0 for label, _ in AGE_BUCKETS})
        row[bucket(now - ticket.created_at, AGE_BUCKETS)] += 1
    return table


def volume_by_day(tickets: Sequence[TicketHistory], since: datetime, now: datetime) -> tuple[tuple[str, int], ...]:
    """Tickets created per UTC day, every day of the period listed (zero days included, for the chart)."""
    counts = Counter(t.created_at.astimezone(UTC).date() for t in tickets)
    first, last = since.astimezone(UTC).date(), now.astimezone(UTC).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return tuple((day.isoformat(), counts.get(day, 0)) for day in days) if days else _days_of(counts)


def _days_of(counts: Mapping[date, int]) -> tuple[tuple[str, int], ...]:
    return tuple((day.isoformat(), count) for day, count in sorted(counts.items()))


def _tally(values: Iterable[str], known: Sequence[str]) -> dict[str, int]:
    counts = Counter(values)
    return {key: counts.get(key, 0) for key in [*known, *sorted(set(counts) - set(known))]}


def build_report(
    tickets: Sequence[TicketHistory],
    open_tickets: Iterable[OpenTicket],
    *,
    now: datetime,
    since: datetime,
    queue: str | None = None,
) -> Report:
    """Every figure of `mailgate report` from the tickets created since `since` and the open backlog."""
    responses = [(t, first_response_at(t)) for t in tickets]
    resolutions = [(t, resolved_at(t)) for t in tickets]
    response_times = [(at - t.created_at).total_seconds() for t, at in responses if at is not None]
    resolution_times = [(at - t.created_at).total_seconds() for t, at in resolutions if at is not None]
    distribution = Counter(bucket(timedelta(seconds=s), RESPONSE_BUCKETS) for s in response_times)
    return Report(
        generated_at=now,
        since=since,
        queue=queue,
        tickets=len(tickets),
        by_day=volume_by_day(tickets, since, now),
        by_channel=_tally((t.channel for t in tickets), CHANNELS),
        by_priority=_tally((t.priority for t in tickets), PRIORITIES),
        first_response=durations(response_times),
        resolution=durations(resolution_times),
        response_distribution=tuple((label, distribution.get(label, 0)) for label, _ in RESPONSE_BUCKETS),
        sla={
            "first_response": compliance(((at, due_time(t, "first_response")) for t, at in responses), now),
            "resolution": compliance(((at, due_time(t, "resolution")) for t, at in resolutions), now),
        },
        escalated=sum(was_escalated(t) for t in tickets),
        reopened=sum(was_reopened(t) for t in tickets),
        backlog=backlog(open_tickets, now),
    )
