"""`ticketd db backup FILE`: a consistent, checked, private copy of a SQLite database in use."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ticketd.storage.backup import BackupError, backup
from ticketd.daemon.config import load_config
from ticketd.storage.db import database
from tests.support.backend import POSTGRES, sqlite_only
from tests.support.daemon import PROJECT, cli
from tests.support.data import fill
from tests.support.desk import Desk, config


async def desk_database(directory: Path) -> Path:
    """A filled desk database on disk (WAL mode, as the daemon leaves it); its config file."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = config(directory)
    async with database(cfg.database_url):
        await fill(Desk(cfg))
    return directory / "ticketd.toml"


def counts(path: Path) -> tuple[int, int]:
    with closing(sqlite3.connect(path)) as db:
        return (db.execute("SELECT count(*) FROM ticket").fetchone()[0],
                db.execute("SELECT count(*) FROM article").fetchone()[0])


class PairWriter(threading.Thread):
    """Another process's daemon: each transaction a ticket and its article, committed together."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.stop, self.commits = path, threading.Event(), 0

    def run(self) -> None:
        with closing(sqlite3.connect(self.path, isolation_level=None, timeout=10)) as db:
            number = 1000
            while not self.stop.is_set():
                number += 1
                db.execute("BEGIN IMMEDIATE")
                cursor = db.execute(
                    "INSERT INTO ticket (number, subject, status, priority, category, queue, mailbox, requester, "
                    "requester_name, fired_rules, tags, created_at, updated_at) VALUES (?, 's', 'new', 'P3', '', '', "
                    "'', 'x@example.org', '', '[]', '[]', '2026-12-01 09:00:00+00:00', '2026-12-01 09:00:00+00:00')",
                    [number])
                db.execute("INSERT INTO article (ticket_id, direction, sender, \"to\", cc, subject, message_id, "
                           "in_reply_to, \"references\", text, html, internal, created_at) VALUES (?, 'in', '', '', "
                           "'', 's', '', '', '', ?, '', 0, '2026-12-01 09:00:00+00:00')",
                           [cursor.lastrowid, "x" * 20000])
                db.execute("COMMIT")
                self.commits += 1


@sqlite_only("the online backup API copies a SQLite file")
async def test_a_backup_while_another_process_writes_is_consistent_and_opens(tmp_path: Path) -> None:
    await desk_database(tmp_path)
    source, target = tmp_path / "ticketd.db", tmp_path / "copy.db"
    before = counts(source)
    writer = PairWriter(source)
    writer.start()
    try:
        while writer.commits < 200:  # a few MB: the copy takes a while, and the writer goes on meanwhile
            time.sleep(0.01)
        size = backup(source, target)
    finally:
        writer.stop.set()
        writer.join()
    assert size == target.stat().st_size and target.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "copy.db.tmp").exists() and not (tmp_path / "copy.db-wal").exists()
    with closing(sqlite3.connect(target)) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one self-contained file
        orphans = copy.execute("SELECT count(*) FROM article a LEFT JOIN ticket t ON t.id = a.ticket_id "
                               "WHERE t.id IS NULL").fetchone()[0]
        pairs = copy.execute("SELECT count(*) FROM ticket WHERE number > 1000").fetchone()[0]
    tickets, articles = counts(target)
    assert orphans == 0 and articles - before[1] == tickets - before[0] == pairs >= 200


@sqlite_only("the online backup API copies a SQLite file")
async def test_an_open_write_transaction_neither_blocks_the_backup_nor_gets_into_it(tmp_path: Path) -> None:
    await desk_database(tmp_path)
    source, target = tmp_path / "ticketd.db", tmp_path / "copy.db"
    before = counts(source)
    with closing(sqlite3.connect(source, isolation_level=None)) as daemon:
        daemon.execute("BEGIN IMMEDIATE")  # the daemon mid-commit, holding the write lock
        daemon.execute("UPDATE ticket SET subject = 'not committed'")
        started = time.monotonic()
        backup(source, target, busy_timeout=5)
        assert time.monotonic() - started < 4
        daemon.execute("ROLLBACK")
    with closing(sqlite3.connect(target)) as copy:
        assert copy.execute("SELECT count(*) FROM ticket WHERE subject = 'not committed'").fetchone() == (0,)
    assert counts(target) == before


@sqlite_only("the online backup API copies a SQLite file")
async def test_a_new_backup_replaces_the_old_one_and_a_stale_tmp_file(tmp_path: Path) -> None:
    await desk_database(tmp_path)
    target = tmp_path / "copy.db"
    target.write_bytes(b"last week's backup")
    (tmp_path / "copy.db.tmp").write_bytes(b"left by a run that was killed")
    backup(tmp_path / "ticketd.db", target)
    assert counts(target) == counts(tmp_path / "ticketd.db") and not (tmp_path / "copy.db.tmp").exists()


@sqlite_only("the online backup API copies a SQLite file")
@pytest.mark.parametrize("name, message", [
    ("ticketd.db", "is the database itself"),
    (".", "is a directory"),
    ("missing/copy.db", "cannot create"),
])
async def test_a_backup_that_cannot_be_made_says_why_and_leaves_nothing(tmp_path: Path, name: str,
                                                                        message: str) -> None:
    await desk_database(tmp_path)
    files = sorted(tmp_path.iterdir())
    with pytest.raises(BackupError, match=message):
        backup(tmp_path / "ticketd.db", tmp_path / name)
    assert sorted(tmp_path.iterdir()) == files


@sqlite_only("the online backup API copies a SQLite file")
def test_backup_from_the_command_line(tmp_path: Path) -> None:
    import asyncio

    path = asyncio.run(desk_database(tmp_path))
    done = cli(path, "db", "backup", str(tmp_path / "copy.db"))
    assert done.returncode == 0, done.stderr.decode()
    assert b"integrity check ok" in done.stdout and counts(tmp_path / "copy.db") == counts(tmp_path / "ticketd.db")
    done = cli(path, "db", "backup", str(tmp_path / "ticketd.db"))
    assert done.returncode == 1 and b"backup not made" in done.stderr and b"Traceback" not in done.stderr


def test_backup_of_postgresql_points_to_pg_dump(tmp_path: Path) -> None:
    path = config(tmp_path).path
    path.write_text(path.read_text().replace(load_config(path).database_url, "postgres://tk:hunter2@db/tk"))
    # asyncpg is not installed here: the configuration check is told it is, as on a PostgreSQL site.
    code = ("import importlib.util, sys\nfrom importlib.machinery import ModuleSpec\nreal = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda n, p=None: ModuleSpec(n, None) if n == 'asyncpg' else real(n, p)\n"
            "from ticketd.daemon.cli import main\n"
            f"code = main(['-c', {str(path)!r}, 'db', 'backup', {str(tmp_path / 'c.db')!r}])\n"
            "print('tortoise' in sys.modules)\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, cwd=PROJECT,
                          env=dict(os.environ, PYTHONPATH=str(PROJECT)))
    assert done.returncode == 1 and b"use pg_dump" in done.stderr and b"hunter2" not in done.stderr
    assert done.stdout == b"False\n"  # refused before any database code was even imported
    assert not (tmp_path / "c.db").exists()


@pytest.mark.skipif(not POSTGRES, reason="PostgreSQL only: the database under test is a server's")
def test_backup_of_the_postgresql_desk_database_is_refused_with_a_pointer_to_pg_dump(tmp_path: Path) -> None:
    import asyncio

    path = asyncio.run(desk_database(tmp_path))
    password = urlsplit(load_config(path).database_url).password
    done = cli(path, "db", "backup", str(tmp_path / "copy.db"))
    assert done.returncode == 1 and b"Traceback" not in done.stderr
    assert b"db backup copies a SQLite database" in done.stderr and b"use pg_dump" in done.stderr
    assert password and password.encode() not in done.stderr + done.stdout
    assert not (tmp_path / "copy.db").exists() and not (tmp_path / "copy.db.tmp").exists()
