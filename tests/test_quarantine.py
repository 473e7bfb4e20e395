"""`ticketd quarantine release` gives a held message its ticket, or says why not and exits non-zero."""

from __future__ import annotations

import json
from pathlib import Path

from devtools.smtpsink import SmtpSink
from tests.support.daemon import cli, cli_json, write_config
from tests.support.mail import simple

BLOCKING = '\n[filters]\npipeline = ["senders"]\n\n[filters.senders]\nblock = ["@blocked.test"]\n'


def _config(tmp_path: Path, port: int) -> Path:
    return write_config(tmp_path, 10143, port, [("support", "support@example.test")], extra=BLOCKING)


def test_releasing_a_rejected_message_gives_it_a_ticket(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    config = _config(tmp_path, fresh_sink.port)
    stored = cli(config, "ingest", stdin=simple("kim@blocked.test", "Let me in", "<in@blocked.test>"))
    held = json.loads(stored.stdout)
    assert held["status"] == "rejected" and held["ticket"] is None
    released = cli(config, "quarantine", "release", str(held["inbound"]))
    assert released.returncode == 0, released.stderr.decode()
    assert json.loads(released.stdout)["ticket"] == 1
    [ticket] = cli_json(config, "tickets", "list", "--json")
    assert ticket["requester"] == "kim@blocked.test"


def test_releasing_an_unreadable_message_exits_non_zero_and_says_why(tmp_path: Path,
                                                                     fresh_sink: SmtpSink) -> None:
    config = _config(tmp_path, fresh_sink.port)
    stored = json.loads(cli(config, "ingest", stdin=b"no header here\r\njust text\r\n").stdout)
    assert stored["status"] == "quarantined"
    released = cli(config, "quarantine", "release", str(stored["inbound"]))
    assert released.returncode == 1
    assert b"not released" in released.stderr and b"unreadable" in released.stderr
    assert cli_json(config, "tickets", "list", "--json") == []
    [still] = cli_json(config, "quarantine", "list", "--json")  # held again, with its reason
    assert still["id"] == stored["inbound"] and "unreadable" in still["reason"]
    assert cli(config, "quarantine", "release", "999").returncode == 1
