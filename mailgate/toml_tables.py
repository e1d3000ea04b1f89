"""Reading TOML tables with typed getters whose errors name the key path (stdlib only).

Shared by the main configuration, the rules sections and `mailgate deliver` (which reads its few
keys without importing config.py), so every configuration error reads the same way:
`smtp.listen: expected "HOST:PORT", got '2525'`.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mailgate.errors import ConfigError

T = TypeVar("T")

_ADDRESS_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


def read_toml_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Path]:
    """A configuration file's document, and the directory its relative paths start from."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("--config", "an existing TOML file", str(file)) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(file), "valid TOML", str(error)) from None
    return data, file.resolve().parent


# Value checks for TomlTable.convert: the value, normalised, or None when it does not fit.


def email_address(value: Any) -> str | None:
    """An address such as "support@example.com", stripped and lower-cased."""
    if isinstance(value, str) and _ADDRESS_RE.match(value.strip()):
        return value.strip().lower()
    return None


def positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def positive_number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    return float(value) if ok else None


class TomlTable:
    """One TOML table being read: typed getters that remember which keys were used."""

    def __init__(self, path: str, data: object) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, "a table", data)
        self.path = path
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, kind: type[T], default: T, expected: str) -> T:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        # bool is an int in Python; a port of `true` must not pass as 1.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(self.key(name), expected, value)
        return value

    def optional(self, name: str, kind: type[T], expected: str) -> T | None:
        """A key without a default: None when absent, checked like `get` when present."""
        if name not in self.data:
            self.used.add(name)
            return None
        value: T = self.get(name, kind, self.data[name], expected)
        return value

    def convert(self, name: str, default: T, expected: str, parse: Callable[[Any], T | None]) -> T:
        self.used.add(name)
        if name not in self.data:
            return default
        result = parse(self.data[name])
        if result is None:
            raise ConfigError(self.key(name), expected, self.data[name])
        return result

    def strings(self, name: str, expected: str) -> tuple[str, ...]:
        """A list of non-empty strings, stripped."""
        values = self.get(name, list, [], expected)
        if not all(isinstance(value, str) and value.strip() for value in values):
            raise ConfigError(self.key(name), expected, values)
        return tuple(value.strip() for value in values)

    def table(self, name: str) -> TomlTable:
        self.used.add(name)
        return TomlTable(self.key(name), self.data.get(name, {}))

    def tables(self, name: str) -> list[TomlTable]:
        self.used.add(name)
        items = self.data.get(name, [])
        if not isinstance(items, list):
            raise ConfigError(self.key(name), f"an array of tables ([[{name}]])", items)
        return [TomlTable(f"{self.key(name)}[{index}]", item) for index, item in enumerate(items)]

    def finish(self) -> None:
        """Unknown keys are errors: a typo must not be silently ignored."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise ConfigError(self.key(unknown[0]), f"one of the known keys ({known})", "unknown key")
