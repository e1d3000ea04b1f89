"""Which support mailbox (and so which queue) a message was sent to (tier 1).

Plus-addressing (`support+billing@example.com`) reaches the same mailbox, so it is recognised
both for routing and for telling our own addresses apart from customers'.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailgate.domain.mailbox import Mailbox


def base_address(address: str) -> str:
    """The address without a +tag in its local part, lower-cased."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at:
        return address.strip().lower()
    return f"{local.split('+', 1)[0]}@{domain}"


def resolve_mailbox(address: str, mailboxes: Iterable[Mailbox]) -> Mailbox | None:
    """The mailbox an address delivers to, or None when it is not one of ours."""
    wanted = base_address(address)
    for mailbox in mailboxes:
        if base_address(mailbox.address) == wanted:
            return mailbox
    return None


def is_own_address(address: str, own_addresses: Iterable[str]) -> bool:
    """True for any of our addresses, plus-tagged or not: they never become a requester."""
    wanted = base_address(address)
    return any(base_address(own) == wanted for own in own_addresses)


def addressed_queues(recipients: Iterable[str], mailboxes: tuple[Mailbox, ...]) -> tuple[str, ...]:
    """The queues a message was addressed to, in the order the mailboxes are configured."""
    reached = {mailbox for address in recipients if (mailbox := resolve_mailbox(address, mailboxes))}
    return tuple(dict.fromkeys(m.queue for m in mailboxes if m in reached))
