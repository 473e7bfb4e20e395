"""Hostile address headers through the whole pipeline: the right requester, the right recipient, never us."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.smtpsink import SmtpSink
from tests.support.daemon import cli, cli_json
from tests.test_ingest import _config


def _mail(headers: str, message_id: str) -> bytes:
    head = headers.strip("\n").replace("\n", "\r\n")
    return (f"{head}\r\nTo: support@example.test\r\nSubject: Help\r\nMessage-ID: {message_id}\r\n"
            "Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\nPlease help.\r\n").encode()


CASES = [
    # (headers, requester, where the acknowledgement goes)
    ("From: ann@example.org\nReply-To: <ann.work@example.org> NOTIFY=SUCCESS ORCPT=rfc822;x@evil.test",
     "ann@example.org", "ann.work@example.org"),
    ("From: =?utf-8?q?victim=3A=0D=0Ax-injected=3A_1?= <victim4@evil.test>", "victim4@evil.test",
     "victim4@evil.test"),
    ('From: "\u6211" <>\nReply-To: wo@example.org', "wo@example.org", "wo@example.org"),
    ("Sender: sam@example.org", "sam@example.org", "sam@example.org"),
]


@pytest.mark.parametrize("headers,requester,recipient", CASES)
def test_requester_and_recipient_come_only_from_well_formed_addresses(
        tmp_path: Path, fresh_sink: SmtpSink, headers: str, requester: str, recipient: str) -> None:
    config = _config(tmp_path, fresh_sink.port, pipe_only=True)
    done = cli(config, "ingest", stdin=_mail(headers, "<case@example.org>"))
    assert done.returncode == 0 and json.loads(done.stdout)["ticket"] == 1, done.stderr.decode()
    [ticket] = cli_json(config, "tickets", "list", "--json")
    assert ticket["requester"] == requester
    assert cli(config, "run", "--once").returncode == 0
    [ack] = fresh_sink.messages
    assert ack.rcpt_tos == (recipient,)
    assert [k for k in ack.message.keys() if k.lower().startswith("x-injected")] == []


@pytest.mark.parametrize("sender", ['"support"@example.test', "SUPPORT@Example.TEST", "support+x@example.test",
                                    "support@[127.0.0.1]", "help@[IPv6:::1]"])
def test_mail_from_our_own_address_however_written_is_never_answered(
        tmp_path: Path, fresh_sink: SmtpSink, sender: str) -> None:
    config = _config(tmp_path, fresh_sink.port, pipe_only=True)
    assert cli(config, "ingest", stdin=_mail(f"From: {sender}", "<own@example.org>")).returncode == 0
    assert cli(config, "run", "--once").returncode == 0
    assert fresh_sink.messages == []
