"""Configuration: defaults, and errors that name the key and the expected form."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate.config import build_config, load_config
from mailgate.errors import ConfigError


def test_embedded_default_is_sqlite_on_loopback(tmp_path: Path) -> None:
    """With no file: SQLite in ./mailgate-data, SMTP on 127.0.0.1:2525, one mailbox."""
    config = build_config({}, tmp_path)
    assert config.storage.database_url == f"sqlite:///{tmp_path / 'mailgate-data' / 'mailgate.sqlite3'}"
    assert (config.smtp.host, config.smtp.port, config.smtp.lmtp) == ("127.0.0.1", 2525, False)
    assert config.smtp.max_message_bytes == 25 * 1024 * 1024
    assert [m.address for m in config.mailboxes] == ["support@example.com"]


def test_attachments_live_in_the_data_dir_unless_shared(tmp_path: Path) -> None:
    """Several instances on one database share one attachments_dir; relative to the config file."""
    assert build_config({}, tmp_path).storage.blobs_dir == tmp_path / "mailgate-data" / "attachments"
    shared = build_config({"storage": {"attachments_dir": "../shared/att"}}, tmp_path)
    assert shared.storage.blobs_dir == tmp_path / "../shared/att"
    assert build_config({}, tmp_path).smtp.separate_process and build_config({}, tmp_path).outgoing.separate_process


def test_subject_tag_defaults_to_the_name(tmp_path: Path) -> None:
    """[helpdesk] name sets the tag unless subject_tag is given."""
    assert build_config({"helpdesk": {"name": "Acme Support"}}, tmp_path).helpdesk.subject_tag == "Acme Support"


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"smtp": {"listen": "2525"}}, "smtp.listen", '"HOST:PORT"'),
        ({"smtp": {"lmtp": "yes"}}, "smtp.lmtp", "true or false"),
        ({"smtp": {"max_message_bytes": -1}}, "smtp.max_message_bytes", "a positive integer"),
        ({"smtp": {"listne": "x"}}, "smtp.listne", "known keys"),
        ({"mailboxes": [{"address": "not-an-address"}]}, "mailboxes[0].address", "an email address"),
        ({"mailboxes": [{"queue": "x"}]}, "mailboxes[0].address", "required"),
        ({"agents": [{"email": "a@b.example", "queues": "support"}]}, "agents[0].queues", "a list"),
        ({"storage": {"database_url": "mysql://x"}}, "storage.database_url", "postgresql"),
        ({"helpdesk": {"subject_tag": "[x]"}}, "helpdesk.subject_tag", "without"),
        ({"limits": {"max_mime_depth": 0}}, "limits.max_mime_depth", "a positive integer"),
        ({"logging": {"level": "loud"}}, "logging.level", "info"),
        ({"nonsense": {}}, "nonsense", "known keys"),
        ({"storage": {"attachments_dir": 7}}, "storage.attachments_dir", "a directory path"),
        ({"smtp": {"separate_process": "no"}}, "smtp.separate_process", "true or false"),
        ({"outgoing": {"separate_process": 1}}, "outgoing.separate_process", "true or false"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, data: dict[str, object], key: str, expected: str) -> None:
    """Each wrong key or value is reported with its path and what was expected."""
    with pytest.raises(ConfigError) as error:
        build_config(data, tmp_path)
    assert error.value.key == key
    assert expected in str(error.value)


def test_unreadable_toml_is_a_config_error(tmp_path: Path) -> None:
    """A syntax error in the file is reported as such, with the file named."""
    path = tmp_path / "bad.toml"
    path.write_text("[smtp\nlisten = 1")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "valid TOML" in str(error.value)


def test_example_file_is_valid(tmp_path: Path) -> None:
    """The documented example configuration loads as it is."""
    example = Path(__file__).parents[2] / "config" / "mailgate.example.toml"
    config = load_config(example)
    assert config.smtp.port == 2525


def test_the_example_configuration_travels_pickled_to_the_filing_processes() -> None:
    """Every part of a full configuration pickles and comes back equal (rules compiled again)."""
    import pickle

    from mailgate.toml_tables import read_toml_file

    data, base = read_toml_file(Path(__file__).resolve().parents[2] / "config" / "mailgate.example.toml")
    data["rules"] = [
        {
            "name": f"rule {operator}",
            "conditions": [{"field": "subject", "op": operator, "value": value}],
            "actions": [{"set_priority": "high"}],
        }
        for operator, value in [("contains", "outage"), ("contains_any", ["a", "b"]), ("equals", "x"), ("matches", "y")]
    ]
    config = build_config(data, base)
    assert len(config.rules.rules) == 4
    assert pickle.loads(pickle.dumps(config)) == config


def test_filing_processes_are_two_on_two_cores_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`processes = "auto"` (the default): 2 where the daemon may use two cores or more, else 1."""
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert build_config({}, tmp_path).worker.processes == 2
    assert build_config({"worker": {"processes": "auto"}}, tmp_path).worker.processes == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert build_config({}, tmp_path).worker.processes == 1
    assert build_config({"worker": {"processes": 3}}, tmp_path).worker.processes == 3
    with pytest.raises(ConfigError, match=r'worker.processes: expected "auto" or an integer from 1 to 16, got 17'):
        build_config({"worker": {"processes": 17}}, tmp_path)
