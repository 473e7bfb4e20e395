"""Who gets a new ticket: the queue's assignment mode over its agents, skipping those away or at capacity."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

from ticketd.daemon.config_agents import DEDICATED, AgentConfig, QueueConfig, SkillGroup, Team
from ticketd.daemon.lifecycle import NEW, OPEN, PENDING
from ticketd.storage import bulk

# What counts against max_open_per_agent and what least-open compares: tickets still waiting on
# the agent (or on the customer, which he will have to read), in every queue: his load is his.
OPEN_STATUSES = (NEW, OPEN, PENDING)
AWAY, FULL = "away", "at capacity"
_COUNTER_NAME = 50  # storage.models.Counter.name's max_length


@dataclass(frozen=True)
class AssignChoice:
    agent: AgentConfig
    how: str  # "dedicated" | "round-robin" | "least-open" | "skills:<group>" | "least-open:no-skill-group"
    skipped: tuple[tuple[str, str], ...] = ()  # (address, AWAY or FULL) passed over on the way, in order


@dataclass(frozen=True)
class Unassigned:
    """The queue assigns, but nobody could be given this ticket; ``reason`` is for the log and the event."""

    reason: str
    skipped: tuple[tuple[str, str], ...] = ()


async def choose(team: Team, queue: QueueConfig, text: str, tags: tuple[str, ...],
                 now: datetime) -> AssignChoice | Unassigned | None:
    """The agent for a new ticket of ``queue``; None when the queue assigns nobody (``assign = "none"``).

    Call inside the commit's write transaction, so what is counted is what the commit writes
    beside. On SQLite that transaction is the only writer: two commits never both see an agent
    one below his limit. On PostgreSQL only the round-robin turn is locked; two instances
    committing at the same moment may each give one more ticket to an agent at his limit - 1.
    """
    if queue.assign == DEDICATED:
        return await _dedicated(team, queue, now)
    agents = [a for a in map(team.agent_by_address, queue.recipients) if a is not None]
    if queue.assign == "round-robin":
        return await _round_robin(queue, agents, now)
    if queue.assign == "least-open":
        return await _least_open(queue, agents, now, "least-open")
    if queue.assign == "skills":
        group = skill_group(queue.skills, text, tags)
        if group is None:  # nothing to route by: the least busy of the whole queue
            return await _least_open(queue, agents, now, "least-open:no-skill-group")
        serving = [a for a in agents if a.serves(group.name)]
        if not serving:
            return Unassigned(f"no agent notified by queue {queue.name} serves skill group {group.name!r}")
        # A specialist's work is not handed to whoever is free: past the skilled agents the
        # ticket stays unassigned, and unassigned_timeout reports it.
        return await _least_open(queue, serving, now, f"skills:{group.name}")
    return None


def skill_group(groups: tuple[SkillGroup, ...], text: str, tags: tuple[str, ...]) -> SkillGroup | None:
    """The first group, in config order, one of whose tags the rules set or whose keywords the text holds."""
    given = {tag.casefold() for tag in tags}
    for group in groups:
        if any(tag.casefold() in given for tag in group.tags):
            return group
        if group.keywords and _keywords(group.keywords).search(text):
            return group
    return None


@lru_cache(maxsize=128)
def _keywords(keywords: tuple[str, ...]) -> re.Pattern[str]:
    """Whole words or phrases, any case.

    Lookarounds instead of ``\\b``: a keyword that starts or ends with punctuation ("C++", ".NET")
    has no word boundary there. A phrase's spaces match any white space, a line break included.
    Cached by the keywords themselves, so a reload with the same groups compiles nothing.
    """
    alternatives = (r"\s+".join(map(re.escape, keyword.split())) for keyword in keywords)
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


async def _dedicated(team: Team, queue: QueueConfig, now: datetime) -> AssignChoice | Unassigned:
    address = queue.assignee or ""
    agent = team.agent_by_address(address) if address else None
    if agent is None:  # load_team checks it is an agent; a hand-built config may not
        return Unassigned(f"the dedicated agent {address} of queue {queue.name} is not in [[agents]]")
    away, open_counts = await _standing([address], now, counts=queue.max_open_per_agent is not None)
    why = _unavailable(queue, address, away, open_counts)
    if why is not None:  # the queue wants this agent and no other: it waits for him or a person
        return Unassigned(f"the dedicated agent {address} of queue {queue.name} is {why}", ((address, why),))
    return AssignChoice(agent, "dedicated")


async def _least_open(queue: QueueConfig, agents: list[AgentConfig], now: datetime,
                      how: str) -> AssignChoice | Unassigned:
    away, open_counts = await _standing([a.address for a in agents], now, counts=True)
    eligible, skipped = _eligible(queue, agents, away, open_counts)
    if not eligible:
        return _nobody(queue, agents, skipped)
    # min() keeps the first of equals: ties go by the queue's recipients order.
    best = min(eligible, key=lambda agent: open_counts.get(agent.address, 0))
    return AssignChoice(best, how, skipped)


async def _round_robin(queue: QueueConfig, agents: list[AgentConfig], now: datetime) -> AssignChoice | Unassigned:
    if not agents:
        return _nobody(queue, agents, ())
    name = pointer_name(queue.name)
    # PostgreSQL: the row lock makes a second instance wait for this commit, so two never take
    # the same turn. (SQLite: BEGIN IMMEDIATE holds the database's write lock already.) Before
    # the row exists there is nothing to lock: two instances may then both start at the first
    # agent, once; the upsert below cannot fail either way.
    lock = " FOR UPDATE" if bulk.is_postgres(bulk.client()) else ""
    rows = await bulk.fetch(f"SELECT value FROM counter WHERE name = ?{lock}", [name])
    start = int(rows[0][0]) % len(agents) if rows else 0
    turn = agents[start:] + agents[:start]
    away, open_counts = await _standing([a.address for a in agents], now,
                                        counts=queue.max_open_per_agent is not None)
    eligible, skipped = _eligible(queue, turn, away, open_counts)
    if not eligible:
        return _nobody(queue, agents, skipped)  # the pointer stays: the next ticket tries the same turn
    chosen = eligible[0]
    after = (agents.index(chosen) + 1) % len(agents)  # past the chosen one, so past those skipped too
    if not rows or int(rows[0][0]) != after:
        await bulk.execute("INSERT INTO counter (name, value) VALUES (?, ?) "
                           "ON CONFLICT (name) DO UPDATE SET value = excluded.value", [name, after])
    return AssignChoice(chosen, "round-robin", skipped)


def pointer_name(queue: str) -> str:
    """``assign:<queue>``, the counter row of a queue's round-robin turn.

    Counter.name holds 50 characters and a queue name may be longer: PostgreSQL would refuse
    the row and with it the whole commit, so a long name is replaced by a digest of it.
    """
    name = f"assign:{queue}"
    if len(name) <= _COUNTER_NAME:
        return name
    return "assign:#" + hashlib.sha256(queue.encode("utf-8")).hexdigest()[:_COUNTER_NAME - len("assign:#")]


def _eligible(queue: QueueConfig, agents: list[AgentConfig], away: set[str],
              open_counts: dict[str, int]) -> tuple[list[AgentConfig], tuple[tuple[str, str], ...]]:
    eligible, skipped = [], []
    for agent in agents:
        why = _unavailable(queue, agent.address, away, open_counts)
        if why is None:
            eligible.append(agent)
        else:
            skipped.append((agent.address, why))
    return eligible, tuple(skipped)


def _unavailable(queue: QueueConfig, address: str, away: set[str], open_counts: dict[str, int]) -> str | None:
    if address in away:
        return AWAY
    limit = queue.max_open_per_agent
    if limit is not None and open_counts.get(address, 0) >= limit:
        return f"{FULL} ({open_counts.get(address, 0)} open, max_open_per_agent = {limit})"
    return None


def _nobody(queue: QueueConfig, agents: list[AgentConfig], skipped: tuple[tuple[str, str], ...]) -> Unassigned:
    if not agents:
        return Unassigned(f"queue {queue.name} notifies no agent to assign to")
    return Unassigned(f"every agent of queue {queue.name} is away or at capacity: "
                      + ", ".join(f"{address} {why}" for address, why in skipped), skipped)


async def _standing(addresses: list[str], now: datetime, counts: bool) -> tuple[set[str], dict[str, int]]:
    """Which of ``addresses`` are away at ``now``, and (``counts``) how many open tickets each has.

    One statement for both, on the primary key of agent_away and the (assignee, status) index
    of ticket: this runs in the commit of every new ticket of an assigning queue.
    """
    if not addresses:
        return set(), {}
    # An away row whose end has passed counts as back: nobody has to delete it first.
    # UTC, as the ORM stores times: on SQLite they are compared as text.
    sql = (f"SELECT 'away', address, 0 FROM agent_away WHERE address IN ({bulk.marks(len(addresses))}) "
           'AND ("until" IS NULL OR "until" > ?)')
    values: list[object] = [*addresses, now.astimezone(timezone.utc)]
    if counts:
        sql += (f" UNION ALL SELECT 'open', assignee, count(*) FROM ticket "
                f"WHERE assignee IN ({bulk.marks(len(addresses))}) AND status IN ({bulk.marks(len(OPEN_STATUSES))}) "
                "GROUP BY assignee")
        values += [*addresses, *OPEN_STATUSES]
    away: set[str] = set()
    open_counts: dict[str, int] = {}
    for kind, address, count in await bulk.fetch(sql, values):
        if kind == "away":
            away.add(address)
        else:
            open_counts[address] = int(count)
    return away, open_counts
