"""`mailgate report` over a history seeded through the store: exact figures worked out by hand, and the
HTML report rendered by headless Chromium with its charts on screen."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from mailgate.config import load_config
from mailgate.domain.ticket import Priority
from mailgate.parts import build_store
from mailgate.report_render import render
from mailgate.reporting import Report, build_report
from mailgate.store import inbound, reports, schema, tickets
from mailgate.store.models import Message, Ticket
from mailgate.store.transaction import Store
from tests.support.daemon import write_config
from tests.support.daemon_extras import png_colours

H = timedelta(hours=1)
NOW = datetime(2026, 3, 12, 12, 0, tzinfo=UTC)
SINCE = datetime(2026, 3, 1, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


# The history, ticket by ticket (times UTC, "now" is 12 March 12:00):
#  A  2 Mar 09:00 smtp  high    support: replied +1h (event and column), resolved +5h;
#                                        first response due +2h (met), resolution due +8h (met)
#  B  2 Mar 12:00 imap  medium  support: replied +3h (column only); first response due +2h (missed, breach event);
#                                        closed +24h, resolution due +48h (met); reopened 4 Mar
#  C  3 Mar 08:00 pipe  urgent  billing: replied +50m (event only); due column cleared, warning event says due
#                                        09:00 (met); resolution due 16:00, never resolved (missed)
#  D  5 Mar 10:00 smtp  low     support: no reply, first response due 20 Mar (not yet measurable)
#  E  5 Mar 11:00 lmtp  medium  support: replied +6h; resolved +30h; reopened; resolved again;
#                                        resolution due cleared, breach event says due 6 Mar 09:00 (missed)
#  F 12 Mar 09:00 -     medium  support: no message, nothing else (channel "other")
#  G 15 Jan       smtp  high    support: pending, created before the period: backlog only
def seed(session: Session) -> None:
    a = _ticket(session, at(2, 9), "smtp", Priority.HIGH, "support", "resolved")
    _timing(session, a, first_agent_response_at=at(2, 10), first_response_due=at(2, 11), resolution_due=at(2, 17))
    tickets.add_event(session, a, "agent_replied", "agent@example.com", at(2, 10))
    _status(session, a, at(2, 14), "open", "resolved")

    b = _ticket(session, at(2, 12), "imap", Priority.MEDIUM, "support", "open")
    _timing(session, b, first_agent_response_at=at(2, 15), first_response_due=at(2, 14), resolution_due=at(4, 12))
    _escalation(session, b, at(2, 14), "first_response", "breach", at(2, 14))
    _status(session, b, at(3, 12), "open", "closed")
    _status(session, b, at(4, 9), "closed", "open")

    c = _ticket(session, at(3, 8), "pipe", Priority.URGENT, "billing", "open")
    _timing(session, c, resolution_due=at(3, 16))
    _escalation(session, c, at(3, 8, 48), "first_response", "warning", at(3, 9))
    tickets.add_event(session, c, "agent_replied", "agent@example.com", at(3, 8, 50))

    d = _ticket(session, at(5, 10), "smtp", Priority.LOW, "support", "new")
    _timing(session, d, first_response_due=at(20, 10))

    e = _ticket(session, at(5, 11), "lmtp", Priority.MEDIUM, "support", "resolved")
    _timing(session, e, first_agent_response_at=at(5, 17))
    tickets.add_event(session, e, "agent_replied", "agent@example.com", at(5, 17))
    _escalation(session, e, at(6, 9), "resolution", "breach", at(6, 9))
    _status(session, e, at(6, 17), "open", "resolved")
    _status(session, e, at(7, 10), "resolved", "open")
    _status(session, e, at(8, 11), "open", "resolved")

    _ticket(session, at(12, 9), None, Priority.MEDIUM, "support", "new")
    _ticket(session, datetime(2026, 1, 15, 9, 0, tzinfo=UTC), "smtp", Priority.HIGH, "support", "pending")


def _ticket(
    session: Session, created: datetime, channel: str | None, priority: Priority, queue: str, status: str
) -> int:
    ticket_id, number = tickets.create_ticket(
        session, subject=f"seeded {created:%m-%d %H:%M}", queue=queue, requester_id=None, priority=priority, now=created
    )
    session.get_one(Ticket, ticket_id).status = status
    if channel is not None:
        inbound_id = inbound.enqueue(session, b"Subject: seeded\r\n\r\n", inbound.Envelope(channel), created)
        session.add(
            Message(
                ticket_id=ticket_id,
                inbound_id=inbound_id,
                direction="in",
                message_id=f"<seed-{number}@client.example>",
                created_at=created,
            )
        )
    return ticket_id


def _timing(session: Session, ticket_id: int, **columns: datetime) -> None:
    ticket = session.get_one(Ticket, ticket_id)
    for name, value in columns.items():
        setattr(ticket, name, value)


def _status(session: Session, ticket_id: int, when: datetime, old: str, new: str) -> None:
    tickets.add_event(session, ticket_id, "status_changed", "agent@example.com", when, old=old, new=new)


def _escalation(session: Session, ticket_id: int, when: datetime, target: str, kind: str, due: datetime) -> None:
    data = {"target": target, "kind": kind, "due": due.isoformat()}
    tickets.add_event(session, ticket_id, "sla_escalation", "scheduler", when, **data)


@pytest.fixture
def config_file(tmp_path: Path, db_url: str) -> Iterator[Path]:
    path = write_config(tmp_path / "mailgate.toml", data_dir=tmp_path / "data", db_url=db_url, port=2597)
    store = build_store(load_config(path))
    schema.upgrade(store.engine)
    store.run(seed)
    store.dispose()
    yield path


@pytest.fixture
def store(config_file: Path) -> Iterator[Store]:
    opened = build_store(load_config(config_file))
    yield opened
    opened.dispose()


def report_of(store: Store, queue: str | None = None) -> Report:
    histories = store.run(reports.ticket_histories, since=SINCE, queue=queue)
    backlog = store.run(reports.open_tickets, queue=queue)
    return build_report(histories, backlog, now=NOW, since=SINCE, queue=queue)


def test_report_figures_match_the_hand_computed_ones(store: Store) -> None:
    """Volume, medians, p90s, SLA compliance, escalation and reopen rates and backlog, exactly as worked out."""
    report = report_of(store)
    assert report.tickets == 6
    by_day = dict(report.by_day)
    assert len(by_day) == 12 and by_day["2026-03-02"] == 2 and by_day["2026-03-03"] == 1
    assert by_day["2026-03-05"] == 2 and by_day["2026-03-12"] == 1 and sum(by_day.values()) == 6
    assert report.by_channel == {"smtp": 2, "lmtp": 1, "pipe": 1, "imap": 1, "other": 1}
    assert report.by_priority == {"low": 1, "medium": 3, "high": 1, "urgent": 1}
    # First responses: 50 min, 1 h, 3 h, 6 h -> median (1 h + 3 h) / 2, p90 3 h + 0.7 * (6 h - 3 h).
    assert report.first_response.count == 4
    assert report.first_response.median_seconds == 7200
    assert report.first_response.p90_seconds == pytest.approx(18360)
    # Resolutions (first resolved/closed): 5 h, 24 h, 30 h -> median 24 h, p90 24 h + 0.8 * 6 h.
    assert report.resolution.count == 3
    assert report.resolution.median_seconds == 86400
    assert report.resolution.p90_seconds == pytest.approx(103680)
    assert dict(report.response_distribution) == {"<1h": 1, "1-4h": 2, "4-8h": 1, "8-24h": 0, "1-3d": 0, ">3d": 0}
    # First response: A met, B missed, C met (due from its warning); D not yet due; E, F no due time.
    assert (report.sla["first_response"].measured, report.sla["first_response"].met) == (3, 2)
    # Resolution: A met, B met (closed), C overdue, E missed (due from its breach event).
    assert (report.sla["resolution"].measured, report.sla["resolution"].met) == (4, 2)
    assert report.sla["resolution"].rate == 0.5
    assert (report.escalated, report.escalation_rate) == (3, 0.5)
    assert report.reopened == 2 and report.reopen_rate == pytest.approx(1 / 3)
    assert report.backlog["new"] == {"<1d": 1, "1-3d": 0, "3-7d": 0, "7-30d": 1, ">30d": 0}
    assert report.backlog["open"]["7-30d"] == 2 and sum(report.backlog["open"].values()) == 2
    assert report.backlog["pending"][">30d"] == 1 and sum(report.backlog["answered"].values()) == 0


def test_report_for_one_queue(store: Store) -> None:
    """--queue billing leaves only ticket C: one response of 50 minutes, one open ticket."""
    report = report_of(store, queue="billing")
    assert report.tickets == 1
    assert report.first_response.median_seconds == 3000 and report.first_response.p90_seconds == 3000
    assert sum(sum(row.values()) for row in report.backlog.values()) == 1


def test_json_csv_and_table_carry_the_same_figures(store: Store) -> None:
    """The three text formats agree on the headline figures."""
    report = report_of(store)
    data = json.loads(render(report, "json"))
    assert data["first_response"]["median_seconds"] == 7200 and data["sla"]["first_response"]["met"] == 2
    assert data["volume"]["by_channel"]["imap"] == 1 and data["escalation_rate"] == 0.5
    rows = {(r["section"], r["key"]): r["value"] for r in csv.DictReader(io.StringIO(render(report, "csv")))}
    assert rows[("first_response", "median_seconds")] == "7200.0"
    assert rows[("sla_resolution", "compliance")] == "0.5"
    assert rows[("backlog_pending", ">30d")] == "1"
    table = render(report, "table")
    assert "median       2h" in table and "50.0%" in table and "(2 of 3 measured)" in table


def mailgate(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailgate", "--config", str(config), *args], capture_output=True, text=True, timeout=120
    )


def test_report_command_prints_json(config_file: Path) -> None:
    """`mailgate report --since 2026-03-01 --format json` gives the figures that do not depend on today's date."""
    result = mailgate(config_file, "report", "--since", "2026-03-01", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["tickets"] == 6 and data["reopened"] == 2 and data["escalated"] == 3
    assert data["first_response"] == {"count": 4, "median_seconds": 7200.0, "p90_seconds": pytest.approx(18360)}
    assert data["resolution"]["median_seconds"] == 86400
    bad = mailgate(config_file, "report", "--since", "last month")
    assert bad.returncode == 64 and "30d" in bad.stderr


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "chromium is not installed (scripts/test.sh installs Debian's chromium where it can)"
        print(f"\nskipping: {reason}")
        pytest.skip(reason)
    return found


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1200,1600",
    ]
    return subprocess.run([binary, *flags, *args], capture_output=True, timeout=120)


