"""Forwarded mail: the customer's original found in an attached message or an inline forward."""

from __future__ import annotations

import base64
import time
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from mailgate.domain.message import Address, ParsedMessage, Sender
from mailgate.mail.forwarded import find_forwarded_original
from mailgate.mail.parse import parse_message
from tests.support.mailfactory import make_mail

CUSTOMER = "alice@customer.example"
ORIGINAL_TEXT = "Hello,\nthe printer is on fire.\n\nAlice"


def forwarded_inline(body: str) -> ParsedMessage:
    """What the parser makes of an agent's inline forward with this body."""
    return parse_message(make_mail(sender="Agnes Agent <agent@example.com>", subject="Fw: Printer", body=body))


def original_mail(original_from: str) -> EmailMessage:
    """The customer's mail as the agent received it."""
    original = EmailMessage(policy=SMTP)
    original["From"] = original_from
    original["To"] = "agent@example.com"
    original["Subject"] = "=?utf-8?q?Tulostin_palaa?="
    original["Message-ID"] = "<orig-1@customer.example>"
    original.set_content(ORIGINAL_TEXT)
    return original


def attached_forward(original_from: str) -> bytes:
    """An agent's mail with the customer's mail attached as message/rfc822, as Outlook and Thunderbird send it."""
    outer = EmailMessage(policy=SMTP)
    outer["From"] = "Agnes Agent <agent@example.com>"
    outer["To"] = "support@example.com"
    outer["Subject"] = "Fw: Tulostin palaa"
    outer["Message-ID"] = "<fwd-1@example.com>"
    outer.set_content("#ack\nPlease look at this one.")
    outer.add_attachment(original_mail(original_from))
    return outer.as_bytes()


def base64_attached_forward() -> bytes:
    """The same forward with the attached message base64-encoded, as some clients send it."""
    encoded = base64.encodebytes(original_mail("Alice Customer <alice@customer.example>").as_bytes()).decode()
    return (
        "From: Agnes Agent <agent@example.com>\r\nTo: support@example.com\r\nSubject: Fw\r\n"
        "Message-ID: <fwd-2@example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        "--b1\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="original.eml"\r\n\r\n'
        f"{encoded.replace(chr(10), chr(13) + chr(10))}--b1--\r\n"
    ).encode("ascii")


def test_attached_message_gives_its_sender_subject_text_and_id() -> None:
    """A message/rfc822 attachment's From, decoded Subject, body and Message-ID are the original."""
    raw = attached_forward("Alice Customer <alice@customer.example>")
    found = find_forwarded_original(parse_message(raw), raw)
    assert found is not None
    assert found.sender == Address(CUSTOMER, "Alice Customer")
    assert found.subject == "Tulostin palaa"
    assert found.text == ORIGINAL_TEXT
    assert found.message_id == "orig-1@customer.example"


@pytest.mark.parametrize(
    "bad_from",
    [
        "alice@customer.example, mallory@evil.example",
        '"alice@customer.example" <mallory@evil.example>',
        "not an address",
    ],
)
def test_attached_message_with_untrusted_sender_gives_none(bad_from: str) -> None:
    """Two mailboxes, an address hidden in the display name or a malformed From: no original."""
    raw = attached_forward(bad_from)
    assert find_forwarded_original(parse_message(raw), raw) is None


def test_base64_encoded_attached_message() -> None:
    """An attached message sent base64-encoded (some clients do) is decoded and read."""
    raw = base64_attached_forward()
    found = find_forwarded_original(parse_message(raw), raw)
    assert found is not None and found.sender.email == CUSTOMER


OUTLOOK_INLINE = f"""#ack
Customer called about this too.

________________________________
From: Customer, Alice <alice@customer.example>
Sent: Monday, November 2, 2026 9:30 AM
To: Agnes Agent <agent@example.com>
Subject: Printer is on fire

{ORIGINAL_TEXT}
"""


def test_outlook_inline_forward() -> None:
    """Outlook's underscore line and From/Sent/To/Subject block name the original sender."""
    found = find_forwarded_original(forwarded_inline(OUTLOOK_INLINE), b"")
    assert found is not None
    assert found.sender == Address(CUSTOMER, "Customer, Alice")
    assert found.subject == "Printer is on fire"
    assert found.text == ORIGINAL_TEXT
    assert found.message_id is None


