"""Triage: the rules' decisions applied to a ticket, each with an event naming the rule (tier 3).

Runs in the filing transaction for a new ticket and for each human follow-up: priority from
the sender's stated urgency, keyword and configured rules and VIP status; queue, tags,
assignee (round robin among the queue's agents) and the SLA policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mailgate.domain.mailbox import Agent
from mailgate.domain.message import ParsedMessage
from mailgate.domain.ticket import Priority
from mailgate.rules.config_schema import RulesConfig
from mailgate.rules.engine import ROUND_ROBIN, MessageFacts, RuleOutcome, evaluate
from mailgate.rules.priority import highest, stated_urgency, vip_raise
from mailgate.rules.text import split_ahead
from mailgate.rules.timers import pick_round_robin
from mailgate.store import tickets, timers
from mailgate.ticket_actions import TicketActions

RULES = "rules"


@dataclass(frozen=True)
class Triage:
    rules: RulesConfig
    agents: tuple[Agent, ...]
    actions: TicketActions

    def split_texts_ahead(self, parsed: ParsedMessage) -> None:
        """Split the subject and body into words before the filing transaction: the keyword rules
        then find them remembered, and the transaction (on SQLite, the one writer) is shorter."""
        split_ahead(parsed.subject, parsed.text_body)

    def queue_agents(self, queue: str) -> tuple[str, ...]:
        return tuple(a.email for a in self.agents if not a.queues or queue in a.queues)

    def apply(
        self, session: Session, ticket_id: int, parsed: ParsedMessage, *, is_reply: bool, now: datetime
    ) -> RuleOutcome:
        """Evaluate the rules for this message and apply what they decided to the ticket.

        The SLA due times are the caller's to refresh afterwards (filing does, once per message).
        """
        current, queue = tickets.ticket_priority_and_queue(session, ticket_id)
        baseline = current
        stated = stated_urgency(parsed, self.rules.priority.header_max)
        if stated is not None and stated.rank > current.rank:
            baseline = stated
            tickets.add_event(session, ticket_id, "priority_from_sender", RULES, now, stated=stated.value)
        outcome = evaluate(self.rules.all_rules(), MessageFacts.from_parsed(parsed, queue, baseline, is_reply))
        for hit in outcome.hits:
            tickets.add_event(
                session, ticket_id, "rule_applied", RULES, now, rule=hit.rule, action=hit.action, detail=hit.detail
            )
        priority = self._vip(session, ticket_id, parsed, outcome.priority, now)
        self.actions.change_priority(
            session, ticket_id, priority, actor=RULES, now=now, refresh=False, current=current
        )
        if outcome.queue != queue:
            tickets.set_queue(session, ticket_id, outcome.queue, now)
            tickets.add_event(session, ticket_id, "queue_changed", RULES, now, old=queue, new=outcome.queue)
        for tag in outcome.tags:
            self.actions.add_tag(session, ticket_id, tag, actor=RULES, now=now)
        self._assign(session, ticket_id, outcome, now)
        if not is_reply or outcome.sla_policy:
            timers.set_sla_policy(session, ticket_id, outcome.sla_policy or self.rules.sla.default_policy)
        return outcome

    def _vip(
        self, session: Session, ticket_id: int, parsed: ParsedMessage, priority: Priority, now: datetime
    ) -> Priority:
        sender = parsed.sender.address.email if parsed.sender.trusted and parsed.sender.address else None
        raised = vip_raise(priority, sender, self.rules.priority.vip_senders, self.rules.priority.vip_domains)
        if raised is not priority:
            tickets.add_event(session, ticket_id, "priority_vip", RULES, now, sender=sender, new=raised.value)
        return highest(raised, priority)

    def _assign(self, session: Session, ticket_id: int, outcome: RuleOutcome, now: datetime) -> None:
        if outcome.assignee is None or tickets.ticket_assignee(session, ticket_id) is not None:
            return
        assignee = outcome.assignee
        if assignee == ROUND_ROBIN:
            candidates = self.queue_agents(outcome.queue)
            if not candidates:
                tickets.add_event(
                    session,
                    ticket_id,
                    "assignment_skipped",
                    RULES,
                    now,
                    reason=f"queue {outcome.queue} has no agents for round robin",
                )
                return
            assignee = pick_round_robin(candidates, timers.last_round_robin(session, outcome.queue))
            timers.save_round_robin(session, outcome.queue, assignee)
        self.actions.assign(session, ticket_id, assignee, actor=RULES, now=now, how=outcome.assignee)
