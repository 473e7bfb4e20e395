"""`ticketd sla run` (fire the SLA steps that are due, then exit) and `ticketd sla status` (tickets at risk).

Imported to build the parser: nothing heavy (the ORM, daemon.sla's clocks) is imported before
a handler runs.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ticketd.daemon.cli import instant
from ticketd.storage import clock

if TYPE_CHECKING:
    from ticketd.daemon.config import Config

AT_RISK = ("warned", "breached")


def add_commands(sub: Any) -> None:
    sla = sub.add_parser("sla", help="service level targets").add_subparsers(dest="action", required=True)
    run = sla.add_parser("run", help="fire the SLA warnings, breaches and escalations that are due, then exit "
                                     "(their mail waits in the outbox for the daemon's sender)")
    run.add_argument("--now", type=instant, help="as if it were this ISO 8601 time (default: now)")
    run.set_defaults(handler=_run)
    status = sla.add_parser("status", help="open tickets at risk (warned or breached), soonest due first")
    status.add_argument("--now", type=instant, help="as if it were this ISO 8601 time (default: now)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)
    from ticketd.daemon.sla.report_cli import add_report_command  # here: report_cli imports this module

    add_report_command(sub)  # `report`


def _no_sla(config: Config) -> bool:
    if config.sla is not None:
        return False
    import sys

    print("ticketd: the configuration has no [sla] section: no SLA targets run", file=sys.stderr)
    return True


async def _run(config: Config, args: argparse.Namespace) -> int:
    if _no_sla(config):
        return 1
    from ticketd.daemon import due
    from ticketd.daemon.pipeline import Processor
    from ticketd.storage.db import database
    from ticketd.storage.errors import TemporaryFailure

    now = clock.now()
    async with database(config.database_url):
        try:
            fired = await due.run_due(Processor(config, clock=lambda: now), kind_prefix="sla_")
        except TemporaryFailure as exc:
            print(f"ticketd: SLA steps must wait: {exc}")
            return 75  # EX_TEMPFAIL: try again
    print(f"{fired} SLA step(s) run")
    return 0


async def _status(config: Config, args: argparse.Namespace) -> int:
    if _no_sla(config):
        return 1
    from ticketd.daemon.terminal import emit
    from ticketd.storage.db import database

    async with database(config.database_url):
        rows = await at_risk(config, clock.now())
    return emit(rows, args.json, _human)


async def at_risk(config: Config, now: datetime) -> list[dict[str, Any]]:
    """Open tickets with a target warned or breached, the soonest due first (served by ticket(status))."""
    from ticketd.daemon import lifecycle
    from ticketd.daemon.sla.clock import summary
    from ticketd.storage.models import Ticket

    rows = []
    for ticket in await Ticket.filter(status__in=(lifecycle.NEW, lifecycle.OPEN, lifecycle.PENDING)) \
            .order_by("id").values("id", "number", "subject", "status", "priority", "queue", "assignee"):
        sla = await summary(config.sla, ticket["id"], now, config.rules)
        risky = {name: t for name, t in (sla or {}).get("targets", {}).items() if t["state"] in AT_RISK}
        if not risky:
            continue
        target, soonest = min(risky.items(), key=lambda item: item[1]["due"])
        rows.append({**{k: v for k, v in ticket.items() if k != "id"}, "target": target, "due": soonest["due"],
                     "state": soonest["state"], "sla": sla})
    return sorted(rows, key=lambda row: (row["due"], row["number"]))


def _human(rows: list[dict[str, Any]]) -> str:
    from ticketd.daemon.terminal import safe_line as line

    lines = [f"#{r['number']:<6} {r['state']:<8} {r['target']:<14} due {r['due'][:16].replace('T', ' ')}  "
             f"{line(r['priority']):<3} {line((r['assignee'] or '-')[:24]):<24} {line(r['subject'][:60])}"
             for r in rows]
    return "\n".join([*lines, f"{len(rows)} ticket(s) at risk"])
