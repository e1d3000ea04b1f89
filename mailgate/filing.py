"""File one parsed message into its ticket, in the caller's transaction (tier 3).

Loads the facts threading needs, asks the pure core where the message belongs, and writes the
ticket, message, participants and events. Everything here happens in one transaction with the
inbound row's new state, so a crash leaves either all of it or none of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from mailgate.agent_mail import AgentDesk
from mailgate.domain.mailbox import Mailbox
from mailgate.domain.message import ParsedMessage, Sender
from mailgate.domain.threading import ThreadDecision, ThreadVia, TicketRef
from mailgate.domain.ticket import Priority, TicketStatus, status_after_customer_reply
from mailgate.mail.authentication import AgentProof, verify_agent
from mailgate.mail.classify import DeliveryReport, automatic_reason
from mailgate.mail.forwarded import find_forwarded_original
from mailgate.mail.reply_text import extract_reply
from mailgate.mail.tokens import ticket_of_message_id, verify_message_id
from mailgate.rules.autoresponse import acknowledgement_decision
from mailgate.rules.confirmation import is_confirmation
from mailgate.rules.engine import RuleOutcome
from mailgate.rules.routing import addressed_queues, is_own_address
from mailgate.store import outbox, tickets, timers
from mailgate.threading import (
    ThreadingFacts,
    candidate_message_ids,
    clean_subject,
    find_subject_tag,
    pseudo_ticket_numbers,
    thread_message,
)
from mailgate.triage import Triage

SYSTEM = "system"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class FilingPolicy:
    """The parts of the configuration that decide where a message is filed."""

    subject_tag: str
    domain: str
    mailboxes: tuple[Mailbox, ...]
    own_addresses: frozenset[str]
    agents: frozenset[str]
    secret: bytes
    bounce_block: timedelta = timedelta(days=60)
    authserv_id: str | None = None


@dataclass(frozen=True)
class Arrival:
    """How a message reached us: the envelope, and what the worker learnt from the raw bytes."""

    inbound_id: int
    recipients: tuple[str, ...] = ()
    envelope_sender: str | None = None
    bounce_outbox_id: int | None = None
    delivery_report: DeliveryReport | None = None
    raw: bytes = b""


@dataclass(frozen=True)
class FilingOutcome:
    """What became of a message: its ticket, and whether it was new, appended or a duplicate."""

    ticket_number: int | None
    result: str
    note: str = ""


def file_message(
    session: Session,
    parsed: ParsedMessage,
    arrival: Arrival,
    *,
    policy: FilingPolicy,
    triage: Triage,
    now: datetime,
    agent_desk: AgentDesk | None = None,
) -> FilingOutcome:
    """Create or append a ticket for `parsed`; a message already stored changes nothing."""
    if arrival.bounce_outbox_id is not None or arrival.delivery_report is not None:
        return _record_bounce(session, arrival, policy, now)
    loop = _loop_reason(parsed, policy)
    if loop is not None:
        return FilingOutcome(None, "ignored", loop)
    queues = _queues(parsed, arrival.recipients, policy)
    known = tickets.ticket_number_of_message(session, parsed.message_id)
    if known is not None:
        return _record_duplicate(session, known, queues, parsed, now)
    decision = _allow_reopen(session, thread_message(_threading_facts(session, parsed, policy)), policy, now)
    proof, unverified = verify_agent(
        parsed, arrival.recipients, agents=policy.agents, secret=policy.secret, authserv_id=policy.authserv_id
    )
    if proof is not None and agent_desk is not None:
        handled = _agent_mail(session, parsed, arrival, decision, proof, queues, agent_desk, policy, triage, now)
        if handled is not None:
            return handled
    if unverified is not None and decision.ticket is not None:
        # A mail in an agent's name without proof changes nothing on the ticket it names
        # (the Zendesk 2024 report: a forged From must not read or write others' tickets).
        _note_unverified(session, _ticket_id(session, decision.ticket), parsed, unverified, now)
        return FilingOutcome(decision.ticket, "ignored", f"agent address without verification: {unverified}")
    automatic = automatic_reason(parsed, arrival.envelope_sender)
    if decision.creates_ticket:
        ticket_id, number = _open_ticket(session, parsed, decision, queues, arrival.inbound_id, policy, now)
        _triage_new(session, ticket_id, parsed, automatic, policy, triage, now, acknowledge=True)
        _note_unverified(session, ticket_id, parsed, unverified, now)
        return FilingOutcome(number, "created", decision.reason)
    assert decision.ticket is not None
    _append(session, parsed, decision, arrival.inbound_id, policy, triage, automatic, now)
    return FilingOutcome(decision.ticket, "appended", decision.reason)


def _ticket_id(session: Session, number: int) -> int:
    ticket_id = tickets.ticket_id_by_number(session, number)
    assert ticket_id is not None
    return ticket_id


def _triage_new(
    session: Session,
    ticket_id: int,
    parsed: ParsedMessage,
    automatic: str | None,
    policy: FilingPolicy,
    triage: Triage,
    now: datetime,
    *,
    acknowledge: bool,
    acknowledge_reason: str = "",
) -> None:
    """Rules, timers, the customer's acknowledgement and the agents' copies of a new ticket (which
    entered status new when it was created)."""
    outcome = triage.apply(session, ticket_id, parsed, is_reply=False, now=now)
    triage.actions.tracker.refresh(session, ticket_id)
    if acknowledge:
        _acknowledge(session, ticket_id, parsed, outcome, automatic, policy, triage, now)
    else:
        tickets.add_event(
            session, ticket_id, "mail_suppressed", SYSTEM, now, template="acknowledgement", reason=acknowledge_reason
        )
    triage.actions.notifier.notify_agents(session, ticket_id, "new_ticket", now, sender_problem=parsed.sender.problem)


def _note_unverified(
    session: Session, ticket_id: int, parsed: ParsedMessage, reason: str | None, now: datetime
) -> None:
    """Mail from an agent's address without proof is an ordinary correspondent's: say why."""
    if reason is not None and parsed.sender.address is not None:
        tickets.add_event(session, ticket_id, "agent_unverified", parsed.sender.address.email, now, reason=reason)


def _allow_reopen(session: Session, decision: ThreadDecision, policy: FilingPolicy, now: datetime) -> ThreadDecision:
    """A mail to a ticket closed within its queue's reopen_days reopens it instead of starting anew."""
    if decision.via is not ThreadVia.CLOSED_FOLLOWUP or decision.linked is None:
        return decision
    ticket_id = _ticket_id(session, decision.linked)
    queue = tickets.ticket_queue(session, ticket_id)
    days = next((m.reopen_days for m in policy.mailboxes if m.queue == queue), 0)
    closed_at = timers.load_state(session, ticket_id).status_since
    if days <= 0 or now - closed_at > timedelta(days=days):
        return decision
    return ThreadDecision(
        ThreadVia.CLOSED_FOLLOWUP,
        decision.linked,
        None,
        f"{decision.reason}; it was closed less than {days} days ago, so it reopens",
    )


