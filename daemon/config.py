"""Load and validate the TOML configuration into immutable dataclasses."""

from __future__ import annotations

import importlib.util
import os
import tomllib
from dataclasses import dataclass, field
from email.headerregistry import Address as HeaderAddress
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from ticketd.daemon.config_section import ConfigError as ConfigError, Section as Section  # re-exported: their old home
from ticketd.daemon.credentials import Secret, read_secret
from ticketd.daemon.verp import check_base


SECURITY_MODES = ("tls", "starttls", "none")
DEFAULT_CONFIG_PATH = "/etc/ticketd/ticketd.toml"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


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
    connections: int = 8
    # Signs each outbound message's return address (daemon.verp); without it no bounce suppresses.
    bounce_secret: Secret | None = None

    @property
    def from_header(self) -> str:
        return str(HeaderAddress(display_name=self.from_name, addr_spec=self.from_address))

    @property
    def bounce_key(self) -> bytes | None:
        return self.bounce_secret.reveal().encode("utf-8") if self.bounce_secret is not None else None


@dataclass(frozen=True)
class AcknowledgementConfig:
    enabled: bool
    template: Path
    # "queue:NAME" / "category:NAME" -> template; the first that fits a ticket wins, queue first.
    templates: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    path: Path
    database_url: str
    smtp: SmtpConfig
    mailboxes: tuple[MailboxConfig, ...]
    acknowledgement: AcknowledgementConfig
    max_message_bytes: int
    log_level: str
    stop_grace: float = 10.0
    outbox_drain: float = 10.0
    own_addresses: frozenset[str] = field(default_factory=frozenset)
    filters: Any = None  # daemon.filters.registry.FiltersConfig
    rules: Any = None  # daemon.rules.RuleSet
    auto_replies_per_hour: int = 3  # per recipient: two autoresponders stop after this many
    addresses: tuple[AddressConfig, ...] = ()  # pipe-only support addresses ([[addresses]])
    # Where log lines go: "stderr" (the journal, under systemd), "syslog" (/dev/log), or a file.
    log_target: str = "stderr"
    # Seconds a writer waits for another process's lock (SQLite) before it is a temporary failure.
    busy_timeout: float = 30.0
    lmtp: Any = None  # daemon.config_lmtp.LmtpConfig: where `run` listens for LMTP, None if nowhere
    team: Any = None  # daemon.config_agents.Team: agents, queues, signing key; None without agents
    lifecycle: Any = None  # daemon.lifecycle.LifecycleConfig ([lifecycle]; defaults without it)
    survey: Any = None  # daemon.config_lifecycle.SurveyConfig ([survey])
    notifications: Any = None  # daemon.config_lifecycle.NotificationsConfig: template paths ([notifications])
    # daemon.sla.config.SlaConfig: business calendars, targets, escalation; None without [sla] (no clocks run)
    sla: Any = None
    # [retention]: days after its closing that a ticket's raw mail and attachment contents go; 0 keeps them
    raw_after_days: int = 0
    log_format: str = "text"  # "text" (as before), "keyvalue" or "json": daemon.logformat
    metrics: Any = None  # daemon.config_metrics.MetricsConfig: where `run` serves Prometheus metrics, None if nowhere
    webhooks: tuple[Any, ...] = ()  # daemon.config_webhooks.WebhookConfig: where ticket events are POSTed
    instance: Any = None  # daemon.config_instance.InstanceConfig ([instance]: name, lease_seconds)
    oauth: Any = None  # daemon.config_oauth.OAuthSettings ([oauth]); None without the table (the defaults)

    @property
    def support_addresses(self) -> tuple[str, ...]:
        """Every [[mailboxes]] and [[addresses]] address: the bases of signed reply addresses."""
        return tuple(p.address for p in (*self.mailboxes, *self.addresses))

    def support_address(self, name: str) -> str:
        """The address of the mailbox (or piped address) called ``name``, else smtp.from's."""
        point = self.intake(name) if name else None
        return point.address if point is not None else self.smtp.from_address

    def intake(self, name: str | None) -> MailboxConfig | AddressConfig | None:
        """The mailbox or address called ``name``; with None the first address, then mailbox."""
        points: tuple[AddressConfig | MailboxConfig, ...] = (*self.addresses, *self.mailboxes)
        if name is None:
            return points[0] if points else None
        return next((p for p in points if p.name == name), None)


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    """Read, validate and freeze the configuration file at ``path``."""
    file = Path(path)
    try:
        with file.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{file}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return _build(Section(file, "", data), environ if environ is not None else dict(os.environ))


