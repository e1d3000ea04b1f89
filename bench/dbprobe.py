"""Read-only look-ups in the daemon's database, with the plain drivers (stdlib sqlite3, psycopg).

The harness polls these while the daemon works, so each is one cheap query on an index or a
small table. SQLite is opened read-only in WAL mode: readers never block the daemon's writer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

FINAL_STATES = ("done", "ignored", "failed")


class DbProbe:
    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.postgres = database_url.startswith("postgresql")
        self._connection: Any = None

    def _connect(self) -> Any:
        if self._connection is None:
            if self.postgres:
                import psycopg

                self._connection = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            else:
                import sqlite3

                path = unquote(self.url.split(":///", 1)[1])
                self._connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        return self._connection

    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        if not self.postgres:
            sql = sql.replace("%s", "?")
        return list(self._connect().execute(sql, params).fetchall())

    def _one(self, sql: str, params: tuple[object, ...] = ()) -> int:
        rows = self._rows(sql, params)
        return int(rows[0][0] or 0) if rows else 0

    def _counts(self, table: str) -> dict[str, int]:
        rows = self._rows(f"SELECT state, count(*) FROM {table} GROUP BY state")
        return {str(state): int(count) for state, count in rows}

    def inbound_states(self) -> dict[str, int]:
        return self._counts("inbound")

    def inbound_final(self) -> int:
        return self._one("SELECT count(*) FROM inbound WHERE state IN ('done', 'ignored', 'failed')")

    def tickets_from(self, first_number: int, below: int) -> int:
        return self._one("SELECT count(*) FROM tickets WHERE number >= %s AND number < %s", (first_number, below))

    def tickets_without_acknowledgement(self, first_number: int, below: int) -> int:
        return self._one(
            "SELECT count(*) FROM tickets t WHERE t.number >= %s AND t.number < %s AND NOT EXISTS "
            "(SELECT 1 FROM outbox o WHERE o.ticket_id = t.id AND o.kind = 'acknowledgement')",
            (first_number, below),
        )

    def outbox_states(self) -> dict[str, int]:
        return self._counts("outbox")

    def outbox_unsent(self) -> int:
        return self._one("SELECT count(*) FROM outbox WHERE state NOT IN ('sent', 'failed', 'bounced')")

    def message_filed(self, message_id: str) -> bool:
        bare = message_id.strip().removeprefix("<").removesuffix(">")
        return bool(self._rows("SELECT ticket_id FROM messages WHERE message_id = %s", (bare,)))

    def inbound_rows(self) -> int:
        return self._one("SELECT count(*) FROM inbound")

    # The exactly-once checks after a load (several daemons on one database): whole-table reads,
    # run once when the daemons are idle again.

    def attempts(self, table: str) -> dict[int, int]:
        """How many rows of `inbound` or `outbox` were claimed how many times."""
        rows = self._rows(f"SELECT attempts, count(*) FROM {table} GROUP BY attempts")
        return {int(attempts): int(count) for attempts, count in rows}

    def claims(self, table: str) -> dict[str, dict[str, int]]:
        """Rows of `inbound` or `outbox` per owner (claimed_by) and state."""
        found: dict[str, dict[str, int]] = {}
        for owner, state, count in self._rows(f"SELECT claimed_by, state, count(*) FROM {table} GROUP BY 1, 2"):
            found.setdefault(str(owner or ""), {})[str(state)] = int(count)
        return found

    def incoming_messages(self) -> list[tuple[str, int]]:
        """(Message-ID, ticket id) of every stored incoming message, one entry per row."""
        return [
            (str(message_id), int(ticket_id))
            for message_id, ticket_id in self._rows("SELECT message_id, ticket_id FROM messages WHERE direction = 'in'")
        ]

    def inbound_rows_with_messages(self) -> dict[str, int]:
        """Processed inbound rows without a message row, and rows that gave more than one message."""
        return {
            "done_without_message": self._one(
                "SELECT count(*) FROM inbound i WHERE i.state = 'done' AND NOT EXISTS "
                "(SELECT 1 FROM messages m WHERE m.inbound_id = i.id)"
            ),
            "with_several_messages": self._one(
                "SELECT count(*) FROM (SELECT inbound_id FROM messages WHERE inbound_id IS NOT NULL "
                "GROUP BY inbound_id HAVING count(*) > 1) AS several"
            ),
        }

    def outbox_rows(self) -> list[tuple[str, str, int, str]]:
        """(message_id, state, attempts, claimed_by) of every outbox row."""
        return [
            (str(message_id), str(state), int(attempts), str(owner or ""))
            for message_id, state, attempts, owner in self._rows(
                "SELECT message_id, state, attempts, claimed_by FROM outbox"
            )
        ]

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
