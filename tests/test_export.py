"""`ticketd export` and `ticketd import`: a database through JSON lines and back, byte for byte."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tortoise import Tortoise

from ticketd.storage import export as export_module
from ticketd.storage.db import database
from ticketd.storage.export import snapshot
from ticketd.storage.export_schema import ORDER
from ticketd.storage.load import LoadError, load
from ticketd.storage.models import InboundMessage, Ticket
from tests.support.backend import POSTGRES, url
from tests.support.daemon import cli, cli_json
from tests.support.data import exported, fill, rows_of
from tests.support.desk import Desk
from tests.support.desk import config as desk_config


async def filled(tmp_path: Path) -> bytes:
    """An export of a desk with rows in every table."""
    cfg = config(tmp_path)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await fill(desk)
        return await exported(desk)


def config(directory: Path) -> Any:
    """A desk's configuration (and database) in ``directory``, made if need be."""
    directory.mkdir(parents=True, exist_ok=True)
    # A webhook (never POSTed to here): the events of fill() then write webhook_delivery rows too.
    return desk_config(directory, '[[webhooks]]\nname = "export"\nurl = "http://127.0.0.1:9/hook"\n')


def header(data: bytes) -> dict[str, object]:
    return json.loads(data.splitlines()[0])


async def test_every_model_is_exported_parents_first() -> None:
    async with database("sqlite://:memory:"):
        tables = {m._meta.db_table for m in Tortoise.apps["models"].values()}
    assert set(ORDER) == tables and len(ORDER) == len(tables)


async def test_an_export_imported_into_a_new_database_exports_the_same_bytes(tmp_path: Path) -> None:
    first = await filled(tmp_path / "a")
    counts = json.loads(first.splitlines()[-1])["end"]["rows"]
    assert all(counts[name] > 0 for name in ORDER), counts  # the round trip covers every table
    async with database(url(tmp_path / "b.db")):
        assert await load(io.BytesIO(first), "dump") == counts
        second = await exported()
    one, two = header(first), header(second)
    assert one.pop("exported_at") != two.pop("exported_at") and one == two
    assert first.splitlines()[1:] == second.splitlines()[1:]


@pytest.mark.parametrize("into_sqlite", [True, False], ids=["to-sqlite", "from-sqlite"])
async def test_an_export_moves_between_sqlite_and_the_backend_under_test(tmp_path: Path, into_sqlite: bool) -> None:
    # A migration from SQLite to PostgreSQL (or back) is what export and import are for.
    cfg = config(tmp_path / "a")
    sqlite_file = f"sqlite://{tmp_path}/other.db"
    source, target = (cfg.database_url, sqlite_file) if into_sqlite else (sqlite_file, url(tmp_path / "b.db"))
    async with database(source):
        desk = Desk(cfg)
        await fill(desk)
        first = await exported(desk)
    async with database(target):
        await load(io.BytesIO(first), "dump")
        assert (await exported(desk)).splitlines()[1:] == first.splitlines()[1:]


async def test_a_duplicate_of_a_message_stored_after_it_survives_the_round_trip(tmp_path: Path) -> None:
    cfg = config(tmp_path / "a")
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await fill(desk)
        # A piped row left "received" and finished by the sweep after a later IMAP copy was
        # processed: the duplicate's id is the smaller one, so its reference points forward.
        # (Ids as the database handed them out: PostgreSQL's come in chunks, with gaps.)
        one, two = await InboundMessage.all().order_by("id").limit(2).values_list("id", flat=True)
        await InboundMessage.filter(id=one).update(status="duplicate", duplicate_of_id=two)
        await InboundMessage.filter(id=two).update(status="processed", duplicate_of_id=None)
        first = await exported(desk)
    async with database(url(tmp_path / "b.db")):
        await load(io.BytesIO(first), "dump")
        assert (await InboundMessage.get(id=one)).duplicate_of_id == two
        assert (await exported()).splitlines()[1:] == first.splitlines()[1:]


async def test_values_keep_their_kinds_bytes_as_base64_and_times_with_their_offset(tmp_path: Path) -> None:
    data = await filled(tmp_path)
    rows = rows_of(data)
    raw = next(r["row"] for r in rows if r["table"] == "inbound_raw")
    assert b"My printer is broken." in base64.b64decode(raw["content"])
    ticket = next(r["row"] for r in rows if r["table"] == "ticket")
    assert ticket["created_at"].endswith("+00:00") and isinstance(ticket["tags"], list)
    mailbox = next(r["row"] for r in rows if r["table"] == "mailbox")
    assert (mailbox["name"], mailbox["uidvalidity"], mailbox["last_uid"]) == ("support", 7, 41)
    assert header(data)["tables"]["ticket"]["columns"]["assignee"] == "text?"  # type: ignore[index]


