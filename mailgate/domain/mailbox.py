"""The help desk's own addresses and its agents, as plain values (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A support address and the queue its mail lands in."""

    address: str
    queue: str
    language: str | None = None
    # A customer's mail to a ticket closed at most this many days ago reopens it; after that
    # (and with 0) it starts a new ticket linked to the old one.
    reopen_days: int = 0


@dataclass(frozen=True, slots=True)
class Agent:
    email: str
    name: str
    queues: tuple[str, ...] = ()
