"""The templates' sandbox: its short ways answer exactly as Jinja2's SandboxedEnvironment, which stays a sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from ticketd.daemon.responders import TicketView
from ticketd.daemon.templating import Sandbox, load_template

TICKET = TicketView(17, "Printer on fire", "new", "P2", "", "support", "ann@example.org", "Ann", ("fire",), ())


@dataclass(frozen=True)
class Foreign:
    """A frozen dataclass of someone else's (this module is not ticketd's): no short way for it."""

    name: str
    method: Any = None


class Mapping(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return f"missing {key}"


EXPRESSIONS = [
    "{{ ticket.number }} {{ ticket.subject }} {{ ticket.tags | join(',') }} {{ ticket.category or '-' }}",
    "{{ ticket['number'] }} {{ ticket.nope is defined }}",
    "{{ customer.name }} <{{ customer.email }}>",
    "{{ customer['name'] }} {{ customer.nope is defined }} {{ customer.items() | list }}",
    "{{ customer.keys is defined }} {{ customer.get('name') }}",
    "{{ customer.items }}",  # a dict attribute wins over a key of that name, as in the sandbox
    "{{ mapping.name }} {{ mapping.nope }}",
    "{{ foreign.name }} {{ foreign.__class__ is defined }}",
    "{{ range(3) | list }} {{ dict(a=1) }} {{ namespace(a=1).a }}",
    "{{ ticket.nope }}",
    "{{ customer.nope }}",
    "{{ ticket.__class__ }}",
    "{{ ticket.__class__.__mro__ }}",
    "{{ customer.__class__ }}",
    "{{ ticket.number.__class__.__subclasses__() }}",
    "{{ foreign.method(1) }}",
    "{{ weird.number(1) }}",
    "{{ range(10 ** 9) | list }}",
]
VALUES = dict(ticket=TICKET, customer={"name": "Ann", "email": "ann@example.org", "items": "shadowed"},
              mapping=Mapping(name="Ann"), foreign=Foreign("Bo", "{0.__class__.__mro__}".format),
              # A field holding str.format: what the sandbox wraps, so its format string cannot go where it should not.
              weird=TicketView("{0.__class__.__mro__}".format, "", "", "", "", "", "", ""))  # type: ignore[arg-type]


def outcome(env: SandboxedEnvironment, source: str) -> tuple[str, str]:
    try:
        return "ok", env.from_string(source).render(**VALUES)
    except Exception as exc:  # the kind of refusal counts too
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_what_a_template_gets_is_what_jinjas_sandbox_gives(source: str) -> None:
    options: dict[str, Any] = dict(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    assert outcome(Sandbox(**options), source) == outcome(SandboxedEnvironment(**options), source)


@pytest.mark.parametrize("source, refused", [
    ("{{ ticket.__class__.__mro__ }}", (SecurityError, UndefinedError)),
    ("{{ ticket.number.__class__.__subclasses__() }}", (SecurityError, UndefinedError)),
    ("{{ weird.number(1) }}", SecurityError),  # str.format of a field of ours: sandboxed still
    ("{{ foreign.method(1) }}", SecurityError),
    ("{{ range(10 ** 9) | list }}", OverflowError),
])
def test_the_sandbox_still_refuses(tmp_path: Path, source: str, refused: Any) -> None:
    (tmp_path / "t.j2").write_text(source)
    with pytest.raises(refused):
        load_template(tmp_path / "t.j2").render(**VALUES)


def test_a_template_sees_the_globals_of_jinjas_sandbox() -> None:
    ours, stock = Sandbox(), SandboxedEnvironment()
    assert dict(ours.from_string("").globals) == dict(stock.from_string("").globals)
    assert ours.from_string("").globals["range"] is stock.globals["range"]  # the sandbox's safe_range
