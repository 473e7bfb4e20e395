"""OAuth2 logins (XOAUTH2 / OAUTHBEARER) in the configuration: ``[oauth]``, providers, a peer's ``oauth`` table.

A peer (``[mailboxes.imap]``, ``[smtp]``) says ``auth = "oauth2"`` and which SASL mechanism;
its sibling table (``[mailboxes.oauth]``, ``[smtp.oauth]``) says where tokens come from: a
built-in provider (``provider = "google"`` / ``"microsoft"``), a shared one of
``[oauth.providers.NAME]``, or its own ``token_url`` and ``client_id``; its own keys win.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ticketd.daemon.config_section import Section
from ticketd.daemon.credentials import Secret, read_secret

AUTH_MODES = ("password", "oauth2")
MECHANISMS = ("xoauth2", "oauthbearer")
_MICROSOFT = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
# What the providers document (developers.google.com/identity/protocols/oauth2/limited-input-device,
# learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth).
PROVIDERS: dict[str, dict[str, str]] = {
    "google": {"token_url": "https://oauth2.googleapis.com/token",
               "device_url": "https://oauth2.googleapis.com/device/code",
               "authorize_url": "https://accounts.google.com/o/oauth2/v2/auth",
               "scope": "https://mail.google.com/"},
    "microsoft": {"token_url": _MICROSOFT + "/token", "device_url": _MICROSOFT + "/devicecode",
                  "authorize_url": _MICROSOFT + "/authorize",
                  "scope": "https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send "
                           "offline_access"},
}
_ENDPOINT_KEYS = ("token_url", "device_url", "authorize_url", "scope", "client_id", "tenant")


@dataclass(frozen=True)
class OAuthClient:
    """Where one peer's tokens come from; ``peer`` is its row in ``oauth_token``."""

    peer: str  # "mailbox:NAME" or "smtp"
    token_url: str
    client_id: str
    scope: str
    device_url: str | None = None  # RFC 8628's device authorization endpoint: `oauth login`
    authorize_url: str | None = None  # the authorization endpoint: `oauth login --browser`
    client_secret: Secret | None = None
    timeout: float = 30.0
    ca_file: str | None = None  # a private CA for the endpoints' certificates, beside the system's


@dataclass(frozen=True)
class OAuthSettings:
    """``[oauth]``: what holds for every peer's tokens."""

    admin_address: str | None = None  # who is mailed when a grant is revoked or nears its end
    refresh_margin: float = 300.0  # seconds before its expiry that an access token is renewed
    expiry_warning: float = 7 * 86400.0  # a refresh token ending within this is told to the admin
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)  # [oauth.providers.NAME], as written


def peer_key(mailbox: str | None) -> str:
    """The ``oauth_token`` row of a mailbox's IMAP login, or of the SMTP login (None)."""
    return f"mailbox:{mailbox}" if mailbox is not None else "smtp"


def load_oauth(section: Section) -> OAuthSettings:
    admin = section.get("admin_address", str, None)
    if admin is not None and "@" not in admin:
        section.fail("admin_address", "an e-mail address", admin)
    margin = section.positive("refresh_margin", float, 300.0)
    days = section.positive("expiry_warning_days", float, 7.0)
    table = section.sub("providers", {})
    providers: dict[str, dict[str, Any]] = {}
    for name in list(table.data):
        if name in PROVIDERS:
            table.fail(name, f"a name other than the built-in {' / '.join(PROVIDERS)} (set provider = {name!r} "
                             "in a peer's oauth table, and client_id there or here under another name)")
        entry = table.sub(name)
        providers[name] = {k: entry.get(k, str) for k in _ENDPOINT_KEYS if k in entry.data}
        for key in [k for k in entry.data if k.startswith("client_secret")]:
            entry.seen.add(key)
            providers[name][key] = entry.data[key]
        entry.done()
    table.done()
    section.done()
    return OAuthSettings(admin, margin, days * 86400.0, providers)


def peer_auth(peer: Section, owner: Section, env: dict[str, str], settings: OAuthSettings,
              key: str) -> dict[str, Any]:
    """``auth``, ``mechanism`` and ``oauth`` (an OAuthClient) of the peer read from ``peer``;
    ``owner`` holds its ``oauth`` table (the mailbox for IMAP, [smtp] itself for SMTP)."""
    auth = peer.choice("auth", AUTH_MODES, "password")
    mechanism = peer.choice("mechanism", MECHANISMS, "xoauth2")
    if auth == "password":
        if "oauth" in owner.data:
            owner.fail("oauth", f'no oauth table unless {peer.key("auth")} = "oauth2"')
        return {"auth": auth, "mechanism": mechanism, "oauth": None}
    if peer.get("username", str, None) is None:
        peer.fail("username", 'the account to log in as (auth = "oauth2" needs username)')
    given = [k for k in peer.data if k.startswith("password")]
    if given:
        peer.fail(given[0], 'no password with auth = "oauth2" (the token is the credential)')
    return {"auth": auth, "mechanism": mechanism,
            "oauth": _client(owner.sub("oauth"), env, settings, key, peer.positive("timeout", float, 60.0))}


def _client(section: Section, env: dict[str, str], settings: OAuthSettings, key: str,
            timeout: float) -> OAuthClient:
    values: dict[str, Any] = {}
    provider = section.get("provider", str, None)
    if provider is not None:
        if provider not in PROVIDERS and provider not in settings.providers:
            known = " | ".join([*PROVIDERS, *settings.providers])
            section.fail("provider", f"one of {known} (the built-in ones, then [oauth.providers.NAME])", provider)
        values = {**PROVIDERS.get(provider, {}), **settings.providers.get(provider, {})}
    values.update({k: section.get(k, str) for k in _ENDPOINT_KEYS if k in section.data})
    secret = read_secret(section, env, "client_secret")
    if secret is None:  # a shared provider's secret, read as if it were written here
        shared = {k: v for k, v in values.items() if k.startswith("client_secret")}
        if shared:
            secret = read_secret(Section(section.file, f"oauth.providers.{provider}", shared), env, "client_secret")
    for name in ("token_url", "client_id"):
        if not values.get(name):
            section.fail(name, "a string (required: set it here, or a provider that has it)")
    ca_file = section.get("ca_file", str, None)
    if ca_file is not None and not Path(ca_file).is_file():
        section.fail("ca_file", "an existing CA bundle file", ca_file)
    tenant = values.get("tenant", "common")
    urls = {k: values[k].replace("{tenant}", tenant) for k in ("token_url", "device_url", "authorize_url")
            if values.get(k)}
    for name, url in urls.items():
        if problem := _url_problem(url):
            section.fail(name, problem, url)
    section.done()
    return OAuthClient(peer=key, token_url=urls["token_url"], client_id=values["client_id"],
                       scope=values.get("scope", ""), device_url=urls.get("device_url"),
                       authorize_url=urls.get("authorize_url"), client_secret=secret,
                       timeout=timeout, ca_file=ca_file)


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a token endpoint: https, or http to this machine's loopback only."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return None
    return "an https:// URL (http:// only to 127.0.0.1, ::1 or localhost): tokens must not cross a network in clear"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    import ipaddress  # here: every start-up (an MTA's `ingest` per message) reads the config

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
