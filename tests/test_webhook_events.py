"""Webhook events: which events a webhook gets, what they carry, each once; retention, status and metrics of their rows."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from devtools.webhookserver import WebhookServer
from ticketd.daemon.webhook_sender import WebhookSender
from ticketd.storage.db import database
from ticketd.storage.models import WebhookDelivery
from tests.support.desk import ANN, SUPPORT, Desk, config
from tests.support.mail import simple
from tests.support.webhooks import deliver_all, hooks, running_clock, server, three_tickets

__all__ = ["server"]  # the fixture, imported


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
