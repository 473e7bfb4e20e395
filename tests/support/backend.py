"""The database a run of the suite uses: SQLite files (the default) or PostgreSQL.

``TICKETD_TEST_DB=postgres`` runs every test against the session's private cluster
(devtools.postgres). A test names its database as it always has, by the path of a SQLite
file (``url(tmp_path / "t.db")``); under PostgreSQL that path stands for a database of the
test's own, made at first use as a copy of a template that already has the schema, and
dropped when the test ends. The same path gives the same database within a test, so a
config written twice, or a CLI run beside the test, meets the same data.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from devtools._process import LOCALHOST, free_port
from devtools.postgres import ROLE, Postgres

BACKEND = os.environ.get("TICKETD_TEST_DB", "sqlite")
if BACKEND not in ("sqlite", "postgres"):
    raise RuntimeError(f"TICKETD_TEST_DB={BACKEND!r}: expected sqlite or postgres")
POSTGRES = BACKEND == "postgres"
TEMPLATE = "ticketd_template"
# What the database says when another writer held its lock past busy_timeout.
LOCKED = "lock timeout" if POSTGRES else "database is locked"

PROJECT = Path(__file__).resolve().parents[2]


def sqlite_only(reason: str) -> pytest.MarkDecorator:
    """Skip under PostgreSQL a test that is about SQLite itself; ``reason`` says what of it."""
    return pytest.mark.skipif(POSTGRES, reason=f"SQLite only: {reason}")


def url(path: Path) -> str:
    """``database.url`` for the database at ``path``: the file itself, or its PostgreSQL stand-in."""
    if not POSTGRES:
        return f"sqlite://{path}"
    if _databases is None:
        raise RuntimeError("TICKETD_TEST_DB=postgres but no cluster: tests/conftest.py's fixture starts it")
    return _databases.url(str(path))


def unusable_url(directory: Path) -> str:
    """A database that cannot be opened now: a SQLite file below a plain file, a server that is not there."""
    if not POSTGRES:
        blocker = directory / "not-a-directory"
        blocker.write_text("")
        return f"sqlite://{blocker}/ticketd.db"
    return f"postgres://{ROLE}:unused@{LOCALHOST}:{free_port()}/ticketd"


class Databases:
    """The test databases on one cluster: made on demand, dropped by ``drop_all`` after each test."""

    def __init__(self, cluster: Postgres) -> None:
        self.cluster = cluster
        self._made: dict[str, str] = {}
        self._lock = threading.Lock()  # a test may ask from a worker thread too

    def make_template(self) -> None:
        """The template every test database copies: the schema as ticketd itself creates it.

        In a child process, so that no Tortoise state of the template's lingers in ours.
        """
        self.cluster.drop_database(TEMPLATE)
        template_url = self.cluster.create_database(TEMPLATE, template="template0")
        script = "import asyncio, sys; from ticketd.storage.db import database\n" \
                 "async def main():\n    async with database(sys.argv[1]): pass\n" \
                 "asyncio.run(main())"
        done = subprocess.run([sys.executable, "-c", script, template_url], cwd=PROJECT, capture_output=True,
                              text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(PROJECT)))
        if done.returncode != 0:
            raise RuntimeError(f"cannot create the schema in {TEMPLATE}: {done.stderr.strip()}")

    def url(self, key: str) -> str:
        with self._lock:
            if key not in self._made:
                name = "t_" + hashlib.sha1(key.encode()).hexdigest()[:24]
                self._made[key] = self.cluster.create_database(name, template=TEMPLATE)
            return self._made[key]

    def drop_all(self) -> None:
        with self._lock:
            made, self._made = self._made, {}
        for database_url in made.values():
            self.cluster.drop_database(database_url.rsplit("/", 1)[1])


_databases: Databases | None = None


def cluster() -> Postgres | None:
    """The cluster of this run, once started (for the log under a failed test)."""
    return _databases.cluster if _databases is not None else None


def use(databases: Databases | None) -> None:
    """Set (or clear) the cluster that ``url`` makes databases on."""
    global _databases
    _databases = databases
