"""Data care on the command line: `export`, `import`, `db backup`, `db prune`, `db upgrade`.

Imported to build the parser: the ORM and the storage modules are imported by each handler
when it runs. An error is one line on stderr and exit 1 (75 when the database is locked or
unreachable: try again), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator

from ticketd.daemon.cli import instant

if TYPE_CHECKING:
    from ticketd.daemon.config import Config


def add_commands(sub: Any) -> None:
    export = sub.add_parser("export", help="write every table as JSON lines (to migrate, or to keep)")
    export.add_argument("--output", "-o", default="-", metavar="FILE",
                        help="where to write (default: -, standard output); a file is written mode 0600")
    export.set_defaults(handler=_export)
    load = sub.add_parser("import", help="load an export into an empty database (all of it or nothing)")
    load.add_argument("file", metavar="FILE", help="the export, or - for standard input")
    load.set_defaults(handler=_import)
    db = sub.add_parser("db", help="database care").add_subparsers(dest="action", required=True)
    backup = db.add_parser("backup", help="copy the SQLite database to FILE, consistent while the daemon runs")
    backup.add_argument("file", metavar="FILE")
    backup.set_defaults(handler=_backup)
    prune = db.add_parser("prune", help="remove raw mail and attachment contents of tickets closed longer "
                                        "ago than retention.raw_after_days")
    prune.add_argument("--now", type=instant, metavar="TIMESTAMP",
                       help="as if it were this time: ISO 8601 with an offset (default: now)")
    prune.add_argument("--json", action="store_true")
    prune.set_defaults(handler=_prune)
    db.add_parser("upgrade", help="bring an older database's schema to this ticketd's (back it up first)") \
        .set_defaults(handler=_upgrade)


def _fail(text: str) -> int:
    from ticketd.daemon.terminal import safe_line

    print(f"ticketd: {safe_line(text)}", file=sys.stderr)
    return 1


def _temporary(exc: Exception, what: str) -> int:
    """A locked or unreachable database: one line and 75 (try again); anything else is a bug, shown as one."""
    from ticketd.storage.errors import describe, is_temporary

    if not is_temporary(exc):
        raise exc
    _fail(f"{what}: {describe(exc)}; try again later")
    return 75


async def _export(config: Config, args: argparse.Namespace) -> int:
    from ticketd.storage import clock
    from ticketd.storage.db import database
    from ticketd.storage.export import export

    async with database(config.database_url, config.busy_timeout):
        try:
            with _output(args.output) as out:
                counts = await export(out, clock.now(), _version())
        except BrokenPipeError:
            raise  # `ticketd export | head`: main() ends quietly
        except OSError as exc:
            return _fail(f"export: {args.output}: {exc.strerror or exc}")
        except Exception as exc:
            return _temporary(exc, "export stopped, no file written")
    where = "standard output" if args.output == "-" else args.output
    print(f"ticketd: exported {sum(counts.values())} row(s) of {len(counts)} table(s) to {where}", file=sys.stderr)
    return 0


@contextmanager
def _output(name: str) -> Iterator[BinaryIO]:
    """Standard output, or FILE.tmp (0600: it holds every message) renamed to FILE once complete."""
    if name == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(name)
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with open(fd, "wb", buffering=1 << 20) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _version() -> str:
    from ticketd.storage.schema import installed_version

    return installed_version("unknown")


async def _import(config: Config, args: argparse.Namespace) -> int:
    from ticketd.storage.db import database
    from ticketd.storage.load import LoadError, load

    source = "<stdin>" if args.file == "-" else args.file
    try:
        with _input(args.file) as lines:
            async with database(config.database_url, config.busy_timeout):
                counts = await load(lines, source)
    except LoadError as exc:
        return _fail(f"import refused, nothing imported: {exc}")
    except OSError as exc:
        return _fail(f"import: {source}: {exc.strerror or exc}")
    except Exception as exc:
        return _temporary(exc, "import: nothing imported")
    shown = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
    print(f"imported {sum(counts.values())} row(s): {shown or 'none'}")
    return 0


@contextmanager
def _input(name: str) -> Iterator[BinaryIO]:
    if name == "-":
        yield sys.stdin.buffer
        return
    with open(name, "rb") as lines:
        yield lines


async def _backup(config: Config, args: argparse.Namespace) -> int:
    import asyncio

    from ticketd.daemon.terminal import redact_url
    from ticketd.storage.backup import BackupError, backup, sqlite_path

    source = sqlite_path(config.database_url)
    if source is None:
        return _fail(f"db backup copies a SQLite database; {redact_url(config.database_url)} is not one. "
                     "For PostgreSQL use pg_dump (e.g. pg_dump -Fc -f FILE DBNAME)")
    try:
        size = await asyncio.to_thread(backup, source, Path(args.file), config.busy_timeout)
    except BackupError as exc:
        return _fail(f"backup not made: {exc}")
    except OSError as exc:
        return _fail(f"backup not made: {args.file}: {exc.strerror or exc}")
    print(f"backup of {source} written to {args.file}: {size} bytes, integrity check ok")
    return 0


async def _prune(config: Config, args: argparse.Namespace) -> int:
    if not config.raw_after_days:
        return _fail(f"{config.path}: retention.raw_after_days is not set (or 0: keep for ever): nothing to prune")
    from ticketd.daemon.retention import prune
    from ticketd.daemon.terminal import print_json
    from ticketd.storage import clock
    from ticketd.storage.db import database

    try:
        async with database(config.database_url, config.busy_timeout):
            removed = await prune(config.raw_after_days, clock.now())
    except Exception as exc:
        return _temporary(exc, "db prune stopped (what it removed before stays removed)")
    if args.json:
        print_json(removed.as_dict())
    else:
        print(f"{removed.tickets} ticket(s) closed more than {config.raw_after_days} day(s) ago: "
              f"{removed.raw_messages} raw message(s), {removed.attachments} attachment(s), "
              f"{removed.outbound} sent message copy(ies) removed")
    return 0


async def _upgrade(config: Config, args: argparse.Namespace) -> int:
    """The one way an older schema becomes this code's (storage.schema): the daemon refuses it until then."""
    from ticketd.storage.db import database

    try:
        async with database(config.database_url, config.busy_timeout, upgrade=True) as (found, now):
            pass
    except Exception as exc:
        return _temporary(exc, "db upgrade stopped (run it again: each step is safe to repeat)")
    if found is None:
        print(f"database schema: a new database, created at version {now}")
    elif found == now:
        print(f"database schema: version {now}, up to date")
    else:
        print(f"database schema: upgraded from version {found} to {now}")
    return 0
