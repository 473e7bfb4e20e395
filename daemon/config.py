"""Load and validate the TOML configuration into immutable dataclasses."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from email.headerregistry import Address as HeaderAddress
from email.utils import parseaddr
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SECURITY_MODES = ("tls", "starttls", "none")
DEFAULT_CONFIG_PATH = "/etc/ticketd/ticketd.toml"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A configuration problem, worded as file: key: what was expected."""


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
class SmtpConfig(Peer):
    from_name: str = ""
    from_address: str = ""
    envelope_from: str = ""
    retry_base: float = 30.0
    retry_max: float = 3600.0
    give_up_after: float = 5 * 86400.0
    connections: int = 4

    @property
    def from_header(self) -> str:
        return str(HeaderAddress(display_name=self.from_name, addr_spec=self.from_address))


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
        detail = f", got {got!r}" if got is not None else ""
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
    database.done()
    smtp = _smtp(top.sub("smtp"), env)
    mailboxes = _mailboxes(top, env)
    from daemon.filters.registry import load_filters
    from daemon.rules import load_rules

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
    daemon.done()
    top.done()
    own = frozenset({m.address.lower() for m in mailboxes} | {smtp.from_address.lower()})
    return Config(top.file, url, smtp, mailboxes, ack, max_bytes, log_level, stop_grace, drain, own,
                  filters, rules, auto_limit)


def _database_url(section: Section) -> str:
    url = section.get("url", str, expected='a URL like "sqlite:///var/lib/ticketd/ticketd.db"')
    if not url.startswith(("sqlite://", "postgres://", "postgresql://")):
        section.fail("url", "a sqlite:// or postgres:// URL", url)
    return url


def _password(section: Section, env: dict[str, str]) -> Secret | None:
    given = [k for k in ("password", "password_file", "password_env") if k in section.data]
    if len(given) > 1:
        section.fail(given[1], f"only one of password / password_file / password_env (also {given[0]})")
    if not given:
        return None
    kind = given[0]
    value = section.get(kind, str)
    if kind == "password":
        return Secret(value)
    if kind == "password_env":
        if value not in env:
            section.fail(kind, f"the name of a set environment variable ({value} is not set)")
        return Secret(env[value])
    try:
        return Secret(Path(value).read_text(encoding="utf-8").rstrip("\r\n"))
    except OSError as exc:
        section.fail(kind, f"a readable file ({exc.strerror})", value)
    raise AssertionError("unreachable")


def _peer_fields(section: Section, env: dict[str, str], default_ports: dict[str, int]) -> dict[str, Any]:
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
        username=section.get("username", str, None), password=_password(section, env),
        verify_tls=section.get("verify_tls", bool, True), ca_file=ca_file,
        timeout=section.positive("timeout", float, 60.0),
    )


def _smtp(section: Section, env: dict[str, str]) -> SmtpConfig:
    fields = _peer_fields(section, env, {"tls": 465, "starttls": 587, "none": 25})
    name, address = parseaddr(section.get("from", str, expected='an address like "Support <support@example.com>"'))
    if "@" not in address:
        section.fail("from", 'an address like "Support <support@example.com>"', section.data["from"])
    envelope = section.get("envelope_from", str, address)
    config = SmtpConfig(
        **fields, from_name=name, from_address=address, envelope_from=envelope,
        retry_base=section.positive("retry_base", float, 30.0),
        retry_max=section.positive("retry_max", float, 3600.0),
        give_up_after=section.positive("give_up_after", float, 5 * 86400.0),
        connections=section.positive("connections", int, 4),
    )
    section.done()
    return config


def _mailboxes(top: Section, env: dict[str, str]) -> tuple[MailboxConfig, ...]:
    raw = top.get("mailboxes", list, expected="an array of [[mailboxes]] tables")
    if not raw:
        top.fail("mailboxes", "at least one [[mailboxes]] table")
    boxes = tuple(_mailbox(Section(top.file, f"mailboxes[{i}]", item), env) for i, item in enumerate(raw))
    names = [box.name for box in boxes]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"{top.file}: mailboxes[{i}].name: expected a unique name, {name!r} is used twice")
    return boxes


def _mailbox(section: Section, env: dict[str, str]) -> MailboxConfig:
    name = section.get("name", str)
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        section.fail("name", "a short name of letters, digits, - and _", name)
    address = section.get("address", str)
    if "@" not in address:
        section.fail("address", "an e-mail address", address)
    imap_section = section.sub("imap")
    imap = ImapConfig(**_peer_fields(imap_section, env, {"tls": 993, "starttls": 143, "none": 143}),
                      folder=imap_section.get("folder", str, "INBOX"))
    imap_section.done()
    if imap.username is None or imap.password is None:
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

