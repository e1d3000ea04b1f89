"""IMAP import state: per account and folder, the UIDVALIDITY and the highest UID already queued.

A batch's inbound rows and its new `last_uid` are written in the caller's one transaction, so after
a crash the import resumes exactly after the last committed message (RFC 3501 2.3.1.1: within one
UIDVALIDITY, UIDs only grow).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.store import inbound
from mailgate.store.models import ImapMessage, ImapState


@dataclass(frozen=True)
class FolderState:
    uidvalidity: int
    last_uid: int


@dataclass(frozen=True)
class FetchedMessage:
    """One message taken from the server; `failure` set means it is queued as failed, with that reason."""

    uid: int
    raw: bytes
    failure: str | None = None


def load_state(session: Session, account: str) -> FolderState | None:
    row = session.get(ImapState, account)
    return None if row is None else FolderState(row.uidvalidity, row.last_uid)


def start_over(session: Session, account: str, uidvalidity: int, now: datetime) -> None:
    """A new folder, or one whose UIDVALIDITY changed: every UID seen so far means nothing now."""
    row = session.get(ImapState, account)
    if row is None:
        session.add(ImapState(account=account, uidvalidity=uidvalidity, last_uid=0, updated_at=now))
        return
    row.uidvalidity, row.last_uid, row.updated_at = uidvalidity, 0, now


def record_batch(
    session: Session,
    account: str,
    uidvalidity: int,
    messages: Sequence[FetchedMessage],
    envelope: inbound.Envelope,
    *,
    up_to_uid: int,
    now: datetime,
) -> list[int]:
    """Queue `messages` and advance `last_uid` to `up_to_uid`; returns the UIDs actually queued.

    The state row is locked first; a UID at or below the stored `last_uid` was queued by another
    instance sharing this database and is skipped, so two importers never queue a message twice.
    """
    row = _locked_state(session, account)
    if row is None or row.uidvalidity != uidvalidity:
        row = _fresh_state(session, row, account, uidvalidity, now)
    queued = []
    for message in sorted(messages, key=lambda m: m.uid):
        if message.uid <= row.last_uid:
            continue
        inbound_id = inbound.enqueue(session, message.raw, envelope, now)
        if message.failure is not None:
            inbound.finish(session, inbound_id, inbound.FAILED, now, error=message.failure)
        session.add(ImapMessage(inbound_id=inbound_id, account=account, uidvalidity=uidvalidity, uid=message.uid))
        queued.append(message.uid)
    row.last_uid = max(row.last_uid, up_to_uid)
    row.updated_at = now
    return queued


def _locked_state(session: Session, account: str) -> ImapState | None:
    query = select(ImapState).where(ImapState.account == account)
    # SQLite writers already hold the database lock from BEGIN IMMEDIATE (store/db.py).
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.scalars(query).first()


def _fresh_state(session: Session, row: ImapState | None, account: str, uidvalidity: int, now: datetime) -> ImapState:
    if row is None:
        row = ImapState(account=account, uidvalidity=uidvalidity, last_uid=0, updated_at=now)
        session.add(row)
    else:
        row.uidvalidity, row.last_uid = uidvalidity, 0
    return row
