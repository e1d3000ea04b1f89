"""The daemon as systemd runs it: sd_notify over a real socket, SIGTERM and SIGHUP, one instance per data_dir."""

from __future__ import annotations

import shutil
import signal
import smtplib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailgate.store import inbound, views
from mailgate.store.db import make_engine
from mailgate.store.transaction import Store
from tests.support.daemon import free_port, write_config
from tests.support.daemon_extras import NotifyListener, ParallelSender, ServiceProcess, port_accepts, wait_until
from tests.support.mailfactory import make_mail

REPO = Path(__file__).resolve().parents[2]
SHUTDOWN_TIMEOUT = 10
TOTAL = 200


@pytest.fixture
def notify() -> Iterator[NotifyListener]:
    listener = NotifyListener()
    yield listener
    listener.close()


def open_store(db_url: str) -> Store:
    return Store(make_engine(db_url))


def service_config(tmp_path: Path, db_url: str, port: int, extra: str = "") -> Path:
    daemon = f"\n[daemon]\nshutdown_timeout_seconds = {SHUTDOWN_TIMEOUT}\n"
    return write_config(
        tmp_path / "mailgate.toml", data_dir=tmp_path / "data", db_url=db_url, port=port, extra=daemon + extra
    )


def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit and the port-25 drop-in (ExecStart pointed at an installed binary)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("\nskipping: systemd-analyze is not installed")
        pytest.skip("systemd-analyze is not installed")
    installed = Path(sys.executable).parent / "mailgate"
    unit = (REPO / "systemd" / "mailgate.service").read_text()
    assert "/opt/mailgate/bin/mailgate" in unit, "the unit names the documented install path"
    (tmp_path / "mailgate.service").write_text(unit.replace("/opt/mailgate/bin/mailgate", str(installed)))
    (tmp_path / "mailgate.service.d").mkdir()
    shutil.copy(REPO / "systemd" / "port25.conf", tmp_path / "mailgate.service.d" / "port25.conf")
    try:
        result = subprocess.run(
            [analyze, "verify", str(tmp_path / "mailgate.service")], capture_output=True, text=True, timeout=60
        )
    except OSError as error:
        print(f"\nskipping: systemd-analyze cannot run here: {error}")
        pytest.skip(f"systemd-analyze cannot run here: {error}")
    output = result.stdout + result.stderr
    complaints = [line for line in output.splitlines() if "mailgate" in line or "port25" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr
    for directive in ("Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID", "StateDirectory=mailgate"):
        assert directive in unit
    assert "CAP_NET_BIND_SERVICE" not in unit and "\nCapabilityBoundingSet=\n" in unit, "only the drop-in grants it"


def test_ready_only_once_the_port_accepts_then_watchdog_and_stopping(
    tmp_path: Path, notify: NotifyListener
) -> None:
    """READY=1 comes over NOTIFY_SOCKET only once the SMTP port accepts; WATCHDOG=1 follows; SIGTERM: STOPPING=1."""
    port = free_port()
    db_url = f"sqlite:///{tmp_path / 'data' / 'mailgate.sqlite3'}"
    config = service_config(tmp_path, db_url, port)
    service = ServiceProcess(config, env={"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "1000000"}).start()
    try:
        ready = notify.wait_for("READY=1", timeout=60)
        assert port_accepts(port), "READY=1 came before the listener accepted connections"
        assert "STATUS=accepting mail on 127.0.0.1" in ready
        time.sleep(1.6)  # half of WATCHDOG_USEC between pings: at least three in 1.6 s
        while notify.receive(0.1) is not None:
            pass
        assert notify.count("WATCHDOG=1") >= 3
        service.send(signal.SIGTERM)
        notify.wait_for("STOPPING=1", timeout=10)
        assert service.wait(timeout=SHUTDOWN_TIMEOUT + 5) == 0
    finally:
        service.kill()


def test_without_notify_socket_the_daemon_runs_as_before(tmp_path: Path) -> None:
    """With no NOTIFY_SOCKET (not under systemd) the daemon starts, serves and stops with status 0."""
    port = free_port()
    config = service_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'm.sqlite3'}", port)
    service = ServiceProcess(config, env={"NOTIFY_SOCKET": ""}).start()
    try:
        wait_until(lambda: port_accepts(port), 60, "listener")
        service.send(signal.SIGTERM)
        assert service.wait(timeout=SHUTDOWN_TIMEOUT + 5) == 0
    finally:
        service.kill()


@pytest.mark.slow
def test_sigterm_during_a_200_mail_send_loses_nothing(tmp_path: Path, db_url: str, notify: NotifyListener) -> None:
    """SIGTERM mid-send: exit 0 within the bound; after a restart every mail that got 250 is exactly one ticket."""
    port = free_port()
    config = service_config(tmp_path, db_url, port)
    service = ServiceProcess(config, env={"NOTIFY_SOCKET": notify.address}).start()
    sender: ParallelSender | None = None
    restarted: ServiceProcess | None = None
    try:
        notify.wait_for("READY=1", timeout=60)
        sender = ParallelSender(port, TOTAL, threads=4).start()
        wait_until(lambda: sender.accepted_count() >= 60, 120, "60 accepted mails")
        signalled = time.monotonic()
        service.send(signal.SIGTERM)
        assert service.wait(timeout=SHUTDOWN_TIMEOUT + 5) == 0
        assert time.monotonic() - signalled < SHUTDOWN_TIMEOUT + 5
        assert sender.accepted_count() < TOTAL, "the send should still have been running at SIGTERM"
        restarted = ServiceProcess(config).start()
        sender.join(timeout=240)
        assert not sender.errors, sender.errors
        assert sorted(sender.accepted) == list(range(TOTAL))
        print(f"\nrefused while stopping or stopped: {Counter(sender.refusals)}")
        store = open_store(db_url)
        wait_until(lambda: _all_processed(store), 120, "inbound queue processed")
        subjects = [t.subject for t in store.run(views.list_tickets)]
        assert sorted(subjects) == sorted(f"service test {i}" for i in range(TOTAL))
        store.dispose()
    finally:
        service.kill()
        if restarted is not None:
            restarted.send(signal.SIGTERM)
            restarted.wait(timeout=SHUTDOWN_TIMEOUT + 5)
            restarted.kill()


def _all_processed(store: Store) -> bool:
    states = store.run(inbound.count_by_state)
    return not states.get(inbound.QUEUED) and not states.get(inbound.PROCESSING)


RULE = """
[[rules]]
name = "refunds"
conditions = [{ field = "subject", op = "contains", value = "refund" }]
actions = [{ add_tag = "refund" }]
"""
SALES = """
[[mailboxes]]
address = "sales@example.com"
queue = "sales"
"""


def _rcpt(port: int, address: str) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("alice@customer.example")
        code, _ = client.rcpt(address)
        return int(code)


def _send(port: int, to: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("alice@customer.example", [to], make_mail(to=to, subject=subject))


def _tags_of(store: Store, subject: str) -> tuple[tuple[str, ...], str]:
    (ticket,) = [t for t in store.run(views.list_tickets) if t.subject == subject]
    return ticket.tags, ticket.queue


def test_sighup_keeps_the_old_config_when_the_new_one_is_broken_and_applies_a_good_one(
    tmp_path: Path, notify: NotifyListener
) -> None:
    """SIGHUP with a broken file logs the error and keeps serving; with a good one a new mailbox and rule apply."""
    port = free_port()
    db_url = f"sqlite:///{tmp_path / 'data' / 'mailgate.sqlite3'}"
    config = service_config(tmp_path, db_url, port)
    good_text = config.read_text()
    service = ServiceProcess(config, env={"NOTIFY_SOCKET": notify.address}).start()
    store = open_store(db_url)
    try:
        notify.wait_for("READY=1", timeout=60)
        assert _rcpt(port, "sales@example.com") == 550
        config.write_text(good_text + '\n[smtp\nlisten = "broken"\n')
        service.send(signal.SIGHUP)
        notify.wait_for("RELOADING=1", timeout=20)
        notify.wait_for("READY=1", timeout=20)
        wait_until(lambda: any(e["event"] == "reload_failed" for e in service.log_events()), 20, "reload_failed log")
        failure = next(e for e in service.log_events() if e["event"] == "reload_failed")
        assert "valid TOML" in failure["error"]
        assert _rcpt(port, "support@example.com") == 250 and _rcpt(port, "sales@example.com") == 550
        _send(port, "support@example.com", "refund before reload")
        # Filed before the reload: the rule must not apply to it.
        wait_until(lambda: _all_processed(store) and len(store.run(views.list_tickets)) == 1, 30, "first ticket")

        service_config(tmp_path, db_url, port, extra=SALES + RULE)
        service.send(signal.SIGHUP)
        notify.wait_for("RELOADING=1", timeout=20)
        notify.wait_for("READY=1", timeout=20)
        # The log and the notify socket are two channels: the log line may land a moment later.
        wait_until(lambda: any(e["event"] == "config_reloaded" for e in service.log_events()), 20, "config_reloaded")
        assert [e["event"] for e in service.log_events()].count("reload_failed") == 1, "only the broken file failed"
        assert _rcpt(port, "sales@example.com") == 250
        _send(port, "sales@example.com", "refund after reload")
        wait_until(lambda: _all_processed(store) and len(store.run(views.list_tickets)) == 2, 30, "two tickets")
        assert "refund" not in _tags_of(store, "refund before reload")[0]
        tags, queue = _tags_of(store, "refund after reload")
        assert "refund" in tags and queue == "sales"
        service.send(signal.SIGTERM)
        assert service.wait(timeout=SHUTDOWN_TIMEOUT + 5) == 0
    finally:
        store.dispose()
        service.kill()


def test_a_second_instance_on_the_same_data_dir_refuses_to_start(tmp_path: Path) -> None:
    """`mailgate run` against a data_dir in use exits 75 naming the running process, and the first one keeps serving."""
    port = free_port()
    config = service_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'mailgate.sqlite3'}", port)
    first = ServiceProcess(config).start()
    try:
        wait_until(lambda: port_accepts(port), 60, "first instance listening")
        second = subprocess.run(
            [sys.executable, "-m", "mailgate", "--config", str(config), "run"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 75, second.stderr
        assert "already running" in second.stderr and f"pid {first.pid}" in second.stderr
        assert port_accepts(port)
        first.send(signal.SIGTERM)
        assert first.wait(timeout=SHUTDOWN_TIMEOUT + 5) == 0
    finally:
        first.kill()
