"""Agents work from their own mail clients: replies relayed, commands, notes, forwards, forgeries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import pytest

from mailgate.app import App
from mailgate.clock import FakeClock
from mailgate.domain.ticket import TicketStatus
from tests.integration.helpers import drain, flush_outbox, inbound_rows, ticket, tickets
from tests.support.mailfactory import make_mail
from tests.support.smtp_client import send
from tests.support.smtp_sink import Received, SmtpSink

START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
CUSTOMER = "maija@asiakas.example"
AGENT = "agent@example.com"
QUOTED = "Hello, my printer is on fire and nobody answers the phone."
NEW_TEXT = "We have sent a technician; please keep the fire extinguisher ready."


@pytest.fixture
async def desk(config_factory: Any, sink: SmtpSink) -> AsyncIterator[App]:
    app = App(
        config_factory(
            outgoing={"relay_port": sink.port, "max_automatic_per_minute": 100000},
            security={"trusted_authserv_id": "mx.example.com"},
            agents=[
                {"email": AGENT, "name": "Agnes Agent", "queues": ["support"]},
                {"email": "bert@example.com", "name": "Bert", "queues": ["support"]},
            ],
        ),
        clock=FakeClock(START),
    )
    await app.start()
    yield app
    await app.stop()


async def deliver(app: App, raw: bytes, sender: str, recipients: tuple[str, ...] = ("support@example.com",)) -> None:
    assert app.smtp_address is not None
    await asyncio.to_thread(send, app.smtp_address[1], raw, sender=sender, recipients=recipients)
    await drain(app)
    await flush_outbox(app)


async def open_ticket(app: App, sink: SmtpSink) -> tuple[int, Received]:
    """A customer's first mail; returns the ticket number and Agnes's copy of it."""
    await deliver(app, make_mail(sender=f"Maija <{CUSTOMER}>", subject="Tulostin palaa", body=QUOTED + "\n"), CUSTOMER)
    number = tickets(app)[-1].number
    copy = next(m for m in reversed(sink.received) if m.rcpt_tos == [AGENT])
    return number, copy


def reply_from_agent(
    copy: Received, body: str, *, html: str | None = None, sender: str = AGENT, reply_to: str | None = None
) -> tuple[bytes, str]:
    """The agent presses Reply: to the Reply-To, In-Reply-To the copy, Re: subject."""
    original = copy.message
    target = reply_to or original["Reply-To"].addresses[0].addr_spec
    message = EmailMessage(policy=SMTP)
    message["From"] = f"Agnes Agent <{sender}>"
    message["To"] = target
    message["Subject"] = "Re: " + original["Subject"]
    message["Message-ID"] = f"<agent-{abs(hash(body)) % 10**12}@example.com>"
    message["In-Reply-To"] = original["Message-ID"]
    message["References"] = original["Message-ID"]
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message.as_bytes(), target


def customer_mail(sink: SmtpSink) -> list[Received]:
    return [m for m in sink.received if m.rcpt_tos == [CUSTOMER] and m.message["Auto-Submitted"] is None]


CLIENT_QUOTES = {
    "gmail": f"{NEW_TEXT}\n\nOn Mon, 30 Nov 2026 at 10:00, Acme Support <support@example.com> wrote:\n> {QUOTED}\n",
    "outlook": f"{NEW_TEXT}\n\n-----Original Message-----\nFrom: Acme Support <support@example.com>\n"
    f"Sent: Monday, November 30, 2026 10:00 AM\nTo: Agnes\nSubject: Tulostin palaa\n\n{QUOTED}\n",
    "outlook-fi": f"{NEW_TEXT}\n\n________________________________\nLähettäjä: Acme Support <support@example.com>\n"
    f"Lähetetty: maanantai 30. marraskuuta 2026 10.00\nVastaanottaja: Agnes\nAihe: Tulostin palaa\n\n"
    f"{QUOTED}\n",
    "thunderbird": f"{NEW_TEXT}\n\nOn 30.11.2026 10.00, Acme Support wrote:\n> {QUOTED}\n",
    "apple": f"{NEW_TEXT}\n\n> On 30 Nov 2026, at 10:00, Acme Support <support@example.com> wrote:\n>\n> {QUOTED}\n",
    "iphone": f"{NEW_TEXT}\n\nSent from my iPhone\n\n> On 30 Nov 2026, at 10:00, Acme Support wrote:\n> {QUOTED}\n",
}


@pytest.mark.parametrize("client", list(CLIENT_QUOTES))
async def test_agent_reply_reaches_the_customer_without_quotes(desk: App, sink: SmtpSink, client: str) -> None:
    """Whatever client quoted it, the customer gets only the agent's new words, from the support address."""
    number, copy = await open_ticket(desk, sink)
    raw, target = reply_from_agent(copy, CLIENT_QUOTES[client])
    await deliver(desk, raw, AGENT, (target,))
    (relayed,) = customer_mail(sink)
    text = relayed.message.get_body(("plain",)).get_content()
    assert NEW_TEXT in text and QUOTED not in text and "wrote" not in text
    assert relayed.message["From"] == "Acme Support <support@example.com>"
    assert f"[Acme Support #{number}]" in relayed.message["Subject"]
    detail = ticket(desk, number)
    assert detail.summary.status == "answered"
    assert QUOTED in detail.messages[-1].text_body  # the full original is kept
    assert any(e.kind == "agent_replied" and e.data["verified_by"] == "reply token" for e in detail.events)


