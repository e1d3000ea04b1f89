"""The daemon's helper processes under SIGKILL: of themselves (the daemon restarts them) and of the daemon."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from mailgate.config import load_config
from mailgate.store import inbound, views
from mailgate.store.db import make_engine
from mailgate.store.transaction import Store
from tests.e2e.test_crash_safety import TOTAL, RetryingClient, wait_until
from tests.support.daemon import Daemon, free_port, write_config


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(part) for part in text.split()]


def child_pid(daemon: Daemon, module: bytes) -> int:
    """The pid of the daemon's child running `python -m MODULE`, once there is exactly one."""
    assert daemon.process is not None
    found: list[int] = []

    def started() -> bool:
        found[:] = [
            child
            for child in children(daemon.process.pid)  # type: ignore[union-attr]
            if module in Path(f"/proc/{child}/cmdline").read_bytes()
        ]
        return len(found) == 1

    wait_until(started, 30)
    return found[0]


def acceptance_pid(daemon: Daemon) -> int:
    return child_pid(daemon, b"mailgate.ingest.acceptance_process")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: its parent has not reaped it yet.
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "extra"),
    [(b"mailgate.ingest.acceptance_process", ""), (b"mailgate.filing_process", "[worker]\nprocesses = 2\n")],
    ids=["acceptance", "filing"],
)
def test_sigkill_of_a_helper_process_loses_and_duplicates_nothing(
    tmp_path: Path, db_url: str, module: bytes, extra: str
) -> None:
    """A helper process killed twice under load: the daemon restarts it. The SMTP clients retry
    what a killed acceptance process did not answer; a killed filing process's successor takes
    back the message it held. Every mail is filed exactly once."""
    port = free_port()
    config_path = write_config(
        tmp_path / "mailgate.toml", data_dir=tmp_path / "data", db_url=db_url, port=port, extra=extra
    )
    daemon = Daemon(config_path, port)
    daemon.start()
    client = RetryingClient(port)
    client.start()
    store = Store(make_engine(load_config(config_path).storage.database_url))
    try:
        for kill_after in (40, 120):
            wait_until(lambda n=kill_after: len(client.accepted) >= n, 120)
            victim = child_pid(daemon, module)
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda v=victim: child_pid(daemon, module) != v, 30)
        client.join(timeout=240)
        assert client.error is None, client.error
        assert client.accepted == list(range(TOTAL))
        wait_until(lambda: store.run(inbound.count_by_state).keys() <= {"done"}, 120)
        tickets = store.run(views.list_tickets)
        assert sorted(t.subject for t in tickets) == sorted(f"crash test {i}" for i in range(TOTAL))
        assert all(t.message_count == 1 for t in tickets)
        assert daemon.process is not None and daemon.process.poll() is None, "the daemon itself kept running"
        assert daemon.log_path.read_text().count("child_process_exited") == 2
        assert daemon.stop() == 0
    finally:
        store.dispose()
        daemon.stop()


def test_the_helper_processes_follow_the_daemon(tmp_path: Path) -> None:
    """SIGKILL of the daemon: its outbox process is killed with it (the next daemon resends what it
    held); its acceptance process sees the pipe close, stops and frees the port."""
    port = free_port()
    db_url = f"sqlite:///{tmp_path / 'data' / 'mailgate.sqlite3'}"
    config_path = write_config(tmp_path / "mailgate.toml", data_dir=tmp_path / "data", db_url=db_url, port=port)
    daemon = Daemon(config_path, port)
    daemon.start()
    try:
        acceptance = acceptance_pid(daemon)
        outbox = child_pid(daemon, b"mailgate.notify.outbox_process")
        daemon.kill()
        wait_until(lambda: not alive(outbox), 5)
        wait_until(lambda: not alive(acceptance), 10)
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
        daemon.start()
        assert acceptance_pid(daemon) != acceptance
        assert daemon.stop() == 0
    finally:
        daemon.stop()
