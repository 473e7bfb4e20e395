"""A ticket event's webhook body: our JSON, or the incoming-webhook message of Slack, Mattermost or Teams.

Pure functions over plain data. Everything a customer wrote (a subject above all) is escaped
for the target, so a subject can neither format the chat message, nor link, nor ping a
channel: Slack's mrkdwn is escaped as Slack documents it (&, <, >: a mention or link needs
``<...>``); Mattermost's Markdown by backslashes, and an ``@`` there is kept from starting a
mention (``@channel`` in a subject would page everyone); a Teams card's few Markdown
characters by backslashes (a Teams mention needs an entity, never plain text).
"""

from __future__ import annotations

import json
import re
from typing import Any

# What each event's one line says; {n}: number, {s}: subject, plus the event's own fields.
_LINES = {
    "created": "New ticket #{n}: {s}",
    "agent_reply": "Ticket #{n} answered by {agent}: {s}",
    "escalated": "Ticket #{n} escalated to {tier} (level {level}): {s}",
    "breached": "Ticket #{n} breached its {target} target: {s}",
    "solved": "Ticket #{n} solved: {s}",
    "csat": "Ticket #{n} rated {rating}/5: {s}",
}
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")
# Adaptive Cards know only emphasis, links and lists of Markdown; an @ mentions nobody there
# (a mention is an <at> entity), and a backslash before other characters would show.
_CARD = re.compile(r"([\\*_\[\]()~`])")
_MENTION = "@\u2060"  # WORD JOINER after @: shown the same, no longer a mention


def body(fmt: str, payload: dict[str, Any]) -> str:
    """The JSON text POSTed for ``payload`` (see daemon.responders.webhook) in format ``fmt``."""
    if fmt == "json":
        shaped: dict[str, Any] = payload
    elif fmt == "slack":
        shaped = {"text": line(payload, slack_escape)}
    elif fmt == "mattermost":
        # props: Mattermost keeps them with the post, so an integration can read the event.
        shaped = {"text": line(payload, markdown_escape), "props": {"ticketd": payload}}
    elif fmt == "teams":
        shaped = teams_card(payload)
    else:
        raise ValueError(f"unknown webhook format {fmt!r}")
    return json.dumps(shaped, ensure_ascii=False, separators=(",", ":"))


def line(payload: dict[str, Any], escape: Any) -> str:
    """The event in one line, every value from the event escaped by ``escape``."""
    ticket, detail = payload["ticket"], payload.get("detail", {})
    values = {k: escape(str(v)) for k, v in detail.items() if isinstance(v, (str, int, float))}
    text = _LINES[payload["event"]].format_map(_Default(values, n=ticket["number"], s=escape(ticket["subject"])))
    facts = ", ".join(escape(f"{k} {v}") for k, v in _facts(payload) if k in ("priority", "queue"))
    return f"{text} ({facts})" if facts else text


def teams_card(payload: dict[str, Any]) -> dict[str, Any]:
    """An Adaptive Card in the message envelope Teams' incoming webhooks (and Workflows) take."""
    facts = [{"title": k.capitalize(), "value": card_escape(str(v))} for k, v in _facts(payload)]
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4", "body": [{"type": "TextBlock", "text": line(payload, card_escape), "wrap": True,
                                        "weight": "Bolder"}, {"type": "FactSet", "facts": facts}]}
    return {"type": "message",
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}


def _facts(payload: dict[str, Any]) -> list[tuple[str, Any]]:
    ticket = payload["ticket"]
    return [(k, ticket[k]) for k in ("status", "priority", "queue", "requester", "assignee") if ticket.get(k)]


def slack_escape(text: str) -> str:
    """Slack's own rule: only &, < and > are control characters in message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown_escape(text: str) -> str:
    """Mattermost: every Markdown character, and no @mention."""
    return _MARKDOWN.sub(r"\\\1", text).replace("@", _MENTION)


def card_escape(text: str) -> str:
    return _CARD.sub(r"\\\1", text)


class _Default(dict[str, Any]):
    """A field an event lacks (an older row's detail) reads "?", never a KeyError."""

    def __init__(self, values: dict[str, Any], **more: Any) -> None:
        super().__init__(values, **more)

    def __missing__(self, key: str) -> str:
        return "?"
