"""The README's LMTP recipe, for real: a private Postfix delivers over LMTP (unix:) to `ticketd run`."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools._process import wait_until
from devtools.postfix import Postfix
from devtools.smtpsink import SmtpSink
from tests.support.daemon import PROJECT, cli, cli_json, write_config

BURST = 30


def lmtp_site(directory: Path, smtp_port: int) -> Path:
    """Addresses support and sales, LMTP on a socket the postfix group may use (the README's way)."""
    path = write_config(directory, 10143, smtp_port, [("support", "support@example.test")])
    text = path.read_text()
    path.write_text(text[:text.index("[[mailboxes]]")] + f"""
[[addresses]]
name = "support"
address = "support@example.test"

[[addresses]]
name = "sales"
address = "sales@example.test"

[lmtp]
listen = "{directory}/lmtp.sock"
socket_group = "postfix"          # Postfix's lmtp(8) runs as the postfix user and group

[daemon]
log_target = "{directory}/daemon.log"
""")
    return path


def customer_message(n: int, to: str) -> bytes:
    return (f"From: Customer {n} <customer{n}@customer.test>\r\nTo: {to}\r\n"
            f"Subject: Printer {n} is broken\r\nMessage-ID: <lmtp-{n}@customer.test>\r\n"
            f"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\nPrinter {n} jams again.\r\n").encode()


def recipient(n: int) -> str:
    if n == BURST:  # one message for both mailboxes: one LMTP transaction, a reply for each
        return "support@example.test, sales@example.test"
    if n == BURST + 1:
        return "nobody@example.test"
    return "sales@example.test" if n % 3 == 0 else "support+t7-ab12@example.test"


@pytest.mark.slow
def test_postfix_delivers_a_burst_over_lmtp_each_a_ticket_unknown_recipients_bounce(
    postfix_factory: Callable[..., Postfix], fresh_sink: SmtpSink, server_dir: Path,
) -> None:
    config = lmtp_site(server_dir, fresh_sink.port)
    sock = server_dir / "lmtp.sock"
    assert cli(config, "check-config").returncode == 0
    with (server_dir / "daemon.out").open("ab") as out:
        daemon = subprocess.Popen([sys.executable, "-m", "ticketd.daemon", "-c", str(config), "run"], stdout=out,
                                  stderr=out, env=dict(os.environ, PYTHONPATH=str(PROJECT)), cwd=PROJECT)
    try:
        assert wait_until(sock.exists, 30), (server_dir / "daemon.out").read_text()
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        postfix = postfix_factory(["/bin/false"], domains=["example.test"], lmtp=str(sock), retry_after=1)
        queue_ids = postfix.send([customer_message(n, recipient(n)) for n in range(BURST + 2)], parallel=True)
        postfix.wait_idle(timeout=120)
        statuses = [d for d in postfix.delivery_statuses(relay=None) if d.recipient.endswith("@example.test")]
        sent = {(d.queue_id, d.recipient) for d in statuses if d.status == "sent"}
        [bounced] = [d for d in statuses if d.status == "bounced"]
        assert (bounced.queue_id, bounced.recipient) == (queue_ids[BURST + 1], "nobody@example.test")
        assert "550 5.1.1" in bounced.detail
        assert {q for q, _ in sent} == set(queue_ids[:BURST + 1]), postfix.log_tail()
        assert {(queue_ids[BURST], "support@example.test"), (queue_ids[BURST], "sales@example.test")} <= sent
        assert not [d for d in statuses if d.status == "deferred"], postfix.log_tail()
        # Acknowledged by the daemon that took the mail: no `run --once`, no process per message.
        assert fresh_sink.wait_for(BURST + 1, timeout=60), len(fresh_sink.messages)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    tickets = cli_json(config, "tickets", "list", "--json")
    assert sorted(t["subject"] for t in tickets) == sorted(f"Printer {n} is broken" for n in range(BURST + 1))
    # The message for both is one ticket, in the mailbox whose copy came first (Postfix sorts).
    assert {t["subject"] for t in tickets if t["mailbox"] == "sales"} - {f"Printer {BURST} is broken"} == {
        f"Printer {n} is broken" for n in range(BURST) if n % 3 == 0}
    assert cli_json(config, "quarantine", "list", "--json") == []
    assert not sock.exists()
