"""A relay for the notifier to send to: a real aiosmtpd server in its own thread that records mail.

It can be told to refuse the next messages with a 4xx or 5xx reply, and stopped and started
again on the same port to play a relay that is down for a while.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.daemon import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class _Recorder:
    received: list[Received] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.refusals:
                return self.refusals.pop(0)
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 OK"


class SmtpSink:
    def __init__(self) -> None:
        self.port = free_port()
        self.recorder = _Recorder()
        self._controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        with self.recorder.lock:
            return list(self.recorder.received)

    def refuse_next(self, reply: str, times: int = 1) -> None:
        """The next `times` messages get `reply` (e.g. "451 4.3.0 try later" or "550 5.1.1 no such user")."""
        with self.recorder.lock:
            self.recorder.refusals.extend([reply] * times)

    def start(self) -> None:
        self._controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
