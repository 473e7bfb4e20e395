"""The servers ticketd talks to, as the config names them: [smtp], each [[mailboxes]] (its [mailboxes.imap])
and [[addresses]]; their dataclasses and readers (daemon.config builds the whole Config from them)."""

from __future__ import annotations

from dataclasses import dataclass
from email.headerregistry import Address as HeaderAddress
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from ticketd.daemon.config_section import ConfigError, Section
from ticketd.daemon.credentials import Secret, read_secret
from ticketd.daemon.verp import check_base

SECURITY_MODES = ("tls", "starttls", "none")


@dataclass(frozen=True)
class Peer:
    """A TLS-capable server we connect to (IMAP or SMTP)."""

    host: str
    port: int
    security: str
    username: str | None
    password: Secret | None
    verify_tls: bool
    ca_file: str | None
    timeout: float
    auth: str = "password"  # or "oauth2": a bearer token from ``oauth`` (daemon.oauth) instead of the password
    mechanism: str = "xoauth2"  # with oauth2: the SASL mechanism, "xoauth2" or "oauthbearer" (RFC 7628)
    oauth: Any = None  # daemon.config_oauth.OAuthClient with auth = "oauth2", else None


@dataclass(frozen=True)
class ImapConfig(Peer):
    folder: str = "INBOX"


@dataclass(frozen=True)
class AfterProcessing:
    """What to do on the server once a message's ticket is committed."""

    action: str  # "seen" | "delete" | "move"
    folder: str | None = None

    def __str__(self) -> str:
        return f"move:{self.folder}" if self.action == "move" else self.action


@dataclass(frozen=True)
class MailboxConfig:
    name: str
    address: str
    after_processing: AfterProcessing
    imap: ImapConfig
    poll_interval: float
    idle: bool
    batch_size: int


@dataclass(frozen=True)
class AddressConfig:
    """A support address that mail reaches through the MTA (``ticketd ingest``), not IMAP."""

    name: str  # what `ingest --mailbox NAME` and the rules' `mailboxes` condition call it
    address: str


@dataclass(frozen=True)
class SmtpConfig(Peer):
    from_name: str = ""
    from_address: str = ""
    envelope_from: str = ""
    retry_base: float = 30.0
    retry_max: float = 3600.0
    give_up_after: float = 5 * 86400.0
    connections: int = 16
    # Signs each outbound message's return address (daemon.verp); without it no bounce suppresses.
    bounce_secret: Secret | None = None

    @property
    def from_header(self) -> str:
        return str(HeaderAddress(display_name=self.from_name, addr_spec=self.from_address))

    @property
    def bounce_key(self) -> bytes | None:
        return self.bounce_secret.reveal().encode("utf-8") if self.bounce_secret is not None else None


def load_oauth_table(top: Section) -> Any:
    """``[oauth]`` when the file has one; daemon.config_oauth is imported only for OAuth2 logins."""
    if "oauth" not in top.data:
        top.seen.add("oauth")
        return None
    from ticketd.daemon.config_oauth import load_oauth

    return load_oauth(top.sub("oauth"))


def _peer_auth(section: Section, owner: Section, env: dict[str, str], oauth: Any, key: str) -> dict[str, Any]:
    """``auth``, ``mechanism`` and ``oauth`` of a peer; none of them given means a password login."""
    if not {"auth", "mechanism"} & set(section.data) and "oauth" not in owner.data:
        return {}  # the dataclass defaults: every start-up (an MTA's `ingest` per message) skips the import
    from ticketd.daemon.config_oauth import OAuthSettings, peer_auth

    return peer_auth(section, owner, env, oauth or OAuthSettings(), key)


def _peer_fields(section: Section, env: dict[str, str], default_ports: dict[str, int], owner: Section,
                 oauth: Any, key: str) -> dict[str, Any]:
    host = section.get("host", str)
    security = section.choice("security", SECURITY_MODES, "tls")
    port = section.get("port", int, default_ports[security])
    if not 0 < port < 65536:
        section.fail("port", "a TCP port (1-65535)", port)
    ca_file = section.get("ca_file", str, None)
    if ca_file is not None and not Path(ca_file).is_file():
        section.fail("ca_file", "an existing CA bundle file", ca_file)
    return dict(
        host=host, port=port, security=security,
        username=section.get("username", str, None), password=read_secret(section, env),
        verify_tls=section.get("verify_tls", bool, True), ca_file=ca_file,
        timeout=section.positive("timeout", float, 60.0),
        **_peer_auth(section, owner, env, oauth, key),
    )


