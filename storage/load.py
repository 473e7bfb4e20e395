"""`ticketd import`: an export (storage.export) into an empty database, whole or not at all.

One transaction: a line that is not what the format says, a row the database refuses, or a
file cut off before its end line rolls everything back, and the error names the file and the
line. Resumable chunks would leave a half-imported database that refuses the next attempt as
"not empty"; a migration is run once, on a database nobody uses yet, so all-or-nothing is the
simpler promise. The cost is that the rows wait in the WAL (SQLite) or the transaction
(PostgreSQL) until the commit: a 2 GB export needs about 2 GB more disk while it loads.

Ids are kept as exported, so foreign keys and ticket numbers hold; the tables' sequences are
then moved past the highest id the old database handed out (``last_ids``), and the ticket
number sequence past the highest number (storage.numbers), so new rows after the import never
collide. Rows go in batches (one executemany each); when the database
refuses a batch, it is undone (a savepoint) and run row by row to name the line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from tortoise.transactions import in_transaction

from ticketd.storage import bulk, numbers
from ticketd.storage.errors import is_temporary
from ticketd.storage.export_schema import FORMAT, VERSION, BadValue, Table, decode, tables

BATCH_ROWS = 500
BATCH_BYTES = 16 << 20  # of bytes and text per batch: memory stays flat with large messages


class LoadError(Exception):
    """The export cannot be imported; the text says where (FILE:LINE) and why."""


@dataclass
class Plan:
    """How the rows of one table of the file become INSERTs into the table of this version."""

    table: Table
    given: frozenset[str]  # the columns the file's header lists
    fill: dict[str, Any]  # columns this version has and the file lacks: their defaults


@dataclass
class Batch:
    plan: Plan | None = None
    rows: list[list[Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    size: int = 0


def objects(lines: Iterable[bytes], source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line; LoadError for one that is no JSON object."""
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise LoadError(f"{source}:{number}: expected a line of JSON, got bytes that are not UTF-8") from None
        except json.JSONDecodeError as exc:
            raise LoadError(f"{source}:{number}: expected a JSON object, got invalid JSON "
                            f"({exc.msg} at column {exc.colno})") from None
        if not isinstance(value, dict):
            raise LoadError(f"{source}:{number}: expected a JSON object, got {type(value).__name__}")
        yield number, value


def plans(header: dict[str, Any], where: str) -> dict[str, Plan]:
    """Check the header against this version's tables; a plan for each table it lists."""
    if header.get("format") != FORMAT:
        raise LoadError(f'{where}: expected the header of a ticketd export ({{"format": "{FORMAT}", ...}}), '
                        f"got {_shown(header)}")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
        raise LoadError(f"{where}: expected export format version {VERSION} or older (what this ticketd reads), "
                        f"got {version!r}")
    given = header.get("tables")
    if not isinstance(given, dict):
        raise LoadError(f'{where}: expected "tables": {{NAME: {{"key": ..., "columns": {{...}}}}}} in the header')
    known = {t.name: t for t in tables()}
    return {name: _plan(known.get(name), name, spec, where) for name, spec in given.items()}


def _plan(table: Table | None, name: str, spec: Any, where: str) -> Plan:
    if table is None:
        raise LoadError(f"{where}: table {name!r} is not one of this ticketd's (an export of a newer version?)")
    columns = spec.get("columns") if isinstance(spec, dict) else None
    if not isinstance(columns, dict):
        raise LoadError(f'{where}: table {name}: expected {{"key": ..., "columns": {{NAME: KIND, ...}}}}')
    for column, kind in columns.items():
        ours = table.column(column)
        if ours is None:
            raise LoadError(f"{where}: {name}.{column}: not a column of this ticketd (an export of a newer version?)")
        if not isinstance(kind, str) or kind.rstrip("?") != ours.kind:
            raise LoadError(f"{where}: {name}.{column}: expected kind {ours.kind}, got {kind!r}")
    fill = {}
    for column in table.columns:
        if column.name not in columns:  # an export of an older version: the column came later
            default = column.field.default() if callable(column.field.default) else column.field.default
            if default is None and not column.null:
                raise LoadError(f"{where}: {name}.{column.name}: missing from the header, and it has no default")
            fill[column.name] = column.field.to_db_value(default, None) if default is not None else None
    return Plan(table, frozenset(columns), fill)


