"""SIGKILL the daemon while a client sends 200 mails: every accepted mail is in exactly one ticket, once."""

from __future__ import annotations

import smtplib
import threading
import time
from pathlib import Path

import pytest

from mailgate.config import load_config
from mailgate.store import inbound, views
from mailgate.store.db import make_engine
from mailgate.store.transaction import Store
from tests.support.daemon import Daemon, free_port, write_config
from tests.support.mailfactory import make_mail

TOTAL = 200


class RetryingClient(threading.Thread):
    """Sends mails in order; anything but a 250 (refused, 4xx, dropped connection) is retried."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.accepted: list[int] = []
        self.retries = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 240
        try:
            for index in range(TOTAL):
                raw = make_mail(
                    sender=f"c{index}@customer.example",
                    subject=f"crash test {index}",
                    message_id=f"<crash-{index}@client.example>",
                )
                while True:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"gave up at mail {index}")
                    try:
                        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                            client.sendmail(f"c{index}@customer.example", ["support@example.com"], raw)
                        self.accepted.append(index)
                        break
                    except (OSError, smtplib.SMTPException):
                        self.retries += 1
                        time.sleep(0.05)
        except BaseException as error:  # reported to the test thread
            self.error = error


def wait_until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError("condition not reached")


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 3], ids=["daemon-files", "three-filing-processes"])
def test_sigkill_during_a_200_mail_send_loses_and_duplicates_nothing(
    tmp_path: Path, db_url: str, processes: int
) -> None:
    """Two SIGKILLs mid-send; after restart every mail that got 250 is in exactly one ticket, exactly once
    (with filing processes too: they die with the daemon, and its next start takes back their claims)."""
    port = free_port()
    extra = f"[worker]\nprocesses = {processes}\n"
    config_path = write_config(
        tmp_path / "mailgate.toml", data_dir=tmp_path / "data", db_url=db_url, port=port, extra=extra
    )
    daemon = Daemon(config_path, port)
    daemon.start()
    client = RetryingClient(port)
    client.start()
    try:
        for kill_after in (40, 120):
            wait_until(lambda n=kill_after: len(client.accepted) >= n, 120)
            daemon.kill()
            time.sleep(0.2)
            daemon.start()
        client.join(timeout=240)
        assert client.error is None, client.error
        assert client.accepted == list(range(TOTAL))
        store = Store(make_engine(load_config(config_path).storage.database_url))
        wait_until(lambda: store.run(inbound.count_by_state).keys() <= {"done"}, 120)
        assert daemon.stop() == 0
        tickets = store.run(views.list_tickets)
        subjects = sorted(t.subject for t in tickets)
        assert subjects == sorted(f"crash test {i}" for i in range(TOTAL))
        assert all(t.message_count == 1 for t in tickets)
        store.dispose()
    finally:
        daemon.stop()
