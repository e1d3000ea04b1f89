"""`--store-size N`: N archived tickets bulk-inserted through SQLAlchemy before the daemon starts.

Shape of each pre-filled ticket i (5 rows, all through mailgate's own models):
- a contact `archive<i>@archive<i % 97>.example`;
- a ticket numbered 100,000,000 + i (far above the daemon's counter, which still starts at 1000,
  so the corpus and its subject tags stay the same), queue `support`, priority by i; status
  60 % closed, 25 % resolved, 10 % open, 5 % pending; open and pending ones have SLA due times
  and a `next_timer_at` days ahead, so the scheduler's index holds waiting tickets;
- its requester as participant; one inbound message with a unique Message-ID and ~300 bytes of
  text; one `ticket_created` event.
No inbound-queue rows and no outbox rows (the queue is drained in a steady state).
PostgreSQL's id sequences are moved past the inserted ids and the tables are ANALYZEd, as
autovacuum would have done; SQLite gets nothing (mailgate never runs ANALYZE).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

ARCHIVE_FIRST_NUMBER = 100_000_000
CHUNK = 5_000
STATUSES = ["closed"] * 12 + ["resolved"] * 5 + ["open"] * 2 + ["pending"]
PRIORITIES = ("low", "medium", "medium", "medium", "high", "urgent")
NOW = datetime.now(UTC).replace(microsecond=0)
TEXT = (
    "Hello, we cannot open the report since this morning. The error says access denied. "
    "We tried another browser and cleared the cache. Could you please have a look? "
    "Our order number is 448-1192. Best regards, the accounting team"
)


def _ticket_rows(start: int, stop: int) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {"contacts": [], "tickets": [], "participants": [], "messages": [],
                                              "events": []}
    for i in range(start, stop):
        key = i + 1
        email = f"archive{i}@archive{i % 97}.example"
        created = NOW - timedelta(days=400) + timedelta(seconds=i * 7 % (390 * 86400))
        status = STATUSES[i % len(STATUSES)]
        waiting = status in ("open", "pending")
        due = NOW + timedelta(days=3 + i % 11) if waiting else None
        rows["contacts"].append({"id": key, "email": email, "name": f"Archive Customer {i}", "language": None,
                                 "bouncing_until": None, "bounce_reason": None, "created_at": created})
        rows["tickets"].append({
            "id": key, "number": ARCHIVE_FIRST_NUMBER + i, "subject": f"Archived request {i}: report access",
            "status": status, "priority": PRIORITIES[i % len(PRIORITIES)], "queue": "support", "assignee": None,
            "requester_id": key, "created_at": created, "updated_at": created + timedelta(hours=5),
            "status_since": created + timedelta(hours=5), "last_customer_message_at": created,
            "resolved_at": None if waiting else created + timedelta(days=1), "sla_policy": None,
            "first_response_due": due, "next_response_due": None, "resolution_due": due, "sla_due_at": due,
            "next_timer_at": due,
        })
        rows["participants"].append({"ticket_id": key, "email": email})
        rows["messages"].append({
            "id": key, "ticket_id": key, "inbound_id": None, "direction": "in",
            "message_id": f"archive.{i}@archive{i % 97}.example", "author_email": email,
            "author_name": f"Archive Customer {i}", "sender_problem": None,
            "subject": f"Archived request {i}: report access", "in_reply_to": "", "references": "",
            "to_addresses": "support@example.com", "cc_addresses": "", "text_body": TEXT, "html_body": None,
            "internal": False, "created_at": created,
        })
        rows["events"].append({"id": key, "ticket_id": key, "created_at": created, "kind": "ticket_created",
                                "actor": email, "data": json.dumps({"via": "new", "archive": True})})
    return rows


def prefill(database_url: str, count: int, progress: Callable[[str], None] = print) -> float:
    """Insert `count` tickets into an upgraded, empty schema; returns the seconds it took."""
    from sqlalchemy import insert, text

    from mailgate.store.db import make_engine
    from mailgate.store.models import Contact, Event, Message, Ticket, TicketParticipant

    models = {"contacts": Contact, "tickets": Ticket, "participants": TicketParticipant, "messages": Message,
              "events": Event}
    engine = make_engine(database_url)
    started = time.perf_counter()
    try:
        for start in range(0, count, CHUNK):
            rows = _ticket_rows(start, min(count, start + CHUNK))
            with engine.begin() as connection:
                for name, model in models.items():
                    connection.execute(insert(model), rows[name])
            if start and start % 200_000 == 0:
                progress(f"  pre-filled {start:,} of {count:,} tickets ({time.perf_counter() - started:.0f} s)")
        if engine.dialect.name == "postgresql":
            with engine.begin() as connection:
                _finish_postgresql(connection, text)
    finally:
        engine.dispose()
    if database_url.startswith("sqlite"):
        _checkpoint_sqlite(database_url)
    return time.perf_counter() - started


def _finish_postgresql(connection: Any, text: Any) -> None:
    for table in ("contacts", "tickets", "messages", "events"):
        sequence = f"pg_get_serial_sequence('{table}', 'id')"
        connection.execute(text(f"SELECT setval({sequence}, (SELECT max(id) FROM {table}))"))
    for table in ("contacts", "tickets", "ticket_participants", "messages", "events"):
        connection.execute(text(f"ANALYZE {table}"))


def _checkpoint_sqlite(database_url: str) -> None:
    """Fold the bulk load's write-ahead log into the database file before the daemon starts."""
    import sqlite3
    from urllib.parse import unquote

    connection = sqlite3.connect(unquote(database_url.split(":///", 1)[1]), timeout=30)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
