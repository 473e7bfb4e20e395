"""autoreply: recognise robots (RFC 3834 and common practice) so nobody answers them automatically."""

from __future__ import annotations

from dataclasses import dataclass

from ticketd.daemon.addresses import is_own, local_part
from ticketd.daemon.filters import FilterContext, Verdict
from ticketd.daemon.parsers.model import ParsedMessage

BULK_PRECEDENCE = frozenset({"bulk", "junk", "list"})
ROBOT_HEADERS = ("List-Id", "List-Unsubscribe", "X-Auto-Response-Suppress", "X-Autoreply", "X-Autorespond")
ROBOT_LOCALPARTS = ("mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply", "do-not-reply")


@dataclass(frozen=True)
class AutoReplySettings:
    robot_localparts: tuple[str, ...] = ROBOT_LOCALPARTS


def load_settings(section) -> AutoReplySettings:  # type: ignore[no-untyped-def]
    parts = section.get("robot_localparts", list, list(ROBOT_LOCALPARTS),
                        expected="an array of local parts such as \"noreply\"")
    if not all(isinstance(p, str) and p for p in parts):
        section.fail("robot_localparts", "an array of non-empty strings", parts)
    section.done()
    return AutoReplySettings(tuple(p.lower() for p in parts))


def automatic_reason(message: ParsedMessage, own: frozenset[str], robots: tuple[str, ...] = ROBOT_LOCALPARTS) -> str:
    """Why ``message`` must get no automatic answer, or "" for mail from a person."""
    auto = (message.header("Auto-Submitted") or "no").split(";")[0].strip().lower()
    if auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = (message.header("Precedence") or "").strip().lower()
    if precedence in BULK_PRECEDENCE:
        return f"Precedence: {precedence}"
    for name in ROBOT_HEADERS:
        if message.header(name) is not None:
            return f"{name} present"
    # Ours however written ("Support"@, +tags, an IP literal): answering would mail ourselves.
    for address in (message.from_, message.answer_to):
        if address is not None and address.email and is_own(address.email, own):
            return f"from our own address {address.email}"
    author = message.requester or message.from_
    sender = author.email if author else ""
    if sender and local_part(sender) in robots:
        return f"robot sender {sender}"
    return ""


class AutoReplyFilter:
    name = "autoreply"
    description = "Mark auto-replies, lists and robots (RFC 3834) so they are never answered"

    def __init__(self, settings: AutoReplySettings) -> None:
        self.settings = settings

    async def check(self, ctx: FilterContext) -> Verdict:
        reason = automatic_reason(ctx.message, ctx.own_addresses, self.settings.robot_localparts)
        if not reason:
            return Verdict()
        return Verdict(reason=reason, tags=("auto-reply",), no_auto_reply=True)
