"""OutboxWorker: claim due rows -> render -> send -> mark sent, retry later, or failed (tier 3).

Rows are claimed a batch at a time in one short transaction and sent with no transaction open;
each row is marked as soon as the relay has answered for it. A process killed mid-send leaves
the row `sending`; it is sent again after restart with the same Message-ID, so a duplicate, if
the first attempt did arrive, is recognisably the same mail.

While there is work, consecutive mails share one relay connection (see notify/relay.py); it is
closed as soon as a claim finds nothing due, when the database fails, and at shutdown, so no
connection waits open through an idle period.

The circuit breaker counts automatic mail sent in the last minute once per claimed batch, in
the claiming transaction (so the count comes from the database, also after a restart and with
other instances sending), and adds the batch's own sends as they happen.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from mailgate.clock import Clock
from mailgate.domain.message import Address
from mailgate.errors import PermanentFailure, TemporaryFailure
from mailgate.mail.compose import OutgoingAttachment, OutgoingMail, compose
from mailgate.mail.tokens import bounce_address
from mailgate.metrics import Metrics
from mailgate.notify.render import TemplateRenderer
from mailgate.store import outbox
from mailgate.store.blobs import BlobStore
from mailgate.store.transaction import Store
from mailgate.waiting import wait_first

log = structlog.get_logger("mailgate.outbox")


class Relay(Protocol):
    def send(self, envelope_from: str, recipient: str, data: bytes) -> None: ...

    def close(self) -> None: ...


# The circuit breaker's window: automatic mail counted over the last minute.
BREAKER_WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class OutboxSettings:
    secret: bytes
    bounce_mailbox: str
    loop_token: str
    max_age: timedelta = timedelta(days=2)
    max_automatic_per_minute: int = 120
    batch_size: int = 20
    idle_poll_seconds: float = 1.0
    owner: str = ""
    claim_timeout: timedelta = timedelta(minutes=5)


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff: 30 s, 1 min, 2 min, ... capped at 1 hour."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def _address(value: dict[str, str]) -> Address:
    return Address(email=value["email"], name=value.get("name", ""))


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        relay: Relay,
        renderer: TemplateRenderer,
        blobs: BlobStore,
        clock: Clock,
        settings: OutboxSettings,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.relay = relay
        self.renderer = renderer
        self.blobs = blobs
        self.clock = clock
        self.settings = settings
        self.wakeup = asyncio.Event()
        self._last_sweep: datetime | None = None
        # The relay whose connection the current run of batches uses (`relay` may be swapped by a reload).
        self._relay_in_use: Relay | None = None
        # Automatic mails sent in the breaker's window: seeded by each claim, raised by each send.
        self._automatic_sent = 0

    def notify(self) -> None:
        self.wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Send until `stop` is set; the mail being sent is always finished first."""
        try:
            while not stop.is_set():
                self.wakeup.clear()
                try:
                    sent = await self.process_batch()
                except TemporaryFailure as error:
                    log.warning("outbox_backing_off", error=str(error))
                    sent = 0
                if not sent:
                    await self.close_relay()
                    await self._requeue_abandoned()
                    await wait_first(stop.wait(), self.wakeup.wait(), timeout=self.settings.idle_poll_seconds)
        finally:
            await self.close_relay()

    async def _requeue_abandoned(self) -> None:
        """Now and then, take back mail claimed by an instance that died mid-send (shared databases)."""
        now = self.clock.now()
        if self._last_sweep is not None and now - self._last_sweep < timedelta(seconds=30):
            return
        self._last_sweep = now
        count = await self.store.call(outbox.requeue_stale, now - self.settings.claim_timeout)
        if count:
            log.warning("outbox_requeued_from_dead_worker", count=count)

    async def run_until_idle(self) -> int:
        """Send every due row (tests and `outbox` commands); returns how many were handled."""
        total = 0
        try:
            while handled := await self.process_batch():
                total += handled
        finally:
            await self.close_relay()
        return total

    async def close_relay(self) -> None:
        """End the relay connection kept for the batch, if one is open (off the event loop: QUIT waits)."""
        if self._relay_in_use is not None:
            await asyncio.to_thread(self._close_relay)

    def _close_relay(self) -> None:
        relay, self._relay_in_use = self._relay_in_use, None
        if relay is not None:
            relay.close()

    def _relay(self) -> Relay:
        """The relay for the next mail; one swapped out by a reload has its connection closed first."""
        relay = self.relay
        if self._relay_in_use is not relay:
            self._close_relay()
            self._relay_in_use = relay
        return relay

    async def process_batch(self) -> int:
        """Claim up to `batch_size` due rows and handle them in order; returns how many were claimed.

        The relay connection is left open for the next batch; `close_relay` ends it.
        """
        now = self.clock.now()
        claimed = (
            await self.store.call(
                outbox.claim_rows, now, self.settings.batch_size, self.settings.owner, now - BREAKER_WINDOW
            )
        ).batch()
        self._automatic_sent = claimed.automatic_sent_in_window
        for item in claimed.items:
            with structlog.contextvars.bound_contextvars(outbox_id=item.id, message_id=item.message_id):
                await asyncio.to_thread(self._deliver, item)
        return len(claimed.items)

    def _deliver(self, item: outbox.OutboxItem) -> None:
        now = self.clock.now()
        if item.automatic and self._circuit_open():
            self.store.run(outbox.postpone, item.id, now + timedelta(minutes=1), "held by the circuit breaker")
            return
        try:
            data = self._build(item, now)
        except Exception as error:  # A broken template or payload: keep the row, say why, go on.
            log.exception("outbox_render_failed", error_type=type(error).__name__)
            self.store.run(outbox.mark_failed, item.id, f"cannot render: {type(error).__name__}: {error}"[:500])
            self._count("render")
            return
        envelope_from = bounce_address(self.settings.secret, self.settings.bounce_mailbox, outbox_id=item.id)
        try:
            self._relay().send(envelope_from, item.recipient, data)
        except PermanentFailure as error:
            log.warning("outbox_send_failed", reply=str(error), permanent=True)
            self.store.run(outbox.mark_failed, item.id, str(error)[:1000])
            self._count("permanent")
        except TemporaryFailure as error:
            self._retry_or_give_up(item, str(error), now)
        else:
            if item.automatic:
                self._automatic_sent += 1
            # Lost in a power cut, the mark means one more send with the same Message-ID,
            # as a crash between the relay's 250 and the mark does: it need not wait for the disk.
            self.store.run_repeatable(outbox.mark_sent, item.id, self.clock.now())
            log.info("outbox_sent", kind=item.kind, attempts=item.attempts)
            if self.metrics is not None:
                self.metrics.outbox_sent.inc()

    def _count(self, failure: str) -> None:
        if self.metrics is not None:
            self.metrics.outbox_failures.inc(failure)

    def _retry_or_give_up(self, item: outbox.OutboxItem, reply: str, now: datetime) -> None:
        if now - item.created_at >= self.settings.max_age:
            log.warning("outbox_send_failed", reply=reply, permanent=False, gave_up=True)
            self.store.run(outbox.mark_failed, item.id, f"gave up after {self.settings.max_age}: {reply}"[:1000])
            self._count("gave_up")
            return
        when = now + retry_delay(item.attempts)
        log.info("outbox_send_deferred", reply=reply, retry_at=when.isoformat())
        self.store.run(outbox.schedule_retry, item.id, reply[:1000], when)
        self._count("deferred")

    def _circuit_open(self) -> bool:
        """More automatic mail per minute than configured means a loop somewhere: hold it all."""
        sent = self._automatic_sent
        if sent >= self.settings.max_automatic_per_minute:
            log.error(
                "outbox_circuit_open",
                sent_last_minute=sent,
                limit=self.settings.max_automatic_per_minute,
                note="automatic mail is held; mail written by agents still goes",
            )
            return True
        return False

    def _build(self, item: outbox.OutboxItem, now: datetime) -> bytes:
        payload: dict[str, Any] = item.payload
        rendered = self.renderer.render(payload["template"], payload["language"], payload["context"])
        tag = payload["context"].get("tag", "")
        subject = rendered.subject if tag in rendered.subject else f"{tag} {rendered.subject}".strip()
        mail = OutgoingMail(
            sender=_address(payload["from"]),
            to=_address(payload["to"]),
            cc=tuple(_address(a) for a in payload.get("cc", [])),
            reply_to=_address(payload["reply_to"]) if payload.get("reply_to") else None,
            subject=subject,
            text=rendered.text,
            html=rendered.html,
            message_id=item.message_id,
            in_reply_to=payload.get("in_reply_to"),
            references=tuple(payload.get("references", [])),
            automatic=payload.get("automatic"),
            loop_token=self.settings.loop_token,
            language=payload["language"],
            attachments=tuple(
                OutgoingAttachment(a["filename"], a["content_type"], self.blobs.get(a["sha256"]))
                for a in payload.get("attachments", [])
            ),
        )
        return compose(mail, now)
