"""SMTP in the acceptance process (the daemon's default) and group commit on the daemon's own loop."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from mailgate.app import App
from mailgate.config import Config
from tests.integration.helpers import drain, inbound_rows, tickets
from tests.support.mailfactory import make_mail
from tests.support.smtp_client import send


async def test_mail_through_the_acceptance_process_becomes_a_ticket(config_factory: Callable[..., Config]) -> None:
    app = App(config_factory(smtp={"separate_process": True}))
    await app.start()
    try:
        assert app.acceptance is not None and app.smtp_handler is None
        assert app.listener_up()
        assert app.smtp_address is not None
        await asyncio.to_thread(send, app.smtp_address[1], make_mail(subject="via the child"))
        await drain(app)
        assert [t.subject for t in tickets(app)] == ["via the child"]
        assert app.metrics.received.value("smtp") == 1, "the parent counts what the child queued"
        with smtplib.SMTP("127.0.0.1", app.smtp_address[1], timeout=10) as client:
            client.ehlo()
            client.mail("a@customer.example")
            assert client.rcpt("nobody@example.com")[0] == 550, "RCPT checks run in the child too"
        process = app.acceptance.process
    finally:
        await app.stop()
    assert process is not None and process.returncode == 0, "SIGTERM: it drained and exited cleanly"
    assert not app.listener_up()


async def test_concurrent_sessions_share_commits(config_factory: Callable[..., Config]) -> None:
    """16 sessions sending at once: every mail is queued once, in fewer commits than mails."""
    app = App(config_factory())
    await app.start()
    try:
        assert app.smtp_handler is not None and app.smtp_address is not None
        port = app.smtp_address[1]

        def session(index: int) -> None:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                for n in range(5):
                    raw = make_mail(sender=f"c{index}@customer.example", message_id=f"<g{index}-{n}@client.example>")
                    client.sendmail(f"c{index}@customer.example", ["support@example.com"], raw)

        with ThreadPoolExecutor(16) as pool:
            await asyncio.gather(*(asyncio.wrap_future(pool.submit(session, i)) for i in range(16)))
        rows = inbound_rows(app)
        assert len(rows) == 80 and len({row.id for row in rows}) == 80
        batches = app.smtp_handler.committer.batches
        assert batches < 80, f"{batches} commits for 80 concurrent mails"
    finally:
        await app.stop()