def _build(top: Section, env: dict[str, str]) -> Config:
    database = top.sub("database")
    url = _database_url(database)
    busy_timeout = database.positive("busy_timeout", float, 30.0)
    database.done()
    oauth = _oauth(top)
    smtp = _smtp(top.sub("smtp"), env, oauth)
    mailboxes = _mailboxes(top, env, oauth)
    from ticketd.daemon.config_instance import load_instance
    from ticketd.daemon.config_lmtp import load_lmtp
    from ticketd.daemon.config_metrics import load_metrics
    from ticketd.daemon.filters.registry import load_filters
    from ticketd.daemon.rules_load import load_rules

    ack = _acknowledgement(top.sub("acknowledgement", {}))
    limits = top.sub("limits", {})
    max_bytes = limits.positive("max_message_bytes", int, 25 * 1024 * 1024)
    auto_limit = limits.get("auto_replies_per_hour", int, 3)
    if auto_limit < 0:
        limits.fail("auto_replies_per_hour", "0 or more", auto_limit)
    limits.done()
    filters = load_filters(top.sub("filters", {}))
    rules = load_rules(top.sub("rules", {}), top.file.parent)
    daemon = top.sub("daemon", {})
    log_level = daemon.choice("log_level", ("debug", "info", "warning", "error"), "info")
    stop_grace = daemon.positive("stop_grace", float, 10.0)
    drain = daemon.positive("outbox_drain", float, 10.0)
    log_target = daemon.get("log_target", str, "stderr", expected='"stderr", "syslog" or an absolute file path')
    if log_target not in ("stderr", "syslog") and not Path(log_target).is_absolute():
        daemon.fail("log_target", '"stderr", "syslog" or an absolute file path', log_target)
    log_format = daemon.choice("log_format", ("text", "keyvalue", "json"), "text")
    daemon.done()
    addresses = _addresses(top, mailboxes)
    lmtp = load_lmtp(top.sub("lmtp", {}))
    metrics = load_metrics(top.sub("metrics", {}))
    instance = load_instance(top.sub("instance", {}))
    points: tuple[MailboxConfig | AddressConfig, ...] = (*mailboxes, *addresses)
    own = frozenset({m.address.lower() for m in points} | {smtp.from_address.lower()})
    team = None
    if {"agents", "queues", "signing"} & set(top.data):  # else not even imported: `ingest` starts per message
        from ticketd.daemon.config_agents import load_team

        team = load_team(top, env, tuple(p.address for p in points), own)
    from ticketd.daemon.config_lifecycle import load_lifecycle

    lifecycle = load_lifecycle(top, team)  # (lifecycle, survey, notifications)
    sla = _sla(top, team)
    if sla is not None:
        from ticketd.daemon.sla.config import unassigned_default

        team = unassigned_default(team, sla)
    raw_after_days = _retention(top.sub("retention", {}))
    webhooks = _webhooks(top, env) if "webhooks" in top.data else ()
    top.done()
    return Config(top.file, url, smtp, mailboxes, ack, max_bytes, log_level, stop_grace, drain, own,
                  filters, rules, auto_limit, addresses, log_target, busy_timeout, lmtp, team, *lifecycle, sla,
                  raw_after_days=raw_after_days, log_format=log_format, metrics=metrics, webhooks=webhooks,
                  instance=instance, oauth=oauth)


