"""Is this mail an agent's reply? Only a signed reply address proves it, never a From header.

An agent answers a notification (whose Reply-To is the ticket's signed address) from his own
mail client. The mail counts as the agent's reply to ticket N only when all of these hold:
- its From is a configured agent's address;
- it reached N's signed reply address (To, Cc, Delivered-To, X-Original-To; daemon.signing);
- with ``signing.require_auth_results``, the trusted MTA's Authentication-Results say it passed;
- it is not automatic mail (an agent's out-of-office answering a notification is no reply).
Anything else from an agent's address is stored as a customer's message, runs no command and
reaches no customer, and the real agent is told why (daemon.agent_reply).
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketd.daemon.config_agents import AgentConfig, Team
from ticketd.daemon.filters.autoreply import automatic_reason
from ticketd.daemon.parsers.model import ParsedMessage
from ticketd.daemon.signing import authentication_passed, signed_ticket


@dataclass(frozen=True)
class AgentMail:
    agent: AgentConfig
    ticket_number: int | None  # the ticket it is a reply to; None when refused
    refused: str = ""  # why it is not taken as the agent's reply ("" when it is)
    tell_agent: bool = True  # not for his autoresponder's mail: a notice would only feed it
    authenticated: bool = True  # False when the trusted MTA's Authentication-Results did not pass

    @property
    def accepted(self) -> bool:
        return not self.refused


def agent_mail(msg: ParsedMessage, team: Team, bases: tuple[str, ...],
               own_addresses: frozenset[str]) -> AgentMail | None:
    """None unless From is an agent's; then whether (and to which ticket) it is his reply."""
    author = msg.from_
    agent = team.agent_by_address(author.email) if author is not None and author.email else None
    signing = team.signing
    if agent is None or signing is None:
        return None
    if signing.require_auth_results:
        domain = agent.address.rpartition("@")[2]
        if not authentication_passed(msg.auth_results, signing.trusted_authserv_id or "", domain):
            return AgentMail(agent, None, "the receiving mail server did not confirm that it came from "
                                          f"{domain} (Authentication-Results)", authenticated=False)
    automatic = automatic_reason(msg, own_addresses)
    if automatic:
        return AgentMail(agent, None, f"it is automatic mail ({automatic})", tell_agent=False)
    number = signed_ticket(msg.headers, bases, signing.key, signing.reply_format)
    if number is None:
        return AgentMail(agent, None, "it did not reach a ticket's signed reply address (answer the "
                                      "notification, or keep its Reply-To address)")
    return AgentMail(agent, number)
