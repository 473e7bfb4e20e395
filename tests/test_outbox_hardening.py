"""The outbox sender against hostile recipients and refusing or hanging servers (real, on loopback)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import count
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ticketd.daemon.config import SmtpConfig
from ticketd.daemon.outbox import EnvelopeError, OutboxSender, plan_envelope
from devtools.hangserver import HangServer
from devtools.smtpsink import SmtpSink
from ticketd.storage.db import database
from ticketd.storage.models import OutboundMessage, OutboundStatus
from tests.support import backend
from tests.support.daemon import eventually

_numbers = count(1)
RAW = b"From: support@example.test\r\nTo: x@example.test\r\nSubject: Ticket [#1]\r\n\r\nHello.\r\n"
START = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


class Clock:
    """The sender's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def smtp_config(port: int, timeout: float = 5.0, give_up_after: float = 86400.0) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=port, security="none", username=None, password=None,
                      verify_tls=False, ca_file=None, timeout=timeout, from_address="support@example.test",
                      envelope_from="support@example.test", retry_base=30.0, retry_max=600.0,
                      give_up_after=give_up_after)



@pytest.fixture
def fresh_sink(either_sink: SmtpSink) -> SmtpSink:
    """Every test here runs against a server with PIPELINING and one without."""
    return either_sink


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[None]:
    async with database(backend.url(tmp_path / "outbox.db")):
        yield


@pytest.fixture
def hang() -> Iterator[Callable[[int], HangServer]]:
    """Start hanging servers (see HangServer for `replies`); all are stopped afterwards."""
    servers: list[HangServer] = []

    def start(replies: int = 0) -> HangServer:
        server = HangServer(replies)
        servers.append(server)
        server.start()
        return server
    yield start
    for server in servers:
        server.stop()


async def row(to: str, created: datetime = START) -> OutboundMessage:
    return await OutboundMessage.create(
        kind="ack", message_id=f"<t{next(_numbers)}@example.test>", mail_from="support@example.test",
        recipients=[to], recipient=to.lower(), raw_bytes=RAW, next_try_at=created, created_at=created)


async def fresh(message: OutboundMessage) -> OutboundMessage:
    return await OutboundMessage.get(id=message.id)


# -- 4. a non-ASCII recipient breaks nobody else's mail -------------------------------------


def test_plan_envelope_uses_smtputf8_only_when_needed_and_offered() -> None:
    assert plan_envelope("a@example.test", ["b@example.test"], True).utf8 is False
    utf8 = plan_envelope("a@example.test", ["jörg@exämple.test"], True)
    assert (utf8.utf8, utf8.options, utf8.encoding) == (True, ["SMTPUTF8"], "utf-8")
    assert plan_envelope("a@example.test", ["joerg@exämple.test"], False).recipients == ("joerg@xn--exmple-cua.test",)
    with pytest.raises(EnvelopeError, match="recipient jörg@exämple.test needs SMTPUTF8") as refused:
        plan_envelope("a@example.test", ["jörg@exämple.test"], False)
    assert refused.value.role == "recipient"
    with pytest.raises(EnvelopeError) as sender:
        plan_envelope("süpport@example.test", ["b@example.test"], False)
    assert sender.value.role == "sender"


async def test_with_smtputf8_a_non_ascii_recipient_is_delivered_and_so_is_the_next_row(
        db: None, fresh_sink: SmtpSink) -> None:
    hostile, innocent = await row("jörg@exämple.test"), await row("bob@example.test")
    sender = OutboxSender(smtp_config(fresh_sink.port), clock=Clock(), lanes=1)

    report = await sender.deliver_due()
    await sender.close()

    assert (report.sent, report.failed) == (2, 0)
    first, second = fresh_sink.messages
    assert first.rcpt_tos == ("jörg@exämple.test",) and "SMTPUTF8" in first.mail_options
    assert second.rcpt_tos == ("bob@example.test",) and "SMTPUTF8" not in second.mail_options
    assert (await fresh(hostile)).status == (await fresh(innocent)).status == OutboundStatus.SENT


