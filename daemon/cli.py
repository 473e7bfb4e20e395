"""The ``ticketd`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any, Sequence

from daemon import app
from daemon.config import Config, ConfigError, config_path, load_config
from daemon.responders import build_responders
from storage import queries
from storage.db import DatabaseError, database

EX_DATAERR, EX_SOFTWARE, EX_TEMPFAIL, EX_CONFIG = 65, 70, 75, 78


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not getattr(args, "command", None):
        _parser().print_help()
        return 2
    try:
        config = load_config(config_path(args.config))
        build_responders(config)  # compiles templates: a broken one stops us here
    except ConfigError as exc:
        print(f"ticketd: configuration error: {exc}", file=sys.stderr)
        return EX_TEMPFAIL if args.command == "ingest" else EX_CONFIG
    _logging(config, args.verbose)
    try:
        return int(asyncio.run(args.handler(config, args)))
    except DatabaseError as exc:
        print(f"ticketd: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ticketd", description="E-mail to ticket daemon.")
    parser.add_argument("-c", "--config", help="configuration file (default: $TICKETD_CONFIG or "
                        "/etc/ticketd/ticketd.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    run.add_argument("--once", action="store_true", help="process what is waiting, deliver the outbox, exit")
    run.set_defaults(handler=_run)
    sub.add_parser("check-config", help="validate the configuration and exit").set_defaults(handler=_check)
    sub.add_parser("ingest", help="read one message on standard input (MTA pipe)").set_defaults(handler=_ingest)
    tickets = sub.add_parser("tickets", help="list or show tickets").add_subparsers(dest="action", required=True)
    listing = tickets.add_parser("list", help="list tickets, newest first")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--limit", type=int, default=0, help="at most this many (default: all)")
    listing.set_defaults(handler=_tickets_list)
    show = tickets.add_parser("show", help="one ticket with its articles")
    show.add_argument("number", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_tickets_show)
    quarantine = sub.add_parser("quarantine", help="messages held back with a reason") \
        .add_subparsers(dest="action", required=True)
    qlist = quarantine.add_parser("list", help="quarantined messages with their reasons")
    qlist.add_argument("--json", action="store_true")
    qlist.set_defaults(handler=_quarantine_list)
    for action, helptext in (("show", "one held message: headers, verdicts, reason"),
                             ("release", "run it through the rest of the pipeline as if accepted"),
                             ("delete", "remove it from the database for good")):
        cmd = quarantine.add_parser(action, help=helptext)
        cmd.add_argument("id", type=int)
        cmd.add_argument("--json", action="store_true")
        cmd.set_defaults(handler=_quarantine_action)
    rules = sub.add_parser("rules", help="try the filters and rules").add_subparsers(dest="action", required=True)
    test = rules.add_parser("test", help="show each filter's verdict and the classification of .eml files "
                                         "(no database, no mail)")
    test.add_argument("files", nargs="+")
    test.add_argument("--mailbox", help="the mailbox the mail arrives in (default: the first configured)")
    test.add_argument("--json", action="store_true")
    test.set_defaults(handler=_rules_test)
    return parser


def _logging(config: Config, verbose: bool) -> None:
    level = logging.DEBUG if verbose else getattr(logging, config.log_level.upper())
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aioimaplib", "tortoise", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


async def _run(config: Config, args: argparse.Namespace) -> int:
    if args.once:
        return await app.run_once(config)
    return await app.run_forever(config)


async def _check(config: Config, args: argparse.Namespace) -> int:
    boxes = ", ".join(f"{b.name} ({b.address}, {b.imap.host}:{b.imap.port}/{b.imap.folder}, "
                      f"after: {b.after_processing})" for b in config.mailboxes)
    print(f"{config.path}: OK")
    print(f"  database: {config.database_url.split('@')[-1]}")
    print(f"  smtp: {config.smtp.host}:{config.smtp.port} ({config.smtp.security}), from {config.smtp.from_header}")
    print(f"  mailboxes: {boxes}")
    return 0


async def _ingest(config: Config, args: argparse.Namespace) -> int:
    """Like rt-mailgate: 0 once the message is stored; 75 so the MTA retries on trouble."""
    from daemon.ingest import ingest

    raw = sys.stdin.buffer.read()
    try:
        outcome = await ingest(config, raw)
    except Exception as exc:  # the MTA keeps the message and retries: nothing is lost
        logging.getLogger("ticketd.intake").error("ingest failed, asking the MTA to retry: %s", exc)
        return EX_TEMPFAIL
    print(json.dumps(outcome))
    return 0


async def _tickets_list(config: Config, args: argparse.Namespace) -> int:
    async with database(config.database_url):
        tickets = await queries.ticket_list(args.limit or None)
    if args.json:
        _print_json(tickets)
        return 0
    for t in tickets:
        print(f"#{t['number']:<6} {t['status']:<8} {t['priority']:<3} {t['queue'][:12]:<12} "
              f"{t['article_count']:>3} {t['requester']:<30} {t['subject'][:60]}")
    print(f"{len(tickets)} ticket(s)")
    return 0


async def _tickets_show(config: Config, args: argparse.Namespace) -> int:
    async with database(config.database_url):
        ticket = await queries.ticket_detail(args.number)
    if ticket is None:
        print(f"ticketd: no ticket #{args.number}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(ticket)
        return 0
    print(f"Ticket #{ticket['number']}: {ticket['subject']}")
    for key in ("status", "priority", "category", "queue", "requester", "created_at", "article_count"):
        print(f"  {key}: {ticket[key]}")
    print(f"  tags: {', '.join(ticket['tags']) or '-'}")
    print(f"  rules fired: {', '.join(ticket['fired_rules']) or '(none)'}")
    for i, article in enumerate(ticket["articles"], 1):
        kind = article["direction"] + (", internal" if article["internal"] else "")
        print(f"\n--- article {i} ({kind}) from {article['from']} at {article['date']}")
        print(f"    Message-ID: {article['message_id']}")
        if article["attachments"]:
            print("    attachments: " + ", ".join(f"{a['filename'] or '(unnamed)'} ({a['size']} bytes)"
                                             for a in article["attachments"]))
        print(article["text"].rstrip())
    return 0


async def _quarantine_list(config: Config, args: argparse.Namespace) -> int:
    async with database(config.database_url):
        held = await queries.quarantine_list()
    if args.json:
        _print_json(held)
        return 0
    for item in held:
        print(f"{item['id']:<6} {item['mailbox'] or '-':<12} {item['message_id'][:40]:<40} {item['reason']}")
    print(f"{len(held)} message(s) in quarantine")
    return 0


async def _quarantine_action(config: Config, args: argparse.Namespace) -> int:
    from daemon import quarantine

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
        _print_json(result)
        return 0
    print(f"Held message {result['id']} ({result['status']}) from mailbox {result['mailbox'] or '-'}")
    print(f"  reason: {result['reason']}")
    for name, value in result["headers"].items():
        print(f"  {name}: {value}")
    for name, action, reason, _ in result["verdicts"]:
        print(f"  filter {name}: {action}{' (' + reason + ')' if reason else ''}")
    return 0


async def _rules_test(config: Config, args: argparse.Namespace) -> int:
    from pathlib import Path

    from daemon.dryrun import explain, render_text

    mailbox = args.mailbox if args.mailbox is not None else config.mailboxes[0].name
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
        _print_json(results)
    return 0


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    sys.exit(main())
