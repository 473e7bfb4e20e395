"""The webhook bodies: our JSON as is, chat messages with every customer-written value escaped."""

from __future__ import annotations

import json
from typing import Any

from ticketd.daemon.webhook_format import body, card_escape, markdown_escape, slack_escape

HOSTILE = "<!channel> *urgent* & <https://evil.example|click> @here [x](https://evil.example)"


def payload(event: str = "created", subject: str = "Printer on fire", **detail: Any) -> dict[str, Any]:
    return {"event": event, "id": "e1", "occurred_at": "2026-12-01T09:00:00+00:00",
            "ticket": {"number": 7, "subject": subject, "status": "new", "priority": "P2", "queue": "support",
                       "requester": "ann@example.org", "assignee": None}, "detail": detail}


def test_json_is_the_payload_itself() -> None:
    assert json.loads(body("json", payload())) == payload()


def test_slack_gets_one_line_of_text() -> None:
    text = "New ticket #7: Printer on fire (priority P2, queue support)"
    assert json.loads(body("slack", payload())) == {"text": text}


def test_each_event_has_its_line() -> None:
    def text(event: str, **detail: Any) -> str:
        return str(json.loads(body("slack", payload(event, **detail)))["text"])

    assert text("agent_reply", agent="alice@example.test").startswith("Ticket #7 answered by alice@example.test: ")
    assert text("escalated", tier="Tier 2", level=1).startswith("Ticket #7 escalated to Tier 2 (level 1): ")
    assert text("breached", target="first_response").startswith("Ticket #7 breached its first_response target")
    assert text("solved", by="x").startswith("Ticket #7 solved: ")
    assert text("csat", rating=2).startswith("Ticket #7 rated 2/5: ")
    assert text("escalated").startswith("Ticket #7 escalated to ? (level ?)")  # an older row's detail


def test_a_subject_cannot_mention_link_or_format_in_slack() -> None:
    text = json.loads(body("slack", payload(subject=HOSTILE)))["text"]
    assert "<" not in text and ">" not in text.replace("&gt;", "")
    assert "&lt;!channel&gt;" in text and "&amp;" in text


def test_a_subject_cannot_mention_link_or_format_in_mattermost() -> None:
    shaped = json.loads(body("mattermost", payload(subject=HOSTILE)))
    text = shaped["text"]
    assert "@here" not in text and "\\*urgent\\*" in text and "\\[x\\]\\(https://evil\\.example\\)" in text
    assert shaped["props"]["ticketd"]["ticket"]["subject"] == HOSTILE  # the data itself is kept as it is


def test_teams_gets_an_adaptive_card_with_the_facts() -> None:
    shaped = json.loads(body("teams", payload(subject="A_b")))
    [attachment] = shaped["attachments"]
    assert shaped["type"] == "message" and attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["body"][0]["text"].startswith("New ticket #7: A\\_b")
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts == {"Status": "new", "Priority": "P2", "Queue": "support", "Requester": "ann@example.org"}


def test_escapes() -> None:
    assert slack_escape("a & <b> c") == "a &amp; &lt;b&gt; c"
    assert markdown_escape("@all *x*") == "@\u2060all \\*x\\*"
    assert card_escape("[x](y) a.b@c *d*") == "\\[x\\]\\(y\\) a.b@c \\*d\\*"
