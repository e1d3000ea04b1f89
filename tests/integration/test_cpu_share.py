"""Filing and sending yield the CPU to SMTP acceptance: they run at a lower priority (cpu_share.py)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from mailgate.app import App
from mailgate.config import Config
from mailgate.cpu_share import BACKGROUND_NICENESS
from tests.integration.test_child_processes import _wait_for


def _expected(base: int) -> int:
    return min(base + BACKGROUND_NICENESS, 19)


def _nice_of(thread_or_process: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, thread_or_process)


async def test_the_filing_thread_runs_below_the_daemons_priority(idle_app: App) -> None:
    base = _nice_of(threading.get_native_id())
    filing = app_filing_thread_nice(idle_app)
    assert filing == _expected(base)
    assert _nice_of(threading.get_native_id()) == base, "the loop's thread keeps its priority"


def app_filing_thread_nice(app: App) -> int:
    return app.worker._filing_thread.submit(lambda: _nice_of(threading.get_native_id())).result(timeout=10)


async def test_the_outbox_and_filing_processes_run_below_the_daemons_priority(
    config_factory: Callable[..., Config], sink: Any
) -> None:
    app = App(
        config_factory(
            smtp={"separate_process": True},
            outgoing={"relay_port": sink.port, "separate_process": True},
            worker={"processes": 2},
        )
    )
    base = _nice_of(0)
    await app.start()
    try:
        await _wait_for(lambda: app.outbox_process is not None and app.outbox_process.serving)
        await _wait_for(lambda: all(child.serving for child in app.filing_processes))
        assert app.outbox_process is not None and app.outbox_process.process is not None
        assert _nice_of(app.outbox_process.process.pid) == _expected(base)
        assert app.acceptance is not None and app.acceptance.process is not None
        assert _nice_of(app.acceptance.process.pid) == base, "SMTP acceptance keeps the daemon's priority"
        (filing,) = app.filing_processes
        assert filing.process is not None
        pid = filing.process.pid
        await _wait_for(lambda: _expected(base) in {_nice_of(int(t)) for t in os.listdir(f"/proc/{pid}/task")})
        assert _nice_of(filing.process.pid) == base, "its main thread (the loop) keeps the priority"
    finally:
        await app.stop()
