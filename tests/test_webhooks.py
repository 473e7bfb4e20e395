"""Webhooks: events become delivery rows in their transaction; the sender POSTs them to a real local server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from devtools.webhookserver import WebhookServer
from ticketd.daemon.webhook_sender import WebhookSender
from ticketd.storage.db import database
from ticketd.storage.models import WebhookDelivery
from tests.support.daemon import eventually
from tests.support.desk import ANN, SUPPORT, Desk, config
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


async def test_each_event_is_posted_once_signed_with_the_ticket(tmp_path: Path, server: WebhookServer) -> None:
    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "all"'))
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("The printer is on fire.")
        await desk.agent(1, "#status solved\nPut it out.")
        await desk.customer("5 - quick", number=1)
        sender = WebhookSender(cfg.webhooks, instance="test", clock=running_clock(desk))
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


# The "down for a minute" acceptance, shortened: TICKETD_WEBHOOK_OUTAGE=60 runs it with the full minute.
OUTAGE = float(os.environ.get("TICKETD_WEBHOOK_OUTAGE", "3"))


async def three_tickets(desk: Desk) -> None:
    for body in ("one", "two", "three"):
        await desk.mail(simple(ANN, f"Ticket {body}", f"<{body}@example.org>", body=body, to=SUPPORT))


def running_clock(desk: Desk) -> Callable[[], datetime]:
    """The desk's (simulated) time, going on as real time does: for retries that must really wait."""
    start = time.monotonic()
    return lambda: desk.clock.now + timedelta(seconds=time.monotonic() - start)


async def pending() -> int:
    return await WebhookDelivery.filter(status="pending").count()


async def test_an_endpoint_down_for_a_while_gets_every_event_once_in_order_when_back(
        tmp_path: Path, server: WebhookServer) -> None:
    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "chat"\nformat = "slack"'))
    server.stop()
    async with database(cfg.database_url):
        desk = Desk(cfg)
        sender = WebhookSender(cfg.webhooks, instance="one", poll=0.1, clock=running_clock(desk))
        stop = asyncio.Event()
        running = asyncio.create_task(sender.run(stop))
        try:
            await three_tickets(desk)
            sender.notify()
            await asyncio.sleep(OUTAGE)
            tries = await WebhookDelivery.filter(event="created").order_by("id").values_list("attempts", flat=True)
            assert tries[0] >= 2 and tries[1:] == [0, 0]  # the first is retried; the later ones wait behind it
            server.start()
            assert await eventually(_none_pending, timeout=10)
        finally:
            stop.set()
            await running
            await sender.close()
    texts = [r.json["text"] for r in server.delivered()]
    assert texts == ["New ticket #1: Ticket one (priority P3, queue support)",
                     "New ticket #2: Ticket two (priority P3, queue support)",
                     "New ticket #3: Ticket three (priority P3, queue support)"]
    assert len(server.requests) == len(server.delivered())  # nothing was answered but once


async def _none_pending() -> bool:
    return await pending() == 0


async def test_a_restart_during_the_outage_loses_nothing(tmp_path: Path, server: WebhookServer) -> None:
    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "chat"'))
    server.stop()
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await three_tickets(desk)
        first = WebhookSender(cfg.webhooks, instance="before", clock=running_clock(desk))
        await first.deliver_due()  # refused: the first row is retried later, nothing is lost
        await first.close()
        assert await pending() == 3
    server.start()
    async with database(cfg.database_url):  # the daemon started again: another process, another instance
        second = WebhookSender(cfg.webhooks, instance="after", clock=running_clock(desk))
        try:
            await deliver_all(second)
        finally:
            await second.close()
        assert await pending() == 0
    assert [r.json["ticket"]["number"] for r in server.requests if r.json] == [1, 2, 3]


async def test_a_refusal_fails_that_event_with_the_reason_and_the_next_goes(
        tmp_path: Path, server: WebhookServer) -> None:
    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "chat"'))
    server.answer(400)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await three_tickets(desk)
        sender = WebhookSender(cfg.webhooks, instance="one", clock=running_clock(desk))
        try:
            await sender.deliver_due()
            rows = await WebhookDelivery.filter().order_by("id")
        finally:
            await sender.close()
    assert [r.status for r in rows] == ["failed"] * 3
    assert rows[0].last_error.startswith("HTTP 400 from http://127.0.0.1:") and rows[0].attempts == 1
    assert len(server.requests) == 3  # once each: no retry storm
    assert sender.metrics.webhook_failed["chat"] == 3


