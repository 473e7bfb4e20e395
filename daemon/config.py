"""Load and validate the TOML configuration into immutable dataclasses."""

from __future__ import annotations

import importlib.util
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ticketd.daemon.config_section import ConfigError as ConfigError, Section as Section  # re-exported: their old home
from ticketd.daemon.config_peers import (AddressConfig, MailboxConfig, SmtpConfig, load_addresses, load_mailboxes,
                                         load_oauth_table, load_smtp)
from ticketd.daemon.config_peers import ImapConfig, Peer

# The peers' dataclasses live in daemon.config_peers; every module imports them from here.
__all__ = ["AcknowledgementConfig", "AddressConfig", "Config", "ConfigError", "ImapConfig", "MailboxConfig", "Peer",
           "Section", "SmtpConfig", "config_path", "load_config"]

DEFAULT_CONFIG_PATH = "/etc/ticketd/ticketd.toml"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


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
    oauth = load_oauth_table(top)
    smtp = load_smtp(top.sub("smtp"), env, oauth)
    mailboxes = load_mailboxes(top, env, oauth)
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
    addresses = load_addresses(top, mailboxes)
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

