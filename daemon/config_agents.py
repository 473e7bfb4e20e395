"""The ``[signing]``, ``[[agents]]`` and ``[queues.NAME]`` sections: who the agents are and which queues they serve."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ticketd.daemon.addresses import is_own, is_valid, normalize
from ticketd.daemon.config_section import Section
from ticketd.daemon.credentials import Secret, read_secret
from ticketd.daemon.signing import DEFAULT_FORMAT, MIN_KEY_BYTES, check_base, check_format

ASSIGN_MODES = ("round-robin", "least-open", "skills", "none")
DEDICATED = "agent"  # QueueConfig.assign when the config names an agent's address
KEY_SOURCES = "secret_file, secret_env or secret_credential"
_AUTHSERV_ID = re.compile(r'[^\s;()"\\]+')
_ASSIGN_EXPECTED = "round-robin | least-open | skills | none, or the address of an agent in [[agents]]"
_TIMEOUT_EXPECTED = "a positive number of seconds (14400 for 4 hours)"


@dataclass(frozen=True)
class SigningConfig:
    """The key that signs each ticket's reply address, and what else an agent's reply must show."""

    secret: Secret
    reply_format: str = DEFAULT_FORMAT
    require_auth_results: bool = False
    trusted_authserv_id: str | None = None  # the MTA's, in its Authentication-Results fields

    @property
    def key(self) -> bytes:
        return self.secret.reveal().encode("utf-8")


@dataclass(frozen=True)
class AgentConfig:
    name: str
    address: str  # canonical (daemon.addresses.normalize): lower case, what a From is compared with
    groups: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()  # skill groups he serves besides those his groups name

    def serves(self, skill_group: str) -> bool:
        return skill_group in self.skills or skill_group in self.groups


@dataclass(frozen=True)
class SkillGroup:
    """A queue's skill group, chosen for a ticket by keywords of its text or tags its rules set."""

    name: str
    keywords: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class QueueConfig:
    name: str
    notify: tuple[str, ...] = ()  # group names and agent addresses, as configured (addresses canonical)
    recipients: tuple[str, ...] = ()  # notify expanded to agent addresses: in order, no repeats
    lead: str | None = None  # the agent told of low satisfaction
    assign: str = "none"  # one of ASSIGN_MODES, or DEDICATED (then assignee is the agent)
    assignee: str | None = None
    max_open_per_agent: int | None = None  # None: no limit
    unassigned_timeout: float | None = None  # seconds; None: never
    skills: tuple[SkillGroup, ...] = ()


@dataclass(frozen=True)
class Team:
    agents: tuple[AgentConfig, ...] = ()
    queues: tuple[QueueConfig, ...] = ()
    signing: SigningConfig | None = None
    _agents: dict[str, AgentConfig] = field(init=False, repr=False, compare=False)
    _queues: dict[str, QueueConfig] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_agents", {agent.address: agent for agent in self.agents})
        object.__setattr__(self, "_queues", {queue.name: queue for queue in self.queues})

    def agent_by_address(self, address: str) -> AgentConfig | None:
        """The agent with this address however it is cased or quoted; a +tag makes another address."""
        return self._agents.get(normalize(address))

    def queue(self, name: str) -> QueueConfig | None:
        return self._queues.get(name)

    def recipients(self, queue: str) -> tuple[str, ...]:
        """The addresses of the agents a queue notifies, groups expanded; () for a queue not configured."""
        found = self._queues.get(queue)
        return found.recipients if found is not None else ()