async def test_without_smtputf8_a_local_part_fails_its_row_a_domain_goes_as_punycode_the_next_row_is_sent(
        db: None) -> None:
    with SmtpSink(smtputf8=False) as sink:
        hostile, idn, innocent = (await row("jörg@exämple.test"), await row("joerg@exämple.test"),
                                  await row("bob@example.test"))
        sender = OutboxSender(smtp_config(sink.port), clock=Clock(), lanes=1)

        report = await sender.deliver_due()
        await sender.close()

        assert (report.sent, report.failed, report.deferred) == (2, 1, 0)
        assert [m.rcpt_tos for m in sink.messages] == [("joerg@xn--exmple-cua.test",), ("bob@example.test",)]
    failed = await fresh(hostile)
    assert failed.status == OutboundStatus.FAILED
    assert failed.last_error == "recipient jörg@exämple.test needs SMTPUTF8, which the server does not offer"
    assert (await fresh(idn)).status == (await fresh(innocent)).status == OutboundStatus.SENT


async def test_a_recipient_with_junk_around_an_address_fails_its_row_alone(db: None, fresh_sink: SmtpSink) -> None:
    hostile, innocent = await row("eve\r\nRCPT TO:<x@evil.test>@example.test"), await row("bob@example.test")
    sender = OutboxSender(smtp_config(fresh_sink.port), clock=Clock(), lanes=1)

    report = await sender.deliver_due()
    await sender.close()

    assert (report.sent, report.failed) == (1, 1)
    assert [m.rcpt_tos for m in fresh_sink.messages] == [("bob@example.test",)]
    failed = await fresh(hostile)
    assert failed.status == OutboundStatus.FAILED and "is not a well-formed address" in failed.last_error
    assert (await fresh(innocent)).status == OutboundStatus.SENT
    assert (sender.metrics.sent, sender.metrics.send_failures) == ({"ack": 1}, {"unsendable": 1})


# -- 5. a refused session defers; a refused recipient fails only its row --------------------


