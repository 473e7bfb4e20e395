"""An agent's mail inside a commit group: his reply recorded and relayed, or refused and explained.

Rare next to customer mail, so it keeps the ORM's clarity after flushing the group's writes
(as daemon.bounce_commit does). Either every command of a reply is applied, or none is: a
refused command leaves the ticket as it was, the mail stored as an internal note, and the
agent told why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ticketd.daemon import commands, lifecycle
from ticketd.daemon.agent_mail import AgentMail
from ticketd.daemon.config_agents import AgentConfig, Team
from ticketd.daemon.filters import Decision
from ticketd.daemon.parsers.model import ParsedMessage
from ticketd.daemon.relay import relay_draft, thread_of
from ticketd.daemon.threader import subject_tags
from ticketd.daemon.ticket_steps import change_queue, change_status, notify_assignee, restart_steps
from tortoise.expressions import F

from ticketd.storage.models import AgentAway, InboundMessage, InboundStatus, Participant, Ticket
from ticketd.storage.writes import TicketRow, load_tickets

if TYPE_CHECKING:
    from ticketd.daemon.commit import Commit, Outcome

log = logging.getLogger("ticketd.pipeline")


@dataclass
class Plan:
    """What a reply's commands will change, checked in full before anything is written."""

    status: str | None = None
    priority: str | None = None
    assignee: AgentConfig | None = None
    queue: str | None = None
    cc: list[tuple[str, str]] = field(default_factory=list)
    away: commands.Command | None = None
    back: bool = False
    errors: list[str] = field(default_factory=list)


async def record(commit: Commit, row: InboundMessage, msg: ParsedMessage, decision: Decision | None,
                 mail: AgentMail) -> Outcome:
    """The agent's mail: a reply to its ticket if it proved itself, else a customer's message."""
    await commit.writes.flush()  # what this group wrote so far is visible to the ORM below
    ticket = None
    if mail.accepted and mail.ticket_number is not None:
        found = await load_tickets(set(), {mail.ticket_number})
        ticket = found[0] if found else None
    if ticket is None and mail.ticket_number is None and mail.authenticated and mail.tell_agent:
        away = await _away_mail(commit, row, msg, mail.agent)
        if away is not None:
            return away
        if commit.config.lifecycle.forwarded_on_behalf:
            forwarded = await _forwarded(commit, row, msg, decision, mail.agent)
            if forwarded is not None:
                return forwarded
    if ticket is None:
        return await _refused(commit, row, msg, decision, mail,
                              mail.refused or f"ticket #{mail.ticket_number} does not exist")
    threaded = commit.threads.find(msg)
    answered = [n for n in subject_tags(msg.subject) if n != ticket.number]
    if threaded is not None and threaded.ticket.id != ticket.id:
        answered.append(threaded.ticket.number)
    if answered:
        # A token proves one ticket only: answering another with it (a token seen elsewhere) proves nothing.
        return await _refused(commit, row, msg, decision, mail,
                              f"it reached the signed reply address of ticket #{ticket.number} but answers "
                              f"ticket #{answered[0]}")
    return await _reply(commit, row, msg, mail.agent, commit.threads.tickets.get(ticket.id, ticket))


async def _refused(commit: Commit, row: InboundMessage, msg: ParsedMessage, decision: Decision | None,
                   mail: AgentMail, why: str) -> Outcome:
    """Stored as a customer's message (no command, no relay, no acknowledgement); the agent is told."""
    outcome = await commit._to_ticket(row, msg, decision, respond=False)
    log.warning("mail from agent %s not taken as his reply (ticket #%s): %s", mail.agent.address,
                outcome.ticket_number, why)
    ticket = commit.threads.tickets.get(row.ticket_id or 0)
    if ticket is not None:
        commit.writes.event(ticket.id, "agent_mail_refused", {"inbound": row.id, "reason": why},
                            who=mail.agent.address)
        if mail.tell_agent:
            _notice(commit, ticket, mail.agent, msg, "Not relayed: " + (msg.subject or "(no subject)"), [
                f"Your mail was stored on ticket #{ticket.number} as a customer's message, and nobody else "
                f"received it: {why}.", "No command in it was run."])
    return outcome


