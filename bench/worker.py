"""The inbound worker alone: messages/s from a full queue to filed tickets, without SMTP.

    python -m bench.worker [--mails 300] [--backend sqlite|postgresql] [--profile N]

The bench corpus is committed to the inbound queue first (not timed); then the worker claims,
parses and files every message (rules, acknowledgement and agent copy queued in the outbox),
one transaction per message, and the time for that is measured. `--profile N` runs it under
cProfile and prints the N most expensive functions (cumulative). The outgoing relay is a
closed port: nothing is sent, the outbox only fills.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.corpus import SUBJECT_TAG, SUPPORT_ADDRESS, build_corpus
from bench.instance import AGENT, database
from mailgate.app import App
from mailgate.config import build_config
from mailgate.store import inbound


def _config(workdir: Path, database_url: str | None) -> dict[str, Any]:
    storage: dict[str, Any] = {"data_dir": str(workdir / "data")}
    if database_url:
        storage["database_url"] = database_url
    return {
        "storage": storage,
        "smtp": {"listen": "127.0.0.1:0"},
        "helpdesk": {"name": SUBJECT_TAG, "domain": "example.com"},
        "mailboxes": [{"address": SUPPORT_ADDRESS, "queue": "support"}],
        "agents": [{"email": AGENT, "name": "Agnes Agent", "queues": ["support"]}],
        "outgoing": {"relay_host": "127.0.0.1", "relay_port": 9, "max_automatic_per_minute": 10**9},
    }


async def measure(mails: int, workdir: Path, database_url: str | None, profile: int) -> dict[str, Any]:
    app = App(build_config(_config(workdir, database_url), workdir))
    await app.start()
    try:
        app.request_stop()  # the bench drives the worker itself
        app._stop.set()
        await asyncio.sleep(0.05)
        corpus = build_corpus(2026, mails)
        for mail in corpus:
            envelope = inbound.Envelope("smtp", mail.sender, (SUPPORT_ADDRESS,), "127.0.0.1:1")
            await app.store.call(inbound.enqueue, mail.raw, envelope, app.clock.now())
        profiler = cProfile.Profile() if profile else None
        if profiler is not None:
            _profile_units_of_work(app, profiler)
        latencies: list[float] = []
        cpu_started = time.process_time()
        started = time.perf_counter()
        while True:
            one = time.perf_counter()
            if not await app.worker.process_one():
                break
            latencies.append(time.perf_counter() - one)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    finally:
        await app.stop()
    latencies.sort()
    result: dict[str, Any] = {
        "backend": app.store.engine.dialect.name,
        "mails": len(latencies),
        "seconds": round(elapsed, 3),
        "messages_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p95_ms": round(latencies[int(len(latencies) * 0.95)] * 1000, 2),
        # CPU of the whole process (all threads) per message: steadier than wall time on a busy machine.
        "cpu_ms_per_message": round(cpu / max(len(latencies), 1) * 1000, 2),
    }
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(profile)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(profile)
    return result


def _profile_units_of_work(app: App, profiler: cProfile.Profile) -> None:
    """Profile inside the worker thread, where the claim, the parsing and the filing run."""
    original_run = app.store.run

    def profiled_run(work: Any, *args: Any, **kwargs: Any) -> Any:
        if profiler_active[0]:
            return original_run(work, *args, **kwargs)
        profiler_active[0] = True
        profiler.enable()
        try:
            return original_run(work, *args, **kwargs)
        finally:
            profiler.disable()
            profiler_active[0] = False

    profiler_active = [False]
    app.store.run = profiled_run  # type: ignore[method-assign]
    original_handle = app.worker._handle

    def profiled_handle(item: Any, **options: Any) -> Any:
        profiler_active[0] = True
        profiler.enable()
        try:
            return original_handle(item, **options)
        finally:
            profiler.disable()
            profiler_active[0] = False

    app.worker._handle = profiled_handle  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=300)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, database(args.backend, Path(directory)) as url:
        result = asyncio.run(measure(args.mails, Path(directory), url, args.profile))
    print(f"worker ({result['backend']}): {result['mails']} messages in {result['seconds']} s = "
          f"{result['messages_per_second']} msg/s, p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, "
          f"CPU {result['cpu_ms_per_message']} ms/message")
    print(json.dumps({"worker": result}))


if __name__ == "__main__":
    main()
