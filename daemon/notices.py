"""Short mails ticketd writes about a ticket: notices and alerts to agents, the pending reminder to customers.

A signed reply address (daemon.signing) is a bearer proof for its ticket: only mail to an
address of ``[[agents]]`` may carry one, and the functions that write such mail check their
recipient. Mail to a customer is given no signed address to begin with: its templates never
see one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from ticketd.daemon.config import Config, ConfigError
from ticketd.daemon.config_agents import Team
from ticketd.daemon.config_lifecycle import NOTIFICATION_TEMPLATES, TEMPLATES
from ticketd.daemon.outgoing import (address_header, date_value, header_line, new_message_id, one_line, reply_subject,
                                      text_message)
from ticketd.daemon.responders import Draft, TicketView
from ticketd.daemon.templating import Template, load_template
from ticketd.storage import clock

# The commands an agent may write at the top of a reply (daemon.commands), as the mails show them.
COMMAND_HELP = ("#status open|pending|solved|closed", "#priority P1-P4", "#assign ADDRESS", "#queue NAME",
                "#note (stays internal: the customer sees nothing)", "#cc add|remove ADDRESS")
SLA_TEMPLATES = ("warning", "breach", "escalation")  # templates/sla_NAME.txt.j2, with [sla] only
# path -> ((mtime_ns, size), compiled): compiled at start-up and on reload, read by every draft.
_CACHE: dict[Path, tuple[tuple[int, int] | None, Template]] = {}


def template_paths(config: Config) -> dict[str, Path]:
    """Config key -> template path of every mail here (and the new-ticket notification)."""
    paths = {f"notifications.{key}": getattr(config.notifications, key) for key in NOTIFICATION_TEMPLATES}
    paths["survey.template"] = config.survey.template
    if config.sla is not None:  # packaged, and compiled at load like the others: only with [sla]
        paths.update({f"sla.{name}": TEMPLATES / f"sla_{name}.txt.j2" for name in SLA_TEMPLATES})
    return paths


def load_notice_templates(config: Config) -> dict[str, Template]:
    """Compile the templates of ``config`` (again where a file changed); a broken one is a ConfigError naming its key.

    All or nothing: a reload with one broken template leaves every compiled one as it was.
    """
    fresh: dict[Path, tuple[tuple[int, int] | None, Template]] = {}
    result: dict[str, Template] = {}
    for key, path in template_paths(config).items():
        if key == "survey.template" and not config.survey.enabled:
            continue
        version = _version(path)
        cached = _CACHE.get(path)
        if cached is None or cached[0] != version or version is None:
            cached = fresh[path] = (version, _compile(config, key, path))
        result[key] = cached[1]
    _CACHE.update(fresh)
    return result


def template(config: Config, key: str) -> Template:
    """The compiled template of config key ``key``; the disk is read only if it was never loaded."""
    path = template_paths(config)[key]
    cached = _CACHE.get(path)
    if cached is None:
        cached = _CACHE[path] = (_version(path), _compile(config, key, path))
    return cached[1]


def notice_draft(config: Config, agent_address: str, subject: str, lines: Sequence[str], in_reply_to: str = "",
                 references: Iterable[str] = (), kind: str = "agent_notice") -> Draft:
    """A short notice to an agent ("Your mail was stored on ticket #42 but not relayed ...")."""
    agent = _agent(config, agent_address)
    body = template(config, "notifications.notice_template").render(
        agent=agent, subject=one_line(subject), lines=[str(line).replace("\r", "") for line in lines])
    return _draft(config, kind, _number(subject), (agent["address"],), subject, body, in_reply_to, references)


def low_csat_draft(config: Config, lead_address: str, ticket: TicketView, rating: int, comment: str) -> Draft:
    """Tell a queue's lead that a customer rated ticket ``ticket`` low."""
    agent = _agent(config, lead_address)
    body = template(config, "notifications.low_csat_template").render(
        agent=agent, ticket=ticket, rating=rating, comment=comment.replace("\r", ""))
    subject = f"[#{ticket.number}] Rated {rating}/5: {ticket.subject}"
    return _draft(config, "low_csat", ticket.number, (agent["address"],), subject, body)


def reminder_draft(config: Config, ticket: TicketView, recipient: str, in_reply_to: str,
                   references: Iterable[str]) -> Draft:
    """Remind the customer of a pending ticket that we wait for his answer (no signed address: a customer's)."""
    lifecycle = config.lifecycle
    body = template(config, "notifications.reminder_template").render(
        ticket=ticket, solve_in=duration(lifecycle.pending_solve - lifecycle.pending_reminder))
    subject = reply_subject(ticket.subject, ticket.number)
    return _draft(config, "pending_reminder", ticket.number, (one_line(recipient),), subject, body, in_reply_to,
                  references)


def assigned_draft(config: Config, agent_address: str, ticket: TicketView, reply_address: str) -> Draft:
    """Tell an agent a ticket is his; his reply to it goes to the ticket's signed ``reply_address``."""
    agent = _agent(config, agent_address)
    body = template(config, "notifications.assigned_template").render(
        agent=agent, ticket=ticket, commands=COMMAND_HELP)
    subject = f"[#{ticket.number}] Assigned to you: {ticket.subject}"
    return _draft(config, "assigned", ticket.number, (agent["address"],), subject, body, reply_to=reply_address)


