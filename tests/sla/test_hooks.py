"""The escalation triggers through the real pipeline and database: each raises a ticket one tier, once.

P3 tickets on the office calendar (START is Tuesday 09:00 UTC): no target breaches while these
tests run, so every escalation here is a trigger's.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from ticketd.daemon.config import Config
from ticketd.storage.db import database
from ticketd.storage.models import Event, OutboundMessage
from tests.sla.test_escalate import AGENTS, BOB
from tests.sla.test_schedule import events
from tests.support.desk import ALICE, ANN, SUPPORT, Desk, config
from tests.support.mail import simple

MATRIX = """
[sla]

[[sla.escalation]]
tier = "Tier 2"
after = "0m"
notify = ["tier2"]

[[sla.escalation]]
tier = "Engineering"
after = "8h"
notify = ["eng"]
"""


def setup(tmp_path: Path, more: str = "", queue: str = "", more_after: str = "") -> Config:
    return config(tmp_path, queue + AGENTS + more + MATRIX + more_after)


async def escalations() -> list[tuple[str, int, str, str]]:
    return [(e["tier"], e["level"], e.get("trigger", ""), e["reason"]) for e in await events("escalated")]


async def test_asking_for_a_manager_escalates_once_and_security_words_once_more(tmp_path: Path) -> None:
    async with database((cfg := setup(tmp_path)).database_url):
        desk = Desk(cfg)
        await desk.customer("My printer is broken.")
        assert await escalations() == []
        await desk.customer("This is the third time. I want to SPEAK TO A\nmanager!", 1)
        assert await escalations() == [("Tier 2", 1, "manager", 'the customer asks for a manager ("speak to a manager")')]
        [mail] = await OutboundMessage.filter(kind="sla_escalation")
        assert mail.recipients == [BOB] and b"escalated to Tier 2 (level 1): the customer asks" in mail.raw_bytes
        await desk.customer("Please escalate, nobody answers.", 1)  # the same trigger: once
        assert len(await escalations()) == 1
        await desk.customer("And I think this is a data breach.", 1)
        assert await escalations() == [
            ("Tier 2", 1, "manager", 'the customer asks for a manager ("speak to a manager")'),
            ("Engineering", 2, "security", 'security or compliance words ("data breach")')]
        await desk.customer("Let me talk to a manager about the GDPR.", 1)  # both fired already; at the top anyway
        assert len(await escalations()) == 2
        shown = (await desk.ticket(1))["events"]
        assert [e["who"] for e in shown if e["what"] == "escalated"] == ["system", "system"]


async def test_a_new_tickets_subject_counts_but_quotes_robots_and_agents_do_not(tmp_path: Path) -> None:
    async with database((cfg := setup(tmp_path)).database_url):
        desk = Desk(cfg)
        await desk.mail(simple(ANN, "Security incident on our account", "<s1@example.org>", body="See below."))
        assert [t for _, _, t, _ in await escalations()] == ["security"]
        await desk.customer("Printer broken.")  # ticket 2
        quoted = "Thanks, that works.\r\n\r\nOn Tue, Support wrote:\r\n> Shall we escalate to a supervisor?"
        await desk.customer(quoted, 2)
        await desk.customer("Out of office. For urgent matters contact my supervisor.", 2,
                            extra="Auto-Submitted: auto-replied")
        await desk.agent(None, "I will escalate this to my supervisor.")  # an agent's, stored as a stranger's
        assert (await desk.ticket(3))["requester"] == ALICE
        assert [t for _, _, t, _ in await escalations()] == ["security"]


async def test_a_vip_customers_new_ticket_escalates(tmp_path: Path) -> None:
    async with database((cfg := setup(tmp_path, '\n[rules.tiers]\nvip = ["example.org"]\n')).database_url):
        desk = Desk(cfg)
        await desk.customer("Printer broken.")  # from ann@example.org
        assert await escalations() == [("Tier 2", 1, "vip", "a VIP customer (tier vip)")]
        await desk.customer("Any news?", 1)  # his reply is no new ticket: nothing more
        await desk.mail(simple("Otto <otto@example.net>", "Printer broken", "<o1@example.net>"))
        assert len(await escalations()) == 1


async def test_a_rating_below_three_escalates_the_solved_ticket(tmp_path: Path) -> None:
    async with database((cfg := setup(tmp_path)).database_url):
        desk = Desk(cfg)
        for number in (1, 2):
            await desk.customer("Printer broken.")
            await desk.agent(number, "#status solved\nFixed it remotely.")
        await desk.customer("3", 1)  # okay: not below 3
        await desk.customer("2 - it broke again the next day", 2)
        assert [(e[0], e[2], e[3]) for e in await escalations()] == [("Tier 2", "csat", "CSAT 2 of 5 (below 3)")]
        assert [(await desk.ticket(n))["csat"] for n in (1, 2)] == [3, 2]
        assert (await desk.ticket(2))["status"] == "solved"  # a rating, not a reopen


async def test_a_ticket_left_unassigned_past_its_queues_timeout_escalates(tmp_path: Path) -> None:
    async with database((cfg := setup(tmp_path, queue=f'unassigned_timeout = 1800\nlead = "{ALICE}"\n')).database_url):
        desk = Desk(cfg)
        await desk.customer("Printer broken.")
        await desk.customer("Monitor broken.")
        await desk.agent(2, "#assign alice@example.test\nOn it.")
        assert await desk.later(timedelta(minutes=29)) == 0
        assert await desk.later(timedelta(minutes=1)) == 2  # both due; the assigned one reports nothing
        assert await escalations() == [("Tier 2", 1, "unassigned", "unassigned for 30 minutes in queue support")]
        assert await desk.sent("unassigned_report") == 1 and await desk.sent("sla_escalation") == 1


async def test_the_third_ticket_on_one_subject_in_30_days_escalates(tmp_path: Path) -> None:
    async with database((cfg := setup(tmp_path)).database_url):
        desk = Desk(cfg)

        async def opened(sender: str, subject: str, later: timedelta = timedelta(0)) -> None:
            desk.clock.now += later
            desk.n += 1
            await desk.mail(simple(sender, subject, f"<r{desk.n}@example.org>", to=SUPPORT))

        await opened(ANN, "Invoice wrong")  # day 0: 32 days before the third, not counted
        await opened(ANN, "Re: invoice  WRONG", timedelta(days=10))  # day 10
        await opened("Otto <otto@example.net>", "Invoice wrong")  # another requester
        await opened(ANN, "Fwd: Invoice wrong", timedelta(days=21))  # day 31: the second in 30 days
        assert await escalations() == []
        await opened(ANN, "AW: INVOICE wrong", timedelta(days=1))  # day 32: the third
        assert await escalations() == [
            ("Tier 2", 1, "repeat_subject", f'ticket 3 from {ANN} on "invoice wrong" in 30 days')]
        assert await Event.filter(what="escalated").values_list("ticket__number", flat=True) == [5]


async def test_triggers_switched_off_or_without_escalation_steps_do_nothing(tmp_path: Path) -> None:
    vip = '\n[rules.tiers]\nvip = ["example.org"]\n'
    off = ("\n[sla.triggers]\nmanager_phrases = []\nsecurity_words = []\nvip_tiers = []\ncsat_below = 0\n"
           "unassigned = false\nrepeat_subject_count = 0\n")
    timeout = "unassigned_timeout = 1800\n"
    (tmp_path / "off").mkdir()
    (tmp_path / "none").mkdir()
    for cfg in (setup(tmp_path / "off", vip, timeout, off), config(tmp_path / "none", timeout + vip + "\n[sla]\n")):
        async with database(cfg.database_url):
            desk = Desk(cfg)
            for _ in range(3):
                await desk.customer("I want to speak to a manager about a data breach.")
            assert await desk.later(timedelta(minutes=30)) == 3 and await desk.sent("unassigned_report") == 3
            await desk.agent(1, "#status solved\nDone.")
            await desk.customer("1", 1)
            assert (await desk.ticket(1))["csat"] == 1 and await escalations() == []
