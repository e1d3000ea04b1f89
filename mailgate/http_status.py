"""A minimal HTTP/1.1 listener for /healthz and /metrics on the daemon's own loop (asyncio streams only).

It serves a monitoring system, not browsers: GET only, one request per connection, the request
bounded in size and time, so a stuck or hostile client costs one small task for a few seconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import structlog

from mailgate.metrics import Family, Metrics, Sample, StaticFamily, render
from mailgate.store import status
from mailgate.store.inbound import DONE, FAILED, IGNORED, PROCESSING, QUEUED
from mailgate.store.outbox import BOUNCED, SENDING, SENT
from mailgate.store.outbox import FAILED as OUTBOX_FAILED
from mailgate.store.outbox import QUEUED as OUTBOX_QUEUED
from mailgate.store.transaction import Store

log = structlog.get_logger("mailgate.http")

MAX_LINE_BYTES = 8192
MAX_HEADERS = 64
REQUEST_TIMEOUT_SECONDS = 10.0
DATABASE_TIMEOUT_SECONDS = 5.0
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
INBOUND_STATES = (QUEUED, PROCESSING, DONE, FAILED, IGNORED)
OUTBOX_STATES = (OUTBOX_QUEUED, SENDING, SENT, OUTBOX_FAILED, BOUNCED)


@dataclass(frozen=True)
class Response:
    status: HTTPStatus
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    allow: str | None = None


class BadRequest(Exception):
    """The request could not be read as HTTP/1.x within the limits."""


class StatusSource:
    """What /healthz and /metrics report: the database (read per request), the listener and the counters."""

    def __init__(
        self, store: Store, metrics: Metrics, *, listener_up: Callable[[], bool], imap_accounts: tuple[str, ...]
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.listener_up = listener_up
        self.imap_accounts = imap_accounts

    async def _snapshot(self) -> tuple[status.StatusSnapshot | None, str | None]:
        try:
            snapshot = await asyncio.wait_for(self.store.call_read(status.snapshot), DATABASE_TIMEOUT_SECONDS)
        except TimeoutError:
            return None, f"no answer within {DATABASE_TIMEOUT_SECONDS:g} s"
        except Exception as error:  # Any failure means "not reachable"; the reason goes in the report.
            return None, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
        return snapshot, None

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, report): healthy when the database answers and the SMTP listener accepts."""
        snapshot, error = await self._snapshot()
        listening = self.listener_up()
        report: dict[str, Any] = {
            "status": "ok" if snapshot is not None and listening else "unavailable",
            "database": {"ok": snapshot is not None, **({"error": error} if error else {})},
            "smtp_listener": {"ok": listening},
        }
        if snapshot is not None:
            report["inbound"] = {state: snapshot.inbound.get(state, 0) for state in INBOUND_STATES}
            report["outbox"] = {state: snapshot.outbox.get(state, 0) for state in OUTBOX_STATES}
        report["imap"] = [self._imap_entry(account, snapshot) for account in self.imap_accounts]
        return snapshot is not None and listening, report

    def _imap_entry(self, account: str, snapshot: status.StatusSnapshot | None) -> dict[str, Any]:
        # The pollers keep no "last successful poll" time; the import state's last change is what exists.
        last = snapshot.imap_last_import.get(account) if snapshot is not None else None
        return {
            "account": account,
            "last_import_at": last.isoformat() if last else None,
            "errors": int(self.metrics.imap_errors.value(account)),
        }

    async def metrics_text(self) -> str:
        snapshot, _ = await self._snapshot()
        families: list[Family] = [*self.metrics.families(), *_database_families(snapshot)]
        return render(families)


def _database_families(snapshot: status.StatusSnapshot | None) -> list[Family]:
    up = _single("mailgate_database_up", "1 when the database answered this scrape", "gauge", 1.0 if snapshot else 0.0)
    if snapshot is None:
        return [up]
    inbound = _by_state(
        "mailgate_inbound_queue_depth", "Inbound messages by state, at scrape time", snapshot.inbound, INBOUND_STATES
    )
    outgoing = _by_state(
        "mailgate_outbox_queue_depth", "Outgoing mails by state, at scrape time", snapshot.outbox, OUTBOX_STATES
    )
    breaches = _single(
        "mailgate_sla_breaches_total",
        "SLA breach escalations recorded in the tickets' system logs",
        "counter",
        float(snapshot.sla_breaches),
    )
    return [up, inbound, outgoing, breaches]


def _single(name: str, help: str, kind: str, value: float) -> StaticFamily:
    return StaticFamily(name, help, kind, (Sample(name, (), value),))


def _by_state(name: str, help: str, counts: dict[str, int], states: tuple[str, ...]) -> StaticFamily:
    known = list(states) + sorted(set(counts) - set(states))
    return StaticFamily(
        name, help, "gauge", tuple(Sample(name, (("state", state),), float(counts.get(state, 0))) for state in known)
    )


async def route(source: StatusSource, method: str, target: str) -> Response:
    """The response for one request line."""
    path = target.split("?", 1)[0]
    if path not in ("/healthz", "/metrics"):
        return Response(HTTPStatus.NOT_FOUND, b"not found\n")
    if method != "GET":
        return Response(HTTPStatus.METHOD_NOT_ALLOWED, b"only GET\n", allow="GET")
    if path == "/metrics":
        return Response(HTTPStatus.OK, (await source.metrics_text()).encode(), PROMETHEUS_TYPE)
    healthy, report = await source.health()
    body = (json.dumps(report, indent=2, sort_keys=True) + "\n").encode()
    return Response(HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE, body, "application/json")


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """(method, target) of the request; the headers are read and dropped (no route needs one)."""
    parts = (await _read_line(reader)).split(" ")
    if len(parts) != 3:
        raise BadRequest("not an HTTP/1.x request line")
    method, target, version = parts
    if not version.startswith("HTTP/1.") or not target.startswith("/"):
        raise BadRequest("not an HTTP/1.x request line")
    for _ in range(MAX_HEADERS):
        if not await _read_line(reader):
            return method, target
    raise BadRequest("too many header lines")


async def _read_line(reader: asyncio.StreamReader) -> str:
    try:
        line = await reader.readuntil(b"\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
        raise BadRequest("incomplete or over-long line") from error
    try:
        return line.decode("ascii").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise BadRequest("non-ASCII request") from error


def encode(response: Response) -> bytes:
    head = [
        f"HTTP/1.1 {response.status.value} {response.status.phrase}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    if response.allow:
        head.append(f"Allow: {response.allow}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + response.body


async def _serve(source: StatusSource, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        try:
            method, target = await asyncio.wait_for(read_request(reader), REQUEST_TIMEOUT_SECONDS)
            response = await route(source, method, target)
        except (BadRequest, ValueError):
            response = Response(HTTPStatus.BAD_REQUEST, b"bad request\n")
        except TimeoutError:
            response = Response(HTTPStatus.REQUEST_TIMEOUT, b"request timeout\n")
        writer.write(encode(response))
        await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_SECONDS)
    except (ConnectionError, TimeoutError):
        pass  # The client went away or stopped reading; nothing to tell it.
    except Exception:  # One request must never take the listener down.
        log.exception("http_request_failed")
    finally:
        writer.close()


async def start_http_server(source: StatusSource, host: str, port: int) -> asyncio.Server:
    """Bind the status listener; requests are served on the running loop."""

    def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Awaitable[None]:
        return _serve(source, reader, writer)

    return await asyncio.start_server(handle, host=host, port=port, limit=MAX_LINE_BYTES)
