"""Pure timer decisions: auto-resolve and auto-close, SLA escalations, round robin (tier 1).

Nothing here reads the clock: `now` comes in. `next_wakeup` gives the one instant a scheduler
needs to index per ticket, so a tick only touches tickets that have something due.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from mailgate.domain.ticket import TicketStatus
from mailgate.rules.sla import SlaDue, SlaTarget

DEFAULT_PENDING_DAYS = 7
DEFAULT_RESOLVED_DAYS = 7


class EscalationKind(StrEnum):
    WARNING = "warning"
    BREACH = "breach"


Fired = frozenset[tuple[SlaTarget, EscalationKind]]


@dataclass(frozen=True)
class Escalation:
    """A target passed its warning point or its due time; `at` is the instant that passed."""

    target: SlaTarget
    kind: EscalationKind
    due: datetime
    at: datetime


def lifecycle_deadline(
    status: TicketStatus,
    last_customer_activity_at: datetime | None,
    status_since: datetime,
    pending_days: int | None = DEFAULT_PENDING_DAYS,
    resolved_days: int | None = DEFAULT_RESOLVED_DAYS,
) -> tuple[datetime, TicketStatus] | None:
    """When the ticket changes status by itself, and to what; None days disables that step.

    Days are calendar days (24 h each) from the later of the status change and the customer's
    last human mail; automatic mail must not be passed as customer activity.
    """
    if status == TicketStatus.PENDING:
        days, target = pending_days, TicketStatus.RESOLVED
    elif status == TicketStatus.RESOLVED:
        days, target = resolved_days, TicketStatus.CLOSED
    else:
        return None
    if days is None:
        return None
    since = max(status_since, last_customer_activity_at or status_since)
    return since + timedelta(days=days), target


def lifecycle_action(
    status: TicketStatus,
    last_customer_activity_at: datetime | None,
    status_since: datetime,
    now: datetime,
    pending_days: int | None = DEFAULT_PENDING_DAYS,
    resolved_days: int | None = DEFAULT_RESOLVED_DAYS,
) -> TicketStatus | None:
    """The status a silent ticket moves to now: pending -> resolved, resolved -> closed; or None."""
    deadline = lifecycle_deadline(status, last_customer_activity_at, status_since, pending_days, resolved_days)
    if deadline is None or now < deadline[0]:
        return None
    return deadline[1]


def escalations_due(
    due: SlaDue, warnings: Mapping[SlaTarget, datetime | None] | SlaDue, now: datetime, fired: Fired
) -> list[Escalation]:
    """The escalations to run now, each at most once per target and kind.

    Once a target is breached its warning is no longer sent (it would arrive after the news).
    The caller adds every returned (target, kind) to the ticket's fired set, and clears the
    next_response entries when a customer mail starts a new next-response cycle.
    """
    result = []
    for target, due_at in due.items():
        if due_at is None:
            continue
        if now >= due_at:
            if (target, EscalationKind.BREACH) not in fired:
                result.append(Escalation(target, EscalationKind.BREACH, due_at, due_at))
            continue
        warn_at = warnings.get(target)
        if warn_at is not None and now >= warn_at and (target, EscalationKind.WARNING) not in fired:
            result.append(Escalation(target, EscalationKind.WARNING, due_at, warn_at))
    return result


def next_wakeup(
    due: SlaDue,
    warnings: Mapping[SlaTarget, datetime | None] | SlaDue,
    fired: Fired,
    lifecycle_at: datetime | None = None,
) -> datetime | None:
    """The earliest instant at which something not yet done becomes due (it may be past: run now).

    Store it in an indexed column and select `WHERE next_wakeup <= now`: the scheduler's tick
    then costs nothing for the tickets with nothing due. None: nothing will ever happen.
    """
    moments = [lifecycle_at] if lifecycle_at is not None else []
    for target, due_at in due.items():
        if due_at is None or (target, EscalationKind.BREACH) in fired:
            continue
        moments.append(due_at)
        warn_at = warnings.get(target)
        if warn_at is not None and (target, EscalationKind.WARNING) not in fired:
            moments.append(warn_at)
    return min(moments, default=None)


def reset_next_response(fired: Fired) -> Fired:
    """The fired set after a customer mail starts a new next-response cycle."""
    return frozenset(item for item in fired if item[0] != SlaTarget.NEXT_RESPONSE)


def pick_round_robin(agents: tuple[str, ...], last: str | None) -> str:
    """The agent after `last` in configuration order, wrapping; the first when `last` is unknown."""
    if not agents:
        raise ValueError("round robin needs at least one agent")
    if last not in agents:
        return agents[0]
    return agents[(agents.index(last) + 1) % len(agents)]
