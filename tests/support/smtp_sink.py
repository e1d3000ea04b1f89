"""A relay for the notifier to send to: a real aiosmtpd server in its own thread that records mail.

It can be told to refuse the next messages with a 4xx or 5xx reply, and stopped and started
again on the same port to play a relay that is down for a while. It counts the connections it
accepts (each received mail names the connection it came over), and it can close a connection
the way relays do: between two mails (an idle timeout, with or without a 421 reply first), or
in the middle of a mail's DATA, before or after it has taken the mail.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from tests.support.daemon import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    # The number of the connection (1, 2, ...) the mail came over.
    connection: int = 0

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class _Drop:
    """One planned connection loss, after `after` more accepted mails: between mails, or in a DATA."""

    after: int = 0
    reply: str | None = None
    in_data: bool = False
    keep: bool = False


@dataclass
class _Recorder:
    received: list[Received] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    recipient_refusals: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: int = 0
    open_connections: int = 0
    commands: Counter[str] = field(default_factory=Counter)
    drops: list[_Drop] = field(default_factory=list)

    def connection_opened(self) -> int:
        with self.lock:
            self.connections += 1
            self.open_connections += 1
            return self.connections

    def connection_closed(self) -> None:
        with self.lock:
            self.open_connections -= 1

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.commands["DATA"] += 1
            drop = self.drops[0] if self.drops else None
            cut = drop if drop is not None and drop.in_data and drop.after <= 0 else None
            if cut is not None:
                self.drops.pop(0)
                if cut.keep:
                    self._record(server, envelope)
            elif self.refusals:
                return self.refusals.pop(0)
            else:
                self._record(server, envelope)
                if drop is not None:
                    drop.after -= 1
                    if not drop.in_data and drop.after <= 0:
                        server.drop_pending = self.drops.pop(0)
        if cut is not None:
            await _hang_up(server, None)
        return "250 2.0.0 OK"

    def _record(self, server: Any, envelope: Any) -> None:
        connection = int(getattr(server, "connection_number", 0))
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content, connection)
        )

    async def _maybe_hang_up(self, server: Any, command: str) -> None:
        with self.lock:
            self.commands[command] += 1
        drop: _Drop | None = getattr(server, "drop_pending", None)
        if drop is not None:
            server.drop_pending = None
            await _hang_up(server, drop.reply)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        await self._maybe_hang_up(server, "MAIL")
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        with self.lock:
            self.commands["RCPT"] += 1
            if self.recipient_refusals:
                return self.recipient_refusals.pop(0)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        await self._maybe_hang_up(server, "RSET")
        return "250 OK"

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        await self._maybe_hang_up(server, "NOOP")
        return "250 OK"


async def _hang_up(server: Any, reply: str | None) -> None:
    """Close the connection (after `reply`, if any) and never answer the command being handled."""
    if reply is not None:
        await server.push(reply)
    server.transport.close()
    # connection_lost cancels the session's coroutine, and with it this wait.
    await asyncio.Event().wait()


class _CountingSMTP(SMTP):
    def __init__(self, recorder: _Recorder, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorder = recorder
        self.connection_number = 0
        self.drop_pending: _Drop | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.connection_number:
            self.connection_number = self.recorder.connection_opened()

    def connection_lost(self, error: Exception | None) -> None:
        try:
            super().connection_lost(error)
        finally:
            if self.connection_number:
                self.recorder.connection_closed()


class _CountingController(Controller):
    def __init__(self, recorder: _Recorder, **kwargs: Any) -> None:
        super().__init__(recorder, **kwargs)
        self.recorder = recorder

    def factory(self) -> SMTP:
        return _CountingSMTP(self.recorder, self.handler, **self.SMTP_kwargs)


class SmtpSink:
    def __init__(self, *, smtputf8: bool = False) -> None:
        self.port = free_port()
        self.smtputf8 = smtputf8
        self.recorder = _Recorder()
        self._controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        with self.recorder.lock:
            return list(self.recorder.received)

    @property
    def connections(self) -> int:
        """How many SMTP connections the sink has accepted (its readiness probe at start counts too)."""
        with self.recorder.lock:
            return self.recorder.connections

    @property
    def open_connections(self) -> int:
        """How many of them are open now."""
        with self.recorder.lock:
            return self.recorder.open_connections

    @property
    def commands(self) -> Counter[str]:
        """How many MAIL, RCPT, RSET, NOOP and DATA commands the sink has seen."""
        with self.recorder.lock:
            return Counter(self.recorder.commands)

    def refuse_next(self, reply: str, times: int = 1) -> None:
        """The next `times` messages get `reply` (e.g. "451 4.3.0 try later" or "550 5.1.1 no such user")."""
        with self.recorder.lock:
            self.recorder.refusals.extend([reply] * times)

    def refuse_next_recipient(self, reply: str, times: int = 1) -> None:
        """The next `times` RCPT commands get `reply` (e.g. "550 5.1.1 no such user")."""
        with self.recorder.lock:
            self.recorder.recipient_refusals.extend([reply] * times)

    def close_after(self, mails: int, reply: str | None = None) -> None:
        """After `mails` (at least 1) more accepted mails, the connection of the last one is closed at its
        next MAIL, RSET or NOOP: silently, or after `reply` (e.g. "421 4.4.2 idle timeout"), as a relay's
        idle timeout does. Planned losses (this and `cut_data`) take effect one after another."""
        with self.recorder.lock:
            self.recorder.drops.append(_Drop(after=mails, reply=reply))

    def cut_data(self, *, after: int = 0, keep: bool = False) -> None:
        """After `after` more accepted mails, the next DATA ends with the connection closed instead of
        a reply; `keep`: that mail is recorded first (the relay took it, its 250 was lost)."""
        with self.recorder.lock:
            self.recorder.drops.append(_Drop(after=after, in_data=True, keep=keep))

    def start(self) -> None:
        self._controller = _CountingController(
            self.recorder, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=self.smtputf8
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
            with self.recorder.lock:  # the server and its loop are gone, whatever was still open
                self.recorder.open_connections = 0
