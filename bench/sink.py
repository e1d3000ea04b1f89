"""The relay every daemon sends to: tests/support/smtp_sink.py's aiosmtpd server on 127.0.0.1.

The benchmark keeps no mail bytes: each received mail is counted under its Message-ID, so a run
can tell whether every outbox row arrived exactly once, and a long soak stays small in memory.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.support.smtp_sink import SmtpSink, _Recorder

_FOLD = re.compile(rb"\r?\n[ \t]+")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*<?([^<>\s]+)>?", re.IGNORECASE | re.MULTILINE)


def header_message_id(data: bytes) -> str | None:
    """The Message-ID of a mail (without angle brackets), from its header block; None if it has none."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = _MESSAGE_ID.search(_FOLD.sub(b" ", head))
    return match.group(1).decode("ascii", "replace") if match else None


@dataclass
class _CountingRecorder(_Recorder):
    """Counts mails by Message-ID instead of keeping them; refusals work as in the test sink."""

    total: int = 0
    without_message_id: int = 0
    message_ids: Counter[str] = field(default_factory=Counter)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message_id = header_message_id(envelope.original_content or b"")
        with self.lock:
            if self.refusals:
                return self.refusals.pop(0)
            self.total += 1
            if message_id is None:
                self.without_message_id += 1
            else:
                self.message_ids[message_id] += 1
        return "250 2.0.0 OK"


class Sink:
    """Counts everything it received; `deliveries` says how often each Message-ID arrived."""

    def __init__(self) -> None:
        self.server = SmtpSink()
        self.recorder = _CountingRecorder()
        self.server.recorder = self.recorder

    def __enter__(self) -> Sink:
        self.server.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.stop()

    @property
    def port(self) -> int:
        return self.server.port

    def count(self) -> int:
        with self.recorder.lock:
            return self.recorder.total

    def deliveries(self, message_ids: Iterable[str]) -> dict[str, int]:
        """How many times each of `message_ids` was received (0 when never)."""
        with self.recorder.lock:
            return {message_id: self.recorder.message_ids.get(message_id, 0) for message_id in message_ids}

    def without_message_id(self) -> int:
        with self.recorder.lock:
            return self.recorder.without_message_id

    def forget(self) -> None:
        """Drop the per-Message-ID counts (a soak would otherwise keep one entry per mail sent)."""
        with self.recorder.lock:
            self.recorder.message_ids.clear()
