"""The commands that read the database (or a mail file) and print: tickets, quarantine, inbound, rules test.

Output goes through daemon.terminal (escaped for a person, or exact JSON); each command imports
what it needs when it runs, so `ticketd run` never pays for them.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ticketd.daemon.terminal import emit, print_json

if TYPE_CHECKING:
    from ticketd.daemon.config import Config


async def tickets_list(config: Config, args: argparse.Namespace) -> int:
    from ticketd.daemon import render
    from ticketd.storage import queries
    from ticketd.storage.db import database

    async with database(config.database_url):
        tickets = await queries.ticket_list(args.limit or None, args.status, args.queue, args.assignee)
    return emit(tickets, args.json, render.ticket_list)


async def tickets_show(config: Config, args: argparse.Namespace) -> int:
    from ticketd.daemon import render
    from ticketd.storage import queries
    from ticketd.storage.db import database

    async with database(config.database_url):
        ticket = await queries.ticket_detail(args.number)
        if ticket is not None:  # without [sla], None and nothing of daemon.sla imported
            ticket["sla"] = await _sla_shown(config, args.number) if config.sla is not None else None
    if ticket is None:
        print(f"ticketd: no ticket #{args.number}", file=sys.stderr)
        return 1
    if args.json:
        print_json(ticket)
        return 0
    print(render.ticket_detail(ticket))
    return 0


async def _sla_shown(config: Config, number: int) -> Any:
    from ticketd.daemon.sla.clock import shown
    from ticketd.storage import clock

    return await shown(config.sla, number, clock.now(), rules=config.rules)  # --now moves it


async def quarantine_list(config: Config, args: argparse.Namespace) -> int:
    from ticketd.daemon import render
    from ticketd.storage import queries
    from ticketd.storage.db import database

    async with database(config.database_url):
        held = await queries.quarantine_list()
    return emit(held, args.json, render.quarantine_list)


async def quarantine_action(config: Config, args: argparse.Namespace) -> int:
    from ticketd.daemon import quarantine, render

    try:
        if args.action == "show":
            result: Any = await quarantine.show(config, args.id)
        elif args.action == "release":
            result = await quarantine.release(config, args.id)
        else:
            await quarantine.delete(config, args.id)
            result = {"id": args.id, "deleted": True}
    except quarantine.QuarantineError as exc:
        print(f"ticketd: {exc}", file=sys.stderr)
        return 1
    if args.json or args.action != "show":
        print_json(result)
        return 0
    print(render.held_message(result))
    return 0


def inbound_parser(sub: Any) -> None:
    from ticketd.daemon.inbound import STATUSES

    inbound = sub.add_parser("inbound", help="every inbound message and what became of it") \
        .add_subparsers(dest="action", required=True)
    listing = inbound.add_parser("list", help="inbound messages, newest first: ticket, duplicate, or why held")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--limit", type=int, default=0, help="at most this many (default: all)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_inbound_list)
    show = inbound.add_parser("show", help="one inbound message: where it came from, headers, verdicts, fate")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_inbound_show)


async def _inbound_list(config: Config, args: argparse.Namespace) -> int:
    from ticketd.daemon import inbound

    rows = await inbound.listing(config, args.status, args.limit or None)
    return emit(rows, args.json, inbound.render_list)


async def _inbound_show(config: Config, args: argparse.Namespace) -> int:
    from ticketd.daemon import inbound, quarantine

    try:
        row = await inbound.detail(config, args.id)
    except quarantine.QuarantineError as exc:
        print(f"ticketd: {exc}", file=sys.stderr)
        return 1
    return emit(row, args.json, inbound.render_detail)


async def rules_test(config: Config, args: argparse.Namespace) -> int:
    from pathlib import Path

    from ticketd.daemon.dryrun import explain, render_text

    first = next(iter((*config.mailboxes, *config.addresses)), None)  # a pipe-only site has no mailbox
    mailbox = args.mailbox if args.mailbox is not None else first.name if first else ""
    results = []
    for name in args.files:
        try:
            raw = Path(name).read_bytes()
        except OSError as exc:
            print(f"ticketd: {name}: {exc.strerror}", file=sys.stderr)
            return 1
        result = await explain(config, raw, mailbox)
        results.append({"file": name, **result})
        if not args.json:
            print(render_text(result, name) + "\n")
    if args.json:
        print_json(results)
    return 0
