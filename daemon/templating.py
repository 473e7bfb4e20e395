"""Sandboxed Jinja2 templates for mail we write."""

from __future__ import annotations

import dataclasses
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment


def load_template(path: Path) -> "Template":
    """Compile ``path`` now, so a broken template stops start-up, not a reply."""
    env = Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return Template(env.from_string(source), path)
    except TemplateError as exc:
        raise ValueError(f"{path}: line {getattr(exc, 'lineno', '?')}: {exc}") from None


class Template:
    def __init__(self, compiled: object, path: Path) -> None:
        self.compiled = compiled
        self.path = path

    def render(self, **values: object) -> str:
        return self.compiled.render(**values)  # type: ignore[attr-defined, no-any-return]


# Values the sandbox hands out as they are: no method (str.format is wrapped), nothing callable.
_PLAIN = frozenset({str, int, bool, float, tuple, frozenset, type(None)})
_DICT_ATTRIBUTES = frozenset(dir({}))  # every attribute a dict has: "{{ customer.items }}" is the method
_FIELDS: dict[type, frozenset[str]] = {}  # type -> its public dataclass fields where the short way applies
_MISSING = object()


class Sandbox(SandboxedEnvironment):
    """Jinja2's sandbox, with a short way to what our mails' templates read most.

    A new-ticket notification reads a dozen fields of a TicketView and a dict's keys for each
    ticket, inside the intake's transaction; the sandbox's checks (is_safe_attribute,
    is_internal_attribute, and for a dict's key a raised AttributeError) were a third of its
    rendering. The short way answers exactly what the sandbox would, and only where that is
    sure: a public field of a frozen dataclass of ticketd's own (no function, type, frame or
    generator, so the sandbox allows any attribute not starting with "_") whose value is plain
    data (no str.format to wrap), and a key of a plain dict that is no dict attribute. Anything
    else, every object of anyone else's, goes the sandbox's own way.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(attribute) is str:  # as "ticket.number" compiles (anything else: the sandbox's way)
            kind = type(obj)
            if kind is dict:
                if attribute not in _DICT_ATTRIBUTES:
                    try:
                        return obj[attribute]
                    except KeyError:
                        return self.undefined(obj=obj, name=attribute)
            else:
                fields = _FIELDS.get(kind)
                if fields is None:
                    fields = _FIELDS[kind] = _own_fields(kind)
                if attribute in fields:
                    value = getattr(obj, attribute, _MISSING)  # the sandbox's own first step
                    if type(value) in _PLAIN:
                        return value
        return super().getattr(obj, attribute)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A plain dict, not Jinja2's ChainMap over the environment's globals: each render copies
        the globals into a new context (and their names into a set), ~4 µs a render from a
        ChainMap. The same names and values: nothing changes the globals of an environment of
        ours once its template is compiled (each template has an environment of its own)."""
        return {**self.globals, **(d or {})}


def _own_fields(kind: type) -> frozenset[str]:
    """The public fields of a frozen dataclass of ticketd's own; none for any other type."""
    params = getattr(kind, "__dataclass_params__", None)
    if params is None or not params.frozen or issubclass(kind, type) or not kind.__module__.startswith("ticketd."):
        return frozenset()
    return frozenset(field.name for field in dataclasses.fields(kind) if not field.name.startswith("_"))
