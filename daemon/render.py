"""The human (non --json) text of tickets and held messages, with every peer string made safe."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ticketd.daemon.terminal import safe_line as line
from ticketd.daemon.terminal import safe_text

# Everything below comes from mail: a subject, an address or a body may carry escape sequences
# (OSC 52 writes the reader's clipboard) or bidi overrides. Fields are cut to width before
# escaping, so an escape is never cut in half.


def ticket_list(tickets: list[dict[str, Any]]) -> str:
    rows = [f"#{t['number']:<6} {line(t['status']):<8} {line(t['priority']):<3} {line(t['queue'][:12]):<12} "
            f"{line((t['assignee'] or '-')[:24]):<24} {t['article_count']:>3} {line(t['requester']):<30} "
            f"{line(t['subject'][:60])}" for t in tickets]
    return "\n".join([*rows, f"{len(tickets)} ticket(s)"])


# Events that only say an article came: the article itself is shown in their place.
_ARTICLE_EVENTS = ("created", "article")


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def conversation(ticket: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The ticket's articles and events, ("article" | "event", item), in the order they happened.

    An article that an event names (``detail["article"]``: "created", "article", "bounce") stands
    where that event does, just before it: events are written in the order the pipeline decided,
    so within one commit group (one time for all its rows) their order is the true one. An article
    no event names (our acknowledgement, a relayed reply) follows the article stored just before
    it in the same group, whose consequence it is; else it goes by its own time, before the
    events of that moment.
    """
    keys: dict[int, tuple[datetime, int, int, int, int]] = {}
    items: list[tuple[tuple[datetime, int, int, int, int], tuple[str, dict[str, Any]]]] = []
    articles = {a["id"]: a for a in ticket["articles"]}
    for index, event in enumerate(ticket["events"]):
        at = _when(event["at"])
        named = event["detail"].get("article") if isinstance(event["detail"], dict) else None
        if isinstance(named, int) and named in articles and named not in keys:
            keys[named] = (at, 1, index, 0, 0)
        if event["what"] not in _ARTICLE_EVENTS:
            items.append(((at, 1, index, 1, 0), ("event", event)))
    previous: dict[str, Any] | None = None
    for article in sorted(ticket["articles"], key=lambda a: int(a["id"])):
        if article["id"] not in keys:
            if previous is not None and previous["created_at"] == article["created_at"]:
                earlier = keys[previous["id"]]
                keys[article["id"]] = (*earlier[:4], earlier[4] + 1)
            else:
                keys[article["id"]] = (_when(article["created_at"]), 0, int(article["id"]), 0, 0)
        items.append((keys[article["id"]], ("article", article)))
        previous = article
    return [item for _, item in sorted(items, key=lambda pair: pair[0])]


def _header(ticket: dict[str, Any]) -> list[str]:
    out = [f"Ticket #{ticket['number']}: {line(ticket['subject'])}"]
    for key in ("status", "priority", "queue", "assignee", "requester", "category", "created_at", "article_count"):
        value = ticket[key]
        out.append(f"  {key}: {line(value) if value not in (None, '') else '-'}")
    out.append(f"  followers: {line(', '.join(ticket['followers'])) or '-'}")
    if ticket["csat"] is not None:
        out.append(f"  CSAT: {line(ticket['csat'])}")
    if ticket["linked_to"] is not None:
        out.append(f"  continues: #{line(ticket['linked_to'])}")
    if ticket["reopen_count"]:
        out.append(f"  reopened: {line(ticket['reopen_count'])} time(s)")
    for key in ("first_response_at", "solved_at", "closed_at"):
        if ticket[key]:
            out.append(f"  {key.removesuffix('_at').replace('_', ' ')}: {line(ticket[key])}")
    sla = ticket.get("sla")  # only with [sla]
    if sla:
        out.extend(f"  SLA {name.replace('_', ' ')}: {line(t['state'])}, due {line(t['due'][:16].replace('T', ' '))}"
                   for name, t in sla["targets"].items())
        if sla.get("level"):
            out.append(f"  SLA escalated to: {line(sla['escalated_to'] or '-')} (level {line(sla['level'])})")
    out.append(f"  tags: {line(', '.join(ticket['tags'])) or '-'}")
    out.append(f"  rules fired: {line(', '.join(ticket['fired_rules'])) or '(none)'}")
    return out


def _article(article: dict[str, Any]) -> list[str]:
    note = "[internal note] " if article["internal"] else ""
    when = article["date"] or article["created_at"]
    out = [f"\n--- {note}{line(article['from'])} ({line(article['author'])}), {line(when)}",
           f"    Message-ID: {line(article['message_id'])}"]
    if article["attachments"]:
        out.append("    attachments: " + ", ".join(_attachment(a) for a in article["attachments"]))
    new = article["new_text"].rstrip()
    out.append(safe_text(new))
    if new != article["text"].rstrip():
        out.append("    (quoted history and signature not shown: --json has the full text)")
    return out


def _attachment(item: dict[str, Any]) -> str:
    removed = ", content removed" if item.get("content_removed") else ""  # by retention; the description stays
    return f"{line(item['filename'] or '(unnamed)')} ({item['size']} bytes{removed})"


def _event(event: dict[str, Any]) -> str:
    detail = event["detail"] if isinstance(event["detail"], dict) else {}
    by = f" by {line(event['who'])}" if event["who"] else ""
    if event["what"] == "status_changed":
        return f"  * status {line(detail.get('from', '?'))} -> {line(detail.get('to', '?'))}{by}, {line(event['at'])}"
    why = detail.get("reason") or detail.get("suppression") or detail.get("message_id") or ""
    return f"  * {line(event['what'])}{': ' + line(why) if why else ''}{by}, {line(event['at'])}"


def ticket_detail(ticket: dict[str, Any]) -> str:
    """The conversation as a person reads it: who wrote, when, what they added; what happened between."""
    out, previous = _header(ticket), "header"
    for kind, item in conversation(ticket):
        if kind == "article":
            out.extend(_article(item))
        else:
            out.extend(["", _event(item)] if previous == "article" else [_event(item)])
        previous = kind
    return "\n".join(out)


def quarantine_list(held: list[dict[str, Any]]) -> str:
    rows = [f"{item['id']:<6} {line(item['mailbox'] or '-'):<12} {line(item['message_id'][:40]):<40} "
            f"{line(item['reason'])}" for item in held]
    return "\n".join([*rows, f"{len(held)} message(s) in quarantine"])


def held_message(result: dict[str, Any]) -> str:
    out = [f"Held message {result['id']} ({line(result['status'])}) from mailbox {line(result['mailbox'] or '-')}",
           f"  reason: {line(result['reason'])}"]
    out.extend(f"  {line(name)}: {line(value)}" for name, value in result["headers"].items())
    for name, action, reason, _ in result["verdicts"]:
        out.append(f"  filter {line(name)}: {line(action)}{' (' + line(reason) + ')' if reason else ''}")
    return "\n".join(out)
