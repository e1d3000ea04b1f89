"""/healthz and /metrics over real HTTP from a running App: they answer, and their numbers follow the mail."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Callable

from mailgate.app import App
from mailgate.config import Config
from mailgate.http_status import StatusSource, route
from mailgate.metrics import Metrics
from mailgate.store.db import make_engine
from mailgate.store.transaction import Store
from tests.integration.helpers import drain
from tests.support.daemon_extras import http_get
from tests.support.mailfactory import make_mail
from tests.support.smtp_client import send

SAMPLE = re.compile(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$")


def samples(text: str) -> dict[str, float]:
    """Prometheus text to {'name{labels}': value}; every non-comment line must parse."""
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        values[match.group(1)] = float(match.group(2))
    return values


def hostile_mail() -> bytes:
    raw = b"From: a@b.example\r\nTo: support@example.com\r\nSubject: deep\r\n"
    raw += b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
    for depth in range(1, 80):
        raw += f"--b{depth - 1}\r\nContent-Type: multipart/mixed; boundary=b{depth}\r\n\r\n".encode()
    return raw


async def started(config_factory: Callable[..., Config]) -> App:
    app = App(config_factory(http={"listen": "127.0.0.1:0"}))
    await app.start()
    return app


async def test_healthz_and_metrics_follow_the_traffic(config_factory: Callable[..., Config]) -> None:
    """Two good mails and one hostile one move received/processed/failed, the histogram and the queue gauges."""
    app = await started(config_factory)
    try:
        assert app.http_address is not None and app.smtp_address is not None
        http_port, smtp_port = app.http_address[1], app.smtp_address[1]
        status, kind, body = await asyncio.to_thread(http_get, http_port, "/healthz")
        health = json.loads(body)
        assert status == 200 and kind == "application/json"
        assert health["status"] == "ok" and health["database"]["ok"] and health["smtp_listener"]["ok"]
        assert health["inbound"]["done"] == 0 and health["imap"] == []
        before = samples((await asyncio.to_thread(http_get, http_port, "/metrics"))[2])
        assert before['mailgate_messages_received_total{source="smtp"}'] == 0
        for raw in (make_mail(subject="one"), make_mail(subject="two"), hostile_mail()):
            await asyncio.to_thread(send, smtp_port, raw)
        await drain(app)
        status, kind, text = await asyncio.to_thread(http_get, http_port, "/metrics")
        after = samples(text)
        assert status == 200 and kind.startswith("text/plain; version=0.0.4")
        assert after['mailgate_messages_received_total{source="smtp"}'] == 3
        assert after['mailgate_messages_processed_total{source="smtp"}'] == 2
        assert after['mailgate_messages_failed_total{source="smtp"}'] == 1
        assert after["mailgate_processing_seconds_count"] == 2
        assert after['mailgate_processing_seconds_bucket{le="+Inf"}'] == 2
        assert after['mailgate_inbound_queue_depth{state="done"}'] == 2
        assert after['mailgate_inbound_queue_depth{state="failed"}'] == 1
        assert after["mailgate_database_up"] == 1 and after["mailgate_sla_breaches_total"] == 0
        health = json.loads((await asyncio.to_thread(http_get, http_port, "/healthz"))[2])
        assert health["inbound"]["done"] == 2 and health["inbound"]["failed"] == 1
        # Acknowledgements and agent notifications of the two tickets, in whatever state the relay left them.
        outbox_gauges = [v for k, v in after.items() if k.startswith("mailgate_outbox_queue_depth")]
        assert sum(health["outbox"].values()) == sum(outbox_gauges) >= 2
    finally:
        await app.stop()


async def test_other_paths_methods_and_garbage(config_factory: Callable[..., Config]) -> None:
    """Unknown paths are 404, POST is 405 with Allow: GET, a non-HTTP line is 400."""
    app = await started(config_factory)
    try:
        assert app.http_address is not None
        port = app.http_address[1]
        assert (await asyncio.to_thread(http_get, port, "/"))[0] == 404
        assert (await asyncio.to_thread(http_get, port, "/metrics", method="POST"))[0] == 405
        assert (await asyncio.to_thread(http_get, port, "/healthz?verbose=1"))[0] == 200
        reply = await asyncio.to_thread(_raw_request, port, b"HELO there\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400 ")
    finally:
        await app.stop()


def _raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(data)
        chunks = []
        while chunk := connection.recv(4096):
            chunks.append(chunk)
        return b"".join(chunks)


async def test_no_listener_without_the_http_key(config_factory: Callable[..., Config]) -> None:
    """[http] listen absent: no status port is opened."""
    app = App(config_factory())
    await app.start()
    try:
        assert app.http_address is None
    finally:
        await app.stop()


async def test_healthz_is_503_when_the_database_or_the_listener_is_down() -> None:
    """A database that refuses connections, or a closed listener, makes /healthz 503 with the reason."""
    unreachable = Store(make_engine("postgresql://nobody@127.0.0.1:1/none"))
    source = StatusSource(unreachable, Metrics(), listener_up=lambda: True, imap_accounts=("u@h:993/INBOX",))
    response = await route(source, "GET", "/healthz")
    report = json.loads(response.body)
    assert response.status == 503 and report["database"]["ok"] is False and report["database"]["error"]
    assert report["imap"] == [{"account": "u@h:993/INBOX", "last_import_at": None, "errors": 0}]
    metrics = samples((await route(source, "GET", "/metrics")).body.decode())
    assert metrics["mailgate_database_up"] == 0
    unreachable.dispose()


async def test_healthz_is_503_while_shutting_down(config_factory: Callable[..., Config]) -> None:
    """Once stop() has begun the listener counts as down."""
    app = await started(config_factory)
    source = StatusSource(app.store, app.metrics, listener_up=app.listener_up, imap_accounts=())
    assert (await route(source, "GET", "/healthz")).status == 200
    await app.stop()
    assert (await route(source, "GET", "/healthz")).status == 503
