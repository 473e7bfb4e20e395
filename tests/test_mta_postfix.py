"""A burst through Postfix's pipe into `ticketd ingest`: one ticket per message, no bounce."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools.postfix import PIPE_USER, Postfix
from devtools.smtpsink import SmtpSink
from tests.support.daemon import cli_json, write_config

BURST = 30


def pipe_config(directory: Path, smtp_port: int) -> Path:
    """A pipe-only config (no IMAP) whose database directory the pipe user can write."""
    path = write_config(directory, 10143, smtp_port, [("support", "support@example.test")])
    text = path.read_text()
    text = text[:text.index("[[mailboxes]]")]
    path.write_text(text + '\n[[addresses]]\nname = "support"\naddress = "support@example.test"\n')
    user = pwd.getpwnam(PIPE_USER)
    os.chown(directory, user.pw_uid, user.pw_gid)
    return path


def customer_message(n: int) -> bytes:
    return (f"From: Customer {n} <customer{n}@customer.test>\r\nTo: support@example.test\r\n"
            f"Subject: Printer {n} is broken\r\nMessage-ID: <burst-{n}@customer.test>\r\n"
            f"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\nPrinter {n} jams again.\r\n").encode()


@pytest.mark.slow
def test_a_burst_through_the_postfix_pipe_makes_one_ticket_each_and_no_bounce(
    postfix_factory: Callable[..., Postfix], pipe_python: Path, fresh_sink: SmtpSink, server_dir: Path,
) -> None:
    config = pipe_config(server_dir / "ticketd", fresh_sink.port)
    postfix = postfix_factory([str(pipe_python), "-m", "daemon", "-c", str(config), "ingest"],
                              retry_after=1)
    queue_ids = postfix.send([customer_message(n) for n in range(BURST)], parallel=True)
    # An exit 75 (the database was busy) is a deferral that Postfix retries a second later.
    postfix.wait_idle(timeout=180)
    statuses = postfix.delivery_statuses()
    assert not [d for d in statuses if d.status == "bounced"], postfix.log_tail()
    assert {d.queue_id for d in statuses if d.status == "sent"} == set(queue_ids)
    subjects = sorted(t["subject"] for t in cli_json(config, "tickets", "list", "--json"))
    assert subjects == sorted(f"Printer {n} is broken" for n in range(BURST))
