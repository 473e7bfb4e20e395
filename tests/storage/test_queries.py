"""`tickets show --json` and `tickets list` as the queries build them, from rows in a real database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from ticketd.storage import queries
from ticketd.storage.db import database
from ticketd.storage.models import Article, Event, Participant, Ticket
from tests.support import backend

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


async def _conversation() -> None:
    ticket = await Ticket.create(
        number=7, subject="VPN", status="pending", queue="it", requester="ann@example.org", assignee="bob@example.test",
        csat=4, first_response_at=T0 + timedelta(minutes=30), solved_at=T0 + timedelta(hours=2),
        closed_at=T0 + timedelta(days=3), reopen_count=1, agent_replies=2, linked_to=3)
    await Participant.create(ticket=ticket, email="ann@example.org")  # the requester: not a follower
    await Participant.create(ticket=ticket, email="zoe@example.org")
    await Participant.create(ticket=ticket, email="cc@example.org")
    await Participant.create(ticket=ticket, email="gone@example.org", following=False)
    await Article.create(ticket=ticket, direction="in", sender="ann@example.org", text="VPN down.",
                         created_at=T0)  # stored before new_text existed: none
    await Article.create(ticket=ticket, direction="in", sender="bob@example.test", author="agent",
                         text="Restart it.\n\n> VPN down.\n-- \nBob", new_text="Restart it.", created_at=T0)
    await Article.create(ticket=ticket, direction="in", sender="bob@example.test", author="agent",
                         internal=True, text="She is VIP", new_text="She is VIP", created_at=T0)
    await Article.create(ticket=ticket, direction="out", sender="support@example.test", author="system",
                         text="We got it.", created_at=T0)
    # Written out of time order: the list must come back by time.
    await Event.create(ticket=ticket, what="status_changed", who="bob@example.test",
                       detail={"from": "open", "to": "pending"}, at=T0 + timedelta(minutes=30))
    await Event.create(ticket=ticket, what="created", who="ann@example.org", detail={"article": 1}, at=T0)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[None]:
    async with database(backend.url(tmp_path / "t.db")):
        yield


async def test_show_json_has_every_measure_of_the_ticket(db: None) -> None:
    await _conversation()
    shown = await queries.ticket_detail(7)
    assert shown is not None
    assert {key: shown[key] for key in ("assignee", "csat", "first_response_at", "solved_at", "closed_at",
                                        "reopen_count", "agent_replies", "followers", "linked_to")} == {
        "assignee": "bob@example.test", "csat": 4, "first_response_at": "2026-03-02T09:30:00+00:00",
        "solved_at": "2026-03-02T11:00:00+00:00", "closed_at": "2026-03-05T09:00:00+00:00",
        "reopen_count": 1, "agent_replies": 2, "followers": ["cc@example.org", "zoe@example.org"], "linked_to": 3}


async def test_each_article_says_who_wrote_it_and_what_they_added(db: None) -> None:
    await _conversation()
    shown = await queries.ticket_detail(7)
    assert shown is not None
    assert [(a["author"], a["internal"], a["new_text"], a["text"]) for a in shown["articles"]] == [
        ("customer", False, "VPN down.", "VPN down."),  # an old row: its whole text is new
        ("agent", False, "Restart it.", "Restart it.\n\n> VPN down.\n-- \nBob"),
        ("agent", True, "She is VIP", "She is VIP"),
        ("system", False, "We got it.", "We got it.")]
    assert shown["articles"][0]["created_at"] == "2026-03-02T09:00:00+00:00"


async def test_events_come_in_time_order_with_who_did_it(db: None) -> None:
    await _conversation()
    shown = await queries.ticket_detail(7)
    assert shown is not None
    assert shown["events"] == [
        {"what": "created", "who": "ann@example.org", "at": "2026-03-02T09:00:00+00:00", "detail": {"article": 1}},
        {"what": "status_changed", "who": "bob@example.test", "at": "2026-03-02T09:30:00+00:00",
         "detail": {"from": "open", "to": "pending"}}]


async def test_a_new_ticket_has_no_measures_yet(db: None) -> None:
    await Ticket.create(number=1, subject="x", requester="ann@example.org")
    shown = await queries.ticket_detail(1)
    assert shown is not None
    assert {key: shown[key] for key in ("assignee", "csat", "first_response_at", "solved_at", "closed_at",
                                        "reopen_count", "agent_replies", "followers", "linked_to", "events")} == {
        "assignee": None, "csat": None, "first_response_at": None, "solved_at": None, "closed_at": None,
        "reopen_count": 0, "agent_replies": 0, "followers": [], "linked_to": None, "events": []}


def numbers(rows: list[dict[str, Any]]) -> list[int]:
    return [r["number"] for r in rows]


async def test_list_filters_are_exact_and_the_assignee_any_case(db: None) -> None:
    await Ticket.create(number=1, subject="a", requester="a@x", status="open", queue="it", assignee="bob@example.test")
    await Ticket.create(number=2, subject="b", requester="b@x", status="open", queue="itx", assignee=None)
    await Ticket.create(number=3, subject="c", requester="c@x", status="pending", queue="it",
                        assignee="Bob@Example.test")
    assert numbers(await queries.ticket_list()) == [3, 2, 1]
    assert numbers(await queries.ticket_list(status="open")) == [2, 1]
    assert numbers(await queries.ticket_list(queue="it")) == [3, 1]  # not "itx"
    assert numbers(await queries.ticket_list(assignee="BOB@example.test")) == [3, 1]
    assert numbers(await queries.ticket_list(status="open", queue="it", assignee="bob@example.test")) == [1]
    assert numbers(await queries.ticket_list(assignee="bob")) == []
    assert numbers(await queries.ticket_list(1, queue="it")) == [3]
    assert [r["assignee"] for r in await queries.ticket_list(status="open")] == [None, "bob@example.test"]
