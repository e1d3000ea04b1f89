"""Notifier: decides the mails a ticket change causes and writes them to the outbox (tier 3).

Runs inside the caller's transaction, so a status change and the mail announcing it commit
together or not at all. The Message-ID is fixed here, signed for the recipient.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from mailgate.domain.mailbox import Agent, Mailbox
from mailgate.domain.message import Address
from mailgate.mail.tokens import make_message_id, reply_address
from mailgate.notify.context import TicketFacts, base_context, pick_language, status_context
from mailgate.store import outbox, tickets
from mailgate.threading import pseudo_reference

SYSTEM = "system"


@dataclass(frozen=True)
class NotifySettings:
    secret: bytes
    domain: str
    desk_name: str
    tag: str
    mailboxes: tuple[Mailbox, ...]
    agents: tuple[Agent, ...] = ()
    default_language: str = "en"
    bounce_block: timedelta = timedelta(days=60)


def _as_dict(address: Address) -> dict[str, str]:
    return {"email": address.email, "name": address.name}


class Notifier:
    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings

    def queue_address(self, queue: str) -> Address:
        """The address a queue's mail comes from: agents' own addresses are never shown to customers."""
        mailbox = next((m for m in self.settings.mailboxes if m.queue == queue), self.settings.mailboxes[0])
        return Address(mailbox.address, self.settings.desk_name)

    def agents_for(self, snapshot: tickets.TicketSnapshot) -> tuple[Agent, ...]:
        if snapshot.assignee:
            return tuple(a for a in self.settings.agents if a.email == snapshot.assignee)
        return self.queue_agents(snapshot.queue)

    def queue_agents(self, queue: str) -> tuple[Agent, ...]:
        return tuple(a for a in self.settings.agents if not a.queues or queue in a.queues)

    def relay_agent_reply(
        self,
        session: Session,
        ticket_id: int,
        *,
        agent: Agent,
        text: str,
        attachments: list[dict[str, str]],
        cc: tuple[str, ...],
        now: datetime,
    ) -> int:
        """The agent's words to the customer (and Cc participants), from the queue's address.

        Returns how many mails were queued. The footer names the ticket's current status, so a
        status change the reply caused needs no second mail.
        """
        snapshot = tickets.ticket_snapshot(session, ticket_id)
        recipients = ([snapshot.requester] if snapshot.requester else []) + [Address(email) for email in cc]
        for recipient in recipients:
            if outbox.is_bouncing(session, recipient.email, now):
                tickets.add_event(session, ticket_id, "mail_suppressed", SYSTEM, now, template="agent_reply",
                                  reason=f"mail to {recipient.email} bounced recently")
                continue
            language = self._language(snapshot)
            context = {"reply_text": text, "agent_name": agent.name,
                       **status_context(snapshot.status, snapshot.status, language)}
            self._queue(session, snapshot, kind="agent_reply", template="agent_reply", to=recipient, automatic=None,
                        language=language, context=context, now=now, attachments=attachments,
                        cc=[a for a in recipients if a != recipient])
        return len(recipients)

    def command_error(
        self, session: Session, ticket_id: int, *, agent: Agent, errors: tuple[str, ...], help_text: str,
        now: datetime,
    ) -> None:
        """Tell an agent why their reply went nowhere."""
        snapshot = tickets.ticket_snapshot(session, ticket_id)
        self._queue(session, snapshot, kind="agent_command_error", template="agent_command_error",
                    to=Address(agent.email, agent.name), automatic="auto-replied",
                    language=self.settings.default_language,
                    context={"errors": list(errors), "help": help_text}, now=now)

    def acknowledge(
        self,
        session: Session,
        ticket_id: int,
        now: datetime,
        *,
        suppressed: str | None,
        first_response: str | None = None,
        template: str = "acknowledgement",
        snapshot: tickets.TicketSnapshot | None = None,
    ) -> None:
        """The customer's acknowledgement of a new ticket, unless there is a reason not to answer.

        `first_response` is the expected response time in words, when an SLA applies;
        `snapshot` the ticket as the caller read it in this transaction, if it did.
        """
        if snapshot is None:
            snapshot = tickets.ticket_snapshot(session, ticket_id)
        context = {
            "customer_name": snapshot.requester.name if snapshot.requester else "",
            "first_response": first_response,
        }
        self._to_customer(session, snapshot, template, "auto-replied", context, now, suppressed, kind="acknowledgement")

    def status_changed(
        self, session: Session, ticket_id: int, old: str, new: str, now: datetime, *, suppressed: str | None = None
    ) -> None:
        """Exactly one mail to the customer for a status change."""
        snapshot = tickets.ticket_snapshot(session, ticket_id)
        language = self._language(snapshot)
        context = {
            "customer_name": snapshot.requester.name if snapshot.requester else "",
            **status_context(old, new, language),
        }
        self._to_customer(session, snapshot, "status_changed", "auto-generated", context, now, suppressed)

    def notify_agents(
        self,
        session: Session,
        ticket_id: int,
        event: str,
        now: datetime,
        *,
        sender_problem: str | None = None,
        exclude: str | None = None,
        whole_queue: bool = False,
    ) -> None:
        """New tickets go to the queue's agents (or the assignee), customer replies to the assignee.

        Internal notes go to the whole queue but their author (`whole_queue`, `exclude`).
        """
        snapshot = tickets.ticket_snapshot(session, ticket_id)
        agents = self.queue_agents(snapshot.queue) if whole_queue else self.agents_for(snapshot)
        conversation = [
            {"date": created.strftime("%Y-%m-%d %H:%M UTC"), "author": author, "text": text[:20_000]}
            for created, author, text in tickets.conversation(session, ticket_id)
        ]
        for agent in agents:
            if agent.email == exclude:
                continue
            context = {"event": event, "conversation": conversation, "sender_problem": sender_problem}
            reply_to = Address(
                reply_address(
                    self.settings.secret,
                    self.queue_address(snapshot.queue).email,
                    ticket=snapshot.number,
                    agent=agent.email,
                ),
                self.settings.desk_name,
            )
            self._queue(
                session,
                snapshot,
                kind="agent_notification",
                template="agent_notification",
                to=Address(agent.email, agent.name),
                automatic="auto-generated",
                language=self.settings.default_language,
                context=context,
                now=now,
                reply_to=reply_to,
            )

    def language_of(self, snapshot: tickets.TicketSnapshot) -> str:
        return self._language(snapshot)

    def escalate(
        self,
        session: Session,
        ticket_id: int,
        *,
        kind: str,
        target: str,
        due: datetime,
        recipients: tuple[str, ...],
        now: datetime,
    ) -> None:
        """An SLA warning or breach, to the escalation addresses or the queue's agents."""
        snapshot = tickets.ticket_snapshot(session, ticket_id)
        names = {a.email: a.name for a in self.settings.agents}
        context = {
            "escalation_kind": kind,
            "target_name": target.replace("_", " "),
            "due_at": due.strftime("%Y-%m-%d %H:%M UTC"),
        }
        for recipient in dict.fromkeys(recipients):
            self._queue(
                session,
                snapshot,
                kind="escalation",
                template="escalation",
                to=Address(recipient, names.get(recipient, "")),
                automatic="auto-generated",
                language=self.settings.default_language,
                context=context,
                now=now,
            )

    def _language(self, snapshot: tickets.TicketSnapshot) -> str:
        """The customer's language from their mail, else the queue's, else the desk's default."""
        mailbox = next((m for m in self.settings.mailboxes if m.queue == snapshot.queue), None)
        default = (mailbox.language if mailbox else None) or self.settings.default_language
        return pick_language(snapshot.requester_language, default)

    def _to_customer(
        self,
        session: Session,
        snapshot: tickets.TicketSnapshot,
        template: str,
        automatic: str,
        context: dict[str, Any],
        now: datetime,
        suppressed: str | None,
        kind: str | None = None,
    ) -> None:
        requester = snapshot.requester
        reason = suppressed
        if reason is None and requester is None:
            reason = "the ticket has no trustworthy requester address"
        if reason is None and requester is not None and outbox.is_bouncing(session, requester.email, now):
            reason = f"mail to {requester.email} bounced recently"
        if reason is not None or requester is None:
            tickets.add_event(session, snapshot.id, "mail_suppressed", SYSTEM, now, template=template, reason=reason)
            return
        self._queue(
            session,
            snapshot,
            kind=kind or template,
            template=template,
            to=requester,
            automatic=automatic,
            language=self._language(snapshot),
            context=context,
            now=now,
        )

    def _queue(
        self,
        session: Session,
        snapshot: tickets.TicketSnapshot,
        *,
        kind: str,
        template: str,
        to: Address,
        automatic: str | None,
        language: str,
        context: dict[str, Any],
        now: datetime,
        reply_to: Address | None = None,
        attachments: list[dict[str, str]] | None = None,
        cc: list[Address] | None = None,
    ) -> int:
        settings = self.settings
        facts = TicketFacts(
            snapshot.number,
            snapshot.subject,
            snapshot.status,
            snapshot.priority,
            snapshot.queue,
            snapshot.requester.email if snapshot.requester else None,
        )
        full_context = {
            **base_context(
                facts, tag=f"[{settings.tag} #{snapshot.number}]", desk_name=settings.desk_name, language=language
            ),
            **context,
        }
        thread = tickets.thread_message_ids(session, snapshot.id)
        message_id = make_message_id(
            settings.secret,
            ticket=snapshot.number,
            recipient=to.email,
            nonce=secrets.token_hex(6),
            domain=settings.domain,
        )
        payload = {
            "template": template,
            "language": language,
            "context": full_context,
            "from": _as_dict(self.queue_address(snapshot.queue)),
            "to": _as_dict(to),
            "reply_to": _as_dict(reply_to) if reply_to else None,
            "in_reply_to": thread[-1] if thread else None,
            "references": [*thread, pseudo_reference(snapshot.number, settings.domain)],
            "automatic": automatic,
            "attachments": attachments or [],
            "cc": [_as_dict(a) for a in cc or []],
        }
        outbox_id = outbox.add(
            session,
            ticket_id=snapshot.id,
            kind=kind,
            recipient=to.email,
            message_id=message_id,
            automatic=automatic is not None,
            payload=payload,
            now=now,
        )
        tickets.add_event(
            session,
            snapshot.id,
            "mail_queued",
            SYSTEM,
            now,
            mail=kind,
            recipient=to.email,
            outbox_id=outbox_id,
            message_id=message_id,
        )
        return outbox_id
