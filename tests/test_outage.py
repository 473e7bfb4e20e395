"""A server that is down: one line per backoff step, however many tries fail, and one when it is back.

The IMAP and SMTP cases stop real servers (a private Dovecot, the SMTP sink) and count the
lines over several steps; spamd's case is in tests/filters/test_spam.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from ticketd.daemon.config import MailboxConfig, load_config
from ticketd.daemon.fetcher import MailboxWorker
from ticketd.daemon.imap import ImapSession
from ticketd.daemon.outage import Outage
from ticketd.daemon.outbox import OutboxSender
from ticketd.daemon.pipeline import Processor
from devtools.dovecot import Dovecot
from devtools.smtpsink import SmtpSink
from ticketd.storage import clock
from ticketd.storage.db import database
from ticketd.storage.models import OutboundMessage, OutboundStatus
from tests.conftest import ServerFactory
from tests.support.daemon import eventually, write_config
from tests.support.outbox import row, smtp_config


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[None]:
    async with database(f"sqlite://{tmp_path}/outage.db"):
        yield


def test_the_first_failure_is_told_then_one_line_per_doubling_step_with_the_tries_it_stands_for() -> None:
    now = [0.0]
    outage = Outage(first=1.0, cap=4.0, clock=lambda: now[0])
    told = []
    for at in (0, 0.5, 0.9, 1.0, 2.0, 2.9, 3.0, 6.9, 7.0, 10.9, 11.0, 11.5):
        now[0] = at
        told.append(outage.failed())
    # Lines at 0, then 1 (step 1), 3 (step 2), 7 (step 4), 11 (capped at 4).
    assert told == [1, 0, 0, 3, 0, 0, 3, 0, 2, 0, 2, 0]
    assert outage.answered() == 12 and outage.answered() == 0
    now[0] = 11.6
    assert outage.failed() == 1  # a new outage is told at once, and steps start small again
    now[0] = 12.6
    assert outage.failed() == 1


async def test_an_imap_server_that_is_down_gets_a_line_per_reconnect_and_one_when_it_is_back(
        tmp_path: Path, dovecot_factory: ServerFactory[Dovecot], fresh_sink: SmtpSink,
        caplog: pytest.LogCaptureFixture) -> None:
    server = dovecot_factory()
    user = server.add_user()
    config = load_config(write_config(tmp_path, server.port, fresh_sink.port, [("support", user.address)]))
    sessions: list[ImapSession] = []

    def session(box: MailboxConfig) -> ImapSession:  # the real session; only counted
        sessions.append(ImapSession(box.imap))
        return sessions[-1]

    async with database(config.database_url):
        worker = MailboxWorker(config.mailboxes[0], Processor(config), config.max_message_bytes,
                               session_factory=session, backoff_base=0.05, backoff_max=0.4)
        with caplog.at_level(logging.INFO):
            running = asyncio.create_task(worker.run())
            # Where a daemon waits nearly all the time. (A connection that drops in the middle of a
            # command is noticed only at the command's timeout: aioimaplib fails no command then.)
            assert await eventually(lambda: _true(bool(sessions) and _idle(sessions[-1])))
            server.stop()  # the IDLE connection drops: reconnects begin
            assert await eventually(lambda: _true(len(sessions) >= 6), timeout=30)
            server.start()  # the same port
            assert await eventually(lambda: _true(worker.connected), timeout=30)
            worker.stop.set()
            await asyncio.wait_for(running, 30)

    failed = len(sessions) - 1  # each ended in a failure but the last (the first logged in, then dropped)
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == failed >= 4
    assert all(re.fullmatch(r"mailbox support: .*; reconnecting in \d+\.\d s", r.getMessage()) for r in lines)
    back = [r.getMessage() for r in caplog.records if "connected again" in r.getMessage()]
    assert back == [f"mailbox support: connected again after {failed} failed attempts"]


async def test_an_smtp_server_that_is_down_gets_a_line_per_backoff_step_not_one_per_row(
        db: None, fresh_sink: SmtpSink, caplog: pytest.LogCaptureFixture) -> None:
    start = clock.now()
    # Rows that fall due one after another: each would be a pass of its own, and a line.
    rows = [await row(f"c{i}@example.test", created=start + timedelta(seconds=0.1 * i)) for i in range(8)]
    config = replace(smtp_config(fresh_sink.port, timeout=2.0), retry_base=0.2, retry_max=0.8)
    sender, stop = OutboxSender(config, lanes=2), asyncio.Event()
    fresh_sink.down()

    with caplog.at_level(logging.INFO, logger="ticketd.smtp"):
        running = asyncio.create_task(sender.run(stop))
        await asyncio.sleep(3.0)
        fresh_sink.up()
        assert await eventually(lambda: _all_sent(len(rows)), timeout=30)
        stop.set()
        await asyncio.wait_for(running, 30)

    [back] = [r.getMessage() for r in caplog.records if "takes mail again" in r.getMessage()]
    tries = int(back.split(" after ")[1].split()[0])
    assert back == f"SMTP 127.0.0.1:{fresh_sink.port} takes mail again after {tries} failed tries"
    down = [r for r in caplog.records if "cannot take mail" in r.getMessage()]
    assert 4 <= len(down) < tries  # a line per step, fewer than the passes that failed
    told = [int(m.group(1)) if (m := re.search(r"\((\d+) tries failed since the last line\)", r.getMessage())) else 1
            for r in down]
    assert told[0] == 1 and sum(told) <= tries  # each failed pass counted once (the last ones in `back` only)
    gaps = [b.created - a.created for a, b in zip(down, down[1:])]
    steps = [min(0.8, 0.2 * 2 ** k) for k in range(len(gaps))]
    assert all(gap >= step - 0.02 for gap, step in zip(gaps, steps)), (gaps, steps)
    assert len(fresh_sink.messages) == len(rows)


async def _true(value: bool) -> bool:
    return value


def _idle(session: ImapSession) -> bool:
    return session.client is not None and session.client.protocol.has_pending_idle_command()


async def _all_sent(count: int) -> bool:
    return await OutboundMessage.filter(status=OutboundStatus.SENT).count() == count