async def test_outlook_html_reply_is_stripped(desk: App, sink: SmtpSink) -> None:
    """An HTML-only Outlook reply loses the divRplyFwdMsg block and everything under it."""
    number, copy = await open_ticket(desk, sink)
    html = (
        f'<html><body><div>{NEW_TEXT}</div><hr><div id="divRplyFwdMsg"><b>From:</b> Acme Support'
        f"<br><b>Sent:</b> Monday<br></div><div>{QUOTED}</div></body></html>"
    )
    message = EmailMessage(policy=SMTP)
    original = copy.message
    message["From"] = AGENT
    message["To"] = original["Reply-To"]
    message["Subject"] = "RE: " + original["Subject"]
    message["In-Reply-To"] = original["Message-ID"]
    message.set_content(html, subtype="html")
    await deliver(desk, message.as_bytes(), AGENT, (original["Reply-To"].addresses[0].addr_spec,))
    (relayed,) = customer_mail(sink)
    text = relayed.message.get_body(("plain",)).get_content()
    assert NEW_TEXT in text and QUOTED not in text
    assert ticket(desk, number).summary.status == "answered"


async def test_commands_change_the_ticket_and_are_stripped(desk: App, sink: SmtpSink) -> None:
    """#status, #priority, #assign and #tag apply; the customer sees none of the command lines."""
    number, copy = await open_ticket(desk, sink)
    body = f"#status pending\n#priority high\n#assign Bert\n#tag hardware\n\n{NEW_TEXT}\n"
    raw, target = reply_from_agent(copy, body)
    await deliver(desk, raw, AGENT, (target,))
    detail = ticket(desk, number)
    assert (detail.summary.status, detail.summary.priority, detail.summary.assignee) == (
        "pending",
        "high",
        "bert@example.com",
    )
    assert "hardware" in detail.summary.tags
    (relayed,) = customer_mail(sink)
    text = relayed.message.get_body(("plain",)).get_content()
    assert "#status" not in text and "#tag" not in text and NEW_TEXT in text
    assert "pending" in text  # the footer names the new status: no second status mail
    assert len([m for m in sink.received if m.rcpt_tos == [CUSTOMER]]) == 2  # acknowledgement + the reply


async def test_internal_note_never_reaches_the_customer(desk: App, sink: SmtpSink) -> None:
    """#note stores the reply as internal and tells the other agents only."""
    number, copy = await open_ticket(desk, sink)
    before = len(sink.received)
    raw, target = reply_from_agent(copy, "#note\nCustomer sounds upset, call them first.\n")
    await deliver(desk, raw, AGENT, (target,))
    new = sink.received[before:]
    assert [m.rcpt_tos for m in new] == [["bert@example.com"]]
    assert ticket(desk, number).messages[-1].internal


async def test_bad_command_mails_the_agent_and_sends_nothing_out(desk: App, sink: SmtpSink) -> None:
    """An unknown command: the agent gets the error with the valid commands; the customer gets nothing."""
    number, copy = await open_ticket(desk, sink)
    before = len(sink.received)
    raw, target = reply_from_agent(copy, f"#stauts closed\n\n{NEW_TEXT}\n")
    await deliver(desk, raw, AGENT, (target,))
    new = sink.received[before:]
    assert [m.rcpt_tos for m in new] == [[AGENT]]
    text = new[0].message.get_body(("plain",)).get_content()
    assert "#stauts" in text and "#status" in text
    assert ticket(desk, number).summary.status == "new"


async def test_forged_agent_mail_has_no_effect_beyond_an_event(desk: App, sink: SmtpSink) -> None:
    """An agent's From without a valid token or trusted DKIM pass changes nothing; an event says why."""
    number, _ = await open_ticket(desk, sink)
    before = len(sink.received)
    forged = make_mail(
        sender=AGENT, subject=f"Re: [Acme Support #{number}] Tulostin palaa", body="#status closed\nClosing this.\n"
    )
    await deliver(desk, forged, "mallory@evil.example")
    detail = ticket(desk, number)
    assert detail.summary.status == "new" and len(detail.messages) == 1
    assert sink.received[before:] == []
    (event,) = [e for e in detail.events if e.kind == "agent_unverified"]
    assert "no reply token" in event.data["reason"]
    assert inbound_rows(desk)[0].state == "ignored"


