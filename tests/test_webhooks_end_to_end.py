"""Webhooks on real servers: a mail into Dovecot, its ticket, the event POSTed to a local HTTP server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.dovecot import Dovecot, MailUser
from devtools.smtpsink import SmtpSink
from devtools.webhookserver import WebhookServer
from tests.support.daemon import eventually, run_once, running, write_config
from tests.support.mail import simple

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def server() -> Iterator[WebhookServer]:
    found = WebhookServer().start()
    yield found
    found.stop()


def config_for(tmp_path: Path, dovecot: Dovecot, user: MailUser, sink: SmtpSink, server: WebhookServer,
               more: str = "") -> Path:
    key = tmp_path / "webhook.key"
    key.write_text(KEY + "\n")
    return write_config(tmp_path, dovecot.port, sink.port, [("support", user.address)], extra=f"""
[[webhooks]]
name = "chat"
url = "{server.url('/chat')}"
secret_file = "{key}"
retry_base = 0.2
retry_max = 0.5
{more}
""")


async def test_a_mail_in_dovecot_becomes_a_signed_created_event(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink, server: WebhookServer) -> None:
    dovecot.deliver(fresh_user.address, simple("Ann <ann@example.org>", "Printer on fire", "<a1@example.org>"))
    assert await run_once(config_for(tmp_path, dovecot, fresh_user, fresh_sink, server)) == 0
    [request] = server.requests
    assert request.path == "/chat" and request.json["event"] == "created"
    assert request.json["ticket"]["subject"] == "Printer on fire" and request.json["ticket"]["number"] == 1
    assert request.headers["x-ticketd-signature"] == "sha256=" + hmac.new(KEY.encode(), request.body,
                                                                          hashlib.sha256).hexdigest()
    assert len(fresh_sink.messages) == 1  # the acknowledgement went as ever


async def test_the_running_daemon_delivers_after_an_outage_and_a_slow_endpoint_holds_up_no_mail(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink, server: WebhookServer) -> None:
    config = config_for(tmp_path, dovecot, fresh_user, fresh_sink, server, "timeout = 5")
    server.answer(200, delay=3.0)  # slow: each POST takes 3 s
    async with running(config):
        started = time.monotonic()
        for i in range(3):
            dovecot.deliver(fresh_user.address, simple("ann@example.org", f"Slow {i}", f"<s{i}@example.org>"))
        assert await eventually(lambda: _count(fresh_sink, 3), timeout=20)
        assert time.monotonic() - started < 6  # the three acknowledgements did not wait for 9 s of POSTs
        server.stop()  # down, with POSTs still to make
        server.answer(200)
        for i in range(3, 5):
            dovecot.deliver(fresh_user.address, simple("ann@example.org", f"Down {i}", f"<d{i}@example.org>"))
        assert await eventually(lambda: _count(fresh_sink, 5), timeout=20)
        await asyncio.sleep(2)
        server.start()
        assert await eventually(lambda: _numbers(server, 5), timeout=30)
    # The slow POST cut off by the outage may have reached the server unanswered: then it came
    # again, with the same event id (what the receiver de-duplicates by).
    ids: dict[int, set[str]] = {}
    for r in server.requests:
        ids.setdefault(r.json["ticket"]["number"], set()).add(r.headers["x-ticketd-event-id"])
    assert sorted(ids) == [1, 2, 3, 4, 5] and all(len(one) == 1 for one in ids.values())
    numbers = [r.json["ticket"]["number"] for r in server.delivered()]
    assert numbers == sorted(numbers)  # in order


async def _count(sink: SmtpSink, n: int) -> bool:
    return len(sink.messages) >= n


async def _numbers(server: WebhookServer, n: int) -> bool:
    return len({r.json["ticket"]["number"] for r in server.delivered()}) >= n
