"""A run of messages in one worker trip: each filing transaction also claims the next message."""

from __future__ import annotations

import asyncio
import errno
import time
from typing import Any

import pytest

from mailgate import worker as worker_module
from mailgate.app import App
from mailgate.errors import StorageFull
from mailgate.store import inbound
from mailgate.store.blobs import BlobStore
from tests.integration.helpers import inbound_rows, tickets
from tests.support.mailfactory import make_mail


@pytest.fixture(autouse=True)
def runs_end_by_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run also ends after RUN_SECONDS, and the first message in a fresh process (imports,
    templates, the first connection) may take that long; these tests count messages."""
    monkeypatch.setattr(worker_module, "RUN_SECONDS", 60.0)


def _queue(app: App, count: int) -> None:
    for index in range(count):
        raw = make_mail(sender=f"c{index}@customer.example", subject=f"Request {index}")
        app.store.run(inbound.enqueue, raw, inbound.Envelope("smtp", "", ("support@example.com",)), app.clock.now())


def _count_write_units(app: App) -> list[str]:
    """Names of the units of work the worker commits, in order."""
    units: list[str] = []
    original = app.store.run_repeatable

    def counted(work: Any, *args: Any, **kwargs: Any) -> Any:
        units.append(getattr(work, "__name__", repr(work)))
        return original(work, *args, **kwargs)

    app.store.run_repeatable = counted  # type: ignore[method-assign]
    return units


async def test_a_run_commits_one_transaction_per_message(idle_app: App) -> None:
    """Five messages: one claim, then five filings (each claiming the next), and no empty claim."""
    app = idle_app
    _queue(app, 5)
    units = _count_write_units(app)
    assert await app.worker.process_some(asyncio.Event(), limit=5) == 5
    assert units == ["claim_next", *["_file_in_session"] * 5]
    assert len(tickets(app)) == 5
    assert {(row.state, row.attempts) for row in inbound_rows(app)} == {("done", 1)}


async def test_the_last_message_of_a_run_claims_nothing(idle_app: App) -> None:
    """A run of two leaves the third message queued, its attempts untouched: nothing to give back."""
    app = idle_app
    _queue(app, 3)
    assert await app.worker.process_some(asyncio.Event(), limit=2) == 2
    states = sorted((row.id, row.state, row.attempts) for row in inbound_rows(app))
    assert [(state, attempts) for _, state, attempts in states] == [("done", 1), ("done", 1), ("queued", 0)]


async def test_a_message_claimed_by_the_filing_before_is_handled_after_stop(idle_app: App) -> None:
    """`stop` set during a run: the message the last filing claimed is still filed, none is left processing."""
    app = idle_app
    _queue(app, 3)
    stop = asyncio.Event()
    original = app.worker._file_in_session

    def stop_after_first(*args: Any) -> Any:
        result = original(*args)
        stop.set()  # read by the worker thread before its next claim
        return result

    app.worker._file_in_session = stop_after_first  # type: ignore[method-assign]
    assert await app.worker.process_some(stop, limit=16) == 2
    states = sorted((row.id, row.state) for row in inbound_rows(app))
    assert [state for _, state in states] == ["done", "done", "queued"]


async def test_a_failed_filing_claims_nothing_and_the_next_message_is_filed(idle_app: App) -> None:
    """The filing that crashes rolls back its claim of the next message with it; that one is claimed
    afresh and filed, and the crashed one is kept as failed with the reason."""
    app = idle_app
    _queue(app, 2)
    original = app.worker._file_in_session
    calls = [0]

    def crash_once(*args: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("filing bug")
        return original(*args)

    app.worker._file_in_session = crash_once  # type: ignore[method-assign]
    assert await app.worker.process_some(asyncio.Event(), limit=16) == 2
    rows = sorted(inbound_rows(app), key=lambda row: row.id)
    assert [(row.state, row.attempts) for row in rows] == [("failed", 1), ("done", 1)]
    assert "filing bug" in (rows[0].last_error or "")


async def test_attachments_written_in_the_background_are_on_disk_before_the_filing_commits(
    idle_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The filing transaction waits for its attachments: one that cannot be written (a full disk)
    rolls the filing back and the message waits in the queue; once written, it is filed with it."""
    app = idle_app
    raw = make_mail(subject="With a file", attachments=[("report.pdf", "application/pdf", b"%PDF-1.4 " * 300)])
    app.store.run(inbound.enqueue, raw, inbound.Envelope("smtp", "", ("support@example.com",)), app.clock.now())
    written: list[str] = []
    original_put = BlobStore.put

    def slow_then_full(store: BlobStore, data: bytes) -> str:
        time.sleep(0.2)  # the filing work is done long before this
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(BlobStore, "put", slow_then_full)
    with pytest.raises(StorageFull, match="attachment store is full"):
        await app.worker.process_one()
    assert tickets(app) == []
    assert [row.state for row in inbound_rows(app)] == ["queued"]

    def slow(store: BlobStore, data: bytes) -> str:
        time.sleep(0.2)
        sha256 = original_put(store, data)
        written.append(sha256)
        return sha256

    monkeypatch.setattr(BlobStore, "put", slow)
    assert await app.worker.process_one()
    assert len(tickets(app)) == 1 and [row.state for row in inbound_rows(app)] == ["done"]
    assert len(written) == 1 and app.worker.blobs.path_for(written[0]).read_bytes() == b"%PDF-1.4 " * 300
