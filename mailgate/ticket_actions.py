"""Changes an operator or agent makes to a ticket, each with its event and its customer mail (tier 3).

Every status change goes through `change_status`, so the system log and the customer's
notification can never disagree.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from mailgate.domain.ticket import Priority, TicketStatus
from mailgate.errors import PermanentFailure
from mailgate.notify.queueing import Notifier
from mailgate.store import tickets


def _ticket_id(session: Session, number: int) -> int:
    ticket_id = tickets.ticket_id_by_number(session, number)
    if ticket_id is None:
        raise PermanentFailure(f"no ticket #{number}")
    return ticket_id


def change_status(
    session: Session, number: int, new: TicketStatus, *, actor: str, notifier: Notifier, now: datetime
) -> bool:
    """Set the status; True when it changed (then one event and one customer mail are written)."""
    ticket_id = _ticket_id(session, number)
    old = tickets.ticket_status(session, ticket_id)
    if old is new:
        return False
    tickets.set_status(session, ticket_id, new, now)
    tickets.add_event(session, ticket_id, "status_changed", actor, now, old=old.value, new=new.value)
    notifier.status_changed(session, ticket_id, old.value, new.value, now)
    return True


def change_priority(session: Session, number: int, priority: Priority, *, actor: str, now: datetime) -> bool:
    ticket_id = _ticket_id(session, number)
    old = tickets.ticket_priority(session, ticket_id)
    if old is priority:
        return False
    tickets.set_priority(session, ticket_id, priority, now)
    tickets.add_event(session, ticket_id, "priority_changed", actor, now, old=old.value, new=priority.value)
    return True


def assign(session: Session, number: int, assignee: str | None, *, actor: str, now: datetime) -> bool:
    ticket_id = _ticket_id(session, number)
    old = tickets.ticket_assignee(session, ticket_id)
    if old == assignee:
        return False
    tickets.set_assignee(session, ticket_id, assignee, now)
    tickets.add_event(session, ticket_id, "assigned", actor, now, old=old, new=assignee)
    return True
