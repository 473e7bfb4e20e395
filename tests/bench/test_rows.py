"""Tests for bench/rows.py: rows from the models' metadata are the rows Tortoise itself writes."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from tortoise import connections
from tortoise.models import Model
from tortoise.transactions import in_transaction

from bench.rows import MissingValue, Table
from ticketd.storage.db import database
from ticketd.storage.models import InboundMessage, OutboundMessage, Ticket
from tests.support import backend

NOW = datetime(2024, 3, 4, 12, 30, 15, 123456, tzinfo=timezone.utc)


def _dialect() -> str:
    return connections.get("default").capabilities.dialect


async def _raw_rows(model: type[Model]) -> list[tuple[Any, ...]]:
    _, rows = await connections.get("default").execute_query(
        f'SELECT * FROM "{model._meta.db_table}" ORDER BY "{model._meta.db_pk_column}"')
    return [tuple(row) for row in rows]


async def _same_as_tortoise(model: type[Model], saved: Model, changes: dict[str, Any]) -> None:
    """Write ``saved``'s values again through Table (with ``changes``) and compare the stored columns."""
    table = Table(model, _dialect())
    values = {name: getattr(saved, name) for name in table.fields}
    async with in_transaction():
        await table.insert([table.row({**values, **changes})])
    ours, theirs = await _raw_rows(model)
    pk = list(table.fields).index(model._meta.pk_attr)
    differ = {table.fields[i] for i, (a, b) in enumerate(zip(ours, theirs)) if a != b and i != pk}
    assert differ == set(changes) - {model._meta.pk_attr}


async def test_rows_are_stored_exactly_as_the_orm_stores_them(tmp_path: Path) -> None:
    async with database(backend.url(tmp_path / "t.db")):
        ticket = await Ticket.create(number=1, subject="Über", requester="a@example.com", fired_rules=["vip"],
                                     tags=["x", "ü"], assignee=None)
        await _same_as_tortoise(Ticket, ticket, {"id": 2, "number": 2})
        out = await OutboundMessage.create(ticket=ticket, kind="acknowledgement", message_id="<m1@x>",
                                           mail_from="s@x", recipients=["a@example.com"], recipient="a@example.com",
                                           automatic=True, raw_bytes=b"\x00\xffbytes", next_try_at=NOW,
                                           created_at=NOW, sent_at=None)
        await _same_as_tortoise(OutboundMessage, out, {"id": 2, "message_id": "<m2@x>"})
        inbound = await InboundMessage.create(uidvalidity=7, uid=1, size=3, sha256="ab" * 32, message_id="<i@x>",
                                              verdicts=[["senders", "accept", "", {}]], ticket=ticket)
        await _same_as_tortoise(InboundMessage, inbound, {"id": 2, "uid": 2})


async def test_the_maker_converts_fixed_values_once_and_the_rest_per_row(tmp_path: Path) -> None:
    async with database(backend.url(tmp_path / "t.db")):
        table = Table(Ticket, _dialect())
        make = table.maker({"subject": "s", "requester": "r@x", "tags": ["a"]}, ("id", "number", "created_at",
                                                                                 "updated_at"))
        rows = [make(i, 100 + i, NOW, NOW) for i in (1, 2)]
        async with in_transaction():
            assert await table.insert(rows) == 2
        found = await Ticket.all().order_by("id")
        assert [(t.number, t.tags, t.created_at, t.status) for t in found] == \
            [(101, ["a"], NOW, "new"), (102, ["a"], NOW, "new")]
        with pytest.raises(ValueError):
            make(3, 103, NOW)  # a varying value missing


def test_a_column_without_a_default_must_be_given_and_an_unknown_one_is_refused() -> None:
    table = Table(Ticket)
    assert table.sql.startswith('INSERT INTO "ticket" ("id", "number", "subject"')
    with pytest.raises(MissingValue, match="ticket.subject"):
        table.maker({"requester": "r@x"}, ("id", "number", "created_at", "updated_at"))
    with pytest.raises(MissingValue, match="ticket.created_at"):  # auto_now_add: the caller gives the time
        table.maker({"subject": "s", "requester": "r@x"}, ("id", "number", "updated_at"))
    with pytest.raises(KeyError, match="no column for colour"):
        table.maker({"colour": "red"}, ())
