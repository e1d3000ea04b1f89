"""The daemon's side of the acceptance process: start it, hear from it, restart it, stop it (tier 4).

The daemon binds the listening socket itself (a port in use fails the start, and the port stays
bound while a crashed acceptance process is replaced: clients wait in the backlog, none is
refused), then runs `python -m mailgate.ingest.acceptance_process FD` with the socket inherited.
See that module for the pipe protocol.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import replace

import structlog

from mailgate.domain.mailbox import Mailbox
from mailgate.ingest.acceptance_process import QUEUED, READY, AcceptanceSettings, mailboxes_to_json

log = structlog.get_logger("mailgate.acceptance")

# Pauses before restarting a crashed acceptance process; a run of HEALTHY_SECONDS starts over.
RESTART_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
HEALTHY_SECONDS = 60.0


class AcceptanceSupervisor:
    def __init__(
        self, settings: AcceptanceSettings, listener: socket.socket, on_queued: Callable[[str], None]
    ) -> None:
        self.settings = settings
        self.listener = listener
        self.on_queued = on_queued
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0  # since the last healthy run
        self._ready = asyncio.Event()
        self._stopping = False
        self._watcher: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        return self._ready.is_set() and self.process is not None and self.process.returncode is None

    async def start(self, timeout: float = 60.0) -> None:
        """Start the process; return once it serves the socket (RuntimeError if it does not)."""
        self._watcher = asyncio.create_task(self._supervise(), name="acceptance-supervisor")
        ready = asyncio.create_task(self._ready.wait())
        done, _ = await asyncio.wait({ready, self._watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            await self.stop(5.0)
            raise RuntimeError("the acceptance process did not start; its log lines above say why")

    def update_mailboxes(self, mailboxes: tuple[Mailbox, ...]) -> None:
        """Send a reloaded mailbox list; a process started later gets it with its settings."""
        self.settings = replace(self.settings, mailboxes=mailboxes)
        process = self.process
        if process is not None and process.stdin is not None and process.returncode is None:
            process.stdin.write(mailboxes_to_json(mailboxes))

    async def stop(self, timeout: float) -> bool:
        """SIGTERM: it refuses new sessions and finishes open ones. True when it ended in time."""
        self._stopping = True
        process = self.process
        clean = True
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=max(timeout, 0.1))
            except TimeoutError:
                log.error("acceptance_process_killed", pid=process.pid, note="it did not stop in time")
                process.kill()
                await process.wait()
                clean = False
        if self._watcher is not None:
            await asyncio.gather(self._watcher, return_exceptions=True)
        return clean

    async def _supervise(self) -> None:
        """Run the process, and again after each crash (with a growing pause), until stop()."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            started = loop.time()
            await self._run_once()
            if self._stopping:
                return
            if loop.time() - started > HEALTHY_SECONDS:
                self.restarts = 0
            delay = RESTART_DELAYS[min(self.restarts, len(RESTART_DELAYS) - 1)]
            self.restarts += 1
            log.error("acceptance_process_exited", returncode=self._returncode(), restart_in=delay)
            await asyncio.sleep(delay)

    async def _run_once(self) -> None:
        fd = self.listener.fileno()
        self._ready.clear()
        self.process = process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mailgate.ingest.acceptance_process",
            str(fd),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            pass_fds=(fd,),
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(self.settings.to_json())
        while line := await process.stdout.readline():
            kind, _, argument = line.strip().partition(b" ")
            if kind == QUEUED:
                self.on_queued(argument.decode("ascii", "replace"))
            elif kind == READY:
                self._ready.set()
        await process.wait()
        self._ready.clear()

    def _returncode(self) -> int | None:
        return self.process.returncode if self.process is not None else None


