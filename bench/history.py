"""``--history N``: pre-fill the database with N earlier messages, as the pipeline would have stored them.

Fast because nothing goes through the pipeline per message: each history message is a copy of
one of a few hundred templates (``bench.copies``), written with multi-row INSERTs built from the
models' metadata (``bench.rows``) in transactions of ``CHUNK`` messages; the next chunk is made
while SQLite writes the last one.

Per message: a processed inbound row and its raw bytes (``inbound_raw``; UID, UIDVALIDITY and
\\Seen done, as after a real run), an article (and attachments with their bytes); per
conversation: a ticket numbered on from the counter, its "created" event, "article" events for
replies, and a sent acknowledgement to the customer. The generator writes no Cc, so one new
conversation in ten gets ``Cc: it-desk@<customer's domain>`` in its template: that is who
becomes a participant. History ends two hours before now, a message every ``STEP``: per-hour
limits see none of it.

``python -m bench.history --config FILE --count N --uidvalidity V`` runs it on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tortoise import connections
from tortoise.models import Model
from tortoise.transactions import in_transaction

from bench.child import child_env
from bench.copies import Template, copy_acknowledgement, copy_message_id, copy_raw, history_id, templates
from bench.rows import Table
from bench.servers import MAILBOX
from ticketd.daemon.config import Config, load_config
from ticketd.storage.db import database
from ticketd.storage.models import (Article, Attachment, AttachmentContent, Counter, Event, InboundMessage, InboundSource,
                            InboundStatus, Mailbox, OutboundMessage, OutboundStatus, Participant, Ticket)

CHUNK = 5000  # history messages per transaction
STEP = timedelta(minutes=5)


@dataclass
class History:
    """What was pre-filled."""

    messages: int = 0
    tickets: int = 0
    bytes: int = 0
    seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    uidvalidity: int = 0
    next_uid: int = 1
    copied: bool = False  # copied from an earlier run's fill (``seconds`` is then the copy's)


# In foreign-key order: a row's parents are written before it.
MODELS: tuple[type[Model], ...] = (Ticket, InboundMessage, InboundSource, Article, Attachment, AttachmentContent,
                                   Participant, Event, OutboundMessage)


class _Rows:
    """The rows of one chunk, table by table, and how to make them for each template."""

    def __init__(self, dialect: str, config: Config, mailbox_id: int, uidvalidity: int) -> None:
        self.tables = {model: Table(model, dialect) for model in MODELS}
        self.pending: dict[type[Model], list[tuple[Any, ...]]] = {model: [] for model in MODELS}
        self.config, self.mailbox_id, self.uidvalidity = config, mailbox_id, uidvalidity
        self._makers: dict[int, _Makers] = {}
        self.event = {what: self.tables[Event].maker({"what": what}, ("id", "ticket_id", "detail", "at"))
                      for what in ("created", "article")}
        self.participant = self.tables[Participant].maker({}, ("id", "ticket_id", "email"))

    def makers(self, template: Template) -> _Makers:
        if template.index not in self._makers:
            self._makers[template.index] = _Makers(self, template)
        return self._makers[template.index]

    def add(self, model: type[Model], row: tuple[Any, ...]) -> None:
        self.pending[model].append(row)

    def take(self) -> dict[type[Model], list[tuple[Any, ...]]]:
        """The rows made so far, handed over for writing; making goes on into fresh lists."""
        taken, self.pending = self.pending, {model: [] for model in MODELS}
        return taken

    async def write(self, taken: dict[type[Model], list[tuple[Any, ...]]], counts: dict[str, int]) -> None:
        """One transaction; sqlite3 lets go of the GIL while SQLite works, so the next chunk is made meanwhile."""
        async with in_transaction():
            for model, table in self.tables.items():
                counts[table.name] = counts.get(table.name, 0) + await table.insert(taken[model])


class _Makers:
    """One template's rows, everything but the per-copy values converted once."""

    def __init__(self, rows: _Rows, template: Template) -> None:
        t, msg = rows.tables, template.parsed
        self.ticket = t[Ticket].maker({**template.ticket, "status": "new"},
                                      ("id", "number", "created_at", "updated_at"))
        self.inbound = t[InboundMessage].maker(dict(
            mailbox_id=rows.mailbox_id, uidvalidity=rows.uidvalidity, status=InboundStatus.PROCESSED, reason="",
            attempts=1, server_done=True, truncated=False, verdicts=template.verdicts),
            ("id", "uid", "size", "sha256", "message_id", "ticket_id", "received_at", "processed_at"))
        self.source = t[InboundSource].maker({}, ("inbound_id", "content"))
        self.article = t[Article].maker(dict(
            direction="in", sender=str(msg.from_ or ""), to=", ".join(map(str, msg.to)),
            cc=", ".join(map(str, msg.cc)), subject=msg.subject, date=msg.date, text=msg.text, html=msg.html,
            internal=False), ("id", "ticket_id", "inbound_id", "message_id", "in_reply_to", "references",
                              "created_at"))
        self.attachments = []
        for part in msg.attachments:
            values = dict(filename=part.filename, content_type=part.content_type, size=part.size,
                          sha256=hashlib.sha256(part.content).hexdigest(), content_id=part.content_id,
                          inline=part.inline)
            self.attachments.append((t[Attachment].maker(values, ("id", "article_id")),
                                     t[AttachmentContent].maker({"content": part.content}, ("attachment_id",))))
        self.outbound = [(draft, t[OutboundMessage].maker(dict(
            kind=draft.kind, mail_from=draft.mail_from, recipients=list(draft.recipients),
            recipient=draft.recipients[0].lower() if draft.recipients else "", automatic=draft.automatic,
            status=OutboundStatus.SENT, attempts=1, last_error=""),
            ("id", "ticket_id", "message_id", "raw_bytes", "next_try_at", "created_at", "sent_at")))
            for draft in template.drafts]


