"""What /healthz and /metrics read from the database at request time: queue depths, breaches, IMAP imports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailgate.store import inbound
from mailgate.store.models import Event, ImapState, Outbox

# scheduler.py writes `sla_escalation` events whose JSON data holds "kind": "warning" | "breach";
# tickets.add_event serialises with json.dumps' default separators, hence this exact fragment.
_BREACH_FRAGMENT = '%"kind": "breach"%'


@dataclass(frozen=True)
class StatusSnapshot:
    inbound: dict[str, int]
    outbox: dict[str, int]
    sla_breaches: int
    imap_last_import: dict[str, datetime]


def ping(session: Session) -> None:
    """The cheapest statement that proves the database answers."""
    session.execute(select(1)).one()


def outbox_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(select(Outbox.state, func.count()).group_by(Outbox.state))
    return {state: int(count) for state, count in rows}


def sla_breach_count(session: Session) -> int:
    query = select(func.count()).where(Event.kind == "sla_escalation", Event.data.like(_BREACH_FRAGMENT))
    return int(session.scalar(query) or 0)


def imap_last_import(session: Session) -> dict[str, datetime]:
    """Per IMAP account and folder: when its import state last changed (a batch committed, or a rescan began)."""
    return {account: updated for account, updated in session.execute(select(ImapState.account, ImapState.updated_at))}


def snapshot(session: Session) -> StatusSnapshot:
    return StatusSnapshot(
        inbound=inbound.count_by_state(session),
        outbox=outbox_by_state(session),
        sla_breaches=sla_breach_count(session),
        imap_last_import=imap_last_import(session),
    )