def values(plan: Plan, row: Any, where: str) -> list[Any]:
    """One row of the file as the INSERT's values, in the table's column order."""
    name = plan.table.name
    if not isinstance(row, dict):
        raise LoadError(f"{where}: expected \"row\" to be an object of {name}'s columns, got {_shown(row)}")
    if set(row) != plan.given:
        missing, extra = sorted(plan.given - set(row)), sorted(set(row) - plan.given)
        what = f"missing {', '.join(missing)}" if missing else f"{', '.join(extra)} not in the header's {name}"
        raise LoadError(f"{where}: {name}: expected the header's columns, {what}")
    result = []
    for column in plan.table.columns:
        if column.name not in row:
            result.append(plan.fill[column.name])
            continue
        try:
            result.append(decode(column, row[column.name]))
        except BadValue as exc:
            raise LoadError(f"{where}: {name}.{column.name}: {exc}") from None
    return result


async def refuse_unless_empty(all_tables: list[Table]) -> None:
    full = [t.name for t in all_tables if await bulk.fetch(f'SELECT 1 FROM "{t.name}" LIMIT 1')]
    if full:
        raise LoadError(f"the database is not empty ({', '.join(full)} hold rows): "
                        "import only into a new, empty database")


class Loader:
    """Rows into their tables in batches, inside the caller's transaction."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.batch = Batch()
        self.counts: dict[str, int] = {}
        self.forward: list[tuple[Table, str, Any, Any, int]] = []  # (table, column, key, value, line)

    async def add(self, plan: Plan, row: list[Any], number: int) -> None:
        if self.batch.plan is not plan or len(self.batch.rows) >= BATCH_ROWS or self.batch.size >= BATCH_BYTES:
            await self.flush()
            self.batch.plan = plan
        self._defer_forward(plan.table, row, number)
        self.batch.rows.append(row)
        self.batch.lines.append(number)
        self.batch.size += sum(len(v) for v in row if isinstance(v, (bytes, str)))
        self.counts[plan.table.name] = self.counts.get(plan.table.name, 0) + 1

    def _defer_forward(self, table: Table, row: list[Any], number: int) -> None:
        """A reference to a later row of the same table (a duplicate of a message stored after
        it) would fail the foreign key now: written as null, set once the table is in."""
        names = [c.name for c in table.columns]
        key = row[names.index(table.key)]
        for column in table.self_refs:
            at = names.index(column)
            if row[at] is not None and row[at] >= key:
                self.forward.append((table, column, key, row[at], number))
                row[at] = None

    async def flush(self) -> None:
        batch, self.batch = self.batch, Batch()
        if batch.plan is None or not batch.rows:
            return
        sql = _insert(batch.plan.table)
        await bulk.execute("SAVEPOINT load_batch")
        try:
            await bulk.execute_many(sql, batch.rows)
        except Exception as exc:
            if is_temporary(exc):
                raise
            await bulk.execute("ROLLBACK TO SAVEPOINT load_batch")
            await self._name_the_line(sql, batch, exc)
        await bulk.execute("RELEASE SAVEPOINT load_batch")

    async def _name_the_line(self, sql: str, batch: Batch, error: Exception) -> None:
        for row, number in zip(batch.rows, batch.lines):
            try:
                await bulk.execute(sql, row)
            except Exception as exc:
                raise LoadError(f"{self.source}:{number}: the database refused this {batch.plan.table.name} row "
                                f"({_reason(exc)})") from None
        raise LoadError(f"{self.source}:{batch.lines[0]}-{batch.lines[-1]}: the database refused these "
                        f"{batch.plan.table.name} rows ({_reason(error)})")

    async def finish(self) -> None:
        """The last batch, then the references that pointed forward."""
        await self.flush()
        for table, column, key, value, number in self.forward:
            try:
                await bulk.execute(f'UPDATE "{table.name}" SET "{column}" = ? WHERE "{table.key}" = ?', [value, key])
            except Exception as exc:
                raise LoadError(f"{self.source}:{number}: {table.name}.{column} = {value} refers to no row "
                                f"({_reason(exc)})") from None


def _insert(table: Table) -> str:
    columns = ", ".join(f'"{c.name}"' for c in table.columns)
    return f'INSERT INTO "{table.name}" ({columns}) VALUES ({bulk.marks(len(table.columns))})'


def check_end(end: Any, counts: dict[str, int], where: str) -> dict[str, int]:
    """The end line's row counts against the rows read; its last_ids, checked."""
    if not isinstance(end, dict) or not isinstance(end.get("rows"), dict) or not isinstance(end.get("last_ids"), dict):
        raise LoadError(f'{where}: expected the end line {{"end": {{"rows": {{...}}, "last_ids": {{...}}}}}}')
    for name in sorted(set(end["rows"]) | set(counts)):
        if end["rows"].get(name, 0) != counts.get(name, 0):
            raise LoadError(f"{where}: the end line counts {end['rows'].get(name, 0)!r} {name} row(s), the file has "
                            f"{counts.get(name, 0)}: it is incomplete or was edited")
    last = end["last_ids"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in last.values()):
        raise LoadError(f"{where}: expected last_ids to be whole numbers, got {_shown(last)}")
    return last


