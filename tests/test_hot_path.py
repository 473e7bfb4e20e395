"""The hot path's SQL: few statements per group, not per message, and none that walks history.

Every statement that intake and a commit group issue is recorded from SQLite itself (the
connection's trace callback) and its plan read back with EXPLAIN QUERY PLAN: a SCAN of a
table that grows with the history would make the daemon slower every day in production.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta
from pathlib import Path

from tortoise import connections

from bench.generate import generate
from ticketd.daemon import sweeper
from ticketd.daemon.config import Config, load_config
from ticketd.daemon.pipeline import Processor
from ticketd.daemon.prepare import Clock, utcnow
from ticketd.storage import intake
from ticketd.storage.db import database
from ticketd.storage.models import Article, InboundMessage, InboundStatus, OutboundMessage, Ticket
from tests.support import backend
from tests.support.daemon import write_config
from tests.support.mail import simple

# Tables that grow with every message; a full scan of one of them is a bug on the hot path.
HISTORY = ("inbound_message", "inbound_raw", "ticket", "article", "attachment", "attachment_content",
           "participant", "outbound_message", "event", "suppression")
_WRITE_OR_READ = re.compile(r"^\s*(SELECT|UPDATE|DELETE|INSERT)\b", re.IGNORECASE)
TRACED = backend.sqlite_only("the statements are traced by SQLite itself (its trace callback), "
                             "plans by EXPLAIN QUERY PLAN")
_LITERAL = re.compile(r"X?'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b|\bNULL\b")


def issued(statements: list[str]) -> list[str]:
    """What the client sent: an executemany traces once per row, and counts once here."""
    shapes = [_LITERAL.sub("?", s) for s in statements]
    return [shape for i, shape in enumerate(shapes) if i == 0 or shape != shapes[i - 1]]


def _config(tmp_path: Path) -> Config:
    # No SMTP is reached here: the outbox rows are written, not sent.
    return load_config(write_config(tmp_path, 10143, 1, [("support", "support@example.test")]))


async def _traced(work) -> list[str]:  # type: ignore[no-untyped-def]
    statements: list[str] = []
    if backend.POSTGRES:  # no trace callback there: the work runs, its statements are not known
        await work()
        return statements
    connection = connections.get("default")._connection  # aiosqlite: the callback runs in its thread
    await connection.set_trace_callback(statements.append)
    try:
        await work()
    finally:
        await connection.set_trace_callback(None)
    return statements


async def _fetch_and_process(config: Config, raws: list[bytes], first_uid: int,
                             clock: Clock = utcnow) -> list[str]:
    """Store ``raws`` as one fetched batch and process it, as the IMAP worker does; the SQL issued."""
    state = await intake.mailbox_state("support")
    processor = Processor(config, clock=clock)

    async def work() -> None:
        items = [intake.Incoming(raw=raw, size=len(raw), uid=first_uid + i) for i, raw in enumerate(raws)]
        await intake.unprocessed(state)  # what every sync asks first
        rows = await intake.store_batch(state, 7, items, config.max_message_bytes)
        # The worker hands on the bytes it has just stored (daemon.fetcher): none is read back.
        prepared = await processor.prepare(rows, "support", {row.id: raw for row, raw in zip(rows, raws)})
        await processor.process(rows, config.mailboxes[0], prepared)
        await intake.mark_server_done([r.id for r in await intake.pending_after_actions(state, 7)])
        await sweeper.sweep(processor, timedelta(0))  # piped rows left by `ingest`: none here
    return await _traced(work)


def _reads(statements: list[str]) -> list[str]:
    return [s for s in statements if _WRITE_OR_READ.match(s) and " VALUES " not in s.upper()]


def _scans(db: Path, statements: list[str]) -> list[tuple[str, str]]:
    """(statement, plan line) for every full scan of a history table."""
    found = []
    with sqlite3.connect(db) as plain:
        for statement in _reads(statements):
            for *_, detail in plain.execute("EXPLAIN QUERY PLAN " + statement):
                words = detail.split()
                if words[:1] == ["SCAN"] and words[1] in HISTORY:
                    found.append((statement[:300], detail))
    return found


def _steps(db: Path, statements: list[str]) -> dict[str, int]:
    """SQLite virtual-machine steps of each SELECT: what it really costs, rows walked included."""
    costs = {}
    with sqlite3.connect(db) as plain:
        for statement in _reads(statements):
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            counter = [0]

            def step() -> int:
                counter[0] += 1
                return 0
            plain.set_progress_handler(step, 1)
            plain.execute(statement).fetchall()
            costs[statement] = counter[0]
    return costs


@TRACED
async def test_the_hot_statements_cost_the_same_on_a_database_six_times_as_big(tmp_path: Path) -> None:
    config = _config(tmp_path)
    db = tmp_path / "ticketd.db"
    history = [m.raw for m in generate(480, seed=4, to="support@example.test")]
    mails = [m.raw for m in generate(120, seed=3, to="support@example.test")]
    two_days_ago = lambda: utcnow() - timedelta(days=2)  # noqa: E731 -- outside every per-hour window
    async with database(config.database_url):
        await _fetch_and_process(config, history[:80], 1, two_days_ago)
        await _fetch_and_process(config, mails[:80], 81)
        # Replies to what came before, new tickets, attachments, duplicates of stored mail.
        statements = await _fetch_and_process(config, mails[80:] + mails[:5], 161)
        assert await InboundMessage.filter(status=InboundStatus.DUPLICATE).count() == 5
        small = _steps(db, statements)
        await _fetch_and_process(config, history[80:], 1000, two_days_ago)  # the same customers, 6x the rows
        assert await Article.filter(inbound_id__isnull=False).count() == 600
    big = _steps(db, statements)
    assert len(small) > 10
    assert _scans(db, statements) == []
    grown = {s[:200]: (small[s], big[s]) for s in small if big[s] > small[s] * 1.3 + 50}
    assert grown == {}


@TRACED
async def test_a_group_of_twenty_messages_costs_about_the_statements_of_one(tmp_path: Path) -> None:
    config = _config(tmp_path)
    one = [simple("Ann <ann@example.org>", "Printer", "<one@example.org>")]
    twenty = [simple(f"C{i} <c{i}@example.org>", f"Question {i}", f"<q{i}@example.org>") for i in range(20)]
    async with database(config.database_url):
        await _fetch_and_process(config, [simple("Old <old@example.org>", "Warm-up", "<w@example.org>")], 1)
        single = await _fetch_and_process(config, one, 2)
        group = await _fetch_and_process(config, twenty, 3)
        assert await Ticket.all().count() == 22
        assert await OutboundMessage.all().count() == 22
    # A statement per message would add 19 or more; the group's extra is fixed, not per message.
    assert len(issued(group)) <= len(issued(single)) + 2, "\n".join(issued(group))


@TRACED
async def test_the_bytes_just_stored_are_not_read_back(tmp_path: Path) -> None:
    config = _config(tmp_path)
    async with database(config.database_url):
        statements = await _fetch_and_process(config, [simple("Ann <ann@example.org>", "Printer", "<p@example.org>")], 1)
    assert [s for s in _reads(statements) if "inbound_raw" in s] == []
    assert any("inbound_raw" in s for s in statements), "the bytes were stored"


async def test_a_reply_in_the_same_group_as_its_question_joins_its_ticket(tmp_path: Path) -> None:
    config = _config(tmp_path)
    question = simple("Ann <ann@example.org>", "Printer", "<q@example.org>")
    reply = simple("Ann <ann@example.org>", "Re: Printer", "<r@example.org>", extra="In-Reply-To: <q@example.org>")
    tagged = simple("Ann <ann@example.org>", "Also [#1]", "<t@example.org>")
    async with database(config.database_url):
        await _fetch_and_process(config, [question, reply, tagged], 1)
        assert await Ticket.all().count() == 1
        assert await Article.filter(ticket__number=1).count() == 3