def sla_draft(config: Config, agent_address: str, name: str, ticket: TicketView, subject: str,
              **values: Any) -> Draft:
    """An SLA warning, breach or escalation (``name`` of SLA_TEMPLATES) to an agent."""
    agent = _agent(config, agent_address)
    body = template(config, f"sla.{name}").render(agent=agent, ticket=ticket, **values)
    return _draft(config, f"sla_{name}", ticket.number, (agent["address"],), subject, body)


def duration(span: timedelta) -> str:
    """``span`` in words: "4 days", "36 hours" (not "2 days"), "1 minute"; rounded only from 3 units up."""
    seconds = max(round(span.total_seconds()), 0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and (seconds % size == 0 or seconds >= 3 * size or size == 1):
            count = round(seconds / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "0 seconds"


def check_reply_to(config: Config, recipients: Sequence[str], reply_to: str) -> None:
    """Refuse a Reply-To (ours are signed reply addresses) in mail to anyone who is not an agent: ValueError."""
    if reply_to:
        team = config.team
        for address in recipients:
            if not _is_agent(team, address):
                raise ValueError(_not_an_agent(address))


def message_headers(config: Config, recipients: Sequence[str], subject: str, message_id: str,
                    in_reply_to: str = "", references: Iterable[str] = (), reply_to: str = "",
                    from_name: str | None = None) -> list[bytes]:
    """From the support address (never an agent's), To, Subject, threading, RFC 3834 headers."""
    check_reply_to(config, recipients, reply_to)
    smtp = config.smtp
    headers = [
        address_header("From", smtp.from_name if from_name is None else from_name, smtp.from_address),
        header_line("To", ", ".join(map(one_line, recipients))),
        header_line("Subject", subject),
        header_line("Date", date_value(clock.now())),
        header_line("Message-ID", message_id),
    ]
    if reply_to:
        headers.append(header_line("Reply-To", reply_to))
    chain = [ref for ref in map(one_line, references) if ref][-10:]
    if in_reply_to:
        headers.append(header_line("In-Reply-To", in_reply_to))
        parent = one_line(in_reply_to)
        chain = [ref for ref in chain if ref != parent] + [parent]
    if chain:
        headers.append(header_line("References", " ".join(chain)))
    headers += _AUTOMATIC
    return headers


# RFC 3834: an auto-responder must not answer; Exchange's Out-of-Office reads the other.
_AUTOMATIC = (header_line("Auto-Submitted", "auto-generated"), header_line("X-Auto-Response-Suppress", "All"))


def _draft(config: Config, kind: str, number: int, recipients: tuple[str, ...], subject: str, body: str,
           in_reply_to: str = "", references: Iterable[str] = (), reply_to: str = "") -> Draft:
    message_id = new_message_id(number, config.smtp.from_address)
    headers = message_headers(config, recipients, subject, message_id, in_reply_to, references, reply_to)
    return Draft(kind, config.smtp.envelope_from, recipients, message_id, text_message(headers, body))


def _number(subject: str) -> int:
    """The ticket number a subject's [#N] names, 0 without one: only for the Message-ID, which nothing parses."""
    start = subject.rfind("[#")
    digits = subject[start + 2:subject.find("]", start)] if start >= 0 else ""
    return int(digits) if digits.isdigit() else 0


def _agent(config: Config, address: str) -> dict[str, Any]:
    """The agent with ``address`` as the templates see him; ValueError for anyone else."""
    found = config.team.agent_by_address(address) if config.team is not None else None
    if found is None:
        raise ValueError(_not_an_agent(address))
    return {"name": found.name, "address": found.address}


# (team, the addresses found to be agents of it): each notification checks the same few again, and
# normalizing one costs more than the rest of the check. A Team is frozen, so what was an agent
# of it stays one; a reloaded config brings another Team, which starts afresh. Bounded: the
# addresses are as written by callers, so different spellings of one agent each count.
_KNOWN_AGENTS: tuple[Team | None, set[str]] = (None, set())
_MAX_KNOWN_AGENTS = 1000


def _is_agent(team: Team | None, address: str) -> bool:
    global _KNOWN_AGENTS
    if team is None:
        return False
    known_team, known = _KNOWN_AGENTS
    if known_team is not team:
        known = set()
        _KNOWN_AGENTS = (team, known)
    if address in known:
        return True
    if team.agent_by_address(address) is None:
        return False
    if len(known) < _MAX_KNOWN_AGENTS:
        known.add(address)
    return True


def _not_an_agent(address: str) -> str:
    return f"{one_line(address)!r} is not an agent of [[agents]]: this mail is for agents only"


def _version(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _compile(config: Config, key: str, path: Path) -> Template:
    try:
        return load_template(path)
    except ValueError as exc:
        raise ConfigError(f"{config.path}: {key}: {exc}") from None
