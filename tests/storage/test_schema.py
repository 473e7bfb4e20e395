"""Schema versions: a database made by the previous release is refused until `ticketd db upgrade`, then keeps every row.

The previous release's database is the one 0.1.0 made through its own pipeline, committed as SQL
(tests.support.release, which remakes it from the tag v0.1.0): so the test sees that release's
real schema without needing the tag, or any history, in the checkout.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from devtools.smtpsink import SmtpSink
from ticketd.storage import bulk, leases, schema
from ticketd.storage.db import DatabaseError, database
from tests.support import release
from tests.support.backend import sqlite_only, url
from tests.support.daemon import cli, write_config
from tests.support.mail import simple


def rows(path: Path, like: Path | None = None) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    """Every row of every table; with ``like``, of the tables that (older) database has, only its columns."""
    def columns(db: sqlite3.Connection) -> dict[str, str]:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                           "AND name NOT LIKE 'sqlite_%' AND name != ?", [schema.TABLE])]
        return {t: ", ".join(f'"{r[1]}"' for r in db.execute(f'PRAGMA table_info("{t}")')) for t in tables}

    with sqlite3.connect(path) as db:
        shown = columns(db)
        if like is not None:
            with sqlite3.connect(like) as older:
                shown |= columns(older)
        return {t: db.execute(f'SELECT {shown[t]} FROM "{t}" ORDER BY rowid').fetchall() for t in shown}


@sqlite_only("0.1.0 had no PostgreSQL support: a database of the previous release is a SQLite file")
def test_a_database_of_the_previous_release_is_refused_then_upgraded_with_every_row_kept(
        tmp_path: Path, fresh_sink: SmtpSink) -> None:
    config = write_config(tmp_path, 10143, fresh_sink.port, [("support", "support@example.test")])
    path = tmp_path / "ticketd.db"
    release.restore(path)
    release.restore(old := tmp_path / "as-it-was.db")
    before = rows(path)
    assert schema.TABLE not in sqlite3.connect(path).execute(  # the old code made it: no version recorded
        "SELECT group_concat(name) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    assert len(before["ticket"]) == 2 and len(before["article"]) == 3 and len(before["outbound_message"]) == 2

    refused = cli(config, "run", "--once")
    assert refused.returncode == 75
    said = refused.stderr.decode()
    assert f"schema is version 1 (ticketd 0.1.0), older than this ticketd's version {schema.VERSION}" in said
    assert "ticketd db backup FILE" in said and "ticketd db upgrade" in said
    assert rows(path) == before  # refused before anything was written

    upgraded = cli(config, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr.decode()
    assert upgraded.stdout.decode().strip() == f"database schema: upgraded from version 1 to {schema.VERSION}"
    after = rows(path, like=old)  # the columns added since are new: the old ones hold what they held
    assert {t: after[t] for t in before} == before  # every ticket, article, outbox row... as it was
    assert after["oauth_token"] == []  # version 3's table (daemon.oauth), empty
    again = cli(config, "db", "upgrade")
    assert again.stdout.decode().strip() == f"database schema: version {schema.VERSION}, up to date"

    done = cli(config, "ingest", stdin=simple("Cy <cy@example.org>", "New one", "<n1@example.org>"))
    assert done.returncode == 0, done.stderr.decode()
    numbers = [r[0] for r in sqlite3.connect(path).execute("SELECT number FROM ticket ORDER BY number")]
    assert numbers == [1, 2, 3]  # the next number after the old ones


async def test_a_new_database_is_created_at_the_current_version(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'new.db'}"
    async with database(url) as versions:
        assert versions == (None, schema.VERSION)
        assert await schema.stored_version() == schema.VERSION
    async with database(url) as versions:
        assert versions == (schema.VERSION, schema.VERSION)


async def test_a_schema_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    async with database(f"sqlite://{path}"):
        pass
    with sqlite3.connect(path) as db:
        db.execute(f"INSERT INTO {schema.TABLE} VALUES (?, '2027-01-01T00:00:00+00:00', '9.9')", [schema.VERSION + 1])
    with pytest.raises(DatabaseError, match=rf"schema is version {schema.VERSION + 1} .* newer than this ticketd"):
        async with database(f"sqlite://{path}"):
            pass


async def test_a_version_2_database_gains_the_lease_tables_at_the_upgrade_to_3(tmp_path: Path) -> None:
    db_url = url(tmp_path / "v2.db")
    async with database(db_url):  # made at the current version, then taken back to 0.2.0's schema
        for table in ("mailbox_lease", "instance"):
            await bulk.execute(f'DROP TABLE "{table}"')
        await bulk.execute(f"UPDATE {schema.TABLE} SET version = 2 WHERE version = 3")
        assert await schema.stored_version() == 2
    with pytest.raises(DatabaseError, match="schema is version 2 .*older than this ticketd's version 3"):
        async with database(db_url):
            pass
    async with database(db_url, upgrade=True) as versions:
        assert versions == (2, 3)
        run, clock = leases.tortoise_run()
        assert await leases.claim(run, clock, "h:1:abc", ["support"], 30) == {"support"}
        assert [i.id for i in await leases.instances(run, clock)] == []


async def test_a_version_2_database_is_refused_then_gains_the_oauth_token_table(tmp_path: Path) -> None:
    from tests.support.backend import url
    from tests.support.locks import OtherConnection

    config = write_config(tmp_path, 10143, 10025, [("support", "support@example.test")])
    async with database(url(tmp_path / "ticketd.db")):
        pass
    other = OtherConnection(tmp_path / "ticketd.db")
    try:
        other.execute("DROP TABLE oauth_token")  # as 0.2.0 made it
        other.execute(f"UPDATE {schema.TABLE} SET version = 2, by_release = '0.2.0' WHERE version = 3")
        refused = cli(config, "run", "--once")
        assert refused.returncode == 75 and "schema is version 2 (ticketd 0.2.0), older" in refused.stderr.decode()
        upgraded = cli(config, "db", "upgrade")
        assert upgraded.stdout.decode().strip() == f"database schema: upgraded from version 2 to {schema.VERSION}"
        assert other.rows("SELECT count(*) FROM oauth_token") == [(0,)]
    finally:
        other.close()