def _agent_mail(
    session: Session,
    parsed: ParsedMessage,
    arrival: Arrival,
    decision: ThreadDecision,
    proof: AgentProof,
    queues: tuple[str, ...],
    desk: AgentDesk,
    policy: FilingPolicy,
    triage: Triage,
    now: datetime,
) -> FilingOutcome | None:
    """A verified agent's mail: a reply to a ticket, or a customer's mail forwarded to open one."""
    number = proof.ticket if proof.ticket is not None else decision.ticket
    if number is not None and tickets.ticket_id_by_number(session, number) is not None:
        note = desk.handle_reply(
            session, _ticket_id(session, number), parsed, proof, inbound_id=arrival.inbound_id, now=now
        )
        return FilingOutcome(number, "agent_reply", note)
    original = find_forwarded_original(parsed, arrival.raw)
    if original is None:
        return None
    forwarded = replace(
        parsed,
        sender=Sender(original.sender),
        subject=original.subject or parsed.subject,
        text_body=original.text or parsed.text_body,
    )
    opening = ThreadDecision(ThreadVia.NEW, None, None, f"{proof.agent} forwarded a mail from {original.sender.email}")
    ticket_id, number = _open_ticket(session, forwarded, opening, queues, arrival.inbound_id, policy, now)
    tickets.add_event(
        session,
        ticket_id,
        "opened_by_agent",
        proof.agent,
        now,
        verified_by=proof.method,
        customer=original.sender.email,
    )
    wants_ack = any(c.name == "ack" for c in desk.read_commands(parsed).commands)
    _triage_new(
        session,
        ticket_id,
        forwarded,
        None,
        policy,
        triage,
        now,
        acknowledge=wants_ack,
        acknowledge_reason="opened by an agent's forward without #ack",
    )
    return FilingOutcome(number, "created", opening.reason)


