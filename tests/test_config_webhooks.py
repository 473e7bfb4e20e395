"""[[webhooks]] in the configuration: what is accepted, and errors that name the key and never the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketd.daemon.config import ConfigError, load_config
from tests.support.daemon import write_config

TOKEN = "T000/B000/XXXXsecretpath"


def load(tmp_path: Path, table: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return load_config(write_config(tmp_path, 10143, 2525, [("support", "support@example.test")],
                                    extra=f"[[webhooks]]\n{table}"), env or {})


def refused(tmp_path: Path, table: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, table)
    return str(caught.value)


def test_the_defaults(tmp_path: Path) -> None:
    key = tmp_path / "webhook.key"
    key.write_text("0123456789abcdef0123\n")
    table = f'name = "chat"\nurl = "https://hooks.example.test/{TOKEN}"\nsecret_file = "{key}"'
    [hook] = load(tmp_path, table).webhooks
    assert (hook.name, hook.format, hook.timeout, hook.queues, hook.include_text) == (
        "chat", "json", 10.0, frozenset(), False)
    assert hook.events == {"created", "agent_reply", "escalated", "breached", "solved", "csat"}
    assert hook.secret.reveal() == "0123456789abcdef0123" and hook.where == "https://hooks.example.test"
    assert TOKEN not in repr(hook)


def test_the_url_may_come_from_the_environment(tmp_path: Path) -> None:
    [hook] = load(tmp_path, 'name = "chat"\nurl_env = "CHAT_URL"\nformat = "slack"',
                  {"CHAT_URL": f"https://hooks.slack.example/{TOKEN}"}).webhooks
    assert hook.url.reveal().endswith(TOKEN) and hook.format == "slack"


def test_plain_http_only_to_this_machine(tmp_path: Path) -> None:
    for host in ("127.0.0.1:8080", "[::1]:8080", "localhost"):
        assert load(tmp_path, f'name = "a"\nurl = "http://{host}/{TOKEN}"').webhooks
    said = refused(tmp_path, f'name = "a"\nurl = "http://chat.example.test/{TOKEN}"')
    assert "webhooks[0].url: expected an https:// URL" in said and "chat.example.test" in said
    assert TOKEN not in said and str(tmp_path) in said


@pytest.mark.parametrize("table, says", [
    ('name = "a"', "webhooks[0].url: expected the URL"),
    (f'name = "a"\nurl = "ftp://x.example/{TOKEN}"', "webhooks[0].url: expected an https:// URL"),
    (f'name = "a"\nurl = "https://x.example/{TOKEN}"\nformat = "irc"', "webhooks[0].format: expected one of json"),
    (f'name = "a"\nurl = "https://x.example/{TOKEN}"\nevents = ["created", "deleted"]',
     "webhooks[0].events: expected names among created"),
    (f'name = "a"\nurl = "https://x.example/{TOKEN}"\nsecret = "short"',
     "webhooks[0].secret: expected a key of at least 16 characters"),
    (f'name = "a"\nurl = "https://x.example/{TOKEN}"\ntimeout = 0', "webhooks[0].timeout: expected a positive"),
    (f'name = "a b"\nurl = "https://x.example/{TOKEN}"', "webhooks[0].name: expected a short name"),
    (f'name = "a"\nurl = "https://x.example/{TOKEN}"\ncolour = "red"', "webhooks[0].colour: unknown key"),
    (f'name = "a"\nurl = "https://u:p@x.example/{TOKEN}"', "webhooks[0].url: expected a URL without user"),
])
def test_mistakes_name_the_key_and_show_no_secret(tmp_path: Path, table: str, says: str) -> None:
    said = refused(tmp_path, table)
    assert says in said and TOKEN not in said and "short" not in said.replace("a short name", "")


def test_names_are_unique(tmp_path: Path) -> None:
    said = refused(tmp_path, 'name = "a"\nurl = "https://x.example/1"\n'
                             '[[webhooks]]\nname = "a"\nurl = "https://x.example/2"')
    assert "webhooks[1].name: expected a unique name" in said


def test_a_missing_key_file_is_named_not_shown(tmp_path: Path) -> None:
    said = refused(tmp_path, f'name = "a"\nurl = "https://x.example/{TOKEN}"\nsecret_file = "{tmp_path}/nope.key"')
    assert "webhooks[0].secret_file: expected a readable file" in said and "nope.key" not in said
