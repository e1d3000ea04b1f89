"""Mail sent with smtplib to a running App becomes tickets, and follow-ups thread into them."""

from __future__ import annotations

import asyncio
from base64 import b64encode
from typing import Any

from tests.integration.helpers import drain, ticket, tickets
from tests.support.mailfactory import make_mail, with_raw_subject
from tests.support.smtp_client import send


async def deliver(app: Any, raw: bytes, **kwargs: Any) -> None:
    assert app.smtp_address is not None
    await asyncio.to_thread(send, app.smtp_address[1], raw, **kwargs)


async def test_fifty_senders_make_fifty_tickets(app: Any) -> None:
    """Fifty first mails from fifty different senders become fifty tickets, one message each."""
    for index in range(50):
        sender = f"customer{index}@example.net"
        await deliver(app, make_mail(sender=sender, subject=f"Problem {index}"), sender=sender)
    await drain(app)
    rows = tickets(app)
    assert len(rows) == 50
    assert sorted(r.requester for r in rows) == sorted(f"customer{i}@example.net" for i in range(50))
    assert all(r.message_count == 1 and r.status == "new" for r in rows)
    assert len({r.number for r in rows}) == 50


async def test_replies_thread_by_tag_references_and_prefixes(app: Any) -> None:
    """Replies carrying the tag, only In-Reply-To, foreign prefixes or RFC 2047 subjects join the ticket."""
    first = make_mail(sender="maija@asiakas.fi", subject="Tulostin ei toimi", message_id="<first@asiakas.fi>")
    await deliver(app, first, sender="maija@asiakas.fi")
    await drain(app)
    (created,) = tickets(app)
    number = created.number
    tag = f"[Acme Support #{number}]"
    replies = [
        make_mail(sender="maija@asiakas.fi", subject=f"Re: {tag} Tulostin ei toimi"),
        make_mail(sender="maija@asiakas.fi", subject="something else", in_reply_to="<first@asiakas.fi>"),
        make_mail(sender="maija@asiakas.fi", subject=f"AW: {tag} Tulostin"),
        make_mail(sender="maija@asiakas.fi", subject=f"VS: VS: {tag} Tulostin"),
        make_mail(sender="maija@asiakas.fi", subject=f"Ats: {tag}"),
        with_raw_subject(
            make_mail(sender="maija@asiakas.fi"),
            f"=?utf-8?q?VS=3A_=5BAcme_Support_=23{number}=5D_Tulostin_ei_viel=C3=A4k=C3=A4=C3=A4n?=",
        ),
        with_raw_subject(
            make_mail(sender="maija@asiakas.fi"),
            f"=?UTF-8?B?{b64encode(f'Ats: [Acme Support #{number}] užsakymą 68613'.encode()).decode()}?=",
        ),
    ]
    for raw in replies:
        await deliver(app, raw, sender="maija@asiakas.fi")
    await drain(app)
    rows = tickets(app)
    assert [r.number for r in rows] == [number]
    detail = ticket(app, number)
    assert len(detail.messages) == 1 + len(replies)
    assert detail.messages[-1].subject == f"Ats: [Acme Support #{number}] užsakymą 68613"
    vias = [e.data.get("via") for e in detail.events if e.kind == "message_added"]
    assert vias == ["subject_tag", "references", *["subject_tag"] * 5]


async def test_same_message_twice_is_stored_once(app: Any) -> None:
    """A redelivered message (same Message-ID) is one ticket message, not two."""
    raw = make_mail(message_id="<dup@client.example>")
    await deliver(app, raw)
    await deliver(app, raw)
    await drain(app)
    (row,) = tickets(app)
    assert row.message_count == 1


async def test_two_support_addresses_make_one_ticket(app: Any) -> None:
    """A mail to two support addresses is one ticket in the first queue; the other queue is recorded."""
    raw = make_mail(to="support@example.com, billing@example.com", message_id="<both@client.example>")
    await deliver(app, raw, recipients=("billing@example.com", "support@example.com"))
    # An MTA that splits recipients delivers a second copy: still the same ticket message.
    await deliver(app, raw, recipients=("billing@example.com",))
    await drain(app)
    (row,) = tickets(app)
    assert row.queue == "support" and row.message_count == 1
    notes = [e.data["queue"] for e in ticket(app, row.number).events if e.kind == "also_addressed_to"]
    assert notes == ["billing"]


async def test_stranger_with_a_tag_gets_a_new_linked_ticket(app: Any) -> None:
    """Someone who is not a participant cannot enter a ticket by copying its tag."""
    victim = "victim@customer.example"
    await deliver(app, make_mail(sender=victim, subject="My invoice"), sender=victim)
    await drain(app)
    (original,) = tickets(app)
    intruder = make_mail(sender="mallory@evil.example", subject=f"Re: [Acme Support #{original.number}] My invoice")
    await deliver(app, intruder, sender="mallory@evil.example")
    await drain(app)
    rows = tickets(app)
    assert len(rows) == 2
    new = next(r for r in rows if r.number != original.number)
    assert new.requester == "mallory@evil.example"
    assert ticket(app, original.number).summary.message_count == 1
    old_links = [e.data for e in ticket(app, original.number).events if e.kind == "linked"]
    new_links = [e.data for e in ticket(app, new.number).events if e.kind == "linked"]
    assert old_links[0]["ticket"] == new.number and old_links[0]["link"] == "stranger_mail"
    assert new_links[0]["ticket"] == original.number


async def test_customer_reply_reopens_answered_conversation_status(app: Any) -> None:
    """A reply to a new ticket keeps it new; the participant's Cc becomes a participant."""
    await deliver(app, make_mail(message_id="<a1@client.example>"))
    await drain(app)
    (row,) = tickets(app)
    await deliver(app, make_mail(in_reply_to="<a1@client.example>", cc="boss@customer.example"))
    await drain(app)
    detail = ticket(app, row.number)
    assert detail.summary.status == "new"
    assert "boss@customer.example" in detail.participants