def _acknowledge(
    session: Session,
    ticket_id: int,
    parsed: ParsedMessage,
    outcome: RuleOutcome,
    automatic: str | None,
    policy: FilingPolicy,
    triage: Triage,
    now: datetime,
) -> None:
    """The acknowledgement, unless the mail was automatic, a rule said no, or a rate limit is reached."""
    settings = triage.rules.autoreply
    sender = parsed.sender.address.email if parsed.sender.trusted and parsed.sender.address else None
    allowed, why = acknowledgement_decision(
        automatic,
        sender,
        policy.own_addresses,
        sent_to_sender_last_hour=timers.automatic_replies_since(session, recipient=sender, since=now - HOUR)
        if sender
        else 0,
        # Acknowledgements go only to tickets opened in this very transaction: none sent on it yet.
        sent_on_ticket_last_day=0,
        per_sender_per_hour=settings.per_sender_per_hour,
        per_ticket_per_day=settings.per_ticket_per_day,
        rule_allows=outcome.auto_reply_allowed and settings.enabled,
    )
    snapshot = tickets.ticket_snapshot(session, ticket_id)
    notifier = triage.actions.notifier
    words = triage.actions.tracker.first_response_words(
        tickets.ticket_sla_policy(session, ticket_id), outcome.priority, notifier.language_of(snapshot)
    )
    notifier.acknowledge(
        session,
        ticket_id,
        now,
        suppressed=None if allowed else why,
        first_response=words,
        template=outcome.auto_reply_template or settings.template,
        snapshot=snapshot,
    )


def _loop_reason(parsed: ParsedMessage, policy: FilingPolicy) -> str | None:
    """Mail from our own addresses, or our own mail coming back, never becomes a ticket."""
    sender = parsed.sender.address
    if sender is not None and is_own_address(sender.email, policy.own_addresses):
        return "the sender is this help desk's own address (a mail loop)"
    if ticket_of_message_id(parsed.message_id, policy.domain) is not None:
        return "the message is mail this help desk sent (its Message-ID is ours)"
    return None


def _record_bounce(session: Session, arrival: Arrival, policy: FilingPolicy, now: datetime) -> FilingOutcome:
    """A delivery report marks the outbox row and, when permanent, the address; it never opens a ticket."""
    report = arrival.delivery_report
    outbox_id = arrival.bounce_outbox_id
    if outbox_id is None and report is not None and report.original_message_id:
        outbox_id = outbox.outbox_id_by_message_id(session, report.original_message_id)
    if outbox_id is None:
        return FilingOutcome(None, "ignored", "a delivery report for no mail of ours")
    reason = f"{report.status} {report.diagnostic}".strip() if report else "bounced (no delivery report)"
    found = outbox.mark_bounced(session, outbox_id, reason)
    if found is None:
        return FilingOutcome(None, "ignored", f"a bounce for unknown outbox row {outbox_id}")
    ticket_id, recipient = found
    permanent = report is None or report.permanent
    if permanent:
        outbox.mark_contact_bouncing(session, recipient, now + policy.bounce_block, reason)
    number = None
    if ticket_id is not None:
        tickets.add_event(
            session,
            ticket_id,
            "mail_bounced",
            SYSTEM,
            now,
            outbox_id=outbox_id,
            recipient=recipient,
            reason=reason,
            permanent=permanent,
        )
        number = tickets.ticket_number_of_id(session, ticket_id)
    return FilingOutcome(number, "bounce", f"bounce for outbox row {outbox_id} to {recipient}: {reason}")


