"""An agent's mail in the pipeline: commands all or nothing, notes, followers, away, automatic mail."""

from __future__ import annotations

from datetime import datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path

from ticketd.storage.db import database
from ticketd.storage.models import AgentAway, InboundMessage, OutboundMessage
from tests.support.desk import ALICE, ANN, Desk, config
from tests.support.mail import simple

BOB = "bob@example.test"
TWO_AGENTS = f"""
[[agents]]
name = "Bob Builder"
address = "{BOB}"
"""


async def outbound(kind: str) -> list[OutboundMessage]:
    return await OutboundMessage.filter(kind=kind).order_by("id")


async def test_one_refused_command_runs_none_and_the_mail_becomes_an_internal_note(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("Help me.")
        await desk.agent(1, "#priority P1\n#stauts pending\nOn it.")
        detail = await desk.ticket(1)
        assert (detail["status"], detail["priority"], detail["agent_replies"]) == ("new", "P3", 0)
        assert detail["articles"][-1]["internal"] and detail["articles"][-1]["author"] == "agent"
        assert not await outbound("agent_reply")
        [notice] = await outbound("agent_notice")
        text = message_from_bytes(notice.raw_bytes, policy=policy.default).get_body().get_content()
        assert "#stauts" in text and notice.recipients == [ALICE]


async def test_a_note_is_stored_never_sent_and_commands_beside_it_run(tmp_path: Path) -> None:
    cfg = config(tmp_path, TWO_AGENTS)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("The VPN drops.")
        await desk.agent(1, "#note\n#assign Bob Builder\n#priority P2\nLooks like the firewall again.")
        detail = await desk.ticket(1)
        assert (detail["status"], detail["priority"], detail["assignee"]) == ("new", "P2", BOB)
        assert detail["articles"][-1]["internal"] and "firewall" in detail["articles"][-1]["new_text"]
        assert not await outbound("agent_reply") and detail["first_response_at"] is None
        [assigned] = await outbound("assigned")
        assert assigned.recipients == [BOB]


async def test_queue_moves_the_ticket_and_records_where_from(tmp_path: Path) -> None:
    cfg = config(tmp_path, "[queues.billing]\n")
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("Invoice is wrong.")
        await desk.agent(1, "#queue billing\n#note\nFor billing.")
        await desk.agent(1, "#queue billing\n#note\nStill billing.")  # already there: nothing more recorded
        detail = await desk.ticket(1)
        moves = [(e["detail"], e["who"]) for e in detail["events"] if e["what"] == "queue_changed"]
        assert detail["queue"] == "billing" and moves == [({"from": "support", "to": "billing"}, ALICE)]


async def test_cc_followers_get_the_relayed_reply_and_can_be_removed(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("Invoice is wrong.", extra="Cc: Carl <carl@example.org>")
        await desk.agent(1, "#cc add dora@example.org\nWe are checking it.")
        [first] = await outbound("agent_reply")
        assert first.recipients == [ANN, "carl@example.org", "dora@example.org"]
        await desk.agent(1, "#cc remove carl@example.org\nFixed.")
        second = (await outbound("agent_reply"))[1]
        assert second.recipients == [ANN, "dora@example.org"]
        assert (await desk.ticket(1))["followers"] == ["dora@example.org"]


async def test_an_agents_autoresponder_answering_a_notification_reaches_nobody(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("Urgent question.")
        await desk.agent(1, "I am out of the office until Monday.", extra="Auto-Submitted: auto-replied")
        assert not await outbound("agent_reply") and not await outbound("agent_notice")
        assert (await desk.ticket(1))["status"] == "new"


async def test_away_and_back_mailed_to_the_support_address(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        outcome = await desk.agent(None, "#away until 2026-12-24\n\nAlice")
        assert outcome.ticket_number is None and outcome.status == "processed"
        [away] = await AgentAway.all()
        assert (away.address, away.until) == (ALICE, datetime(2026, 12, 25, tzinfo=timezone.utc))
        assert len(await outbound("agent_notice")) == 1  # told, so that a forged one shows
        await desk.agent(None, "#back")
        assert not await AgentAway.all()
        assert await InboundMessage.filter(ticket_id=None).count() == 2
        assert not (await desk.ticket_list())


async def test_require_auth_results_trusts_only_the_named_server(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    text = (tmp_path / "ticketd.toml").read_text().replace(
        "[signing]\n", '[signing]\nrequire_auth_results = true\ntrusted_authserv_id = "mx.example.test"\n')
    (tmp_path / "ticketd.toml").write_text(text)
    from ticketd.daemon.config import load_config

    cfg = load_config(tmp_path / "ticketd.toml")
    async with database(cfg.database_url):
        desk = Desk(cfg)
        await desk.customer("Broken.")
        forged = "Authentication-Results: mx.evil.example; dkim=pass header.d=example.test"
        await desk.agent(1, "#status solved\nDone.", extra=forged)
        assert (await desk.ticket(1))["status"] == "new" and not await outbound("agent_reply")
        passed = "Authentication-Results: mx.example.test; dkim=pass header.d=example.test"
        await desk.agent(1, "#status solved\nDone.", extra=passed)
        assert (await desk.ticket(1))["status"] == "solved" and len(await outbound("agent_reply")) == 1


async def test_a_forward_from_an_agent_opens_a_ticket_for_the_original_sender(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        body = ("Can you take this one?\n\n---------- Forwarded message ---------\n"
                "From: Erin Example <erin@example.org>\nDate: Tue, 1 Dec 2026 at 09:12\n"
                "Subject: Cannot log in\nTo: Alice <alice@example.test>\n\nMy password reset mail never came.\n")
        outcome = await desk.mail(simple(f"Alice <{ALICE}>", "Fwd: Cannot log in", "<fw1@example.test>",
                                         body=body.replace("\n", "\r\n"), to="support@example.test"))
        assert outcome.new_ticket
        detail = await desk.ticket(outcome.ticket_number)
        assert (detail["requester"], detail["subject"]) == ("erin@example.org", "Cannot log in")
        assert "password reset" in detail["articles"][0]["new_text"]
        assert "forwarded" in [e["what"] for e in detail["events"]]
        [ack] = await outbound("acknowledgement")
        assert ack.recipients == ["erin@example.org"]
