"""The human (non --json) text of tickets and held messages, with every peer string made safe."""

from __future__ import annotations

from typing import Any

from daemon.terminal import safe_line as line
from daemon.terminal import safe_text

# Everything below comes from mail: a subject, an address or a body may carry escape sequences
# (OSC 52 writes the reader's clipboard) or bidi overrides. Fields are cut to width before
# escaping, so an escape is never cut in half.


def ticket_list(tickets: list[dict[str, Any]]) -> str:
    rows = [f"#{t['number']:<6} {line(t['status']):<8} {line(t['priority']):<3} {line(t['queue'][:12]):<12} "
            f"{t['article_count']:>3} {line(t['requester']):<30} {line(t['subject'][:60])}" for t in tickets]
    return "\n".join([*rows, f"{len(tickets)} ticket(s)"])


def ticket_detail(ticket: dict[str, Any]) -> str:
    out = [f"Ticket #{ticket['number']}: {line(ticket['subject'])}"]
    for key in ("status", "priority", "category", "queue", "requester", "created_at", "article_count"):
        out.append(f"  {key}: {line(ticket[key])}")
    out.append(f"  tags: {line(', '.join(ticket['tags'])) or '-'}")
    out.append(f"  rules fired: {line(', '.join(ticket['fired_rules'])) or '(none)'}")
    for event in ticket.get("events", []):
        if event["what"] not in ("created", "article"):  # those are the articles below
            detail = event["detail"]
            why = detail.get("reason") or detail.get("suppression") or detail.get("message_id") or ""
            out.append(f"  event {line(event['at'])} {line(event['what'])}"
                       f"{': ' + line(why) if why else ''}")
    for i, article in enumerate(ticket["articles"], 1):
        kind = line(article["direction"]) + (", internal" if article["internal"] else "")
        out.append(f"\n--- article {i} ({kind}) from {line(article['from'])} at {line(article['date'])}")
        out.append(f"    Message-ID: {line(article['message_id'])}")
        if article["attachments"]:
            out.append("    attachments: " + ", ".join(f"{line(a['filename'] or '(unnamed)')} ({a['size']} bytes)"
                                                   for a in article["attachments"]))
        out.append(safe_text(article["text"].rstrip()))
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
