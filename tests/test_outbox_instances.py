"""Two `ticketd run` daemons on one PostgreSQL database send one outbox, one of them killed with SIGKILL mid-send.

Real processes, the real SMTP sink, the session's PostgreSQL cluster (in both runs of the suite:
several instances need PostgreSQL). Every row is delivered; a row goes out twice only when the
kill fell between the server's 250 and the killed process's commit of "sent" (daemon.sent).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from devtools.smtpsink import SinkMessage, SmtpSink
from ticketd.daemon.config import load_config
from ticketd.storage import bulk
from ticketd.storage.db import database
from ticketd.storage.models import OutboundMessage
from tests.support import backend
from tests.support.daemon import PROJECT, write_config

ROWS = 300


@pytest.fixture
def pg(postgres_databases: backend.Databases, tmp_path: Path) -> Iterator[str]:
    yield postgres_databases.url(str(tmp_path / "pg"))
    postgres_databases.drop_all()


SINK_DELAY = 0.01  # seconds a message, in the sink's one thread


@pytest.fixture
def slow_sink() -> Iterator[SmtpSink]:
    """10 ms a message, one at a time: the outbox takes seconds, long enough to kill mid-send."""
    def on_message(message: SinkMessage) -> None:
        time.sleep(SINK_DELAY)

    with SmtpSink(on_message=on_message) as sink:
        yield sink


def daemon_config(tmp_path: Path, sink: SmtpSink, url: str) -> Path:
    """A daemon with no mailbox of its own (it only sends), on ``url``; SMTP timeout 1.5 s, so a
    killed instance's claim ends 4.5 s later (daemon.outbox_due)."""
    config = write_config(tmp_path, 10143, sink.port, [("support", "support@example.test")])
    text = config.read_text()
    text = text[:text.index("[[mailboxes]]")] + '[[addresses]]\nname = "support"\naddress = "support@example.test"\n'
    text = re.sub(r'(?m)^url = ".*"$', f'url = "{url}"', text).replace("timeout = 10\n", "timeout = 1.5\n")
    config.write_text(text)
    return config


def start(config: Path, name: str) -> subprocess.Popen[bytes]:
    log = (config.parent / f"{name}.log").open("ab")  # a file: an undrained pipe would freeze it mid-send
    with log:
        return subprocess.Popen([sys.executable, "-m", "ticketd.daemon", "-c", str(config), "run"],
                                env=dict(os.environ, PYTHONPATH=str(PROJECT)), cwd=PROJECT,
                                stdout=subprocess.DEVNULL, stderr=log)


async def outbox_rows(count: int) -> None:
    """``count`` rows due now, each with a Message-ID of its own in its bytes."""
    now = datetime.now(timezone.utc)
    rows = []
    for i in range(count):
        mid = f"<row-{i}@example.test>"
        raw = f"From: support@example.test\r\nTo: c@example.test\r\nMessage-ID: {mid}\r\nSubject: {i}\r\n\r\nHi.\r\n"
        rows.append(OutboundMessage(kind="acknowledgement", message_id=mid, mail_from="support@example.test",
                                    recipients=["c@example.test"], recipient="c@example.test", raw_bytes=raw.encode(),
                                    next_try_at=now, created_at=now))
    await OutboundMessage.bulk_create(rows)


async def until(check, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_two_daemons_send_each_row_once_and_the_killed_ones_rows_go_out_from_the_other(
        tmp_path: Path, pg: str, slow_sink: SmtpSink) -> None:
    config = daemon_config(tmp_path, slow_sink, pg)
    async with database(pg):
        await outbox_rows(ROWS)
    first, second = start(config, "first"), start(config, "second")
    try:
        # Both have started sending (each logs its rows), and most rows wait still: kill one.
        assert await until(lambda: all((tmp_path / f"{n}.log").read_bytes().count(b"sent <row-") >= 5
                                       for n in ("first", "second")), 60), "both daemons send"
        first.send_signal(signal.SIGKILL)
        killed_at = time.time()
        first.wait(timeout=10)
        async with database(pg):  # what it held when it died: claimed, not sent
            [(held,)] = await bulk.fetch("SELECT count(*) FROM outbound_message WHERE status = 'pending' "
                                         "AND claimed_by LIKE ?", [f"%:{first.pid}:%"])
        assert held > 0 and len(slow_sink.messages) < ROWS, "the outbox went too fast to kill mid-send"
        # Its claimed rows wait for the claim to end (4.5 s), then the other daemon sends them.
        assert await until(lambda: len(set(_ids(slow_sink))) == ROWS, 30), \
            f"{ROWS - len(set(_ids(slow_sink)))} rows never delivered"
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
                process.wait()

    delivered = Counter(_ids(slow_sink))
    twice = [mid for mid, n in delivered.items() if n > 1]
    lanes = load_config(config).smtp.connections
    # The sink notes a message before its 250, and answers the sessions of both daemons' lanes in
    # turn, 10 ms each: a 250 can leave up to that long after the note, and the kill meets it on its way.
    window = 0.1 + 2 * lanes * SINK_DELAY
    for mid in twice:  # only a copy accepted right at the kill, before its "sent" was committed
        first_copy = min(m.received_at.timestamp() for m in slow_sink.messages if _id(m) == mid)
        assert abs(first_copy - killed_at) < window, \
            f"{mid} sent twice, its first copy {first_copy - killed_at:.3f} s from the kill"
    assert len(twice) <= lanes  # a lane each, caught between 250 and commit
    async with database(pg):
        rows = await bulk.fetch("SELECT status, count(*), count(claimed_by) FROM outbound_message GROUP BY status")
    assert [tuple(r) for r in rows] == [("sent", ROWS, 0)]


def _id(message: SinkMessage) -> str:
    return str(message.message["Message-ID"])


def _ids(sink: SmtpSink) -> list[str]:
    return [_id(m) for m in list(sink.messages)]
