"""Waiting for the first of several things (stop, new work, a deadline), without polling (tier 2)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def wait_first(*awaitables: Awaitable[object], timeout: float | None = None) -> None:
    """Return when any of `awaitables` finishes or `timeout` passes; the others are cancelled."""
    waiters = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
