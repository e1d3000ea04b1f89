"""Every statement the daemon runs while it files, sends, ticks timers and reports status finds its
rows through an index: SQLite's EXPLAIN QUERY PLAN shows no full scan of a table that grows with
the mail. A scan there costs in proportion to the store, so a million tickets would slow every
message (the circuit breaker's count of sent mail once scanned the whole outbox at every claim).

The statements are caught as they run (SQLAlchemy's full execution path, so the fast path's
statements are seen too) and each distinct one is explained with the parameters it ran with.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from mailgate.app import App
from mailgate.clock import FakeClock
from mailgate.store import core, inbound, schema, status, timers
from tests.conftest import make_config
from tests.integration.test_rules_worker import sla_sections
from tests.support.smtp_sink import SmtpSink
from tests.support.workloads import varied_workload

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

# Tables whose size is set by the configuration, not by the mail: a scan of them is fine.
CONFIGURATION_SIZED = {"imap_state", "round_robin", "alembic_version"}

# A scan along an index (ORDER BY ... LIMIT, or a count per state) passes; a scan of the table does not.
_SCAN = re.compile(r"\bSCAN (\w+)\b(?! USING (?:COVERING )?INDEX)")


def _scanned_tables(plan: list[str]) -> set[str]:
    return {match.group(1) for detail in plan for match in _SCAN.finditer(detail)}


async def _run_everything(app: App, clock: FakeClock) -> None:
    """File the varied workload, send its mail, fire SLA timers, read what /metrics reads."""
    for raw in varied_workload():
        envelope = inbound.Envelope("smtp", "", ("support@example.com",))
        await app.store.call(inbound.enqueue, raw, envelope, clock.now())
        clock.advance(timedelta(seconds=7))
        await app.worker.run_until_idle()
    await app.outbox_worker.run_until_idle()
    for _ in range(3):  # past first-response warnings and breaches
        clock.advance(timedelta(hours=5))
        await app.scheduler.tick()
    await app.outbox_worker.run_until_idle()
    app.store.read(status.snapshot)
    app.store.read(timers.earliest_timer)
    app.store.read(timers.due_count, clock.now())
    app.store.run(inbound.requeue_stale, clock.now() - timedelta(minutes=5), "nobody")
    app.store.read(inbound.older_mail_in_flight, 1_000, clock.now(), 33)
    app.store.read(inbound.mail_head, 1)


async def test_no_statement_scans_a_table_that_grows_with_the_mail(
    tmp_path: Path, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "FAST_SQLITE", False)  # every statement through SQLAlchemy's events
    clock = FakeClock(START)
    rule = {
        "name": "urgent words",
        "conditions": [{"field": "body", "op": "contains", "value": "urgent"}],
        "actions": [{"set_priority": "high"}, {"add_tag": "hurry"}, {"assign": "round_robin"}],
    }
    url = f"sqlite:///{tmp_path / 'data' / 'mailgate.sqlite3'}"
    config = make_config(tmp_path, url, rules=[rule], outgoing={"relay_port": sink.port}, **sla_sections())
    app = App(config, clock=clock)
    await asyncio.to_thread(schema.upgrade, app.store.engine)
    seen: dict[str, Any] = {}

    def remember(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if not many and statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "INSERT INTO")):
            seen.setdefault(statement, parameters)

    event.listen(app.store.engine, "before_cursor_execute", remember)
    try:
        await _run_everything(app, clock)
        event.remove(app.store.engine, "before_cursor_execute", remember)
        assert len(sink.received) >= 12, "the workload sent mail"
        scans = {}
        with app.store.engine.connect() as connection:
            for statement, parameters in seen.items():
                plan = [row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
                tables = _scanned_tables(plan) - CONFIGURATION_SIZED
                if tables:
                    scans[statement] = plan
    finally:
        await app.outbox_worker.close_relay()
        app.store.dispose()
    assert len(seen) > 40, "the statements were caught"
    assert scans == {}


def test_the_scan_pattern_tells_a_scan_from_an_index_walk() -> None:
    assert _scanned_tables(["SCAN outbox"]) == {"outbox"}
    assert _scanned_tables(["SCAN tickets USING INDEX ix_tickets_next_timer_at"]) == set()
    assert _scanned_tables(["SCAN inbound USING COVERING INDEX ix_inbound_state_id"]) == set()
    assert _scanned_tables(["SEARCH outbox USING INDEX ix_outbox_state_due (state=?)"]) == set()
