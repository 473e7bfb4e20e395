"""The ``ticketd`` command line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Coroutine, Iterator, NoReturn, Sequence

from ticketd.daemon import cli_views
from ticketd.daemon.terminal import redact_url, safe_line

if TYPE_CHECKING:
    from ticketd.daemon.config import Config

# Start-up time is import time. The configuration and templates are imported by main() while
# the garbage collector is paused (see _starting), and each command imports what only it needs
# (the daemon's IMAP, parsing and SMTP modules, the database, the listings' rendering) in its
# own function: `check-config` need not load an ORM, nor `tickets list` an IMAP client.

EX_DATAERR, EX_SOFTWARE, EX_TEMPFAIL, EX_CONFIG = 65, 70, 75, 78


class _UsageError(Exception):
    """A mistake on the command line; argparse would print its usage and exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(words)
    except _UsageError as exc:
        from ticketd.daemon.outgoing import one_line

        # Under an MTA a typo in master.cf must defer mail (75), not bounce it (2).
        piped = "ingest" in words
        print(f"{'ticketd ingest' if piped else 'ticketd'}: {one_line(str(exc), 200)} (see --help)", file=sys.stderr)
        return EX_TEMPFAIL if piped else 2
    if not getattr(args, "command", None):
        _parser().print_help()
        return 2
    if getattr(args, "now", None) is not None:
        if args.command == "run" and not args.once:
            print("ticketd: --now goes with run --once (the daemon keeps the real time)", file=sys.stderr)
            return 2
        from ticketd.storage import clock

        clock.start_at(args.now)  # before the parse workers fork: they inherit it
    if args.command == "ingest":
        return _ingest_main(args)
    if args.command == "keygen":  # needs no configuration: it makes a key the configuration names
        from ticketd.daemon.keygen import main as keygen

        return keygen(args.file, args.force)
    with _starting():
        from ticketd.daemon.config import ConfigError, config_path, load_config

        try:
            config = load_config(config_path(args.config))
            if args.handler is not _run:  # `run` compiles them beside its first fetch (daemon.start)
                from ticketd.daemon.responders import build_responders

                build_responders(config)  # compiles templates: a broken one stops us here
        except ConfigError as exc:
            print(f"ticketd: configuration error: {exc}", file=sys.stderr)
            return EX_CONFIG
        _logging(config, args.verbose)
        work = args.handler(config, args)  # `run` imports the daemon here
    try:
        code = int(asyncio.run(work))
        sys.stdout.flush()  # a reader that went away (| head) shows here, while we can still end quietly
        return code
    except ConfigError as exc:  # a template that `run` compiled in daemon.start
        print(f"ticketd: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except BrokenPipeError:
        return _reader_went_away()
    except _instance_locked() as exc:  # SQLite: another `ticketd run` has the database (daemon.instance)
        print(f"ticketd: not starting: {safe_line(str(exc))}", file=sys.stderr)
        return EX_TEMPFAIL
    except _database_error() as exc:
        print(f"ticketd: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except KeyboardInterrupt:
        return 130


@contextmanager
def _starting() -> Iterator[None]:
    """Start-up without the cyclic garbage collector, then exempt what it built from collection.

    Importing the daemon allocates a few hundred thousand objects and frees almost none: the
    collector would walk them over and over (60-100 ms before the first fetch). gc.freeze()
    then moves them out of its reach for good (the few hundred cyclic garbage objects of
    start-up are kept, once); the parse workers forked later share them without copying the
    pages that a collection in a worker would write to (the gc module's documentation).
    Tortoise's scan of its own source is skipped meanwhile (daemon.quickimport).
    """
    from ticketd.daemon.quickimport import without_source_scans

    enabled = gc.isenabled()
    gc.disable()
    try:
        with without_source_scans():
            yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _database_error() -> type[Exception] | tuple[()]:
    """storage.db's DatabaseError once a command has imported it; before that none can be raised."""
    db = sys.modules.get("ticketd.storage.db")
    return db.DatabaseError if db is not None else ()  # type: ignore[no-any-return]


def _instance_locked() -> type[Exception] | tuple[()]:
    instance = sys.modules.get("ticketd.daemon.instance")  # as _database_error: imported by `run` only
    return instance.InstanceLocked if instance is not None else ()  # type: ignore[no-any-return]


def _ingest_main(args: argparse.Namespace) -> int:
    """The MTA's view: 0 once the message is stored, 75 (try again) for anything else.

    pipe(8) keeps only a little of a command's output, and an exit code it does not know
    (Python's 1 or 120) makes it bounce the mail to the customer; so every failure here is
    one short line on stderr and 75, the details go to the configured log.
    """
    with _starting():
        from ticketd.daemon.config import ConfigError, config_path, load_config
        from ticketd.daemon.ingest import ingest, read_message
        from ticketd.daemon.responders import build_responders
        from ticketd.storage.db import DatabaseError
        from ticketd.storage.errors import describe

    try:
        config = load_config(config_path(args.config))
        build_responders(config)
        _logging(config, args.verbose, one_line_stderr=True)
        item = read_message(sys.stdin.buffer, config.max_message_bytes)
        outcome = asyncio.run(ingest(config, item, args.mailbox))
    except ConfigError as exc:
        _short_error(f"configuration error: {exc}")
        return EX_TEMPFAIL
    except BaseException as exc:  # the MTA keeps the message and retries: nothing is lost
        logging.getLogger("ticketd.intake").error("ingest failed, asking the MTA to retry: %s", describe(exc),
                                                  exc_info=not isinstance(exc, DatabaseError))
        _short_error(f"not stored, try again later: {describe(exc)}")
        return EX_TEMPFAIL
    try:
        print(json.dumps(outcome))
        sys.stdout.flush()
    except OSError:  # the MTA stopped reading; the message is stored all the same
        _reader_went_away()
    return 0


def _short_error(text: str) -> None:
    from ticketd.daemon.outgoing import one_line

    try:
        print(f"ticketd ingest: {one_line(text, 200)}", file=sys.stderr)
    except OSError:  # the MTA closed our stderr; the exit code still tells it
        pass


def _reader_went_away() -> int:
    """``ticketd tickets list | head -1``: end quietly, like a tool killed by SIGPIPE."""
    # The Python docs' recipe: point stdout at /dev/null, so the flush at exit finds no pipe.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ticketd", description="E-mail to ticket daemon.")
    parser.add_argument("-c", "--config", help="configuration file (default: $TICKETD_CONFIG or "
                        "/etc/ticketd/ticketd.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    run.add_argument("--once", action="store_true", help="process what is waiting, deliver the outbox, exit")
    _now_option(run)
    run.set_defaults(handler=_run)
    sub.add_parser("check-config", help="validate the configuration and exit").set_defaults(handler=_check)
    ingest_cmd = sub.add_parser("ingest", help="read one message on standard input (MTA pipe)")
    ingest_cmd.add_argument("--mailbox", help="the [[addresses]] or [[mailboxes]] name it arrived for "
                            "(default: the first [[addresses]], then the first mailbox)")
    _now_option(ingest_cmd)
    keygen = sub.add_parser("keygen", help="write a new signing key for reply addresses to FILE (mode 0600)")
    keygen.add_argument("file", metavar="FILE")
    keygen.add_argument("--force", action="store_true", help="replace FILE if it exists")
    tickets = sub.add_parser("tickets", help="list or show tickets").add_subparsers(dest="action", required=True)
    listing = tickets.add_parser("list", help="list tickets, newest first")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--limit", type=int, default=0, help="at most this many (default: all)")
    listing.add_argument("--status", help="only tickets in this status (new, open, pending, solved, closed)")
    listing.add_argument("--queue", help="only tickets of this queue")
    listing.add_argument("--assignee", help="only tickets assigned to this address (any case)")
    listing.set_defaults(handler=cli_views.tickets_list)
    show = tickets.add_parser("show", help="one ticket with its articles")
    show.add_argument("number", type=int)
    show.add_argument("--json", action="store_true")
    _now_option(show)
    show.set_defaults(handler=cli_views.tickets_show)
    quarantine = sub.add_parser("quarantine", help="messages held back with a reason") \
        .add_subparsers(dest="action", required=True)
    qlist = quarantine.add_parser("list", help="quarantined messages with their reasons")
    qlist.add_argument("--json", action="store_true")
    qlist.set_defaults(handler=cli_views.quarantine_list)
    for action, helptext in (("show", "one held message: headers, verdicts, reason"),
                             ("release", "run it through the rest of the pipeline as if accepted"),
                             ("delete", "remove it from the database for good")):
        cmd = quarantine.add_parser(action, help=helptext)
        cmd.add_argument("id", type=int)
        cmd.add_argument("--json", action="store_true")
        cmd.set_defaults(handler=cli_views.quarantine_action)
    cli_views.inbound_parser(sub)
    from ticketd.daemon.status_report import add_command as add_status  # `status`: per mailbox, outbox, timers

    add_status(sub)
    from ticketd.daemon.sla.cli import add_commands  # `sla run`, `sla status`

    add_commands(sub)
    from ticketd.daemon.data_cli import add_commands as add_data_commands  # `export`, `import`, `db backup`, `db prune`

    add_data_commands(sub)
    from ticketd.daemon.oauth_cli import add_commands as add_oauth_commands  # `oauth login`, `oauth status`

    add_oauth_commands(sub)
    rules = sub.add_parser("rules", help="try the filters and rules").add_subparsers(dest="action", required=True)
    test = rules.add_parser("test", help="show each filter's verdict and the classification of .eml files "
                                         "(no database, no mail)")
    test.add_argument("files", nargs="+")
    test.add_argument("--mailbox", help="the mailbox the mail arrives in (default: the first configured)")
    test.add_argument("--json", action="store_true")
    test.set_defaults(handler=cli_views.rules_test)
    return parser


def _now_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--now", type=instant, metavar="TIMESTAMP",
                         help="as if it were this time: ISO 8601 with an offset, like 2026-12-04T17:30:00+01:00")


def instant(text: str) -> datetime:
    """An argparse type: ``--now`` and the like (storage.clock.parse_instant), or a usage error."""
    from ticketd.storage.clock import parse_instant

    try:
        return parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _logging(config: Config, verbose: bool, one_line_stderr: bool = False) -> None:
    """Logs go where the config says (``daemon.log_target``); ingest keeps stderr for its one line."""
    from ticketd.daemon.logsetup import configure

    configure(config, verbose, one_line_stderr)


def _run(config: Config, args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    # Not a coroutine itself: the parse workers fork before the event loop and any thread exist.
    from ticketd.daemon import start

    return start.run(config, args.once, start.parse_pool())


async def _check(config: Config, args: argparse.Namespace) -> int:
    boxes = ", ".join(f"{b.name} ({b.address}, {b.imap.host}:{b.imap.port}/{b.imap.folder}, "
                      f"after: {b.after_processing}{_oauth_note(b.imap)})" for b in config.mailboxes)
    # TOML strings may hold any escape ("\u001b"): the admin's text is shown as safely as mail.
    print(safe_line(f"{config.path}: OK"))
    print(f"  database: {safe_line(redact_url(config.database_url))}")
    print(safe_line(f"  smtp: {config.smtp.host}:{config.smtp.port} ({config.smtp.security}), "
                    f"from {config.smtp.from_header}"))
    print(f"  mailboxes: {safe_line(boxes) or '(none: mail comes from an MTA)'}")
    if config.metrics is not None:
        print(f"  metrics: http://{safe_line(config.metrics.listen)}/metrics")
    if config.addresses:
        print(f"  addresses (ingest --mailbox): "
              f"{safe_line(', '.join(f'{a.name} ({a.address})' for a in config.addresses))}")
    return 0


def _oauth_note(peer: Any) -> str:
    return f", {peer.mechanism} (oauth2)" if peer.auth == "oauth2" else ""


if __name__ == "__main__":
    sys.exit(main())