def _webhooks(top: Section, env: dict[str, str]) -> tuple[Any, ...]:
    """``[[webhooks]]``: its module is imported only where there are some (`ingest` starts per message)."""
    from ticketd.daemon.config_webhooks import load_webhooks

    return load_webhooks(top, env)


def _oauth(top: Section) -> Any:
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


def _retention(section: Section) -> int:
    """``raw_after_days``: 0 (the default) keeps every message's bytes for ever."""
    days = section.get("raw_after_days", int, 0)
    if days < 0:
        section.fail("raw_after_days", "a number of days (0 keeps raw mail for ever)", days)
    section.done()
    return days


def _sla(top: Section, team: Any) -> Any:
    """``[sla]`` when the file has one (an empty table means the defaults); imported only then."""
    if "sla" not in top.data:
        top.seen.add("sla")
        return None
    from ticketd.daemon.sla.config import sla_config, with_team

    return with_team(sla_config(top.sub("sla")), top.file, team)


def _database_url(section: Section) -> str:
    url = section.get("url", str, expected='a URL like "sqlite:///var/lib/ticketd/ticketd.db"')
    if not url.startswith(("sqlite://", "postgres://", "postgresql://")):
        section.fail("url", "a sqlite:// or postgres:// URL", url)
    # Tortoise imports the driver only when it connects: without this the daemon would start,
    # then die with a traceback; check-config must say it instead.
    if url.startswith(("postgres://", "postgresql://")) and importlib.util.find_spec("asyncpg") is None:
        section.fail("url", "a database whose driver is installed: postgres:// needs asyncpg, which is "
                     "not installed (pip install 'ticketd[postgres]')")
    return url


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


def _smtp(section: Section, env: dict[str, str], oauth: Any) -> SmtpConfig:
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
        connections=section.positive("connections", int, 8),
    )
    section.done()
    return config


def _mailboxes(top: Section, env: dict[str, str], oauth: Any) -> tuple[MailboxConfig, ...]:
    raw = top.get("mailboxes", list, [], expected="an array of [[mailboxes]] tables")
    if not raw and not top.data.get("addresses"):  # a pipe-only site names its addresses instead
        top.fail("mailboxes", "at least one [[mailboxes]] table (or [[addresses]] for mail piped in by an MTA)")
    boxes = tuple(_mailbox(Section(top.file, f"mailboxes[{i}]", item), env, oauth) for i, item in enumerate(raw))
    _unique_names(top, "mailboxes", [box.name for box in boxes])
    return boxes


def _addresses(top: Section, mailboxes: tuple[MailboxConfig, ...]) -> tuple[AddressConfig, ...]:
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


def _acknowledgement(section: Section) -> AcknowledgementConfig:
    enabled = section.get("enabled", bool, True)
    default = PROJECT_ROOT / "templates" / "acknowledgement.txt.j2"
    template = Path(section.get("template", str, str(default)))
    if not template.is_absolute():
        template = section.file.parent / template
    if not template.is_file():
        section.fail("template", "an existing Jinja2 template file", str(template))
    templates: dict[str, Path] = {}
    table = section.sub("templates", {})
    for key in list(table.data):
        path = Path(table.get(key, str))
        if not key.startswith(("queue:", "category:")):
            table.fail(key, 'a key "queue:NAME" or "category:NAME"', key)
        path = path if path.is_absolute() else section.file.parent / path
        if not path.is_file():
            table.fail(key, "an existing Jinja2 template file", str(path))
        templates[key] = path
    table.done()
    section.done()
    return AcknowledgementConfig(enabled, template, templates)


def config_path(given: str | None, environ: dict[str, str] | None = None) -> str:
    env = environ if environ is not None else os.environ
    return given or env.get("TICKETD_CONFIG", DEFAULT_CONFIG_PATH)