def load_team(top: Section, env: dict[str, str], bases: tuple[str, ...], own: frozenset[str]) -> Team | None:
    """Read the three sections; None when none is there (the daemon then knows no agents).

    ``bases`` are the support addresses that reply addresses are made of, ``own`` all of ours.
    """
    raw_agents = top.get("agents", list, [], expected="an array of [[agents]] tables")
    queues = top.sub("queues", {})
    signing = top.sub("signing", {})
    if not raw_agents and not queues.data and "signing" not in top.data:
        return None
    if (raw_agents or queues.data) and "signing" not in top.data:
        top.fail("signing", f"a [signing] table with {KEY_SOURCES} (required with [[agents]] or [queues])")
    sections = [Section(top.file, f"agents[{i}]", item) for i, item in enumerate(raw_agents)]
    agents = tuple(_agent(section, own) for section in sections)
    for i, agent in enumerate(agents):
        if agent.address in [a.address for a in agents[:i]]:
            sections[i].fail("address", "an address no other agent has", agent.address)
    configs = tuple(_queue(queues.sub(name), name, agents) for name in queues.data)
    defined = {group.name for queue in configs for group in queue.skills}
    for section, agent in zip(sections, agents):
        for j, skill in enumerate(agent.skills):
            if skill not in defined:
                section.fail(f"skills[{j}]", "a skill group of a [queues.NAME.skills] table "
                             f"({_listing(defined)})", skill)
    return Team(agents, configs, _signing(signing, env, bases))


def _signing(section: Section, env: dict[str, str], bases: tuple[str, ...]) -> SigningConfig:
    if "secret" in section.data:  # the config file is shown around; the key must not sit in it
        section.fail("secret", f"{KEY_SOURCES} (a key never sits in the configuration file itself)")
    secret = read_secret(section, env, "secret")
    if secret is None:
        section.fail("secret_file", f"the signing key: {KEY_SOURCES}, e.g. a file `ticketd keygen FILE` "
                     "writes (required)")
        raise AssertionError("unreachable")
    if len(secret.reveal().encode("utf-8")) < MIN_KEY_BYTES:
        given = next(k for k in section.data if k.startswith("secret_"))
        section.fail(given, f"a key of at least {MIN_KEY_BYTES} bytes, as `ticketd keygen FILE` writes "
                     "(the key is not shown)")
    fmt = section.get("reply_format", str, DEFAULT_FORMAT)
    if problem := check_format(fmt):
        section.fail("reply_format", problem, fmt)
    for base in bases:
        if problem := check_base(base, fmt):
            section.fail("reply_format", f"{problem} (the reply addresses of {base})", fmt)
    required = section.get("require_auth_results", bool, False)
    authserv_id = section.get("trusted_authserv_id", str, None)
    if required and authserv_id is None:
        section.fail("trusted_authserv_id", 'the authserv-id your MTA writes in Authentication-Results, '
                     'like "mx.example.test" (required with require_auth_results = true)')
    if authserv_id is not None and not required:
        section.fail("trusted_authserv_id", "require_auth_results = true beside it (alone it checks nothing)")
    if authserv_id is not None and not _AUTHSERV_ID.fullmatch(authserv_id):
        section.fail("trusted_authserv_id", 'an authserv-id like "mx.example.test"', authserv_id)
    section.done()
    return SigningConfig(secret, fmt, required, authserv_id)


def _agent(section: Section, own: frozenset[str]) -> AgentConfig:
    name = section.get("name", str, expected="the agent's name, as mail from ticketd shows it")
    if not name.strip() or not name.isprintable():
        section.fail("name", "a name of printable characters", name)
    written = section.get("address", str, expected="the agent's e-mail address")
    if not is_valid(written.strip()):
        section.fail("address", "an address like alice@example.com", written)
    address = normalize(written)
    if is_own(address, own):
        section.fail("address", "the agent's own address, not one of ticketd's (a mailbox, an address or "
                     "smtp.from)", written)
    agent = AgentConfig(name.strip(), address, _names(section, "groups"), _names(section, "skills"))
    section.done()
    return agent