def _queues(parsed: ParsedMessage, recipients: tuple[str, ...], policy: FilingPolicy) -> tuple[str, ...]:
    """Queues from the envelope; without one (pipe, IMAP), from To/Cc; else the first mailbox's."""
    queues = addressed_queues(recipients, policy.mailboxes)
    if not queues:
        queues = addressed_queues([a.email for a in (*parsed.to, *parsed.cc)], policy.mailboxes)
    return queues or (policy.mailboxes[0].queue,)


def _threading_facts(session: Session, parsed: ParsedMessage, policy: FilingPolicy) -> ThreadingFacts:
    candidates = candidate_message_ids(parsed.in_reply_to, parsed.references)
    trusted = parsed.sender.trusted and parsed.sender.address is not None
    sender = parsed.sender.address.email if trusted and parsed.sender.address else None
    tag_number = find_subject_tag(parsed.subject, policy.subject_tag)
    refs = tickets.TicketRefs(session)
    return ThreadingFacts(
        sender=sender,
        agents=policy.agents,
        by_reference=_signed_reference(refs, candidates, sender, policy)
        or refs.of_id(tickets.nearest_referenced_ticket_id(session, candidates)),
        by_pseudo_reference=_weak_reference(refs, candidates, policy),
        by_tag=refs.of_number(tag_number) if tag_number is not None else None,
        tag_number=tag_number,
    )


def _signed_reference(
    refs: tickets.TicketRefs, candidates: tuple[str, ...], sender: str | None, policy: FilingPolicy
) -> TicketRef | None:
    """A reply to mail we sent to this very sender proves they are part of the conversation."""
    if sender is None:
        return None
    for message_id in candidates:
        number = verify_message_id(policy.secret, message_id, sender=sender, domain=policy.domain)
        if number is not None:
            return refs.of_number(number)
    return None


def _weak_reference(refs: tickets.TicketRefs, candidates: tuple[str, ...], policy: FilingPolicy) -> TicketRef | None:
    """Our pseudo reference, or our Message-ID sent to someone else: guessable or forwarded, so weak."""
    numbers = [*pseudo_ticket_numbers(candidates, policy.domain)]
    numbers += [n for c in candidates if (n := ticket_of_message_id(c, policy.domain)) is not None]
    return refs.of_number(numbers[0]) if numbers else None


def _participant_addresses(parsed: ParsedMessage, policy: FilingPolicy) -> set[str]:
    addresses = {a.email for a in (*parsed.to, *parsed.cc)}
    if parsed.sender.trusted and parsed.sender.address is not None:
        addresses.add(parsed.sender.address.email)
    return {a for a in addresses if not is_own_address(a, policy.own_addresses)}


def _open_ticket(
    session: Session,
    parsed: ParsedMessage,
    decision: ThreadDecision,
    queues: tuple[str, ...],
    inbound_id: int,
    policy: FilingPolicy,
    now: datetime,
) -> tuple[int, int]:
    """The new ticket's id and number."""
    sender = parsed.sender.address
    language = parsed.language or next(iter(parsed.header("accept-language")), None)
    requester_id = tickets.upsert_contact(session, sender, language, now) if sender is not None else None
    subject = clean_subject(parsed.subject, policy.subject_tag) or "(no subject)"
    ticket_id, number = tickets.create_ticket(
        session, subject=subject, queue=queues[0], requester_id=requester_id, priority=Priority.MEDIUM, now=now
    )
    tickets.add_message(session, ticket_id, parsed, inbound_id=inbound_id, direction="in", now=now)
    tickets.add_participants(session, ticket_id, _participant_addresses(parsed, policy))
    actor = sender.email if sender else SYSTEM
    tickets.add_event(
        session,
        ticket_id,
        "ticket_created",
        actor,
        now,
        via=decision.via.value,
        reason=decision.reason,
        queue=queues[0],
        message_id=parsed.message_id,
    )
    for other in queues[1:]:
        tickets.add_event(session, ticket_id, "also_addressed_to", SYSTEM, now, queue=other)
    if parsed.sender.problem:
        tickets.add_tag(session, ticket_id, "suspicious-sender")
        tickets.add_event(session, ticket_id, "sender_untrusted", SYSTEM, now, problem=parsed.sender.problem)
    if decision.linked is not None:
        _link(session, ticket_id, number, decision, now)
    return ticket_id, number


