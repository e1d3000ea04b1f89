"""The SQLite writer lock: one holder across processes (here: two lock objects, two file handles)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mailgate.errors import TemporaryFailure
from mailgate.store.writer_lock import WriterLock, writer_lock_for


def test_a_second_writer_waits_and_starts_right_after_the_first(tmp_path: Path) -> None:
    first, second = WriterLock(tmp_path / "w.lock", 5.0), WriterLock(tmp_path / "w.lock", 5.0)
    order: list[str] = []

    def wait_for_turn() -> None:
        with second.held():
            order.append(f"second after {time.monotonic() - released_at[0]:.4f}")

    released_at = [0.0]
    with first.held():
        waiter = threading.Thread(target=wait_for_turn)
        waiter.start()
        time.sleep(0.1)
        assert order == [], "the second writer must wait while the first holds the lock"
        released_at[0] = time.monotonic()
    waiter.join(5)
    assert len(order) == 1
    assert float(order[0].split()[-1]) < 0.05, order


def test_waiting_is_bounded_by_the_busy_timeout(tmp_path: Path) -> None:
    holder, waiter = WriterLock(tmp_path / "w.lock", 5.0), WriterLock(tmp_path / "w.lock", 0.2)
    with holder.held():
        started = time.monotonic()
        with pytest.raises(TemporaryFailure, match="database busy"), waiter.held():
            pass
        assert 0.2 <= time.monotonic() - started < 2.0
    with waiter.held():
        pass  # free again


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path / "w.lock", 5.0)
    inside = 0
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(50):
            with lock.held():
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.0001)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most == 1


def test_only_sqlite_files_get_a_lock() -> None:
    assert writer_lock_for(None, 5.0) is None
    assert writer_lock_for(":memory:", 5.0) is None
    lock = writer_lock_for("/var/lib/mailgate/mailgate.sqlite3", 5.0)
    assert lock is not None and lock.path == Path("/var/lib/mailgate/mailgate.sqlite3-writer.lock")


def test_an_urgent_writer_goes_before_writers_that_come_after_it(tmp_path: Path) -> None:
    """The acceptance process waits for the running transaction only, not for the workers' next ones."""
    path = tmp_path / "w.lock"
    holder, urgent, worker = WriterLock(path, 5.0), WriterLock(path, 5.0, urgent=True), WriterLock(path, 5.0)
    order: list[str] = []

    def take(lock: WriterLock, name: str) -> None:
        with lock.held():
            order.append(name)

    with holder.held():
        urgent_thread = threading.Thread(target=take, args=(urgent, "urgent"))
        urgent_thread.start()
        time.sleep(0.05)  # the urgent writer now waits at the lock, holding the gate
        worker_thread = threading.Thread(target=take, args=(worker, "worker"))
        worker_thread.start()
        time.sleep(0.05)
        assert order == []
    urgent_thread.join(5)
    worker_thread.join(5)
    assert order == ["urgent", "worker"]