async def _reply(commit: Commit, row: InboundMessage, msg: ParsedMessage, agent: AgentConfig,
                 ticket: TicketRow) -> Outcome:
    from ticketd.daemon.commit import Outcome

    parsed = commands.parse(_new_text(msg))
    team: Team = commit.config.team
    plan = _plan(parsed, team, commit.config)
    internal = parsed.note or bool(plan.errors)
    article = await commit.article(ticket, row, msg, internal=internal, author="agent", new_text=parsed.text)
    row.status, row.ticket_id = InboundStatus.PROCESSED, ticket.id
    if plan.errors:
        commit.writes.event(ticket.id, "commands_refused", {"article": article, "errors": plan.errors},
                            who=agent.address)
        _notice(commit, ticket, agent, msg, "Nothing was done: " + (msg.subject or "(no subject)"), [
            "Your mail was stored on the ticket as an internal note and not sent to the customer. "
            "None of its commands was run:", *plan.errors, "Correct the command and send the reply again."])
        log.warning("ticket #%d: commands of %s refused: %s", ticket.number, agent.address, "; ".join(plan.errors))
        return Outcome(row.id, row.status, ticket.number, False, 1)
    await _followers(commit, ticket, plan, agent)  # first: a follower added now gets this reply
    relayed = 0
    if not parsed.note and (parsed.text.strip() or _attachments(msg)):
        relayed = await _relay(commit, ticket, agent, parsed.text, msg)
    # The reply before what its commands did: the ticket's history (and the webhooks) read
    # "answered, then solved" as it happened, not "solved, then answered".
    commit.writes.event(ticket.id, "note" if parsed.note else "agent_reply",
                        {"article": article, "inbound": row.id, "relayed": bool(relayed),
                         "commands": [c.line for c in parsed.commands]}, who=agent.address)
    await _apply(commit, ticket, plan, agent, relayed=bool(relayed), note=parsed.note)
    if commit.config.sla is not None and (relayed or plan.priority or plan.queue):
        from ticketd.daemon.sla.schedule import reschedule_sla

        await reschedule_sla(commit, ticket.id)  # first response met, next update restarts, new policy
    log.info("%s agent %s %s ticket #%d", msg.message_id or "(no Message-ID)", agent.address,
             "noted on" if parsed.note else "answered", ticket.number)
    return Outcome(row.id, row.status, ticket.number, False, relayed)


async def _away_mail(commit: Commit, row: InboundMessage, msg: ParsedMessage, agent: AgentConfig) -> Outcome | None:
    """``#away [until DATE]`` or ``#back`` mailed to the support address: no ticket is about it.

    No token proves such mail (an agent writes it fresh), so the agent is told what was set: a
    forged one is seen at once, and it only keeps new tickets from being assigned to him.
    """
    from ticketd.daemon.commit import Outcome

    parsed = commands.parse(_new_text(msg))
    names = {c.name for c in parsed.commands}
    if parsed.errors or names not in ({"away"}, {"back"}):
        return None
    away = parsed.commands[-1] if names == {"away"} else None
    until = await _set_away(commit, agent.address, away)
    if away is None:
        said = "You are back"
    else:
        said = f"You are away until {until:%Y-%m-%d %H:%M} UTC" if until else "You are away until you send #back"
    row.status, row.reason = InboundStatus.PROCESSED, f"agent command from {agent.address}: {parsed.commands[-1].line}"
    from ticketd.daemon.notices import notice_draft

    commit._outbound_row(None, notice_draft(commit.config, agent.address, said, [
        said + ": new tickets are " + ("not " if away is not None else "") + "assigned to you.",
        "If you did not send this, reply with #back (or #away) to set it right."],
        in_reply_to=msg.message_id))
    log.info("agent %s: %s", agent.address, said)
    return Outcome(row.id, row.status, None, False, 1, row.reason)


async def _forwarded(commit: Commit, row: InboundMessage, msg: ParsedMessage, decision: Decision | None,
                     agent: AgentConfig) -> Outcome | None:
    """An agent's ``Fwd:`` of a customer's mail: a ticket for that customer, as if he had written.

    The customer is acknowledged and the queue notified as for any new ticket; the forward as
    the agent sent it stays stored (inbound_raw), and an event says who forwarded it.
    """
    from ticketd.daemon.forwarded import original

    found = original(msg)
    if found is None:
        return None
    sender = found.sender.email.lower()
    if sender in commit.config.own_addresses or commit.config.team.agent_by_address(sender) is not None:
        return None  # an agent forwarding his own or a colleague's mail: no customer to act for
    on_behalf = replace(msg, from_=found.sender, reply_to=(), sender=None, subject=found.subject or msg.subject,
                        text=found.text, new_text=found.text, in_reply_to=(), references=())
    outcome = await commit._to_ticket(row, on_behalf, decision)
    if row.ticket_id is not None:
        commit.writes.event(row.ticket_id, "forwarded", {"by": agent.address, "for": sender, "inbound": row.id},
                            who=agent.address)
    log.info("%s forwarded by agent %s: ticket #%s for %s", msg.message_id, agent.address, outcome.ticket_number,
             sender)
    return outcome


def _new_text(msg: ParsedMessage) -> str:
    return msg.new_text or msg.text


def _attachments(msg: ParsedMessage) -> tuple[Any, ...]:
    return tuple(a for a in msg.attachments if not a.inline)