async def test_too_many_requests_waits_as_long_as_retry_after_says(tmp_path: Path, server: WebhookServer) -> None:
    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "chat"'))
    server.answer(429, retry_after="120")
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("Hello")
        sender = WebhookSender(cfg.webhooks, instance="one", clock=desk.clock)
        try:
            await sender.deliver_due()
            await sender.deliver_due()  # not due yet: no second request
            [row] = await WebhookDelivery.all()
            assert row.status == "pending" and row.attempts == 1 and "HTTP 429" in row.last_error
            assert (row.next_try_at - desk.clock.now).total_seconds() == pytest.approx(120, abs=1)
            server.answer(200)
            desk.clock.now += timedelta(seconds=121)
            await sender.deliver_due()
        finally:
            await sender.close()
    assert server.answered == [429, 200]


async def test_an_endpoint_failing_past_give_up_after_fails_the_event(tmp_path: Path, server: WebhookServer) -> None:
    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "chat"\ngive_up_after = 60'))
    server.answer(503)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("Hello")
        sender = WebhookSender(cfg.webhooks, instance="one", clock=desk.clock)
        try:
            await sender.deliver_due()
            desk.clock.now += timedelta(seconds=61)
            await sender.deliver_due()
        finally:
            await sender.close()
        [row] = await WebhookDelivery.all()
    assert row.status == "failed" and row.last_error.startswith("gave up after 60 s: HTTP 503")


async def test_two_instances_on_one_database_deliver_each_event_once_in_order(
        tmp_path: Path, server: WebhookServer) -> None:
    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "chat"'))
    server.answer(200, delay=0.02)  # slow enough that the two overlap
    async with database(cfg.database_url):
        desk = Desk(cfg)
        for i in range(12):
            await desk.mail(simple(ANN, f"T{i}", f"<t{i}@example.org>", to=SUPPORT))
        senders = [WebhookSender(cfg.webhooks, instance=name, poll=0.05, clock=running_clock(desk)) for name in "ab"]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(s.run(stop)) for s in senders]
        try:
            assert await eventually(_none_pending, timeout=20)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            for s in senders:
                await s.close()
    numbers = [r.json["ticket"]["number"] for r in server.requests]
    assert numbers == list(range(1, 13))
    assert sum(s.metrics.webhook_delivered["chat"] for s in senders) == 12


async def test_queues_and_events_choose_what_a_webhook_gets(tmp_path: Path, server: WebhookServer) -> None:
    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "solved"\nevents = ["solved"]',
                                 'name = "other"\nqueues = ["billing"]'))
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("Hello")
        await desk.agent(1, "#status solved\nDone.")
        rows = await WebhookDelivery.all().values_list("webhook", "event")
    assert rows == [("solved", "solved")]


async def test_breaches_and_escalations_are_events_too(tmp_path: Path, server: WebhookServer) -> None:
    from tests.sla.test_escalate import MATRIX

    cfg = config(tmp_path, MATRIX + hooks(tmp_path, server, 'name = "sla"\nevents = ["breached", "escalated"]'))
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        await desk.later(timedelta(minutes=45))  # warned (no webhook event)
        await desk.later(timedelta(minutes=15))  # the first response is breached; Tier 2 at once
        rows = await WebhookDelivery.all().order_by("id")
    bodies = [json.loads(r.body) for r in rows]
    assert [b["event"] for b in bodies] == ["breached", "escalated"]
    assert bodies[0]["detail"]["target"] == "first_response" and "due" in bodies[0]["detail"]
    assert {k: bodies[1]["detail"][k] for k in ("tier", "level", "target")} == {
        "tier": "Tier 2", "level": 1, "target": "first_response"}
    assert bodies[1]["ticket"]["priority"] == "P1"


