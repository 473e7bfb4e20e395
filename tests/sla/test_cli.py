"""`ticketd sla run` and `ticketd sla status` as an admin runs them: real processes, a given --now."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from ticketd.storage.db import database
from ticketd.storage.models import OutboundMessage
from tests.sla.test_schedule import MIN, SLA
from tests.support.daemon import cli, cli_json
from tests.support.desk import START, Desk, config


async def test_sla_status_lists_tickets_at_risk_soonest_first_and_sla_run_fires_them(tmp_path: Path) -> None:
    cfg = config(tmp_path, SLA)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        desk.clock.now += 10 * MIN
        await desk.customer("And the shop too.")
        await desk.customer("Nothing urgent at all.")
    at = (START + 60 * MIN).isoformat()
    rows = cli_json(cfg.path, "sla", "status", "--json", "--now", at)
    # #1 breached at T+60, #2 warned (due T+70); #3 (created at T+10 too) is as late as #2.
    assert [(r["number"], r["target"], r["state"]) for r in rows] == [
        (1, "first_response", "breached"), (2, "first_response", "warned"), (3, "first_response", "warned")]
    assert cli_json(cfg.path, "sla", "status", "--json", "--now", START.isoformat()) == []
    human = cli(cfg.path, "sla", "status", "--now", at)
    assert human.returncode == 0 and b"3 ticket(s) at risk" in human.stdout
    done = cli(cfg.path, "sla", "run", "--now", (START + 56 * MIN).isoformat())
    assert done.returncode == 0 and done.stdout.decode().strip() == "3 SLA step(s) run", done.stderr.decode()
    async with database(cfg.database_url):
        assert await OutboundMessage.filter(kind="sla_warning").count() == 3


async def test_sla_run_runs_no_life_cycle_step_and_needs_the_section(tmp_path: Path) -> None:
    cfg = config(tmp_path, SLA)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("Where is my order?")
        await desk.agent(1, "#status pending\nWhich order?")
    done = cli(cfg.path, "sla", "run", "--now", (START + timedelta(days=4)).isoformat())
    assert done.returncode == 0, done.stderr.decode()
    async with database(cfg.database_url):
        assert await OutboundMessage.filter(kind="pending_reminder").count() == 0  # due, but not an SLA step
    (tmp_path / "plain").mkdir()
    plain = config(tmp_path / "plain")
    refused = cli(plain.path, "sla", "status")
    assert refused.returncode == 1 and b"no [sla] section" in refused.stderr
