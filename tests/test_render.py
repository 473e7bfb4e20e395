"""`tickets show` for a person: the conversation in order, internal notes marked, nothing a terminal acts on."""

from __future__ import annotations

from typing import Any

from ticketd.daemon import render
from ticketd.daemon.terminal import safe_text

OSC52 = "\x1b]52;c;aGk=\x07"


def _article(id: int, author: str, sender: str, at: str, new_text: str, text: str | None = None,
             internal: bool = False) -> dict[str, Any]:
    return {"id": id, "direction": "out" if author == "system" else "in", "author": author, "from": sender,
            "to": "", "cc": "", "subject": "", "date": None, "created_at": at, "message_id": f"<{id}@x>",
            "internal": internal, "new_text": new_text, "text": new_text if text is None else text,
            "attachments": []}


def _event(what: str, at: str, detail: dict[str, Any], who: str = "") -> dict[str, Any]:
    return {"what": what, "who": who, "at": at, "detail": detail}


def _ticket(articles: list[dict[str, Any]], events: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"number": 7, "subject": "VPN", "status": "open", "priority": "P2", "category": "", "queue": "it",
            "requester": "ann@example.org", "requester_name": "Ann", "mailbox": "support", "assignee": None,
            "created_at": "2026-03-02T09:00:00+00:00", "updated_at": "2026-03-02T09:00:00+00:00",
            "article_count": len(articles), "fired_rules": [], "tags": [], "csat": None, "first_response_at": None,
            "solved_at": None, "closed_at": None, "reopen_count": 0, "agent_replies": 0, "followers": [],
            "linked_to": None, "articles": articles, "events": events, **extra}


NINE, TEN, ELEVEN = "2026-03-02T09:00:00+00:00", "2026-03-02T10:00:00+00:00", "2026-03-02T11:00:00.250000+00:00"
CONVERSATION = _ticket(
    [_article(1, "customer", "ann@example.org", NINE, "VPN down."),
     _article(2, "system", "support@example.test", NINE, "We got it."),  # our acknowledgement: no event
     _article(3, "agent", "bob@example.test", TEN, "Restart it.", "Restart it.\n\n> VPN down.\n-- \nBob"),
     _article(4, "agent", "bob@example.test", TEN, "She is a VIP", internal=True),
     _article(5, "customer", "ann@example.org", ELEVEN, "Works, thanks")],
    [_event("created", NINE, {"article": 1}, "ann@example.org"),
     _event("article", TEN, {"article": 3}, "bob@example.test"),
     # One commit group, one time: the agent's note, then the status change it asked for.
     _event("article", TEN, {"article": 4}, "bob@example.test"),
     _event("status_changed", TEN, {"from": "open", "to": "pending"}, "bob@example.test"),
     _event("status_changed", ELEVEN, {"from": "pending", "to": "open"}, "system"),
     _event("article", ELEVEN, {"article": 5}, "ann@example.org")],
    assignee="bob@example.test", followers=["cc@example.org", "zoe@example.org"], csat=5)


def test_articles_and_status_changes_come_in_the_order_they_happened() -> None:
    order = [(kind, item["id"] if kind == "article" else item["detail"].get("to"))
             for kind, item in render.conversation(CONVERSATION)]
    assert order == [("article", 1), ("article", 2), ("article", 3), ("article", 4), ("event", "pending"),
                     ("event", "open"), ("article", 5)]


def test_an_article_no_event_names_goes_by_the_time_it_was_stored() -> None:
    late = _ticket([_article(1, "customer", "a@x", NINE, "one"), _article(2, "system", "s@x", ELEVEN, "ack")],
                   [_event("created", NINE, {"article": 1}),
                    _event("status_changed", TEN, {"from": "new", "to": "open"})])
    assert [kind for kind, _ in render.conversation(late)] == ["article", "event", "article"]