@pytest.mark.parametrize(
    "header",
    [
        # Gmail
        "---------- Forwarded message ---------\nFrom: Alice Customer <alice@customer.example>\n"
        "Date: Mon, Nov 2, 2026 at 9:30 AM\nSubject: Printer is on fire\nTo: <agent@example.com>",
        # Outlook, older: "-----Original Message-----" and "[mailto:...]"
        "-----Original Message-----\nFrom: Alice Customer [mailto:alice@customer.example]\n"
        "Sent: Monday, November 2, 2026 9:30 AM\nTo: Agnes Agent\nSubject: Printer is on fire",
        # Outlook's plain text with link targets
        "From: Alice Customer <alice@customer.example<mailto:alice@customer.example>>\n"
        "Sent: Monday, November 2, 2026 9:30 AM\nTo: Agnes Agent <agent@example.com<mailto:agent@example.com>>\n"
        "Subject: Printer is on fire",
        # Finnish and Lithuanian Outlook, German Gmail
        "Lähettäjä: Alice Customer <alice@customer.example>\nLähetetty: maanantai 2. marraskuuta 2026 9.30\n"
        "Vastaanottaja: Agnes Agent <agent@example.com>\nAihe: Printer is on fire",
        "-----Originali žinutė-----\nSiuntėjas: Alice Customer <alice@customer.example>\n"
        "Išsiųsta: 2026 m. lapkričio 2 d. 9:30\nKam: Agnes Agent <agent@example.com>\nTema: Printer is on fire",
        "---------- Weitergeleitete Nachricht ---------\nVon: Alice Customer <alice@customer.example>\n"
        "Date: Mo., 2. Nov. 2026 um 09:30 Uhr\nSubject: Printer is on fire\nTo: <agent@example.com>",
        # Apple Mail
        "Begin forwarded message:\n\nFrom: Alice Customer <alice@customer.example>\nSubject: Printer is on fire\n"
        "Date: 2 November 2026 at 9.30.00 EET\nTo: agent@example.com",
        # Thunderbird (subject first, tab-separated)
        "-------- Forwarded Message --------\nSubject: \tPrinter is on fire\nDate: \tMon, 2 Nov 2026 09:30:00 +0200\n"
        "From: \tAlice Customer <alice@customer.example>\nTo: \tagent@example.com",
        # Finnish Gmail
        "---------- Välitetty viesti ---------\nLähettäjä: Alice Customer <alice@customer.example>\n"
        "Date: ma 2.11.2026 klo 9.30\nSubject: Printer is on fire\nTo: <agent@example.com>",
    ],
)
def test_inline_forwards_of_common_clients(header: str) -> None:
    """Gmail, Outlook (en/fi/lt), Apple Mail and Thunderbird inline forwards name the customer."""
    found = find_forwarded_original(forwarded_inline(f"FYI\n\n{header}\n\n{ORIGINAL_TEXT}\n"), b"")
    assert found is not None
    assert found.sender.email == CUSTOMER
    assert found.subject == "Printer is on fire"
    assert found.text == ORIGINAL_TEXT


def test_quoted_inline_forward_is_unquoted() -> None:
    """A forward whose text is all "> "-quoted comes back without the quoting."""
    quoted = "\n".join(f"> {line}" if line else ">" for line in ORIGINAL_TEXT.split("\n"))
    body = f"-----Original Message-----\nFrom: {CUSTOMER}\nSent: today\nSubject: x\n\n{quoted}\n"
    found = find_forwarded_original(forwarded_inline(body), b"")
    assert found is not None and found.text == ORIGINAL_TEXT


@pytest.mark.parametrize(
    "from_value",
    [
        "Alice Customer <alice@customer.example> <mallory@evil.example>",
        '"alice@customer.example" <mallory@evil.example>',
        "Alice Customer",
    ],
)
def test_inline_forward_with_untrusted_sender_gives_none(from_value: str) -> None:
    """An inline From that hides a second address or has none gives no original."""
    body = f"---------- Forwarded message ---------\nFrom: {from_value}\nDate: today\nSubject: x\n\ntext\n"
    assert find_forwarded_original(forwarded_inline(body), b"") is None


def test_plain_mail_is_no_forward() -> None:
    """A mail without an attached message or a forward header block has no original."""
    parsed = ParsedMessage("id@x", False, "Hello", Sender(Address("agent@example.com")), text_body="Just a note.")
    assert find_forwarded_original(parsed, make_mail()) is None


def test_html_only_inline_forward() -> None:
    """An inline forward in an HTML-only body is read from its text rendering."""
    html = (
        "<div>FYI</div><hr><div><b>From:</b> Alice Customer &lt;alice@customer.example&gt;<br>"
        "<b>Sent:</b> Monday<br><b>To:</b> Agnes<br><b>Subject:</b> Printer</div><div>Hello</div>"
    )
    parsed = ParsedMessage("id@x", False, "Fw", Sender(Address("agent@example.com")), html_body=html)
    found = find_forwarded_original(parsed, b"")
    assert found is not None and found.sender.email == CUSTOMER and found.text == "Hello"


def test_hostile_bodies_stay_fast() -> None:
    """A million header-like lines or one huge From value cost well under a few seconds."""
    started = time.perf_counter()
    for body in ("From: x\n" * 1_000_000, "From: " + " " * 100_000 + "<a@b.example>\nSent: x\nTo: y\n"):
        parsed = ParsedMessage("id@x", False, "Fw", Sender(Address("agent@example.com")), text_body=body)
        assert find_forwarded_original(parsed, b"") is None
    assert time.perf_counter() - started < 5
