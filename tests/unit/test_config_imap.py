"""[[imap]] accounts: defaults, secrets kept out of repr and errors, and errors that name the key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailgate.config import build_config
from mailgate.errors import ConfigError

SECRET = "s3cret-Pa55"


def imap(tmp_path: Path, **account: Any) -> Any:
    """The accounts read from one [[imap]] table; a value of None leaves the key out."""
    base = {"host": "imap.example.com", "username": "support@example.com", "password": SECRET}
    table = {name: value for name, value in {**base, **account}.items() if value is not None}
    return build_config({"imap": [table]}, tmp_path).imap


def test_defaults_are_implicit_tls_inbox_and_move(tmp_path: Path) -> None:
    """An account with host, username and password gets the documented defaults."""
    (account,) = imap(tmp_path)
    assert (account.port, account.tls, account.folder, account.after_import) == (993, "implicit", "INBOX", "move")
    assert (account.processed_folder, account.poll_seconds, account.idle_seconds) == ("mailgate/processed", 60, 600)
    assert (account.batch_size, account.auth, account.queue) == (100, "password", None)
    assert account.key == "support@example.com@imap.example.com:993/INBOX"


def test_starttls_defaults_to_port_143(tmp_path: Path) -> None:
    """STARTTLS and plaintext default to port 143."""
    assert imap(tmp_path, tls="starttls")[0].port == 143


def test_password_is_in_no_repr(tmp_path: Path) -> None:
    """The password never shows in repr, so no log line or traceback of the config carries it."""
    config = build_config(
        {"imap": [{"host": "imap.example.com", "username": "u", "password": SECRET}]},
        tmp_path,
    )
    assert SECRET not in repr(config)


def test_password_file_is_read_at_load(tmp_path: Path) -> None:
    """password_file, relative to the config directory, is read once; its trailing newline is dropped."""
    (tmp_path / "imap.secret").write_text(SECRET + "\n")
    (account,) = imap(tmp_path, password=None, password_file="imap.secret")
    assert account.password == SECRET


def test_xoauth2_splits_the_token_command(tmp_path: Path) -> None:
    """token_command is split like a shell line, to run without a shell."""
    (account,) = imap(tmp_path, password=None, auth="xoauth2", token_command="get-token --user 'a b'")
    assert account.token_command == ("get-token", "--user", "a b")
    assert "get-token" not in repr(account)


def test_queue_must_be_a_mailbox_queue(tmp_path: Path) -> None:
    """A configured queue names a [[mailboxes]] queue."""
    data = {
        "mailboxes": [{"address": "billing@example.com", "queue": "billing"}],
        "imap": [{"host": "h.example", "username": "u", "password": "p", "queue": "billing"}],
    }
    assert build_config(data, tmp_path).imap[0].queue == "billing"


@pytest.mark.parametrize(
    ("account", "key", "expected"),
    [
        ({"host": ""}, "imap[0].host", "required"),
        ({"username": None}, "imap[0].username", "required"),
        ({"tls": "none"}, "imap[0].tls", "loopback"),
        ({"tls": "ssl"}, "imap[0].tls", '"starttls"'),
        ({"port": 0}, "imap[0].port", "a port number"),
        ({"port": 70000}, "imap[0].port", "a port number"),
        ({"password": None}, "imap[0].password", "password_file"),
        ({"password_file": "x"}, "imap[0].password_file", "not both"),
        ({"password": None, "password_file": "missing.secret"}, "imap[0].password_file", "readable"),
        ({"password": 12345}, "imap[0].password", "a string"),
        ({"auth": "xoauth2"}, "imap[0].password", "xoauth2"),
        ({"auth": "xoauth2", "password": None}, "imap[0].token_command", "required"),
        ({"token_command": "x"}, "imap[0].token_command", "xoauth2"),
        ({"auth": "kerberos"}, "imap[0].auth", '"xoauth2"'),
        ({"after_import": "archive"}, "imap[0].after_import", '"seen"'),
        ({"processed_folder": "INBOX"}, "imap[0].processed_folder", "other than"),
        ({"idle_seconds": 1800}, "imap[0].idle_seconds", "RFC 2177"),
        ({"poll_seconds": 0}, "imap[0].poll_seconds", "positive"),
        ({"batch_size": 0}, "imap[0].batch_size", "positive"),
        ({"queue": "nowhere"}, "imap[0].queue", "support"),
        ({"folders": "x"}, "imap[0].folders", "known keys"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, account: dict[str, Any], key: str, expected: str) -> None:
    """Each malformed key is reported with its path and the expected form, never with the secret."""
    base: dict[str, Any] = {"host": "imap.example.com", "username": "u", "password": SECRET}
    merged = {name: value for name, value in {**base, **account}.items() if value is not None}
    with pytest.raises(ConfigError) as caught:
        build_config({"imap": [merged]}, tmp_path)
    assert caught.value.key == key
    assert expected in caught.value.expected
    assert SECRET not in str(caught.value)


def test_tls_none_is_allowed_on_loopback(tmp_path: Path) -> None:
    """Plaintext is accepted for 127.0.0.1, ::1 and localhost only."""
    for host in ("127.0.0.1", "::1", "localhost"):
        assert imap(tmp_path, host=host, tls="none")[0].port == 143


def test_the_same_folder_twice_is_refused(tmp_path: Path) -> None:
    """Two entries for one account and folder would share one import state."""
    account = {"host": "h.example", "username": "u", "password": "p"}
    with pytest.raises(ConfigError) as caught:
        build_config({"imap": [account, account]}, tmp_path)
    assert caught.value.key == "imap[1].folder"