async def test_token_of_ticket_a_does_not_work_on_ticket_b(desk: App, sink: SmtpSink) -> None:
    """A reply address signed for ticket A, edited to name ticket B, verifies nothing."""
    number_a, copy_a = await open_ticket(desk, sink)
    await deliver(desk, make_mail(sender="other@customer.example", subject="Another"), "other@customer.example")
    number_b = tickets(desk)[-1].number
    token_a = copy_a.message["Reply-To"].addresses[0].addr_spec
    forged_target = token_a.replace(f"+t{number_a}.", f"+t{number_b}.")
    raw, _ = reply_from_agent(copy_a, "#status closed\nDone.\n", reply_to=forged_target)
    raw = raw.replace(f"#{number_a}]".encode(), f"#{number_b}]".encode())
    await deliver(desk, raw, AGENT, (forged_target,))
    assert ticket(desk, number_b).summary.status == "new"
    assert ticket(desk, number_a).summary.status == "new"


CONFIRMATIONS = {"en": "Thanks, that fixed it!", "fi": "Kiitos, se auttoi.", "lt": "Ačiū, padėjo!"}
REOPENERS = {"en": "It still crashes when I print.", "fi": "Ei toimi vieläkään.", "lt": "Vis dar neveikia."}


@pytest.mark.parametrize("language", ["en", "fi", "lt"])
async def test_confirmation_closes_and_other_replies_reopen(desk: App, sink: SmtpSink, language: str) -> None:
    """A short thank-you to a resolved ticket closes it; anything else reopens it, in three languages."""
    for text, expected in ((CONFIRMATIONS[language], "closed"), (REOPENERS[language], "open")):
        await deliver(desk, make_mail(sender=CUSTOMER, subject=f"{language} {expected}"), CUSTOMER)
        number = tickets(desk)[-1].number
        desk.store.run(
            lambda s, n=number: desk.actions.change_status(
                s, desk.actions.ticket_id(s, n), TicketStatus.RESOLVED, actor=AGENT, now=desk.clock.now()
            )
        )
        await deliver(
            desk, make_mail(sender=CUSTOMER, subject=f"Re: [Acme Support #{number}] x", body=text + "\n"), CUSTOMER
        )
        assert ticket(desk, number).summary.status == expected, text


def forward_inline() -> bytes:
    body = (
        "#ack\nPlease help this customer.\n\n"
        "-----Original Message-----\nFrom: Pekka Asiakas <pekka@asiakas.example>\n"
        "Sent: Monday, November 30, 2026 9:00 AM\nTo: Agnes Agent <agent@example.com>\n"
        "Subject: Lasku puuttuu\n\nMissä on laskuni?\n"
    )
    return make_mail(
        sender=AGENT,
        subject="FW: Lasku puuttuu",
        body=body,
        extra_headers={"Authentication-Results": "mx.example.com; dkim=pass header.d=example.com"},
    )


def forward_attached() -> bytes:
    inner = make_mail(sender="Laura Klientė <laura@klientas.example>", subject="Sąskaita", body="Kur mano sąskaita?\n")
    message = EmailMessage(policy=SMTP)
    message["From"] = AGENT
    message["To"] = "support@example.com"
    message["Subject"] = "Fwd: Sąskaita"
    message["Authentication-Results"] = "mx.example.com; dkim=pass header.d=example.com"
    message.set_content("Forwarding this one.\n")
    from email import message_from_bytes

    message.add_attachment(message_from_bytes(inner, policy=SMTP))
    return message.as_bytes()


@pytest.mark.parametrize(
    ("build", "customer", "acknowledged"),
    [
        (forward_inline, "pekka@asiakas.example", True),
        (forward_attached, "laura@klientas.example", False),
    ],
)
async def test_forwarded_customer_mail_becomes_the_customers_ticket(
    desk: App, sink: SmtpSink, build: Any, customer: str, acknowledged: bool
) -> None:
    """A verified agent's forward opens a ticket for the original sender; the customer is told only on #ack."""
    await deliver(desk, build(), AGENT)
    (row,) = tickets(desk)
    assert row.requester == customer
    detail = ticket(desk, row.number)
    assert any(e.kind == "opened_by_agent" and e.actor == AGENT for e in detail.events)
    assert bool([m for m in sink.received if m.rcpt_tos == [customer]]) is acknowledged
