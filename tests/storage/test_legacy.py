"""A database of the release before raw bytes had their own tables opens with every byte kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ticketd.storage import bulk, intake, legacy
from ticketd.storage.db import database
from ticketd.storage.models import Attachment, AttachmentContent, InboundMessage, InboundSource
from tests.support import backend

# The two tables as the previous release created them (from its generate_schemas), one row each.
OLD_SCHEMA = """
CREATE TABLE "inbound_message" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "uidvalidity" BIGINT, "uid" BIGINT,
    "raw_bytes" BLOB NOT NULL, "size" BIGINT NOT NULL, "truncated" INT NOT NULL DEFAULT 0,
    "sha256" VARCHAR(64) NOT NULL, "message_id" VARCHAR(998) NOT NULL DEFAULT '',
    "status" VARCHAR(20) NOT NULL DEFAULT 'received', "reason" TEXT NOT NULL DEFAULT '',
    "attempts" INT NOT NULL DEFAULT 0, "verdicts" JSON NOT NULL, "server_done" INT NOT NULL DEFAULT 0,
    "received_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, "processed_at" TIMESTAMP,
    "duplicate_of_id" BIGINT, "mailbox_id" INT, "ticket_id" BIGINT);
CREATE INDEX "idx_inbound_mes_sha256_2f3f4b" ON "inbound_message" ("sha256");
CREATE TABLE "attachment" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "filename" TEXT NOT NULL DEFAULT '',
    "content_type" VARCHAR(255) NOT NULL DEFAULT 'application/octet-stream', "size" BIGINT NOT NULL,
    "sha256" VARCHAR(64) NOT NULL, "content" BLOB NOT NULL, "content_id" VARCHAR(998) NOT NULL DEFAULT '',
    "inline" INT NOT NULL DEFAULT 0, "article_id" BIGINT NOT NULL);
INSERT INTO inbound_message (id, raw_bytes, size, sha256, status, verdicts)
    VALUES (7, X'46726f6d3a2061406578616d706c652e6f72670d0a0d0a6869', 30, 'aa', 'processed', '[]');
INSERT INTO attachment (id, size, sha256, content, article_id) VALUES (3, 3, 'bb', X'616263', 1);
"""


@backend.sqlite_only("the old release's schema is a SQLite file")
async def test_an_old_database_keeps_its_raw_bytes_and_takes_new_mail(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript(OLD_SCHEMA)
    async with database(f"sqlite://{path}", upgrade=True):  # `ticketd db upgrade`
        assert (await InboundSource.get(inbound_id=7)).content == b"From: a@example.org\r\n\r\nhi"
        assert (await AttachmentContent.get(attachment_id=3)).content == b"abc"
        assert (await Attachment.get(id=3)).size == 3
        new = await intake.store_one(intake.Incoming(raw=b"Subject: new\r\n\r\nx", size=17), 1000)
        assert new.id == 8 and await InboundMessage.all().count() == 2
    async with database(f"sqlite://{path}"):  # once: a second open changes nothing (and is allowed)
        assert await InboundSource.all().count() == 2
    with sqlite3.connect(path) as upgraded:  # and the old tables got the new indexes
        indexed = {tuple(c[2] for c in upgraded.execute(f'PRAGMA index_info("{i[1]}")'))
                   for i in upgraded.execute("PRAGMA index_list(inbound_message)")}
    assert ("message_id", "status") in indexed
    assert ("sha256",) not in indexed, "the old single-column index, redundant beside (sha256, status), is gone"
    assert ("sha256", "status") in indexed


async def _index_columns(table: str) -> list[tuple[str, ...]]:
    """The columns of each index of ``table``, as the database itself lists them."""
    if backend.POSTGRES:
        return [tuple(cols) for (cols,) in await bulk.fetch(
            "SELECT array_agg(a.attname ORDER BY k.n) FROM pg_index x "
            "CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum "
            "WHERE x.indrelid = to_regclass(?) GROUP BY x.indexrelid", [f'"{table}"'])]
    return [tuple(c[2] for c in await bulk.fetch(f'PRAGMA index_info("{i[1]}")'))
            for i in await bulk.fetch(f'PRAGMA index_list("{table}")')]


async def test_a_new_database_has_no_index_that_another_one_begins_with(tmp_path: Path) -> None:
    async with database(backend.url(tmp_path / "new.db")):
        for table, _ in legacy.REDUNDANT:
            indexes = await _index_columns(table)
            assert len(indexes) > 2, indexes
            singles = {cols for cols in indexes if len(cols) == 1}
            covered = {(cols[0],) for cols in indexes if len(cols) > 1}
            assert not singles & covered, f"{table}: {sorted(singles & covered)} each write pays for nothing"
