"""Secrets in the configuration: read as documented, checked at load, never shown in an error."""

from __future__ import annotations

import importlib.util
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

import pytest

from ticketd.daemon.config import ConfigError, Section, load_config
from ticketd.daemon.credentials import is_secret_key
from ticketd.daemon.terminal import redact_url
from ticketd.storage.db import _redacted
from tests.test_config import MINIMUM, write

PASSWORD_LINE = 'password = "secret"          # or password_file = "/path"'
URL_LINE = 'url = "sqlite:///var/lib/ticketd/ticketd.db"'


def with_password(tmp_path: Path, line: str) -> Path:
    return write(tmp_path, MINIMUM.replace(PASSWORD_LINE, line))


def refused(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path, environ=environ)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    return message


@pytest.mark.parametrize("content, password", [
    (b"first\nsecond line\n", "first"),
    (b"crlf\r\nrest", "crlf"),
    (b"\xef\xbb\xbfwith-bom\n", "with-bom"),
    (b"no-newline", "no-newline"),
    (b"  spaces kept \n", "  spaces kept "),
])
def test_a_password_file_gives_its_first_line(tmp_path: Path, content: bytes, password: str) -> None:
    secret = tmp_path / "imap.secret"
    secret.write_bytes(content)
    config = load_config(with_password(tmp_path, f'password_file = "{secret}"'))
    assert config.mailboxes[0].imap.password.reveal() == password  # type: ignore[union-attr]


@pytest.mark.parametrize("content, expected", [
    (b"\xff\xfehunter2\n", "a UTF-8 text file"),
    (b"hunter2\x00more\n", "a file whose first line has no control characters (found U+0000"),
    (b"hunter2\rmore\n", "a file whose first line has no control characters (found U+000D"),
    (b"hunter2\x1b[0m\n", "a file whose first line has no control characters (found U+001B"),
    (b"\nhunter2\n", "a file whose first line is the password (it is empty)"),
])
def test_a_bad_password_file_names_the_key_never_the_value(tmp_path: Path, content: bytes,
                                                            expected: str) -> None:
    secret = tmp_path / "hunter2.secret"
    secret.write_bytes(content)
    message = refused(with_password(tmp_path, f'password_file = "{secret}"'))
    assert "mailboxes[0].imap.password_file: expected " + expected in message
    assert "hunter2" not in message


def test_an_unreadable_password_file_does_not_show_its_path(tmp_path: Path) -> None:
    # A password pasted as the path by mistake must not be printed either.
    message = refused(with_password(tmp_path, 'password_file = "hunter2"'))
    assert "mailboxes[0].imap.password_file: expected a readable file (No such file or directory)" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("line", ['password = "hunter2\\n"', 'password = "hun\\u0000ter2"',
                                  'password = "hunter2\\u0085"'])
def test_a_password_with_control_characters_is_refused(tmp_path: Path, line: str) -> None:
    message = refused(with_password(tmp_path, line))
    assert "mailboxes[0].imap.password: expected a value with no control characters" in message
    assert "hunter2" not in message and "hun" not in message.split(": expected")[1]


def test_a_password_variable_with_a_line_break_is_refused(tmp_path: Path) -> None:
    message = refused(with_password(tmp_path, 'password_env = "IMAP_PW"'), environ={"IMAP_PW": "hunter2\r\n"})
    assert "mailboxes[0].imap.password_env: expected a variable (IMAP_PW) whose value has no control" in message
    assert "hunter2" not in message


def test_a_password_pasted_as_the_variable_name_is_not_shown(tmp_path: Path) -> None:
    message = refused(with_password(tmp_path, 'password_env = "hunter2"'), environ={})
    assert "mailboxes[0].imap.password_env: expected the name of a set environment variable" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("line", ["password = 73194628", "password = [73194628]", "password = 7319.4628"])
