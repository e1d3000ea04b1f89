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


OTHER_WORKER = "other-host:/var/lib/mailgate"


def _enqueue(app: App, raw: bytes, *recipients: str) -> int:
    envelope = inbound.Envelope("smtp", "", recipients or ("support@example.com",))
    return app.store.run(inbound.enqueue, raw, envelope, app.clock.now())


def _filed_in_order(app: App, number: int) -> list[str]:
    return [m.message_id for m in ticket(app, number).messages]


async def test_a_reply_does_not_wait_for_unrelated_mail_in_another_workers_hands(idle_app: App) -> None:
    app = idle_app
    _enqueue(app, make_mail(subject="Printer broken", message_id=REQUEST_ID))
    assert await app.worker.process_one()
    (request,) = tickets(app)
    _enqueue(app, make_mail(sender="someone@else.example", subject="VPN down", message_id="<vpn@else.example>"))
    reply = make_mail(subject="Re: Printer broken", message_id="<reply-1@customer.example>", in_reply_to=REQUEST_ID)
    _enqueue(app, reply)
    held = app.store.run(inbound.claim_next, 3, app.clock.now(), OTHER_WORKER)
    assert held is not None  # the unrelated new request, being filed elsewhere
    assert await app.worker.process_one()  # files the reply at once
    assert _filed_in_order(app, request.number) == [REQUEST_ID.strip("<>"), "reply-1@customer.example"]


async def test_a_reply_to_a_stored_request_waits_for_an_older_mail_on_the_same_ticket(idle_app: App) -> None:
    """The older mail names the ticket by its subject tag, the reply only the stored request: both
    reach the same ticket, so the reply waits (an agent's answer and a customer's follow-up)."""
    app = idle_app
    _enqueue(app, make_mail(subject="Printer broken", message_id=REQUEST_ID))
    assert await app.worker.process_one()
    (request,) = tickets(app)
    tagged = make_mail(subject=f"Re: [Acme Support #{request.number}] Printer broken", message_id="<tagged@x.example>")
    _enqueue(app, tagged)
    follow_up = make_mail(subject="Re: Printer broken", message_id="<later@c.example>", in_reply_to=REQUEST_ID)
    follow_up_id = _enqueue(app, follow_up)
    held = app.store.run(inbound.claim_next, 3, app.clock.now(), OTHER_WORKER)
    assert held is not None
    assert await app.worker.process_one()  # puts the follow-up back
    assert {row.id: row.state for row in inbound_rows(app)}[follow_up_id] == "queued"
    app.store.run(inbound.release, held.id)
    assert await app.worker.run_until_idle() == 2
    assert _filed_in_order(app, request.number) == [REQUEST_ID.strip("<>"), "tagged@x.example", "later@c.example"]


async def test_mail_whose_headers_cannot_be_read_holds_every_reply(idle_app: App) -> None:
    """Headers past the first 32 KB: its thread cannot be told, so a reply waits for it."""
    app = idle_app
    _enqueue(app, make_mail(subject="Printer broken", message_id=REQUEST_ID))
    assert await app.worker.process_one()
    padding = {f"X-Padding-{index}": "p" * 900 for index in range(40)}
    _enqueue(app, make_mail(sender="someone@else.example", subject="VPN down", extra_headers=padding))
    reply_id = _enqueue(
        app, make_mail(subject="Re: Printer broken", message_id="<reply-1@customer.example>", in_reply_to=REQUEST_ID)
    )
    assert app.store.run(inbound.claim_next, 3, app.clock.now(), OTHER_WORKER) is not None
    assert await app.worker.process_one()
    assert {row.id: row.state for row in inbound_rows(app)}[reply_id] == "queued"
