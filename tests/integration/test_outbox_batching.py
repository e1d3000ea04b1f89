"""The outbox in batches: one relay connection per run of work, dropped connections, the circuit breaker.

The application is built but not started, so no background worker competes with the test: mail
is filed by the inbound worker and sent by `OutboxWorker.run_until_idle` / `run`, through a real
aiosmtpd relay on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailgate.app import App
from mailgate.clock import FakeClock
from mailgate.config import Config
from mailgate.errors import PermanentFailure, TemporaryFailure
from mailgate.notify import relay as relay_module
from mailgate.notify.outbox_process import requeue_own_claims
from mailgate.notify.relay import RelaySettings, SmtpRelay
from mailgate.store import inbound, outbox, schema
from tests.conftest import make_config
from tests.support.mailfactory import make_mail
from tests.support.smtp_sink import SmtpSink

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Desks:
    """Built, unstarted Apps on one database; each is disposed after the test."""

    def __init__(self, tmp_path: Path, db_url: str, sink: SmtpSink) -> None:
        self.tmp_path, self.db_url, self.sink = tmp_path, db_url, sink
        self.apps: list[App] = []

    async def open(self, *, name: str = "", clock: FakeClock | None = None, **outgoing: Any) -> App:
        sections: dict[str, Any] = {"outgoing": {"relay_port": self.sink.port, **outgoing}, "agents": []}
        config: Config = make_config(self.tmp_path / name if name else self.tmp_path, self.db_url, **sections)
        config.storage.data_dir.mkdir(parents=True, exist_ok=True)
        app = App(config, clock=clock or FakeClock(START))
        self.apps.append(app)
        await asyncio.to_thread(schema.upgrade, app.store.engine)
        return app

    async def close(self) -> None:
        for app in self.apps:
            await app.outbox_worker.close_relay()
            await asyncio.to_thread(app.store.dispose)


@pytest.fixture
async def desks(tmp_path: Path, db_url: str, sink: SmtpSink) -> AsyncIterator[Desks]:
    opened = Desks(tmp_path, db_url, sink)
    try:
        yield opened
    finally:
        await opened.close()


async def file_mails(app: App, count: int, prefix: str = "c") -> None:
    """`count` new tickets from different customers: one acknowledgement each in the outbox."""
    for index in range(count):
        raw = make_mail(sender=f"{prefix}{index}@customer.example", subject=f"{prefix} {index}")
        await app.store.call(inbound.enqueue, raw, inbound.Envelope("test"), app.clock.now())
    await app.worker.run_until_idle()


def rows(app: App) -> list[outbox.OutboxSummary]:
    return sorted(app.store.run(outbox.list_outbox, limit=10_000), key=lambda r: r.id)


def received_ids(sink: SmtpSink) -> Counter[str]:
    return Counter(m.message["Message-ID"].strip("<>") for m in sink.received)


def advance(app: App, delta: timedelta) -> None:
    clock = app.clock
    assert isinstance(clock, FakeClock)
    clock.advance(delta)


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_a_run_of_batches_goes_over_one_connection_closed_once_the_queue_is_empty(
    desks: Desks, sink: SmtpSink
) -> None:
    """45 mails (three claims of up to 20) share one SMTP session, which ends with QUIT when nothing is due."""
    app = await desks.open()
    await file_mails(app, 45)
    before = sink.connections
    assert await app.outbox_worker.run_until_idle() == 45
    assert sink.connections - before == 1
    mails = sink.received
    assert len(mails) == 45 and len({m.connection for m in mails}) == 1
    assert received_ids(sink) == Counter({r.message_id: 1 for r in rows(app)})
    assert all(r.state == "sent" and r.attempts == 1 for r in rows(app))
    assert sink.commands["MAIL"] == 45 and sink.commands["RSET"] == sink.commands["NOOP"] == 0  # no probes
    await wait_for(lambda: sink.open_connections == 0)


@pytest.mark.parametrize("reply", [None, "421 4.4.2 closing: idle timeout"], ids=["silent", "421"])
async def test_relay_closing_the_connection_between_mails_gets_every_mail_once(
    desks: Desks, sink: SmtpSink, reply: str | None
) -> None:
    """A relay that closes the kept connection mid-batch (twice) still gets each mail once, without retries."""
    app = await desks.open()
    await file_mails(app, 12)
    sink.close_after(4, reply)
    sink.close_after(3, reply)
    before = sink.connections
    assert await app.outbox_worker.run_until_idle() == 12
    assert received_ids(sink) == Counter({r.message_id: 1 for r in rows(app)})
    per_connection = Counter(m.connection for m in sink.received)
    assert [per_connection[number] for number in sorted(per_connection)] == [4, 3, 5]
    assert sink.connections - before == 3
    assert all(r.state == "sent" and r.attempts == 1 and r.last_error is None for r in rows(app))
    await wait_for(lambda: sink.open_connections == 0)


@pytest.mark.parametrize("relay_kept_it", [False, True], ids=["lost", "taken"])
async def test_connection_lost_during_data_is_not_resent_at_once(
    desks: Desks, sink: SmtpSink, relay_kept_it: bool
) -> None:
    """Once a mail's content is on its way, a lost connection is a temporary failure: retried later with
    backoff, never at once on a new connection (the relay may have the mail). The rest of the batch goes on."""
    app = await desks.open()
    await file_mails(app, 6)
    sink.cut_data(after=2, keep=relay_kept_it)
    assert await app.outbox_worker.run_until_idle() == 6
    third = rows(app)[2]
    assert third.state == "queued" and third.attempts == 1 and "unreachable" in (third.last_error or "")
    assert [r.state for r in rows(app)] == ["sent", "sent", "queued", "sent", "sent", "sent"]
    assert received_ids(sink)[third.message_id] == (1 if relay_kept_it else 0)
    assert all(count == 1 for count in received_ids(sink).values())
    advance(app, timedelta(minutes=1))
    assert await app.outbox_worker.run_until_idle() == 1
    assert all(r.state == "sent" for r in rows(app))
    counts = received_ids(sink)
    assert set(counts) == {r.message_id for r in rows(app)}
    # The lost reply is the one case that repeats a mail: then with its own Message-ID.
    assert counts[third.message_id] == (2 if relay_kept_it else 1)
    assert all(count == 1 for message_id, count in counts.items() if message_id != third.message_id)


async def test_refusals_in_a_batch_are_handled_per_mail_and_the_connection_is_kept(
    desks: Desks, sink: SmtpSink
) -> None:
    """5xx fails one row and 4xx defers one row, at RCPT or after DATA; the others go over the same
    connection, and a refusal is never taken for a closed connection (no second try on a new one)."""
    app = await desks.open()
    await file_mails(app, 4)
    before = sink.connections
    await app.outbox_worker.process_batch()  # opens the connection; it stays open for the next claim
    # Mails 5 and 6 are refused at RCPT, 7 and 8 after their DATA (a refused RCPT sends no DATA).
    sink.refuse_next_recipient("550 5.1.1 no such user here", times=1)
    sink.refuse_next_recipient("452 4.2.2 mailbox full", times=1)
    sink.refuse_next("451 4.3.0 try later")
    sink.refuse_next("554 5.6.0 content rejected")
    await file_mails(app, 5, prefix="d")
    await app.outbox_worker.run_until_idle()
    assert sink.connections - before == 1
    assert sink.commands["MAIL"] == 9
    states = [(r.state, r.attempts) for r in rows(app)]
    assert states == [("sent", 1)] * 4 + [("failed", 1), ("queued", 1), ("queued", 1), ("failed", 1), ("sent", 1)]
    errors = [r.last_error or "" for r in rows(app)[4:8]]
    assert "550 5.1.1 no such user here" in errors[0] and "452 4.2.2 mailbox full" in errors[1]
    assert "451 4.3.0 try later" in errors[2] and "554 5.6.0 content rejected" in errors[3]
    advance(app, timedelta(seconds=31))
    await app.outbox_worker.run_until_idle()
    assert [(r.state, r.attempts) for r in rows(app)[5:7]] == [("sent", 2), ("sent", 2)]
    assert sink.connections - before == 2  # the first session ended when the queue was empty
    assert len(sink.received) == 7
    assert received_ids(sink) == Counter({r.message_id: 1 for r in rows(app) if r.state == "sent"})


async def test_circuit_breaker_counts_the_batch_it_is_sending(desks: Desks, sink: SmtpSink) -> None:
    """Seven automatic mails in one claim with a limit of 3: three go, four wait a minute, uncounted."""
    app = await desks.open(max_automatic_per_minute=3)
    await file_mails(app, 7)
    assert await app.outbox_worker.process_batch() == 7
    assert len(sink.received) == 3
    held = [r for r in rows(app) if r.state == "queued"]
    assert len(held) == 4
    assert all(r.attempts == 0 and r.last_error == "held by the circuit breaker" for r in held)
    assert await app.outbox_worker.run_until_idle() == 0  # held for a minute: nothing due
    advance(app, timedelta(minutes=1, seconds=1))
    await app.outbox_worker.run_until_idle()
    assert len(sink.received) == 6
    advance(app, timedelta(minutes=1, seconds=1))
    await app.outbox_worker.run_until_idle()
    assert len(sink.received) == 7
    assert received_ids(sink) == Counter({r.message_id: 1 for r in rows(app)})


async def test_circuit_breaker_remembers_the_last_minute_across_a_restart(desks: Desks, sink: SmtpSink) -> None:
    """The count comes from the database: a new process right after a flood holds automatic mail too."""
    clock = FakeClock(START)
    first = await desks.open(clock=clock, max_automatic_per_minute=3)
    await file_mails(first, 3)
    await first.outbox_worker.run_until_idle()
    assert len(sink.received) == 3
    await desks.close()
    desks.apps.clear()
    clock.advance(timedelta(seconds=20))
    second = await desks.open(clock=clock, max_automatic_per_minute=3)
    await file_mails(second, 2, prefix="again")
    await second.outbox_worker.run_until_idle()
    assert len(sink.received) == 3
    assert [r.last_error for r in rows(second) if r.state == "queued"] == ["held by the circuit breaker"] * 2
    clock.advance(timedelta(minutes=1, seconds=1))
    await second.outbox_worker.run_until_idle()
    assert len(sink.received) == 5


async def test_two_instances_on_one_database_send_each_mail_once(desks: Desks, sink: SmtpSink) -> None:
    """Two workers claiming small batches at once (SKIP LOCKED on PostgreSQL) never send one row twice."""
    first = await desks.open(name="one")
    second = await desks.open(name="two")
    assert first.outbox_worker.settings.owner != second.outbox_worker.settings.owner
    for app in (first, second):
        app.outbox_worker.settings = dataclasses.replace(app.outbox_worker.settings, batch_size=3)
    await file_mails(first, 30)
    counts = await asyncio.gather(first.outbox_worker.run_until_idle(), second.outbox_worker.run_until_idle())
    assert sum(counts) == 30
    assert received_ids(sink) == Counter({r.message_id: 1 for r in rows(first)})
    assert all(r.state == "sent" and r.attempts == 1 for r in rows(first))


async def test_a_restarted_outbox_process_takes_back_only_its_own_claims(desks: Desks, sink: SmtpSink) -> None:
    """An outbox process restarting after a crash sends its own `sending` rows again; on a shared
    PostgreSQL database the rows another live instance is sending right now stay that instance's
    (taking them would send them twice). On SQLite one instance owns every claim."""
    first = await desks.open(name="one")
    second = await desks.open(name="two")
    await file_mails(first, 4)
    now = first.clock.now()
    mine = first.store.run(outbox.claim_batch, now, 2, second.outbox_worker.settings.owner, now).items
    theirs = first.store.run(outbox.claim_batch, now, 2, first.outbox_worker.settings.owner, now).items
    assert len(mine) == len(theirs) == 2
    advance(second, timedelta(seconds=1))  # the restart comes a moment after the claims
    taken_back = await requeue_own_claims(second.store, second.clock, second.outbox_worker.settings)
    states = {r.id: r.state for r in rows(first)}
    assert all(states[item.id] == "queued" for item in mine)
    if first.store.engine.dialect.name == "postgresql":
        assert taken_back == 2 and all(states[item.id] == "sending" for item in theirs)
    else:
        assert taken_back == 4


async def test_stop_finishes_the_batch_and_closes_the_connection(desks: Desks, sink: SmtpSink) -> None:
    """Shutdown mid-run: the claimed batch is finished, no row is left `sending`, the session is ended."""
    app = await desks.open()
    await file_mails(app, 30)
    stop = asyncio.Event()
    task = asyncio.create_task(app.outbox_worker.run(stop))
    await wait_for(lambda: len(sink.received) >= 1)
    stop.set()
    await asyncio.wait_for(task, 30)
    states = Counter(r.state for r in rows(app))
    assert set(states) <= {"sent", "queued"} and states["sent"] >= 1
    assert states["sent"] == len(sink.received)
    await wait_for(lambda: sink.open_connections == 0)


async def test_idle_worker_keeps_no_connection_open(desks: Desks, sink: SmtpSink) -> None:
    """The running worker sends what is due over one session and ends it as soon as nothing is due."""
    app = await desks.open()
    await file_mails(app, 8)
    stop = asyncio.Event()
    before = sink.connections
    task = asyncio.create_task(app.outbox_worker.run(stop))
    try:
        await wait_for(lambda: len(sink.received) == 8)
        await wait_for(lambda: sink.open_connections == 0)
        assert sink.connections - before == 1
        await file_mails(app, 2, prefix="later")  # each filing wakes the worker: one or two short sessions
        await wait_for(lambda: len(sink.received) == 10)
        await wait_for(lambda: sink.open_connections == 0)
        assert sink.connections - before in (2, 3)
        assert received_ids(sink) == Counter({r.message_id: 1 for r in rows(app)})
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def tiny_mail(number: int) -> bytes:
    return f"Message-ID: <r{number}@example.com>\r\nSubject: {number}\r\n\r\nbody {number}\r\n".encode()


def test_relay_replaces_a_connection_after_its_mail_quota(sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """After MAILS_PER_CONNECTION mails the session is ended and a new one opened."""
    monkeypatch.setattr(relay_module, "MAILS_PER_CONNECTION", 3)
    relay = SmtpRelay(RelaySettings("127.0.0.1", sink.port, timeout_seconds=10))
    before = sink.connections
    for number in range(7):
        relay.send("b@example.com", "c@customer.example", tiny_mail(number))
    relay.close()
    per_connection = Counter(m.connection for m in sink.received)
    assert [per_connection[c] for c in sorted(per_connection)] == [3, 3, 1]
    assert sink.connections - before == 3


def test_relay_replaces_an_old_connection(sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection older than CONNECTION_REUSE_SECONDS is not used for another mail."""
    monkeypatch.setattr(relay_module, "CONNECTION_REUSE_SECONDS", 0.0)
    relay = SmtpRelay(RelaySettings("127.0.0.1", sink.port, timeout_seconds=10))
    before = sink.connections
    for number in range(3):
        relay.send("b@example.com", "c@customer.example", tiny_mail(number))
    relay.close()
    assert len(sink.received) == 3 and sink.connections - before == 3


