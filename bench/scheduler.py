"""The SLA scheduler's cost per tick: flat in the number of tickets with nothing due.

    python -m bench.scheduler [--open 100000] [--due 100]

Fills a SQLite store with OPEN tickets whose timers lie in the future plus DUE tickets whose
timers are due, then times scheduler ticks. A tick with nothing due is measured too: it must
cost the same with 10,000 or 100,000 waiting tickets, because the scheduler reads an index.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from mailgate.app import App
from mailgate.clock import FakeClock
from mailgate.config import build_config
from mailgate.store.models import Ticket

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _rows(count: int, first_number: int, timer: datetime) -> list[dict[str, object]]:
    return [
        {
            "number": first_number + i,
            "subject": f"bench {i}",
            "status": "open",
            "priority": "medium",
            "queue": "support",
            "created_at": NOW - timedelta(hours=1),
            "updated_at": NOW,
            "status_since": NOW - timedelta(hours=1),
            "last_customer_message_at": NOW - timedelta(hours=1),
            "next_timer_at": timer,
        }
        for i in range(count)
    ]


async def measure(waiting: int, due: int, workdir: Path) -> dict[str, float]:
    config = build_config({"storage": {"data_dir": str(workdir / "data")}, "smtp": {"listen": "127.0.0.1:0"}}, workdir)
    clock = FakeClock(NOW)
    app = App(config, clock=clock)
    await app.start()
    app.request_stop()
    await asyncio.sleep(0.05)
    try:

        def fill(session: object) -> None:
            for start in range(0, waiting, 10_000):
                session.execute(
                    insert(Ticket),
                    _rows(
                        min(10_000, waiting - start),
                        10_000 + start,  # type: ignore[attr-defined]
                        NOW + timedelta(days=3),
                    ),
                )
            session.execute(insert(Ticket), _rows(due, 10_000_000, NOW - timedelta(minutes=1)))  # type: ignore[attr-defined]

        app.store.run(fill)
        started = time.perf_counter()
        handled = await app.scheduler.tick()
        due_seconds = time.perf_counter() - started
        idle = []
        for _ in range(20):
            started = time.perf_counter()
            await app.scheduler.tick()
            idle.append(time.perf_counter() - started)
    finally:
        await app.stop()
    return {
        "waiting_tickets": waiting,
        "due_tickets": handled,
        "tick_with_due_ms": round(due_seconds * 1000, 2),
        "per_due_ticket_ms": round(due_seconds * 1000 / max(handled, 1), 3),
        "idle_tick_ms_median": round(statistics.median(idle) * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--open", type=int, default=100_000, dest="waiting")
    parser.add_argument("--due", type=int, default=100)
    args = parser.parse_args()
    results = []
    for waiting in sorted({args.waiting // 10, args.waiting}):
        with tempfile.TemporaryDirectory() as directory:
            results.append(asyncio.run(measure(waiting, args.due, Path(directory))))
    for result in results:
        print(
            f"scheduler: {result['waiting_tickets']:>7} waiting, {result['due_tickets']} due: "
            f"tick {result['tick_with_due_ms']} ms ({result['per_due_ticket_ms']} ms per due ticket), "
            f"idle tick {result['idle_tick_ms_median']} ms"
        )
    print(json.dumps({"scheduler": results}))


if __name__ == "__main__":
    main()