class _Ids:
    """The next free primary key of each table."""

    def __init__(self, start: dict[type[Model], int]) -> None:
        self.next = dict(start)

    def take(self, model: type[Model]) -> int:
        value = self.next[model]
        self.next[model] = value + 1
        return value


async def _next_ids() -> _Ids:
    client = connections.get("default")
    start = {}
    for model in MODELS:
        if model in (InboundSource, AttachmentContent):  # keyed by their parent's id
            continue
        meta = model._meta
        _, rows = await client.execute_query(f'SELECT max("{meta.db_pk_column}") FROM "{meta.db_table}"')
        start[model] = int(list(rows[0].values() if isinstance(rows[0], dict) else rows[0])[0] or 0) + 1
    return _Ids(start)


def plan(count: int, pool: list[Template], first_cycle: int = 1) -> Iterator[tuple[int, int, Template]]:
    """(history index, cycle, template) for every history message, the pool taken in turn."""
    for i in range(count):
        yield i, first_cycle + i // len(pool), pool[i % len(pool)]


async def fill(config: Config, count: int, seed: int, uidvalidity: int, first_uid: int = 1,
               end: datetime | None = None, pool: list[Template] | None = None) -> History:
    """Write ``count`` history messages into the open database (see the module docstring)."""
    client = connections.get("default")
    if client.capabilities.dialect == "sqlite":
        # The pre-fill need not survive a crash or a power cut: no journal, no fsync (WAL would write
        # every page twice, the log then the checkpoint). WAL comes back at the end.
        await client.execute_script("PRAGMA synchronous = OFF; PRAGMA journal_mode = OFF; "
                                    "PRAGMA cache_size = -262144")
    started = time.perf_counter()
    pool = pool if pool is not None else await templates(config, seed)
    if not pool:
        raise RuntimeError("no usable template messages")
    box, _ = await Mailbox.get_or_create(name=MAILBOX)
    ids, rows, report = await _next_ids(), _Rows(client.capabilities.dialect, config, box.id, uidvalidity), History()
    counter = await Counter.get_or_none(name="ticket")
    number = counter.value if counter else 0
    end = end or datetime.now(timezone.utc) - timedelta(hours=2)
    start = end - STEP * count
    threads: dict[tuple[int, int], tuple[int, int]] = {}  # (cycle, thread) -> (ticket id, number)
    writing: asyncio.Future[None] | None = None
    # Cycles numbered from the first free inbound id: a second fill never repeats a Message-ID.
    for i, cycle, template in plan(count, pool, ids.next[InboundMessage]):
        at, make = start + STEP * i, rows.makers(template)
        raw = copy_raw(template, cycle)
        key = (cycle, template.thread)
        opened = key not in threads
        if opened:
            number += 1
            threads[key] = (ids.take(Ticket), number)
            rows.add(Ticket, make.ticket(threads[key][0], number, at, at))
            report.tickets += 1
        ticket_id, ticket_number = threads[key]
        inbound_id, article_id = ids.take(InboundMessage), ids.take(Article)
        inbound = (inbound_id, first_uid + i, len(raw), hashlib.sha256(raw).hexdigest(), copy_message_id(template, cycle),
                   ticket_id, at, at + timedelta(seconds=1))
        rows.add(InboundMessage, make.inbound(*inbound))
        rows.add(InboundSource, make.source(inbound_id, raw))
        _add_article(rows, make, ids, template, cycle, ticket_id, inbound_id, article_id, at)
        rows.add(Event, rows.event["created" if opened else "article"](
            ids.take(Event), ticket_id, {"article": article_id, "inbound": inbound_id,
                                         "threaded_by": None if opened else "references", "tags": []}, at))
        if opened:
            for email in template.participants:
                rows.add(Participant, rows.participant(ids.take(Participant), ticket_id, email))
            for draft, outbound in make.outbound:
                message_id, ack = copy_acknowledgement(config, template, cycle, draft, ticket_number)
                rows.add(OutboundMessage, outbound(ids.take(OutboundMessage), ticket_id, message_id, ack, at, at,
                                                   at + timedelta(seconds=1)))
        report.messages += 1
        report.bytes += len(raw)
        if report.messages % 50 == 0:
            await asyncio.sleep(0)  # the chunk being written goes on to its next statement
        if report.messages % CHUNK == 0:
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(rows.write(rows.take(), report.rows))
    if writing is not None:
        await writing
    await rows.write(rows.take(), report.rows)
    await _finish(box, number, uidvalidity, first_uid + count)
    report.uidvalidity, report.next_uid = uidvalidity, first_uid + count
    report.seconds = time.perf_counter() - started
    return report


