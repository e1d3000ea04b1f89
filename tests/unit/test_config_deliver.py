"""The configuration `mailgate deliver` reads on its own: the same values and errors as load_config."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate.config import load_config
from mailgate.errors import ConfigError
from mailgate.ingest.pipe import EX_DATAERR, EX_NOUSER, DeliveryConfig, deliver, read_delivery_config
from mailgate.rules.routing import resolve_mailbox


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailgate.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text",
    [
        "",
        '[storage]\ndata_dir = "data"\n',
        '[storage]\ndata_dir = "./nested/../data/"\n',
        '[storage]\ndata_dir = "/var/lib/mailgate"\nbusy_timeout_seconds = 2\n',
        '[storage]\ndatabase_url = "postgresql://mailgate@db.example.com/mailgate"\n',
        '[storage]\ndatabase_url = "sqlite:///relative.sqlite3"\nbusy_timeout_seconds = 0.5\n',
        "[smtp]\nmax_message_bytes = 1000\n",
        '[[mailboxes]]\naddress = " Help@Example.COM "\n\n[[mailboxes]]\naddress = "billing@example.com"\n',
        "mailboxes = []\n",
        # Sections and keys deliver does not use, as an operator writes them.
        '[smtp]\nlisten = "0.0.0.0:25"\nlmtp = true\n\n[helpdesk]\nname = "Acme"\n\n'
        '[[mailboxes]]\naddress = "support@example.com"\nqueue = "support"\nlanguage = "fi"\n\n'
        '[[agents]]\nemail = "agent@example.com"\n\n[sla]\nwarning_fraction = 0.5\n',
    ],
)
def test_values_are_those_of_load_config(tmp_path: Path, text: str) -> None:
    """Database, busy timeout, size limit and mailbox addresses come out as load_config has them."""
    path = write(tmp_path, text)
    assert read_delivery_config(path) == DeliveryConfig.from_config(load_config(path))


def test_embedded_default_is_that_of_load_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a file: SQLite in ./mailgate-data, the 25 MiB limit, support@example.com."""
    monkeypatch.chdir(tmp_path)
    assert read_delivery_config(None) == DeliveryConfig.from_config(load_config(None))
    assert read_delivery_config(None).database_url == f"sqlite:///{tmp_path / 'mailgate-data' / 'mailgate.sqlite3'}"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[storage\n", None),
        ("storage = 1\n", "storage"),
        ("[storage]\ndata_dir = 5\n", "storage.data_dir"),
        ('[storage]\ndatabase_url = "mysql://x"\n', "storage.database_url"),
        ("[storage]\ndatabase_url = 5\n", "storage.database_url"),
        ("[storage]\nbusy_timeout_seconds = 0\n", "storage.busy_timeout_seconds"),
        ("[storage]\nbusy_timeout_seconds = true\n", "storage.busy_timeout_seconds"),
        ('smtp = "big"\n', "smtp"),
        ("[smtp]\nmax_message_bytes = -1\n", "smtp.max_message_bytes"),
        ('[smtp]\nmax_message_bytes = "25M"\n', "smtp.max_message_bytes"),
        ("[smtp]\nmax_message_bytes = 1.5\n", "smtp.max_message_bytes"),
        ('mailboxes = "support@example.com"\n', "mailboxes"),
        ('mailboxes = ["support@example.com"]\n', "mailboxes[0]"),
        ('[[mailboxes]]\naddress = "not-an-address"\n', "mailboxes[0].address"),
        ('[[mailboxes]]\naddress = "a@example.com"\n\n[[mailboxes]]\nqueue = "billing"\n', "mailboxes[1].address"),
    ],
)
def test_errors_are_those_of_load_config(tmp_path: Path, text: str, key: str | None) -> None:
    """A bad value of a key deliver reads is the error load_config reports: same key, same words."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as expected:
        load_config(path)
    with pytest.raises(ConfigError) as error:
        read_delivery_config(path)
    assert (error.value.key, str(error.value)) == (expected.value.key, str(expected.value))
    assert error.value.key == (key if key is not None else str(path))


def test_a_missing_file_is_the_error_of_load_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        read_delivery_config(tmp_path / "absent.toml")
    assert error.value.key == "--config" and "an existing TOML file" in str(error.value)


def test_sections_deliver_does_not_read_are_left_to_the_daemon(tmp_path: Path) -> None:
    """Mistakes elsewhere stop `run` and `check-config`; deliver still queues, and the mail waits."""
    path = write(
        tmp_path,
        '[smtp]\nlisten = "2525"\nmax_message_bytes = 1000\n\n[nonsense]\n\n'
        '[[rules]]\nname = "r"\nactions = [{ set_queue = "nowhere" }]\n',
    )
    with pytest.raises(ConfigError):
        load_config(path)
    assert read_delivery_config(path).max_message_bytes == 1000


@pytest.mark.parametrize(
    "recipient",
    [
        "support@example.com",
        " Support@Example.com ",
        "support+billing@example.com",
        "SUPPORT+x+y@EXAMPLE.COM",
        "billing@example.com",
        "billing+@example.com",
        "support@example.org",
        "supportx@example.com",
        "nobody@example.com",
        "support",
        "",
    ],
)
def test_recipients_are_accepted_as_routing_resolves_them(tmp_path: Path, recipient: str) -> None:
    """A recipient is unknown (67) exactly when routing finds no mailbox for it."""
    path = write(
        tmp_path, '[[mailboxes]]\naddress = "support@example.com"\n\n[[mailboxes]]\naddress = "billing@example.com"\n'
    )
    config = load_config(path)
    # No database: a known recipient gets as far as the queue and fails there (75), an unknown one never does.
    result = deliver(read_delivery_config(path), b"Subject: x\n\nhello\n", recipient=recipient)
    assert (result.exit_code == EX_NOUSER) == (resolve_mailbox(recipient, config.mailboxes) is None)


def test_deliver_takes_the_whole_configuration_too(tmp_path: Path) -> None:
    """deliver() accepts a loaded Config as before, and applies its size limit."""
    config = load_config(write(tmp_path, "[smtp]\nmax_message_bytes = 10\n"))
    result = deliver(config, b"Subject: too long\n\nhello\n", recipient=None)
    assert result.exit_code == EX_DATAERR and "smtp.max_message_bytes (10)" in result.message