def _link(session: Session, ticket_id: int, number: int, decision: ThreadDecision, now: datetime) -> None:
    """Both tickets name each other, so an agent sees the connection from either side."""
    assert decision.linked is not None
    old_id = tickets.ticket_id_by_number(session, decision.linked)
    link = "stranger_mail" if decision.via is ThreadVia.STRANGER else "followup_of_closed"
    tickets.add_event(
        session, ticket_id, "linked", SYSTEM, now, link=link, ticket=decision.linked, reason=decision.reason
    )
    if old_id is not None:
        tickets.add_event(session, old_id, "linked", SYSTEM, now, link=link, ticket=number, reason=decision.reason)


def _append(
    session: Session,
    parsed: ParsedMessage,
    decision: ThreadDecision,
    inbound_id: int,
    policy: FilingPolicy,
    triage: Triage,
    automatic: str | None,
    now: datetime,
) -> None:
    assert decision.ticket is not None
    ticket_id = tickets.ticket_id_by_number(session, decision.ticket)
    assert ticket_id is not None
    tickets.add_message(session, ticket_id, parsed, inbound_id=inbound_id, direction="in", now=now)
    tickets.add_participants(session, ticket_id, _participant_addresses(parsed, policy))
    sender = parsed.sender.address
    actor = sender.email if sender else SYSTEM
    tickets.add_event(
        session,
        ticket_id,
        "message_added",
        actor,
        now,
        via=decision.via.value,
        reason=decision.reason,
        message_id=parsed.message_id,
    )
    if automatic is not None:
        # Automatic mail (an out-of-office, a list) is kept, but never reopens a ticket.
        tickets.add_event(session, ticket_id, "automatic_mail", SYSTEM, now, reason=automatic)
        tickets.touch(session, ticket_id, now)
        return
    timers.note_customer_message(session, ticket_id, now)
    triage.apply(session, ticket_id, parsed, is_reply=True, now=now)
    current = tickets.ticket_status(session, ticket_id)
    following = status_after_customer_reply(current)
    if current is TicketStatus.RESOLVED and is_confirmation(extract_reply(parsed.text_body, parsed.html_body)):
        # "Thanks, that fixed it": the customer, not the agent, closes (DOMAIN.md).
        following = TicketStatus.CLOSED
    if not triage.actions.change_status(session, ticket_id, following, actor=actor, now=now, current=current):
        tickets.touch(session, ticket_id, now)
        triage.actions.tracker.refresh(session, ticket_id)
    triage.actions.notifier.notify_agents(
        session, ticket_id, "customer_reply", now, sender_problem=parsed.sender.problem
    )


def _record_duplicate(
    session: Session, number: int, queues: tuple[str, ...], parsed: ParsedMessage, now: datetime
) -> FilingOutcome:
    """A second copy (redelivery, or another support address's copy) adds at most a queue note."""
    ticket_id = tickets.ticket_id_by_number(session, number)
    assert ticket_id is not None
    ticket_queue = tickets.ticket_queue(session, ticket_id)
    noted = tickets.noted_queues(session, ticket_id)
    for queue in queues:
        if queue != ticket_queue and queue not in noted:
            tickets.add_event(session, ticket_id, "also_addressed_to", SYSTEM, now, queue=queue)
    return FilingOutcome(number, "duplicate", f"Message-ID {parsed.message_id} is already stored in ticket #{number}")