def test_a_type_error_on_a_secret_shows_the_type_only(tmp_path: Path, line: str) -> None:
    message = refused(with_password(tmp_path, line))
    assert "mailboxes[0].imap.password: expected a string, got " in message
    assert "(the value of a secret is not shown)" in message
    assert "7319" not in message


@pytest.mark.parametrize("key", ["password", "password_file", "password_env", "smtp.bounce_secret",
                                 "bounce_secret_file", "api_token", "tls_key", "key_file", "ssl_keyfile",
                                 "private_key", "filters.spam.keys", "credentials.user", "db_passwd"])
def test_secret_keys_are_recognised(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["host", "username", "keywords", "rules.article[0].keywords", "monkey",
                                 "from", "database.url"])
def test_ordinary_keys_are_not_secret(key: str) -> None:
    assert not is_secret_key(key)


def test_any_secret_key_keeps_its_value_out_of_errors(tmp_path: Path) -> None:
    section = Section(tmp_path / "t.toml", "filters.x", {"api_token": 73194628})
    with pytest.raises(ConfigError) as err:
        section.get("api_token", str)
    assert str(err.value) == (f"{tmp_path / 't.toml'}: filters.x.api_token: expected a string, "
                              "got an integer (the value of a secret is not shown)")


def test_a_bad_database_url_is_shown_without_its_password(tmp_path: Path) -> None:
    message = refused(write(tmp_path, MINIMUM.replace(URL_LINE, 'url = "mysql://root:hunter2@db/tickets"')))
    assert "database.url: expected a sqlite:// or postgres:// URL, got 'mysql://root:***@db/tickets'" in message
    assert "hunter2" not in message


def test_postgres_without_its_driver_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # a site installed without the postgres extra
                        lambda name, package=None: None if name == "asyncpg" else real(name, package))
    path = write(tmp_path, MINIMUM.replace(URL_LINE, 'url = "postgres://ticketd:hunter2@db/ticketd"'))
    message = refused(path)
    assert "database.url: " in message and "asyncpg" in message
    assert "pip install 'ticketd[postgres]'" in message
    assert "hunter2" not in message


def pretend_asyncpg_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return ModuleSpec(name, None) if name == "asyncpg" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_postgres_with_its_driver_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pretend_asyncpg_is_installed(monkeypatch)
    url = "postgresql://ticketd:pw@db/ticketd"
    assert load_config(write(tmp_path, MINIMUM.replace(URL_LINE, f'url = "{url}"'))).database_url == url


@pytest.mark.parametrize("url, shown", [
    ("postgres://ticketd:hunter2@db:5432/ticketd", "postgres://ticketd:***@db:5432/ticketd"),
    ("postgres://ticketd:hun@ter2@db/ticketd", "postgres://ticketd:***@db/ticketd"),
    ("postgres://ticketd:hun/ter#2@db/ticketd", "postgres://ticketd:***@db/ticketd"),
    ("postgres://ticketd:@db/ticketd", "postgres://ticketd:***@db/ticketd"),
    ("postgres://ticketd@db/ticketd", "postgres://ticketd@db/ticketd"),
    ("postgres://db/ticketd?application_name=a:b@c", "postgres://db/ticketd?application_name=a:b@c"),
    ("sqlite:///var/lib/a:b@c/ticketd.db", "sqlite:///var/lib/a:b@c/ticketd.db"),
    ("not a url", "not a url"),
])
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert _redacted(url) == shown  # what "cannot open database" errors show


def test_a_password_may_be_a_systemd_credential(tmp_path: Path) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "imap").write_text("from-systemd\n")
    path = with_password(tmp_path, 'password_credential = "imap"')
    config = load_config(path, environ={"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")})
    assert config.mailboxes[0].imap.password.reveal() == "from-systemd"  # type: ignore[union-attr]
    message = refused(path, environ={})
    assert "mailboxes[0].imap.password_credential: expected a service started by systemd" in message
