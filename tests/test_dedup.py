"""A duplicate is the same message, not merely the same Message-ID; every inbound row's fate is visible."""

from __future__ import annotations

from pathlib import Path

from ticketd.daemon.config import Config, load_config
from ticketd.daemon.dedup import Earlier, same_message
from ticketd.daemon.pipeline import Processor
from devtools.smtpsink import SmtpSink
from ticketd.storage import intake
from ticketd.storage.db import database
from ticketd.storage.models import Event, InboundMessage, InboundStatus
from tests.support.daemon import cli, cli_json, write_config
from tests.support.mail import parsed, simple

REAL = simple("Ann <ann@example.org>", "Printer on fire", "<real-1@example.org>", body="It is on fire.")
# A stranger who learnt (or guessed) the ID sends first.
FORGED = simple("Mallory <mal@evil.test>", "Nothing to see", "<real-1@example.org>", body="Ignore this.")


def _config(tmp_path: Path, port: int) -> Config:
    return load_config(write_config(tmp_path, 10143, port, [("support", "support@example.test")]))


async def _pipe(config: Config, *raws: bytes) -> list[InboundMessage]:
    """Store ``raws`` as one batch and process it in one transaction (one commit group)."""
    rows = [await intake.store_one(intake.Incoming(raw=raw, size=len(raw)), config.max_message_bytes)
            for raw in raws]
    await Processor(config).process(rows, None)
    return [await InboundMessage.get(id=r.id) for r in rows]


async def test_a_stranger_with_the_same_message_id_does_not_silence_the_real_mail(
        tmp_path: Path, fresh_sink: SmtpSink) -> None:
    config = _config(tmp_path, fresh_sink.port)
    async with database(config.database_url):
        [forged] = await _pipe(config, FORGED)
        [real] = await _pipe(config, REAL)
        assert forged.status == real.status == InboundStatus.PROCESSED
        assert forged.ticket_id != real.ticket_id
        assert f"also on inbound {forged.id}" in real.reason
        [event] = await Event.filter(ticket_id=real.ticket_id, what="message_id_collision")
        assert event.detail["also_on"] == [forged.id]


async def test_the_same_bytes_or_the_same_mail_via_another_mailbox_is_a_duplicate(
        tmp_path: Path, fresh_sink: SmtpSink) -> None:
    config = _config(tmp_path, fresh_sink.port)
    # The copy delivered to a second address differs only in its trace headers.
    other_copy = b"Delivered-To: sales@example.test\r\nReceived: from mx2 by mx\r\n" + REAL
    async with database(config.database_url):
        [first] = await _pipe(config, REAL)
        [again, copy] = await _pipe(config, REAL, other_copy)
        assert (again.status, again.duplicate_of_id, again.ticket_id) == (InboundStatus.DUPLICATE, first.id,
                                                                           first.ticket_id)
        assert "the same bytes" in again.reason
        assert copy.status == InboundStatus.DUPLICATE and "the same Message-ID, sender and body" in copy.reason


async def test_within_one_commit_group_the_collision_is_told_apart_too(tmp_path: Path,
                                                                      fresh_sink: SmtpSink) -> None:
    config = _config(tmp_path, fresh_sink.port)
    async with database(config.database_url):
        forged, real, repeat = await _pipe(config, FORGED, REAL, REAL)
        assert forged.status == real.status == InboundStatus.PROCESSED and forged.ticket_id != real.ticket_id
        assert repeat.status == InboundStatus.DUPLICATE and repeat.duplicate_of_id == real.id


def test_same_message_compares_bytes_then_id_sender_and_body() -> None:
    msg = parsed("""\
        From: Ann <ann@example.org>
        Message-ID: <m@example.org>

        Body.
        """)
    row = InboundMessage(id=9, sha256="b" * 64, message_id="<m@example.org>")
    same_bytes = Earlier(1, 1, "b" * 64, "<other@example.org>", "", "")
    same_mail = Earlier(2, 2, "c" * 64, "<m@example.org>", "Ann <ann@example.org>", msg.text)
    other_body = Earlier(3, 3, "d" * 64, "<m@example.org>", "Ann <ann@example.org>", "Something else.")
    other_sender = Earlier(4, 4, "e" * 64, "<m@example.org>", "Eve <eve@example.org>", msg.text)
    assert same_message(row, msg, [same_bytes])[0] is same_bytes
    assert same_message(row, msg, [other_body, same_mail])[0] is same_mail
    assert same_message(row, msg, [other_body, other_sender]) == (None, "")
    assert same_message(row, msg, [Earlier(9, 1, "b" * 64, "", "", "")]) == (None, "")  # never itself


def test_inbound_list_and_show_tell_every_rows_fate(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    config = write_config(tmp_path, 10143, fresh_sink.port, [("support", "support@example.test")],
                          max_bytes=3000)
    for raw in (REAL, REAL, simple("big@example.org", "Big", "<big@example.org>", body="x" * 4000)):
        assert cli(config, "ingest", stdin=raw).returncode == 0
    rows = cli_json(config, "inbound", "list", "--json")
    assert [r["status"] for r in rows] == ["quarantined", "duplicate", "processed"]
    for row in rows:
        assert {"mailbox", "uid", "message_id", "status", "reason", "ticket"} <= set(row)
    big, dup, first = rows
    assert dup["ticket"] == first["ticket"] == 1 and dup["duplicate_of"] == first["id"]
    assert "limits.max_message_bytes" in big["reason"] and big["ticket"] is None
    [only] = cli_json(config, "inbound", "list", "--status", "duplicate", "--json")
    assert only["id"] == dup["id"]
    shown = cli_json(config, "inbound", "show", str(dup["id"]), "--json")
    assert shown["headers"]["Subject"] == "Printer on fire" and "the same bytes" in shown["reason"]
    human = cli(config, "inbound", "show", str(dup["id"]))
    assert human.returncode == 0 and b"duplicate of inbound" in human.stdout
    assert cli(config, "inbound", "show", "999").returncode == 1
