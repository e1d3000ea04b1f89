"""Pieces of the daemon's lifecycle used by app.py: session draining, watchdog pings, reload boundaries.

A reload swaps only what is read afresh for each message or each connection; anything bound at
start (sockets, the database engine, IMAP sessions, the lock on data_dir) needs a restart.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from mailgate import systemd_notify
from mailgate.config import Config
from mailgate.ingest.smtp import ConnectionLimiter

# Config sections a SIGHUP cannot apply: they were used to open sockets, files or connections.
RESTART_ONLY = ("storage", "smtp", "imap", "http", "daemon", "security", "logging")
_DRAIN_POLL_SECONDS = 0.05


def needs_restart(old: Config, new: Config) -> list[str]:
    """The restart-only sections that differ between the configuration in use and the new one."""
    changed = [name for name in RESTART_ONLY if getattr(old, name) != getattr(new, name)]
    # A poller with `queue` set took that queue's mailbox address as its envelope at start.
    if "imap" not in changed and old.mailboxes != new.mailboxes and any(a.queue for a in old.imap):
        changed.append("imap")
    # The number of filing processes is fixed at start; the rest of [worker] reloads.
    if old.worker.processes != new.worker.processes:
        changed.append("worker.processes")
    return changed


def effective_config(old: Config, new: Config) -> Config:
    """What is in force after a reload: the new file, except the restart-only sections, which stay."""
    kept = {name: getattr(old, name) for name in RESTART_ONLY}
    return replace(new, worker=replace(new.worker, processes=old.worker.processes), **kept)


async def drain_sessions(limiter: ConnectionLimiter, timeout: float) -> int:
    """Wait until every admitted SMTP session has ended, at most `timeout` seconds; returns those still open.

    New connections are already refused with 421 (limiter.closing), so the count only goes down.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(timeout, 0.0)
    while limiter.by_ip.total() > 0 and loop.time() < deadline:
        await asyncio.sleep(_DRAIN_POLL_SECONDS)
    return limiter.by_ip.total()


async def watchdog(interval: float) -> None:
    """Ping systemd's watchdog from the event loop until cancelled: a loop stuck for WatchdogSec gets restarted."""
    while True:
        systemd_notify.notify("WATCHDOG=1")
        await asyncio.sleep(interval)
