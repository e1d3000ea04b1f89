"""Reading the store the way an operator would: through the read models the CLI uses."""

from __future__ import annotations

from typing import Any

from mailgate.store import inbound, views


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