def _queue(section: Section, name: str, agents: tuple[AgentConfig, ...]) -> QueueConfig:
    by_address = {agent.address: agent for agent in agents}
    notify, recipients = expand_notify(section, "notify", _names(section, "notify", at_sign=True), agents)
    lead = _agent_address(section, "lead", by_address)
    assign = section.get("assign", str, "none", expected=_ASSIGN_EXPECTED)
    assignee = None
    if assign not in ASSIGN_MODES:
        if "@" not in assign:
            section.fail("assign", _ASSIGN_EXPECTED, assign)
        assign, assignee = DEDICATED, _agent_address(section, "assign", by_address)
    max_open = section.get("max_open_per_agent", int, None, expected="a positive integer")
    if max_open is not None and max_open < 1:
        section.fail("max_open_per_agent", "a positive integer", max_open)
    timeout = section.get("unassigned_timeout", float, None, expected=_TIMEOUT_EXPECTED)
    if timeout is not None and timeout <= 0:
        section.fail("unassigned_timeout", _TIMEOUT_EXPECTED, timeout)
    if "skills" in section.data and assign != "skills":
        section.fail("skills", f'no such table with assign = {assign!r} (only "skills" reads it)')
    skills = _skills(section.sub("skills", {}), agents)
    if assign == "skills" and not skills:
        section.fail("skills", 'a table of skill groups (required with assign = "skills")')
    if assign in ("round-robin", "least-open") and not recipients:
        section.fail("notify", f"agents to assign to (assign = {assign!r} picks among those notified)")
    section.done()
    return QueueConfig(name, tuple(notify), tuple(dict.fromkeys(recipients)), lead, assign, assignee,
                       max_open, timeout, skills)



def _agent_address(section: Section, key: str, by_address: dict[str, AgentConfig]) -> str | None:
    written = section.get(key, str, None, expected="the address of an agent in [[agents]]")
    if written is None:
        return None
    if normalize(written) not in by_address:
        section.fail(key, "the address of an agent in [[agents]]", written)
    return normalize(written)


def _skills(section: Section, agents: tuple[AgentConfig, ...]) -> tuple[SkillGroup, ...]:
    """``"Data & Import" = ["import", "CSV"]``, or a table ``{ keywords = [...], tags = [...] }``."""
    groups = []
    for name in list(section.data):
        value = section.data[name]
        if not isinstance(value, (list, dict)):
            section.fail(name, "an array of keywords, or a table with keywords and tags", value)
        if isinstance(value, list):
            group = SkillGroup(name, _names(section, name, at_sign=True))
        else:
            table = section.sub(name)
            group = SkillGroup(name, _names(table, "keywords", at_sign=True), _names(table, "tags", at_sign=True))
            table.done()
        if not group.keywords and not group.tags:
            section.fail(name, "a skill group with keywords or tags")
        if not any(agent.serves(name) for agent in agents):
            section.fail(name, "a skill group that an agent serves (his skills or groups name it)")
        groups.append(group)
    section.done()
    return tuple(groups)


def expand_notify(section: Section, key: str, entries: tuple[str, ...],
                  agents: tuple[AgentConfig, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A notify list (group names, agent addresses) checked and expanded: (as written, canonical;
    the agents' addresses, in order, no repeats). Queues and the SLA's escalation steps read it so."""
    by_address = {agent.address for agent in agents}
    groups = {group for agent in agents for group in agent.groups}
    notify: list[str] = []
    recipients: list[str] = []
    for i, entry in enumerate(entries):
        if "@" in entry and normalize(entry) in by_address:
            notify.append(normalize(entry))
            recipients.append(normalize(entry))
        elif entry in groups:
            notify.append(entry)
            recipients += [agent.address for agent in agents if entry in agent.groups]
        else:
            section.fail(f"{key}[{i}]", f"a group of [[agents]] ({_listing(groups)}) or an agent's address", entry)
    return tuple(notify), tuple(dict.fromkeys(recipients))


def _names(section: Section, key: str, at_sign: bool = False) -> tuple[str, ...]:
    """A list of non-empty strings, stripped, in order, without repeats; without "@" unless ``at_sign``."""
    values: Any = section.get(key, list, [], expected="an array of strings")
    names: list[str] = []
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value.strip() or not value.isprintable() or \
                (not at_sign and "@" in value):
            section.fail(f"{key}[{i}]", "a name (a printable string without @)" if not at_sign
                         else "a printable string", value)
        names.append(value.strip())
    return tuple(dict.fromkeys(names))


def _listing(names: set[str]) -> str:
    return "known: " + ", ".join(sorted(names)) if names else "none is configured"