def _add_article(rows: _Rows, make: _Makers, ids: _Ids, template: Template, cycle: int, ticket_id: int,
                 inbound_id: int, article_id: int, at: datetime) -> None:
    msg = template.parsed

    def renamed(value: str) -> str:
        return history_id(value, cycle) if value in template.ids else value

    rows.add(Article, make.article(article_id, ticket_id, inbound_id, renamed(msg.message_id),
                                   " ".join(map(renamed, msg.in_reply_to)), " ".join(map(renamed, msg.references)),
                                   at))
    for attachment, content in make.attachments:
        attachment_id = ids.take(Attachment)
        rows.add(Attachment, attachment(attachment_id, article_id))
        rows.add(AttachmentContent, content(attachment_id))


async def _finish(box: Mailbox, number: int, uidvalidity: int, next_uid: int) -> None:
    """The ticket counter continues after the history; the mailbox is synced up to its last UID."""
    await Counter.update_or_create(defaults={"value": number}, name="ticket")
    box.uidvalidity, box.last_uid = uidvalidity, next_uid - 1
    await box.save(update_fields=["uidvalidity", "last_uid", "updated_at"])
    client = connections.get("default")
    if client.capabilities.dialect == "sqlite":
        await client.execute_script("PRAGMA journal_mode = WAL")
        return
    # PostgreSQL: the ids were picked here, past the sequences; the daemon's next row takes
    # its id from them (storage.bulk.Ids, the ORM), so they go on after the history.
    for model in MODELS:
        meta = model._meta
        if meta.pk_attr == "id":
            await client.execute_script(
                f"SELECT setval(pg_get_serial_sequence('{meta.db_table}', 'id'), "
                f'(SELECT max("id") FROM "{meta.db_table}")) WHERE EXISTS (SELECT 1 FROM "{meta.db_table}")')


def prefill(config_path: Path, count: int, seed: int, uidvalidity: int, database: Path | None = None) -> History:
    """Fill the configured database (or ``database``) in a process of its own; say what it wrote.

    Not in the bench's process: a child forked from a process that held the pre-fill's
    hundreds of MiB would carry them in its ``ru_maxrss``, and ticketd's peak RSS would lie.
    """
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "history.json"
        command = [sys.executable, "-m", "bench.history", "--config", str(config_path), "--count", str(count),
                   "--seed", str(seed), "--uidvalidity", str(uidvalidity), "--out", str(out),
                   *(["--database", str(database)] if database else [])]
        done = subprocess.run(command, env=child_env(), capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the pre-fill failed: {done.stderr.decode(errors='replace')[-3000:]}")
        report = History(**json.loads(out.read_text()))
    settle(database or Path(load_config(config_path).database_url.removeprefix("sqlite://")))
    return report


def settle(path: Path) -> None:
    """Write ``path``'s dirty pages to disk now, before the timed run.

    The fill writes gigabytes without fsync; left to the kernel, their write-back would run
    during the timed run and every one of the daemon's fsyncs would queue behind it.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Cache:
    """Pre-filled databases kept for the runs of one invocation (--repeat, --rss-series).

    Filling 100000 messages takes most of a minute; copying the filled file, seconds.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.filled: dict[tuple[int, int, int], History] = {}

    def prefill(self, config_path: Path, database: Path, count: int, seed: int, uidvalidity: int) -> History:
        """``database`` holding the history: filled the first time, copied after."""
        key = (count, seed, uidvalidity)
        stored = self.directory / f"history-{count}-{seed}-{uidvalidity}.db"
        first = key not in self.filled
        if first:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.filled[key] = prefill(config_path, count, seed, uidvalidity, stored)
        start = time.perf_counter()
        shutil.copyfile(stored, database)  # closed in WAL mode, so checkpointed: this one file is all of it
        settle(database)
        if first:
            return self.filled[key]
        return dataclasses.replace(self.filled[key], copied=True, seconds=time.perf_counter() - start)

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="the ticketd.toml naming the database")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--uidvalidity", type=int, required=True)
    parser.add_argument("--out", type=Path, help="write what was filled here (JSON)")
    parser.add_argument("--database", type=Path, help="fill this SQLite file instead of the configured database")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    url = f"sqlite://{args.database.resolve()}" if args.database else config.database_url

    async def run() -> History:
        async with database(url, config.busy_timeout):
            return await fill(config, args.count, args.seed, args.uidvalidity)

    report = asyncio.run(run())
    if args.out:
        args.out.write_text(json.dumps(dataclasses.asdict(report)))
    print(f"{report.messages} messages, {report.tickets} tickets, {report.bytes >> 20} MiB in {report.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
