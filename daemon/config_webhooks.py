"""The ``[[webhooks]]`` tables: where ticket events are POSTed as JSON (or as a chat tool's message)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from ticketd.daemon.config_section import ConfigError, Section
from ticketd.daemon.credentials import Secret, read_secret

# The events a webhook may be sent, by the name the admin writes (README "Webhooks").
EVENTS = ("created", "agent_reply", "escalated", "breached", "solved", "csat")
FORMATS = ("json", "slack", "mattermost", "teams")
# Plain http only to this machine: an event names customers and their tickets, and a chat
# tool's incoming-webhook URL is itself a credential.
LOCAL_HOSTS = ("localhost",)


@dataclass(frozen=True)
class WebhookConfig:
    name: str
    url: Secret  # a Slack or Teams URL carries its own token: never logged, see ``where``
    format: str
    events: frozenset[str]
    secret: Secret | None  # HMAC-SHA256 key of the X-Ticketd-Signature header; None: unsigned
    queues: frozenset[str]  # empty: every queue
    timeout: float
    include_text: bool  # a reply's (or new ticket's) text in the payload: off, customer text stays out of chat
    retry_base: float
    retry_max: float
    give_up_after: float

    @property
    def where(self) -> str:
        """scheme://host[:port] of the URL: what logs and errors may show of it."""
        parts = urlsplit(self.url.reveal())
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    def wants(self, event: str, queue: str) -> bool:
        return event in self.events and (not self.queues or queue in self.queues)


def load_webhooks(top: Section, env: dict[str, str]) -> tuple[WebhookConfig, ...]:
    raw = top.get("webhooks", list, [], expected="an array of [[webhooks]] tables")
    hooks = tuple(_webhook(Section(top.file, f"webhooks[{i}]", item), env) for i, item in enumerate(raw))
    names = [h.name for h in hooks]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"{top.file}: webhooks[{i}].name: expected a unique name, {name!r} is used twice")
    return hooks


def _webhook(section: Section, env: dict[str, str]) -> WebhookConfig:
    name = section.get("name", str)
    if not name or len(name) > 100 or not name.replace("-", "").replace("_", "").isalnum():
        section.fail("name", "a short name of letters, digits, - and _", name)
    url = read_secret(section, env, "url")
    if url is None:
        section.fail("url", "the URL to POST to (url, url_file, url_env or url_credential) (required)")
    assert url is not None
    _check_url(section, url.reveal())
    events = section.get("events", list, list(EVENTS), expected="an array of event names")
    for event in events:
        if event not in EVENTS:
            section.fail("events", "names among " + ", ".join(EVENTS), event)
    queues = section.get("queues", list, [], expected="an array of queue names")
    if not all(isinstance(q, str) and q for q in queues):
        section.fail("queues", "an array of queue names", queues)
    config = WebhookConfig(
        name=name, url=url, format=section.choice("format", FORMATS, "json"), events=frozenset(events),
        secret=_signing_key(section, env), queues=frozenset(queues),
        timeout=section.positive("timeout", float, 10.0),
        include_text=section.get("include_text", bool, False),
        retry_base=section.positive("retry_base", float, 10.0),
        retry_max=section.positive("retry_max", float, 600.0),
        give_up_after=section.positive("give_up_after", float, 86400.0),
    )
    section.done()
    return config


def _signing_key(section: Section, env: dict[str, str]) -> Secret | None:
    secret = read_secret(section, env, "secret")
    if secret is not None and len(secret.reveal()) < 16:  # the message names the key, never the value
        given = next(k for k in section.data if k.startswith("secret"))
        section.fail(given, "a key of at least 16 characters (e.g. openssl rand -hex 32)")
    return secret


def _check_url(section: Section, url: str) -> None:
    """https, or http to this machine. Errors show the scheme and host only: the path may be a token."""
    key = next(k for k in section.data if k.startswith("url"))
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError:
        section.fail(key, "an http(s) URL (this one does not parse; it is not shown)")
        return
    if parts.scheme not in ("https", "http") or not host:
        section.fail(key, "an https:// URL with a host (the URL is not shown)")
    if parts.scheme == "http" and not _local(host):
        section.fail(key, f"an https:// URL: plain http only to 127.0.0.1, ::1 or localhost, not {host}")
    if parts.username or parts.password:
        section.fail(key, "a URL without user:password@ (use secret = for the HMAC signature)")


def _local(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