def _plan(parsed: commands.Parsed, team: Team, config: Any) -> Plan:
    plan = Plan(errors=list(parsed.errors))
    plan.status, plan.priority = parsed.value("status"), parsed.value("priority")
    wanted = parsed.value("assign")
    if wanted is not None:
        plan.assignee = _agent_named(team, wanted)
        if plan.assignee is None:
            plan.errors.append(f"#assign {wanted}: no agent has that address or name")
    queue = parsed.value("queue")
    if queue is not None:
        known = {q.name for q in team.queues} | {b.name for b in (*config.mailboxes, *config.addresses)}
        if queue not in known:
            plan.errors.append(f"#queue {queue}: no such queue (known: {', '.join(sorted(known)) or 'none'})")
        plan.queue = queue
    own = config.own_addresses
    for action, address in parsed.cc:
        if address in own or team.agent_by_address(address) is not None:
            plan.errors.append(f"#cc {action} {address}: an agent's or our own address cannot follow a ticket")
        plan.cc.append((action, address))
    away = [c for c in parsed.commands if c.name == "away"]
    plan.away = away[-1] if away else None
    plan.back = parsed.value("back") is not None
    if plan.away is not None and plan.back:
        plan.errors.append("#away and #back in one mail: say which")
    return plan


def _agent_named(team: Team, wanted: str) -> AgentConfig | None:
    found = team.agent_by_address(wanted.strip("<>"))
    if found is not None:
        return found
    named = [a for a in team.agents if a.name.casefold() == wanted.casefold()]
    return named[0] if len(named) == 1 else None


async def _relay(commit: Commit, ticket: TicketRow, agent: AgentConfig, text: str, msg: ParsedMessage) -> int:
    followers: tuple[str, ...] = ()
    if commit.config.lifecycle.followers:
        team: Team = commit.config.team
        people = await Participant.filter(ticket_id=ticket.id, following=True).values_list("email", flat=True)
        followers = tuple(sorted(p for p in people if p != ticket.requester and team.agent_by_address(p) is None
                                 and p not in commit.config.own_addresses))
    people = ((ticket.requester,) if ticket.requester else ()) + followers
    if not people:  # a ticket with no address to answer (its first mail had none): the reply stays stored
        return 0
    draft = relay_draft(commit.config, agent, ticket.number, ticket.subject, people[:1], people[1:], text,
                        _attachments(msg), await thread_of(ticket.id))
    commit._outbound_row(ticket, draft)
    return 1


async def _apply(commit: Commit, ticket: TicketRow, plan: Plan, agent: AgentConfig, relayed: bool,
                 note: bool) -> None:
    now, who = commit.now, agent.address
    updates: dict[str, Any] = {}
    if relayed:
        updates["agent_replies"] = F("agent_replies") + 1
        await Ticket.filter(id=ticket.id, first_response_at=None).update(first_response_at=now)
    if plan.priority and plan.priority != ticket.priority:
        commit.writes.event(ticket.id, "priority_changed", {"from": ticket.priority, "to": plan.priority}, who=who)
        updates["priority"] = ticket.priority = plan.priority
    if plan.queue:
        await change_queue(commit, ticket, plan.queue, who)
    if plan.assignee is not None:
        updates["assignee"] = plan.assignee.address
        commit.writes.event(ticket.id, "assigned", {"to": plan.assignee.address}, who=who)
        if plan.assignee.address != agent.address:
            notify_assignee(commit, ticket, plan.assignee.address)
    if plan.away is not None or plan.back:
        await _set_away(commit, who, plan.away)
    wanted = plan.status if note else lifecycle.agent_reply(ticket.status, plan.status)
    if updates:
        await Ticket.filter(id=ticket.id).update(updated_at=now, **updates)
    if wanted is not None and wanted != ticket.status:
        await change_status(commit, ticket, wanted, who)
    elif relayed and ticket.status == lifecycle.PENDING:  # asked again: the silence counts from now
        await restart_steps(commit, ticket)


async def _set_away(commit: Commit, address: str, away: commands.Command | None) -> datetime | None:
    """``#away`` (its end, None for open-ended) or, with ``away`` None, ``#back``: assignment skips the away."""
    await AgentAway.filter(address=address).delete()
    if away is None:
        return None
    until = commands.away_until(away)
    await AgentAway.create(address=address, until=until, since=commit.now)
    return until


async def _followers(commit: Commit, ticket: TicketRow, plan: Plan, agent: AgentConfig) -> None:
    for action, address in plan.cc:
        await _follow(ticket.id, address, action == "add")
        commit.writes.event(ticket.id, "cc_" + ("added" if action == "add" else "removed"), {"address": address},
                            who=agent.address)


async def _follow(ticket_id: int, address: str, following: bool) -> None:
    if not await Participant.filter(ticket_id=ticket_id, email=address).update(following=following) and following:
        await Participant.create(ticket_id=ticket_id, email=address, following=True)


def _notice(commit: Commit, ticket: TicketRow, agent: AgentConfig, msg: ParsedMessage, subject: str,
            lines: list[str]) -> None:
    from ticketd.daemon.notices import notice_draft

    draft = notice_draft(commit.config, agent.address, subject, lines, in_reply_to=msg.message_id,
                         references=(*msg.references[-5:], msg.message_id) if msg.message_id else ())
    commit._outbound_row(ticket, draft)
