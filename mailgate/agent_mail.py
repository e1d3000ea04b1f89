"""Agents at work by mail: replies relayed to customers, commands, internal notes, forwarded mail (tier 3).

Only a verified agent gets here (mail/authentication.py): the signed Reply-To of the copy we
sent them, or a trusted DKIM pass. Everything runs in the filing transaction; every action is
an event naming the agent and how they were verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mailgate.domain.mailbox import Agent
from mailgate.domain.message import ParsedMessage
from mailgate.domain.ticket import Priority, TicketStatus
from mailgate.mail.authentication import AgentProof
from mailgate.mail.reply_text import extract_reply
from mailgate.rules.agent_commands import VALID_COMMANDS_HELP, Command, CommandResult, parse_commands
from mailgate.store import tickets, timers
from mailgate.ticket_actions import TicketActions


@dataclass(frozen=True)
class AgentDesk:
    actions: TicketActions
    agents: tuple[Agent, ...]
    canned: dict[str, str]
    own_addresses: frozenset[str]

    def agent(self, email: str) -> Agent:
        return next(a for a in self.agents if a.email == email)

    def directory(self) -> dict[str, str]:
        """Names and addresses an agent may write after #assign, lower-cased, to the address."""
        names = {a.name.lower(): a.email for a in self.agents}
        names.update({a.email: a.email for a in self.agents})
        names.update({a.email.partition("@")[0]: a.email for a in self.agents})
        return names

    def read_commands(self, parsed: ParsedMessage) -> CommandResult:
        reply = extract_reply(parsed.text_body, parsed.html_body)
        return parse_commands(reply, self.directory(), frozenset(self.canned))

    def handle_reply(
        self,
        session: Session,
        ticket_id: int,
        parsed: ParsedMessage,
        proof: AgentProof,
        *,
        inbound_id: int,
        now: datetime,
    ) -> str:
        """An agent's reply: commands applied, then a note to colleagues or a relay to the customer."""
        agent = self.agent(proof.agent)
        result = self.read_commands(parsed)
        internal = any(c.name == "note" for c in result.commands)
        message_id = tickets.add_message(
            session, ticket_id, parsed, inbound_id=inbound_id, direction="in", now=now, internal=internal
        )
        if result.errors:
            tickets.add_event(
                session,
                ticket_id,
                "agent_command_rejected",
                agent.email,
                now,
                errors=list(result.errors),
                verified_by=proof.method,
            )
            self.actions.notifier.command_error(
                session, ticket_id, agent=agent, errors=result.errors, help_text=VALID_COMMANDS_HELP, now=now
            )
            return f"commands rejected: {'; '.join(result.errors)}"
        status = self._apply(session, ticket_id, result.commands, agent, proof, now)
        if internal:
            tickets.add_event(
                session, ticket_id, "internal_note", agent.email, now, verified_by=proof.method, message=message_id
            )
            self.actions.notifier.notify_agents(session, ticket_id, "note", now, exclude=agent.email, whole_queue=True)
            return "internal note"
        self._relay(session, ticket_id, parsed, result, agent, proof, status, now)
        return "relayed to the customer"

    def _apply(
        self,
        session: Session,
        ticket_id: int,
        commands: tuple[Command, ...],
        agent: Agent,
        proof: AgentProof,
        now: datetime,
    ) -> TicketStatus | None:
        """Priority, owner and tags now; the status is returned, to be set with the relay."""
        status: TicketStatus | None = None
        how = {"verified_by": proof.method}
        for command in commands:
            value = command.value or ""
            if command.name == "status":
                status = TicketStatus(value)
            elif command.name == "priority":
                self.actions.change_priority(
                    session, ticket_id, Priority(value), actor=agent.email, now=now, verified_by=proof.method
                )
            elif command.name == "assign":
                self.actions.assign(session, ticket_id, value, actor=agent.email, now=now, **how)
            elif command.name == "tag":
                self.actions.add_tag(session, ticket_id, value, actor=agent.email, now=now, **how)
            elif command.name == "untag":
                self.actions.remove_tag(session, ticket_id, value, actor=agent.email, now=now)
        return status

    def _relay(
        self,
        session: Session,
        ticket_id: int,
        parsed: ParsedMessage,
        result: CommandResult,
        agent: Agent,
        proof: AgentProof,
        status: TicketStatus | None,
        now: datetime,
    ) -> None:
        texts = [result.body.strip()]
        texts += [self.canned[c.value or ""].strip() for c in result.commands if c.name == "template"]
        text = "\n\n".join(t for t in texts if t)
        timers.note_agent_reply(session, ticket_id, now)
        # The relayed reply is the status mail: its footer names the new status.
        self.actions.change_status(
            session, ticket_id, status or TicketStatus.ANSWERED, actor=agent.email, now=now, notify=False
        )
        attachments = [
            {"sha256": a.sha256, "filename": a.filename, "content_type": a.content_type}
            for a in parsed.attachments
            if not a.inline
        ]
        cc = self._cc_participants(session, ticket_id)
        sent = self.actions.notifier.relay_agent_reply(
            session, ticket_id, agent=agent, text=text, attachments=attachments, cc=cc, now=now
        )
        tickets.add_event(
            session, ticket_id, "agent_replied", agent.email, now, verified_by=proof.method, recipients=sent
        )
        self.actions.tracker.refresh(session, ticket_id)

    def _cc_participants(self, session: Session, ticket_id: int) -> tuple[str, ...]:
        snapshot = tickets.ticket_snapshot(session, ticket_id)
        requester = snapshot.requester.email if snapshot.requester else None
        agents = {a.email for a in self.agents}
        return tuple(
            email
            for email in tickets.participants(session, ticket_id)
            if email != requester and email not in agents and email not in self.own_addresses
        )
