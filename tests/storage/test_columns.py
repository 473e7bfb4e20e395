"""A database made before the conversation columns opens with every row kept and the columns added."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from tortoise.backends.base.client import Capabilities
from tortoise.backends.base_postgres.schema_generator import BasePostgresSchemaGenerator

from ticketd.storage import columns
from ticketd.storage.db import database
from ticketd.storage.models import Article, Event, Participant, Ticket
from ticketd.storage.writes import GroupWrites
from tests.support import backend

# The four tables as the release before them created them (its generate_schemas, on SQLite),
# with rows: a ticket, its Cc'd participant, a customer's mail and our acknowledgement, an event.
OLD_SCHEMA = """
CREATE TABLE "ticket" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "number" BIGINT NOT NULL UNIQUE, "subject" TEXT NOT NULL,
    "status" VARCHAR(20) NOT NULL, "priority" VARCHAR(5) NOT NULL, "category" VARCHAR(100) NOT NULL,
    "queue" VARCHAR(100) NOT NULL, "mailbox" VARCHAR(100) NOT NULL, "requester" VARCHAR(320) NOT NULL,
    "requester_name" TEXT NOT NULL, "assignee" VARCHAR(320), "fired_rules" JSON NOT NULL, "tags" JSON NOT NULL,
    "created_at" TIMESTAMP NOT NULL, "updated_at" TIMESTAMP NOT NULL, "first_response_at" TIMESTAMP,
    "solved_at" TIMESTAMP);
CREATE TABLE "participant" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "email" VARCHAR(320) NOT NULL,
    "ticket_id" BIGINT NOT NULL REFERENCES "ticket" ("id") ON DELETE CASCADE,
    CONSTRAINT "uid_participant_ticket__8decdf" UNIQUE ("ticket_id", "email"));
CREATE TABLE "article" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "direction" VARCHAR(3) NOT NULL, "sender" TEXT NOT NULL,
    "to" TEXT NOT NULL, "cc" TEXT NOT NULL, "subject" TEXT NOT NULL, "message_id" VARCHAR(998) NOT NULL,
    "in_reply_to" TEXT NOT NULL, "references" TEXT NOT NULL, "date" TIMESTAMP, "text" TEXT NOT NULL,
    "html" TEXT NOT NULL, "internal" INT NOT NULL, "created_at" TIMESTAMP NOT NULL,
    "inbound_id" BIGINT, "ticket_id" BIGINT NOT NULL REFERENCES "ticket" ("id") ON DELETE CASCADE);
CREATE TABLE "event" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "what" VARCHAR(50) NOT NULL, "detail" JSON NOT NULL,
    "at" TIMESTAMP NOT NULL, "ticket_id" BIGINT NOT NULL REFERENCES "ticket" ("id") ON DELETE CASCADE);
INSERT INTO ticket VALUES (1, 41, 'Printer', 'open', 'P2', '', 'it', 'support', 'ann@example.org', 'Ann',
    'bob@example.test', '["r1"]', '["vip"]', '2026-01-05 10:00:00+00:00', '2026-01-05 11:00:00+00:00',
    '2026-01-05 11:00:00+00:00', NULL);
INSERT INTO participant VALUES (5, 'cc@example.org', 1);
INSERT INTO article VALUES (10, 'in', 'Ann <ann@example.org>', 'support@example.test', '', 'Printer', '<a@x>',
    '', '', NULL, 'It jams.', '', 0, '2026-01-05 10:00:00+00:00', NULL, 1);
INSERT INTO article VALUES (11, 'out', 'support@example.test', 'ann@example.org', '', 'Re: Printer', '<b@x>',
    '<a@x>', '<a@x>', NULL, 'We got it.', '', 0, '2026-01-05 10:00:01+00:00', NULL, 1);
