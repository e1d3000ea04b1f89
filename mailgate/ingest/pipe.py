"""`mailgate deliver`: one message from an MTA pipe on stdin into the inbound queue.

Exit codes follow sysexits.h, which MTAs understand: 0 accepted, 65 bad data (empty or
oversized), 67 unknown recipient, 75 temporary failure (the MTA keeps the mail and retries).

This module imports nothing heavy: an MTA starts one process per message. It does not even
import config.py, whose dataclasses, rules schema and template index take longer to import than
all the rest of the command: `read_delivery_config` reads the keys deliver uses, with the same
checks and messages as `load_config`. The other sections are left to `check-config` and
to the daemon, which refuses to start with a bad one; the mail waits in the queue meanwhile.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from mailgate.errors import ConfigError, TemporaryFailure
from mailgate.store.spool import enqueue_raw
from mailgate.toml_tables import TomlTable, email_address, positive_int, positive_number, read_toml_file

if TYPE_CHECKING:
    from mailgate.config import Config

EX_OK, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL = 0, 65, 67, 75

# The defaults of config.py; tests/unit/test_config_deliver.py holds both readers to the same values.
_DEFAULT_DATA_DIR = "mailgate-data"
_DEFAULT_MAILBOX = "support@example.com"
_DEFAULT_MAX_MESSAGE_BYTES = 25 * 1024 * 1024
_DATABASE_SCHEMES = ("sqlite:", "postgresql:", "postgresql+psycopg:")


class DeliveryConfig(NamedTuple):
    """The part of the configuration `deliver` uses."""

    database_url: str
    busy_timeout_seconds: float
    max_message_bytes: int
    # The [[mailboxes]] addresses, lower-cased as config.py keeps them.
    mailbox_addresses: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Config) -> DeliveryConfig:
        return cls(
            database_url=config.storage.database_url,
            busy_timeout_seconds=config.storage.busy_timeout_seconds,
            max_message_bytes=config.smtp.max_message_bytes,
            mailbox_addresses=tuple(mailbox.address for mailbox in config.mailboxes),
        )


class DeliveryResult(NamedTuple):
    exit_code: int
    message: str


def read_delivery_config(path: str | os.PathLike[str] | None) -> DeliveryConfig:
    """[storage], [smtp] max_message_bytes and the [[mailboxes]] addresses, as `load_config` reads them.

    None is the embedded default, with its data in ./mailgate-data. Errors are ConfigErrors
    naming the key, the same ones `load_config` raises for these keys.
    """
    data, base = read_toml_file(path) if path is not None else ({}, Path.cwd())
    root = TomlTable("", data)
    storage = root.table("storage")
    data_dir = Path(storage.get("data_dir", str, _DEFAULT_DATA_DIR, "a directory path"))
    if not data_dir.is_absolute():
        data_dir = base / data_dir
    default_url = f"sqlite:///{data_dir / 'mailgate.sqlite3'}"
    url = storage.get("database_url", str, default_url, 'a URL such as "sqlite:///PATH" or "postgresql://HOST/DB"')
    if not url.startswith(_DATABASE_SCHEMES):
        raise ConfigError(storage.key("database_url"), 'a "sqlite:///PATH" or "postgresql://..." URL', url)
    busy = storage.convert("busy_timeout_seconds", 5.0, "a positive number of seconds", positive_number)
    max_bytes = root.table("smtp").convert(
        "max_message_bytes", _DEFAULT_MAX_MESSAGE_BYTES, "a positive integer", positive_int
    )
    addresses = []
    for mailbox in root.tables("mailboxes"):
        address = mailbox.convert("address", "", "an email address", email_address)
        if not address:
            raise ConfigError(mailbox.key("address"), "an email address (the key is required)")
        addresses.append(address)
    return DeliveryConfig(url, busy, max_bytes, tuple(addresses) or (_DEFAULT_MAILBOX,))


def deliver(
    config: Config | DeliveryConfig, raw: bytes, *, recipient: str | None, sender: str = ""
) -> DeliveryResult:
    """Queue `raw` durably; the exit code tells the MTA whether it may forget the message."""
    if not isinstance(config, DeliveryConfig):
        config = DeliveryConfig.from_config(config)
    if not raw.strip():
        return DeliveryResult(EX_DATAERR, "no message on standard input")
    limit = config.max_message_bytes
    if len(raw) > limit:
        return DeliveryResult(EX_DATAERR, f"message of {len(raw)} bytes exceeds smtp.max_message_bytes ({limit})")
    if recipient is not None and not _is_mailbox(recipient, config.mailbox_addresses):
        return DeliveryResult(EX_NOUSER, f"<{recipient}>: no such mailbox here")
    try:
        inbound_id = enqueue_raw(
            config.database_url,
            raw,
            source="pipe",
            mail_from=sender,
            rcpt_tos=(recipient,) if recipient else (),
            busy_timeout_seconds=config.busy_timeout_seconds,
        )
    except TemporaryFailure as error:
        return DeliveryResult(EX_TEMPFAIL, str(error))
    return DeliveryResult(EX_OK, f"queued as {inbound_id}")


def _is_mailbox(recipient: str, addresses: tuple[str, ...]) -> bool:
    """Whether `recipient` reaches one of the mailboxes, plus-addressed or not (rules.routing decides)."""
    if recipient.strip().lower() in addresses:
        return True  # the usual case, decided without importing routing and its dataclasses
    from mailgate.rules.routing import base_address

    wanted = base_address(recipient)
    return any(base_address(address) == wanted for address in addresses)