def test_relay_restarted_between_mails_gets_the_next_one_on_a_new_connection(sink: SmtpSink) -> None:
    """The kept connection died with the relay: the next mail reconnects at once; when the relay is
    down, the mail is a temporary failure and the next attempt connects afresh."""
    relay = SmtpRelay(RelaySettings("127.0.0.1", sink.port, timeout_seconds=10))
    relay.send("b@example.com", "c@customer.example", tiny_mail(1))
    sink.stop()
    sink.start()
    relay.send("b@example.com", "c@customer.example", tiny_mail(2))
    sink.stop()
    with pytest.raises(TemporaryFailure, match="unreachable"):
        relay.send("b@example.com", "c@customer.example", tiny_mail(3))
    sink.start()
    relay.send("b@example.com", "c@customer.example", tiny_mail(3))
    relay.close()
    relay.close()  # a second close has nothing to end
    assert [m.message["Message-ID"] for m in sink.received] == [f"<r{n}@example.com>" for n in (1, 2, 3)]
    assert len({m.connection for m in sink.received}) == 3


@pytest.fixture
def utf8_sink() -> Iterator[SmtpSink]:
    """A relay that offers SMTPUTF8 (RFC 6531)."""
    relay = SmtpSink(smtputf8=True)
    relay.start()
    yield relay
    relay.stop()


