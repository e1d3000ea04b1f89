"""Which configuration changes a SIGHUP applies and which wait for a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailgate.config import Config, build_config
from mailgate.lifecycle import effective_config, needs_restart

MAILBOXES = [{"address": "support@example.com", "queue": "support"}]
IMAP = [{"host": "imap.example.com", "username": "u", "password": "p", "queue": "support"}]


def config(tmp_path: Path, **sections: Any) -> Config:
    return build_config({"storage": {"data_dir": str(tmp_path)}, "mailboxes": MAILBOXES, **sections}, tmp_path)


def test_listener_changes_wait_for_a_restart_and_stay_in_force(tmp_path: Path) -> None:
    """A new listen address is reported and not applied; a new agent is applied."""
    old = config(tmp_path)
    new = config(tmp_path, smtp={"listen": "127.0.0.1:2600"}, agents=[{"email": "a@example.com"}])
    assert needs_restart(old, new) == ["smtp"]
    applied = effective_config(old, new)
    assert applied.smtp == old.smtp and applied.agent_addresses == {"a@example.com"}


def test_new_mailboxes_need_a_restart_only_for_pollers_bound_to_a_queue(tmp_path: Path) -> None:
    """An IMAP account with `queue` took its mailbox address at start, so changed mailboxes name imap."""
    more = [*MAILBOXES, {"address": "sales@example.com", "queue": "sales"}]
    assert needs_restart(config(tmp_path), config(tmp_path, mailboxes=more)) == []
    assert needs_restart(config(tmp_path, imap=IMAP), config(tmp_path, imap=IMAP, mailboxes=more)) == ["imap"]
