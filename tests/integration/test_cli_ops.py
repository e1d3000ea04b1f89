"""Operator commands as real processes: db upgrade twice, tickets set, export as JSON lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from mailgate.config import load_config
from mailgate.domain.ticket import Priority
from mailgate.parts import build_store
from mailgate.store import tickets
from tests.support.cli import mailgate, process_queue
from tests.support.daemon import write_config
from tests.support.mailfactory import make_mail

AGENT = '\n[[agents]]\nemail = "agent@example.com"\nname = "Agnes Agent"\n'


@pytest.fixture
def config_file(tmp_path: Path, db_url: str) -> Path:
    return write_config(tmp_path / "mailgate.toml", data_dir=tmp_path / "data", db_url=db_url, port=2596, extra=AGENT)


def test_db_upgrade_twice_is_a_no_op_the_second_time(config_file: Path) -> None:
    """A second `db upgrade` succeeds, says the schema is current and keeps the data."""
    first = mailgate(config_file, "db", "upgrade")
    assert first.returncode == 0 and b"schema is current" in first.stdout, first.stderr
    assert mailgate(config_file, "deliver", "--recipient", "support@example.com", stdin=make_mail()).returncode == 0
    second = mailgate(config_file, "db", "upgrade")
    assert second.returncode == 0 and b"schema is current" in second.stdout, second.stderr
    listing = json.loads(mailgate(config_file, "inbound", "list", "--json").stdout)
    assert len(listing) == 1


def test_tickets_set_changes_status_priority_and_assignee(config_file: Path) -> None:
    """`tickets set` applies all three changes with system-log events; bad input is a usage error (64)."""
    assert mailgate(config_file, "db", "upgrade").returncode == 0
    assert mailgate(config_file, "deliver", "--recipient", "support@example.com", stdin=make_mail()).returncode == 0
    process_queue(config_file)
    number = json.loads(mailgate(config_file, "tickets", "list", "--json").stdout)[0]["number"]
    changed = mailgate(
        config_file,
        "tickets",
        "set",
        str(number),
        "--status",
        "pending",
        "--priority",
        "urgent",
        "--assign",
        "agent@example.com",
    )
    assert changed.returncode == 0, changed.stderr
    assert b"status pending, priority urgent, assignee agent@example.com" in changed.stdout
    shown = json.loads(mailgate(config_file, "tickets", "show", str(number), "--json").stdout)
    assert (shown["status"], shown["priority"], shown["assignee"]) == ("pending", "urgent", "agent@example.com")
    kinds = [event["kind"] for event in shown["events"]]
    assert {"status_changed", "priority_changed", "assigned"} <= set(kinds)
    unassigned = mailgate(config_file, "tickets", "set", str(number), "--assign", "none")
    assert unassigned.returncode == 0 and b"assignee none" in unassigned.stdout
    assert mailgate(config_file, "tickets", "set", str(number)).returncode == 64
    assert mailgate(config_file, "tickets", "set", str(number), "--assign", "stranger@example.com").returncode == 64
    assert mailgate(config_file, "tickets", "set", "999999", "--status", "open").returncode != 0


def _seed_many(session: Session, count: int, start: datetime) -> None:
    for index in range(count):
        when = start + timedelta(minutes=index)
        ticket_id, _ = tickets.create_ticket(
            session, subject=f"bulk {index}", queue="support", requester_id=None, priority=Priority.MEDIUM, now=when
        )
        tickets.add_event(session, ticket_id, "ticket_created", "system", when, via="test")


def test_export_streams_every_ticket_with_messages_and_events_as_json_lines(config_file: Path) -> None:
    """450 tickets come out as 450 lines across pages, in order; --since filters on the last update."""
    assert mailgate(config_file, "db", "upgrade").returncode == 0
    assert mailgate(config_file, "deliver", "--recipient", "support@example.com", stdin=make_mail()).returncode == 0
    process_queue(config_file)
    store = build_store(load_config(config_file))
    store.run(_seed_many, 450, datetime(2020, 1, 1, tzinfo=UTC))
    store.dispose()
    result = mailgate(config_file, "export")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(lines) == 451
    assert [line["number"] for line in lines] == sorted(line["number"] for line in lines)
    mailed = next(line for line in lines if line["messages"])
    assert mailed["messages"][0]["subject"] == "Printer is on fire" and mailed["messages"][0]["text_body"]
    assert any(event["kind"] == "ticket_created" for event in mailed["events"])
    assert all(line["events"] for line in lines)
    recent = mailgate(config_file, "export", "--since", "2021-01-01")
    assert [json.loads(line)["number"] for line in recent.stdout.decode().splitlines()] == [mailed["number"]]
    assert mailgate(config_file, "export", "--since", "yesterday-ish").returncode == 64
