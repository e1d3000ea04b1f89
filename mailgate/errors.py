"""The exceptions mailgate raises across layers (stdlib only).

Failures come in three kinds, as in Request Tracker: temporary (retry later), permanent (the
input will never work) and bugs (anything else, logged with a traceback and kept as failed).
"""

from __future__ import annotations

import errno


class MailgateError(Exception):
    """Base class of every error mailgate raises on purpose."""


class ConfigError(MailgateError):
    """A configuration value is missing, unknown or malformed; names the key path."""

    def __init__(self, key: str, expected: str, got: object = None) -> None:
        self.key = key
        self.expected = expected
        self.got = got
        found = "" if got is None else f", got {got!r}"
        super().__init__(f"{key}: expected {expected}{found}")


class TemporaryFailure(MailgateError):
    """The operation may succeed later (database busy or down, relay unreachable)."""


class StorageFull(TemporaryFailure):
    """The disk or database is full; SMTP answers 452 4.3.1 so the client retries later."""


class PermanentFailure(MailgateError):
    """The input can never be processed as it is (malformed or hostile mail, bad command)."""


class MessageRejected(PermanentFailure):
    """A message refused by a limit or rule, with the reason an operator can read."""


def storage_failure(error: OSError, *, full: str, failed: str) -> TemporaryFailure:
    """An OSError of a write as the failure to raise: StorageFull ("`full`: ...") for a full disk
    or quota, else TemporaryFailure ("`failed`: ...")."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"{full}: {error}")
    return TemporaryFailure(f"{failed}: {error}")
