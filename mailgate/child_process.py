"""A helper process of the daemon: started, heard, restarted after a crash, stopped (tier 4).

The daemon runs parts that need a core of their own as `python -m MODULE ARGS...` children (the
SMTP acceptance process, the outbox process). The protocol is the same for all:

- stdin, from the daemon: the settings as one JSON line; later lines are new settings (SIGHUP
  reload) or one-word commands such as `wake`. End of file: the daemon is gone; stop.
- stdout, to the daemon: `ready` once serving, `applied` after new settings, and one line per
  event (`queued smtp`, `sent`).
- stderr: the log, as the daemon's.

SIGTERM asks the child to finish what it is doing and exit 0. A child that exits otherwise is
started again after a pause that grows with repeated failures.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import IO, Any, Protocol

import structlog

from mailgate.metrics import Counter, Histogram

log = structlog.get_logger("mailgate.child_process")

READY = b"ready"
# A child's answer to new settings: they are in force.
APPLIED = b"applied"
# From the daemon: work was queued for the child's worker.
WAKE = b"wake"

# Pauses before restarting a crashed child; a run of HEALTHY_SECONDS starts the sequence over.
RESTART_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
HEALTHY_SECONDS = 60.0


class ChildProcess:
    def __init__(
        self,
        name: str,
        module: str,
        settings: bytes,
        on_report: Callable[[bytes, bytes], None],
        *,
        args: Sequence[str] = (),
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.name = name
        self.module = module
        self.settings = settings
        # Called on the loop with each reported line as (kind, rest), e.g. (b"queued", b"smtp").
        self.on_report = on_report
        self.args = tuple(args)
        self.pass_fds = tuple(pass_fds)
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0  # since the last healthy run
        self._ready = asyncio.Event()
        self._applied = asyncio.Event()
        self._stopping = False
        self._watcher: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        return self._ready.is_set() and self.process is not None and self.process.returncode is None

    async def start(self, timeout: float = 60.0) -> None:
        """Start the process; return once it reports ready (RuntimeError if it does not)."""
        self._watcher = asyncio.create_task(self._supervise(), name=f"{self.name}-supervisor")
        ready = asyncio.create_task(self._ready.wait())
        done, _ = await asyncio.wait({ready, self._watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            await self.stop(5.0)
            raise RuntimeError(f"the {self.name} process did not start; its log lines above say why")

    def send(self, line: bytes) -> None:
        """Write one line to the running child (dropped when none runs: a new one starts fresh)."""
        process = self.process
        if process is not None and process.stdin is not None and process.returncode is None:
            process.stdin.write(line.rstrip(b"\n") + b"\n")

    def update_settings(self, settings: bytes) -> None:
        """New settings (reload): sent now, and given to any child started later; `applied()`
        waits for the child to confirm them."""
        self.settings = settings
        self._applied.clear()
        self.send(settings)

    async def applied(self, timeout: float) -> bool:
        """True once the running child has confirmed the last settings sent (or none runs)."""
        if not self.serving:
            return True
        try:
            await asyncio.wait_for(self._applied.wait(), timeout)
        except TimeoutError:
            log.warning("child_settings_unconfirmed", child=self.name, seconds=timeout)
            return False
        return True

    def expect_exit(self) -> None:
        """The daemon is stopping: from now on the child may end at any moment (systemd signals
        the whole control group at once), and is then neither restarted nor reported as a crash.
        It keeps working until it does (a filing process files while SMTP sessions drain)."""
        self._stopping = True

    async def stop(self, timeout: float) -> bool:
        """SIGTERM, then wait; SIGKILL at the deadline. True when it ended in time."""
        self._stopping = True
        process = self.process
        clean = True
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=max(timeout, 0.1))
            except TimeoutError:
                log.error("child_process_killed", child=self.name, pid=process.pid, note="it did not stop in time")
                process.kill()
                await process.wait()
                clean = False
        if self._watcher is not None:
            await asyncio.gather(self._watcher, return_exceptions=True)
        return clean

    async def _supervise(self) -> None:
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
            returncode = self.process.returncode if self.process is not None else None
            log.error("child_process_exited", child=self.name, returncode=returncode, restart_in=delay)
            await asyncio.sleep(delay)

    async def _run_once(self) -> None:
        self._ready.clear()
        self.process = process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            pass_fds=self.pass_fds,
            env={**os.environ, PARENT_PID_VARIABLE: str(os.getpid())},
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(self.settings.rstrip(b"\n") + b"\n")
        while line := await process.stdout.readline():
            kind, _, rest = line.strip().partition(b" ")
            if kind == READY:
                self._ready.set()
            elif kind == APPLIED:
                self._applied.set()
            else:
                self.on_report(kind, rest)
        await process.wait()
        self._ready.clear()


_PR_SET_PDEATHSIG = 1
# The daemon's pid, in the child's environment: to tell whether the daemon is still there.
PARENT_PID_VARIABLE = "MAILGATE_PARENT_PID"


def die_with_parent() -> None:
    """In a child: the kernel sends SIGKILL when the daemon dies (Linux), for work a new daemon
    would otherwise repeat while this child is still at it. A daemon already gone ends it now."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(os.environ.get(PARENT_PID_VARIABLE, os.getppid())):
        sys.exit(0)


