"""The command line as an operator uses it: real processes, real database, exit codes and output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import mailgate, process_queue
from tests.support.daemon import write_config
from tests.support.mailfactory import make_mail


@pytest.fixture
def config_file(tmp_path: Path, db_url: str) -> Path:
    path = write_config(tmp_path / "mailgate.toml", data_dir=tmp_path / "data", db_url=db_url, port=2599)
    assert mailgate(path, "db", "upgrade").returncode == 0
    return path


def test_deliver_queues_and_tickets_list_shows_json(config_file: Path) -> None:
    """`deliver` exits 0, and after processing `tickets list --json` has the stable fields."""
    result = mailgate(
        config_file, "deliver", "--recipient", "support@example.com", stdin=make_mail(subject="Cannot log in")
    )
    assert result.returncode == 0, result.stderr
    process_queue(config_file)
    listing = mailgate(config_file, "tickets", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    (ticket,) = json.loads(listing.stdout)
    assert {
        "number",
        "subject",
        "status",
        "priority",
        "queue",
        "requester",
        "assignee",
        "tags",
        "message_count",
        "created_at",
        "updated_at",
    } <= ticket.keys()
    assert ticket["subject"] == "Cannot log in" and ticket["status"] == "new" and ticket["message_count"] == 1
    shown = mailgate(config_file, "tickets", "show", str(ticket["number"]))
    assert shown.returncode == 0 and b"Cannot log in" in shown.stdout and b"ticket_created" in shown.stdout
    filtered = json.loads(mailgate(config_file, "tickets", "list", "--status", "closed", "--json").stdout)
    assert filtered == []


def test_deliver_exit_codes(config_file: Path) -> None:
    """Empty input is 65, an unknown recipient 67; a missing schema or a broken config is 75 so the MTA retries."""
    assert mailgate(config_file, "deliver", stdin=b"").returncode == 65
    unknown = mailgate(config_file, "deliver", "--recipient", "nobody@example.com", stdin=make_mail())
    assert unknown.returncode == 67 and b"no such mailbox" in unknown.stderr
    plus = mailgate(config_file, "deliver", "--recipient", "Support+Billing@example.com", stdin=make_mail())
    assert plus.returncode == 0, plus.stderr
    broken = config_file.with_name("broken.toml")
    broken.write_text(config_file.read_text().replace("[smtp]\n", '[smtp]\nmax_message_bytes = "25M"\n'))
    result = mailgate(broken, "deliver", stdin=make_mail())
    assert result.returncode == 75
    assert b"configuration error: smtp.max_message_bytes: expected a positive integer" in result.stderr
    assert mailgate(config_file.with_name("absent.toml"), "deliver", stdin=make_mail()).returncode == 75


def test_deliver_without_schema_is_temporary(tmp_path: Path) -> None:
    """A database that was never set up answers 75 with the command to run."""
    path = write_config(
        tmp_path / "m.toml", data_dir=tmp_path / "d", db_url=f"sqlite:///{tmp_path / 'd' / 'x.sqlite3'}", port=2598
    )
    (tmp_path / "d").mkdir()
    result = mailgate(path, "deliver", stdin=make_mail())
    assert result.returncode == 75 and b"db upgrade" in result.stderr


def test_failed_message_is_listed_and_can_be_retried(config_file: Path) -> None:
    """A message over a limit is kept as failed with its reason; `inbound retry` queues it again."""
    hostile = (
        b"From: a@b.example\r\nTo: support@example.com\r\nSubject: deep\r\n"
        + b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
    )
    for depth in range(1, 80):
        hostile += f"--b{depth - 1}\r\nContent-Type: multipart/mixed; boundary=b{depth}\r\n\r\n".encode()
    assert mailgate(config_file, "deliver", stdin=hostile).returncode == 0
    process_queue(config_file)
    failed = json.loads(mailgate(config_file, "inbound", "list", "--failed", "--json").stdout)
    assert len(failed) == 1 and "MIME" in failed[0]["last_error"]
    retried = mailgate(config_file, "inbound", "retry", str(failed[0]["id"]))
    assert retried.returncode == 0 and b"queued again" in retried.stdout
    assert mailgate(config_file, "inbound", "retry", "999999").returncode == 1
    assert json.loads(mailgate(config_file, "inbound", "list", "--failed", "--json").stdout) == []


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    """check-config reports the key path and expected form, and exits 78."""
    path = tmp_path / "bad.toml"
    path.write_text('[smtp]\nlisten = "2525"\n')
    result = mailgate(path, "check-config")
    assert result.returncode == 78
    assert b'smtp.listen: expected "HOST:PORT"' in result.stderr


# The only mailgate modules `deliver` may import: not config.py (dataclasses, the rules schema,
# templates), not the daemon. An MTA starts one process per message.
_DELIVER_MODULES = {
    "mailgate",
    "mailgate.cli",
    "mailgate.errors",
    "mailgate.toml_tables",
    "mailgate.ingest",
    "mailgate.ingest.pipe",
    "mailgate.store",
    "mailgate.store.spool",
}
_DAEMON_PACKAGES = {
    "sqlalchemy", "alembic", "aiosmtpd", "mailparser", "jinja2", "markupsafe", "structlog", "imapclient", "nh3",
    "tnefparse",
}
# On SQLite not even these: psycopg and what it imports, and the dataclasses of config.py.
_NOT_ON_SQLITE = {"psycopg", "asyncio", "email", "logging", "dataclasses"}


def test_deliver_imports_nothing_heavy(config_file: Path, db_url: str) -> None:
    """The MTA pipe path stays lean: no SQLAlchemy, aiosmtpd, structlog, jinja2, config.py or rules."""
    code = (
        "import sys, io, json\n"
        "before = set(sys.modules)\n"
        "from mailgate import cli\n"
        f"sys.stdin = io.TextIOWrapper(io.BytesIO({make_mail()!r}))\n"
        f"code = cli.main(['--config', {str(config_file)!r}, 'deliver', '--recipient', 'support@example.com'])\n"
        "assert code == 0, code\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, timeout=60)
    imported = set(json.loads(run.stdout.splitlines()[-1]))
    assert {name for name in imported if name.partition(".")[0] == "mailgate"} <= _DELIVER_MODULES
    heavy = _DAEMON_PACKAGES | (_NOT_ON_SQLITE if db_url.startswith("sqlite") else set())
    assert not {name for name in imported if name.partition(".")[0] in heavy}


def test_tickets_set_and_outbox_commands(config_file: Path) -> None:
    """`tickets set` changes status and priority (the customer's mail is queued); `outbox list` shows it."""
    assert mailgate(config_file, "deliver", stdin=make_mail(subject="Set me")).returncode == 0
    process_queue(config_file)
    (ticket,) = json.loads(mailgate(config_file, "tickets", "list", "--json").stdout)
    changed = mailgate(
        config_file, "tickets", "set", str(ticket["number"]), "--status", "pending", "--priority", "high"
    )
    assert changed.returncode == 0 and b"status pending, priority high" in changed.stdout
    again = mailgate(config_file, "tickets", "set", str(ticket["number"]), "--status", "pending")
    assert b"nothing changed" in again.stdout
    assert mailgate(config_file, "tickets", "set", "999999", "--status", "open").returncode != 0
    rows = json.loads(mailgate(config_file, "outbox", "list", "--json").stdout)
    assert sorted(r["kind"] for r in rows) == ["acknowledgement", "status_changed"]
    assert all(r["state"] == "queued" for r in rows)
    assert mailgate(config_file, "outbox", "retry", str(rows[0]["id"])).returncode == 1  # not failed


def test_help_lists_every_command() -> None:
    """`mailgate --help` names every command; a command's own help shows its arguments."""
    listing = subprocess.run([sys.executable, "-m", "mailgate", "--help"], capture_output=True, timeout=60)
    assert listing.returncode == 0
    listed = re.findall(r"^    (\S+)", listing.stdout.decode(), re.MULTILINE)
    assert listed == [
        "run", "deliver", "check-config", "db", "tickets", "rules", "outbox", "inbound", "report", "export"
    ]
    deliver = subprocess.run(
        [sys.executable, "-m", "mailgate", "--config", "any.toml", "deliver", "--help"], capture_output=True, timeout=60
    )
    assert deliver.returncode == 0 and b"--recipient ADDR" in deliver.stdout and b"--sender ADDR" in deliver.stdout
    tickets = subprocess.run([sys.executable, "-m", "mailgate", "tickets", "list", "--bogus"], capture_output=True)
    assert tickets.returncode == 2 and b"unrecognized arguments: --bogus" in tickets.stderr


def test_mailgate_config_environment_variable(config_file: Path) -> None:
    """Without --config, MAILGATE_CONFIG names the file."""
    import os

    result = subprocess.run(
        [sys.executable, "-m", "mailgate", "check-config"],
        capture_output=True,
        timeout=60,
        env={**os.environ, "MAILGATE_CONFIG": str(config_file)},
    )
    assert result.returncode == 0 and b"127.0.0.1:2599" in result.stdout
