"""Retention: the raw mail and attachment bytes of tickets closed long ago go, and nothing else does."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ticketd.daemon import quarantine, render, retention
from ticketd.daemon.config import ConfigError, load_config
from ticketd.daemon.pipeline import Processor
from ticketd.daemon.quarantine import QuarantineError
from devtools.smtpsink import SmtpSink
from ticketd.storage import queries
from ticketd.storage.db import database
from ticketd.storage.models import Article, Event, InboundSource, OutboundMessage
from tests.support.daemon import cli, cli_json
from tests.support.data import exported, rows_of, with_attachment
from tests.support.desk import START, Desk, config
from tests.support.outbox import outbox

DAYS = 30
MORE = f"""
[retention]
raw_after_days = {DAYS}

[lifecycle]
reopen_window = 8640000
"""


def desk_config(directory: Path, more: str = MORE) -> Any:
    directory.mkdir(parents=True, exist_ok=True)
    return config(directory, more)


async def three_tickets(desk: Desk, sink: SmtpSink) -> int:
    """#1 closed at START, #2 closed 25 days later, #3 open; each with an attachment; a held message.

    Returns the id of #1's mail still waiting to be sent (kept: it is yet to go out).
    """
    for n in (1, 2, 3):
        await desk.mail(with_attachment(f"<t{n}@example.org>", f"Problem {n}.", filename=f"shot{n}.png"))
    await desk.mail(b"")  # unreadable: quarantined, no ticket
    desk.clock.now += timedelta(minutes=5)
    await desk.agent(1, "#status closed\nFixed it.")
    sender = outbox(sink.port)
    try:
        await sender.deliver_due(ignore_schedule=True)  # the acknowledgements, notices and the reply go out
    finally:
        await sender.close()
    waiting = await OutboundMessage.filter(ticket__number=1).order_by("-id").first()
    assert waiting is not None and waiting.status == "sent"
    await OutboundMessage.filter(id=waiting.id).update(status="pending")  # as if its delivery were deferred
    desk.clock.now = START + timedelta(days=25)
    await desk.agent(2, "#status closed\nFixed that too.")
    return waiting.id


def by_key(data: bytes) -> dict[tuple[str, Any], dict[str, Any]]:
    """Each row of an export under (table, primary key)."""
    keys = {name: spec["key"] for name, spec in json.loads(data.splitlines()[0])["tables"].items()}
    return {(r["table"], r["row"][keys[r["table"]]]): r["row"] for r in rows_of(data)}


async def test_only_the_bytes_of_tickets_closed_longer_ago_go(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    cfg = desk_config(tmp_path)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        waiting = await three_tickets(desk, fresh_sink)
        before = by_key(await exported(desk))
        removed = await retention.prune(DAYS, START + timedelta(days=DAYS, hours=1))
        after = by_key(await exported(desk))
        mails = {a.inbound_id for a in await Article.filter(ticket__number=1, inbound_id__not_isnull=True)}
        attachments = {k[1] for k, row in before.items() if k[0] == "attachment" and row["filename"] == "shot1.png"}
        sent = {k[1] for k, row in before.items() if k[0] == "outbound_message" and row["ticket_id"] == 1} - {waiting}
    assert len(mails) == 2 and len(attachments) == 1 and len(sent) >= 2  # the customer's and the agent's mail
    assert removed.as_dict() == {"tickets": 1, "raw_messages": 2, "attachments": 1, "outbound": len(sent)}
    gone = set(before) - set(after)
    assert gone == {("inbound_raw", i) for i in mails} | {("attachment_content", i) for i in attachments}
    [new] = set(after) - set(before)
    assert new[0] == "event" and after[new]["ticket_id"] == 1 and after[new]["what"] == "raw_removed"
    assert after[new]["detail"] | {"reason": ""} == {"reason": "", "raw_messages": 2, "attachments": 1,
                                                     "outbound": len(sent)}
    changed = {k for k in set(before) & set(after) if before[k] != after[k]}
    assert changed == {("outbound_message", i) for i in sent}
    assert all(after[k] == dict(before[k], raw_bytes="") for k in changed)


async def test_a_stripped_ticket_is_left_alone_until_it_is_closed_again(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    cfg = desk_config(tmp_path)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await three_tickets(desk, fresh_sink)
        now = START + timedelta(days=DAYS, hours=1)
        assert (await retention.prune(DAYS, now)).tickets == 1
        assert (await retention.prune(DAYS, now + timedelta(days=1))).tickets == 0
        assert await Event.filter(what="raw_removed").count() == 1
        desk.clock.now = START + timedelta(days=40)
        await desk.customer("It broke again.", 1)  # within the reopen window: #1 reopens
        assert (await desk.ticket(1))["status"] == "open"
        await desk.agent(1, "#status closed\nFixed again.")
        assert (await retention.prune(DAYS, START + timedelta(days=60))).tickets == 1  # only #2, closed on day 25
        again = await retention.prune(DAYS, START + timedelta(days=71))
    assert again.as_dict() == {"tickets": 1, "raw_messages": 2, "attachments": 0, "outbound": 0}


async def test_show_commands_say_what_retention_removed(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    cfg = desk_config(tmp_path)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await three_tickets(desk, fresh_sink)
        await retention.prune(DAYS, START + timedelta(days=DAYS, hours=1))
        pruned = await Article.filter(ticket__number=1, direction="in").order_by("id").first()
        kept = await Article.filter(ticket__number=3).first()
        assert pruned is not None and kept is not None
        one, three = await queries.ticket_detail(1), await queries.ticket_detail(3)
    assert one is not None and three is not None
    assert [a["content_removed"] for a in one["articles"][0]["attachments"]] == [True]
    assert [a["content_removed"] for a in three["articles"][0]["attachments"]] == [False]
    text = render.ticket_detail(one)
    assert "shot1.png (" in text and "bytes, content removed)" in text
    assert "raw mail and attachment contents removed" in text
    assert "Fixed it." in text  # the articles' text stays
    shown = cli_json(cfg.path, "inbound", "show", str(pruned.inbound_id), "--json")
    assert shown["raw_removed"] is True and shown["headers"] == {} and shown["ticket"] == 1
    assert cli_json(cfg.path, "inbound", "show", str(kept.inbound_id), "--json")["headers"]["Subject"] == "Help"
    human = cli(cfg.path, "inbound", "show", str(pruned.inbound_id))
    assert human.returncode == 0 and b"raw message: removed by retention" in human.stdout


async def test_a_held_message_without_its_bytes_is_not_released_to_be_held_again(tmp_path: Path) -> None:
    cfg = desk_config(tmp_path)
    async with database(cfg.database_url):
        held = (await Desk(cfg).mail(b"")).inbound_id
        await InboundSource.filter(inbound_id=held).delete()  # retention never does this; a hand-made gap
    with pytest.raises(QuarantineError, match=f"message {held} has no stored raw bytes any more"):
        await quarantine.release(cfg, held)


async def test_the_daemon_prunes_on_its_own_schedule(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    cfg = desk_config(tmp_path)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await three_tickets(desk, fresh_sink)
        processor = Processor(cfg, clock=lambda: START + timedelta(days=DAYS, hours=1))
        stop = asyncio.Event()
        task = asyncio.create_task(retention.run_forever(processor, stop, interval=0.05, first_after=0.01))
        try:
            for _ in range(200):
                if await Event.filter(what="raw_removed").exists():
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        assert await Event.filter(what="raw_removed", ticket__number=1).count() == 1  # once, however many passes


def test_db_prune_on_the_command_line(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    cfg = desk_config(tmp_path)

    async def setup() -> None:
        async with database(cfg.database_url):
            await three_tickets(Desk(cfg), fresh_sink)

    asyncio.run(setup())
    early = cli_json(cfg.path, "db", "prune", "--now", "2026-12-20T00:00:00+01:00", "--json")
    assert early == {"tickets": 0, "raw_messages": 0, "attachments": 0, "outbound": 0}
    late = cli(cfg.path, "db", "prune", "--now", "2027-01-01T00:00:00Z")
    assert late.returncode == 0, late.stderr.decode()
    assert late.stdout.startswith(b"1 ticket(s) closed more than 30 day(s) ago: 2 raw message(s), 1 attachment(s)")


def test_db_prune_without_a_retention_setting_says_so(tmp_path: Path) -> None:
    cfg = desk_config(tmp_path, more="")
    done = cli(cfg.path, "db", "prune")
    assert done.returncode == 1 and b"retention.raw_after_days is not set" in done.stderr


@pytest.mark.parametrize("table, message", [
    ("[retention]\nraw_after_days = -1", "retention.raw_after_days: expected a number of days"),
    ('[retention]\nraw_after_days = "30"', "retention.raw_after_days: expected an integer, got '30'"),
    ("[retention]\nraw_after = 30", "retention.raw_after: unknown key"),
])
def test_a_bad_retention_setting_names_file_and_key(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{tmp_path}/ticketd.toml: {message}"):
        desk_config(tmp_path, more=table)


def test_retention_is_off_unless_set(tmp_path: Path) -> None:
    assert desk_config(tmp_path, more="").raw_after_days == 0
    assert load_config(desk_config(tmp_path).path).raw_after_days == DAYS
