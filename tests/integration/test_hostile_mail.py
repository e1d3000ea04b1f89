"""Hostile mail through the real listener: each is kept as failed or stored safely, and others keep being served."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import drain, inbound_rows, ticket, tickets
from tests.support.mailfactory import make_mail
from tests.support.smtp_client import send

HEAD = b"From: attacker@evil.example\r\nTo: support@example.com\r\nSubject: hostile\r\nMessage-ID: <h@evil.example>\r\n"


def deep_nesting(depth: int) -> bytes:
    raw = HEAD + b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
    for level in range(1, depth):
        raw += f"--b{level - 1}\r\nContent-Type: multipart/mixed; boundary=b{level}\r\n\r\n".encode()
    return raw + b"--b" + str(depth - 1).encode() + b"--\r\n"


def many_parts(count: int) -> bytes:
    part = b"--sep\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return HEAD + b"Content-Type: multipart/mixed; boundary=sep\r\n\r\n" + part * count + b"--sep--\r\n"


def many_addresses(count: int) -> bytes:
    addresses = ",\r\n ".join(f"user{i}@example.net" for i in range(count)).encode()
    return b"From: a@evil.example\r\nTo: support@example.com,\r\n " + addresses + b"\r\nSubject: many\r\n\r\nhi\r\n"


def huge_header(size: int) -> bytes:
    folded = b"\r\n ".join([b"x" * 76] * (size // 79))
    return HEAD + b"X-Padding: " + folded + b"\r\n\r\nbody\r\n"


HOSTILE = {
    "nested 10,000 deep": (lambda: deep_nesting(10_000), "MIME"),
    "100,000 sibling parts": (lambda: many_parts(100_000), "part"),
    "50,000 addresses in To": (lambda: many_addresses(50_000), "address"),
    "1 MB header": (lambda: huge_header(1_000_000), "header"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_hostile_mail_is_kept_as_failed_quickly_while_others_are_served(app: Any, name: str) -> None:
    """The hostile message is kept as failed with a reason; a normal mail sent beside it still becomes a ticket."""
    build, reason_word = HOSTILE[name]
    port = app.smtp_address[1]
    await asyncio.to_thread(send, port, build(), sender="attacker@evil.example")
    normal = asyncio.create_task(asyncio.to_thread(send, port, make_mail(subject="normal mail")))
    started = time.perf_counter()
    while not any(r.state == "failed" for r in inbound_rows(app)):
        assert time.perf_counter() - started < 10, "hostile mail not handled"
        await asyncio.sleep(0.02)
    await normal
    (failed,) = [r for r in inbound_rows(app) if r.state == "failed"]
    assert reason_word.lower() in (failed.last_error or "").lower()
    await drain(app)
    assert [t.subject for t in tickets(app)] == ["normal mail"]


async def test_worker_rejects_each_hostile_message_within_a_second(app: Any) -> None:
    """Parsing limits refuse every hostile shape in well under a second of worker time."""
    from mailgate.errors import MessageRejected
    from mailgate.mail.limits import ParseLimits
    from mailgate.mail.parse import parse_message

    for name, (build, _) in HOSTILE.items():
        raw = build()
        started = time.perf_counter()
        with pytest.raises(MessageRejected):
            parse_message(raw, ParseLimits())
        assert time.perf_counter() - started < 1.0, name


async def test_attachment_names_never_reach_the_filesystem(app: Any, tmp_path: Path) -> None:
    """Traversal and bidi-override filenames are stored under hash names, their display names cleaned."""
    raw = make_mail(
        attachments=[
            ("../../etc/x", "text/plain", b"not a cron job"),
            ("evil\u202efdp.exe", "application/octet-stream", b"MZ fake"),
        ]
    )
    await asyncio.to_thread(send, app.smtp_address[1], raw)
    await drain(app)
    (row,) = tickets(app)
    names = [a["filename"] for a in ticket(app, row.number).messages[0].attachments]
    assert all("/" not in n and "\\" not in n and "\u202e" not in n and not n.startswith(".") for n in names)
    assert not (tmp_path / "etc").exists() and not (tmp_path.parent / "etc").exists()
    stored = [p for p in (tmp_path / "data" / "attachments").rglob("*") if p.is_file()]
    assert len(stored) == 2 and all(len(p.name) == 64 for p in stored)
