"""Logs are key/value events with context, and never carry message bodies or secrets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog
from structlog.testing import capture_logs

from mailgate.logs import redact_secrets
from tests.integration.helpers import drain
from tests.support.mailfactory import make_mail
from tests.support.smtp_client import send

SECRET_BODY = "my password is hunter2-do-not-log"


async def test_processing_logs_context_but_no_body(app: Any) -> None:
    """Queueing and filing a message log its ids and outcome, never its body text."""
    with capture_logs() as logs:
        await asyncio.to_thread(send, app.smtp_address[1], make_mail(body=SECRET_BODY + "\n"))
        await drain(app)
    assert not any(SECRET_BODY in json.dumps(entry, default=str) for entry in logs)
    events = {entry["event"] for entry in logs}
    assert {"inbound_queued", "inbound_processed"} <= events
    processed = next(entry for entry in logs if entry["event"] == "inbound_processed")
    assert processed["result"] == "created" and processed["ticket"] >= 1000


def test_redaction_processor_hides_bodies_and_secrets() -> None:
    """Keys such as body, raw, password and token are replaced whatever their value."""
    event = {"event": "x", "body": "text", "raw": b"bytes", "password": "p", "token": "t", "ticket": 5}
    redacted = redact_secrets(None, "info", dict(event))
    assert redacted["body"] == redacted["raw"] == redacted["password"] == redacted["token"] == "[redacted]"
    assert redacted["ticket"] == 5


def test_json_lines_when_not_on_a_terminal(capsys: Any) -> None:
    """With format auto and stderr not a terminal, each log line is one JSON object."""
    from mailgate.logs import configure_logging

    configure_logging("info", "auto")
    structlog.get_logger("test").info("ticket_created", ticket=1042, password="x")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["event"] == "ticket_created" and record["ticket"] == 1042 and record["password"] == "[redacted]"
    structlog.reset_defaults()
