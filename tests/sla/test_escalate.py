"""The escalation matrix through the real pipeline and database, on a simulated clock.

A P1 ticket (24x7: first response 1 h, resolution 4 h) from START, Tuesday 09:00 UTC: the first
response is breached at T+60 and escalates to Tier 2 at once; Engineering follows 2.5 h after the
breach (T+210) and moves the ticket to the eng queue. By hand: resolution warns at T+180 (75 % of
4 h) and is breached at T+240, when the ticket is at the top tier already.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tortoise.transactions import in_transaction

from ticketd.daemon.commit import Commit
from ticketd.daemon.sla.clock import shown
from ticketd.daemon.sla.fire import fire
from ticketd.storage.db import database
from ticketd.storage.models import Event, OutboundMessage
from ticketd.storage.writes import load_tickets
from tests.sla.test_schedule import MIN, events, undone
from tests.support.desk import ALICE, START, Desk, config

BOB, CAROL = "bob@example.test", "carol@example.test"
AGENTS = f"""
[[agents]]
name = "Bob Second"
address = "{BOB}"
groups = ["tier2"]

[[agents]]
name = "Carol Engineer"
address = "{CAROL}"
groups = ["eng"]
"""
MATRIX = AGENTS + """
[queues.eng]
notify = ["eng"]

[rules]
default_priority = "P1"

[sla]

[[sla.escalation]]
tier = "Tier 2"
after = "0m"
notify = ["tier2"]

[[sla.escalation]]
tier = "Engineering"
after = "2h30m"
notify = ["eng"]
queue = "eng"

[sla.triggers]
unassigned = false  # nobody takes these tickets: the breaches' steps are under test (test_hooks has this one)
"""


async def mail_to(kind: str) -> list[list[str]]:
    return list(await OutboundMessage.filter(kind=kind).order_by("id").values_list("recipients", flat=True))


async def test_a_breach_climbs_the_matrix_step_by_step_each_tier_mailed_once(tmp_path: Path) -> None:
    async with database((cfg := config(tmp_path, MATRIX)).database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        assert await desk.later(45 * MIN) == 1 and await desk.later(15 * MIN) == 1  # T+60: warned, breached
        assert [(e["tier"], e["level"], e["step"], e["to"]) for e in await events("escalated")] == [
            ("Tier 2", 1, 0, [BOB])]
        assert (await undone())["sla_escalate:first_response"] == START + 210 * MIN
        assert await desk.later(120 * MIN) == 1  # T+180: resolution warned, Tier 2 hears of it too
        assert await mail_to("sla_warning") == [[ALICE], [ALICE], [BOB]]
        assert await desk.later(29 * MIN) == 0  # T+209
        assert await desk.later(MIN) == 1  # T+210: Engineering, and its queue
        [tier2, eng] = await events("escalated")
        assert eng == {"tier": "Engineering", "level": 2, "reason": "breach of first_response",
                       "target": "first_response", "step": 1, "to": [CAROL]}
        ticket = await desk.ticket(1)
        assert ticket["queue"] == "eng"
        assert [(e["detail"], e["who"]) for e in ticket["events"] if e["what"] == "queue_changed"] == [
            ({"from": "support", "to": "eng"}, "system")]
        assert await desk.later(30 * MIN) == 1  # T+240: resolution breached; at the top, nothing climbs
        assert await mail_to("sla_breach") == [[ALICE], [CAROL]]  # then the eng queue's and its tier's: Carol
        assert await mail_to("sla_escalation") == [[BOB], [CAROL]]
        assert len(await events("escalated")) == 2 and await undone() == {}
        summary = await shown(cfg.sla, 1, desk.clock.now)
        assert summary is not None and (summary["escalated_to"], summary["level"]) == ("Engineering", 2)
        metrics = desk.processor.metrics  # counted as each step's transaction committed
        assert (metrics.sla_warnings, metrics.sla_breaches) == ({"first_response": 1, "resolution": 1},) * 2
        assert metrics.escalations == {"first_response": 2}
        assert sum(metrics.due_run.values()) == 5 and all(kind.startswith("sla_") for kind in metrics.due_run)


async def test_a_step_run_again_changes_nothing(tmp_path: Path) -> None:
    async with database((cfg := config(tmp_path, MATRIX)).database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        await desk.later(60 * MIN)
        await desk.later(MIN)  # T+61: breached, Tier 2
        await desk.later(150 * MIN)  # T+211: the resolution's warning (its rescheduling writes the next steps anew)
        await desk.later(timedelta(0))  # Engineering
        assert len(await events("escalated")) == 2
        # A step another daemon (or an older version) wrote and no reschedule cancelled: the events decide.
        async with in_transaction():
            commit = Commit(desk.processor, "")
            [ticket] = await load_tickets(set(), {1})
            assert not await fire(commit, "sla_escalate:first_response", ticket)
            assert not await fire(commit, "sla_breach:first_response", ticket)
            await commit.writes.flush()
        assert len(await events("escalated")) == 2 and await desk.sent("sla_escalation") == 2


async def test_an_answer_after_the_breach_stops_the_later_steps(tmp_path: Path) -> None:
    async with database((cfg := config(tmp_path, MATRIX)).database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        await desk.later(45 * MIN)
        await desk.later(16 * MIN)  # T+61: breached, Tier 2
        desk.clock.now += 9 * MIN
        await desk.agent(1, "#status pending\nWhich site?")  # T+70: answered late; pending pauses the rest
        assert "sla_escalate:first_response" not in await undone()
        assert await desk.later(timedelta(hours=3)) == 0
        assert [e["tier"] for e in await events("escalated")] == ["Tier 2"]
        assert (await desk.ticket(1))["queue"] == "support"


async def test_a_scheduler_stopped_past_both_steps_climbs_both_at_once(tmp_path: Path) -> None:
    async with database((cfg := config(tmp_path, MATRIX)).database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        desk.clock.now += 220 * MIN  # T+220: the first response breached 160 minutes ago
        await desk.later(timedelta(0))  # the warning's step finds it breached: nothing, and the breach is written
        assert await desk.later(timedelta(0)) == 1
        assert [(e["tier"], e["step"]) for e in await events("escalated")] == [("Tier 2", 0), ("Engineering", 1)]
        assert await mail_to("sla_escalation") == [[BOB], [CAROL]]
        assert await mail_to("sla_breach") == [[ALICE]]


async def test_an_escalated_tickets_breach_raises_it_to_the_next_tier(tmp_path: Path) -> None:
    async with database((cfg := config(tmp_path, MATRIX)).database_url):
        desk = Desk(cfg)
        await desk.customer("I want to speak to a manager.")  # T0: the trigger takes it to Tier 2
        assert [(e["tier"], e["trigger"]) for e in await events("escalated")] == [("Tier 2", "manager")]
        await desk.later(45 * MIN)
        assert await desk.later(15 * MIN) == 1  # T+60: breached, and on to Engineering at once
        assert [(e["tier"], e.get("step")) for e in await events("escalated")] == [("Tier 2", None),
                                                                                 ("Engineering", 0)]
        # Engineering's own step has nothing left to do: the ticket is there.
        assert "sla_escalate:first_response" not in await undone()
        assert await desk.later(timedelta(hours=3)) == 1  # T+240: the resolution's breach; at the top
        assert len(await events("escalated")) == 2
        assert await Event.filter(what="queue_changed").count() == 1
