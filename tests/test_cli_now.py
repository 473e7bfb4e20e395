"""``--now`` on the commands that run once: the ticket, its events and the acknowledgement's Date follow it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email.utils import parsedate_to_datetime
from pathlib import Path

from devtools.smtpsink import SmtpSink
from ticketd.storage.db import database
from ticketd.storage.models import Event, OutboundMessage, Ticket
from tests.support import backend
from tests.support.daemon import cli, write_config
from tests.support.mail import simple

FRIDAY_EVENING = "2026-12-04T17:30:00+01:00"
AT = datetime(2026, 12, 4, 16, 30, tzinfo=timezone.utc)
PIPE = '\n[[addresses]]\nname = "pipe"\naddress = "help@example.test"\n'


def _config(tmp_path: Path, smtp_port: int) -> Path:
    return write_config(tmp_path, 10143, smtp_port, [("support", "support@example.test")], extra=PIPE)


def _near(instant: datetime) -> bool:
    return timedelta(0) <= instant - AT < timedelta(seconds=30)  # the clock runs on from --now


async def test_ingest_at_a_given_time_stores_and_acknowledges_as_of_then(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    config = _config(tmp_path, fresh_sink.port)
    done = cli(config, "ingest", "--mailbox", "pipe", "--now", FRIDAY_EVENING,
               stdin=simple("ann@example.org", "Printer", "<p1@example.org>"))
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["status"] == "processed"
    async with database(backend.url(tmp_path / "ticketd.db")):
        ticket = await Ticket.get(number=1)
        events = await Event.filter(ticket_id=ticket.id).values_list("at", flat=True)
        [ack] = await OutboundMessage.filter(kind="acknowledgement")
    assert _near(ticket.created_at) and _near(ticket.updated_at) and events and all(_near(at) for at in events)
    assert _near(ack.created_at)
    assert _near(parsedate_to_datetime(message_from_bytes(ack.raw_bytes)["Date"]))


def test_now_is_refused_where_it_cannot_hold(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    config = _config(tmp_path, fresh_sink.port)
    daemon = cli(config, "run", "--now", FRIDAY_EVENING)
    assert daemon.returncode == 2 and b"--now goes with run --once" in daemon.stderr
    naive = cli(config, "tickets", "show", "1", "--now", "2026-12-04T17:30:00")
    assert naive.returncode == 2 and b"no UTC offset" in naive.stderr
