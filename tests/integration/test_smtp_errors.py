"""The SMTP listener answers bad input precisely and keeps serving; nothing is half-stored."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from mailgate.app import App
from tests.integration.helpers import drain, inbound_rows, tickets
from tests.support.mailfactory import make_mail
from tests.support.smtp_client import send


def port_of(app: Any) -> int:
    assert app.smtp_address is not None
    return int(app.smtp_address[1])


async def test_unknown_recipient_is_refused_at_rcpt(app: Any) -> None:
    """Mail for an address that is not a support mailbox gets 550 5.1.1 at RCPT: no open relay."""
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await asyncio.to_thread(
            send, port_of(app), make_mail(to="victim@elsewhere.example"), recipients=("victim@elsewhere.example",)
        )
    code, text = refused.value.recipients["victim@elsewhere.example"]
    assert code == 550 and text.startswith(b"5.1.1")
    assert inbound_rows(app) == []


async def test_plus_addressed_mailbox_is_accepted(app: Any) -> None:
    """support+billing@ reaches the support mailbox."""
    await asyncio.to_thread(send, port_of(app), make_mail(), recipients=("support+urgent@example.com",))
    assert len(inbound_rows(app)) == 1


async def test_oversized_mail_gets_552(config_factory: Any) -> None:
    """A message over smtp.max_message_bytes gets 552 5.3.4 and is not stored."""
    app = App(config_factory(smtp={"listen": "127.0.0.1:0", "max_message_bytes": 10_000}))
    await app.start()
    try:
        raw = make_mail(body="x" * 70 + "\n" * 1 + ("y" * 70 + "\n") * 400)
        with pytest.raises(smtplib.SMTPResponseException) as refused:
            await asyncio.to_thread(send, port_of(app), raw)
        assert refused.value.smtp_code == 552
        assert refused.value.smtp_error.startswith(b"5.3.4")
        assert inbound_rows(app) == []
        await asyncio.to_thread(send, port_of(app), make_mail())
        assert len(inbound_rows(app)) == 1
    finally:
        await app.stop()


async def test_handler_bug_answers_451_without_details(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected error while storing gives 451 4.3.0, no exception text, and the next mail works."""
    original = app.store.call

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("secret internal detail")

    monkeypatch.setattr(app.store, "call", broken)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await asyncio.to_thread(send, port_of(app), make_mail())
    assert refused.value.smtp_code == 451
    assert b"secret" not in refused.value.smtp_error and b"KeyError" not in refused.value.smtp_error
    monkeypatch.setattr(app.store, "call", original)
    await asyncio.to_thread(send, port_of(app), make_mail())
    assert len(inbound_rows(app)) == 1


