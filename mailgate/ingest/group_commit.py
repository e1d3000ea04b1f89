"""Group commit for the inbound queue: concurrent messages share one durable commit.

Each SMTP session waits for the commit that holds its message before it answers 250, as before;
but while one commit is on its way to disk, the messages that arrive meanwhile gather and go
together in the next one. With one session nothing changes (a batch of one); with sixteen, one
fsync acknowledges many messages. A failed commit fails every message in it, and each session
answers 4xx: nothing is acknowledged that is not on disk.
"""

from __future__ import annotations

import asyncio

from mailgate.clock import Clock
from mailgate.store import inbound
from mailgate.store.transaction import Store

# One transaction holds at most this many messages; the rest wait for the next (bounded memory
# per commit, and a slow giant batch does not delay the first message in it for long).
MAX_BATCH = 64


class GroupCommitter:
    """`await enqueue(raw, envelope)` returns the message's id once its batch is committed."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._pending: list[tuple[bytes, inbound.Envelope, asyncio.Future[int]]] = []
        self._committer: asyncio.Task[None] | None = None
        self.batches = 0

    async def enqueue(self, raw: bytes, envelope: inbound.Envelope) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        # Its session may have gone away meanwhile; an unread failure is not worth a warning.
        future.add_done_callback(_mark_read)
        self._pending.append((raw, envelope, future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_pending(), name="inbound-group-commit")
        # Shielded: a session that goes away mid-commit must not cancel its neighbours' commit.
        return await asyncio.shield(future)

    async def idle(self) -> None:
        """Return once nothing waits to be committed (shutdown)."""
        while self._committer is not None:
            await asyncio.shield(self._committer)

    async def _commit_pending(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                messages = [(raw, envelope) for raw, envelope, _ in batch]
                try:
                    ids = await self.store.call(inbound.enqueue_many, messages, self.clock.now())
                except Exception as error:  # Every session of the batch answers for itself (4xx).
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                self.batches += 1
                for (_, _, future), inbound_id in zip(batch, ids, strict=True):
                    if not future.done():
                        future.set_result(inbound_id)
        finally:
            self._committer = None


def _mark_read(future: asyncio.Future[int]) -> None:
    if not future.cancelled():
        future.exception()
