"""Tests for bench/traced.py: statement kinds and shapes, commits that wrote, the launcher."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.child import child_env
from bench.traced import TALLY, Tally, TracedConnection, _Watch, statement_kind, statement_shape
from tests.support import backend


def test_statement_kind_is_the_first_keyword_after_any_comment() -> None:
    assert statement_kind('select "id" from t') == "SELECT"
    assert statement_kind("  \n BEGIN IMMEDIATE") == "BEGIN"
    assert statement_kind("-- a note\n/* more */ INSERT INTO t VALUES (1)") == "INSERT"
    assert statement_kind("COMMIT;") == "COMMIT"
    assert statement_kind("   ") == ""


def test_shapes_replace_literals_so_executions_of_one_statement_add_up() -> None:
    one = statement_shape("""SELECT "id" FROM "t" WHERE "m" IN ('<a@x>','<b''c@x>') AND "n" = 12 LIMIT 1""")
    two = statement_shape("""SELECT "id" FROM "t" WHERE "m" IN ('<z@x>') AND "n" = -3.5 LIMIT 2""")
    assert one == two == 'SELECT "id" FROM "t" WHERE "m" IN (...) AND "n" = ? LIMIT ?'
    assert statement_shape("""UPDATE "t" SET "b"=X'00ff', "c"=NULL WHERE "id"=7""") == \
        'UPDATE "t" SET "b"=?, "c"=NULL WHERE "id"=?'
    # Digits inside names are names.
    assert statement_shape('SELECT "t1"."id" FROM "idx_ab12" AS "t1"') == 'SELECT "t1"."id" FROM "idx_ab12" AS "t1"'


def test_an_insert_ends_at_values_however_big_its_row() -> None:
    big = "INSERT INTO \"inbound_message\" (\"raw_bytes\",\"size\") VALUES (X'" + "41" * 500_000 + "',500000)"
    assert statement_shape(big) == 'INSERT INTO "inbound_message" ("raw_bytes","size") VALUES (...)'
    assert statement_shape("INSERT INTO t (a) VALUES ('x)'), ('y')") == "INSERT INTO t (a) VALUES (...)"


@pytest.fixture
def watched() -> Iterator[tuple[sqlite3.Connection, Tally]]:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    tally = Tally()
    watch = _Watch(connection, tally)
    connection.set_trace_callback(watch)
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    yield connection, tally
    watch.settle(connection.total_changes)
    connection.close()


def test_only_commits_that_changed_rows_count_as_durable(watched: tuple[sqlite3.Connection, Tally]) -> None:
    db, tally = watched
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO t (v) VALUES (?)", [("a",), ("b",)])
    db.execute("COMMIT")  # 1: a transaction that wrote
    db.execute("BEGIN")
    db.execute("SELECT * FROM t").fetchall()
    db.execute("COMMIT")  # a read-only transaction writes nothing
    db.execute("BEGIN")
    db.execute("INSERT INTO t (v) VALUES ('gone')")
    db.execute("ROLLBACK")  # undone: nothing on disk
    db.execute("UPDATE t SET v = 'c' WHERE id = 1")  # 2: autocommit, one row
    db.execute("UPDATE t SET v = 'd' WHERE id = 99")  # autocommit, no row changed
    db.execute("SELECT 1")
    assert tally.durable_commits == 2
    assert tally.kinds["INSERT"] == 3  # executemany: one execution per row
    assert (tally.kinds["BEGIN"], tally.kinds["COMMIT"], tally.kinds["ROLLBACK"]) == (3, 2, 1)


def test_an_autocommit_write_that_was_the_last_statement_counts_at_close() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None, factory=TracedConnection)
    db.execute("CREATE TABLE t (v TEXT)")
    before = TALLY.durable_commits
    db.execute("INSERT INTO t (v) VALUES ('last')")
    assert TALLY.durable_commits == before  # not known until the next statement, or the close
    db.close()
    assert TALLY.durable_commits == before + 1


@backend.sqlite_only("bench.traced counts what SQLite's own connections execute")
def test_the_launcher_counts_a_real_ticketd_command(tmp_path: Path) -> None:
    config = tmp_path / "ticketd.toml"
    config.write_text(f"""\
[database]
url = "sqlite:///{tmp_path}/ticketd.db"

[smtp]
host = "127.0.0.1"
port = 1
from = "Support <support@example.test>"

[[addresses]]
name = "support"
address = "support@example.test"
""")
    out = tmp_path / "counts.json"
    result = subprocess.run([sys.executable, "-m", "bench.traced", "--out", str(out), "--", "-c", str(config),
                             "tickets", "list", "--json"], env=child_env(), capture_output=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert json.loads(result.stdout) == []
    counts = json.loads(out.read_text())
    assert counts["connections"] >= 1
    assert counts["kinds"]["CREATE"] >= 10  # the schema, created on first use
    assert counts["kinds"]["SELECT"] >= 1
    assert counts["statements"] == sum(counts["kinds"].values()) == sum(counts["shapes"].values())
