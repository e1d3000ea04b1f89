"""Broken MIME, unknown charsets and missing From: kept, and the daemon keeps serving."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.helpers import drain, inbound_rows, ticket, tickets
from tests.support.mailfactory import make_mail
from tests.support.smtp_client import send

BROKEN_MIME = (
    b"From: bob@customer.example\r\nTo: support@example.com\r\nSubject: broken\r\n"
    b'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
    b"--never-closed\r\nContent-Type: text/plain\r\n\r\nthe body survives\r\n"
    b"--never-closed\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"!!!not base64!!!\r\n"
)
UNKNOWN_CHARSET = (
    b"From: carol@customer.example\r\nTo: support@example.com\r\nSubject: =?x-klingon?q?qapla=27?=\r\n"
    b"Content-Type: text/plain; charset=x-klingon\r\n\r\nnuqneH \xff\xfe\r\n"
)
NO_FROM = b"To: support@example.com\r\nSubject: who am I\r\n\r\nanonymous\r\n"
TWO_FROMS = (
    b"From: alice@customer.example\r\nFrom: ceo@example.com\r\nTo: support@example.com\r\n"
    b"Subject: two senders\r\n\r\nhello\r\n"
)


async def test_bad_mail_is_kept_and_the_listener_goes_on(app: Any) -> None:
    """Each odd message is accepted and either becomes a ticket or is kept failed with a reason."""
    port = app.smtp_address[1]
    for raw in (BROKEN_MIME, UNKNOWN_CHARSET, NO_FROM, TWO_FROMS):
        await asyncio.to_thread(send, port, raw)
    await asyncio.to_thread(send, port, make_mail(subject="after the bad ones"))
    await drain(app)
    rows = inbound_rows(app)
    assert len(rows) == 5
    assert all(r.state == "done" or (r.state == "failed" and r.last_error) for r in rows)
    subjects = {t.subject for t in tickets(app)}
    assert "after the bad ones" in subjects


async def test_sender_without_a_single_identity_is_untrusted(app: Any) -> None:
    """No From, or two From headers: the ticket exists, has no requester, and is tagged suspicious."""
    port = app.smtp_address[1]
    for raw in (NO_FROM, TWO_FROMS):
        await asyncio.to_thread(send, port, raw)
    await drain(app)
    rows = tickets(app)
    assert len(rows) == 2
    for row in rows:
        assert row.requester is None and "suspicious-sender" in row.tags
        assert any(e.kind == "sender_untrusted" for e in ticket(app, row.number).events)


async def test_mail_from_our_own_address_is_ignored_not_ticketed(app: Any) -> None:
    """A mail claiming to come from a support address (a loop) never becomes a ticket; the raw mail is kept."""
    await asyncio.to_thread(send, app.smtp_address[1], make_mail(sender="Support <support+x@example.com>"))
    await drain(app)
    assert tickets(app) == []
    (row,) = inbound_rows(app)
    assert row.state == "ignored" and "own address" in (row.last_error or "")
