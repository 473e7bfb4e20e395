"""senders: allow and block lists by address, domain or regular expression."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ticketd.daemon.filters import ACCEPT, REJECT, FilterContext, Verdict


@dataclass(frozen=True)
class SenderList:
    addresses: frozenset[str]
    domains: frozenset[str]  # "example.com" also matches "mail.example.com"
    patterns: tuple[re.Pattern[str], ...]

    def matches(self, address: str) -> str:
        """What matched ``address`` (for the stored reason), or ""."""
        address = address.lower()
        if address in self.addresses:
            return address
        domain = address.rpartition("@")[2]
        for listed in self.domains:
            if domain == listed or domain.endswith("." + listed):
                return f"domain {listed}"
        for pattern in self.patterns:
            if pattern.search(address):
                return f"pattern {pattern.pattern}"
        return ""


@dataclass(frozen=True)
class SendersSettings:
    allow: SenderList
    block: SenderList


def _sender_list(section, key: str) -> SenderList:  # type: ignore[no-untyped-def]
    entries = section.get(key, list, [], expected='an array like ["a@x.com", "@spam.example", "/^bulk-/"]')
    addresses, domains, patterns = set(), set(), []
    for i, entry in enumerate(entries):
        if not isinstance(entry, str) or not entry.strip():
            section.fail(f"{key}[{i}]", "a non-empty string", entry)
        entry = entry.strip()
        if len(entry) > 2 and entry.startswith("/") and entry.endswith("/"):
            try:
                patterns.append(re.compile(entry[1:-1], re.IGNORECASE))
            except re.error as exc:
                section.fail(f"{key}[{i}]", f"a valid regular expression ({exc})", entry)
        elif entry.startswith("@") or "@" not in entry:
            domains.add(entry.lstrip("@").lower())
        else:
            addresses.add(entry.lower())
    return SenderList(frozenset(addresses), frozenset(domains), tuple(patterns))


def load_settings(section) -> SendersSettings:  # type: ignore[no-untyped-def]
    settings = SendersSettings(_sender_list(section, "allow"), _sender_list(section, "block"))
    section.done()
    return settings


class SendersFilter:
    name = "senders"
    description = "Reject blocked senders; allow-listed senders skip the filters after this one"

    def __init__(self, settings: SendersSettings) -> None:
        self.settings = settings

    async def check(self, ctx: FilterContext) -> Verdict:
        sender = ctx.message.requester.email if ctx.message.requester else ""  # as on the ticket
        if hit := self.settings.allow.matches(sender):
            return Verdict(ACCEPT, details={"allowlisted": hit, "final": True})
        if hit := self.settings.block.matches(sender):
            return Verdict(REJECT, reason=f"blocked sender {sender} ({hit})", no_auto_reply=True)
        return Verdict()