async def advance_sequences(all_tables: list[Table], last: dict[str, int]) -> None:
    """Each id sequence past the highest id of its rows and of the old database's sequence."""
    postgres = bulk.is_postgres(bulk.client())
    for table in (t for t in all_tables if t.generated):
        [row] = await bulk.fetch(f'SELECT coalesce(max("{table.key}"), 0) FROM "{table.name}"')
        value = max(int(row[0]), last.get(table.name, 0))
        if postgres:  # setval(seq, 1, false): the next id is 1 again
            await bulk.fetch(f"SELECT setval(pg_get_serial_sequence('{table.name}', '{table.key}'), ?, ?)",
                             [max(value, 1), value > 0])
        elif value:  # AUTOINCREMENT keeps its high-water mark in sqlite_sequence
            await bulk.execute("DELETE FROM sqlite_sequence WHERE name = ?", [table.name])
            await bulk.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", [table.name, value])


async def load(lines: Iterable[bytes], source: str) -> dict[str, int]:
    """Import the export in ``lines`` into the (empty) database; the rows imported, by table."""
    stream = objects(lines, source)
    first = next(stream, None)
    if first is None:
        raise LoadError(f"{source}: empty: expected a ticketd export")
    by_name = plans(first[1], f"{source}:{first[0]}")
    all_tables = tables()
    async with in_transaction():
        await refuse_unless_empty(all_tables)
        loader = Loader(source)
        last, number = None, first[0]
        for number, obj in stream:
            where = f"{source}:{number}"
            if last is not None:
                raise LoadError(f"{where}: expected nothing after the end line")
            if "end" in obj and len(obj) == 1:
                await loader.finish()
                last = check_end(obj["end"], loader.counts, where)
                continue
            if set(obj) != {"table", "row"}:
                raise LoadError(f'{where}: expected {{"table": NAME, "row": {{...}}}} or the end line, got keys '
                                f"{sorted(obj)}")
            plan = by_name.get(obj["table"]) if isinstance(obj["table"], str) else None
            if plan is None:
                raise LoadError(f"{where}: expected a table of the header, got {_shown(obj['table'])}")
            await loader.add(plan, values(plan, obj["row"], where), number)
        if last is None:
            raise LoadError(f"{source}:{number}: the export ends without its end line: it is incomplete (cut off?)")
        await advance_sequences(all_tables, last)
        await numbers.advance()  # the next ticket's number: past every number imported
    return loader.counts


def _reason(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
