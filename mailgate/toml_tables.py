"""Reading TOML tables with typed getters whose errors name the key path (stdlib only).

Shared by the main configuration and the rules sections, so every configuration error reads
the same way: `smtp.listen: expected "HOST:PORT", got '2525'`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from mailgate.errors import ConfigError

T = TypeVar("T")


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
