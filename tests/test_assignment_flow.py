"""Assignment in the pipeline: new tickets go round the queue, skip who is away, and wait reported."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from ticketd.daemon.config import Config, load_config
from ticketd.storage.db import database
from ticketd.storage.models import OutboundMessage
from tests.support.desk import ALICE, Desk, config

BOB = "bob@example.test"


def round_robin(tmp_path: Path, extra: str = "") -> Config:
    config(tmp_path, f'assign = "round-robin"\n{extra}\n[[agents]]\nname = "Bob"\naddress = "{BOB}"\n')
    path = tmp_path / "ticketd.toml"
    path.write_text(path.read_text().replace(f'notify = ["{ALICE}"]', f'notify = ["{ALICE}", "{BOB}"]'))
    return load_config(path)


async def test_new_tickets_go_round_the_queue_and_the_assignee_is_told(tmp_path: Path) -> None:
    cfg = round_robin(tmp_path)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        for _ in range(3):
            await desk.customer("Help!")
        assert [(await desk.ticket(n))["assignee"] for n in (1, 2, 3)] == [ALICE, BOB, ALICE]
        told = await OutboundMessage.filter(kind="assigned").order_by("id").values_list("recipients", flat=True)
        assert list(told) == [[ALICE], [BOB], [ALICE]]


async def test_an_agent_who_is_away_is_skipped_until_back(tmp_path: Path) -> None:
    cfg = round_robin(tmp_path)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.agent(None, "#away", sender=BOB)
        for _ in range(2):
            await desk.customer("Help!")
        await desk.agent(None, "#back", sender=BOB)
        await desk.customer("Help!")
        assert [(await desk.ticket(n))["assignee"] for n in (1, 2, 3)] == [ALICE, ALICE, BOB]


async def test_a_ticket_nobody_can_take_is_reported_after_the_timeout(tmp_path: Path) -> None:
    cfg = round_robin(tmp_path, f"max_open_per_agent = 1\nunassigned_timeout = 3600\nlead = \"{ALICE}\"")
    async with database(cfg.database_url):
        desk = Desk(cfg)
        for _ in range(3):
            await desk.customer("Help!")
        assert [(await desk.ticket(n))["assignee"] for n in (1, 2, 3)] == [ALICE, BOB, None]
        assert "unassigned" in [e["what"] for e in (await desk.ticket(3))["events"]]
        assert await desk.later(timedelta(minutes=59)) == 0
        assert await desk.later(timedelta(minutes=2)) == 1
        [report] = await OutboundMessage.filter(kind="unassigned_report")
        assert report.recipients == [ALICE]  # the queue's lead
        assert await desk.later(timedelta(days=1)) == 0