async def test_paging_in_small_pages_writes_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await fill(desk)
        whole = await exported(desk)
        monkeypatch.setattr(export_module, "PAGE", 2)
        monkeypatch.setattr(export_module, "BLOB_PAGE_BYTES", 10)  # every message a group of its own
        paged = await exported(desk)
    assert paged == whole


class OtherWriter:
    """Another client of the same database, outside ticketd: autocommit, no lock of ours."""

    def __init__(self, path: Path, database_url: str) -> None:
        self.path, self.url, self.connection = path, database_url, None

    async def __aenter__(self) -> "OtherWriter":
        if POSTGRES:
            import asyncpg

            self.connection = await asyncpg.connect(self.url.replace("postgres://", "postgresql://", 1))
        else:
            self.connection = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close() if POSTGRES else self.connection.close()

    async def execute(self, sql: str) -> None:
        await self.connection.execute(sql) if POSTGRES else self.connection.execute(sql)


async def test_the_export_reads_one_moment_while_another_process_writes(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await fill(desk)
        async with OtherWriter(tmp_path / "ticketd.db", cfg.database_url) as other:
            async with snapshot():
                before = await export_module.bulk.fetch("SELECT count(*) FROM ticket")
                await other.execute("UPDATE counter SET value = value + 1")  # not blocked: the export only reads
                await other.execute(
                    "INSERT INTO ticket (number, subject, status, priority, category, queue, mailbox, "
                    "requester, requester_name, fired_rules, tags, created_at, updated_at) VALUES "
                    "(99, 's', 'new', 'P3', '', '', '', 'x@example.org', '', '[]', '[]', "
                    "'2026-12-01 09:00:00+00:00', '2026-12-01 09:00:00+00:00')")
                assert await export_module.bulk.fetch("SELECT count(*) FROM ticket") == before
        assert await Ticket.filter(number=99).exists()


async def test_new_mail_after_an_import_gets_new_numbers_and_ids_never_used_before(tmp_path: Path) -> None:
    cfg = config(tmp_path / "a")
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await fill(desk)
        held = await InboundMessage.filter(status="quarantined").order_by("-id").first()
        assert held is not None and held == await InboundMessage.all().order_by("-id").first()  # the last id
        await held.delete()  # its id stays used: no new message may take it (logs name it)
        data = await exported(desk)
    # The highest id handed out: the deleted row's on SQLite; on PostgreSQL the end of the
    # sequence's last chunk (storage.bulk.Ids takes them 32 at a time), past the row's.
    handed_out = json.loads(data.splitlines()[-1])["end"]["last_ids"]["inbound_message"]
    assert handed_out > held.id if POSTGRES else handed_out == held.id
    cfg_b = config(tmp_path / "b")
    async with database(cfg_b.database_url):
        await load(io.BytesIO(data), "dump")
        desk_b = Desk(cfg_b)
        outcome = await desk_b.customer("After the migration.")
        assert outcome.new_ticket and outcome.ticket_number == 3
        newest = await InboundMessage.all().order_by("-id").first()
        assert newest is not None and newest.id == handed_out + 1
        assert await Ticket.all().count() == 3


async def test_import_refuses_a_database_that_is_not_empty_and_names_what_holds_rows(tmp_path: Path) -> None:
    data = await filled(tmp_path / "a")
    cfg = config(tmp_path / "b")
    async with database(cfg.database_url):
        await Desk(cfg).customer("Already here.")
        # The counter row holds SQLite's ticket numbers; PostgreSQL's come from a sequence (storage.numbers).
        with pytest.raises(LoadError, match=r"not empty \((counter, )?ticket, inbound_message, inbound_raw, article"):
            await load(io.BytesIO(data), "dump")
        assert await Ticket.all().count() == 1


def _broken(data: bytes, number: int, text: str) -> bytes:
    lines = data.splitlines()
    lines[number - 1] = text.encode()
    return b"\n".join(lines) + b"\n"


CASES = [
    (5, '{"table": "ticket", "row": ', "5: expected a JSON object, got invalid JSON"),
    (5, "[1, 2]", "5: expected a JSON object, got list"),
    (5, '{"table": "tikcet", "row": {}}', "5: expected a table of the header, got 'tikcet'"),
    (5, '{"rows": 1}', "5: expected {\"table\": NAME, \"row\": {...}} or the end line"),
    (1, '{"format": "something-else"}', "1: expected the header of a ticketd export"),
]


@pytest.mark.parametrize("number, text, message", CASES)
async def test_a_malformed_line_is_named_by_file_and_line_and_nothing_is_imported(
        tmp_path: Path, number: int, text: str, message: str) -> None:
    data = await filled(tmp_path / "a")
    async with database(url(tmp_path / "b.db")):
        with pytest.raises(LoadError) as caught:
            await load(io.BytesIO(_broken(data, number, text)), "dump.jsonl")
        assert str(caught.value).startswith(f"dump.jsonl:{message}"), caught.value
        assert await _rows_anywhere() == 0


async def test_a_value_that_does_not_fit_its_column_names_the_column(tmp_path: Path) -> None:
    data = await filled(tmp_path / "a")
    lines = data.splitlines()
    number = next(i for i, line in enumerate(lines, 1) if line.startswith(b'{"table":"ticket"'))
    row = json.loads(lines[number - 1])
    for column, value, expected in (("created_at", "yesterday", "ticket.created_at: expected an ISO 8601 time"),
                                    ("created_at", "2026-12-01T09:00:00", "ticket.created_at: expected an ISO 8601"),
                                    ("number", "7", "ticket.number: expected an integer, got '7'"),
                                    ("subject", None, "ticket.subject: expected a string, got null")):
        broken = dict(row, row=dict(row["row"], **{column: value}))
        async with database(url(tmp_path / f"{column}{value}.db")):
            with pytest.raises(LoadError, match=f"^dump:{number}: {expected}"):
                await load(io.BytesIO(_broken(data, number, json.dumps(broken))), "dump")
            assert await _rows_anywhere() == 0


async def test_a_cut_off_or_edited_export_is_refused_whole(tmp_path: Path) -> None:
    data = await filled(tmp_path / "a")
    lines = data.splitlines()
    async with database(url(tmp_path / "b.db")):
        with pytest.raises(LoadError, match=f"^dump:{len(lines) - 1}: the export ends without its end line"):
            await load(io.BytesIO(b"\n".join(lines[:-1])), "dump")
        dropped = [line for line in lines if not line.startswith(b'{"table":"due_step"')]
        with pytest.raises(LoadError, match=r"the end line counts \d+ due_step row\(s\), the file has 0"):
            await load(io.BytesIO(b"\n".join(dropped)), "dump")
        with pytest.raises(LoadError, match="expected nothing after the end line"):
            await load(io.BytesIO(data + lines[5] + b"\n"), "dump")
        assert await _rows_anywhere() == 0


async def test_a_row_the_database_refuses_is_named_by_its_line(tmp_path: Path) -> None:
    data = await filled(tmp_path / "a")
    lines = data.splitlines()
    number = next(i for i, line in enumerate(lines, 1) if line.startswith(b'{"table":"article"'))
    orphan = json.loads(lines[number - 1])
    orphan["row"]["ticket_id"] = 999  # no such ticket: the foreign key refuses it
    async with database(url(tmp_path / "b.db")):
        with pytest.raises(LoadError, match=f"^dump:{number}: the database refused this article row"):
            await load(io.BytesIO(_broken(data, number, json.dumps(orphan))), "dump")
        assert await _rows_anywhere() == 0


async def _rows_anywhere() -> int:
    total = 0
    for name in ORDER:
        [row] = await export_module.bulk.fetch(f'SELECT count(*) FROM "{name}"')
        total += int(row[0])
    return total


def test_the_command_line_round_trip_keeps_the_tickets(tmp_path: Path) -> None:
    import asyncio

    asyncio.run(_fill_on_disk(tmp_path / "a"))
    source, target = tmp_path / "a" / "ticketd.toml", config_file(tmp_path / "b")
    dump = tmp_path / "dump.jsonl"
    done = cli(source, "export", "--output", str(dump))
    assert done.returncode == 0, done.stderr.decode()
    assert dump.stat().st_mode & 0o777 == 0o600 and not (tmp_path / "dump.jsonl.tmp").exists()
    piped = cli(source, "export")
    assert piped.stdout.splitlines()[1:] == dump.read_bytes().splitlines()[1:]
    done = cli(target, "import", str(dump))
    assert done.returncode == 0, done.stderr.decode()
    assert cli_json(target, "tickets", "list", "--json") == cli_json(source, "tickets", "list", "--json")
    again = cli(target, "import", "-", stdin=dump.read_bytes())
    assert again.returncode == 1 and b"not empty" in again.stderr and b"Traceback" not in again.stderr


def test_the_command_line_names_the_line_of_a_broken_file_and_exits_1(tmp_path: Path) -> None:
    import asyncio

    asyncio.run(_fill_on_disk(tmp_path / "a"))
    dump = tmp_path / "dump.jsonl"
    assert cli(tmp_path / "a" / "ticketd.toml", "export", "-o", str(dump)).returncode == 0
    dump.write_bytes(_broken(dump.read_bytes(), 3, "not json"))
    done = cli(config_file(tmp_path / "b"), "import", str(dump))
    assert done.returncode == 1
    assert f"import refused, nothing imported: {dump}:3: expected a JSON object".encode() in done.stderr
    assert b"Traceback" not in done.stderr
    assert cli_json(config_file(tmp_path / "b"), "tickets", "list", "--json") == []


def config_file(directory: Path) -> Path:
    config(directory)
    return directory / "ticketd.toml"


async def _fill_on_disk(directory: Path) -> None:
    cfg = config(directory)
    async with database(cfg.database_url):
        await fill(Desk(cfg))
