"""Reading one TOML table with error messages that name the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from ticketd.daemon.credentials import is_secret_key
from ticketd.daemon.terminal import redact_url

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration problem, worded as file: key: what was expected."""


class Section:
    """One TOML table being read, with the dotted key path used in error messages."""

    def __init__(self, file: Path, where: str, data: Any) -> None:
        self.file, self.where = file, where
        if not isinstance(data, dict):
            self.fail("", "a table")
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, expected: str, got: Any = None) -> None:
        key = self.key(name) if name else self.where or "(top level)"
        detail = ""
        if got is not None and is_secret_key(key):
            # Errors reach terminals, logs and tickets to colleagues: only the type may show.
            detail = f", got {_kind_name(type(got))} (the value of a secret is not shown)"
        elif got is not None:
            detail = f", got {(redact_url(got) if isinstance(got, str) else got)!r}"
        raise ConfigError(f"{self.file}: {key}: expected {expected}{detail}")

    def get(self, name: str, kind: type[T], default: Any = ..., expected: str = "") -> T:
        self.seen.add(name)
        if name not in self.data:
            if default is ...:
                self.fail(name, (expected or _kind_name(kind)) + " (required)")
            return default  # type: ignore[no-any-return]
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(name, expected or _kind_name(kind), value)
        return value  # type: ignore[no-any-return]

    def choice(self, name: str, choices: tuple[str, ...], default: Any = ...) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            self.fail(name, "one of " + " | ".join(choices), value)
        return value

    def positive(self, name: str, kind: type[T], default: Any) -> T:
        value = self.get(name, kind, default)
        if value <= 0:  # type: ignore[operator]
            self.fail(name, "a positive number", value)
        return value

    def sub(self, name: str, default: Any = ...) -> "Section":
        self.seen.add(name)
        if name not in self.data and default is not ...:
            return Section(self.file, self.key(name), default)
        if name not in self.data:
            self.fail(name, "a table (required)")
        return Section(self.file, self.key(name), self.data[name])

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise ConfigError(f"{self.file}: {self.key(unknown[0])}: unknown key")


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "an array", dict: "a table"}.get(kind, kind.__name__)
