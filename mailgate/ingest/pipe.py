"""`mailgate deliver`: one message from an MTA pipe on stdin into the inbound queue.

Exit codes follow sysexits.h, which MTAs understand: 0 accepted, 65 bad data (empty or
oversized), 67 unknown recipient, 75 temporary failure (the MTA keeps the mail and retries).
This module imports nothing heavy: an MTA starts one process per message.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailgate.config import Config
from mailgate.errors import TemporaryFailure
from mailgate.rules.routing import resolve_mailbox
from mailgate.store.spool import enqueue_raw

EX_OK, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL = 0, 65, 67, 75


@dataclass(frozen=True)
class DeliveryResult:
    exit_code: int
    message: str


def deliver(config: Config, raw: bytes, *, recipient: str | None, sender: str = "") -> DeliveryResult:
    """Queue `raw` durably; the exit code tells the MTA whether it may forget the message."""
    if not raw.strip():
        return DeliveryResult(EX_DATAERR, "no message on standard input")
    limit = config.smtp.max_message_bytes
    if len(raw) > limit:
        return DeliveryResult(EX_DATAERR, f"message of {len(raw)} bytes exceeds smtp.max_message_bytes ({limit})")
    if recipient is not None and resolve_mailbox(recipient, config.mailboxes) is None:
        return DeliveryResult(EX_NOUSER, f"<{recipient}>: no such mailbox here")
    try:
        inbound_id = enqueue_raw(
            config.storage.database_url,
            raw,
            source="pipe",
            mail_from=sender,
            rcpt_tos=(recipient,) if recipient else (),
            busy_timeout_seconds=config.storage.busy_timeout_seconds,
        )
    except TemporaryFailure as error:
        return DeliveryResult(EX_TEMPFAIL, str(error))
    return DeliveryResult(EX_OK, f"queued as {inbound_id}")
