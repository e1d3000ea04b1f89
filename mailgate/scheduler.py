"""TimerScheduler: SLA warnings and breaches, auto-resolve and auto-close, when they fall due (tier 3).

It sleeps on the clock until the earliest `next_timer_at` of any ticket (an indexed column), so
a tick touches only the tickets with something due; tests move a FakeClock instead of waiting.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session

from mailgate.clock import Clock
from mailgate.domain.ticket import TicketStatus
from mailgate.errors import TemporaryFailure
from mailgate.rules.config_schema import QUEUE_AGENTS, RulesConfig
from mailgate.rules.priority import raise_one
from mailgate.rules.timers import Escalation, EscalationKind, escalations_due, lifecycle_action
from mailgate.store import tickets, timers
from mailgate.store.transaction import Store
from mailgate.ticket_actions import TicketActions
from mailgate.waiting import wait_first

log = structlog.get_logger("mailgate.scheduler")
SCHEDULER = "scheduler"
RETRY_FAILED_TIMER = timedelta(minutes=5)


@dataclass(frozen=True)
class SchedulerSettings:
    rules: RulesConfig
    batch_size: int = 100
    max_sleep: timedelta = timedelta(seconds=60)


NOTIFY_SETTLE_SECONDS = 1.0


class TimerScheduler:
    def __init__(self, store: Store, clock: Clock, actions: TicketActions, settings: SchedulerSettings) -> None:
        self.store = store
        self.clock = clock
        self.actions = actions
        self.settings = settings
        self.wakeup = asyncio.Event()

    def notify(self) -> None:
        """A ticket changed: its timer may now be earlier than the one being slept for."""
        self.wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.wakeup.is_set():
                # Woken by a change: a burst of filed mail moves many tickets' timers, and none
                # of them comes due within a second of the change, so one look per second is enough.
                await wait_first(stop.wait(), timeout=NOTIFY_SETTLE_SECONDS)
            self.wakeup.clear()
            try:
                await self.tick()
                earliest = await self.store.call_read(timers.earliest_timer)
            except TemporaryFailure as error:
                log.warning("scheduler_backing_off", error=str(error))
                earliest = None
            now = self.clock.now()
            until = now + self.settings.max_sleep if earliest is None else min(earliest, now + self.settings.max_sleep)
            await self._sleep(stop, until)

    async def _sleep(self, stop: asyncio.Event, until: datetime) -> None:
        await wait_first(stop.wait(), self.wakeup.wait(), self.clock.sleep_until(until))

    async def tick(self) -> int:
        """Run every timer due now; returns how many tickets were looked at."""
        now = self.clock.now()
        handled = 0
        while True:
            due = await self.store.call_read(timers.due_ticket_ids, now, self.settings.batch_size)
            for ticket_id in due:
                await self._run_one(ticket_id, now)
            handled += len(due)
            if len(due) < self.settings.batch_size:
                return handled

    async def _run_one(self, ticket_id: int, now: datetime) -> None:
        """One catch-all per ticket: a bug on one ticket must not stop every other ticket's timers."""
        try:
            await self.store.call(self._run_ticket, ticket_id, now)
        except TemporaryFailure:
            raise
        except Exception as error:
            log.exception("timer_failed", ticket_id=ticket_id, error_type=type(error).__name__)
            # Look again in a while rather than spinning on the same failure.
            await self.store.call(timers.postpone_timer, ticket_id, now + RETRY_FAILED_TIMER)

    def _run_ticket(self, session: Session, ticket_id: int, now: datetime) -> None:
        """One ticket's due timers in one transaction: escalations, then the lifecycle step."""
        if not timers.lock_due_ticket(session, ticket_id, now):
            return
        view = self.actions.tracker.view(session, ticket_id)
        for escalation in escalations_due(view.due, view.warnings, now, view.fired):
            self._escalate(session, ticket_id, escalation, now)
        pending_days, resolved_days = self.settings.rules.lifecycle.for_queue(view.state.queue)
        step = lifecycle_action(
            TicketStatus(view.state.status),
            view.state.last_customer_message_at,
            view.state.status_since,
            now,
            pending_days,
            resolved_days,
        )
        if step is not None:
            self.actions.change_status(session, ticket_id, step, actor=SCHEDULER, now=now)
            log.info("ticket_lifecycle_step", ticket=view.state.number, new=step.value)
        self.actions.tracker.refresh(session, ticket_id)

    def _escalate(self, session: Session, ticket_id: int, escalation: Escalation, now: datetime) -> None:
        config = self.settings.rules.escalation
        target, kind = escalation.target.value, escalation.kind.value
        timers.record_fired(session, ticket_id, target, kind)
        tickets.add_event(
            session,
            ticket_id,
            "sla_escalation",
            SCHEDULER,
            now,
            target=target,
            kind=kind,
            due=escalation.due.isoformat(),
        )
        snapshot = tickets.ticket_snapshot(session, ticket_id)
        recipients: list[str] = []
        for entry in config.notify:
            if entry == QUEUE_AGENTS:
                recipients += [agent.email for agent in self.actions.notifier.agents_for(snapshot)]
            else:
                recipients.append(entry)
        self.actions.notifier.escalate(
            session, ticket_id, kind=kind, target=target, due=escalation.due, recipients=tuple(recipients), now=now
        )
        if escalation.kind is EscalationKind.BREACH:
            if config.raise_priority:
                current = tickets.ticket_priority(session, ticket_id)
                self.actions.change_priority(
                    session, ticket_id, raise_one(current), actor=SCHEDULER, now=now, reason=f"{target} breached"
                )
            if config.tag:
                self.actions.add_tag(session, ticket_id, config.tag, actor=SCHEDULER, now=now)
        log.warning("sla_escalated", ticket=snapshot.number, target=target, kind=kind)
