"""Webhook tests' shared parts: a real local endpoint, the [[webhooks]] config, the sender's passes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from devtools.webhookserver import WebhookServer
from ticketd.daemon.webhook_sender import WebhookSender
from ticketd.storage.models import WebhookDelivery
from tests.support.desk import ANN, SUPPORT, Desk
from tests.support.mail import simple

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




async def three_tickets(desk: Desk) -> None:
    for body in ("one", "two", "three"):
        await desk.mail(simple(ANN, f"Ticket {body}", f"<{body}@example.org>", body=body, to=SUPPORT))


def running_clock(desk: Desk) -> Callable[[], datetime]:
    """The desk's (simulated) time, going on as real time does: for retries that must really wait."""
    start = time.monotonic()
    return lambda: desk.clock.now + timedelta(seconds=time.monotonic() - start)


async def pending() -> int:
    return await WebhookDelivery.filter(status="pending").count()
