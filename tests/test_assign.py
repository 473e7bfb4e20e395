"""Assignment per queue (issue #8, point 3): every mode, capacity, agents away, skill groups, on SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from ticketd.daemon.assign import AssignChoice, Unassigned, choose, pointer_name, skill_group
from ticketd.daemon.config_agents import QueueConfig, Team
from ticketd.storage.db import close_database, database, open_database
from ticketd.storage.models import AgentAway, Counter, Ticket
from tests.support import backend
from tests.test_config_agents import team as load_team

NOW = datetime(2030, 3, 4, 12, 0, tzinfo=timezone.utc)

# Alice, Bob and Carol answer the tier1 queues in that order; Dave serves skill groups but no
# queue below notifies him, so he is never a candidate.
TEAM = """
[signing]
secret_file = "/etc/ticketd/signing.key"

[[agents]]
name = "Alice"
address = "Alice@Example.Test"
groups = ["tier1"]

[[agents]]
name = "Bob"
address = "bob@example.test"
groups = ["tier1", "Data & Import"]
skills = ["API & Integrations"]

[[agents]]
name = "Carol"
address = "carol@example.test"
groups = ["tier1"]
skills = ["API & Integrations"]

[[agents]]
name = "Dave"
address = "dave@example.test"
groups = ["tier2"]
skills = ["Data & Import", "Billing"]

[queues.rr]
notify = ["tier1"]
assign = "round-robin"
max_open_per_agent = 2

[queues.least]
notify = ["tier1"]
assign = "least-open"
max_open_per_agent = 3

[queues.skills]
notify = ["tier1"]
assign = "skills"

[queues.skills.skills]
"API & Integrations" = ["API", "webhook"]
"Data & Import" = { keywords = ["import", "export", "CSV", "bulk upload"], tags = ["csv"] }
"Billing" = ["invoice"]

[queues.dedicated]
notify = ["tier1"]
assign = "carol@example.test"
max_open_per_agent = 1

