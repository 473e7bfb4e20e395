"""The README's Postfix recipe, for real: a burst through the pipe into `ticketd ingest`, no bounce."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools.postfix import PIPE_USER, Postfix
from devtools.smtpsink import SmtpSink
from tests.support.daemon import cli, cli_json, write_config

BURST = 30
# /etc/postfix/transport as the README has it: each address to the transport, with the
# [[addresses]] name as the next hop that argv hands to `ingest --mailbox ${nexthop}`.
ROUTES = {"support@example.test": "support", "sales@example.test": "sales"}


def pipe_config(directory: Path, smtp_port: int) -> Path:
    """A pipe-only config (no IMAP) whose database directory the pipe user can write."""
    path = write_config(directory, 10143, smtp_port, [("support", "support@example.test")])
    text = path.read_text()
    text = text[:text.index("[[mailboxes]]")]
    path.write_text(text + "".join(f'\n[[addresses]]\nname = "{name}"\naddress = "{address}"\n'
                                   for address, name in ROUTES.items()))
    user = pwd.getpwnam(PIPE_USER)
    os.chown(directory, user.pw_uid, user.pw_gid)
    return path


def customer_message(n: int) -> bytes:
    to = "sales@example.test" if n % 3 == 0 else "support@example.test"
    return (f"From: Customer {n} <customer{n}@customer.test>\r\nTo: {to}\r\n"
            f"Subject: Printer {n} is broken\r\nMessage-ID: <burst-{n}@customer.test>\r\n"
            f"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\nPrinter {n} jams again.\r\n").encode()


@pytest.mark.slow
def test_a_burst_through_the_postfix_pipe_makes_one_ticket_each_and_no_bounce(
    postfix_factory: Callable[..., Postfix], pipe_python: Path, fresh_sink: SmtpSink, server_dir: Path,
) -> None:
    config = pipe_config(server_dir / "ticketd", fresh_sink.port)
    postfix = postfix_factory(
        [str(pipe_python), "-m", "ticketd.daemon", "-c", str(config), "ingest", "--mailbox", "${nexthop}"],
        domains=["example.test"], routes=ROUTES, pipe_flags="DORq", retry_after=1)
    queue_ids = postfix.send([customer_message(n) for n in range(BURST)], parallel=True)
    # An exit 75 (say the database was busy past its timeout) is a deferral Postfix retries.
    postfix.wait_idle(timeout=180)
    statuses = postfix.delivery_statuses()
    assert not [d for d in statuses if d.status == "bounced"], postfix.log_tail()
    assert {d.queue_id for d in statuses if d.status == "sent"} == set(queue_ids)
    tickets = cli_json(config, "tickets", "list", "--json")
    assert sorted(t["subject"] for t in tickets) == sorted(f"Printer {n} is broken" for n in range(BURST))
    assert {t["subject"] for t in tickets if t["mailbox"] == "sales"} == {
        f"Printer {n} is broken" for n in range(BURST) if n % 3 == 0}
    assert cli_json(config, "inbound", "list", "--status", "quarantined", "--json") == []
    # The daemon (here its one-shot form) acknowledges each of them.
    assert cli(config, "run", "--once").returncode == 0
    assert sorted(m.rcpt_tos[0] for m in fresh_sink.messages) == sorted(f"customer{n}@customer.test"
                                                                         for n in range(BURST))
