"""Tests for bench/history.py and bench/copies.py: the --history pre-fill, on a real database (database())."""

from __future__ import annotations

import dataclasses
import hashlib
import types
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.generate import generate
from bench.copies import Template, copy_message_id, copy_raw, history_id, templates
from bench.history import fill
from bench.servers import USER, write_imap_config
from ticketd.daemon.config import Config, load_config
from ticketd.daemon.dedup import load_earlier
from ticketd.daemon.threader import Threads
from ticketd.storage.db import database
from ticketd.storage.intake import header_message_id
from ticketd.storage.models import (Attachment, AttachmentContent, Counter, Event, InboundMessage, InboundSource, InboundStatus,
                            Mailbox, OutboundMessage, OutboundStatus, Participant, Ticket)
from tests.support import backend

SEED = 1
UIDVALIDITY = 1_700_000_000


@pytest.fixture
def config(tmp_path: Path) -> Config:
    fake = types.SimpleNamespace(host="127.0.0.1", port=1)
    return load_config(write_imap_config(tmp_path / "ticketd.toml", backend.url(tmp_path / "ticketd.db"), fake, fake))


@pytest.fixture
async def pool(config: Config) -> list[Template]:
    return await templates(config, SEED, 40)


@pytest.fixture
async def db(config: Config) -> AsyncIterator[None]:
    async with database(config.database_url):
        yield


async def _raw_of(row: InboundMessage) -> bytes:
    return bytes((await InboundSource.get(inbound_id=row.id)).content)


def test_copies_rename_every_message_id_and_a_message_without_one_still_differs(pool: list[Template]) -> None:
    reply = next(t for t in pool if t.is_reply)
    copy = copy_raw(reply, 7)
    for message_id in reply.ids:
        assert message_id.encode() not in copy
        assert history_id(message_id, 7).encode() in copy
    assert history_id("<abc@x.example>", 3) == "<h3.abc@x.example>"
    # As the odd-MIME no-message-id case: only a trace header tells the copies apart.
    bare = dataclasses.replace(pool[0], parsed=dataclasses.replace(pool[0].parsed, message_id=""), ids=())
    assert copy_raw(bare, 1) != copy_raw(bare, 2) != bare.raw


def test_the_message_id_of_a_copy_is_the_one_intake_would_read(pool: list[Template]) -> None:
    for template in pool:
        assert copy_message_id(template, 5) == header_message_id(copy_raw(template, 5))


async def test_history_is_processed_mail_of_the_same_customers_with_distinct_keys(
        config: Config, pool: list[Template], db: None) -> None:
    report = await fill(config, 90, SEED, UIDVALIDITY, pool=pool)
    rows = await InboundMessage.all().order_by("id")
    assert report.messages == len(rows) == 90
    assert {r.status for r in rows} == {InboundStatus.PROCESSED}
    assert all(r.server_done and r.ticket_id and r.uidvalidity == UIDVALIDITY for r in rows)
    assert [r.uid for r in rows] == list(range(1, 91))
    ids = [r.message_id for r in rows if r.message_id]
    assert len(set(ids)) == len(ids) >= 85
    assert len({r.sha256 for r in rows}) == 90
    for row in rows[:5]:
        raw = await _raw_of(row)
        assert hashlib.sha256(raw).hexdigest() == row.sha256 and len(raw) == row.size
    customers = {m.sender.lower() for m in generate(200, SEED, to=USER)}
    tickets = await Ticket.all().order_by("number")
    assert {t.requester for t in tickets} <= customers
    assert [t.number for t in tickets] == list(range(1, report.tickets + 1))
    assert (await Counter.get(name="ticket")).value == report.tickets
    box = await Mailbox.get(name="support")
    assert (box.uidvalidity, box.last_uid) == (UIDVALIDITY, 90)
    assert await Event.all().count() == 90
    assert await Participant.all().count() > 0  # the templates given a Cc
    attachments = await Attachment.all()
    assert attachments and await AttachmentContent.all().count() == len(attachments)
    content = await AttachmentContent.get(attachment_id=attachments[0].id)
    assert hashlib.sha256(bytes(content.content)).hexdigest() == attachments[0].sha256


async def test_every_new_ticket_has_its_acknowledgement_sent_to_the_requester(
        config: Config, pool: list[Template], db: None) -> None:
    await fill(config, 60, SEED, UIDVALIDITY, pool=pool)
    for ticket in await Ticket.all():
        sent = await OutboundMessage.filter(ticket_id=ticket.id)
        assert [o.status for o in sent] == [OutboundStatus.SENT]
        assert sent[0].recipient == ticket.requester and sent[0].automatic
        assert sent[0].message_id.startswith(f"<ticketd.{ticket.number}.")
        raw = bytes(sent[0].raw_bytes)
        assert f"[#{ticket.number}]".encode() in raw and sent[0].message_id.encode() in raw
    assert len({o.message_id for o in await OutboundMessage.all()}) == await OutboundMessage.all().count()


async def test_the_daemons_lookups_find_the_history(config: Config, pool: list[Template], db: None) -> None:
    await fill(config, 60, SEED, UIDVALIDITY, pool=pool)
    old = await InboundMessage.filter(message_id__not="").order_by("id").first()
    assert old is not None
    found = await load_earlier([InboundMessage(message_id=old.message_id, sha256="0" * 64)])
    assert [e.id for e in found[old.message_id]] == [old.id]
    template = next(t for t in pool if not t.is_reply)
    reply = dataclasses.replace(template.parsed, message_id="<new@x.example>", in_reply_to=(old.message_id,),
                                references=(old.message_id,))
    threads = Threads()
    await threads.load([reply])
    match = threads.find(reply)
    assert match is not None and match.ticket.id == old.ticket_id and match.how == "references"


async def test_a_second_fill_continues_the_numbers_and_repeats_no_key(
        config: Config, pool: list[Template], db: None) -> None:
    first = await fill(config, 50, SEED, UIDVALIDITY, pool=pool)
    second = await fill(config, 50, SEED, UIDVALIDITY, first_uid=51, pool=pool)
    assert [t.number for t in await Ticket.all().order_by("number")] == \
        list(range(1, first.tickets + second.tickets + 1))
    rows = await InboundMessage.all()
    assert len({r.sha256 for r in rows}) == len(rows) == 100
    assert (await Mailbox.get(name="support")).last_uid == 100
