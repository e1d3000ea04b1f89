"""The daemon's helper processes (acceptance, outbox: its default) and group commit on its own loop."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from structlog.testing import capture_logs

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


async def _wait_for(predicate: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_the_outbox_process_sends_and_the_daemon_counts(config_factory: Callable[..., Config], sink: Any) -> None:
    app = App(config_factory(outgoing={"relay_port": sink.port, "separate_process": True}))
    await app.start()
    try:
        assert app.outbox_process is not None and app.outbox_process.serving
        assert app.smtp_address is not None
        await asyncio.to_thread(send, app.smtp_address[1], make_mail(subject="answer me"))
        await drain(app)
        # The acknowledgement and the agent's copy, sent by the child, counted by the daemon.
        await _wait_for(lambda: len(sink.received) == 2 and app.metrics.outbox_sent.value() == 2)
        recipients = sorted(r for mail in sink.received for r in mail.rcpt_tos)
        assert recipients == ["agent@example.com", "alice@customer.example"]

        process = app.outbox_process.process
        assert process is not None
        process.kill()  # the daemon starts another one
        await _wait_for(lambda: app.outbox_process is not None and app.outbox_process.restarts == 1)
        await _wait_for(lambda: app.outbox_process is not None and app.outbox_process.serving)
        await asyncio.to_thread(send, app.smtp_address[1], make_mail(sender="bob@customer.example"))
        await drain(app)
        await _wait_for(lambda: len(sink.received) == 4)
        final = app.outbox_process.process
    finally:
        await app.stop()
    assert final is not None and final.returncode == 0, "SIGTERM: it finished and exited cleanly"


async def test_a_stop_signalled_to_every_process_at_once_restarts_none_and_reports_no_crash(
    config_factory: Callable[..., Config], sink: Any
) -> None:
    """systemd sends SIGTERM to the whole control group: the helper processes end by themselves
    while the daemon is still draining; none is restarted or reported as crashed."""
    app = App(
        config_factory(
            smtp={"separate_process": True},
            outgoing={"relay_port": sink.port, "separate_process": True},
            worker={"processes": 2},
        )
    )
    await app.start()
    children = [app.acceptance, app.outbox_process, *app.filing_processes]
    with capture_logs() as logs:
        app.request_stop()  # the daemon's own SIGTERM
        for child in children:
            assert child is not None and child.process is not None
            os.kill(child.process.pid, signal.SIGTERM)
        await asyncio.sleep(0.5)  # their exits are seen before the daemon gets to stop them
        assert await app.stop()
    assert [entry for entry in logs if entry["event"] == "child_process_exited"] == []
    assert all(child is not None and child.restarts == 0 for child in children)
    assert all(child is not None and child.process is not None and child.process.returncode == 0 for child in children)
