"""`mailgate rules test FILE.eml`: what the rules would do with one message, and why (tier 3, no database).

The same pure functions the worker calls, run on a file, so an operator can try a rule before a
customer's mail meets it.
"""

from __future__ import annotations

from datetime import datetime

from mailgate.config import Config
from mailgate.domain.ticket import Priority, TicketStatus
from mailgate.mail.classify import automatic_reason
from mailgate.mail.parse import parse_message
from mailgate.rules.autoresponse import acknowledgement_decision
from mailgate.rules.engine import MessageFacts, evaluate
from mailgate.rules.priority import highest, stated_urgency, vip_raise
from mailgate.rules.routing import addressed_queues
from mailgate.rules.sla import TicketTimeline, compute_due


def explain_rules(config: Config, raw: bytes, *, queue: str | None, now: datetime) -> str:
    parsed = parse_message(raw, config.limits)
    rules = config.rules
    if queue is None:
        found = addressed_queues([a.email for a in (*parsed.to, *parsed.cc)], config.mailboxes)
        queue = found[0] if found else config.mailboxes[0].queue
    lines = [
        f"Message {parsed.message_id}: {parsed.subject!r} from "
        f"{parsed.sender.address.email if parsed.sender.address else '(no trusted sender)'}",
        f"Queue: {queue}",
    ]
    stated = stated_urgency(parsed, rules.priority.header_max)
    baseline = highest(Priority.MEDIUM, stated or Priority.MEDIUM)
    if stated is not None:
        lines.append(f"Sender-stated urgency: {stated.value} (capped at {rules.priority.header_max.value})")
    outcome = evaluate(rules.all_rules(), MessageFacts.from_parsed(parsed, queue, baseline, is_reply=False))
    lines.append("Rules that matched:" if outcome.hits else "No rule matched.")
    lines += [f"  - {hit.rule}: {hit.action} {hit.detail}".rstrip() for hit in outcome.hits]
    sender = parsed.sender.address.email if parsed.sender.trusted and parsed.sender.address else None
    priority = vip_raise(outcome.priority, sender, rules.priority.vip_senders, rules.priority.vip_domains)
    if priority is not outcome.priority:
        lines.append(f"VIP sender: priority raised to {priority.value}")
    lines.append(
        f"Result: priority {priority.value}, queue {outcome.queue}, tags {', '.join(outcome.tags) or '-'}, "
        f"assignee {outcome.assignee or '-'}"
    )
    lines += _sla_lines(config, outcome.sla_policy, priority, now)
    allowed, why = acknowledgement_decision(
        automatic_reason(parsed),
        sender,
        config.own_addresses,
        0,
        0,
        rules.autoreply.per_sender_per_hour,
        rules.autoreply.per_ticket_per_day,
        outcome.auto_reply_allowed and rules.autoreply.enabled,
    )
    template = outcome.auto_reply_template or rules.autoreply.template
    lines.append(
        f"Auto-reply: {'yes, template ' + template if allowed else 'no'} ({why}; "
        "the per-sender and per-ticket limits are counted when mail arrives)"
    )
    return "\n".join(lines)


def _sla_lines(config: Config, policy_name: str | None, priority: Priority, now: datetime) -> list[str]:
    sla = config.rules.sla
    name = policy_name or sla.default_policy
    if name is None or name not in sla.policies:
        return ["SLA: none configured"]
    policy = sla.policies[name]
    calendar = sla.calendar_for(policy)
    targets = policy.for_priority(priority)
    timeline = TicketTimeline(created_at=now, last_customer_message_at=now, status=TicketStatus.NEW)
    due = compute_due(timeline, targets, calendar)
    lines = [f"SLA policy {name} (calendar {calendar.name}), if it arrived now ({now:%Y-%m-%d %H:%M} UTC):"]
    for target, when in due.items():
        lines.append(f"  - {target.value.replace('_', ' ')}: " + (f"due {when:%Y-%m-%d %H:%M} UTC" if when else "none"))
    return lines
