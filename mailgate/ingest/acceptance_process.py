"""The acceptance process: SMTP/LMTP sessions and their group commits, on a core of their own.

`mailgate run` starts this as a child (`python -m mailgate.ingest.acceptance_process FD`, see
child_process.py for the pipes) so that taking mail in and filing it into tickets run in two
processes, on two cores. The child inherits the listening socket (file descriptor FD, bound by
the daemon). On stdin: AcceptanceSettings as JSON, first and again on a reload (only the
mailboxes change without a restart); end of file means the parent is gone: stop listening,
finish the sessions in flight, exit. On stdout: `ready`, then `queued SOURCE` after every commit
that made a message durable (the parent wakes its worker and counts the message).

SIGTERM: refuse new connections (421), let open sessions finish within the drain time, exit 0.
SIGINT and SIGHUP are the parent's to handle (a terminal's Ctrl-C reaches both processes).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from dataclasses import asdict, dataclass
from typing import Any

import structlog

from mailgate.child_process import APPLIED, READY, Reports, read_settings, run_child
from mailgate.clock import SystemClock
from mailgate.domain.mailbox import Mailbox
from mailgate.ingest.group_commit import GroupCommitter
from mailgate.ingest.smtp import ConnectionLimiter, SmtpIngestHandler, start_smtp_server
from mailgate.lifecycle import drain_sessions
from mailgate.logs import configure_logging
from mailgate.store.db import make_engine
from mailgate.store.transaction import Store

log = structlog.get_logger("mailgate.ingest.acceptance_process")

QUEUED = b"queued"


@dataclass(frozen=True)
class AcceptanceSettings:
    """What the acceptance process needs, sent as JSON: it reads no configuration file itself."""

    database_url: str
    busy_timeout_seconds: float
    mailboxes: tuple[Mailbox, ...]
    lmtp: bool
    hostname: str
    max_message_bytes: int
    idle_timeout_seconds: float
    max_connections: int
    max_connections_per_ip: int
    drain_seconds: float
    log_level: str = "info"
    log_format: str = "auto"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode() + b"\n"

    @classmethod
    def from_json(cls, line: bytes) -> AcceptanceSettings:
        data = json.loads(line)
        data["mailboxes"] = mailboxes_from_json(data["mailboxes"])
        return cls(**data)


def mailboxes_from_json(items: list[dict[str, Any]]) -> tuple[Mailbox, ...]:
    return tuple(Mailbox(**item) for item in items)


async def serve(listener: socket.socket, reports: Reports) -> int:
    """Read the settings, serve until SIGTERM or the parent's end of file; returns the exit status."""
    loop = asyncio.get_running_loop()
    parent, first = await read_settings()
    if not first:
        return 0
    settings = AcceptanceSettings.from_json(first)
    configure_logging(settings.log_level, settings.log_format)
    timeout = settings.busy_timeout_seconds
    store = Store(make_engine(settings.database_url, timeout), timeout, urgent_writes=True)
    committer = GroupCommitter(store, SystemClock())
    limiter = ConnectionLimiter(settings.max_connections, settings.max_connections_per_ip)
    handler = SmtpIngestHandler(
        committer,
        settings.mailboxes,
        lmtp=settings.lmtp,
        on_queued=lambda source: reports.send(QUEUED, source.encode()),
    )
    server = await start_smtp_server(
        handler,
        limiter,
        listener,
        hostname=settings.hostname,
        max_message_bytes=settings.max_message_bytes,
        idle_timeout=settings.idle_timeout_seconds,
    )
    stop, orphaned = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    listening = asyncio.create_task(_read_parent(parent, handler, reports, stop, orphaned), name="parent-pipe")
    reports.send(READY)
    log.info("acceptance_process_ready", lmtp=settings.lmtp, pid=os.getpid())
    await stop.wait()
    limiter.closing = True
    if orphaned.is_set():
        # Nobody files what comes in until a new daemon starts: let the port go at once.
        server.close()
    cut = await drain_sessions(limiter, settings.drain_seconds)
    if cut:
        log.warning("smtp_sessions_cut", count=cut, note="no 250 was given for their current mail")
    server.close()
    await committer.idle()
    listening.cancel()
    await asyncio.to_thread(store.dispose)
    log.info("acceptance_process_stopped", orphaned=orphaned.is_set())
    return 0


async def _read_parent(
    parent: asyncio.StreamReader,
    handler: SmtpIngestHandler,
    reports: Reports,
    stop: asyncio.Event,
    orphaned: asyncio.Event,
) -> None:
    """Mailbox updates from the parent; end of file (the parent died) stops this process."""
    while line := await parent.readline():
        try:
            handler.mailboxes = mailboxes_from_json(json.loads(line)["mailboxes"])
        except (ValueError, KeyError, TypeError) as error:
            log.error("acceptance_update_unreadable", error=str(error))
            continue
        log.info("acceptance_mailboxes_updated", mailboxes=[m.address for m in handler.mailboxes])
        reports.send(APPLIED)
    orphaned.set()
    stop.set()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m mailgate.ingest.acceptance_process LISTENING_FD  (started by `mailgate run`)",
              file=sys.stderr)
        return 64
    listener = socket.socket(fileno=int(argv[0]))
    listener.setblocking(False)
    return run_child(lambda: serve(listener, Reports(sys.stdout.buffer)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
