"""Reading the store the way an operator would: through the read models the CLI uses."""

from __future__ import annotations

import asyncio
from typing import Any

from mailgate.store import inbound, outbox, views


def tickets(app: Any) -> list[views.TicketSummary]:
    return app.store.run(views.list_tickets)


def ticket(app: Any, number: int) -> views.TicketDetail:
    detail = app.store.run(views.show_ticket, number)
    assert detail is not None, f"no ticket #{number}"
    return detail


def inbound_rows(app: Any) -> list[inbound.InboundSummary]:
    return app.store.run(inbound.list_inbound, limit=100_000)


def ticket_with_message(app: Any, message_id: str) -> int:
    """The number of the single ticket holding `message_id`, asserting there is exactly one."""
    found = [t.number for t in tickets(app) if any(m.message_id == message_id for m in ticket(app, t.number).messages)]
    assert len(found) == 1, f"{message_id} is in tickets {found}"
    return found[0]


async def drain(app: Any, timeout: float = 30.0) -> None:
    """Wait until the app's own worker has processed the inbound queue (one worker keeps arrival order)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        app.worker.notify()
        states = app.store.run(inbound.count_by_state)
        if not states.get("queued") and not states.get("processing"):
            return
        assert asyncio.get_running_loop().time() < deadline, f"inbound queue not drained: {states}"
        await asyncio.sleep(0.01)


async def flush_outbox(app: Any, timeout: float = 30.0) -> None:
    """Wait until the app's own outbox worker has sent every due row."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        app.outbox_worker.notify()
        if not app.store.run(outbox.unsent_due_count, app.clock.now()):
            return
        assert asyncio.get_running_loop().time() < deadline, "outbox not flushed"
        await asyncio.sleep(0.01)
