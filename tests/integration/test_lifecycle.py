"""Shutdown and reload of an App in this process: 421 to newcomers, mail in flight finished, bounded, swaps."""

from __future__ import annotations

import asyncio
import smtplib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailgate.app import App
from mailgate.config import Config, load_config
from mailgate.ingest.acceptance_process import AcceptanceSettings
from tests.integration.helpers import inbound_rows
from tests.support.daemon import write_config
from tests.support.mailfactory import make_mail


def _connect(port: int) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    client.ehlo()
    return client


async def test_stop_answers_421_to_new_clients_and_finishes_the_mail_in_flight(
    config_factory: Callable[..., Config],
) -> None:
    """While a session is mid-message, stop() answers newcomers 421 and waits for that message's 250."""
    app = App(config_factory())
    await app.start()
    assert app.smtp_address is not None
    port = app.smtp_address[1]
    client = await asyncio.to_thread(_connect, port)
    await asyncio.to_thread(client.mail, "alice@customer.example")
    await asyncio.to_thread(client.rcpt, "support@example.com")
    stopping = asyncio.create_task(app.stop(timeout=20))
    await asyncio.sleep(0.2)
    assert not app.listener_up()
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        await asyncio.to_thread(_connect, port)
    assert refused.value.smtp_code == 421
    assert not stopping.done(), "stop must wait for the session in flight"
    code, _ = await asyncio.to_thread(client.data, make_mail(subject="in flight at shutdown"))
    assert code == 250
    await asyncio.to_thread(client.quit)
    assert await asyncio.wait_for(stopping, timeout=20) is True
    assert len(inbound_rows(app)) == 1


async def test_stop_is_bounded_when_a_client_never_leaves(config_factory: Callable[..., Config]) -> None:
    """An idle client holding its connection delays stop() by half the timeout at most, not its idle timeout."""
    app = App(config_factory())
    await app.start()
    assert app.smtp_address is not None
    client = await asyncio.to_thread(_connect, app.smtp_address[1])
    started = time.monotonic()
    assert await app.stop(timeout=2) is True
    assert time.monotonic() - started < 3.5
    client.close()


@pytest.mark.parametrize("separate_process", [False, True], ids=["inline", "acceptance-process"])
async def test_reload_adds_a_mailbox_and_reports_what_needs_a_restart(
    tmp_path: Path, config_factory: Callable[..., Config], separate_process: bool
) -> None:
    """App.reload makes a new address acceptable at RCPT, also in the acceptance process; a changed
    listen address waits for a restart."""
    app = App(config_factory(smtp={"separate_process": separate_process}))
    await app.start()
    try:
        assert app.smtp_address is not None
        port = app.smtp_address[1]
        assert (await asyncio.to_thread(_rcpt, port, "sales@example.com")) == 550
        mailboxes = [
            {"address": "support@example.com", "queue": "support"},
            {"address": "sales@example.com", "queue": "sales"},
        ]
        smtp = {"listen": "127.0.0.1:2999", "separate_process": separate_process}
        new = config_factory(mailboxes=mailboxes, smtp=smtp)
        pending = app.reload(new)
        assert pending == ["smtp"]
        assert app.config.smtp.port == 0, "the listen address in force is the bound one"
        assert [m.address for m in app.config.mailboxes] == ["support@example.com", "sales@example.com"]
        assert (await _rcpt_soon(port, "sales@example.com", 250)) == 250
        assert app.worker.settings.policy.mailboxes == app.config.mailboxes
    finally:
        await app.stop()


async def _rcpt_soon(port: int, address: str, wanted: int, seconds: float = 5.0) -> int:
    """RCPT until it answers `wanted` (the acceptance process hears of a reload over its pipe)."""
    deadline = asyncio.get_running_loop().time() + seconds
    code = await asyncio.to_thread(_rcpt, port, address)
    while code != wanted and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        code = await asyncio.to_thread(_rcpt, port, address)
    return code


def _rcpt(port: int, address: str) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("alice@customer.example")
        code, _ = client.rcpt(address)
        return int(code)


async def test_reload_from_a_file_that_fails_validation_keeps_everything(tmp_path: Path, db_url: str) -> None:
    """A config file with an unknown key is refused by reload_from_file; the mailboxes in use stay
    (the daemon's default: SMTP in the acceptance process)."""
    path = write_config(tmp_path / "m.toml", data_dir=tmp_path / "data", db_url=db_url, port=0)
    app = App(load_config(path), config_path=path)
    await app.start()
    try:
        assert app.acceptance is not None and app.smtp_address is not None
        port = app.smtp_address[1]
        before = app.config
        path.write_text(path.read_text() + '\n[[mailboxes]]\naddress = "x@example.com"\ncolour = "red"\n')
        assert await app.reload_from_file() is False
        assert app.config is before
        assert AcceptanceSettings.from_json(app.acceptance.settings).mailboxes == before.mailboxes
        assert (await asyncio.to_thread(_rcpt, port, "x@example.com")) == 550
        path.write_text(path.read_text().replace('colour = "red"\n', ""))
        assert await app.reload_from_file() is True
        mailboxes = AcceptanceSettings.from_json(app.acceptance.settings).mailboxes
        assert [m.address for m in mailboxes] == ["support@example.com", "x@example.com"]
        # reload_from_file returns once the acceptance process has confirmed the new mailboxes.
        assert (await asyncio.to_thread(_rcpt, port, "x@example.com")) == 250
    finally:
        await app.stop()


async def test_reload_without_a_file_is_skipped(config_factory: Callable[..., Config]) -> None:
    """An App started on the embedded default has nothing to re-read."""
    app = App(config_factory())
    assert app.config_path is None
    assert await app.reload_from_file() is False
    app.store.dispose()