async def test_include_text_puts_an_excerpt_of_the_mail_in(tmp_path: Path, server: WebhookServer) -> None:
    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "with"\ninclude_text = true', 'name = "without"'))
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("The printer is on fire." + " x" * 400)
        rows = {r.webhook: json.loads(r.body) for r in await WebhookDelivery.all()}
    assert rows["with"]["detail"]["text"].startswith("The printer is on fire.")
    assert len(rows["with"]["detail"]["text"]) == 500 and "text" not in rows["without"]["detail"]
    assert rows["with"]["id"] == rows["without"]["id"]  # one event, told to two webhooks


async def test_tls_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = WebhookServer(tls_dir=tmp_path / "tls").start()
    try:
        cfg = config(tmp_path, hooks(tmp_path, server, 'name = "tls"'))
        async with database(cfg.database_url):
            desk = Desk(cfg)
            await desk.customer("Hello")
            untrusting = WebhookSender(cfg.webhooks, instance="one", clock=running_clock(desk))
            try:
                await untrusting.deliver_due()
            finally:
                await untrusting.close()
            [row] = await WebhookDelivery.all()
            assert row.status == "pending" and "CERTIFICATE_VERIFY_FAILED" in row.last_error
            assert server.requests == []
            monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "tls" / "cert.pem"))  # now the test's CA is trusted
            trusting = WebhookSender(cfg.webhooks, instance="two", clock=running_clock(desk))
            try:
                await deliver_all(trusting)
            finally:
                await trusting.close()
    finally:
        server.stop()
    assert [r.json["event"] for r in server.delivered()] == ["created"]


async def test_retention_empties_the_bodies_of_a_closed_tickets_delivered_events(
        tmp_path: Path, server: WebhookServer) -> None:
    from ticketd.daemon.retention import prune

    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "chat"'))
    async with database(cfg.database_url):
        desk = Desk(cfg)
        sender = WebhookSender(cfg.webhooks, instance="one", clock=running_clock(desk))
        try:
            await desk.customer("Hello")
            await desk.agent(1, "#status closed\nDone.")
            await deliver_all(sender)
            server.stop()
            await desk.customer("Another")
            await desk.agent(2, "#status closed\nDone too.")
            await sender.deliver_due()  # refused: ticket 2's events stay pending
        finally:
            await sender.close()
        assert (await prune(1, desk.clock.now + timedelta(days=2))).tickets == 2
        rows = await WebhookDelivery.all().order_by("id").values_list("ticket__number", "status", "body")
    assert [(n, status, body == "") for n, status, body in rows] == [
        (1, "delivered", True), (1, "delivered", True), (2, "pending", False), (2, "pending", False)]


async def test_status_counts_what_waits(tmp_path: Path, server: WebhookServer) -> None:
    from tests.support.daemon import cli, cli_json

    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "chat"'))
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("Hello")
    [hook] = cli_json(cfg.path, "status", "--json")["webhooks"]
    assert (hook["name"], hook["url"], hook["pending"], hook["failed"]) == (
        "chat", f"http://127.0.0.1:{server.port}", 1, 0)
    shown = cli(cfg.path, "status")
    line = f"webhook chat (http://127.0.0.1:{server.port}): 1 pending"
    assert shown.returncode == 0 and line in shown.stdout.decode()


async def test_a_claim_holds_until_it_expires_and_only_the_first_pending_row_is_claimable(
        tmp_path: Path, server: WebhookServer) -> None:
    from ticketd.storage import webhooks

    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "chat"'))
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await three_tickets(desk)
        now = desk.clock.now
        first = await webhooks.claim("chat", "dead", now, now + timedelta(seconds=30))  # then it crashed
        assert first is not None and first.event == "created"
        assert await webhooks.claim("chat", "alive", now + timedelta(seconds=29), now + timedelta(seconds=60)) is None
        again = await webhooks.claim("chat", "alive", now + timedelta(seconds=31), now + timedelta(seconds=60))
        assert again is not None and again.id == first.id  # the expired claim is free again, and still first
        assert not await webhooks.retry(first.id, "dead", now, "late")  # no longer its claim: refused
        assert await webhooks.delivered(first.id, now)  # a 2xx is a fact, whoever got it
        assert not await webhooks.retry(first.id, "alive", now, "HTTP 500")  # the other's outcome changes nothing
        assert not await webhooks.delivered(first.id, now)  # once
        second = await webhooks.claim("chat", "alive", now, now + timedelta(seconds=60))
        assert second is not None and second.id > first.id