def test_show_reads_as_a_conversation() -> None:
    text = render.ticket_detail(CONVERSATION)
    assert text.index("VPN down.") < text.index("Restart it.") < text.index("She is a VIP") \
        < text.index("status open -> pending") < text.index("status pending -> open") < text.index("Works, thanks")
    assert "--- ann@example.org (customer), 2026-03-02T09:00:00+00:00" in text
    assert "--- support@example.test (system), " in text
    assert "--- [internal note] bob@example.test (agent), 2026-03-02T10:00:00+00:00" in text
    assert text.count("[internal note]") == 1
    assert "  * status open -> pending by bob@example.test, 2026-03-02T10:00:00+00:00" in text
    assert "> VPN down." not in text and "Bob" not in text.split("Restart it.")[1].split("---")[0].split("\n")[0]
    assert "(quoted history and signature not shown: --json has the full text)" in text
    for shown in ("  assignee: bob@example.test", "  followers: cc@example.org, zoe@example.org", "  CSAT: 5",
                  "  requester: ann@example.org", "  queue: it"):
        assert shown in text.splitlines()


def test_a_ticket_without_measures_says_so_briefly() -> None:
    text = render.ticket_detail(_ticket([_article(1, "customer", "a@x", NINE, "hi")], []))
    assert "  assignee: -" in text and "  followers: -" in text
    assert "CSAT" not in text and "quoted history" not in text and "continues" not in text


def test_hostile_text_anywhere_in_the_conversation_is_escaped() -> None:
    hostile = _ticket(
        [_article(1, "customer", f"eve{OSC52}@x", NINE, f"new{OSC52}\n\u202eline", f"new{OSC52}\n> q\x1b[2J"),
         _article(2, f"ag\x1b[1m", "bob@x", TEN, "note\x9b", internal=True)],
        [_event("created", NINE, {"article": 1}),
         _event("status_changed", TEN, {"from": "open\x1b[8m", "to": "pending\n\u2066"}, who="b\x07ob"),
         _event("withheld", TEN, {"reason": "limit\x1b]0;t\x07"}, who="system")],
        assignee="bob\x1b[5m@x", followers=["z\u202e@x"], csat="5\x1b[2J", subject=f"S{OSC52}")
    text = render.ticket_detail(hostile)
    assert safe_text(text) == text, [c for c in text if safe_text(c) != c]
    assert "--- eve\\x1b]52;c;aGk=\\x07@x (customer)" in text and "new\\x1b]52;c;aGk=\\x07\n\\u202eline" in text
    assert "status open\\x1b[8m -> pending\\n\\u2066 by b\\x07ob" in text
    assert "\\x1b[2J" not in text.split("CSAT")[0] and "  CSAT: 5\\x1b[2J" in text
    assert "* withheld: limit\\x1b]0;t\\x07 by system" in text and "(ag\\x1b[1m)" in text


def test_the_list_shows_who_a_ticket_is_assigned_to() -> None:
    rows = [{"number": 2, "status": "open", "priority": "P3", "queue": "it", "assignee": "bob\x1b@x",
             "article_count": 1, "requester": "a@x", "subject": "s"},
            {"number": 1, "status": "new", "priority": "P3", "queue": "it", "assignee": None,
             "article_count": 1, "requester": "a@x", "subject": "s"}]
    first, second, total = render.ticket_list(rows).splitlines()
    assert first.split()[4] == "bob\\x1b@x" and second.split()[4] == "-" and total == "2 ticket(s)"


def test_an_escalated_tickets_tier_and_level_and_the_reason_of_each_climb() -> None:
    sla = {"policy": "P2", "tier": None, "escalated_to": "Engineering", "level": 2, "stopped": False,
           "targets": {"first_response": {"due": TEN, "state": "breached", "business_left_seconds": 0}}}
    events = [_event("escalated", ELEVEN, {"tier": "Engineering", "level": 2, "reason": "breach of first_response",
                                           "target": "first_response", "step": 1, "to": []}, "system")]
    text = render.ticket_detail(_ticket([_article(1, "customer", "a@x", NINE, "hi")], events, sla=sla))
    assert "  SLA escalated to: Engineering (level 2)" in text.splitlines()
    assert f"  * escalated: breach of first_response by system, {ELEVEN}" in text
    calm = render.ticket_detail(_ticket([], [], sla={**sla, "escalated_to": None, "level": 0}))
    assert "escalated" not in calm
