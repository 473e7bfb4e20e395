"""Secrets in the configuration: a value that never shows, and where it may be read from."""

from __future__ import annotations

import functools
import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config imports this module; at run time only the Section object is used
    from ticketd.daemon.config import Section


class Secret:
    """A password that never shows up in reprs, logs or tracebacks."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# Keys that hold a secret or say where one is (password_file, key files): never shown in errors.
_SECRET_KEY = (r"pass(word|wd|phrase)|secret|token|credential|private|keyfile"
               r"|(^|[._\-\[])(key|pass|pw)s?($|[._\-\]])")


@functools.cache
def _secret_key() -> re.Pattern[str]:
    return re.compile(_SECRET_KEY, re.IGNORECASE)  # on first use: every start-up paid 3 ms for it


def is_secret_key(key: str) -> bool:
    """Whether the (dotted) config key names a secret, so that its value stays out of messages."""
    return _secret_key().search(key) is not None


def read_secret(section: Section, env: dict[str, str], key: str = "password") -> Secret | None:
    """``KEY`` itself, the first line of ``KEY_file``, the variable ``KEY_env``, the first line of
    the systemd credential ``KEY_credential`` (LoadCredential=, in $CREDENTIALS_DIRECTORY), or None."""
    kinds = (key, f"{key}_file", f"{key}_env", f"{key}_credential")
    given = [k for k in kinds if k in section.data]
    if len(given) > 1:
        section.fail(given[1], f"only one of {' / '.join(kinds)} (also {given[0]})")
    if not given:
        return None
    kind = given[0]
    value = section.get(kind, str)
    if kind == key:
        return _secret(section, kind, value, "a value with")
    if kind == f"{key}_env":
        if value not in env:
            section.fail(kind, f"the name of a set environment variable ({_variable(value)} is not set)")
        return _secret(section, kind, env[value], f"a variable ({_variable(value)}) whose value has")
    if kind == f"{key}_credential":
        # systemd passes LoadCredential=NAME:PATH as $CREDENTIALS_DIRECTORY/NAME (systemd.exec(5)).
        if "/" in value or value in ("", ".", ".."):
            section.fail(kind, "the name of a credential (LoadCredential=NAME:...), not a path")
        if not env.get("CREDENTIALS_DIRECTORY"):
            section.fail(kind, "a service started by systemd with LoadCredential= ($CREDENTIALS_DIRECTORY "
                         "is not set)")
        value = str(Path(env["CREDENTIALS_DIRECTORY"]) / value)
    # Neither the path nor the content shows in these errors: a password may have been pasted here.
    try:
        raw = Path(value).read_bytes()
    except OSError as exc:
        section.fail(kind, f"a readable file ({exc.strerror})")
    try:
        text = raw.decode("utf-8-sig")  # an editor's byte-order mark is never part of a password
    except UnicodeDecodeError:
        section.fail(kind, "a UTF-8 text file (this one is not UTF-8)")
    # The first line only (examples/ticketd.toml): anything after it is not sent at LOGIN.
    first = text.split("\n", 1)[0].removesuffix("\r")
    if not first:
        section.fail(kind, "a file whose first line is the password (it is empty)")
    return _secret(section, kind, first, "a file whose first line has")


def _secret(section: Section, kind: str, value: str, what: str) -> Secret:
    # A CR LF would end the IMAP LOGIN / SMTP AUTH line early (and start another command); any
    # control character fails only at login, far from the config that caused it.
    bad = next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        section.fail(kind, f"{what} no control characters (found U+{ord(bad):04X}; the secret is not shown)")
    return Secret(value)


def _variable(name: str) -> str:
    # A variable's name is no secret, but a password pasted as password_env by mistake would be.
    return name if re.fullmatch(r"[A-Z_][A-Z0-9_]*", name) else "the variable named, not shown"
