"""The builders: each part of mailgate made from the configuration (tier 4).

The daemon's composition root (app.py) and its helper processes (the filing and outbox
processes) build their parts with these functions, so a part is the same wherever it runs.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from mailgate.agent_mail import AgentDesk
from mailgate.clock import Clock
from mailgate.config import Config
from mailgate.filing import FilingPolicy
from mailgate.metrics import Metrics
from mailgate.notify.outbox_worker import OutboxSettings, OutboxWorker
from mailgate.notify.queueing import Notifier, NotifySettings
from mailgate.notify.relay import RelaySettings, SmtpRelay
from mailgate.notify.render import TemplateRenderer
from mailgate.notify.templates_index import canned_texts
from mailgate.sla_tracking import SlaTracker
from mailgate.store.blobs import BlobStore
from mailgate.store.db import make_engine
from mailgate.store.transaction import Store
from mailgate.ticket_actions import TicketActions
from mailgate.triage import Triage
from mailgate.worker import InboundWorker, WorkerSettings


def instance_name(config: Config) -> str:
    """Who claims work: one process per data directory and host (the data_dir lock enforces it)."""
    return f"{socket.gethostname()}:{config.storage.data_dir.resolve()}"[:300]


def filing_policy(config: Config, secret: bytes) -> FilingPolicy:
    return FilingPolicy(
        subject_tag=config.helpdesk.subject_tag,
        domain=config.helpdesk.domain,
        mailboxes=config.mailboxes,
        own_addresses=config.own_addresses,
        agents=config.agent_addresses,
        secret=secret,
        bounce_block=timedelta(days=config.outgoing.bounce_block_days),
        authserv_id=config.security.trusted_authserv_id,
    )


def build_notifier(config: Config, secret: bytes) -> Notifier:
    return Notifier(
        NotifySettings(
            secret=secret,
            domain=config.helpdesk.domain,
            desk_name=config.helpdesk.name,
            tag=config.helpdesk.subject_tag,
            mailboxes=config.mailboxes,
            agents=config.agents,
            default_language=config.notify.default_language,
            bounce_block=timedelta(days=config.outgoing.bounce_block_days),
        )
    )


def build_actions(config: Config, secret: bytes) -> TicketActions:
    return TicketActions(build_notifier(config, secret), SlaTracker(config.rules))


def relay_settings(config: Config) -> RelaySettings:
    outgoing = config.outgoing
    return RelaySettings(
        host=outgoing.relay_host,
        port=outgoing.relay_port,
        starttls=outgoing.starttls,
        username=outgoing.username,
        password=outgoing.password,
        local_hostname=config.smtp.hostname,
    )


def outbox_settings(config: Config, secret: bytes) -> OutboxSettings:
    outgoing = config.outgoing
    return OutboxSettings(
        secret=secret,
        bounce_mailbox=outgoing.from_address,
        loop_token=config.helpdesk.domain,
        max_age=timedelta(hours=outgoing.max_age_hours),
        max_automatic_per_minute=outgoing.max_automatic_per_minute,
        owner=instance_name(config),
        claim_timeout=timedelta(seconds=config.worker.claim_timeout_seconds),
    )


def build_outbox_worker(
    config: Config, store: Store, blobs: BlobStore, clock: Clock, secret: bytes, metrics: Metrics | None = None
) -> OutboxWorker:
    relay = SmtpRelay(relay_settings(config))
    renderer = TemplateRenderer(config.notify.templates_dir)
    return OutboxWorker(store, relay, renderer, blobs, clock, outbox_settings(config, secret), metrics=metrics)


@dataclass(frozen=True)
class FilingParts:
    """What an inbound worker takes from the configuration, built whole before any is swapped in."""

    settings: WorkerSettings
    triage: Triage
    agent_desk: AgentDesk
    notifier: Notifier
    tracker: SlaTracker


def filing_parts(config: Config, secret: bytes, actions: TicketActions, owner: str) -> FilingParts:
    """Build (not yet use) the worker's parts for `config`; `actions` gets the notifier and tracker
    only in `use_filing_parts`, so a failure here changes nothing."""
    settings = WorkerSettings(
        policy=filing_policy(config, secret),
        limits=config.limits,
        max_attempts=config.worker.max_attempts,
        owner=owner,
        claim_timeout=timedelta(seconds=config.worker.claim_timeout_seconds),
    )
    agent_desk = AgentDesk(
        actions=actions,
        agents=config.agents,
        canned=canned_texts(config.notify.templates_dir),
        own_addresses=config.own_addresses,
    )
    return FilingParts(
        settings=settings,
        triage=Triage(rules=config.rules, agents=config.agents, actions=actions),
        agent_desk=agent_desk,
        notifier=build_notifier(config, secret),
        tracker=SlaTracker(config.rules),
    )


def use_filing_parts(worker: InboundWorker, actions: TicketActions, parts: FilingParts) -> None:
    """Plain attribute swaps: a message in flight finishes with the parts it already holds."""
    actions.notifier, actions.tracker = parts.notifier, parts.tracker
    worker.settings, worker.triage, worker.agent_desk = parts.settings, parts.triage, parts.agent_desk


def build_inbound_worker(
    config: Config,
    store: Store,
    clock: Clock,
    secret: bytes,
    *,
    owner: str,
    on_filed: Callable[[], None] | None = None,
    metrics: Metrics | None = None,
) -> tuple[InboundWorker, TicketActions]:
    """The inbound worker and the ticket actions it files with (the daemon's scheduler shares them)."""
    actions = build_actions(config, secret)
    parts = filing_parts(config, secret, actions, owner)
    worker = InboundWorker(
        store,
        BlobStore(config.storage.blobs_dir),
        clock,
        parts.settings,
        parts.triage,
        on_filed=on_filed,
        agent_desk=parts.agent_desk,
        metrics=metrics,
    )
    return worker, actions


def filing_process_owner(instance: str, index: int) -> str:
    """Who claims in filing process `index` (1, 2, ...): its own name, so that a restarted filing
    process takes back only its own claims, never those of the daemon or a sibling at work."""
    return f"{instance[:290]}/filing-{index}"


def build_store(config: Config) -> Store:
    timeout = config.storage.busy_timeout_seconds
    return Store(make_engine(config.storage.database_url, timeout), timeout)