async def test_a_refused_mail_from_keeps_rows_pending_logs_once_and_they_go_out_once_fixed(
        db: None, fresh_sink: SmtpSink, caplog: pytest.LogCaptureFixture) -> None:
    fresh_sink.refuse_mail = "530 5.7.0 Must issue a STARTTLS command first"
    rows = [await row(f"c{i}@example.test") for i in range(3)]
    clock = Clock()
    sender = OutboxSender(smtp_config(fresh_sink.port), clock=clock, lanes=2)

    with caplog.at_level(logging.DEBUG, logger="ticketd.smtp"):
        report = await sender.deliver_due()

    assert (report.sent, report.failed, report.deferred) == (0, 0, 3)
    for stored in [await fresh(r) for r in rows]:
        assert stored.status == OutboundStatus.PENDING and stored.attempts == 1
        assert stored.next_try_at > START
        assert stored.last_error.startswith("530 5.7.0 Must issue a STARTTLS")
    errors = [r for r in caplog.records if r.name == "ticketd.smtp" and r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "530" in errors[0].getMessage()
    assert sender.metrics.send_failures == {"unreachable": 3}  # a session problem, not the rows'

    fresh_sink.refuse_mail = None
    assert (await sender.deliver_due()).sent == 0  # the backoff holds: not due yet
    clock.now = START + timedelta(hours=1)
    assert (await sender.deliver_due()).sent == 3
    await sender.close()
    assert len(fresh_sink.messages) == 3


async def test_a_refused_session_still_gives_up_after_give_up_after(db: None, fresh_sink: SmtpSink) -> None:
    fresh_sink.refuse_mail = "554 5.7.1 Relay access denied"
    old = await row("ann@example.test", created=START - timedelta(days=2))
    sender = OutboxSender(smtp_config(fresh_sink.port, give_up_after=86400.0), clock=Clock(), lanes=1)

    report = await sender.deliver_due()
    await sender.close()

    assert report.failed == 1
    stored = await fresh(old)
    assert stored.status == OutboundStatus.FAILED and stored.last_error.startswith("gave up after 86400 s: 554")
    assert sender.metrics.send_failures == {"expired": 1}


@pytest.mark.parametrize(("reply", "status", "reason"), [("550 5.1.1 No such user", OutboundStatus.FAILED, "rejected"),
                                                        ("451 4.3.0 Try later", OutboundStatus.PENDING, "deferred")])
async def test_a_refused_recipient_settles_only_its_row(
        db: None, fresh_sink: SmtpSink, reply: str, status: str, reason: str) -> None:
    fresh_sink.refuse_rcpt["nobody@example.test"] = reply
    refused, innocent = await row("nobody@example.test"), await row("bob@example.test")
    sender = OutboxSender(smtp_config(fresh_sink.port), clock=Clock(), lanes=1)

    await sender.deliver_due()
    await sender.close()

    stored = await fresh(refused)
    assert stored.status == status and stored.last_error.startswith(reply[:3])
    assert "nobody@example.test" in stored.last_error
    assert (await fresh(innocent)).status == OutboundStatus.SENT
    assert [m.rcpt_tos for m in fresh_sink.messages] == [("bob@example.test",)]
    assert fresh_sink.commands[:4] == ["MAIL", "RCPT", "RSET", "MAIL"]  # reset before the next row
    assert sender.metrics.send_failures == {reason: 1}


@pytest.mark.parametrize("replies", [0, 1, 3, 5], ids=["no-greeting", "no-ehlo", "at-rcpt", "after-data"])
async def test_a_hanging_server_defers_the_rows_without_an_exception(
        db: None, hang: Callable[[int], HangServer], caplog: pytest.LogCaptureFixture, replies: int) -> None:
    server = hang(replies)
    rows = [await row("ann@example.test"), await row("bob@example.test")]
    sender = OutboxSender(smtp_config(server.port, timeout=0.3), clock=Clock(), lanes=2)

    with caplog.at_level(logging.DEBUG, logger="ticketd.smtp"):
        report = await sender.deliver_due()

    assert (report.sent, report.failed, report.deferred) == (0, 0, 2)
    [warning] = [r for r in caplog.records if r.name == "ticketd.smtp" and r.levelno >= logging.WARNING]
    assert "2 message(s) wait" in warning.getMessage()  # one line for the pass, not one a row
    for stored in [await fresh(r) for r in rows]:
        assert stored.status == OutboundStatus.PENDING and stored.attempts == 1
        assert "Timeout" in stored.last_error or "Timed out" in stored.last_error
    await sender.close()


async def test_drain_on_a_hanging_server_returns_a_report_instead_of_raising(
        db: None, hang: Callable[[int], HangServer]) -> None:
    server = hang(0)
    await row("ann@example.test")
    # drain's own deadline runs out long before the SMTP timeout: it must not cancel and raise.
    sender = OutboxSender(smtp_config(server.port, timeout=0.5), clock=Clock(), lanes=1)

    report = await sender.drain(0.05, ignore_schedule=True)

    assert (report.sent, report.deferred) == (0, 1)


async def test_run_on_a_hanging_server_logs_no_traceback(
        db: None, hang: Callable[[int], HangServer], caplog: pytest.LogCaptureFixture) -> None:
    server = hang(2)
    pending = await row("ann@example.test")
    sender, stop = OutboxSender(smtp_config(server.port, timeout=0.2), clock=Clock(), lanes=1), asyncio.Event()

    with caplog.at_level(logging.INFO, logger="ticketd.smtp"):
        running = asyncio.create_task(sender.run(stop))
        assert await eventually(lambda: _attempted(pending), timeout=10)
        stop.set()
        await asyncio.wait_for(running, 10)

    assert not [r for r in caplog.records if r.exc_info]


async def _attempted(message: OutboundMessage) -> bool:
    return (await fresh(message)).attempts >= 1


async def test_idle_lanes_are_closed_with_quit_while_the_sender_runs(db: None, fresh_sink: SmtpSink) -> None:
    await row("ann@example.test")
    sender, stop = OutboxSender(smtp_config(fresh_sink.port), clock=Clock(), lanes=2, idle_after=0.05), asyncio.Event()
    running = asyncio.create_task(sender.run(stop))
    try:
        assert await asyncio.to_thread(fresh_sink.wait_for_command, "QUIT", 1, 10)
        assert not running.done()  # closed for being idle, not by the sender's close()
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
    assert fresh_sink.commands == ["MAIL", "RCPT", "DATA", "QUIT"]
    assert sender.connections == [None, None]
