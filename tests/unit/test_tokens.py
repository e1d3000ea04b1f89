"""Signed Message-IDs, reply addresses and bounce addresses."""

from __future__ import annotations

from mailgate.mail.tokens import (
    bounce_address,
    make_message_id,
    outbox_of_bounce_address,
    reply_address,
    ticket_of_message_id,
    verify_message_id,
)

SECRET = b"k" * 64


def test_message_id_verifies_only_for_its_recipient() -> None:
    """A reply proves receipt only when it comes from the address the mail was sent to."""
    message_id = make_message_id(
        SECRET, ticket=1042, recipient="Alice@Customer.example", nonce="ab12", domain="example.com"
    )
    assert verify_message_id(SECRET, message_id, sender="alice@customer.example", domain="example.com") == 1042
    assert verify_message_id(SECRET, message_id, sender="mallory@evil.example", domain="example.com") is None
    assert verify_message_id(b"x" * 64, message_id, sender="alice@customer.example", domain="example.com") is None
    assert ticket_of_message_id(message_id, "example.com") == 1042


def test_forged_message_id_for_another_ticket_fails() -> None:
    """Changing the ticket number breaks the signature."""
    message_id = make_message_id(SECRET, ticket=1, recipient="a@b.example", nonce="n", domain="example.com")
    forged = message_id.replace("mg.1.", "mg.2.", 1)
    assert verify_message_id(SECRET, forged, sender="a@b.example", domain="example.com") is None


def test_reply_address_is_per_ticket_and_per_agent() -> None:
    """An agent's reply token for ticket A is useless on ticket B or for another agent."""
    from mailgate.mail.tokens import verify_reply_address

    address = reply_address(SECRET, "support@example.com", ticket=7, agent="agnes@example.com")
    assert address.startswith("support+t7.") and address.endswith("@example.com")
    assert verify_reply_address(SECRET, address, sender="agnes@example.com") == 7
    assert verify_reply_address(SECRET, address, sender="bert@example.com") is None
    assert verify_reply_address(SECRET, address.replace("+t7.", "+t8."), sender="agnes@example.com") is None


def test_bounce_address_names_its_outbox_row() -> None:
    """The VERP address decodes to the outbox row only with a valid signature."""
    address = bounce_address(SECRET, "support+x@example.com", outbox_id=99)
    assert outbox_of_bounce_address(SECRET, address) == 99
    assert outbox_of_bounce_address(SECRET, address.replace("b99.", "b98.")) is None
    assert outbox_of_bounce_address(SECRET, "support@example.com") is None