async def read_settings() -> tuple[asyncio.StreamReader, bytes]:
    """The child's side of stdin: the reader for later lines, and the first line, the settings
    (empty when the daemon is already gone)."""
    loop = asyncio.get_running_loop()
    parent = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(parent), sys.stdin)
    return parent, await parent.readline()


class PipedWorker(Protocol):
    """A child's worker: woken by the daemon, run until a stop event."""

    def notify(self) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...


async def serve_worker(
    name: str,
    worker: PipedWorker,
    parent: asyncio.StreamReader,
    reports: Reports,
    apply_settings: Callable[[bytes], None],
    close: Callable[[], None],
) -> int:
    """The rest of a worker child's life once it is built: say ready, run the worker until
    SIGTERM or the daemon's end of file, follow `wake` and new settings from the daemon, then
    `close` (in a thread); the exit status."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    listening = asyncio.create_task(
        _follow_parent(name, parent, worker, reports, apply_settings, stop), name="parent-pipe"
    )
    reports.send(READY)
    log.info(f"{name}_process_ready")
    try:
        await worker.run(stop)
    finally:
        listening.cancel()
        await asyncio.to_thread(close)
    log.info(f"{name}_process_stopped")
    return 0


async def _follow_parent(
    name: str,
    parent: asyncio.StreamReader,
    worker: PipedWorker,
    reports: Reports,
    apply_settings: Callable[[bytes], None],
    stop: asyncio.Event,
) -> None:
    """`wake` and new settings from the daemon; end of file (it died) stops the child."""
    while line := await parent.readline():
        line = line.strip()
        if line == WAKE:
            worker.notify()
        elif line:
            try:
                apply_settings(line)
            except Exception as error:  # the daemon validated them; keep working with what is in use
                log.exception("child_settings_rejected", child=name, error_type=type(error).__name__)
                continue
            log.info("child_settings_applied", child=name)
            reports.send(APPLIED)
    stop.set()


def run_child(serve: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """A child's main: SIGINT and SIGHUP are the daemon's to handle (a terminal's Ctrl-C reaches
    the whole process group); SIGTERM is for `serve` to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return asyncio.run(serve())


class Reports:
    """The child's side of stdout: one short line per event, flushed at once."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.broken = False

    def send(self, *words: bytes) -> None:
        if self.broken:
            return
        try:
            self.stream.write(b" ".join(words) + b"\n")
            self.stream.flush()
        except OSError:
            # The daemon is gone; end of file on stdin stops this process.
            self.broken = True


class ReportedCounter(Counter):
    """A child's counter whose every increment is also told to the daemon, which serves /metrics."""

    def __init__(self, template: Counter, reports: Reports, kind: bytes) -> None:
        super().__init__(template.name, template.help, template.label_names)
        self.reports = reports
        self.report_kind = kind

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        super().inc(*label_values, amount=amount)
        self.reports.send(self.report_kind, *(value.encode() for value in label_values))


class ReportedHistogram(Histogram):
    """A child's histogram whose every observation is told to the daemon as `KIND VALUE`."""

    def __init__(self, template: Histogram, reports: Reports, kind: bytes) -> None:
        super().__init__(template.name, template.help, template.buckets)
        self.reports = reports
        self.report_kind = kind

    def observe(self, value: float) -> None:
        super().observe(value)
        self.reports.send(self.report_kind, repr(value).encode())
