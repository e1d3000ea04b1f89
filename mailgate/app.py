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
from mailgate.child_process import WAKE, ChildProcess
from mailgate.clock import Clock, SystemClock
from mailgate.config import Config, load_config
from mailgate.errors import ConfigError, MailgateError
from mailgate.filing_process import FAILED as FILING_FAILED
from mailgate.filing_process import FILED, LATENCY, PROCESSED, RECEIVED, FilingProcessSettings
from mailgate.http_status import StatusSource, start_http_server
from mailgate.ingest.acceptance_process import QUEUED, AcceptanceSettings
from mailgate.ingest.group_commit import GroupCommitter
from mailgate.ingest.imap import start_pollers
from mailgate.ingest.smtp import ConnectionLimiter, SmtpIngestHandler, bind_listener, start_smtp_server
from mailgate.metrics import Metrics, install_log_processor, remove_log_processor
from mailgate.notify.outbox_process import FAILED, SENT, OutboxProcessSettings
from mailgate.notify.outbox_worker import OutboxWorker
from mailgate.parts import (
    build_inbound_worker,
    build_outbox_worker,
    build_store,
    filing_parts,
    filing_process_owner,
    instance_name,
    outbox_settings,
    relay_settings,
    use_filing_parts,
)
from mailgate.scheduler import SchedulerSettings, TimerScheduler
from mailgate.signing_key import load_or_create_secret
from mailgate.store import inbound, outbox, schema
from mailgate.store.db import stale_claim_cutoff
from mailgate.store.transaction import Store
from mailgate.ticket_actions import TicketActions
from mailgate.worker import InboundWorker

log = structlog.get_logger("mailgate.app")

# How long a reload waits for each helper process to confirm the new settings.
CHILD_RELOAD_SECONDS = 10.0


class AlreadyRunning(MailgateError):
    """Another mailgate process holds this data directory."""


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
    # [worker] processes = N: N - 1 filing processes beside this process's own worker.
    filing_processes: list[ChildProcess] = field(init=False, default_factory=list)
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
        secret = self._secret = load_or_create_secret(config.security.secret_file)
        self.worker, self.actions = build_inbound_worker(
            config,
            self.store,
            self.clock,
            secret,
            owner=instance_name(config),
            on_filed=self._after_filing,
            metrics=self.metrics,
        )
        self.outbox_worker = build_outbox_worker(
            config, self.store, self.worker.blobs, self.clock, secret, self.metrics
        )
        self.scheduler = TimerScheduler(self.store, self.clock, self.actions, SchedulerSettings(rules=config.rules))
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
        requeued = 0
        for claimer in [owner, *self._filing_owners()]:
            requeued += await self.store.call(inbound.requeue_stale, cutoff, claimer)
        if requeued:
            log.warning("inbound_requeued_after_crash", count=requeued)
        resend = await self.store.call(outbox.requeue_stale, cutoff, owner)
        if resend:
            log.warning("outbox_requeued_after_crash", count=resend, note="sent again with the same Message-ID")
        install_log_processor(self.metrics.count_log_event)
        host, port = await self._start_smtp()
        await self._start_http()
        self._tasks.append(asyncio.create_task(self.worker.run(self._stop), name="inbound-worker"))
        await self._start_filing_processes()
        await self._start_outbox()
        self._tasks.append(asyncio.create_task(self.scheduler.run(self._stop), name="timer-scheduler"))
        # IMAP import starts only once SMTP is up: a broken IMAP account must not delay mail intake.
        self._tasks += start_pollers(
            config.imap,
            self.store,
            self.clock,
            mailboxes=config.mailboxes,
            max_message_bytes=config.smtp.max_message_bytes,
            on_committed=self._wake_filing,
            stop=self._stop,
        )
        log.info(
            "mailgate_started",
            smtp=f"{host}:{port}",
            lmtp=config.smtp.lmtp,
            acceptance="own process" if self.acceptance is not None else "daemon's loop",
            outbox="own process" if self.outbox_process is not None else "daemon's loop",
            filing_processes=1 + len(self.filing_processes),
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

    def _filing_owners(self) -> list[str]:
        instance = instance_name(self.config)
        return [filing_process_owner(instance, index) for index in range(1, self.config.worker.processes)]

    def _filing_process_settings(self, owner: str) -> bytes:
        return FilingProcessSettings(config=self.config, owner=owner).to_json()

    async def _start_filing_processes(self) -> None:
        """[worker] processes > 1: filing processes beside this process's worker, started together."""
        for index, owner in enumerate(self._filing_owners(), start=1):
            settings = self._filing_process_settings(owner)
            child = ChildProcess(f"filing-{index}", "mailgate.filing_process", settings, self._on_filing_report)
            self.filing_processes.append(child)
        await asyncio.gather(*(child.start() for child in self.filing_processes))

    def _on_filing_report(self, kind: bytes, rest: bytes) -> None:
        if kind == FILED:
            self._after_filing()
            return
        if kind == LATENCY:
            try:
                self.metrics.latency.observe(float(rest))
            except ValueError:
                log.warning("filing_report_unreadable", line=(kind + b" " + rest).decode("ascii", "replace"))
            return
        metrics = self.metrics
        counters = {RECEIVED: metrics.received, PROCESSED: metrics.processed, FILING_FAILED: metrics.failed}
        if kind in counters:
            counters[kind].inc(rest.decode("ascii", "replace"))

    def _wake_filing(self) -> None:
        """Mail was queued: wake every worker; the first to claim it files it."""
        self.worker.notify()
        for child in self.filing_processes:
            child.send(WAKE)

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
        self._wake_filing()

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
        """Begin shutdown (SIGTERM, SIGINT): `run` then stops in order. The helper processes may
        end from now on (systemd signals the whole control group): no restart, no crash report."""
        self._shutdown.set()
        for child in (self.acceptance, *self.filing_processes, self.outbox_process):
            if child is not None:
                child.expect_exit()

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
        self.request_stop()
        # Sessions first, with the workers still running: a client is waiting on each of them.
        if self.acceptance is not None:
            # It drains its sessions within budget/2 itself; a little more for its exit.
            await self.acceptance.stop(budget / 2 + 2.0)
        elif self._server is not None:
            cut = await lifecycle.drain_sessions(self._limiter, budget / 2)
            if cut:
                log.warning("smtp_sessions_cut", count=cut, note="no 250 was given for their current mail")
        self._stop.set()
        # Each filing process finishes its message, the outbox process the batch it is sending,
        # within what is left of the bound.
        children = [*self.filing_processes, *([self.outbox_process] if self.outbox_process else [])]
        stopped = await asyncio.gather(*(child.stop(deadline - loop.time()) for child in children))
        outbox_clean = all(stopped)
        for server in (self._server, self._http_server):
            if server is not None:
                server.close()
        if self._listener is not None:
            self._listener.close()
        clean = await self._finish_tasks(deadline - loop.time()) and outbox_clean
        await asyncio.to_thread(self.worker.close)
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
                for child in (self.acceptance, self.outbox_process, *self.filing_processes):
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
        parts = filing_parts(config, secret, self.actions, self.worker.settings.owner)
        fresh = build_outbox_worker(config, self.store, self.outbox_worker.blobs, self.clock, secret)
        use_filing_parts(self.worker, self.actions, parts)
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
        for child, owner in zip(self.filing_processes, self._filing_owners(), strict=True):
            child.update_settings(self._filing_process_settings(owner))
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
