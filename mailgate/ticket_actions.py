"""TicketActions: every change to a ticket with all it implies — event, timers, customer mail (tier 3).

Status changes from customers' mail, agents' commands, the scheduler and the command line all
go through here, so the system log, the SLA clocks and the customer's notification can never
disagree.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from mailgate.domain.ticket import Priority, TicketStatus
from mailgate.errors import PermanentFailure
from mailgate.notify.queueing import Notifier
from mailgate.sla_tracking import SlaTracker
from mailgate.store import tickets, timers


class TicketActions:
    def __init__(self, notifier: Notifier, tracker: SlaTracker) -> None:
        self.notifier = notifier
        self.tracker = tracker

    def ticket_id(self, session: Session, number: int) -> int:
        ticket_id = tickets.ticket_id_by_number(session, number)
        if ticket_id is None:
            raise PermanentFailure(f"no ticket #{number}")
        return ticket_id

    def change_status(
        self,
        session: Session,
        ticket_id: int,
        new: TicketStatus,
        *,
        actor: str,
        now: datetime,
        notify: bool = True,
        current: TicketStatus | None = None,
    ) -> bool:
        """Set the status; True when it changed (then one event and, unless told not to, one customer mail).
        `current`: the status the caller read in this transaction, so it is not read again."""
        old = current if current is not None else tickets.ticket_status(session, ticket_id)
        if old is new:
            return False
        tickets.set_status(session, ticket_id, new, now)
        tickets.add_event(session, ticket_id, "status_changed", actor, now, old=old.value, new=new.value)
        timers.note_status(session, ticket_id, old.value, new.value, now)
        if notify:
            self.notifier.status_changed(session, ticket_id, old.value, new.value, now)
        self.tracker.refresh(session, ticket_id)
        return True

    def change_priority(
        self,
        session: Session,
        ticket_id: int,
        priority: Priority,
        *,
        actor: str,
        now: datetime,
        refresh: bool = True,
        current: Priority | None = None,
        **why: object,
    ) -> bool:
        """Set the priority; True when it changed. `refresh=False`: the caller recomputes the SLA
        due times itself once it has made all its changes (one computation per message).
        `current`: the priority the caller read in this transaction, so it is not read again."""
        old = current if current is not None else tickets.ticket_priority(session, ticket_id)
        if old is priority:
            return False
        tickets.set_priority(session, ticket_id, priority, now)
        tickets.add_event(session, ticket_id, "priority_changed", actor, now, old=old.value, new=priority.value, **why)
        if refresh:
            self.tracker.refresh(session, ticket_id)
        return True

    def assign(
        self, session: Session, ticket_id: int, assignee: str | None, *, actor: str, now: datetime, **why: object
    ) -> bool:
        old = tickets.ticket_assignee(session, ticket_id)
        if old == assignee:
            return False
        tickets.set_assignee(session, ticket_id, assignee, now)
        tickets.add_event(session, ticket_id, "assigned", actor, now, old=old, new=assignee, **why)
        return True

    def add_tag(self, session: Session, ticket_id: int, tag: str, *, actor: str, now: datetime, **why: object) -> bool:
        if tag in tickets.ticket_tags(session, ticket_id):
            return False
        tickets.add_tag(session, ticket_id, tag)
        tickets.add_event(session, ticket_id, "tag_added", actor, now, tag=tag, **why)
        return True

    def remove_tag(self, session: Session, ticket_id: int, tag: str, *, actor: str, now: datetime) -> bool:
        if tag not in tickets.ticket_tags(session, ticket_id):
            return False
        tickets.remove_tag(session, ticket_id, tag)
        tickets.add_event(session, ticket_id, "tag_removed", actor, now, tag=tag)
        return True
