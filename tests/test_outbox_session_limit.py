"""A server that takes fewer sessions at once than smtp.connections: as many as it took, no outage."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devtools.smtpsink import SmtpSink
from ticketd.storage.db import database
from ticketd.storage.models import OutboundMessage, OutboundStatus
from tests.support import backend
from tests.support.outbox import outbox, row


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[None]:
    async with database(backend.url(tmp_path / "outbox.db")):
        yield


@pytest.fixture
def limited() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.max_sessions = 2
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


async def statuses() -> list[str]:
    return sorted(r.status for r in await OutboundMessage.all())


async def test_every_row_goes_on_the_sessions_it_takes_and_later_passes_ask_no_more(
        db: None, limited: SmtpSink, caplog: pytest.LogCaptureFixture) -> None:
    for n in range(12):
        await row(f"c{n}@example.org")
    sender = outbox(limited.port, lanes=6)
    with caplog.at_level(logging.WARNING, logger="ticketd.smtp"):
        report = await sender.drain(30, ignore_schedule=True)
    assert (report.sent, report.deferred, report.failed) == (12, 0, 0)
    assert await statuses() == [OutboundStatus.SENT] * 12 and len(limited.messages) == 12
    assert limited.refused_sessions >= 1 and sender.lanes.usable() == 2
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "refused another session beside" in lines[0] and "sending on 2" in lines[0], lines

    refused = limited.refused_sessions
    for n in range(12, 20):
        await row(f"c{n}@example.org")
    report = await sender.drain(30, ignore_schedule=True)
    assert (report.sent, report.deferred) == (8, 0) and limited.refused_sessions == refused  # no more asked
    await sender.close()


async def test_a_server_that_takes_no_session_is_still_an_outage(db: None, limited: SmtpSink) -> None:
    limited.max_sessions = 0
    for n in range(4):
        await row(f"c{n}@example.org")
    sender = outbox(limited.port, lanes=3)
    report = await sender.drain(5, ignore_schedule=True)
    assert report.sent == 0 and report.deferred == 4  # every row waits out the backoff
    assert sender.lanes.usable() == 3  # no limit learnt from a server that took nothing
    await sender.close()
