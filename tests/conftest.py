"""Fixtures: a database URL parametrised over SQLite and PostgreSQL, configs and a running App."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailgate.config import Config, build_config
from tests.support.databases import postgres_schema_url, postgres_unavailable_reason


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test runs on SQLite and on the machine's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'mailgate.sqlite3'}"
        return
    reason = postgres_unavailable_reason()
    if reason:
        print(f"\nskipping PostgreSQL: {reason}")
        pytest.skip(reason)
    with postgres_schema_url() as url:
        yield url


def make_config(tmp_path: Path, db_url: str, **sections: dict[str, Any]) -> Config:
    """A test configuration: loopback, port 0, two support mailboxes, one agent.

    SMTP and the outbox run on the test's own loop (separate_process = false), so a test can
    reach into them; tests/integration/test_child_processes.py and the daemon tests run the default.
    """
    data: dict[str, Any] = {
        "storage": {"data_dir": str(tmp_path / "data"), "database_url": db_url},
        "smtp": {"listen": "127.0.0.1:0", "separate_process": False},
        "helpdesk": {"name": "Acme Support", "domain": "example.com"},
        "mailboxes": [
            {"address": "support@example.com", "queue": "support"},
            {"address": "billing@example.com", "queue": "billing"},
        ],
        "agents": [{"email": "agent@example.com", "name": "Agnes Agent", "queues": ["support"]}],
        "outgoing": {"separate_process": False},
        # One worker: the tests reach into it (tests/integration/test_filing_processes.py runs more).
        "worker": {"processes": 1},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values} if isinstance(values, dict) else values
    return build_config(data, tmp_path)


@pytest.fixture
def config_factory(tmp_path: Path, db_url: str) -> Callable[..., Config]:
    return lambda **sections: make_config(tmp_path, db_url, **sections)


@pytest.fixture
async def app(config_factory: Callable[..., Config]) -> AsyncIterator[Any]:
    """A started App on an OS-chosen loopback port; stopped after the test."""
    from mailgate.app import App

    application = App(config_factory())
    await application.start()
    try:
        yield application
    finally:
        await application.stop()


@pytest.fixture
def sink() -> Iterator[Any]:
    """A loopback SMTP relay that records what the notifier sends."""
    from tests.support.smtp_sink import SmtpSink

    relay = SmtpSink()
    relay.start()
    yield relay
    relay.stop()


@pytest.fixture
async def idle_app(config_factory: Callable[..., Config]) -> AsyncIterator[Any]:
    """An App whose worker the test drives itself (not started: nothing runs in the background)."""
    import asyncio

    from mailgate.app import App
    from mailgate.store import schema

    app = App(config_factory())
    await asyncio.to_thread(schema.upgrade, app.store.engine)
    yield app
    app.store.dispose()
