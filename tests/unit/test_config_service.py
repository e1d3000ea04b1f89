"""The [daemon] and [http] sections: defaults, values and errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailgate.config import build_config
from mailgate.errors import ConfigError


def config(tmp_path: Path, **sections: Any) -> Any:
    return build_config({"storage": {"data_dir": str(tmp_path)}, **sections}, tmp_path)


def test_defaults_are_a_30_second_shutdown_and_no_http_listener(tmp_path: Path) -> None:
    """Without the sections: shutdown_timeout_seconds 30, and no status listener at all."""
    loaded = config(tmp_path)
    assert loaded.daemon.shutdown_timeout_seconds == 30.0
    assert loaded.http.listen is None


def test_values_are_read(tmp_path: Path) -> None:
    """The operator's timeout and listen address are taken as written."""
    loaded = config(tmp_path, daemon={"shutdown_timeout_seconds": 5}, http={"listen": "127.0.0.1:9025"})
    assert loaded.daemon.shutdown_timeout_seconds == 5.0
    assert loaded.http.listen == ("127.0.0.1", 9025)


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"daemon": {"shutdown_timeout_seconds": 0}}, "daemon.shutdown_timeout_seconds"),
        ({"daemon": {"grace": 3}}, "daemon.grace"),
        ({"http": {"listen": "9025"}}, "http.listen"),
        ({"http": {"port": 9025}}, "http.port"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, sections: dict[str, Any], key: str) -> None:
    """A bad or unknown key stops start-up with its path."""
    with pytest.raises(ConfigError) as error:
        config(tmp_path, **sections)
    assert error.value.key == key
