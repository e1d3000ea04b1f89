"""Notifications through a real relay: one well-formed mail per status change, retried, never lost."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailgate.app import App
from mailgate.clock import FakeClock
from mailgate.domain.ticket import TicketStatus
from mailgate.store import outbox
from tests.integration.helpers import drain, flush_outbox, inbound_rows, ticket, tickets
from tests.support.mailfactory import make_mail, with_raw_subject
from tests.support.smtp_client import send
from tests.support.smtp_sink import SmtpSink

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
async def desk(config_factory: Any, sink: SmtpSink) -> AsyncIterator[App]:
    """An App whose relay is the sink, on a fake clock so retries are driven by the test."""
    application = App(config_factory(outgoing={"relay_port": sink.port}, agents=[]), clock=FakeClock(START))
    await application.start()
    try:
        yield application
    finally:
        await application.stop()


async def receive(app: App, raw: bytes, **kwargs: Any) -> None:
    assert app.smtp_address is not None
    await asyncio.to_thread(send, app.smtp_address[1], raw, **kwargs)
    await drain(app)


async def flush(app: App) -> None:
    await flush_outbox(app)


def set_status(app: App, number: int, status: TicketStatus) -> None:
    actions = app.actions
    app.store.run(
        lambda s: actions.change_status(s, actions.ticket_id(s, number), status, actor="admin", now=app.clock.now())
    )


async def test_acknowledgement_is_one_well_formed_threaded_mail(desk: App, sink: SmtpSink) -> None:
    """A new ticket sends the customer exactly one acknowledgement with the right headers."""
    await receive(
        desk, make_mail(sender="Alice <alice@customer.example>", subject="Printer", message_id="<c1@x.example>")
    )
    await flush(desk)
    (mail,) = sink.received
    message = mail.message
    (row,) = tickets(desk)
    assert mail.rcpt_tos == ["alice@customer.example"]
    assert message["From"] == "Acme Support <support@example.com>"
    assert message["To"] == "Alice <alice@customer.example>"
    assert f"[Acme Support #{row.number}]" in message["Subject"]
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Mailgate-Loop"] == "example.com"
    assert message["In-Reply-To"] == "<c1@x.example>"
    assert f"<ticket-{row.number}@example.com>" in message["References"]
    assert "<c1@x.example>" in message["References"]
    assert re.fullmatch(rf"<mg\.{row.number}\.[0-9a-f]+\.[a-z2-7]{{16}}@example\.com>", message["Message-ID"])
    assert re.fullmatch(r"support\+b\d+\.[a-z2-7]{16}@example\.com", mail.mail_from)
    assert "Reply above this line" in message.get_body(("plain",)).get_content()
    assert message.get_body(("html",)) is not None


async def test_every_status_change_mails_the_customer_once(desk: App, sink: SmtpSink) -> None:
    """open, pending, resolved, closed, reopened: one mail each, threaded under the ticket."""
    await receive(desk, make_mail(message_id="<s1@x.example>"))
    (row,) = tickets(desk)
    for status in (
        TicketStatus.OPEN,
        TicketStatus.PENDING,
        TicketStatus.RESOLVED,
        TicketStatus.OPEN,
        TicketStatus.RESOLVED,
        TicketStatus.CLOSED,
    ):
        set_status(desk, row.number, status)
    set_status(desk, row.number, TicketStatus.CLOSED)  # no change: no mail
    await flush(desk)
    subjects = [m.message["Subject"] for m in sink.received]
    assert len(subjects) == 7  # the acknowledgement and six changes
    assert [s.split("] ")[1].split(":")[0] for s in subjects[1:]] == [
        "Open",
        "Waiting for you",
        "Resolved",
        "Reopened",
        "Resolved",
        "Closed",
    ]
    resolved = sink.received[3].message.get_body(("plain",)).get_content()
    assert "solved" in resolved and "reopens" in resolved
    ids = [m.message["Message-ID"] for m in sink.received]
    assert len(set(ids)) == 7
    assert all("<s1@x.example>" in m.message["References"] for m in sink.received)


async def test_customer_reply_to_our_mail_threads_by_signed_message_id(desk: App, sink: SmtpSink) -> None:
    """Replying to the acknowledgement (In-Reply-To our Message-ID only) joins the ticket and reopens it."""
    await receive(desk, make_mail(sender="bob@customer.example", subject="VPN"), sender="bob@customer.example")
    await flush(desk)
    ack_id = sink.received[0].message["Message-ID"]
    (row,) = tickets(desk)
    set_status(desk, row.number, TicketStatus.RESOLVED)
    reply = make_mail(sender="bob@customer.example", subject="no tag here", in_reply_to=ack_id)
    await receive(desk, reply, sender="bob@customer.example")
    assert [t.number for t in tickets(desk)] == [row.number]
    assert ticket(desk, row.number).summary.status == "open"


async def test_mail_is_in_the_customers_language(desk: App, sink: SmtpSink) -> None:
    """Content-Language fi or lt picks the Finnish or Lithuanian templates."""
    await receive(desk, make_mail(sender="a@asiakas.fi", extra_headers={"Content-Language": "fi-FI"}))
    await receive(desk, make_mail(sender="b@klientas.lt", extra_headers={"Content-Language": "lt"}))
    await receive(desk, make_mail(sender="c@customer.example"))
    await flush(desk)
    bodies = {m.rcpt_tos[0]: m.message.get_body(("plain",)).get_content() for m in sink.received}
    assert "kiitos yhteydenotostasi" in bodies["a@asiakas.fi"]
    assert "dėkojame, kad susisiekėte" in bodies["b@klientas.lt"]
    assert "thank you for contacting" in bodies["c@customer.example"]


async def test_hostile_subject_injects_no_header_and_no_html(desk: App, sink: SmtpSink) -> None:
    """A subject decoding to CR/LF and <script> yields neither a new header nor live HTML."""
    raw = with_raw_subject(
        make_mail(), "=?utf-8?q?hi=0D=0ABcc=3A_victim=40evil=2Eexample_=3Cscript=3Ealert(1)=3C/script=3E?="
    )
    await receive(desk, raw)
    await flush(desk)
    (mail,) = sink.received
    message = mail.message
    assert message["Bcc"] is None and mail.rcpt_tos == ["alice@customer.example"]
    assert "\n" not in message["Subject"]
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html


async def test_relay_down_then_up_delivers_each_mail_once_with_its_message_id(desk: App, sink: SmtpSink) -> None:
    """With the relay down mail waits; once it is back every mail arrives once, with its queued Message-ID."""
    sink.stop()
    for index in range(3):
        await receive(desk, make_mail(sender=f"u{index}@customer.example"))
    await flush(desk)
    queued = {r.message_id: r for r in desk.store.run(outbox.list_outbox)}
    assert all(r.state == "queued" and r.attempts == 1 and r.last_error for r in queued.values())
    desk.clock.advance(timedelta(seconds=20))  # type: ignore[attr-defined]
    await flush(desk)  # not due yet: nothing is tried
    assert all(r.attempts == 1 for r in desk.store.run(outbox.list_outbox))
    sink.start()
    desk.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    await flush(desk)
    received = sorted(m.message["Message-ID"].strip("<>") for m in sink.received)
    assert received == sorted(queued)
    assert all(r.state == "sent" for r in desk.store.run(outbox.list_outbox))


async def test_mail_waiting_for_the_relay_goes_over_one_connection_closed_when_done(desk: App, sink: SmtpSink) -> None:
    """Mail queued while the relay was down leaves in one SMTP session, which is ended once nothing is due."""
    sink.stop()
    for index in range(5):
        await receive(desk, make_mail(sender=f"w{index}@customer.example"))
    await flush(desk)
    sink.start()
    before = sink.connections
    desk.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    await flush(desk)
    assert len(sink.received) == 5 and len({m.connection for m in sink.received}) == 1
    assert sink.connections - before == 1
    deadline = asyncio.get_running_loop().time() + 10
    while sink.open_connections:
        assert asyncio.get_running_loop().time() < deadline, "the relay connection was left open"
        await asyncio.sleep(0.01)


async def test_permanent_refusal_marks_the_row_failed_with_the_reply(desk: App, sink: SmtpSink) -> None:
    """A 5xx reply is final: the row is failed and keeps the relay's words; `outbox retry` can resend it."""
    sink.refuse_next("550 5.1.1 no such user here")
    await receive(desk, make_mail())
    await flush(desk)
    (row,) = desk.store.run(outbox.list_outbox)
    assert row.state == "failed" and "550 5.1.1 no such user here" in (row.last_error or "")
    assert desk.store.run(outbox.retry, row.id, desk.clock.now()) == "failed"
    await flush(desk)
    assert len(sink.received) == 1


