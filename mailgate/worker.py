"""InboundWorker: claim a queued message, parse it off the loop, file it in one transaction (tier 3).

The flow of one message: claim (own short transaction, counts the attempt) -> parse within
limits -> store attachment blobs -> file into a ticket and mark the row done, all in one
transaction. A message that cannot be processed is kept as failed with the reason; the worker
goes on with the next one.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailgate.agent_mail import AgentDesk
from mailgate.clock import Clock
from mailgate.cpu_share import lower_this_thread
from mailgate.domain.message import ParsedMessage
from mailgate.errors import PermanentFailure, TemporaryFailure
from mailgate.filing import Arrival, FilingOutcome, FilingPolicy, file_message
from mailgate.mail.classify import parse_delivery_report
from mailgate.mail.limits import ParseLimits
from mailgate.mail.parse import parse_message
from mailgate.mail.tokens import outbox_of_bounce_address
from mailgate.metrics import Metrics
from mailgate.store import inbound
from mailgate.store.blobs import BlobStore, BlobsWritten
from mailgate.store.transaction import Store
from mailgate.thread_order import ThreadOrder
from mailgate.threading import candidate_message_ids, find_subject_tag
from mailgate.triage import Triage
from mailgate.waiting import wait_first

log = structlog.get_logger("mailgate.worker")

# One trip to a worker thread handles at most this many messages, or this many seconds of them,
# before the loop hears of them (the outbox is woken, the scheduler looks again).
RUN_MESSAGES = 16
RUN_SECONDS = 0.1
# A reply waits this long for older mail in other workers' hands (filing takes milliseconds),
# then goes back to the queue and is tried again after the pause.
IN_FLIGHT_WAIT_SECONDS = 0.2
IN_FLIGHT_PAUSE_SECONDS = 0.02


@dataclass(frozen=True)
class WorkerSettings:
    policy: FilingPolicy
    limits: ParseLimits
    max_attempts: int = 3
    idle_poll_seconds: float = 1.0
    max_backoff_seconds: float = 30.0
    # Who claims: several instances may share a PostgreSQL queue, and a claim older than
    # `claim_timeout` belongs to an instance that died.
    owner: str = ""
    claim_timeout: timedelta = timedelta(minutes=5)


class InboundWorker:
    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        clock: Clock,
        settings: WorkerSettings,
        triage: Triage,
        on_filed: Callable[[], None] | None = None,
        agent_desk: AgentDesk | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.triage = triage
        self.agent_desk = agent_desk
        # Called on the loop after each filed message, which may have queued mail to send.
        self.on_filed = on_filed
        self._last_sweep: datetime | None = None
        self.blobs = blobs
        self.clock = clock
        self.settings = settings
        self.wakeup = asyncio.Event()
        self._seemed_empty = False
        self.thread_order = ThreadOrder()
        # Filing runs in a thread of its own, at a lower priority than SMTP acceptance (cpu_share.py).
        self._filing_thread = ThreadPoolExecutor(1, thread_name_prefix="filing", initializer=lower_this_thread)

    def close(self) -> None:
        """End the filing thread and the attachment writer (after the last run)."""
        self._filing_thread.shutdown(wait=True)
        self.blobs.close()

    def notify(self) -> None:
        """New work was queued; wake the worker now instead of at the next poll."""
        self._seemed_empty = False
        self.wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Process messages until `stop` is set; the current message is always finished."""
        backoff = 0.0
        while not stop.is_set():
            self.wakeup.clear()
            try:
                worked = await self.process_some(stop)
                backoff = 0.0
            except TemporaryFailure as error:
                backoff = min(max(backoff * 2, 0.5), self.settings.max_backoff_seconds)
                log.warning("worker_backing_off", error=str(error), seconds=backoff)
                await wait_first(stop.wait(), timeout=backoff)
                continue
            if not worked:
                await self._requeue_abandoned()
                await wait_first(stop.wait(), self.wakeup.wait(), timeout=self.settings.idle_poll_seconds)

    async def _requeue_abandoned(self) -> None:
        """Now and then, take back messages claimed by an instance that died (shared databases)."""
        now = self.clock.now()
        if self._last_sweep is not None and now - self._last_sweep < timedelta(seconds=30):
            return
        self._last_sweep = now
        count = await self.store.call(inbound.requeue_stale, now - self.settings.claim_timeout)
        if count:
            log.warning("inbound_requeued_from_dead_worker", count=count)

    async def run_until_idle(self) -> int:
        """Process until the queue is empty; returns how many messages were handled."""
        count = 0
        while await self.process_one():
            count += 1
        return count

    async def process_one(self) -> bool:
        """Claim and handle one message; False when nothing was queued."""
        return await self.process_some(asyncio.Event(), limit=1) == 1

    async def process_some(self, stop: asyncio.Event, limit: int = RUN_MESSAGES) -> int:
        """Handle queued messages one after another in one worker thread, up to `limit` of them
        or RUN_SECONDS, or until `stop`; returns how many. Under load this saves the event loop a
        round trip per message; each message is still claimed and filed in its own transactions."""
        if self._seemed_empty and not await self.store.call_read(inbound.has_queued):
            # Idle polls look without taking the write lock the acceptance side needs.
            return 0
        run = contextvars.copy_context().run
        handled = await asyncio.get_running_loop().run_in_executor(
            self._filing_thread, run, self._claim_and_handle_some, stop, limit
        )
        self._seemed_empty = handled == 0
        if handled and self.on_filed is not None:
            self.on_filed()
        return handled

    def _claim_and_handle_some(self, stop: asyncio.Event, limit: int) -> int:
        """In a worker thread: claim and handle messages one by one. While more are to come in this
        run, a message's filing transaction also claims the next one (one transaction per message
        instead of two); a message claimed so is always handled, even once `stop` is set."""
        deadline = time.monotonic() + RUN_SECONDS
        handled = 0
        claimed: inbound.InboundItem | None = None
        # Reading an asyncio.Event's flag from this thread is safe; it is only ever set on the loop.
        while claimed is not None or (handled < limit and not stop.is_set()):
            item = claimed or self._claim()
            if item is None:
                break
            more = handled + 1 < limit and not stop.is_set() and time.monotonic() < deadline
            with structlog.contextvars.bound_contextvars(inbound_id=item.id):
                claimed = self._handle(item, claim_next=more)
            handled += 1
        return handled

    def _claim(self) -> inbound.InboundItem | None:
        return self.store.run_repeatable(
            inbound.claim_next, self.settings.max_attempts, self.clock.now(), self.settings.owner
        )

    def _handle(self, item: inbound.InboundItem, *, claim_next: bool = False) -> inbound.InboundItem | None:
        """Runs in a worker thread: parse, store blobs, file; any failure is kept with its reason.

        claim_next: the filing transaction also claims the next queued message, returned here
        (its attempt is counted in the same commit that finishes this one); None when there is
        none, or the message took another way (failed, deferred, put back)."""
        started = time.perf_counter()
        try:
            parsed = parse_message(item.raw, self.settings.limits)
        except PermanentFailure as error:
            self._fail(item, f"rejected: {error}")
            return None
        except Exception as error:  # One catch-all per unit of work: a parser bug must not stop the worker.
            log.exception("parse_crashed", error_type=type(error).__name__)
            self._fail(item, f"parser error: {type(error).__name__}: {error}"[:500])
            return None
        with structlog.contextvars.bound_contextvars(message_id=parsed.message_id):
            if self._answers_mail_still_in_flight(item, parsed):
                return None
            if self.metrics is not None and item.attempts == 1 and item.envelope.source in ("pipe", "imap"):
                # Piped mail is queued by another process and the IMAP pollers keep no counter: count it here.
                self.metrics.received.inc(item.envelope.source)
            try:
                # Written while the message is filed; its transaction waits for them before committing.
                blobs = self.blobs.start_writing([attachment.data for attachment in parsed.attachments])
                self.triage.split_texts_ahead(parsed)
                outcome, following = self._file(item, parsed, claim_next, blobs)
            except TemporaryFailure:
                self._release(item)
                raise
            except Exception as error:  # The message is kept as failed; the worker goes on.
                log.exception("filing_crashed", error_type=type(error).__name__)
                self._fail(item, f"internal error: {type(error).__name__}: {error}"[:500])
                return None
            elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
            log.info(
                "inbound_processed",
                result=outcome.result,
                ticket=outcome.ticket_number,
                ms=elapsed_ms,
                note=outcome.note,
            )
            if self.metrics is not None:
                self.metrics.processed.inc(item.envelope.source)
                self.metrics.latency.observe(time.perf_counter() - started)
        return following

    def _answers_mail_still_in_flight(self, item: inbound.InboundItem, parsed: ParsedMessage) -> bool:
        """Mail of one thread is filed in arrival order, also with several workers or instances.

        A mail that may belong to an existing thread (it names a parent message, carries our
        subject tag or is addressed to a tagged address of ours: replies, agents' mail, bounces)
        waits while an older message that may be of its thread (thread_order.py) is still queued
        or being filed by a live worker: its request, or an earlier reply in its thread. New
        requests never wait. Past IN_FLIGHT_WAIT_SECONDS it goes back to the queue for a moment.
        True when it was put back."""
        if not self._may_join_a_thread(item, parsed):
            return False
        policy = self.settings.policy
        where = {"subject_tag": policy.subject_tag, "domain": policy.domain}
        keys = self.thread_order.keys_of(parsed, item.envelope.rcpt_tos, **where)
        deadline = time.monotonic() + IN_FLIGHT_WAIT_SECONDS
        pause = 0.0005
        while True:
            alive_since = self.clock.now() - self.settings.claim_timeout
            check = self.thread_order.older_of_its_thread_in_flight
            if not self.store.read(check, item.id, keys, alive_since, **where):
                return False
            if time.monotonic() >= deadline:
                break
            time.sleep(pause)
            pause = min(pause * 2, 0.005)
        log.info("inbound_deferred", reason="an older message of its thread may still be being filed")
        self.store.run_repeatable(inbound.release, item.id)
        time.sleep(IN_FLIGHT_PAUSE_SECONDS)
        return True

    def _may_join_a_thread(self, item: inbound.InboundItem, parsed: ParsedMessage) -> bool:
        if candidate_message_ids(parsed.in_reply_to, parsed.references):
            return True
        if find_subject_tag(parsed.subject, self.settings.policy.subject_tag) is not None:
            return True
        return any("+" in recipient.partition("@")[0] for recipient in item.envelope.rcpt_tos)

    def _file(
        self, item: inbound.InboundItem, parsed: ParsedMessage, claim_next: bool, blobs: BlobsWritten
    ) -> tuple[FilingOutcome, inbound.InboundItem | None]:
        try:
            return self.store.run_repeatable(self._file_in_session, item, parsed, claim_next, blobs)
        except IntegrityError:
            # Another worker stored the same Message-ID between our look-up and our insert: run
            # again, and the duplicate check now sees it.
            return self.store.run_repeatable(self._file_in_session, item, parsed, claim_next, blobs)

    def _arrival(self, item: inbound.InboundItem, parsed: ParsedMessage) -> Arrival:
        """What the envelope and the raw bytes say beyond the parsed message: bounces, the null sender."""
        secret = self.settings.policy.secret
        bounce_ids = [i for r in item.envelope.rcpt_tos if (i := outbox_of_bounce_address(secret, r)) is not None]
        content_type = parsed.header("content-type")
        report = None
        if content_type and "multipart/report" in content_type[0].lower():
            report = parse_delivery_report(item.raw)
        smtp = item.envelope.source in ("smtp", "lmtp")
        return Arrival(
            inbound_id=item.id,
            recipients=item.envelope.rcpt_tos,
            envelope_sender=item.envelope.mail_from if smtp else None,
            bounce_outbox_id=bounce_ids[0] if bounce_ids else None,
            delivery_report=report,
            raw=item.raw,
        )

    def _file_in_session(
        self, session: Session, item: inbound.InboundItem, parsed: ParsedMessage, claim_next: bool, blobs: BlobsWritten
    ) -> tuple[FilingOutcome, inbound.InboundItem | None]:
        now = self.clock.now()
        outcome = file_message(
            session,
            parsed,
            self._arrival(item, parsed),
            policy=self.settings.policy,
            triage=self.triage,
            now=now,
            agent_desk=self.agent_desk,
        )
        state = inbound.IGNORED if outcome.result == "ignored" else inbound.DONE
        error = outcome.note if state == inbound.IGNORED else None
        inbound.finish(session, item.id, state, now, error=error, ticket_number=outcome.ticket_number)
        following = None
        if claim_next:
            following = inbound.claim_next(session, self.settings.max_attempts, now, self.settings.owner)
        blobs.wait()  # no commit names an attachment that is not on disk
        return outcome, following

    def _fail(self, item: inbound.InboundItem, reason: str) -> None:
        log.warning("inbound_failed", reason=reason)
        self.store.run(inbound.finish, item.id, inbound.FAILED, self.clock.now(), error=reason)
        if self.metrics is not None:
            self.metrics.failed.inc(item.envelope.source)

    def _release(self, item: inbound.InboundItem) -> None:
        try:
            self.store.run(inbound.release, item.id)
        except TemporaryFailure:
            log.warning("inbound_release_failed", note="the message is queued again at the next start")