INSERT INTO event VALUES (20, 'created', '{"article": 10}', '2026-01-05 10:00:00+00:00', 1);
"""
UPGRADED = ("ticket", "participant", "article", "event")
# PostgreSQL's upgrade: tests/storage/test_postgres_backend.py.
OLD_SQLITE = backend.sqlite_only("the old release's schema is a SQLite file")


def _definitions(path: Path, table: str) -> dict[str, tuple[str, int, str | None]]:
    """column -> (type, not null, default), as SQLite itself describes the table."""
    with sqlite3.connect(path) as db:
        return {name: (kind, notnull, default)
                for _, name, kind, notnull, default, _ in db.execute(f'PRAGMA table_info("{table}")')}


def _old_database(path: Path) -> None:
    with sqlite3.connect(path) as old:
        old.executescript(OLD_SCHEMA)


@OLD_SQLITE
async def test_an_old_database_gets_the_new_columns_with_defaults_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_database(path)
    async with database(f"sqlite://{path}", upgrade=True):  # `ticketd db upgrade`
        ticket = await Ticket.get(number=41)
        assert (ticket.subject, ticket.status, ticket.assignee, ticket.tags) == ("Printer", "open",
                                                                               "bob@example.test", ["vip"])
        assert ticket.first_response_at == datetime(2026, 1, 5, 11, tzinfo=timezone.utc)
        assert (ticket.closed_at, ticket.reopen_count, ticket.csat, ticket.linked_to, ticket.agent_replies) == \
            (None, 0, None, None, 0)
        assert [(p.email, p.following) for p in await Participant.all()] == [("cc@example.org", True)]
        articles = await Article.all().order_by("id")
        assert [(a.id, a.text, a.author, a.new_text) for a in articles] == [
            (10, "It jams.", "customer", ""), (11, "We got it.", "system", "")]  # our mail: backfilled
        [event] = await Event.all()
        assert (event.what, event.detail, event.who) == ("created", {"article": 10}, "")


@OLD_SQLITE
async def test_an_upgraded_database_has_the_columns_of_a_new_one_and_takes_new_rows(tmp_path: Path) -> None:
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    _old_database(old)
    async with database(f"sqlite://{new}"):
        pass
    async with database(f"sqlite://{old}", upgrade=True):
        writes = GroupWrites(datetime(2026, 2, 1, tzinfo=timezone.utc))
        row = await writes.ticket(42, subject="Next", priority="P3", category="", queue="it", mailbox="support",
                                  requester="eve@example.org", requester_name="", fired_rules=[], tags=[])
        await writes.article({"ticket_id": row.id, "inbound_id": None, "direction": "in", "sender": "eve@example.org",
                              "to": "", "cc": "", "subject": "Next", "message_id": "<c@x>", "in_reply_to": "",
                              "references": "", "date": None, "text": "Hi\n> old", "html": "", "internal": False,
                              "author": "agent", "new_text": "Hi"}, [])
        writes.participants(row.id, {"cc@example.org"})
        writes.event(row.id, "status_changed", {"from": "new", "to": "open"}, who="bob@example.test")
        await writes.flush()
        assert (await Article.get(message_id="<c@x>")).new_text == "Hi"
        assert (await Event.get(what="status_changed")).who == "bob@example.test"
    for table in UPGRADED:
        assert _definitions(old, table) == _definitions(new, table), table


@OLD_SQLITE
async def test_opening_an_upgraded_database_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_database(path)
    async with database(f"sqlite://{path}", upgrade=True):
        assert await columns.add_missing() == []  # the upgrade did it all
        await Article.filter(id=11).update(author="agent")  # written since: the backfill must not run again
    async with database(f"sqlite://{path}"):
        assert await columns.add_missing() == []
        assert (await Article.get(id=11)).author == "agent"
        assert await Article.all().count() == 2


@OLD_SQLITE
async def test_the_first_open_adds_every_listed_column_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_database(path)
    with sqlite3.connect(path) as db:  # the state before the open: none of them there
        for table, column, *_ in columns.ADDED:
            assert column not in {r[1] for r in db.execute(f'PRAGMA table_info("{table}")')}
    async with database(f"sqlite://{path}", upgrade=True):
        pass
    for table, column, *_ in columns.ADDED:
        assert column in _definitions(path, table), f"{table}.{column}"


async def test_the_postgresql_definitions_are_what_tortoise_creates_on_postgresql(tmp_path: Path) -> None:
    # No PostgreSQL server here: Tortoise's own PostgreSQL schema generator is the reference
    # (it needs a client only for its capabilities), so a new PostgreSQL database and an
    # upgraded one get the same column types, nullability and defaults.
    async with database(backend.url(tmp_path / "x.db")):  # Tortoise initialised: the models are bound
        client = SimpleNamespace(capabilities=Capabilities("postgres"))
        generator = BasePostgresSchemaGenerator(client)  # type: ignore[arg-type]
        ddl = {model._meta.db_table: generator._get_table_sql(model, True)["table_creation_string"]
               for model in (Ticket, Participant, Article, Event)}
    for table, column, _, postgres in columns.ADDED:
        found = re.search(rf'^\s*"{column}" (.*?),?$', ddl[table], re.MULTILINE)
        assert found, f"{table}.{column} is not a field on PostgreSQL"
        assert found.group(1).upper() == postgres.upper(), (table, column)
