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
import sys
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import IO

import structlog

from mailgate import lifecycle, systemd_notify
from mailgate.agent_mail import AgentDesk
from mailgate.child_process import ChildProcess
from mailgate.clock import Clock, SystemClock
from mailgate.config import Config, load_config
from mailgate.errors import ConfigError, MailgateError
from mailgate.filing import FilingPolicy
from mailgate.http_status import StatusSource, start_http_server
from mailgate.ingest.acceptance_process import QUEUED, AcceptanceSettings
from mailgate.ingest.group_commit import GroupCommitter
from mailgate.ingest.imap import start_pollers
from mailgate.ingest.smtp import ConnectionLimiter, SmtpIngestHandler, bind_listener, start_smtp_server
from mailgate.metrics import Metrics, install_log_processor, remove_log_processor
from mailgate.notify.outbox_process import FAILED, SENT, WAKE, OutboxProcessSettings
from mailgate.notify.outbox_worker import OutboxSettings, OutboxWorker
from mailgate.notify.queueing import Notifier, NotifySettings
from mailgate.notify.relay import RelaySettings, SmtpRelay
from mailgate.notify.render import TemplateRenderer
from mailgate.notify.templates_index import canned_texts
from mailgate.scheduler import SchedulerSettings, TimerScheduler
from mailgate.signing_key import load_or_create_secret
from mailgate.sla_tracking import SlaTracker
from mailgate.store import inbound, outbox, schema
from mailgate.store.blobs import BlobStore
from mailgate.store.db import make_engine, stale_claim_cutoff
from mailgate.store.transaction import Store
from mailgate.ticket_actions import TicketActions
from mailgate.triage import Triage
from mailgate.worker import InboundWorker, WorkerSettings

log = structlog.get_logger("mailgate.app")

# How long a reload waits for each helper process to confirm the new settings.
CHILD_RELOAD_SECONDS = 10.0


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


def build_store(config: Config) -> Store:
    timeout = config.storage.busy_timeout_seconds
    return Store(make_engine(config.storage.database_url, timeout), timeout)


