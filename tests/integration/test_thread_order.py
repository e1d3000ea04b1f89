"""Mail of one thread is filed in arrival order, also when another worker holds the request."""

from __future__ import annotations

from datetime import timedelta

from mailgate.app import App
from mailgate.store import inbound
from tests.integration.helpers import inbound_rows, ticket, tickets
from tests.support.mailfactory import make_mail

REQUEST_ID = "<request-1@customer.example>"


def _queue_request_and_reply(app: App) -> None:
    now = app.clock.now()
    request = make_mail(subject="Printer broken", message_id=REQUEST_ID)
    reply = make_mail(subject="Re: Printer broken", message_id="<reply-1@customer.example>", in_reply_to=REQUEST_ID)
    for raw in (request, reply):
        app.store.run(inbound.enqueue, raw, inbound.Envelope("smtp", "", ("support@example.com",)), now)


async def test_a_reply_waits_while_another_worker_files_its_request(idle_app: App) -> None:
    app = idle_app
    _queue_request_and_reply(app)
    # Another instance claims the request (and is filing it right now).
    held = app.store.run(inbound.claim_next, 3, app.clock.now(), "other-host:/var/lib/mailgate")
    assert held is not None
    assert await app.worker.process_one()  # claims the reply, and puts it back
    assert tickets(app) == []
    states = {row.id: (row.state, row.attempts) for row in inbound_rows(app)}
    assert states[held.id + 1] == ("queued", 0), "put back without counting an attempt"
    # The other instance is done (here: gives the request back, and this worker files it).
    app.store.run(inbound.release, held.id)
    assert await app.worker.run_until_idle() == 2
    (only,) = tickets(app)
    filed = [m.message_id for m in ticket(app, only.number).messages]
    assert filed == [REQUEST_ID.strip("<>"), "reply-1@customer.example"]


async def test_a_dead_workers_claim_does_not_hold_the_reply_back(idle_app: App) -> None:
    app = idle_app
    _queue_request_and_reply(app)
    # Claimed by an instance that died long ago: the reply is filed now (its own ticket).
    stale = app.clock.now() - app.worker.settings.claim_timeout - timedelta(seconds=1)
    assert app.store.run(inbound.claim_next, 3, stale, "dead-host:/var/lib/mailgate") is not None
    assert await app.worker.process_one()
    (opened,) = tickets(app)
    assert [m.message_id for m in ticket(app, opened.number).messages] == ["reply-1@customer.example"]
