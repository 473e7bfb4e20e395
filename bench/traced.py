"""Run ``ticketd`` with every SQL statement counted: ``python -m bench.traced --out FILE -- ARGS``.

A bench-only launcher, so the daemon needs no hook: before ``daemon.cli.main`` runs, every
``sqlite3.connect`` (aiosqlite calls it in its own thread) returns a connection that counts
each statement it is given, by its first keyword and by its shape (literals replaced by
``?``). An ``executemany`` of 25 rows is 25 statements: SQLite runs the statement 25 times.
At exit the counts are written to FILE as JSON.

The connection counts in ``execute``/``executemany``/``commit``/``rollback``, not with
``set_trace_callback``: that callback gets every statement with its parameters spelled out
(a message's bytes as a hex literal), and building and reading those strings cost a fifth of
the benchmark's throughput. The SQL as written is the same text each time, so its shape is
worked out once.

Commits that wrote rows are counted apart (``durable_commits``): with WAL and
``synchronous=FULL`` each one is an fsync. That is a COMMIT whose transaction changed rows
(``total_changes`` grew since its BEGIN), or an INSERT/UPDATE/DELETE that changed rows outside
any transaction (SQLite commits it on its own). Read-only transactions write nothing.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import os
import re
import sqlite3
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE"})
_COMMENT = re.compile(r"\s*(?:--[^\n]*\n|/\*.*?\*/)", re.DOTALL)
_STRING = re.compile(r"'(?:[^']|'')*'")
_BLOB = re.compile(r"\bX\?", re.IGNORECASE)  # x'ABCD' after the string pass
_NUMBER = re.compile(r"(?<![\w\"])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b")
_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)*\s*\)")
_ROWS = re.compile(r"(\(\.\.\.\))(?:\s*,\s*\(\.\.\.\))+")
_VALUES = re.compile(r"\)\s*VALUES\b", re.IGNORECASE)
_HEAD_CHARS = 4000  # where an INSERT's column list ends


@functools.lru_cache(maxsize=4096)
def statement_kind(sql: str) -> str:
    """The statement's first keyword, upper case (``SELECT``, ``BEGIN``...); "" for none."""
    while True:
        match = _COMMENT.match(sql)
        if match is None:
            break
        sql = sql[match.end():]
    words = sql.split(None, 1)
    return words[0].upper().rstrip(";") if words else ""


@functools.lru_cache(maxsize=4096)
def statement_shape(sql: str) -> str:
    """The statement with its literals replaced, so that executions of one statement add up.

    The trace callback gets the SQL with the parameters filled in; strings, blobs and numbers
    become ``?``, and a parenthesised list of them ``(...)`` (``IN (1,2,3)`` and ``IN (4)``
    are one shape). An INSERT ends at ``VALUES (...)``: its values may be a MiB of message.
    """
    values = _VALUES.search(sql, 0, _HEAD_CHARS)
    text = sql[:values.end()] + " (...)" if values and statement_kind(sql) in ("INSERT", "REPLACE") else sql
    text = _BLOB.sub("?", _STRING.sub("?", text))
    text = _LIST.sub("(...)", _NUMBER.sub("?", text))
    return " ".join(_ROWS.sub(r"\1", text).split())


class Tally:
    """Statement counts, shared by every connection of the process (the callbacks lock)."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.shapes: Counter[str] = Counter()
        self.durable_commits = 0
        self.connections = 0
        self._lock = threading.Lock()

    def statement(self, kind: str, sql: str) -> None:
        shape = statement_shape(sql)
        with self._lock:
            self.kinds[kind] += 1
            self.shapes[shape] += 1

    def durable(self) -> None:
        with self._lock:
            self.durable_commits += 1

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {"statements": sum(self.kinds.values()), "kinds": dict(self.kinds.most_common()),
                    "durable_commits": self.durable_commits, "connections": self.connections,
                    "shapes": dict(self.shapes.most_common())}


TALLY = Tally()


class _Watch:
    """Per connection: whether the transaction in progress (or the last autocommit write) wrote."""

    def __init__(self, connection: sqlite3.Connection, tally: Tally) -> None:
        self.connection = connection
        self.tally = tally
        self.begun_at: int | None = None  # total_changes at BEGIN
        self.autocommit_from: int | None = None  # total_changes before an autocommit write

    def __call__(self, sql: str) -> None:
        changes = self.connection.total_changes
        self.settle(changes)
        kind = statement_kind(sql)
        self.tally.statement(kind, sql)
        if kind == "BEGIN":
            self.begun_at = changes
        elif kind in ("COMMIT", "END") and self.begun_at is not None:
            if changes > self.begun_at:
                self.tally.durable()
            self.begun_at = None
        elif kind == "ROLLBACK" and "TO" not in sql.upper().split():  # not ROLLBACK TO a savepoint
            self.begun_at = None
        elif kind in WRITES and not self.connection.in_transaction:
            self.autocommit_from = changes

    def settle(self, changes: int) -> None:
        """An autocommit write is known to have written only once the next statement starts."""
        if self.autocommit_from is not None:
            if changes > self.autocommit_from:
                self.tally.durable()
            self.autocommit_from = None


class TracedConnection(sqlite3.Connection):
    """A connection that reports every statement to ``TALLY``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch = _Watch(self, TALLY)
        with TALLY._lock:
            TALLY.connections += 1

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        self._watch(sql)
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        rows = list(parameters)
        self._watch(sql)  # the transaction bookkeeping once; the count once per row
        for _ in rows[1:]:
            TALLY.statement(statement_kind(sql), sql)
        return super().executemany(sql, rows)

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        for statement in filter(str.strip, script.split(";")):  # our scripts hold no ";" in literals
            self._watch(statement)
        return super().executescript(script)

    def commit(self) -> None:
        if self.in_transaction:  # sqlite3 sends COMMIT only then
            self._watch("COMMIT")
        super().commit()

    def rollback(self) -> None:
        if self.in_transaction:
            self._watch("ROLLBACK")
        super().rollback()

    def close(self) -> None:
        try:
            self._watch.settle(self.total_changes)
        except sqlite3.Error:
            pass
        super().close()


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each thread of this process, by thread name ("main" first).

    Tells whether one thread (the event loop) is the wall: its seconds against the run's.
    """
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    spent: dict[str, float] = {}
    for task in sorted(Path("/proc/self/task").iterdir(), key=lambda p: int(p.name)):
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # the thread ended meanwhile
            continue
        tid = int(task.name)
        name = "main" if tid == os.getpid() else names.get(tid, f"thread-{tid}")
        spent[name] = spent.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return spent


_real_connect = sqlite3.connect


def _connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    kwargs.setdefault("factory", TracedConnection)
    return _real_connect(*args, **kwargs)


def install(out: Path) -> None:
    """Count from now on; write the counts to ``out`` when this process exits."""
    sqlite3.connect = _connect  # type: ignore[assignment]
    owner = os.getpid()  # forked parse workers inherit the hook but must not write the file

    def write() -> None:
        if os.getpid() == owner:
            out.write_text(json.dumps({**TALLY.as_json(), "threads": thread_cpu()}, indent=1))

    atexit.register(write)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.traced", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="write the counts here (JSON) at exit")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then ticketd's arguments")
    args = parser.parse_args(argv)
    words = args.args[1:] if args.args[:1] == ["--"] else args.args
    install(args.out.resolve())
    from ticketd.daemon.cli import main as ticketd  # imported after install: nothing connects earlier

    sys.argv = ["ticketd", *words]
    return ticketd(words)


if __name__ == "__main__":
    sys.exit(main())