@dataclass
class App:
    config: Config
    clock: Clock = field(default_factory=SystemClock)
    # The file `mailgate run` was started with; SIGHUP re-reads it. None: the embedded default.
    config_path: Path | None = None
    metrics: Metrics = field(default_factory=Metrics)
    store: Store = field(init=False)
    worker: InboundWorker = field(init=False)
    actions: TicketActions = field(init=False)
    scheduler: TimerScheduler = field(init=False)
    outbox_worker: OutboxWorker = field(init=False)
    smtp_address: tuple[str, int] | None = field(init=False, default=None)
    smtp_handler: SmtpIngestHandler | None = field(init=False, default=None)
    # [smtp] separate_process: the SMTP sessions run in a child process this supervises.
    acceptance: ChildProcess | None = field(init=False, default=None)
    # [outgoing] separate_process: outgoing mail is sent by a child process this supervises.
    outbox_process: ChildProcess | None = field(init=False, default=None)
    _listener: socket.socket | None = field(init=False, default=None)
    _stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _server: asyncio.Server | None = field(init=False, default=None)
    _limiter: ConnectionLimiter = field(init=False)
    _tasks: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    _lock: IO[bytes] | None = field(init=False, default=None)
    http_address: tuple[str, int] | None = field(init=False, default=None)
    _http_server: asyncio.Server | None = field(init=False, default=None)
    _secret: bytes = field(init=False, default=b"", repr=False)
    # Set by SIGTERM/SIGINT; `_stop` (the workers' signal) follows once SMTP sessions have drained.
    _shutdown: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _stopped: bool = field(init=False, default=False)
    _reload_lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    _background: set[asyncio.Task[bool]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        config = self.config
        self.store = build_store(config)
        blobs = BlobStore(config.storage.blobs_dir)
        secret = self._secret = load_or_create_secret(config.security.secret_file)
        settings = WorkerSettings(
            policy=filing_policy(config, secret),
            limits=config.limits,
            max_attempts=config.worker.max_attempts,
            owner=instance_name(config),
            claim_timeout=timedelta(seconds=config.worker.claim_timeout_seconds),
        )
        self.outbox_worker = build_outbox_worker(config, self.store, blobs, self.clock, secret, self.metrics)
        self.actions = build_actions(config, secret)
        self.scheduler = TimerScheduler(self.store, self.clock, self.actions, SchedulerSettings(rules=config.rules))
        triage = Triage(rules=config.rules, agents=config.agents, actions=self.actions)
        agent_desk = AgentDesk(
            actions=self.actions, agents=config.agents, canned=canned_texts(config.notify.templates_dir),
            own_addresses=config.own_addresses,
        )
        self.worker = InboundWorker(
            self.store, blobs, self.clock, settings, triage, on_filed=self._after_filing, agent_desk=agent_desk,
            metrics=self.metrics,
        )
        self._limiter = ConnectionLimiter(config.smtp.max_connections, config.smtp.max_connections_per_ip)

    def _after_filing(self) -> None:
        """A message was filed: it may have queued mail and moved a ticket's timers."""
        if self.outbox_process is not None:
            self.outbox_process.send(WAKE)
        else:
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
        timeout = timedelta(seconds=config.worker.claim_timeout_seconds)
        cutoff = stale_claim_cutoff(self.store.engine, self.clock.now(), timeout)
        requeued = await self.store.call(inbound.requeue_stale, cutoff, owner)
        if requeued:
            log.warning("inbound_requeued_after_crash", count=requeued)
        resend = await self.store.call(outbox.requeue_stale, cutoff, owner)
        if resend:
            log.warning("outbox_requeued_after_crash", count=resend, note="sent again with the same Message-ID")
        install_log_processor(self.metrics.count_log_event)
        host, port = await self._start_smtp()
        await self._start_http()
        self._tasks.append(asyncio.create_task(self.worker.run(self._stop), name="inbound-worker"))
        await self._start_outbox()
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
            "mailgate_started",
            smtp=f"{host}:{port}",
            lmtp=config.smtp.lmtp,
            acceptance="own process" if self.acceptance is not None else "daemon's loop",
            outbox="own process" if self.outbox_process is not None else "daemon's loop",
            database=self.store.engine.dialect.name,
            http="{}:{}".format(*self.http_address) if self.http_address else None,
        )

    async def _start_smtp(self) -> tuple[str, int]:
        """Bind the listener, then serve it from the acceptance process (or this loop); its address."""
        config = self.config
        self._listener = listener = bind_listener(config.smtp.host, config.smtp.port)
        host, port = listener.getsockname()[:2]
        self.smtp_address = (host, port)
        if not config.smtp.separate_process:
            await self._serve_smtp_here(listener)
            return host, port
        fd = listener.fileno()
        self.acceptance = ChildProcess(
            "acceptance",
            "mailgate.ingest.acceptance_process",
            self._acceptance_settings().to_json(),
            self._on_acceptance_report,
            args=(str(fd),),
            pass_fds=(fd,),
        )
        await self.acceptance.start()
        return host, port

    async def _start_outbox(self) -> None:
        """Outgoing mail from the outbox process (or a task on this loop)."""
        if not self.config.outgoing.separate_process:
            self._tasks.append(asyncio.create_task(self.outbox_worker.run(self._stop), name="outbox-worker"))
            return
        settings = self._outbox_process_settings().to_json()
        self.outbox_process = ChildProcess("outbox", "mailgate.notify.outbox_process", settings, self._on_outbox_report)
        await self.outbox_process.start()

    def _acceptance_settings(self) -> AcceptanceSettings:
        config = self.config
        return AcceptanceSettings(
            database_url=config.storage.database_url,
            busy_timeout_seconds=config.storage.busy_timeout_seconds,
            mailboxes=config.mailboxes,
            lmtp=config.smtp.lmtp,
            hostname=config.smtp.hostname,
            max_message_bytes=config.smtp.max_message_bytes,
            idle_timeout_seconds=config.smtp.idle_timeout_seconds,
            max_connections=config.smtp.max_connections,
            max_connections_per_ip=config.smtp.max_connections_per_ip,
            drain_seconds=config.daemon.shutdown_timeout_seconds / 2,
            log_level=config.logging.level,
            log_format=config.logging.format,
        )

    async def _serve_smtp_here(self, listener: socket.socket) -> None:
        """[smtp] separate_process = false: the sessions share this process's loop and core."""
        config = self.config
        handler = SmtpIngestHandler(
            GroupCommitter(self.store, self.clock), config.mailboxes, lmtp=config.smtp.lmtp, on_queued=self._on_queued
        )
        self.smtp_handler = handler
        self._server = await start_smtp_server(
            handler,
            self._limiter,
            listener,
            hostname=config.smtp.hostname,
            max_message_bytes=config.smtp.max_message_bytes,
            idle_timeout=config.smtp.idle_timeout_seconds,
        )

    def _outbox_process_settings(self) -> OutboxProcessSettings:
        config = self.config
        templates = config.notify.templates_dir
        return OutboxProcessSettings(
            database_url=config.storage.database_url,
            busy_timeout_seconds=config.storage.busy_timeout_seconds,
            blobs_dir=str(self.outbox_worker.blobs.root),
            templates_dir=str(templates) if templates is not None else None,
            relay=relay_settings(config),
            outbox=outbox_settings(config, self._secret),
            log_level=config.logging.level,
            log_format=config.logging.format,
        )

    def _on_outbox_report(self, kind: bytes, rest: bytes) -> None:
        if kind == SENT:
            self.metrics.outbox_sent.inc()
        elif kind == FAILED:
            self.metrics.outbox_failures.inc(rest.decode("ascii", "replace"))

    def _on_acceptance_report(self, kind: bytes, rest: bytes) -> None:
        if kind == QUEUED:
            self._on_queued(rest.decode("ascii", "replace"))

    def _on_queued(self, source: str) -> None:
        """A message was committed to the inbound queue and is about to get its 250."""
        self.metrics.received.inc(source)
        self.worker.notify()

    async def _start_http(self) -> None:
        """The /healthz and /metrics listener, when [http] listen is configured."""
        if self.config.http.listen is None:
            return
        source = StatusSource(
            self.store,
            self.metrics,
            listener_up=self.listener_up,
            imap_accounts=tuple(account.key for account in self.config.imap),
        )
        host, port = self.config.http.listen
        self._http_server = await start_http_server(source, host, port)
        bound_host, bound_port = self._http_server.sockets[0].getsockname()[:2]
        self.http_address = (bound_host, bound_port)

    def listener_up(self) -> bool:
        """The SMTP/LMTP listener is bound, served and not shutting down."""
        if self.acceptance is not None:
            return self.acceptance.serving and not self._shutdown.is_set()
        return self._server is not None and self._server.is_serving() and not self._limiter.closing

    def request_stop(self) -> None:
        """Begin shutdown (SIGTERM, SIGINT): `run` then stops in order."""
        self._shutdown.set()

    async def run(self) -> None:
        """Start, tell systemd READY=1, serve until SIGTERM or SIGINT (SIGHUP reloads), then stop within the bound."""
        loop = asyncio.get_running_loop()
        # Before start: the port accepts connections from its bind on, and a SIGTERM that comes
        # while the acceptance process starts must stop the daemon in order, not kill it.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        try:
            await self.start()
        except BaseException:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            raise
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        # Only now: the listener is bound and the schema upgrade has proved the database answers.
        systemd_notify.notify("READY=1", f"STATUS={self._status_line()}")
        interval = systemd_notify.watchdog_interval()
        pinger = asyncio.create_task(lifecycle.watchdog(interval), name="watchdog") if interval else None
        try:
            await self._shutdown.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            clean = await self.stop()
            if pinger is not None:
                pinger.cancel()
        if not clean:
            # A thread still blocked in I/O would make the interpreter wait for it past the bound.
            _exit_now(1)

    def _status_line(self) -> str:
        host, port = self.smtp_address or ("?", 0)
        return f"accepting mail on {host}:{port}"

    async def stop(self, timeout: float | None = None) -> bool:
        """Refuse new connections (421), let SMTP sessions finish their mail and each worker its current
        transaction, then release everything. True when the workers ended within `timeout` seconds
        (default: [daemon] shutdown_timeout_seconds); sessions still open at half of it are cut."""
        if self._stopped:
            return True
        self._stopped = True
        budget = self.config.daemon.shutdown_timeout_seconds if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        systemd_notify.notify("STOPPING=1", "STATUS=finishing mail in flight")
        self._limiter.closing = True
        self._shutdown.set()
        # Sessions first, with the workers still running: a client is waiting on each of them.
        if self.acceptance is not None:
            # It drains its sessions within budget/2 itself; a little more for its exit.
            await self.acceptance.stop(budget / 2 + 2.0)
        elif self._server is not None:
            cut = await lifecycle.drain_sessions(self._limiter, budget / 2)
            if cut:
                log.warning("smtp_sessions_cut", count=cut, note="no 250 was given for their current mail")
        self._stop.set()
        outbox_clean = True
        if self.outbox_process is not None:
            # It finishes the batch it is sending, within what is left of the bound.
            outbox_clean = await self.outbox_process.stop(deadline - loop.time())
        for server in (self._server, self._http_server):
            if server is not None:
                server.close()
        if self._listener is not None:
            self._listener.close()
        clean = await self._finish_tasks(deadline - loop.time()) and outbox_clean
        await asyncio.to_thread(self.store.dispose)
        remove_log_processor(self.metrics.count_log_event)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        log.info("mailgate_stopped", clean=clean)
        return clean

    async def _finish_tasks(self, timeout: float) -> bool:
        """Wait for the worker tasks; cancel what is left at the deadline. True when none was left."""
        if not self._tasks:
            return True
        done, pending = await asyncio.wait(self._tasks, timeout=max(timeout, 0.1))
        for task in pending:
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("task_failed", task=task.get_name(), exc_info=task.exception())
        self._tasks.clear()
        if pending:
            log.error("shutdown_timeout", unfinished=sorted(task.get_name() for task in pending))
        return not pending

    def _on_sighup(self) -> None:
        task = asyncio.create_task(self.reload_from_file(), name="reload")
        # The loop keeps only weak references to tasks.
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload_from_file(self) -> bool:
        """SIGHUP: re-read and validate the file the daemon started with; on any error keep what is in use."""
        async with self._reload_lock:
            if self.config_path is None:
                log.warning("reload_skipped", reason="started without a configuration file; nothing to re-read")
                return False
            systemd_notify.notify(*systemd_notify.reloading_message())
            try:
                new = await asyncio.to_thread(load_config, self.config_path)
                self.reload(new)
                # READY=1 means the new configuration is in force, in the helper processes too.
                for child in (self.acceptance, self.outbox_process):
                    if child is not None:
                        await child.applied(CHILD_RELOAD_SECONDS)
            except ConfigError as error:
                log.error("reload_failed", error=str(error), config=str(self.config_path), kept="the previous one")
                return False
            except Exception as error:  # e.g. an unreadable template directory: nothing was swapped yet.
                log.exception("reload_failed", error_type=type(error).__name__, kept="previous configuration")
                return False
            finally:
                systemd_notify.notify("READY=1", f"STATUS={self._status_line()}")
            return True

    def reload(self, new: Config) -> list[str]:
        """Apply a validated configuration without rebinding anything: mailboxes, agents, rules, templates,
        limits, notifier and relay settings. Every part is built before any is swapped in, so a failure
        leaves the running set intact. Returns the restart-only sections that changed (they wait for a restart).
        """
        pending = lifecycle.needs_restart(self.config, new)
        config = lifecycle.effective_config(self.config, new)
        secret = self._secret
        worker_settings = replace(
            self.worker.settings,
            policy=filing_policy(config, secret),
            limits=config.limits,
            max_attempts=config.worker.max_attempts,
            claim_timeout=timedelta(seconds=config.worker.claim_timeout_seconds),
        )
        notifier, tracker = build_notifier(config, secret), SlaTracker(config.rules)
        triage = Triage(rules=config.rules, agents=config.agents, actions=self.actions)
        fresh = build_outbox_worker(config, self.store, self.outbox_worker.blobs, self.clock, secret)
        desk = self.worker.agent_desk
        if desk is not None:
            canned = canned_texts(config.notify.templates_dir)
            desk = replace(desk, agents=config.agents, canned=canned, own_addresses=config.own_addresses)
        # Plain attribute swaps: a message in flight finishes with the parts it already holds.
        self.actions.notifier, self.actions.tracker = notifier, tracker
        self.worker.settings, self.worker.triage, self.worker.agent_desk = worker_settings, triage, desk
        self.scheduler.settings = replace(self.scheduler.settings, rules=config.rules)
        self.outbox_worker.relay, self.outbox_worker.renderer = fresh.relay, fresh.renderer
        self.outbox_worker.settings = fresh.settings
        if self.smtp_handler is not None:
            self.smtp_handler.mailboxes = config.mailboxes
        self.config = config
        if self.outbox_process is not None:
            self.outbox_process.update_settings(self._outbox_process_settings().to_json())
        if self.acceptance is not None:
            # Only the mailboxes take effect in the running child; [smtp] waits for a restart.
            self.acceptance.update_settings(self._acceptance_settings().to_json())
        log.info(
            "config_reloaded",
            mailboxes=[m.address for m in config.mailboxes],
            agents=len(config.agents),
            rules=len(config.rules.rules),
            restart_needed=pending,
        )
        return pending


def _lock_data_dir(data_dir: Path) -> IO[bytes]:
    """Hold an exclusive lock on the data directory for the life of the process."""
    handle = (data_dir / "mailgate.lock").open("a+b")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        holder = _lock_holder(data_dir / "mailgate.lock")
        raise AlreadyRunning(
            f"another mailgate process{holder} is already running with data_dir {data_dir}; stop it first"
        ) from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n".encode())
    handle.flush()
    return handle


def _lock_holder(lock_file: Path) -> str:
    """" (pid N)" from the lock file the running instance wrote, or "" when it cannot be read."""
    try:
        pid = lock_file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def _exit_now(code: int) -> None:
    """Leave without joining threads still blocked in I/O: what they held is requeued at the next start."""
    sys.stderr.flush()
    os._exit(code)
