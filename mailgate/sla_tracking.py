"""SlaTracker: keeps each ticket's SLA due times and its next timer current (tier 3).

After any change to a ticket (created, customer mail, agent reply, status change) the tracker
recomputes the due times with the pure rules core and stores them, with the moment the
scheduler must next look at the ticket.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mailgate.domain.ticket import Priority, TicketStatus
from mailgate.rules.business_hours import BusinessCalendar
from mailgate.rules.config_schema import RulesConfig
from mailgate.rules.sla import (
    SlaDue,
    SlaPolicy,
    SlaTarget,
    SlaTargets,
    TicketTimeline,
    compute_due,
    compute_warnings,
    describe_target,
)
from mailgate.rules.timers import EscalationKind, Fired, lifecycle_deadline, next_wakeup
from mailgate.store import timers
from mailgate.store.timers import TimerState


@dataclass(frozen=True)
class TicketSla:
    """The SLA view of one ticket at one moment."""

    state: TimerState
    due: SlaDue
    warnings: SlaDue
    fired: Fired
    lifecycle: tuple[datetime, TicketStatus] | None


class SlaTracker:
    def __init__(self, rules: RulesConfig) -> None:
        self.rules = rules

    def policy(self, name: str | None) -> tuple[SlaPolicy, BusinessCalendar] | None:
        """The named policy (or the default one) and its calendar; None when no SLA is configured."""
        sla = self.rules.sla
        chosen = name or sla.default_policy
        if chosen is None or chosen not in sla.policies:
            return None
        policy = sla.policies[chosen]
        return policy, sla.calendar_for(policy)

    def targets(self, policy_name: str | None, priority: str) -> tuple[SlaTargets, BusinessCalendar] | None:
        found = self.policy(policy_name)
        if found is None:
            return None
        policy, calendar = found
        return policy.for_priority(Priority(priority)), calendar

    def first_response_words(self, policy_name: str | None, priority: Priority, language: str) -> str | None:
        """The promised first-response time in words, for the acknowledgement."""
        found = self.targets(policy_name, priority.value)
        if found is None or found[0].first_response is None:
            return None
        targets, calendar = found
        assert targets.first_response is not None
        return describe_target(targets.first_response, calendar, language, within=True)

    def view(self, session: Session, ticket_id: int) -> TicketSla:
        state = timers.load_state(session, ticket_id)
        fired: Fired = frozenset((SlaTarget(t), EscalationKind(k)) for t, k in state.fired)
        found = self.targets(state.sla_policy, state.priority)
        if found is None:
            due = warnings = SlaDue()
        else:
            targets, calendar = found
            timeline = TicketTimeline(
                created_at=state.created_at,
                first_agent_response_at=state.first_agent_response_at,
                last_customer_message_at=state.last_customer_message_at,
                last_agent_reply_at=state.last_agent_reply_at,
                resolved_at=state.resolved_at,
                status=TicketStatus(state.status),
                pending_periods=state.pauses,
            )
            due = compute_due(timeline, targets, calendar)
            warnings = compute_warnings(timeline, targets, calendar, self.rules.sla.warning_fraction)
        pending_days, resolved_days = self.rules.lifecycle.for_queue(state.queue)
        lifecycle = lifecycle_deadline(
            TicketStatus(state.status), state.last_customer_message_at, state.status_since, pending_days, resolved_days
        )
        return TicketSla(state, due, warnings, fired, lifecycle)

    def refresh(self, session: Session, ticket_id: int) -> TicketSla:
        """Recompute and store the due times and the next timer of a ticket."""
        view = self.view(session, ticket_id)
        wake = next_wakeup(view.due, view.warnings, view.fired, view.lifecycle[0] if view.lifecycle else None)
        state, due = view.state, view.due
        # A met target keeps its due time, so reports can tell whether it was met in time.
        first = due.first_response_due or (
            state.stored_first_response_due if state.first_agent_response_at is not None else None
        )
        resolution = due.resolution_due or (state.stored_resolution_due if state.resolved_at is not None else None)
        running = [d for d in (due.first_response_due, due.next_response_due, due.resolution_due) if d is not None]
        timers.save_due(
            session,
            ticket_id,
            first_response_due=first,
            next_response_due=due.next_response_due,
            resolution_due=resolution,
            next_timer_at=wake,
            sla_due_at=min(running, default=None),
        )
        return view
