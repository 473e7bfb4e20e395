"""Webhooks: events become delivery rows in their transaction; the sender POSTs them to a real local server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.webhookserver import WebhookServer
from ticketd.daemon.webhook_sender import WebhookSender
from ticketd.storage.db import database
from ticketd.storage.models import WebhookDelivery
from tests.support.desk import Desk, config

KEY = "k" * 32


@pytest.fixture
def server() -> Iterator[WebhookServer]:
    found = WebhookServer().start()
    yield found
    found.stop()


def hooks(tmp_path: Path, server: WebhookServer, *tables: str) -> str:
    key = tmp_path / "webhook.key"
    key.write_text(KEY + "\n")
    return "".join(f"""
[[webhooks]]
url = "{server.url('/' + name)}"
secret_file = "{key}"
retry_base = 0.2
retry_max = 0.5
timeout = 2
{table}
""" for name, table in ((t.split('"')[1], t) for t in tables))


async def deliver_all(sender: WebhookSender, until: float = 10.0) -> None:
    """The sender's passes until nothing is pending or ``until`` seconds went by."""
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        await sender.deliver_due()
        if not await WebhookDelivery.filter(status="pending").exists():
            return
        await asyncio.sleep(0.1)


async def test_each_event_is_posted_once_signed_with_the_ticket(tmp_path: Path, server: WebhookServer) -> None:
    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "all"'))
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("The printer is on fire.")
        await desk.agent(1, "#status solved\nPut it out.")
        await desk.customer("5 - quick", number=1)
        sender = WebhookSender(cfg.webhooks, instance="test")
        try:
            await deliver_all(sender)
        finally:
            await sender.close()
    got = server.delivered()
    assert [r.json["event"] for r in got] == ["created", "solved", "agent_reply", "csat"]  # as the events were recorded
    for r in got:
        assert r.path == "/all" and r.headers["content-type"] == "application/json"
        expected = "sha256=" + hmac.new(KEY.encode(), r.body, hashlib.sha256).hexdigest()
        assert r.headers["x-ticketd-signature"] == expected
        assert r.headers["x-ticketd-event-id"] == r.json["id"] == r.headers["idempotency-key"]
    assert len({r.json["id"] for r in got}) == 4
    first = got[0].json["ticket"]
    assert (first["number"], first["subject"], first["requester"], first["queue"]) == (
        1, "Help", "ann@example.org", "support")
    assert "text" not in got[0].json["detail"]  # customer text stays out unless include_text
    assert got[2].json["detail"]["agent"] == "alice@example.test"
    assert got[3].json["detail"] == {"rating": 5}
