"""SIGKILL the daemon while it sends: after restart every mail arrives; a duplicate carries the same Message-ID."""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

import pytest

from mailgate.config import load_config
from mailgate.store import outbox
from mailgate.store.db import make_engine
from mailgate.store.transaction import Store
from tests.support.daemon import Daemon, free_port, write_config
from tests.support.mailfactory import make_mail
from tests.support.smtp_sink import SmtpSink

MAILS = 60


def wait_until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError("condition not reached")


@pytest.mark.slow
def test_sigkill_while_sending_loses_no_mail(tmp_path: Path, db_url: str) -> None:
    """Kill -9 mid-send, restart: the sink gets every outbox mail, and any repeat has the same Message-ID."""
    sink = SmtpSink()
    sink.start()
    port = free_port()
    extra = f"\n[outgoing]\nrelay_port = {sink.port}\nmax_automatic_per_minute = 100000\n"
    config_path = write_config(tmp_path / "m.toml", data_dir=tmp_path / "data", db_url=db_url, port=port, extra=extra)
    daemon = Daemon(config_path, port)
    daemon.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            for index in range(MAILS):
                client.sendmail(f"k{index}@customer.example", ["support@example.com"],
                                make_mail(sender=f"k{index}@customer.example", subject=f"kill {index}"))
        wait_until(lambda: len(sink.received) >= 5, 60)
        daemon.kill()
        daemon.start()
        store = Store(make_engine(load_config(config_path).storage.database_url))
        wait_until(lambda: {r.state for r in store.run(outbox.list_outbox, limit=10_000)} == {"sent"}
                   and len(store.run(outbox.list_outbox, limit=10_000)) == MAILS, 120)
        assert daemon.stop() == 0
        rows = store.run(outbox.list_outbox, limit=10_000)
        store.dispose()
        expected = {r.message_id for r in rows}
        received = [m.message["Message-ID"].strip("<>") for m in sink.received]
        assert set(received) == expected
        assert len(received) - len(set(received)) <= 2  # at most the mails in flight at the kill
    finally:
        daemon.stop()
        sink.stop()