def test_html_report_renders_its_charts_in_chromium(config_file: Path, tmp_path: Path) -> None:
    """The HTML file is self-contained, its four SVG charts are in Chromium's DOM, and the screenshot is not blank."""
    binary = chromium()
    page = tmp_path / "report.html"
    result = mailgate(config_file, "report", "--since", "2026-03-01", "--format", "html", "--output", str(page))
    assert result.returncode == 0, result.stderr
    html = page.read_text()
    assert "<script" not in html and "<link" not in html and "@import" not in html and " src=" not in html
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    dom = run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    text = dom.stdout.decode()
    for chart in ("chart-volume", "chart-priority", "chart-response", "chart-backlog"):
        assert f'id="{chart}"' in text, chart
    assert text.count("<rect") >= 12 and text.count("stroke-dasharray") >= 4
    shot = tmp_path / "report.png"
    taken = run_chromium(binary, tmp_path / "profile-shot", f"--screenshot={shot}", page.as_uri())
    assert taken.returncode == 0 and shot.exists(), taken.stderr.decode(errors="replace")[-2000:]
    _keep_artifact(shot)
    # White page, black text and grey lines would be a handful of colours; bars and the donut add many more.
    assert png_colours(shot) > 20


def test_report_html_escapes_what_comes_from_data(store: Store) -> None:
    """A queue name with markup is shown as text, never as HTML."""
    report = report_of(store, queue='<img src=x onerror="alert(1)">')
    html = render(report, "html")
    assert "<img" not in html and "&lt;img src=x" in html


def _keep_artifact(shot: Path) -> None:
    """CI keeps the screenshot when MAILGATE_TEST_ARTIFACTS names a directory."""
    target: Any = os.environ.get("MAILGATE_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / "report.png")