async def test_locked_database_gives_451_and_stores_nothing(tmp_path: Path) -> None:
    """When the database cannot take the write, DATA gets 451 4.3.0 and no row is half-written."""
    from tests.conftest import make_config

    url = f"sqlite:///{tmp_path / 'data' / 'mailgate.sqlite3'}"
    app = App(make_config(tmp_path, url, storage={"busy_timeout_seconds": 0.2}))
    await app.start()
    blocker = sqlite3.connect(tmp_path / "data" / "mailgate.sqlite3", isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await asyncio.to_thread(send, port_of(app), make_mail())
        assert refused.value.smtp_code == 451 and refused.value.smtp_error.startswith(b"4.3.0")
        blocker.execute("ROLLBACK")
        assert inbound_rows(app) == []
        await asyncio.to_thread(send, port_of(app), make_mail())
        assert len(inbound_rows(app)) == 1
    finally:
        blocker.close()
        await app.stop()


async def test_full_database_gives_452(tmp_path: Path) -> None:
    """A full disk (here SQLite's page limit) answers 452 4.3.1 so the client retries later."""
    from tests.conftest import make_config

    app = App(make_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'mailgate.sqlite3'}"))
    await app.start()
    try:
        connection = sqlite3.connect(tmp_path / "data" / "mailgate.sqlite3")
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.close()

        def cap(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute(f"PRAGMA max_page_count={pages + 2}")

        from sqlalchemy import event

        event.listen(app.store.engine, "connect", cap)
        app.store.engine.dispose()  # pooled connections were opened before the cap
        raw = make_mail(body=("z" * 900 + "\n") * 100)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await asyncio.to_thread(send, port_of(app), raw)
        assert refused.value.smtp_code == 452 and refused.value.smtp_error.startswith(b"4.3.1")
    finally:
        await app.stop()


async def test_database_server_down_gives_451(tmp_path: Path) -> None:
    """With PostgreSQL unreachable, DATA gets 451 and the listener keeps answering."""
    from mailgate.store.db import make_engine
    from mailgate.store.transaction import Store
    from tests.conftest import make_config

    app = App(make_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'mailgate.sqlite3'}"))
    await app.start()
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead_port = probe.getsockname()[1]
        live = app.store
        dead = Store(make_engine(f"postgresql://postgres@127.0.0.1:{dead_port}/test"))
        app.worker.store = live
        handler_store_swap(app, dead)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await asyncio.to_thread(send, port_of(app), make_mail())
        assert refused.value.smtp_code == 451
        handler_store_swap(app, live)
        await asyncio.to_thread(send, port_of(app), make_mail())
        assert len(inbound_rows(app)) == 1
    finally:
        await app.stop()


def handler_store_swap(app: Any, store: Any) -> None:
    """Point the running SMTP handler's group commits at another store (the committer's constructor argument)."""
    app.smtp_handler.committer.store = store


async def test_connections_per_ip_are_capped(config_factory: Any) -> None:
    """Past smtp.max_connections_per_ip, a new connection gets 421 while the others keep working."""
    app = App(config_factory(smtp={"listen": "127.0.0.1:0", "max_connections_per_ip": 2}))
    await app.start()
    try:
        held = [await asyncio.to_thread(smtplib.SMTP, "127.0.0.1", port_of(app), timeout=10) for _ in range(2)]
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            await asyncio.to_thread(smtplib.SMTP, "127.0.0.1", port_of(app), timeout=10)
        assert refused.value.smtp_code == 421
        for client in held:
            await asyncio.to_thread(client.sendmail, "a@b.example", ["support@example.com"], make_mail())
            await asyncio.to_thread(client.quit)
        await asyncio.to_thread(send, port_of(app), make_mail())
        assert len(inbound_rows(app)) == 3
    finally:
        await app.stop()


async def test_idle_client_is_disconnected(config_factory: Any) -> None:
    """A client that stops talking is cut off after smtp.idle_timeout_seconds."""
    app = App(config_factory(smtp={"listen": "127.0.0.1:0", "idle_timeout_seconds": 0.5}))
    await app.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(app))
        greeting = await reader.readline()
        assert greeting.startswith(b"220")
        started = time.monotonic()
        rest = await asyncio.wait_for(reader.read(), timeout=5)
        assert rest == b"" and time.monotonic() - started < 3
        writer.close()
    finally:
        await app.stop()


async def test_bare_lf_smuggling_stores_exactly_one_message(app: Any) -> None:
    """`\\n.\\n`, `\\n.\\r\\n` and `\\r.\\r\\n` inside DATA do not end it: one message, smuggled text included."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(app))

    async def command(line: bytes) -> bytes:
        writer.write(line)
        await writer.drain()
        return await reader.readline()

    await reader.readline()
    assert (await command(b"HELO attacker.example\r\n")).startswith(b"250")
    assert (await command(b"MAIL FROM:<a@attacker.example>\r\n")).startswith(b"250")
    assert (await command(b"RCPT TO:<support@example.com>\r\n")).startswith(b"250")
    assert (await command(b"DATA\r\n")).startswith(b"354")
    smuggled = (
        b"From: a@attacker.example\r\nTo: support@example.com\r\nSubject: first\r\n\r\nhello\r\n"
        b"\n.\nMAIL FROM:<ceo@example.com>\nRCPT TO:<support@example.com>\nDATA\nSubject: smuggled\n\n"
        b"\n.\r\nMAIL FROM:<x@example.com>\r\n"
        b"\r.\r\nRSET\r\n"
        b".\r\n"
    )
    writer.write(smuggled)
    await writer.drain()
    reply = await reader.readline()
    assert reply.startswith(b"250")
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()
    rows = inbound_rows(app)
    assert len(rows) == 1
    await drain(app)
    (row,) = tickets(app)
    assert row.subject == "first"
