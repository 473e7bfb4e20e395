"""A ticket's SLA clock as stored, and as `tickets show --json` gives it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from ticketd.daemon.sla.clock import shown
from ticketd.storage.db import database
from tests.sla.test_schedule import MIN, SLA
from tests.support.daemon import cli, cli_json
from tests.support.desk import START, Desk, config


async def test_the_summary_gives_each_targets_due_state_and_business_time_left(tmp_path: Path) -> None:
    async with database((cfg := config(tmp_path, SLA)).database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        desk.clock.now += 50 * MIN
        await desk.agent(1, "#status pending\nWhich site?")
        summary = await shown(cfg.sla, 1, START + 70 * MIN)
        assert summary == {"policy": "P1", "tier": None, "escalated_to": None, "level": 0, "stopped": False, "targets": {
            "first_response": {"due": (START + 60 * MIN).isoformat(), "state": "met", "business_left_seconds": 600},
            # pending since T+50: paused, each due pushed on by the 20 minutes waited so far
            "next_update": {"due": (START + 130 * MIN).isoformat(), "state": "paused", "business_left_seconds": 3600},
            "resolution": {"due": (START + 260 * MIN).isoformat(), "state": "paused",
                           "business_left_seconds": 190 * 60}}}
        assert await shown(cfg.sla, 2) is None


async def test_tickets_show_json_has_sla_only_with_the_section(tmp_path: Path) -> None:
    for name, more in (("with", SLA), ("without", '\n[rules]\ndefault_priority = "P1"\n')):
        (tmp_path / name).mkdir()
        cfg = config(tmp_path / name, more)
        async with database(cfg.database_url):
            desk = Desk(cfg)
            await desk.customer("The site is down.")
        sla = cli_json(cfg.path, "tickets", "show", "1", "--json")["sla"]
        human = cli(cfg.path, "tickets", "show", "1").stdout.decode()
        if name == "without":
            assert sla is None and "SLA" not in human
        else:  # created at START, days before the wall clock of the command: all breached
            assert sla["policy"] == "P1" and set(sla["targets"]) == {"first_response", "resolution"}
            assert sla["targets"]["first_response"] == {"due": (START + timedelta(hours=1)).isoformat(),
                                                        "state": "breached", "business_left_seconds": 0}
            assert "  SLA first response: breached, due 2026-12-01 10:00\n" in human
