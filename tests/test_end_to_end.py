"""The spine on real servers: Dovecot in, tickets stored, acknowledgements out over SMTP."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from devtools.dovecot import Dovecot, MailUser
from devtools.smtpsink import SmtpSink
from ticketd.daemon.config import load_config
from ticketd.daemon.fetcher import MailboxWorker
from ticketd.daemon.imap import ImapSession
from tests.support.daemon import eventually, run_once, running, ticket, tickets, write_config
from tests.support.mail import simple


def config_for(tmp_path: Path, dovecot: Dovecot, user: MailUser, sink: SmtpSink, **kw: str) -> Path:
    return write_config(tmp_path, dovecot.port, sink.port, [("support", user.address)], **kw)


def tags(sink: SmtpSink) -> list[int]:
    return [int(n) for m in sink.messages for n in re.findall(r"\[#(\d+)\]", str(m.message["Subject"]))]


async def test_new_mail_opens_a_ticket_and_sends_one_acknowledgement_with_its_number(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    dovecot.deliver(fresh_user.address, simple("Ann <ann@example.org>", "Printer on fire", "<a1@example.org>"))
    config = config_for(tmp_path, dovecot, fresh_user, fresh_sink)

    assert await run_once(config) == 0

    [t] = await tickets(config)
    assert (t["number"], t["subject"], t["status"], t["requester"]) == (1, "Printer on fire", "new", "ann@example.org")
    [ack] = fresh_sink.messages
    assert list(ack.rcpt_tos) == ["ann@example.org"]
    assert ack.message["Subject"] == "Re: Printer on fire [#1]"
    assert ack.message["In-Reply-To"] == "<a1@example.org>"
    assert ack.message["Auto-Submitted"] == "auto-replied"
    [(_, flags, _)] = dovecot.messages(fresh_user.address)
    assert "\\Seen" in flags


async def test_reply_with_the_subject_tag_joins_the_ticket_without_a_second_ack(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    config = config_for(tmp_path, dovecot, fresh_user, fresh_sink)
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "VPN broken", "<v1@example.org>"))
    await run_once(config)
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "Re: VPN broken [#1]", "<v2@example.org>",
                                               body="Still broken."))
    await run_once(config)

    assert [t["article_count"] for t in await tickets(config)] == [2]
    assert len(fresh_sink.messages) == 1


async def test_reply_by_references_only_joins_the_ticket(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    config = config_for(tmp_path, dovecot, fresh_user, fresh_sink)
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "Invoice wrong", "<i1@example.org>"))
    await run_once(config)
    ack_id = str(fresh_sink.messages[0].message["Message-ID"])
    # A colleague answers our acknowledgement with a new subject and no tag: References alone.
    dovecot.deliver(fresh_user.address, simple("bob@example.org", "something else entirely", "<i2@example.org>",
                                               extra=f"In-Reply-To: {ack_id}\nReferences: <i1@example.org> {ack_id}"))
    await run_once(config)

    [t] = await tickets(config)
    assert t["article_count"] == 2
    detail = await ticket(config, t["number"])
    assert [a["message_id"] for a in detail["articles"]] == ["<i1@example.org>", "<i2@example.org>"]


async def test_a_stranger_quoting_the_tag_gets_a_new_ticket(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    config = config_for(tmp_path, dovecot, fresh_user, fresh_sink)
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "Account locked", "<s1@example.org>"))
    dovecot.deliver(fresh_user.address, simple("mallory@evil.example", "Re: Account locked [#1]", "<s2@example.org>",
                                               extra="Reply-To: ann@example.org"))
    await run_once(config)

    assert sorted(t["article_count"] for t in await tickets(config)) == [1, 1]
    assert sorted(tags(fresh_sink)) == [1, 2]


async def test_a_cc_participant_may_add_by_subject_tag(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    config = config_for(tmp_path, dovecot, fresh_user, fresh_sink)
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "Laptop", "<c1@example.org>",
                                               extra="Cc: Carl <carl@example.org>"))
    await run_once(config)
    dovecot.deliver(fresh_user.address, simple("carl@example.org", "Re: Laptop [#1]", "<c2@example.org>"))
    await run_once(config)
    assert [t["article_count"] for t in await tickets(config)] == [2]


class CrashAfterCommit(ImapSession):
    """Dies like kill -9 would: the ticket is committed, the server never hears of it."""

    async def mark_seen(self, uids: list[int]) -> None:
        raise SystemExit("simulated crash between commit and flag")


async def test_crash_between_commit_and_flag_then_restart_makes_no_duplicate(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    config_path = config_for(tmp_path, dovecot, fresh_user, fresh_sink)
    for i in range(3):
        dovecot.deliver(fresh_user.address, simple(f"c{i}@example.org", f"Q{i}", f"<k{i}@example.org>"))
    config = load_config(config_path)
    from ticketd.daemon.pipeline import Processor
    from ticketd.daemon.responders import build_responders
    from ticketd.storage.db import database
    async with database(config.database_url):
        worker = MailboxWorker(config.mailboxes[0], Processor(config, build_responders(config)),
                               config.max_message_bytes, session_factory=lambda box: CrashAfterCommit(box.imap))
        session = CrashAfterCommit(config.mailboxes[0].imap)
        await session.open()
        try:
            await worker.sync(session)
        except SystemExit:
            pass
        finally:
            await session.close()
    assert all("\\Seen" not in flags for _, flags, _ in dovecot.messages(fresh_user.address))

    assert await run_once(config_path) == 0

    assert len(await tickets(config_path)) == 3
    assert sorted(tags(fresh_sink)) == [1, 2, 3]
    assert all("\\Seen" in flags for _, flags, _ in dovecot.messages(fresh_user.address))


async def test_mail_read_by_a_person_in_a_mail_client_is_still_fetched(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "Read already", "<seen1@example.org>"))
    with dovecot.imap(fresh_user.address) as imap:
        imap.select("INBOX")
        imap.store("1", "+FLAGS", "\\Seen")
    config = config_for(tmp_path, dovecot, fresh_user, fresh_sink)
    await run_once(config)
    assert len(await tickets(config)) == 1


async def test_the_same_message_id_in_two_mailboxes_makes_one_ticket(
        tmp_path: Path, dovecot: Dovecot, fresh_sink: SmtpSink) -> None:
    first, second = dovecot.add_user(), dovecot.add_user()
    raw = simple("ann@example.org", "Sent to both", "<both@example.org>", to=f"{first.address}, {second.address}")
    dovecot.deliver(first.address, raw)
    dovecot.deliver(second.address, b"Delivered-To: " + second.address.encode() + b"\r\n" + raw)
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("one", first.address), ("two", second.address)])

    assert await run_once(config) == 0

    assert len(await tickets(config)) == 1
    assert len(fresh_sink.messages) == 1
    for user in (first, second):
        assert all("\\Seen" in flags for _, flags, _ in dovecot.messages(user.address))


async def test_a_uidvalidity_reset_creates_no_second_ticket(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    config = config_for(tmp_path, dovecot, fresh_user, fresh_sink)
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "One", "<u1@example.org>"))
    dovecot.deliver(fresh_user.address, b"From: bob@example.org\r\nSubject: no id\r\n\r\nno Message-ID here\r\n")
    await run_once(config)
    dovecot.reset_uidvalidity(fresh_user.address)
    dovecot.deliver(fresh_user.address, simple("carl@example.org", "Three", "<u3@example.org>"))

    assert await run_once(config) == 0

    assert len(await tickets(config)) == 3
    assert len(fresh_sink.messages) == 3


async def test_after_processing_move_puts_the_mail_in_the_folder(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "Move me", "<mv@example.org>"))
    config = config_for(tmp_path, dovecot, fresh_user, fresh_sink, after="move:Processed")
    assert await run_once(config) == 0
    assert dovecot.messages(fresh_user.address) == []
    assert len(dovecot.messages(fresh_user.address, "Processed")) == 1


async def test_after_processing_delete_expunges_only_processed_mail(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "Delete me", "<del@example.org>"))
    config = config_for(tmp_path, dovecot, fresh_user, fresh_sink, after="delete")
    assert await run_once(config) == 0
    assert dovecot.messages(fresh_user.address) == []
    assert len(await tickets(config)) == 1


async def test_an_oversized_message_is_quarantined_with_its_reason_and_left_on_the_server(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "Huge", "<big@example.org>", body="x" * 200_000))
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)],
                          after="delete", max_bytes=100_000)
    assert await run_once(config) == 0

    assert await tickets(config) == []
    assert fresh_sink.messages == []
    from tests.support.daemon import cli_json
    [held] = cli_json(config, "quarantine", "list", "--json")
    assert held["message_id"] == "<big@example.org>" and "too large" in held["reason"]
    [(_, flags, _)] = dovecot.messages(fresh_user.address)  # never deleted: we hold only its header
    assert "\\Seen" in flags


async def test_dovecot_restarted_mid_run_reconnects_and_loses_nothing(
        tmp_path: Path, dovecot_factory, fresh_sink: SmtpSink) -> None:  # type: ignore[no-untyped-def]
    server = dovecot_factory()
    user = server.add_user()
    config = write_config(tmp_path, server.port, fresh_sink.port, [("support", user.address)])
    server.deliver(user.address, simple("a@example.org", "before", "<r1@example.org>"))
    async with running(config):
        assert await eventually(lambda: _count(config, 1))
        await asyncio.to_thread(server.restart)
        server.deliver(user.address, simple("b@example.org", "after", "<r2@example.org>"))
        server.deliver(user.address, simple("c@example.org", "after 2", "<r3@example.org>"))
        assert await eventually(lambda: _count(config, 3), timeout=30)
        assert await asyncio.to_thread(fresh_sink.wait_for, 3, 20)
    assert sorted(tags(fresh_sink)) == [1, 2, 3]
    assert all("\\Seen" in flags for _, flags, _ in server.messages(user.address))


async def test_idle_picks_up_new_mail_without_waiting_for_the_poll_interval(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    config = config_for(tmp_path, dovecot, fresh_user, fresh_sink)  # poll_interval = 600
    async with running(config):
        await asyncio.sleep(1.0)  # let it reach IDLE
        dovecot.deliver(fresh_user.address, simple("ann@example.org", "while idle", "<idle@example.org>"))
        assert await eventually(lambda: _count(config, 1), timeout=15)


async def test_smtp_down_then_up_delivers_the_acknowledgement_exactly_once(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser) -> None:
    with SmtpSink() as sink:
        sink.down()
        config = config_for(tmp_path, dovecot, fresh_user, sink)
        dovecot.deliver(fresh_user.address, simple("ann@example.org", "Mail server down", "<down@example.org>"))
        async with running(config):
            assert await eventually(lambda: _count(config, 1))
            await asyncio.sleep(1.5)  # several retries fail while it is down
            assert sink.messages == []
            sink.up()
            assert await asyncio.to_thread(sink.wait_for, 1, 20)
            await asyncio.sleep(1.5)  # no second copy follows
        assert len(sink.messages) == 1


async def test_a_4xx_answer_is_retried_and_a_5xx_answer_gives_up_with_the_reason(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser) -> None:
    from devtools.smtpsink import Mode
    with SmtpSink() as sink:
        config = config_for(tmp_path, dovecot, fresh_user, sink)
        sink.fail_next(1, Mode.TEMPFAIL)
        dovecot.deliver(fresh_user.address, simple("ann@example.org", "temp", "<t4@example.org>"))
        assert await run_once(config) == 0  # run --once retries what is due before it exits
        assert len(sink.messages) == 1
        sink.fail_next(1, Mode.PERMFAIL)
        dovecot.deliver(fresh_user.address, simple("bob@example.org", "perm", "<t5@example.org>"))
        assert await run_once(config) == 1
        assert len(sink.messages) == 1
    from ticketd.storage.db import database
    from ticketd.storage.models import OutboundMessage
    async with database(load_config(config).database_url):
        failed = await OutboundMessage.get(status="failed")
    assert failed.last_error.startswith("5")


async def _count(config: Path, n: int) -> bool:
    return len(await tickets(config)) >= n


async def test_a_database_locked_past_its_timeout_leaves_imap_mail_for_the_next_pass(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    from tests.test_ingest import _hold_write_lock

    config = config_for(tmp_path, dovecot, fresh_user, fresh_sink)
    config.write_text(config.read_text().replace("\n[database]\n", "\n[database]\nbusy_timeout = 0.3\n", 1))
    assert await run_once(config) == 0  # creates the tables
    dovecot.deliver(fresh_user.address, simple("lee@example.org", "Locked out", "<lock1@example.org>"))
    holder = await asyncio.to_thread(_hold_write_lock, tmp_path / "ticketd.db", 3.0)
    assert await run_once(config) == 1  # a temporary failure: said by the exit code, nothing held
    await asyncio.to_thread(holder.join)
    [(_, flags, _)] = dovecot.messages(fresh_user.address)
    assert "\\Seen" not in flags  # never told the server it was done
    assert await run_once(config) == 0
    [t] = await tickets(config)
    assert t["subject"] == "Locked out" and len(fresh_sink.messages) == 1
