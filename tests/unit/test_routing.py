"""Which mailbox and queue an address reaches; which addresses are our own."""

from __future__ import annotations

from mailgate.domain.mailbox import Mailbox
from mailgate.rules.routing import addressed_queues, is_own_address, resolve_mailbox

MAILBOXES = (Mailbox("support@example.com", "support"), Mailbox("billing@example.com", "billing"))


def test_plus_tag_and_case_reach_the_same_mailbox() -> None:
    """support+x@EXAMPLE.com is the support mailbox."""
    assert resolve_mailbox("Support+urgent@EXAMPLE.com", MAILBOXES) == MAILBOXES[0]
    assert resolve_mailbox("someone@example.com", MAILBOXES) is None


def test_queues_follow_configuration_order() -> None:
    """The first configured mailbox addressed decides the ticket's queue."""
    assert addressed_queues(["billing@example.com", "support@example.com"], MAILBOXES) == ("support", "billing")


def test_own_addresses_include_plus_tags() -> None:
    """Our own addresses, plus-tagged or not, are recognised."""
    own = frozenset({"support@example.com"})
    assert is_own_address("support+loop@example.com", own)
    assert not is_own_address("customer@example.net", own)
