"""``ticketd rules test FILE.eml``: what the pipeline would decide, without the database or mail."""

from __future__ import annotations

from typing import Any

from ticketd.daemon.config import Config
from ticketd.daemon.filters.registry import build_filters
from ticketd.daemon.prepare import parse_or_reason, run_filters
from ticketd.daemon.filters import FilterContext
from ticketd.daemon.responders.acknowledgement import Acknowledgement, reply_address
from ticketd.daemon.responders import TicketView
from ticketd.daemon.rules import classify, match_articles
from ticketd.storage import clock


async def explain(config: Config, raw: bytes, mailbox: str) -> dict[str, Any]:
    """Each filter's verdict, the classification with the rules that fired, and the reply."""
    parsed = parse_or_reason(raw)
    if isinstance(parsed, str):
        return {"readable": False, "reason": parsed, "outcome": "quarantine"}
    ctx = FilterContext(parsed, raw, mailbox, config.own_addresses, clock.now())
    decision = await run_filters(build_filters(config.filters), ctx)
    rules = classify(parsed, mailbox, config.rules)
    outcome = {"reject": "rejected (kept, no ticket)", "quarantine": "quarantined (no ticket)",
               "defer": "deferred to a later pass"}.get(decision.action, "ticket (new, or added to an existing one)")
    if decision.detail("bounce"):
        outcome = "bounce: added to the ticket of the bounced message, never a new ticket"
    ticket = TicketView(0, parsed.subject, "new", rules.priority, rules.category, rules.queue or mailbox,
                        parsed.requester.email if parsed.requester else "",
                        parsed.requester.name if parsed.requester else "",
                        rules.tags)
    ack = Acknowledgement(config)
    return {
        "readable": True, "subject": parsed.subject, "from": str(parsed.from_ or ""), "mailbox": mailbox,
        "filters": [{"filter": name, "action": v.action, "reason": v.reason, "tags": list(v.tags),
                     "no_auto_reply": v.no_auto_reply} for name, v in decision.verdicts],
        "decision": decision.action, "outcome": outcome,
        "classification": {"priority": rules.priority, "category": rules.category,
                           "queue": rules.queue or mailbox, "tags": list(rules.tags), "fired": list(rules.fired),
                           "reasons": list(getattr(rules, "reasons", ())), "first_response": rules.first_response},
        "articles": [{"title": a.title, "url": a.url} for a in match_articles(parsed, config.rules)],
        "acknowledgement": _ack_summary(ack, ticket, decision.no_auto_reply or decision.action != "accept"
                                        and decision.action != "tag", reply_address(parsed)),
    }


def _ack_summary(ack: Acknowledgement, ticket: TicketView, quiet: bool, recipient: str) -> str:
    if quiet:
        return "none: the filters ruled out an automatic reply"
    if not recipient:
        return "none: no address to answer"
    return (f"to {recipient} from template {ack.template_for(ticket).path} "
            "(if this opens a new ticket; per-recipient limits and bounce suppression are checked at run time)")


def render_text(result: dict[str, Any], path: str) -> str:
    if not result["readable"]:
        return f"{path}: unreadable ({result['reason']}) -> {result['outcome']}"
    lines = [f"{path}", f"  from:     {result['from']}", f"  subject:  {result['subject']}",
             f"  mailbox:  {result['mailbox'] or '-'}", "  filters:"]
    for f in result["filters"]:
        extra = f" ({f['reason']})" if f["reason"] else ""
        tags = f" tags={','.join(f['tags'])}" if f["tags"] else ""
        lines.append(f"    {f['filter']:<10} {f['action']}{extra}{tags}")
    c = result["classification"]
    lines += [f"  decision: {result['decision']} -> {result['outcome']}",
              f"  priority: {c['priority']}   queue: {c['queue'] or '-'}   category: {c['category'] or '-'}"
              f"   tags: {', '.join(c['tags']) or '-'}",
              f"  rules fired: {', '.join(c['fired']) or '(none: defaults apply)'}"]
    lines += [f"    - {reason}" for reason in c["reasons"]]
    if result["articles"]:
        lines.append("  help articles: " + "; ".join(a["title"] for a in result["articles"]))
    lines.append(f"  acknowledgement: {result['acknowledgement']}")
    return "\n".join(lines)