def load_smtp(section: Section, env: dict[str, str], oauth: Any) -> SmtpConfig:
    fields = _peer_fields(section, env, {"tls": 465, "starttls": 587, "none": 25}, section, oauth, "smtp")
    name, address = parseaddr(section.get("from", str, expected='an address like "Support <support@example.com>"'))
    if "@" not in address:
        section.fail("from", 'an address like "Support <support@example.com>"', section.data["from"])
    envelope = section.get("envelope_from", str, address)
    bounce_secret = read_secret(section, env, "bounce_secret")
    if bounce_secret is not None:
        if len(bounce_secret.reveal()) < 16:  # the message names the key, never the value
            given = next(k for k in section.data if k.startswith("bounce_secret"))
            section.fail(given, "a secret of at least 16 characters (e.g. openssl rand -hex 32)")
        if problem := check_base(envelope):  # each message's MAIL FROM becomes local+TOKEN@domain
            section.fail("envelope_from", f"{problem} (a bounce secret makes MAIL FROM local+TOKEN@domain)")
    config = SmtpConfig(
        **fields, from_name=name, from_address=address, envelope_from=envelope, bounce_secret=bounce_secret,
        retry_base=section.positive("retry_base", float, 30.0),
        retry_max=section.positive("retry_max", float, 3600.0),
        give_up_after=section.positive("give_up_after", float, 5 * 86400.0),
        connections=section.positive("connections", int, 16),
    )
    section.done()
    return config


def load_mailboxes(top: Section, env: dict[str, str], oauth: Any) -> tuple[MailboxConfig, ...]:
    raw = top.get("mailboxes", list, [], expected="an array of [[mailboxes]] tables")
    if not raw and not top.data.get("addresses"):  # a pipe-only site names its addresses instead
        top.fail("mailboxes", "at least one [[mailboxes]] table (or [[addresses]] for mail piped in by an MTA)")
    boxes = tuple(_mailbox(Section(top.file, f"mailboxes[{i}]", item), env, oauth) for i, item in enumerate(raw))
    _unique_names(top, "mailboxes", [box.name for box in boxes])
    return boxes


def load_addresses(top: Section, mailboxes: tuple[MailboxConfig, ...]) -> tuple[AddressConfig, ...]:
    raw = top.get("addresses", list, [], expected="an array of [[addresses]] tables")
    result = []
    for i, item in enumerate(raw):
        section = Section(top.file, f"addresses[{i}]", item)
        name, address = _short_name(section), section.get("address", str)
        if "@" not in address:
            section.fail("address", "an e-mail address", address)
        section.done()
        result.append(AddressConfig(name, address))
    _unique_names(top, "addresses", [a.name for a in result], [m.name for m in mailboxes])
    return tuple(result)


def _unique_names(top: Section, table: str, names: list[str], taken: tuple[str, ...] | list[str] = ()) -> None:
    for i, name in enumerate(names):
        if name in names[:i] or name in taken:
            raise ConfigError(f"{top.file}: {table}[{i}].name: expected a unique name, {name!r} is used twice")


def _short_name(section: Section) -> str:
    name = section.get("name", str)
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        section.fail("name", "a short name of letters, digits, - and _", name)
    return name


def _mailbox(section: Section, env: dict[str, str], oauth: Any) -> MailboxConfig:
    name = _short_name(section)
    address = section.get("address", str)
    if "@" not in address:
        section.fail("address", "an e-mail address", address)
    imap_section = section.sub("imap")
    imap = ImapConfig(**_peer_fields(imap_section, env, {"tls": 993, "starttls": 143, "none": 143}, section, oauth,
                                     f"mailbox:{name}"),  # its row in oauth_token (config_oauth.peer_key)
                      folder=imap_section.get("folder", str, "INBOX"))
    imap_section.done()
    if imap.auth == "password" and (imap.username is None or imap.password is None):
        imap_section.fail("username" if imap.username is None else "password",
                          "IMAP credentials (username and password / password_file / password_env)")
    box = MailboxConfig(
        name=name, address=address,
        after_processing=_after_processing(section),
        imap=imap,
        poll_interval=section.positive("poll_interval", float, 60.0),
        idle=section.get("idle", bool, True),
        batch_size=section.positive("batch_size", int, 50),
    )
    section.done()
    return box


def _after_processing(section: Section) -> AfterProcessing:
    value = section.get("after_processing", str, "seen")
    if value in ("seen", "delete"):
        return AfterProcessing(value)
    if value.startswith("move:") and value[5:].strip():
        return AfterProcessing("move", value[5:].strip())
    section.fail("after_processing", "seen | delete | move:FOLDER", value)
    raise AssertionError("unreachable")
