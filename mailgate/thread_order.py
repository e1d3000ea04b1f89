"""Mail of one thread is filed in arrival order, also with several workers or instances (tier 3).

A mail that may join an existing thread (it names a parent message, carries our subject tag or
is addressed to a tagged address of ours) waits while an older message *of its thread* is still
queued or in a live worker's hands. Whether an older message may be of its thread is told by
both messages' thread keys:

- the Message-IDs each carries and names (In-Reply-To, References): a reply and its parent, or
  two replies to one message, share one;
- the ticket numbers each names (our subject tag, our per-ticket reference, our own Message-IDs,
  an agent's reply address) or reaches (the tickets of the stored messages it names): a reply to
  an old request and an agent's answer on its ticket share one.

Keys that meet mean "may be of one thread": the mail waits. An older message whose keys cannot be
told (headers reaching past the first 32 KB, a plus address we cannot place, such as a bounce)
may be of any thread, and so may the asking mail when its own cannot be told. Waiting only for
its own thread, a reply no longer waits for unrelated mail in another worker's hands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mailgate.domain.message import ParsedMessage
from mailgate.mail.parse import ThreadHeaders, thread_headers
from mailgate.mail.tokens import ticket_of_message_id, ticket_of_reply_address
from mailgate.store import inbound, tickets
from mailgate.threading import candidate_message_ids, find_subject_tag, pseudo_ticket_numbers

# Older messages looked at per check; more than this in flight at once: wait, whatever they are.
MAX_OLDER = 32
# Thread keys of older messages remembered by inbound id (each is read once while it waits).
_REMEMBERED = 1024


@dataclass(frozen=True)
class ThreadKeys:
    message_ids: frozenset[str]
    tickets: frozenset[int]

    def meet(self, other: ThreadKeys) -> bool:
        return not self.message_ids.isdisjoint(other.message_ids) or not self.tickets.isdisjoint(other.tickets)

    def reaching(self, stored: dict[str, tuple[int, int]]) -> ThreadKeys:
        """With the numbers of the tickets its stored Message-IDs belong to (`stored`: by Message-ID)."""
        reached = {stored[m][1] for m in self.message_ids if m in stored}
        return ThreadKeys(self.message_ids, self.tickets | reached) if reached else self


def thread_keys(
    headers: ThreadHeaders, recipients: tuple[str, ...], *, subject_tag: str, domain: str
) -> ThreadKeys | None:
    """The keys a message carries itself; None when a recipient is a plus address we cannot place."""
    named = candidate_message_ids(headers.in_reply_to, headers.references)
    numbers = set(pseudo_ticket_numbers(named, domain))
    numbers.update(n for message_id in named if (n := ticket_of_message_id(message_id, domain)) is not None)
    tagged = find_subject_tag(headers.subject, subject_tag)
    if tagged is not None:
        numbers.add(tagged)
    for recipient in recipients:
        if "+" in recipient.partition("@")[0]:
            replied = ticket_of_reply_address(recipient)
            if replied is None:
                return None
            numbers.add(replied)
    ids = set(named)
    if headers.message_id is not None:
        ids.add(headers.message_id)
    return ThreadKeys(frozenset(ids), frozenset(numbers))


class ThreadOrder:
    """Tells whether older mail of a message's thread is still in flight (one per worker)."""

    def __init__(self) -> None:
        self._older_keys: dict[int, ThreadKeys | None] = {}

    def keys_of(
        self, parsed: ParsedMessage, recipients: tuple[str, ...], *, subject_tag: str, domain: str
    ) -> ThreadKeys | None:
        headers = ThreadHeaders(
            message_id=None if parsed.message_id_synthetic else parsed.message_id,
            in_reply_to=parsed.in_reply_to,
            references=parsed.references,
            subject=parsed.subject,
        )
        return thread_keys(headers, recipients, subject_tag=subject_tag, domain=domain)

    def older_of_its_thread_in_flight(
        self,
        session: Session,
        inbound_id: int,
        keys: ThreadKeys | None,
        alive_since: datetime,
        *,
        subject_tag: str,
        domain: str,
    ) -> bool:
        """True while an older message that may be of the thread `keys` describe is queued or
        being filed by a live worker (a read: run it in `Store.read`)."""
        older = inbound.older_mail_in_flight(session, inbound_id, alive_since, MAX_OLDER + 1)
        if not older:
            return False
        if keys is None or len(older) > MAX_OLDER:
            return True
        theirs = [self._keys_of_older(session, older_id, subject_tag=subject_tag, domain=domain) for older_id in older]
        if any(other is None for other in theirs):
            return True
        known = [other for other in theirs if other is not None]
        # One look-up for every Message-ID named: a parent may have been filed since the last check.
        stored = tickets.tickets_of_messages(session, keys.message_ids.union(*(k.message_ids for k in known)))
        mine = keys.reaching(stored)
        return any(mine.meet(other.reaching(stored)) for other in known)

    def _keys_of_older(self, session: Session, inbound_id: int, *, subject_tag: str, domain: str) -> ThreadKeys | None:
        """Read once per older message (its headers do not change while it waits)."""
        if inbound_id in self._older_keys:
            return self._older_keys[inbound_id]
        mail = inbound.mail_head(session, inbound_id)
        headers = None if mail is None else thread_headers(mail.head, whole=mail.whole)
        keys = None
        if mail is not None and headers is not None:
            keys = thread_keys(headers, mail.rcpt_tos, subject_tag=subject_tag, domain=domain)
        if len(self._older_keys) >= _REMEMBERED:
            self._older_keys.clear()
        self._older_keys[inbound_id] = keys
        return keys
