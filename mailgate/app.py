"""The composition root: builds every part from the configuration, starts them, stops them in order (tier 4).

No other module constructs adapters. Tests build the same App with a test configuration on
port 0 and, where timers matter, a FakeClock.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO

import structlog

from mailgate.clock import Clock, SystemClock
from mailgate.config import Config
from mailgate.errors import MailgateError
from mailgate.filing import FilingPolicy
from mailgate.ingest.imap import start_pollers
from mailgate.ingest.smtp import ConnectionLimiter, SmtpIngestHandler, start_smtp_server
from mailgate.notify.outbox_worker import OutboxSettings, OutboxWorker
from mailgate.notify.queueing import Notifier, NotifySettings
from mailgate.notify.relay import RelaySettings, SmtpRelay
from mailgate.notify.render import TemplateRenderer
from mailgate.scheduler import SchedulerSettings, TimerScheduler
from mailgate.signing_key import load_or_create_secret
from mailgate.sla_tracking import SlaTracker
from mailgate.store import inbound, outbox, schema
from mailgate.store.blobs import BlobStore
from mailgate.store.db import make_engine
from mailgate.store.transaction import Store
from mailgate.ticket_actions import TicketActions
from mailgate.triage import Triage
from mailgate.worker import InboundWorker, WorkerSettings

log = structlog.get_logger("mailgate.app")


def instance_name(config: Config) -> str:
    """Who claims work: one process per data directory and host (the data_dir lock enforces it)."""
    return f"{socket.gethostname()}:{config.storage.data_dir.resolve()}"[:300]


class AlreadyRunning(MailgateError):
    """Another mailgate process holds this data directory."""


def filing_policy(config: Config, secret: bytes) -> FilingPolicy:
    return FilingPolicy(
        subject_tag=config.helpdesk.subject_tag,
        domain=config.helpdesk.domain,
        mailboxes=config.mailboxes,
        own_addresses=config.own_addresses,
        agents=config.agent_addresses,
        secret=secret,
        bounce_block=timedelta(days=config.outgoing.bounce_block_days),
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


def build_outbox_worker(config: Config, store: Store, blobs: BlobStore, clock: Clock, secret: bytes) -> OutboxWorker:
    outgoing = config.outgoing
    relay = SmtpRelay(
        RelaySettings(
            host=outgoing.relay_host,
            port=outgoing.relay_port,
            starttls=outgoing.starttls,
            username=outgoing.username,
            password=outgoing.password,
            local_hostname=config.smtp.hostname,
        )
    )
    settings = OutboxSettings(
        secret=secret,
        bounce_mailbox=outgoing.from_address,
        loop_token=config.helpdesk.domain,
        max_age=timedelta(hours=outgoing.max_age_hours),
        max_automatic_per_minute=outgoing.max_automatic_per_minute,
        owner=instance_name(config),
        claim_timeout=timedelta(seconds=config.worker.claim_timeout_seconds),
    )
    return OutboxWorker(store, relay, TemplateRenderer(config.notify.templates_dir), blobs, clock, settings)


def build_store(config: Config) -> Store:
    return Store(make_engine(config.storage.database_url, config.storage.busy_timeout_seconds))


@dataclass
class App:
    config: Config
    clock: Clock = field(default_factory=SystemClock)
    store: Store = field(init=False)
    worker: InboundWorker = field(init=False)
    actions: TicketActions = field(init=False)
    scheduler: TimerScheduler = field(init=False)
    outbox_worker: OutboxWorker = field(init=False)
    smtp_address: tuple[str, int] | None = field(init=False, default=None)
    smtp_handler: SmtpIngestHandler | None = field(init=False, default=None)
    _stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _server: asyncio.Server | None = field(init=False, default=None)
    _limiter: ConnectionLimiter = field(init=False)
    _tasks: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    _lock: IO[bytes] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        config = self.config
        self.store = build_store(config)
        blobs = BlobStore(config.storage.data_dir / "attachments")
        secret = load_or_create_secret(config.security.secret_file)
        settings = WorkerSettings(
            policy=filing_policy(config, secret),
            limits=config.limits,
            max_attempts=config.worker.max_attempts,
            owner=instance_name(config),
            claim_timeout=timedelta(seconds=config.worker.claim_timeout_seconds),
        )
        self.outbox_worker = build_outbox_worker(config, self.store, blobs, self.clock, secret)
        self.actions = build_actions(config, secret)
        self.scheduler = TimerScheduler(self.store, self.clock, self.actions, SchedulerSettings(rules=config.rules))
        triage = Triage(rules=config.rules, agents=config.agents, actions=self.actions)
        self.worker = InboundWorker(self.store, blobs, self.clock, settings, triage, on_filed=self._after_filing)
        self._limiter = ConnectionLimiter(config.smtp.max_connections, config.smtp.max_connections_per_ip)

    def _after_filing(self) -> None:
        """A message was filed: it may have queued mail and moved a ticket's timers."""
        self.outbox_worker.notify()
        self.scheduler.notify()

    async def start(self) -> None:
        """Prepare storage, bind the listener and start the worker; returns when mail is accepted."""
        config = self.config
        config.storage.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_data_dir(config.storage.data_dir)
        await asyncio.to_thread(schema.upgrade, self.store.engine)
        # Our own claims from before a crash are ours to redo now; another instance's only once
        # they are older than the claim timeout. SQLite has one instance, so every claim is ours.
        owner = instance_name(config)
        shared = self.store.engine.dialect.name == "postgresql"
        timeout = timedelta(seconds=config.worker.claim_timeout_seconds) if shared else timedelta(0)
        cutoff = self.clock.now() - timeout
        requeued = await self.store.call(inbound.requeue_stale, cutoff, owner)
        if requeued:
            log.warning("inbound_requeued_after_crash", count=requeued)
        resend = await self.store.call(outbox.requeue_stale, cutoff, owner)
        if resend:
            log.warning("outbox_requeued_after_crash", count=resend, note="sent again with the same Message-ID")
        handler = SmtpIngestHandler(
            self.store, self.clock, config.mailboxes, lmtp=config.smtp.lmtp, on_queued=self.worker.notify
        )
        self.smtp_handler = handler
        self._server = await start_smtp_server(
            handler,
            self._limiter,
            host=config.smtp.host,
            port=config.smtp.port,
            hostname=config.smtp.hostname,
            max_message_bytes=config.smtp.max_message_bytes,
            idle_timeout=config.smtp.idle_timeout_seconds,
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        self.smtp_address = (host, port)
        self._tasks.append(asyncio.create_task(self.worker.run(self._stop), name="inbound-worker"))
        self._tasks.append(asyncio.create_task(self.outbox_worker.run(self._stop), name="outbox-worker"))
        self._tasks.append(asyncio.create_task(self.scheduler.run(self._stop), name="timer-scheduler"))
        # IMAP import starts only once SMTP is up: a broken IMAP account must not delay mail intake.
        self._tasks += start_pollers(
            config.imap,
            self.store,
            self.clock,
            mailboxes=config.mailboxes,
            max_message_bytes=config.smtp.max_message_bytes,
            on_committed=self.worker.notify,
            stop=self._stop,
        )
        log.info(
            "mailgate_started", smtp=f"{host}:{port}", lmtp=config.smtp.lmtp, database=self.store.engine.dialect.name
        )

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Start, serve until SIGTERM or SIGINT, then stop in order."""
        await self.start()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        try:
            await self._stop.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            await self.stop()

    async def stop(self, timeout: float = 30.0) -> None:
        """Refuse new connections, let the worker finish its message, release everything."""
        self._limiter.closing = True
        self._stop.set()
        if self._server is not None:
            self._server.close()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("task_failed", task=task.get_name(), exc_info=task.exception())
        self._tasks.clear()
        await asyncio.to_thread(self.store.dispose)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        log.info("mailgate_stopped")


def _lock_data_dir(data_dir: Path) -> IO[bytes]:
    """Hold an exclusive lock on the data directory for the life of the process."""
    handle = (data_dir / "mailgate.lock").open("a+b")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AlreadyRunning(
            f"another mailgate process is already running with data_dir {data_dir}; stop it first"
        ) from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n".encode())
    handle.flush()
    return handle