[queues.quiet]
notify = ["tier1"]
"""

@pytest.fixture
async def team(tmp_path: Path) -> AsyncIterator[Team]:
    loaded = load_team(tmp_path, TEAM)
    async with database(backend.url(tmp_path / "ticketd.db")):
        yield loaded


def queue(team: Team, name: str) -> QueueConfig:
    found = team.queue(name)
    assert found is not None
    return found


async def pick(team: Team, name: str, text: str = "Hello", tags: tuple[str, ...] = (),
               now: datetime = NOW) -> AssignChoice | Unassigned | None:
    """``choose`` as the commit calls it: inside a write transaction."""
    async with in_transaction():
        return await choose(team, queue(team, name), text, tags, now)


async def agent(team: Team, name: str, text: str = "Hello", tags: tuple[str, ...] = (),
                now: datetime = NOW) -> tuple[str, str]:
    chosen = await pick(team, name, text, tags, now)
    assert isinstance(chosen, AssignChoice), chosen
    return chosen.agent.address, chosen.how


async def tickets(assignee: str, count: int, status: str = "open", queue: str = "other") -> None:
    start = await Ticket.all().count()
    for i in range(count):
        await Ticket.create(number=start + i + 1, subject="s", requester="c@example.org", assignee=assignee,
                            status=status, queue=queue)


async def away(address: str, until: datetime | None) -> None:
    await AgentAway.create(address=address, until=until, since=NOW - timedelta(days=1))


async def test_a_queue_without_assign_assigns_nobody(team: Team) -> None:
    assert await pick(team, "quiet") is None


# --- a dedicated agent


async def test_a_dedicated_queue_gives_every_ticket_to_its_agent(team: Team) -> None:
    assert await agent(team, "dedicated") == ("carol@example.test", "dedicated")
    await tickets("carol@example.test", 3, status="solved")  # done work is no load
    await tickets("carol@example.test", 2, status="closed")
    assert await agent(team, "dedicated") == ("carol@example.test", "dedicated")


async def test_a_dedicated_agent_away_means_no_assignment_not_someone_else(team: Team) -> None:
    await away("carol@example.test", None)
    chosen = await pick(team, "dedicated")
    assert chosen == Unassigned("the dedicated agent carol@example.test of queue dedicated is away",
                                (("carol@example.test", "away"),))


async def test_a_dedicated_agent_at_capacity_means_no_assignment(team: Team) -> None:
    await tickets("carol@example.test", 1, status="pending")  # waiting on the customer still counts
    chosen = await pick(team, "dedicated")
    assert isinstance(chosen, Unassigned)
    assert "carol@example.test" in chosen.reason and "at capacity (1 open, max_open_per_agent = 1)" in chosen.reason


# --- round-robin


async def test_round_robin_takes_turns_in_the_order_of_the_queues_recipients(team: Team) -> None:
    assert queue(team, "rr").recipients == ("alice@example.test", "bob@example.test", "carol@example.test")
    turns = [(await agent(team, "rr"))[0] for _ in range(4)]
    assert turns == ["alice@example.test", "bob@example.test", "carol@example.test", "alice@example.test"]
    assert (await Counter.get(name="assign:rr")).value == 1  # the next turn is Bob's


async def test_the_round_robin_pointer_outlives_the_database_connection(team: Team, tmp_path: Path) -> None:
    await agent(team, "rr")
    await agent(team, "rr")
    await close_database()  # the daemon restarts
    await open_database(backend.url(tmp_path / "ticketd.db"))  # the fixture closes it
    assert await agent(team, "rr") == ("carol@example.test", "round-robin")


async def test_round_robin_skips_an_agent_who_is_away_and_moves_past_him(team: Team) -> None:
    await agent(team, "rr")  # Alice's turn; Bob's is next
    await away("bob@example.test", NOW + timedelta(days=2))
    chosen = await pick(team, "rr")
    assert isinstance(chosen, AssignChoice)
    assert (chosen.agent.address, chosen.skipped) == ("carol@example.test", (("bob@example.test", "away"),))
    assert (await agent(team, "rr"))[0] == "alice@example.test"  # not Bob again: the turn went past him
    assert (await agent(team, "rr"))[0] == "carol@example.test"


async def test_round_robin_skips_an_agent_at_capacity(team: Team) -> None:
    await tickets("alice@example.test", 2)
    await tickets("bob@example.test", 1)
    chosen = await pick(team, "rr")
    assert isinstance(chosen, AssignChoice) and chosen.agent.address == "bob@example.test"
    assert chosen.skipped == (("alice@example.test", "at capacity (2 open, max_open_per_agent = 2)"),)


async def test_round_robin_with_everyone_unavailable_keeps_its_turn(team: Team) -> None:
    await agent(team, "rr")  # Bob's turn next
    for address in ("alice@example.test", "bob@example.test", "carol@example.test"):
        await away(address, None)
    chosen = await pick(team, "rr")
    assert isinstance(chosen, Unassigned) and "every agent of queue rr is away or at capacity" in chosen.reason
    assert [address for address, _ in chosen.skipped] == ["bob@example.test", "carol@example.test",
                                                          "alice@example.test"]
    await AgentAway.all().delete()  # all back
    assert (await agent(team, "rr"))[0] == "bob@example.test"


# --- least-open


async def test_least_open_picks_the_agent_with_fewest_open_tickets_in_any_queue(team: Team) -> None:
    await tickets("alice@example.test", 2, queue="least")
    await tickets("bob@example.test", 1, queue="elsewhere")
    await tickets("carol@example.test", 1, queue="least")
    await tickets("alice@example.test", 9, status="closed")
    assert await agent(team, "least") == ("bob@example.test", "least-open")  # Bob before Carol: recipients order
    await tickets("bob@example.test", 1, status="new")
    assert await agent(team, "least") == ("carol@example.test", "least-open")


async def test_least_open_passes_over_agents_at_capacity_and_away(team: Team) -> None:
    await tickets("alice@example.test", 3)  # max_open_per_agent = 3
    await tickets("bob@example.test", 2)
    await tickets("carol@example.test", 2)
    await away("bob@example.test", None)
    chosen = await pick(team, "least")
    assert isinstance(chosen, AssignChoice) and chosen.agent.address == "carol@example.test"
    assert [address for address, _ in chosen.skipped] == ["alice@example.test", "bob@example.test"]
    await tickets("carol@example.test", 1)
    chosen = await pick(team, "least")
    assert isinstance(chosen, Unassigned) and chosen.reason.startswith("every agent of queue least")


# --- away: until a date, expired, open-ended


@pytest.mark.parametrize("until, skipped", [
    (NOW + timedelta(seconds=1), True),  # back tomorrow
    (None, True),  # `#away` without a date: until `#back`
    (NOW, False),  # the day he said he is back has come: no `#back` needed
    (NOW - timedelta(days=3), False),
])
async def test_an_agent_is_away_until_the_time_he_gave(team: Team, until: datetime | None, skipped: bool) -> None:
    await away("alice@example.test", until)
    first = "bob@example.test" if skipped else "alice@example.test"
    assert (await agent(team, "least"))[0] == first


async def test_the_end_of_an_absence_is_compared_in_utc_whatever_the_clocks_zone(team: Team) -> None:
    await away("alice@example.test", NOW + timedelta(hours=1))  # stored in UTC by the ORM
    berlin = NOW.astimezone(timezone(timedelta(hours=2)))  # 14:00+02:00, later than 13:00 as text
    assert (await agent(team, "least", now=berlin))[0] == "bob@example.test"
    assert (await agent(team, "least", now=berlin + timedelta(hours=1)))[0] == "alice@example.test"


# --- skill groups


async def test_a_keyword_of_the_text_chooses_the_skill_group(team: Team) -> None:
    await tickets("bob@example.test", 1)
    chosen = await agent(team, "skills", "Our webhook returns 500 since this morning")
    assert chosen == ("carol@example.test", "skills:API & Integrations")  # Alice serves no skill group


async def test_a_rules_tag_chooses_the_skill_group(team: Team) -> None:
    assert await agent(team, "skills", "Numbers look wrong", tags=("billing", "CSV")) == \
        ("bob@example.test", "skills:Data & Import")


async def test_the_first_matching_group_in_config_order_wins(team: Team) -> None:
    assert (await agent(team, "skills", "The CSV export from the API"))[1] == "skills:API & Integrations"


async def test_without_a_matching_group_the_least_busy_of_the_queue_gets_it(team: Team) -> None:
    await tickets("alice@example.test", 1)
    assert await agent(team, "skills", "Rapid help wanted: my APIs page is blank") == \
        ("bob@example.test", "least-open:no-skill-group")


@pytest.mark.parametrize("text, group", [
    ("our WEBHOOK fails", "API & Integrations"),
    ("api.", "API & Integrations"),
    ("the bulk\n  upload stops", "Data & Import"),  # a phrase across a line break
    ("capital letters", None),  # "api" inside a word
    ("webhooks", None),  # whole words: the config lists a plural it means
    ("bulkupload", None),
    ("", None),
])
async def test_keywords_are_whole_words_or_phrases_in_any_case(team: Team, text: str, group: str | None) -> None:
    found = skill_group(queue(team, "skills").skills, text, ())
    assert (found.name if found else None) == group


async def test_a_skill_group_none_of_the_queues_agents_serves_leaves_the_ticket_unassigned(team: Team) -> None:
    chosen = await pick(team, "skills", "Where is my invoice?")  # only Dave, whom the queue does not notify
    assert chosen == Unassigned("no agent notified by queue skills serves skill group 'Billing'")


async def test_when_the_skilled_agents_are_away_nobody_else_takes_their_ticket(team: Team) -> None:
    await away("bob@example.test", None)
    await away("carol@example.test", NOW + timedelta(days=1))
    chosen = await pick(team, "skills", "webhook down")
    assert isinstance(chosen, Unassigned)
    assert chosen.skipped == (("bob@example.test", "away"), ("carol@example.test", "away"))


# --- what it costs


def _traced(statements: list[str]) -> list[str]:
    return [s for s in statements if s.split(None, 1)[0].upper() in ("SELECT", "INSERT", "UPDATE")]


async def _statements(work: Callable[[], Awaitable[Any]]) -> list[str]:
    statements: list[str] = []
    connection = connections.get("default")._connection
    await connection.set_trace_callback(statements.append)
    try:
        await work()
    finally:
        await connection.set_trace_callback(None)
    return _traced(statements)


@backend.sqlite_only("the statements are traced by SQLite itself, the plan read by EXPLAIN QUERY PLAN")
async def test_one_statement_per_choice_and_three_for_round_robin_none_scanning_tickets(
        team: Team, tmp_path: Path) -> None:
    await tickets("bob@example.test", 30, status="closed")
    await tickets("bob@example.test", 2)
    least = await _statements(lambda: pick(team, "least"))
    assert len(least) == 1
    robin = await _statements(lambda: pick(team, "rr"))
    assert len(robin) == 3  # the turn, the standing of the agents, the turn moved on
    assert len(await _statements(lambda: pick(team, "quiet"))) == 0
    with sqlite3.connect(tmp_path / "ticketd.db") as plain:
        plans = [row[-1] for row in plain.execute("EXPLAIN QUERY PLAN " + least[0])]
    assert any("USING" in plan and "INDEX idx_ticket_assigne" in plan for plan in plans), plans
    assert not any(plan.startswith("SCAN") and "ticket" in plan.split()[:2] for plan in plans), plans


def test_a_long_queue_name_still_fits_the_counter_row() -> None:
    assert pointer_name("support") == "assign:support"
    long_names = ["x" * 43, "x" * 44, "y" * 100]
    names = [pointer_name(name) for name in long_names]
    assert names[0] == "assign:" + "x" * 43
    assert all(len(name) <= 50 for name in names) and len(set(names)) == 3
