"""[worker] processes: filing processes beside the daemon's worker, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailgate.app import App
from mailgate.config import Config
from mailgate.parts import filing_process_owner, instance_name
from mailgate.store import inbound, schema
from mailgate.store.models import Inbound
from tests.integration.helpers import ticket, ticket_with_message, tickets
from tests.support.mailfactory import make_mail

CONVERSATIONS, SESSIONS = 12, 4


def _claimers(app: App) -> dict[str, int]:
    """How many messages each claimer (the daemon, filing-1, ...) took."""
    counts: dict[str, int] = {}
    with Session(app.store.engine) as session:
        for owner in session.scalars(select(Inbound.claimed_by)):
            name = (owner or "").rpartition("/")[2] if "/filing-" in (owner or "") else "daemon"
            counts[name] = counts.get(name, 0) + 1
    return counts


def _state(app: App, inbound_id: int) -> str:
    return app.store.run(lambda session: session.scalars(select(Inbound.state).where(Inbound.id == inbound_id)).one())


async def _wait_for(predicate: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def _all_filed(app: App, count: int) -> Callable[[], bool]:
    def filed() -> bool:
        states = app.store.run(inbound.count_by_state)
        return states.get(inbound.DONE, 0) == count and set(states) == {inbound.DONE}

    return filed


def _send_conversations(port: int, subject: str = "Conversation") -> None:
    """Each conversation (a request, then two replies to it) on one session, in order; the sessions in parallel."""

    def session(index: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            for conversation in range(index, CONVERSATIONS, SESSIONS):
                sender = f"c{conversation}@customer.example"
                request = f"<req-{conversation}@client.example>"
                mails = [make_mail(sender=sender, subject=f"{subject} {conversation}", message_id=request)]
                for reply in (1, 2):
                    mails.append(
                        make_mail(
                            sender=sender,
                            subject=f"Re: {subject} {conversation}",
                            message_id=f"<re{reply}-{conversation}@client.example>",
                            in_reply_to=request,
                            references=request,
                            body=f"follow-up {reply}\n",
                        )
                    )
                for raw in mails:
                    client.sendmail(sender, ["support@example.com"], raw)

    with ThreadPoolExecutor(SESSIONS) as pool:
        for future in [pool.submit(session, index) for index in range(SESSIONS)]:
            future.result()


async def test_filing_processes_file_every_mail_once_and_each_thread_in_order(
    config_factory: Callable[..., Config],
) -> None:
    app = App(config_factory(worker={"processes": 3}))
    await app.start()
    try:
        assert len(app.filing_processes) == 2 and all(child.serving for child in app.filing_processes)
        assert app.smtp_address is not None
        await asyncio.to_thread(_send_conversations, app.smtp_address[1])
        total = CONVERSATIONS * 3
        await _wait_for(_all_filed(app, total))
        assert len(tickets(app)) == CONVERSATIONS, "every request opened one ticket, every reply joined it"
        for conversation in range(CONVERSATIONS):
            number = ticket_with_message(app, f"req-{conversation}@client.example")
            ids = [m.message_id for m in ticket(app, number).messages]
            expected = [f"{kind}-{conversation}@client.example" for kind in ("req", "re1", "re2")]
            assert ids == expected, "mail of one thread is filed in arrival order"
        claimers = _claimers(app)
        assert sum(claimers.values()) == total
        assert set(claimers) - {"daemon"}, f"the filing processes filed nothing: {claimers}"
        # What the filing processes counted reaches the daemon's metrics.
        await _wait_for(lambda: app.metrics.processed.value("smtp") == total)
        assert app.metrics.latency.count == total
        processes = [child.process for child in app.filing_processes]
    finally:
        await app.stop()
    assert all(p is not None and p.returncode == 0 for p in processes), "SIGTERM: they finished and exited cleanly"


async def test_a_restarted_filing_process_takes_back_only_its_own_claims(config_factory: Callable[..., Config]) -> None:
    """A filing process killed with a message in hand: its successor files that message; a sibling's
    claim, still being worked on, is left alone."""
    app = App(config_factory(worker={"processes": 3}))
    await app.start()
    try:
        instance = instance_name(app.config)
        first, second = filing_process_owner(instance, 1), filing_process_owner(instance, 2)

        def claimed_by(session: Session, owner: str, subject: str) -> int:
            envelope = inbound.Envelope("smtp", "orphan@customer.example", ("support@example.com",))
            raw = make_mail(sender="orphan@customer.example", subject=subject)
            row = inbound.enqueue(session, raw, envelope, app.clock.now())
            claim = {"state": inbound.PROCESSING, "attempts": 1, "claimed_by": owner, "claimed_at": app.clock.now()}
            session.execute(update(Inbound).where(Inbound.id == row).values(**claim))
            return row

        # Claimed in the same transaction that queues them: no worker ever sees them queued.
        orphan = app.store.run(claimed_by, first, "held by the killed process")
        sibling = app.store.run(claimed_by, second, "held by a live sibling")
        victim = app.filing_processes[0]
        assert victim.process is not None
        victim.process.kill()
        await _wait_for(lambda: victim.restarts == 1 and victim.serving)
        await _wait_for(lambda: _state(app, orphan) == inbound.DONE)
        assert [t.subject for t in tickets(app)] == ["held by the killed process"]
        assert _state(app, sibling) == inbound.PROCESSING, "a live sibling's claim is its own"
    finally:
        await app.stop()


async def test_the_daemon_takes_back_its_filing_processes_claims_at_start(
    config_factory: Callable[..., Config],
) -> None:
    """After a crash of the whole daemon, the claims of its filing processes are queued again at
    once (PostgreSQL too, where other instances' claims wait for the claim timeout)."""
    config = config_factory(worker={"processes": 2})
    app = App(config)
    await asyncio.to_thread(schema.upgrade, app.store.engine)
    owner = filing_process_owner(instance_name(config), 1)

    def crashed_claim(session: Session) -> int:
        envelope = inbound.Envelope("smtp", "left@customer.example", ("support@example.com",))
        raw = make_mail(sender="left@customer.example", subject="left behind")
        row = inbound.enqueue(session, raw, envelope, app.clock.now())
        claim = {"state": inbound.PROCESSING, "attempts": 1, "claimed_by": owner, "claimed_at": app.clock.now()}
        session.execute(update(Inbound).where(Inbound.id == row).values(**claim))
        return row

    row = app.store.run(crashed_claim)
    await app.start()
    try:
        await _wait_for(lambda: _state(app, row) == inbound.DONE)
        assert [t.subject for t in tickets(app)] == ["left behind"]
    finally:
        await app.stop()


async def test_a_reload_reaches_the_filing_processes(config_factory: Callable[..., Config]) -> None:
    app = App(config_factory(worker={"processes": 2}))
    await app.start()
    try:
        rule = {
            "name": "outages first",
            "conditions": [{"field": "subject", "op": "contains", "value": "outage"}],
            "actions": [{"set_priority": "urgent"}],
        }
        pending = app.reload(config_factory(worker={"processes": 2, "max_attempts": 5}, rules=[rule]))
        assert pending == []
        assert all([await child.applied(10.0) for child in app.filing_processes]), "each confirmed the new rules"
        assert app.smtp_address is not None
        await asyncio.to_thread(_send_conversations, app.smtp_address[1], "Network outage")
        await _wait_for(_all_filed(app, CONVERSATIONS * 3))
        assert {t.priority for t in tickets(app)} == {"urgent"}, "whichever process filed it applied the new rule"
        assert set(_claimers(app)) - {"daemon"}, "the filing process filed some of them"
        # The number of processes is fixed at start; a reload says so.
        assert app.reload(config_factory(worker={"processes": 4})) == ["worker.processes"]
        assert len(app.filing_processes) == 1 and app.config.worker.processes == 2
    finally:
        await app.stop()


def test_a_filing_process_claims_under_its_instance_name_within_the_column() -> None:
    owner = filing_process_owner("h" * 400, 12)
    assert owner.startswith("h" * 290) and owner.endswith("/filing-12") and len(owner) <= 300