async def test_temporary_refusals_give_up_after_the_maximum_age(desk: App, sink: SmtpSink) -> None:
    """4xx replies are retried with backoff until outgoing.max_age_hours, then the row is failed."""
    sink.refuse_next("451 4.3.0 try later", times=100)
    await receive(desk, make_mail())
    for _ in range(60):
        await flush(desk)
        desk.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    (row,) = desk.store.run(outbox.list_outbox)
    assert row.state == "failed" and "gave up" in (row.last_error or "") and "451" in (row.last_error or "")
    assert 2 < row.attempts < 60


def delivery_report(original_message_id: str, status: str = "5.1.1") -> bytes:
    return (
        "From: MAILER-DAEMON@relay.example\r\nTo: support@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\nMessage-ID: <dsn1@relay.example>\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
        "--R\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example\r\n\r\n"
        f"Final-Recipient: rfc822; alice@customer.example\r\nAction: failed\r\nStatus: {status}\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        "--R\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: <{original_message_id}>\r\nSubject: x\r\n"
        "--R--\r\n"
    ).encode()


async def test_bounce_marks_the_mail_and_address_and_opens_no_ticket(desk: App, sink: SmtpSink) -> None:
    """A DSN at the VERP address marks the outbox row bounced and stops automatic mail to that address."""
    await receive(desk, make_mail())
    await flush(desk)
    (sent,) = sink.received
    (row,) = desk.store.run(outbox.list_outbox)
    await receive(desk, delivery_report(row.message_id), sender="", recipients=(sent.mail_from,))
    assert len(tickets(desk)) == 1
    assert desk.store.run(outbox.list_outbox)[0].state == "bounced"
    number = tickets(desk)[0].number
    events = [e.kind for e in ticket(desk, number).events]
    assert "mail_bounced" in events
    set_status(desk, number, TicketStatus.RESOLVED)
    assert "mail_suppressed" in [e.kind for e in ticket(desk, number).events]
    assert inbound_rows(desk)[0].state == "done"