def test_relay_sends_to_a_non_ascii_address_with_smtputf8(utf8_sink: SmtpSink) -> None:
    """An internationalised address goes out with SMTPUTF8; ASCII mail on the same connection without."""
    relay = SmtpRelay(RelaySettings("127.0.0.1", utf8_sink.port, timeout_seconds=10))
    relay.send("b@example.com", "jäni@asiakas.example", tiny_mail(1))
    relay.send("b@example.com", "c@customer.example", tiny_mail(2))
    relay.close()
    assert [m.rcpt_tos for m in utf8_sink.received] == [["jäni@asiakas.example"], ["c@customer.example"]]
    assert len({m.connection for m in utf8_sink.received}) == 1


def test_relay_without_smtputf8_refuses_a_non_ascii_address_for_good(sink: SmtpSink) -> None:
    """A relay that cannot carry the address: a permanent failure naming why, and the connection serves on."""
    relay = SmtpRelay(RelaySettings("127.0.0.1", sink.port, timeout_seconds=10))
    relay.send("b@example.com", "c@customer.example", tiny_mail(1))
    with pytest.raises(PermanentFailure, match="SMTPUTF8"):
        relay.send("b@example.com", "jäni@asiakas.example", tiny_mail(2))
    relay.send("b@example.com", "c@customer.example", tiny_mail(3))
    relay.close()
    assert [m.message["Message-ID"] for m in sink.received] == ["<r1@example.com>", "<r3@example.com>"]
    assert len({m.connection for m in sink.received}) == 1


async def test_outbox_marks_a_mail_the_relay_cannot_carry_failed_and_sends_the_rest(
    desks: Desks, sink: SmtpSink
) -> None:
    """A customer with an internationalised address, behind a relay without SMTPUTF8: that
    acknowledgement fails with the reason, the other customers' go out, the worker goes on."""
    app = await desks.open()
    raw = (
        "From: Jäni <jäni@asiakas.example>\r\nTo: support@example.com\r\nSubject: moi\r\n"
        "Message-ID: <eai-1@asiakas.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nTulostin ei toimi.\r\n"
    ).encode()  # RFC 6532: the address in UTF-8, as an internationalised mail system sends it
    await app.store.call(inbound.enqueue, raw, inbound.Envelope("test"), app.clock.now())
    await file_mails(app, 2)
    assert await app.outbox_worker.run_until_idle() == 3
    states = {r.recipient: (r.state, r.last_error) for r in rows(app)}
    state, reason = states["jäni@asiakas.example"]
    assert state == "failed" and reason is not None and "SMTPUTF8" in reason
    assert sorted(m.rcpt_tos[0] for m in sink.received) == ["c0@customer.example", "c1@customer.example"]
