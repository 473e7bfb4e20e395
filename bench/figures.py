"""Turning what the run left behind into figures: percentiles, rawlog times, latencies, statements."""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ticketd.storage.models import OutboundMessage

QUANTILES = (50, 95, 99)
# What counts as "reading mail": the first of these ends start-up.
_MAIL_COMMANDS = ("UID SEARCH", "UID FETCH", "SEARCH", "FETCH")


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ascending ``ordered``: a value that was really observed."""
    if not ordered:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def percentiles(values: Iterable[float], qs: Sequence[float] = QUANTILES) -> dict[float, float]:
    ordered = sorted(values)
    return {q: percentile(ordered, q) for q in qs} if ordered else {}


# ---------------------------------------------------------------- start-up, from Dovecot's rawlog


@dataclass(frozen=True)
class RawCommand:
    at: float  # epoch seconds at which Dovecot's imap process read the line
    command: str  # upper case, without the tag: "SELECT INBOX", "UID FETCH 1:25 (...)"


def parse_rawlog_line(line: bytes) -> RawCommand | None:
    """``1796165116.048817 A3 UID SEARCH UID 1:*`` -> RawCommand; None for anything else."""
    parts = line.decode("ascii", "replace").split(None, 2)
    if len(parts) < 3:
        return None
    try:
        at = float(parts[0])
    except ValueError:
        return None
    return RawCommand(at, parts[2].strip().upper())


def read_rawlog(directory: Path) -> list[RawCommand]:
    """Every client command of every session in ``directory`` (``*.in`` files), oldest first."""
    found: list[RawCommand] = []
    for path in directory.glob("*.in") if directory.is_dir() else ():
        for line in path.read_bytes().splitlines():
            command = parse_rawlog_line(line)
            if command is not None:
                found.append(command)
    return sorted(found, key=lambda c: c.at)


@dataclass(frozen=True)
class StartUp:
    """Seconds from the spawn of ticketd to what Dovecot saw it do first (None: never seen)."""

    logged_in: float | None  # first command after LOGIN (the session's first rawlog line)
    first_search: float | None  # first UID SEARCH: the daemon asks what is new
    first_fetch: float | None  # first UID FETCH: the first message bodies

    @property
    def mail(self) -> float | None:
        """Start-up proper: spawn to the first command that reads the mailbox."""
        seen = [t for t in (self.first_search, self.first_fetch) if t is not None]
        return min(seen) if seen else None


def start_up(commands: Sequence[RawCommand], started_at: float, ended_at: float) -> StartUp:
    """What the process spawned at ``started_at`` did first; others' sessions lie outside the window."""
    mine = [c for c in commands if started_at <= c.at <= ended_at]

    def first(*prefixes: str) -> float | None:
        return next((c.at - started_at for c in mine if not prefixes or c.command.startswith(prefixes)), None)

    return StartUp(first(), first("UID SEARCH", "SEARCH"), first("UID FETCH", "FETCH"))


# ---------------------------------------------------------------- commit to acknowledgement


@dataclass(frozen=True)
class Outbound:
    created_at: datetime  # the pipeline's clock when the ticket's transaction began
    sent_at: datetime | None  # the sender's clock after the server's 250


@dataclass
class Latencies:
    """Per acknowledgement, seconds from its outbox row's created_at to delivery."""

    received: list[float] = field(default_factory=list)  # to the sink's receive time
    recorded: list[float] = field(default_factory=list)  # to sent_at in the database
    unmatched: int = 0  # sink messages without an outbox row (or without a Message-ID)


def ack_latencies(delivered: Iterable[tuple[str, datetime]], outbox: dict[str, Outbound]) -> Latencies:
    """Match the sink's (Message-ID, received_at) pairs to outbox rows by Message-ID."""
    result = Latencies()
    for message_id, received_at in delivered:
        row = outbox.get(message_id.strip())
        if row is None:
            result.unmatched += 1
            continue
        result.received.append((received_at - row.created_at).total_seconds())
        if row.sent_at is not None:
            result.recorded.append((row.sent_at - row.created_at).total_seconds())
    return result


@contextmanager
def _connect(database: Path) -> Iterator[sqlite3.Connection]:
    """Read-only, beside a daemon that may still be writing (WAL lets a reader in); closed after."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        connection.execute("PRAGMA query_only = 1")
        yield connection
    finally:
        connection.close()


def _column(model: type, name: str) -> str:
    return f'"{model._meta.fields_db_projection[name]}"'  # type: ignore[attr-defined]


def read_outbox(database: Path) -> dict[str, Outbound]:
    """Every outbox row's created_at and sent_at, by Message-ID (names from the model)."""
    if not database.exists():
        return {}
    m = OutboundMessage
    sql = (f"SELECT {_column(m, 'message_id')}, {_column(m, 'created_at')}, {_column(m, 'sent_at')} "
           f'FROM "{m._meta.db_table}"')
    with _connect(database) as connection:
        rows = connection.execute(sql).fetchall()
    return {mid: Outbound(datetime.fromisoformat(created), datetime.fromisoformat(sent) if sent else None)
            for mid, created, sent in rows}


def count_rows(database: Path, model: type, since_id: int = 0, status: Sequence[str] = ()) -> int:
    """Rows of ``model`` above ``since_id`` (this run's, after the history), with one of ``status``."""
    if not database.exists():
        return 0
    where, values = f"{_column(model, 'id')} > ?", [since_id]
    if status:
        where += f" AND {_column(model, 'status')} IN ({', '.join('?' for _ in status)})"
        values += list(status)
    with _connect(database) as connection:
        sql = f'SELECT count(*) FROM "{model._meta.db_table}" WHERE {where}'  # type: ignore[attr-defined]
        return int(connection.execute(sql, values).fetchone()[0])


def max_id(database: Path, model: type) -> int:
    """The largest primary key of ``model``'s table; 0 when empty or when there is no database yet."""
    if not database.exists():
        return 0
    with _connect(database) as connection:
        sql = f'SELECT max({_column(model, "id")}) FROM "{model._meta.db_table}"'  # type: ignore[attr-defined]
        value = connection.execute(sql).fetchone()[0]
    return int(value or 0)


# ---------------------------------------------------------------- SQL statements


@dataclass(frozen=True)
class Statements:
    """What ``bench.traced`` counted in one ticketd process."""

    total: int
    kinds: Counter[str]
    durable_commits: int
    shapes: Counter[str]

    @classmethod
    def load(cls, path: Path) -> Statements | None:
        """The counts a traced run wrote; None when it wrote none (killed, or not traced)."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(int(data["statements"]), Counter(data["kinds"]), int(data["durable_commits"]),
                   Counter(data["shapes"]))

    def minus(self, fixed: Statements | None) -> Statements:
        """Without what a run costs anyway (an idle run's counts): the part that grows with N."""
        if fixed is None:
            return self
        kinds, shapes = Counter(self.kinds), Counter(self.shapes)
        kinds.subtract(fixed.kinds)
        shapes.subtract(fixed.shapes)
        return Statements(self.total - fixed.total, +kinds, self.durable_commits - fixed.durable_commits, +shapes)