async def test_circuit_breaker_holds_automatic_mail(config_factory: Any, sink: SmtpSink) -> None:
    """More automatic mails per minute than allowed are held (with an alert), not sent."""
    app = App(
        config_factory(outgoing={"relay_port": sink.port, "max_automatic_per_minute": 3}, agents=[]),
        clock=FakeClock(START),
    )
    await app.start()
    try:
        for index in range(6):
            await receive(app, make_mail(sender=f"flood{index}@customer.example"))
        await flush(app)
        assert len(sink.received) == 3
        app.clock.advance(timedelta(minutes=2))  # type: ignore[attr-defined]
        await flush(app)
        assert len(sink.received) == 6
    finally:
        await app.stop()


async def test_agents_get_new_tickets_with_a_signed_reply_to(config_factory: Any, sink: SmtpSink) -> None:
    """The queue's agent gets each new ticket with the conversation and a Reply-To that names the ticket."""
    app = App(config_factory(outgoing={"relay_port": sink.port}), clock=FakeClock(START))
    await app.start()
    try:
        await receive(app, make_mail(subject="Broken", body="Nothing works at all.\n"))
        await flush(app)
        (row,) = tickets(app)
        to_agent = [m for m in sink.received if m.rcpt_tos == ["agent@example.com"]]
        assert len(to_agent) == 1
        message = to_agent[0].message
        assert re.fullmatch(rf"Acme Support <support\+t{row.number}\.[a-z2-7]{{16}}@example\.com>", message["Reply-To"])
        assert "Nothing works at all." in message.get_body(("plain",)).get_content()
        assert message["From"] == "Acme Support <support@example.com>"
    finally:
        await app.stop()
