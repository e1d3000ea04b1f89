"""Pure report arithmetic: percentiles, the timing definitions, SLA compliance, backlog and periods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailgate.reporting import (
    EventRecord,
    OpenTicket,
    TicketHistory,
    backlog,
    compliance,
    due_time,
    first_response_at,
    parse_since,
    percentile,
    resolved_at,
    volume_by_day,
    was_reopened,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def ticket(*events: EventRecord, **fields: object) -> TicketHistory:
    values: dict[str, object] = {
        "number": 1000, "created_at": T0, "queue": "support", "priority": "medium", "status": "open", "channel": "smtp",
    }
    values.update(fields)
    return TicketHistory(events=events, **values)  # type: ignore[arg-type]


def test_percentile_interpolates_between_closest_ranks() -> None:
    """Median of an even count is the mean of the middle two; p90 interpolates; no values give None."""
    assert percentile([3000, 3600, 10800, 21600], 50) == 7200
    assert percentile([3000, 3600, 10800, 21600], 90) == pytest.approx(18360)
    assert percentile([5], 90) == 5
    assert percentile([], 50) is None


def test_first_response_is_the_earliest_of_event_and_column() -> None:
    """An agent_replied event and first_agent_response_at both count; the earlier wins."""
    reply = EventRecord("agent_replied", T0 + timedelta(hours=2))
    assert first_response_at(ticket(reply)) == T0 + timedelta(hours=2)
    assert first_response_at(ticket(reply, first_agent_response_at=T0 + timedelta(hours=1))) == T0 + timedelta(hours=1)
    assert first_response_at(ticket()) is None


def test_resolution_is_the_first_change_to_resolved_or_closed_and_reopen_is_detected() -> None:
    """Resolved or closed, whichever first; going back to open is a reopen, pending to open is not."""
    events = (
        EventRecord("status_changed", T0 + timedelta(hours=1), {"old": "new", "new": "pending"}),
        EventRecord("status_changed", T0 + timedelta(hours=2), {"old": "pending", "new": "open"}),
        EventRecord("status_changed", T0 + timedelta(hours=5), {"old": "open", "new": "closed"}),
        EventRecord("status_changed", T0 + timedelta(hours=9), {"old": "closed", "new": "resolved"}),
    )
    assert resolved_at(ticket(*events)) == T0 + timedelta(hours=5)
    assert not was_reopened(ticket(*events))
    reopened = (*events, EventRecord("status_changed", T0 + timedelta(hours=10), {"old": "resolved", "new": "open"}))
    assert was_reopened(ticket(*reopened))


def test_due_time_falls_back_to_the_escalation_when_the_column_was_cleared() -> None:
    """The stored due time wins; once cleared, the due time named by the last escalation of that target."""
    due = T0 + timedelta(hours=1)
    warning = EventRecord("sla_escalation", T0, {"target": "first_response", "kind": "warning", "due": due.isoformat()})
    assert due_time(ticket(warning), "first_response") == due
    assert due_time(ticket(warning), "resolution") is None
    stored = T0 + timedelta(hours=4)
    assert due_time(ticket(warning, first_response_due=stored), "first_response") == stored


def test_compliance_counts_only_done_or_overdue_targets() -> None:
    """Met on time, late, overdue and still running: measured 3, met 1; no due time: not measured."""
    now = T0 + timedelta(days=1)
    due = T0 + timedelta(hours=2)
    result = compliance(
        [
            (T0 + timedelta(hours=1), due),
            (T0 + timedelta(hours=3), due),
            (None, due),
            (None, now + timedelta(hours=1)),
            (T0, None),
        ],
        now,
    )
    assert (result.measured, result.met) == (3, 1)
    assert result.rate == pytest.approx(1 / 3)
    assert compliance([], now).rate is None


def test_backlog_ages_by_status() -> None:
    """Age buckets are half-open: exactly one day old is 1-3d."""
    now = T0 + timedelta(days=40)
    table = backlog(
        [OpenTicket("new", now - timedelta(hours=3)), OpenTicket("new", now - timedelta(days=1)),
         OpenTicket("pending", now - timedelta(days=35))],
        now,
    )
    assert table["new"] == {"<1d": 1, "1-3d": 1, "3-7d": 0, "7-30d": 0, ">30d": 0}
    assert table["pending"][">30d"] == 1 and sum(table["open"].values()) == 0


def test_volume_lists_every_day_of_the_period() -> None:
    """Days without tickets are listed with 0, so the chart has a bar slot for each day."""
    tickets = [ticket(created_at=T0 + offset) for offset in (timedelta(0), timedelta(hours=3), timedelta(days=2))]
    days = volume_by_day(tickets, T0 - timedelta(days=1), T0 + timedelta(days=2))
    assert days == (("2026-03-01", 0), ("2026-03-02", 2), ("2026-03-03", 0), ("2026-03-04", 1))


def test_parse_since_accepts_periods_and_dates() -> None:
    """30d, 12h and 2w count back from now; a date is midnight UTC; anything else is an error naming the forms."""
    now = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
    assert parse_since("30d", now) == now - timedelta(days=30)
    assert parse_since("12h", now) == now - timedelta(hours=12)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    assert parse_since("2026-03-01", now) == datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="30d"):
        parse_since("last month", now)
