"""IMAP import against a real Dovecot: backlog, IDLE, crashes, reconnects, duplicates, oversized mail, check-config."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from structlog.testing import capture_logs

from mailgate.app import App
from mailgate.config import Config, load_config
from mailgate.ingest.imap import oversized_notice
from mailgate.store import inbound
from mailgate.store.models import ImapMessage, Inbound, Message, Ticket
from mailgate.store.transaction import Store
from tests.support.daemon import Daemon, free_port, write_config
from tests.support.dovecot import Dovecot, dovecot_unavailable_reason
from tests.support.mailfactory import make_mail
from tests.support.smtp_client import send

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A started Dovecot with users `agent` and `other`; stopped and removed after the test."""
    reason = dovecot_unavailable_reason()
    if reason:
        print(f"\nskipping IMAP test: {reason}")
        pytest.skip(reason)
    with Dovecot({"agent": "secret", "other": "other-secret"}) as server:
        yield server


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[App]:
    app = App(config)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def eventually(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` in a thread (it may do blocking I/O) until true, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached within {timeout}s: {what}")


def message_ids(store: Store) -> list[str]:
    return store.run(lambda session: [m.strip("<>") for m in session.scalars(select(Message.message_id))])


def count(store: Store, column: Any, *where: Any) -> int:
    def work(session: Session) -> int:
        return int(session.scalar(select(func.count(column)).where(*where)) or 0)

    return store.run(work)


def all_done(store: Store, total: int) -> bool:
    states = store.run(inbound.count_by_state)
    return sum(states.values()) == total and not states.get(inbound.QUEUED) and not states.get(inbound.PROCESSING)


def seen_event(logs: list[dict[str, Any]], event: str, at_least: int = 1) -> bool:
    return sum(1 for entry in logs if entry.get("event") == event) >= at_least


def backlog(total: int, prefix: str) -> tuple[list[bytes], set[str]]:
    ids = {f"{prefix}-{i}@client.example" for i in range(total)}
    mails = [
        make_mail(sender=f"c{i}@customer.example", subject=f"{prefix} {i}", message_id=f"<{prefix}-{i}@client.example>")
        for i in range(total)
    ]
    return mails, ids


async def test_backlog_of_500_becomes_500_tickets_and_is_moved(
    dovecot: Dovecot, config_factory: Callable[..., Config]
) -> None:
    """500 messages waiting in INBOX become 500 tickets, each once, and all end up in the processed folder."""
    mails, ids = backlog(500, "backlog")
    await asyncio.to_thread(dovecot.append, mails)
    async with running(config_factory(imap=[dovecot.account()])) as app:
        await eventually(lambda: all_done(app.store, 500) and len(message_ids(app.store)) == 500, 180, "500 filed")
        await eventually(lambda: dovecot.count("INBOX") == 0, 30, "INBOX emptied")
        assert set(message_ids(app.store)) == ids
        assert count(app.store, Ticket.id) == 500
        assert count(app.store, Inbound.id, Inbound.source == "imap") == 500
        assert count(app.store, ImapMessage.inbound_id) == 500
    assert dovecot.count("mailgate.processed") == 500


@sqlite_only
async def test_message_appended_during_idle_arrives_within_5_seconds(
    dovecot: Dovecot, config_factory: Callable[..., Config]
) -> None:
    """With mailgate in IDLE, a newly appended message is filed within 5 seconds."""
    with capture_logs() as logs:
        async with running(config_factory(imap=[dovecot.account()])) as app:
            await eventually(lambda: seen_event(logs, "imap_idle"), 20, "poller in IDLE")
            await asyncio.to_thread(dovecot.append, [make_mail(message_id="<idle-1@client.example>")])
            await eventually(lambda: "idle-1@client.example" in message_ids(app.store), 5, "filed from IDLE")


@pytest.mark.slow
def test_sigkill_during_import_then_restart_files_each_message_once(tmp_path: Path, db_url: str) -> None:
    """SIGKILL mid-import; after a restart every message is in exactly one ticket and was queued once."""
    with Dovecot() as server:
        mails, ids = backlog(600, "crash")
        server.append(mails)
        port = free_port()
        extra = (
            f'\n[[imap]]\nhost = "127.0.0.1"\nport = {server.port}\ntls = "none"\n'
            f'username = "agent"\npassword = "secret"\nbatch_size = 10\n'
        )
        path = write_config(
            tmp_path / "mailgate.toml", data_dir=tmp_path / "data", db_url=db_url, port=port, extra=extra
        )
        daemon = Daemon(path, port)
        store = App(load_config(path)).store
        try:
            daemon.start()
            _wait(lambda: _safe_count(store, Inbound.id) >= 50, 60, "import under way")
            daemon.kill()
            queued_at_kill = _safe_count(store, Inbound.id)
            # On PostgreSQL a claim counts as dead only after 10 minutes (instances may share the
            # queue); this stands in for that time passing. SQLite's start-up does the same itself.
            store.run(inbound.requeue_stale, datetime.now(UTC) + timedelta(seconds=1))
            daemon.start()
            _wait(lambda: all_done(store, 600) and len(message_ids(store)) == 600, 180, "all filed after restart")
            _wait(lambda: server.count("INBOX") == 0, 30, "INBOX emptied")
        finally:
            daemon.stop()
            store.dispose()
        assert queued_at_kill < 600, "the kill came after the import had finished"
        assert set(message_ids(store)) == ids
        assert count(store, Inbound.id, Inbound.source == "imap") == 600
        assert count(store, Ticket.id) == 600
        assert server.count("mailgate.processed") == 600


def _safe_count(store: Store, column: Any) -> int:
    try:
        return count(store, column)
    except Exception:  # The schema may not exist yet while the daemon starts.
        return 0


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not reached within {timeout}s: {what}")


@sqlite_only
async def test_dovecot_restart_mid_session_reconnects_and_goes_on(
    dovecot: Dovecot, config_factory: Callable[..., Config]
) -> None:
    """After Dovecot restarts, mailgate reconnects and imports a message appended after the restart."""
    with capture_logs() as logs:
        async with running(config_factory(imap=[dovecot.account()])) as app:
            await eventually(lambda: seen_event(logs, "imap_idle"), 20, "poller in IDLE")
            await asyncio.to_thread(dovecot.restart)
            await asyncio.to_thread(dovecot.append, [make_mail(message_id="<after-restart@client.example>")])
            await eventually(lambda: "after-restart@client.example" in message_ids(app.store), 30, "filed")
    assert seen_event(logs, "imap_reconnecting")
    assert seen_event(logs, "imap_connected", at_least=2)


@sqlite_only
async def test_wrong_password_is_logged_retried_and_smtp_keeps_serving(
    dovecot: Dovecot, config_factory: Callable[..., Config]
) -> None:
    """A bad password logs a clear login error, retries with growing delays, and SMTP still queues mail."""
    bad = "Wr0ng-Pa55w0rd"
    with capture_logs() as logs:
        async with running(config_factory(imap=[dovecot.account(password=bad)])) as app:
            await eventually(lambda: seen_event(logs, "imap_login_failed", at_least=2), 20, "two failed logins")
            assert app.smtp_address is not None
            await asyncio.to_thread(send, app.smtp_address[1], make_mail(message_id="<by-smtp@client.example>"))
            await eventually(lambda: count(app.store, Inbound.id, Inbound.source == "smtp") == 1, 10, "SMTP queued")
    failures = [entry for entry in logs if entry["event"] == "imap_login_failed"]
    assert "authentication failed" in failures[0]["error"]
    assert failures[1]["retry_seconds"] > failures[0]["retry_seconds"]
    assert bad not in repr(logs)


@sqlite_only
async def test_same_message_in_two_folders_or_reappended_is_one_ticket_message(
    dovecot: Dovecot, config_factory: Callable[..., Config]
) -> None:
    """One message in two imported folders, then appended again, is stored once in one ticket."""
    raw = make_mail(message_id="<twice@client.example>", subject="Same mail twice")
    await asyncio.to_thread(dovecot.append, [raw], "INBOX")
    await asyncio.to_thread(dovecot.append, [raw], "Support")
    accounts = [dovecot.account(), dovecot.account(folder="Support")]
    async with running(config_factory(imap=accounts)) as app:
        await eventually(lambda: all_done(app.store, 2), 30, "both copies processed")
        await asyncio.to_thread(dovecot.append, [raw], "INBOX")
        await eventually(lambda: all_done(app.store, 3), 30, "re-appended copy processed")
        assert message_ids(app.store) == ["twice@client.example"]
        assert count(app.store, Ticket.id) == 1
        assert count(app.store, ImapMessage.inbound_id) == 3


@sqlite_only
async def test_oversized_message_is_kept_failed_and_moved_aside(
    dovecot: Dovecot, config_factory: Callable[..., Config]
) -> None:
    """A message over smtp.max_message_bytes is kept failed with its headers, moved aside; the next goes on."""
    big = make_mail(
        subject="Huge",
        message_id="<huge@client.example>",
        attachments=[("a.bin", "application/octet-stream", b"x" * 60_000)],
    )
    small = make_mail(subject="Small", message_id="<small@client.example>")
    await asyncio.to_thread(dovecot.append, [big, small])
    config = config_factory(smtp={"max_message_bytes": 20_000}, imap=[dovecot.account()])
    async with running(config) as app:
        await eventually(lambda: "small@client.example" in message_ids(app.store), 30, "the next message filed")
        (failed,) = app.store.run(inbound.list_inbound, failed_only=True)
        raw = app.store.run(inbound.get_raw, failed.id)
    size = len(big)
    assert failed.last_error == oversized_notice(size)
    assert f"message of {size} bytes exceeds smtp.max_message_bytes" in (failed.last_error or "")
    assert raw is not None and b"Subject: Huge" in raw and b"xxxxxxxx" not in raw
    assert dovecot.count("mailgate.oversized") == 1
    assert dovecot.count("mailgate.processed") == 1
    assert dovecot.count("INBOX") == 0


@sqlite_only
async def test_after_import_seen_flags_and_imports_only_newer_mail(
    dovecot: Dovecot, config_factory: Callable[..., Config]
) -> None:
    """after_import = "seen" leaves messages flagged \\Seen in place; a restart imports only newer ones."""
    mails, _ = backlog(3, "seen")
    await asyncio.to_thread(dovecot.append, mails)
    config = config_factory(imap=[dovecot.account(after_import="seen")])
    async with running(config) as app:
        await eventually(lambda: all_done(app.store, 3), 30, "3 processed")
        await eventually(lambda: all(b"\\Seen" in f for f in dovecot.flags("INBOX")), 10, "all flagged \\Seen")
    assert dovecot.count("INBOX") == 3
    with capture_logs() as logs:
        async with running(config) as app:
            await eventually(lambda: seen_event(logs, "imap_idle"), 20, "second run in IDLE")
            await asyncio.to_thread(dovecot.append, [make_mail(message_id="<seen-new@client.example>")])
            await eventually(lambda: all_done(app.store, 4), 10, "only the new message imported")
            assert "seen-new@client.example" in message_ids(app.store)


@sqlite_only
async def test_after_import_delete_removes_the_messages(
    dovecot: Dovecot, config_factory: Callable[..., Config]
) -> None:
    """after_import = "delete" expunges imported messages and fills no processed folder."""
    mails, ids = backlog(3, "delete")
    await asyncio.to_thread(dovecot.append, mails)
    async with running(config_factory(imap=[dovecot.account(after_import="delete")])) as app:
        await eventually(lambda: len(message_ids(app.store)) == 3, 30, "3 filed")
        await eventually(lambda: dovecot.count("INBOX") == 0, 10, "INBOX emptied")
        assert set(message_ids(app.store)) == ids
    assert dovecot.count("mailgate.processed") == 0


@sqlite_only
async def test_uidvalidity_change_rescans_without_second_tickets(
    dovecot: Dovecot, config_factory: Callable[..., Config]
) -> None:
    """A recreated folder (new UIDVALIDITY) is re-read from UID 1; known messages make no second ticket."""
    mails, ids = backlog(2, "validity")
    await asyncio.to_thread(dovecot.append, mails, "Support")
    config = config_factory(imap=[dovecot.account(folder="Support", after_import="seen")])
    async with running(config) as app:
        await eventually(lambda: all_done(app.store, 2), 30, "first import")
    await asyncio.to_thread(_recreate_folder, dovecot, "Support")
    extra = make_mail(message_id="<validity-new@client.example>")
    await asyncio.to_thread(dovecot.append, [*mails, extra], "Support")
    with capture_logs() as logs:
        async with running(config) as app:
            await eventually(lambda: all_done(app.store, 5), 30, "re-scan processed")
            assert set(message_ids(app.store)) == ids | {"validity-new@client.example"}
            assert count(app.store, Ticket.id) == 3
    assert seen_event(logs, "imap_uidvalidity_changed")


def _recreate_folder(server: Dovecot, folder: str) -> None:
    with server.client() as client:
        client.delete_folder(folder)
        client.create_folder(folder)


@sqlite_only
async def test_server_without_idle_or_move_is_polled_and_copied(config_factory: Callable[..., Config]) -> None:
    """Without IDLE the folder is polled; without MOVE, messages are copied, flagged and UID-expunged."""
    reason = dovecot_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Dovecot(capabilities="IMAP4rev1 LITERAL+ UIDPLUS") as server:
        mails, _ = backlog(3, "poll")
        await asyncio.to_thread(server.append, mails)
        config = config_factory(imap=[server.account(poll_seconds=0.2)])
        async with running(config) as app:
            await eventually(lambda: all_done(app.store, 3), 30, "3 processed")
            await asyncio.to_thread(server.append, [make_mail(message_id="<polled@client.example>")])
            await eventually(lambda: "polled@client.example" in message_ids(app.store), 10, "found by polling")
        await eventually(lambda: server.count("INBOX") == 0, 10, "INBOX emptied")
        assert server.count("mailgate.processed") == 4


@sqlite_only
async def test_stop_during_import_then_restart_imports_each_once(
    dovecot: Dovecot, config_factory: Callable[..., Config]
) -> None:
    """A stop request mid-import returns promptly; the next start imports the rest, nothing twice."""
    mails, ids = backlog(300, "stop")
    await asyncio.to_thread(dovecot.append, mails)
    config = config_factory(imap=[dovecot.account(batch_size=10)])
    with capture_logs() as logs:
        app = App(config)
        await app.start()
        await eventually(lambda: seen_event(logs, "imap_imported"), 30, "import under way")
        started = time.monotonic()
        await app.stop()
    assert time.monotonic() - started < 10
    async with running(config) as app:
        await eventually(lambda: all_done(app.store, 300) and len(message_ids(app.store)) == 300, 60, "all filed")
        assert set(message_ids(app.store)) == ids
        assert count(app.store, Inbound.id) == 300


@sqlite_only
def test_check_config_connect_reports_each_account(tmp_path: Path, dovecot: Dovecot, db_url: str) -> None:
    """`check-config --connect` says ok, authentication failed, or missing folder, one line per account."""
    good = _account_toml(dovecot, "agent", "secret")
    bad_password = _account_toml(dovecot, "other", "Wr0ng-Pa55w0rd")
    bad_folder = _account_toml(dovecot, "agent", "secret", folder="Missing")
    config = write_config(
        tmp_path / "all.toml",
        data_dir=tmp_path / "data",
        db_url=db_url,
        port=2599,
        extra=good + bad_password + bad_folder,
    )
    result = _mailgate(config, "check-config", "--connect")
    lines = result.stdout.splitlines()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"imap[0] agent@127.0.0.1:{dovecot.port}/INBOX: ok" in lines
    assert any(line.startswith("imap[1] other@") and "authentication failed" in line for line in lines), lines
    assert any(line.startswith("imap[2] ") and "folder 'Missing' does not exist" in line for line in lines), lines
    assert "Wr0ng-Pa55w0rd" not in result.stdout + result.stderr
    only_good = write_config(tmp_path / "good.toml", data_dir=tmp_path / "data", db_url=db_url, port=2599, extra=good)
    assert _mailgate(only_good, "check-config", "--connect").returncode == 0


def _account_toml(
    server: Dovecot, user: str, password: str, folder: str = "INBOX", *, tls: str = "none", port: int = 0
) -> str:
    return (
        f'\n[[imap]]\nhost = "127.0.0.1"\nport = {port or server.port}\ntls = "{tls}"\nusername = "{user}"\n'
        f'password = "{password}"\nfolder = "{folder}"\n'
    )


def _mailgate(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailgate", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@sqlite_only
def test_tls_certificates_are_verified_for_implicit_tls_and_starttls(tmp_path: Path, db_url: str) -> None:
    """An untrusted certificate fails both TLS modes with a certificate error; trusting it makes both ok."""
    reason = dovecot_unavailable_reason() or (None if shutil.which("openssl") else "openssl is not installed")
    if reason:
        pytest.skip(reason)
    with Dovecot(tls=True) as server:
        accounts = _account_toml(server, "agent", "secret", tls="implicit", port=server.tls_port) + _account_toml(
            server, "agent", "secret", tls="starttls"
        )
        config = write_config(
            tmp_path / "tls.toml", data_dir=tmp_path / "data", db_url=db_url, port=2599, extra=accounts
        )
        untrusted = _mailgate(config, "check-config", "--connect")
        trusted = _mailgate(config, "check-config", "--connect", env={"SSL_CERT_FILE": str(server.certificate)})
    assert untrusted.returncode == 1
    assert untrusted.stdout.count("TLS certificate verification failed") == 2, untrusted.stdout
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert f"imap[0] agent@127.0.0.1:{server.tls_port}/INBOX: ok" in trusted.stdout
    assert f"imap[1] agent@127.0.0.1:{server.port}/INBOX: ok" in trusted.stdout
