"""Lifecycle timers, SLA escalations fired once each, the scheduler's wake-up time, round robin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailgate.domain.ticket import TicketStatus
from mailgate.rules.sla import SlaDue, SlaTarget
from mailgate.rules.timers import (
    EscalationKind,
    Fired,
    escalations_due,
    lifecycle_action,
    lifecycle_deadline,
    next_wakeup,
    pick_round_robin,
    reset_next_response,
)

MONDAY = datetime(2026, 3, 9, 10, tzinfo=UTC)
DAY = timedelta(days=1)


def test_pending_ticket_resolves_on_the_seventh_day() -> None:
    """Pending since Monday 10:00 with no reply: still pending a minute before next Monday 10:00, then resolved."""
    assert lifecycle_action(TicketStatus.PENDING, None, MONDAY, MONDAY + 7 * DAY - timedelta(minutes=1)) is None
    assert lifecycle_action(TicketStatus.PENDING, None, MONDAY, MONDAY + 7 * DAY) == TicketStatus.RESOLVED


def test_resolved_ticket_closes_after_its_own_days() -> None:
    """A resolved ticket closes after the configured silence, counted from the later of status change and reply."""
    replied = MONDAY + 2 * DAY
    assert lifecycle_action(TicketStatus.RESOLVED, replied, MONDAY, MONDAY + 8 * DAY, resolved_days=7) is None
    assert lifecycle_action(TicketStatus.RESOLVED, replied, MONDAY, replied + 7 * DAY) == TicketStatus.CLOSED
    assert (
        lifecycle_action(TicketStatus.RESOLVED, None, MONDAY, MONDAY + 3 * DAY, resolved_days=3) == TicketStatus.CLOSED
    )


def test_other_statuses_and_disabled_steps_never_move() -> None:
    """Open tickets have no lifecycle timer, and None days switch a step off."""
    assert lifecycle_deadline(TicketStatus.OPEN, None, MONDAY) is None
    assert lifecycle_action(TicketStatus.PENDING, None, MONDAY, MONDAY + 365 * DAY, pending_days=None) is None
    assert lifecycle_deadline(TicketStatus.PENDING, None, MONDAY) == (MONDAY + 7 * DAY, TicketStatus.RESOLVED)


def test_warning_and_breach_fire_once_each() -> None:
    """Ticking every five minutes over a day, each target's warning and breach fire exactly once, at the right time."""
    due = SlaDue(first_response_due=MONDAY + timedelta(hours=1), resolution_due=MONDAY + timedelta(hours=8))
    warnings = {
        SlaTarget.FIRST_RESPONSE: MONDAY + timedelta(minutes=48),
        SlaTarget.RESOLUTION: MONDAY + timedelta(hours=6, minutes=24),
    }
    fired: Fired = frozenset()
    log = []
    for step in range(24 * 12):
        now = MONDAY + timedelta(minutes=5 * step)
        for escalation in escalations_due(due, warnings, now, fired):
            log.append((escalation.target, escalation.kind, now))
            fired |= {(escalation.target, escalation.kind)}
    assert log == [
        (SlaTarget.FIRST_RESPONSE, EscalationKind.WARNING, MONDAY + timedelta(minutes=50)),
        (SlaTarget.FIRST_RESPONSE, EscalationKind.BREACH, MONDAY + timedelta(hours=1)),
        (SlaTarget.RESOLUTION, EscalationKind.WARNING, MONDAY + timedelta(hours=6, minutes=25)),
        (SlaTarget.RESOLUTION, EscalationKind.BREACH, MONDAY + timedelta(hours=8)),
    ]


def test_a_late_tick_sends_the_breach_without_the_stale_warning() -> None:
    """When the scheduler first looks after the due time, only the breach goes out."""
    due = SlaDue(first_response_due=MONDAY)
    result = escalations_due(due, {SlaTarget.FIRST_RESPONSE: MONDAY - timedelta(minutes=12)}, MONDAY + DAY, frozenset())
    assert [(e.kind, e.due) for e in result] == [(EscalationKind.BREACH, MONDAY)]


def test_next_wakeup_is_the_earliest_pending_moment() -> None:
    """The wake-up time walks from warning to due to the lifecycle deadline as things fire."""
    due = SlaDue(first_response_due=MONDAY + timedelta(hours=1))
    warnings = {SlaTarget.FIRST_RESPONSE: MONDAY + timedelta(minutes=48)}
    later = MONDAY + 7 * DAY
    assert next_wakeup(due, warnings, frozenset(), later) == MONDAY + timedelta(minutes=48)
    fired: Fired = frozenset({(SlaTarget.FIRST_RESPONSE, EscalationKind.WARNING)})
    assert next_wakeup(due, warnings, fired, later) == MONDAY + timedelta(hours=1)
    fired |= {(SlaTarget.FIRST_RESPONSE, EscalationKind.BREACH)}
    assert next_wakeup(due, warnings, fired, later) == later
    assert next_wakeup(SlaDue(), {}, frozenset()) is None


def test_next_response_cycle_can_fire_again() -> None:
    """A new customer mail clears the next-response escalations, and only those."""
    fired: Fired = frozenset(
        {(SlaTarget.NEXT_RESPONSE, EscalationKind.BREACH), (SlaTarget.FIRST_RESPONSE, EscalationKind.BREACH)}
    )
    assert reset_next_response(fired) == {(SlaTarget.FIRST_RESPONSE, EscalationKind.BREACH)}


def test_round_robin_in_configuration_order() -> None:
    """Agents take turns in configuration order, wrapping; an unknown last agent starts at the first."""
    agents = ("ann@example.com", "bob@example.com", "cy@example.com")
    picks, last = [], None
    for _ in range(4):
        last = pick_round_robin(agents, last)
        picks.append(last)
    assert picks == ["ann@example.com", "bob@example.com", "cy@example.com", "ann@example.com"]
    assert pick_round_robin(agents, "gone@example.com") == "ann@example.com"
    with pytest.raises(ValueError):
        pick_round_robin((), None)
