"""A blocking smtplib client on loopback, for running in a thread beside the daemon's loop."""

from __future__ import annotations

import smtplib


def send(
    port: int,
    raw: bytes,
    *,
    sender: str = "alice@customer.example",
    recipients: tuple[str, ...] = ("support@example.com",),
    host: str = "127.0.0.1",
    lmtp: bool = False,
) -> None:
    """Send one message; raises smtplib's exceptions on any refusal."""
    client_class = smtplib.LMTP if lmtp else smtplib.SMTP
    with client_class(host, port, timeout=30) as client:
        client.ehlo() if not lmtp else client.ehlo_or_helo_if_needed()
        client.sendmail(sender, list(recipients), raw)


def send_all(port: int, messages: list[bytes], **kwargs: object) -> None:
    for raw in messages:
        send(port, raw, **kwargs)  # type: ignore[arg-type]