def test_the_metrics_name_each_webhook() -> None:
    from ticketd.daemon.metrics import Metrics
    from ticketd.daemon.metrics_http import TicketdCollector

    metrics = Metrics()
    metrics.webhook_delivered["chat"] += 2
    metrics.webhook_failed["chat"] += 1
    metrics.webhook_pending = {"chat": 4}
    samples = {(s.name, s.labels.get("webhook")): s.value for family in TicketdCollector(metrics, []).collect()
               for s in family.samples}
    assert samples[("ticketd_webhook_delivered_total", "chat")] == 2
    assert samples[("ticketd_webhook_failed_total", "chat")] == 1
    assert samples[("ticketd_webhook_pending", "chat")] == 4


async def test_the_same_mail_twice_is_one_event(tmp_path: Path, server: WebhookServer) -> None:
    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "chat"'))
    async with database(cfg.database_url):
        desk = Desk(cfg)
        raw = simple(ANN, "Twice", "<twice@example.org>", to=SUPPORT)
        first, second = await desk.mail(raw), await desk.mail(raw)
        assert (first.status, second.status) == ("processed", "duplicate")
        assert await WebhookDelivery.all().values_list("event", flat=True) == ["created"]


async def test_a_group_rolled_back_and_done_again_writes_each_event_once(
        tmp_path: Path, server: WebhookServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from ticketd.daemon import commit
    from ticketd.storage import intake

    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "chat"'))
    real, calls = commit.bulk.update_rows, []

    async def failing_once(*args):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:  # the group's last statement, after its webhook rows were written
            raise RuntimeError("the end of the group failed")
        return await real(*args)

    monkeypatch.setattr(commit.bulk, "update_rows", failing_once)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        raws = [simple(ANN, subject, f"<{subject}@example.org>", to=SUPPORT) for subject in ("One", "Two", "Three")]
        rows = [await intake.store_one(intake.Incoming(raw=raw, size=len(raw)), cfg.max_message_bytes) for raw in raws]
        outcomes = await desk.processor.process(rows, cfg.mailboxes[0])  # one group: rolled back, then one by one
        assert [o.status for o in outcomes] == ["processed"] * 3 and len(calls) == 4
        bodies = await WebhookDelivery.all().order_by("id").values_list("body", flat=True)
    assert [json.loads(b)["ticket"]["subject"] for b in bodies] == ["One", "Two", "Three"]


async def test_a_webhook_added_by_a_reload_is_delivered_and_a_removed_one_stops(
        tmp_path: Path, server: WebhookServer) -> None:
    from ticketd.daemon.config import load_config

    cfg = config(tmp_path, hooks(tmp_path, server, 'name = "old"'))
    both = load_config(config(tmp_path, hooks(tmp_path, server, 'name = "old"', 'name = "new"')).path)
    async with database(cfg.database_url):
        desk = Desk(both)  # the events are written for both (the pipeline's half of the reload)
        sender = WebhookSender(cfg.webhooks, instance="one", poll=0.05, clock=running_clock(desk))
        stop = asyncio.Event()
        running = asyncio.create_task(sender.run(stop))
        try:
            await desk.customer("Hello")
            assert await eventually(lambda: _delivered_to("/old", server), timeout=10)
            sender.reconfigure(both.webhooks)
            assert await eventually(lambda: _delivered_to("/new", server), timeout=10)
            sender.reconfigure(tuple(h for h in both.webhooks if h.name == "new"))
            assert await eventually(lambda: _stopped(sender, "old"), timeout=10)
            await desk.customer("Again")
            assert await eventually(lambda: _delivered_to("/new", server, 2), timeout=10)
        finally:
            stop.set()
            await running
            await sender.close()
        assert await WebhookDelivery.filter(webhook="old", status="pending").count() == 1  # kept, not lost


async def _delivered_to(path: str, server: WebhookServer, n: int = 1) -> bool:
    return len([r for r in server.delivered() if r.path == path]) >= n


async def _stopped(sender: WebhookSender, name: str) -> bool:
    return name not in sender._tasks
