"""SLA steps through the real pipeline and database, on a simulated clock.

A P1 ticket (24x7: first response 1 h, next update 1 h, resolution 4 h) gets its warnings at
75 % and its breaches at 100 %, each once; a reply before the warning cancels them; pending
pauses resolution; without [sla] no SLA step is ever written.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from tortoise.transactions import in_transaction

from ticketd.daemon.commit import Commit
from ticketd.daemon.sla.clock import load_clock
from ticketd.daemon.sla.fire import fire
from ticketd.storage.db import database
from ticketd.storage.models import DueStep, Event, OutboundMessage, Ticket
from ticketd.storage.writes import load_tickets
from tests.support.desk import ALICE, START, Desk, config

MIN = timedelta(minutes=1)
SLA = """
[rules]
default_priority = "P1"

[sla]

[[sla.escalation]]
tier = "Tier 2"
after = "0m"
notify = ["alice@example.test"]

[sla.triggers]
unassigned = false  # nobody takes these tickets: the targets' steps are under test
"""


async def undone(prefix: str = "sla_") -> dict[str, datetime]:
    rows = await DueStep.filter(done_at=None, kind__startswith=prefix).values_list("kind", "due_at")
    return {kind: due_at for kind, due_at in rows}


async def events(what: str) -> list[dict]:  # type: ignore[type-arg]
    return list(await Event.filter(what=what).order_by("id").values_list("detail", flat=True))


async def test_a_new_p1_ticket_warns_at_45_minutes_and_breaches_at_an_hour(tmp_path: Path) -> None:
    async with database((cfg := config(tmp_path, SLA)).database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        assert await undone() == {"sla_warn:first_response": START + 45 * MIN,
                                  "sla_warn:resolution": START + 180 * MIN}
        assert await desk.later(44 * MIN) == 0
        assert await desk.later(6 * MIN) == 1  # T+50 min: the warning, once
        assert await desk.sent("sla_warning") == 1
        assert [e["target"] for e in await events("sla_warning")] == ["first_response"]
        assert (await events("sla_warning"))[0]["business_left_seconds"] == 600
        assert (await undone())["sla_breach:first_response"] == START + 60 * MIN
        assert await desk.later(MIN) == 0 and await desk.sent("sla_warning") == 1  # nothing more
        assert await desk.later(10 * MIN) == 1  # T+61 min: the breach, escalated at once ("0m")
        assert await desk.sent("sla_breach") == 1 and await desk.sent("sla_escalation") == 1
        [breach] = await events("sla_breach")
        assert breach["target"] == "first_response" and breach["business_over_seconds"] == 60
        assert await events("escalated") == [{"tier": "Tier 2", "level": 1, "reason": "breach of first_response",
                                              "target": "first_response", "step": 0, "to": [ALICE]}]
        assert "sla_breach:first_response" not in await undone() and "sla_escalate:first_response" not in await undone()
        assert await desk.later(MIN) == 0 and await desk.sent("sla_breach") == 1
        recipients = await OutboundMessage.filter(kind="sla_breach").values_list("recipients", flat=True)
        assert recipients == [[ALICE]]  # no assignee: the queue's agents


async def test_a_reply_before_the_warning_cancels_the_first_response_steps(tmp_path: Path) -> None:
    async with database((cfg := config(tmp_path, SLA)).database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        desk.clock.now += 30 * MIN
        await desk.agent(1, "Looking at it now.")
        steps = await undone()
        assert not any(kind.endswith(":first_response") for kind in steps)
        # The next update is owed an hour after the reply: warned at 45 minutes of it.
        assert steps["sla_warn:next_update"] == START + 75 * MIN
        assert await desk.later(40 * MIN) == 0  # T+70: past the first response's warn and breach times
        assert await desk.sent("sla_warning") == 0 and await events("sla_breach") == []
        assert await desk.later(10 * MIN) == 1  # T+80: the missed next update warns the assignee
        assert [e["target"] for e in await events("sla_warning")] == ["next_update"]
        desk.clock.now += 5 * MIN
        await desk.agent(1, "Found it, a full disk.")  # T+85, still open: the next update restarts
        # A new interval: its own warning at 45 minutes of it, though the last one was warned.
        assert (await undone())["sla_warn:next_update"] == START + 130 * MIN
        assert "sla_breach:next_update" not in await undone()


async def test_every_missed_next_update_interval_warns_and_breaches_once(tmp_path: Path) -> None:
    async with database((cfg := config(tmp_path, SLA)).database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        desk.clock.now += 10 * MIN
        await desk.agent(1, "Looking at it now.")  # T+10: the first interval starts
        assert await desk.later(46 * MIN) == 1  # T+56: its warning
        assert await desk.later(15 * MIN) == 1  # T+71: its breach (with the escalation, "0m")
        desk.clock.now += 9 * MIN
        await desk.customer("Any news?", number=1)  # T+80: an update is owed anew
        assert await desk.later(44 * MIN) == 0  # T+124
        assert await desk.later(2 * MIN) == 1  # T+126: the second interval's warning
        assert await desk.later(MIN) == 0  # given once
        assert await desk.later(15 * MIN) == 1  # T+141: the second interval's breach
        warned = [e for e in await events("sla_warning") if e["target"] == "next_update"]
        breached = [e for e in await events("sla_breach") if e["target"] == "next_update"]
        assert [e["since"][:16] for e in warned] == [f"{START + 10 * MIN:%Y-%m-%dT%H:%M}",
                                                     f"{START + 80 * MIN:%Y-%m-%dT%H:%M}"]
        assert [e["since"] for e in breached] == [e["since"] for e in warned]
        assert not any(kind.endswith(":next_update") for kind in await undone())  # until someone writes again
        await desk.later(60 * MIN)  # T+201: the resolution's warning (at 3 h), no third next update
        assert len([e for e in await events("sla_warning") if e["target"] == "next_update"]) == 2


async def test_each_warning_is_given_once_even_when_its_step_runs_again(tmp_path: Path) -> None:
    async with database((cfg := config(tmp_path, SLA)).database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        assert await desk.later(50 * MIN) == 1 and await desk.sent("sla_warning") == 1
        # A step written by a second daemon (or an older version) that no reschedule cancelled:
        # the event, not the row, decides whether the warning was given.
        async with in_transaction():
            commit = Commit(desk.processor, "")
            [ticket] = await load_tickets(set(), {1})
            assert not await fire(commit, "sla_warn:first_response", ticket)
            await commit.writes.flush()
        assert await desk.sent("sla_warning") == 1 and len(await events("sla_warning")) == 1


async def test_pending_pauses_resolution_and_moves_its_due_later(tmp_path: Path) -> None:
    async with database((cfg := config(tmp_path, SLA)).database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        desk.clock.now += 10 * MIN
        await desk.agent(1, "#status pending\nWhich site?")
        steps = await undone()
        assert "sla_warn:resolution" not in steps and "sla_warn:next_update" not in steps  # paused
        desk.clock.now += 120 * MIN  # two hours pending
        await desk.customer("www.example.org", 1)
        assert (await desk.ticket(1))["status"] == "open"
        assert (await undone())["sla_warn:resolution"] == START + (180 + 120) * MIN
        clock = await load_clock((await Ticket.get(number=1)).id)
        assert clock is not None
        assert clock.status_at(cfg.sla, desk.clock.now).resolution.due == START + (240 + 120) * MIN  # type: ignore


async def test_solving_stops_every_clock(tmp_path: Path) -> None:
    async with database((cfg := config(tmp_path, SLA)).database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        await desk.agent(1, "#status solved")  # nothing relayed: the status change alone stops them
        assert (await desk.ticket(1))["status"] == "solved" and await undone() == {}
        assert await desk.later(timedelta(hours=5)) == 0 and await events("sla_breach") == []


async def test_without_sla_no_sla_step_is_ever_written(tmp_path: Path) -> None:
    async with database((cfg := config(tmp_path, '\n[rules]\ndefault_priority = "P1"\n')).database_url):
        assert cfg.sla is None
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        await desk.agent(1, "#priority P2\nLooking.")
        await desk.customer("Still down.", 1)
        await desk.agent(1, "#status pending\nWhich site?")
        await desk.customer("www.example.org", 1)
        await desk.later(timedelta(hours=5))
        assert await DueStep.filter(kind__startswith="sla_").count() == 0
        assert await Event.filter(what__startswith="sla_").count() == 0


async def test_a_priority_change_moves_the_steps_to_the_new_policy(tmp_path: Path) -> None:
    async with database((cfg := config(tmp_path, SLA)).database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")  # Tuesday 09:00 UTC, P1
        await desk.agent(1, "#priority P2\n#note\nNot that urgent.")  # a note: nothing relayed
        steps = await undone()
        # P2 on the office calendar (09:00-18:00): first response 4 h, warned at 3 h.
        assert steps["sla_warn:first_response"] == START + timedelta(hours=3)
        assert steps["sla_warn:resolution"] == START + timedelta(days=1, hours=9)  # 18 of 24 h: Wednesday 18:00


async def test_an_escalation_after_the_breach_is_its_own_step(tmp_path: Path) -> None:
    async with database((cfg := config(tmp_path, SLA.replace('after = "0m"', 'after = "30m"'))).database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        assert await desk.later(50 * MIN) == 1 and await desk.later(11 * MIN) == 1  # warned, breached
        assert await events("escalated") == []
        assert (await undone())["sla_escalate:first_response"] == START + 90 * MIN
        assert await desk.later(28 * MIN) == 0  # T+89
        assert await desk.later(MIN) == 1 and [e["tier"] for e in await events("escalated")] == ["Tier 2"]
        assert await desk.later(timedelta(hours=1)) == 0 and len(await events("escalated")) == 1


async def test_the_requesters_tier_picks_its_policy(tmp_path: Path) -> None:
    gold = SLA.replace("[sla]\n", '[rules.tiers]\ngold = ["example.org"]\n\n[sla]\n\n[sla.tiers.Gold.P1]\n'
                                  'first_response = "20m"\n')
    async with database((cfg := config(tmp_path, gold)).database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")  # from ann@example.org: tier gold
        assert (await undone())["sla_warn:first_response"] == START + 15 * MIN
