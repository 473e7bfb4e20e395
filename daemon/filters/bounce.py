"""The bounce filter: recognise delivery failures (RFC 3464 DSNs and the common MTA formats).

Whether a message is a bounce is decided here, from its headers first; what a bounce says is
read by daemon.filters._bounce_report (and _bounce_flufl for the formats without a DSN).
"""

from __future__ import annotations

import dataclasses
import email
import logging
import re
from dataclasses import dataclass
from email.utils import getaddresses

from ticketd.daemon.config import Section
from ticketd.daemon.filters import ACCEPT, FilterContext, Verdict
from ticketd.daemon.filters._bounce_flufl import flufl_failures
from ticketd.daemon.filters._bounce_report import (POLICY, REPORTS, bounded_head, body_id, merge_failures, one_line,
                                           outer_parts, read_reports, report_text,
                                           returned_id, reply_id, status_in_text, unsplit_texts)
from ticketd.daemon.parsers.model import ParsedMessage

log = logging.getLogger("ticketd.bounce")

# Bounds for hostile input (the readers' own are in _bounce_report): the stdlib parser recurses
# once per nested multipart, and a report may list any number of recipients.
MAX_BOUNDARIES = 50
MAX_RECIPIENTS = 100

_NULL_PATHS = {"", "<>", "<mailer-daemon>", "mailer-daemon"}
_DAEMON_LOCAL = re.compile(r"^mail(?:er)?[-_.]?daemon$", re.IGNORECASE)
_DAEMON_NAME = re.compile(r"\bmail(?:er)?[-_ ]?daemon\b", re.IGNORECASE)
_POSTMASTER_LOCAL = re.compile(r"^postmaster$", re.IGNORECASE)
_SYSTEM_NAME = re.compile(
    r"\b(?:mail delivery (?:sub)?system|mail delivery service|mail administrator|internet mail delivery"
    r"|post office|mail system)\b", re.IGNORECASE)
# Subjects MTAs put on bounces; anchored, so "Re: undeliverable mail" from a customer is not one.
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliver|undelivered|returned mail|mail delivery|mail system error|failure notice"
    r"|non[- ]?deliver|delivery (?:status|failure|failed|has failed|notification|report|problem|delayed|error)"
    r"|warning: could not send|could not send message|delayed mail|email delivery error"
    r"|message (?:could not be|not) delivered|mail could not be delivered)", re.IGNORECASE)
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[- ]?(?:reply|response|antwort)|autoreply|auto:|out of (?:the )?office"
    r"|abwesenheit|absence|vacation)", re.IGNORECASE)
_REPORT_TYPE = re.compile(r"report-type\s*=\s*\"?(?:global-)?delivery-status\b", re.IGNORECASE)




@dataclass(frozen=True)
class Bounce:
    """What a delivery failure report says about the message that bounced."""

    recipients: tuple[str, ...]  # failed addresses, lower case
    permanent: bool  # True for 5.x.x / flufl "permanent" failures
    status: str  # e.g. "5.1.1" ("" if unknown)
    diagnostic: str  # one line, e.g. "550 5.1.1 user unknown" ("" if none)
    original_message_id: str  # "<...>" of the message that bounced, "" if not found
    detector: str  # "dsn" | "flufl:<DetectorName>" | "headers"


@dataclass(frozen=True)
class BounceSettings:
    suppress_days: int = 60  # how long a permanently bounced address gets no automatic mail


def load_settings(section: Section) -> BounceSettings:
    """Read ``[filters.bounce]`` (a ``daemon.config.Section``)."""
    settings = BounceSettings(suppress_days=section.positive("suppress_days", int, 60))
    section.done()
    return settings


class BounceFilter:
    name = "bounce"
    description = "Recognise delivery failures (DSN and common formats); never answer them"

    def __init__(self, settings: BounceSettings) -> None:
        self.settings = settings

    async def check(self, ctx: FilterContext) -> Verdict:
        bounce = parse_bounce(ctx.message, ctx.raw)
        if bounce is None:
            return Verdict()
        who = ", ".join(bounce.recipients[:3]) or "recipient unknown"
        if len(bounce.recipients) > 3:
            who += f" and {len(bounce.recipients) - 3} more"
        return Verdict(action=ACCEPT, reason=f"bounce: {bounce.status or 'no status'} {who}", tags=("bounce",),
                       no_auto_reply=True,
                       details={"bounce": dataclasses.asdict(bounce), "suppress_days": self.settings.suppress_days})




def parse_bounce(message: ParsedMessage, raw: bytes) -> Bounce | None:
    """The delivery failure ``message`` reports, or None when it is not a bounce. Never raises."""
    strong, weak = _header_signals(message)
    if not strong and not weak:
        return None  # ordinary mail is decided from headers alone, without a second parse
    if not strong and _looks_like_auto_reply(message):
        return None  # vacation replies travel with a null Return-Path too (RFC 3834)
    try:
        return _parse(message, raw, strong, weak)
    except Exception as exc:  # hostile input must never stop the pipeline
        log.warning("bounce: cannot read the report in %s (%s); judged from its headers only",
                    one_line(message.message_id), type(exc).__name__)
        log.debug("bounce: the report's error", exc_info=True)
        if not strong and weak < 2:
            return None
        return Bounce((), False, "", "", reply_id(message), "headers")


def _parse(message: ParsedMessage, raw: bytes, strong: bool, weak: int) -> Bounce | None:
    data = bounded_head(raw)
    if data.lower().count(b"boundary") > MAX_BOUNDARIES:  # the stdlib parser recurses once per level
        raise ValueError("too many nested multiparts")
    msg = email.message_from_bytes(data, policy=POLICY)
    parts = list(outer_parts(msg))
    reports = [p for p in parts if p.get_content_type() in REPORTS]
    if not strong and weak + bool(reports) < 2:
        return None
    sender = {addr for _, addr in _from_addresses(message)}
    # When the MIME split failed (a broken boundary) the DSN fields are still there as plain text.
    failures, report_id, delivered = read_reports([report_text(p) for p in reports] or unsplit_texts(parts))
    found, detector = flufl_failures(msg)
    if delivered and not failures and not found:
        return None  # a DSN reporting success (NOTIFY=SUCCESS): nothing failed
    if found:
        failures = merge_failures(found, failures)
        detector = f"flufl:{detector}"
    else:
        detector = "dsn" if failures or reports or _declares_dsn(message) else "headers"
    failures = [f for f in failures if f.address not in sender][:MAX_RECIPIENTS]
    text_status, text_diagnostic = status_in_text(parts)
    if text_status:  # a format without per-recipient status: the notification text tells the class
        failures = [f if f.status else dataclasses.replace(f, permanent=text_status[0] == "5", status=text_status,
                                                         diagnostic=f.diagnostic or text_diagnostic)
                    for f in failures]
    chosen = [f for f in failures if f.permanent] or failures
    own_id = message.message_id
    original = next((i for i in (returned_id(parts), report_id, reply_id(message), body_id(parts))
                     if i and i != own_id), "")
    if chosen:
        status = next((f.status for f in chosen if f.status), "")
        diagnostic = next((f.diagnostic for f in chosen if f.diagnostic), "")
        permanent = chosen[0].permanent
    else:
        status, diagnostic, permanent = text_status, text_diagnostic, text_status.startswith("5")
    recipients = tuple(dict.fromkeys(f.address for f in chosen))
    return Bounce(recipients, permanent, status, diagnostic, original, detector)


# --- is it a bounce at all -------------------------------------------------------------------

def _header_signals(message: ParsedMessage) -> tuple[bool, int]:
    """(a strong sign, the number of weak signs) that an MTA wrote this message.

    Strong: a declared DSN, Exim's X-Failed-Recipients, a MAILER-DAEMON sender. Weak, and two are
    needed: a postmaster or "Mail Delivery System" sender, the null Return-Path of RFC 5321
    4.5.5, an MTA's bounce subject. A customer who writes "my email bounced" shows none of them.
    """
    strong = _declares_dsn(message) or message.header("X-Failed-Recipients") is not None
    weak = 0
    mta_sender = False
    for name, addr in _from_addresses(message):
        local = addr.partition("@")[0]
        if _DAEMON_LOCAL.match(local) or (not addr and _DAEMON_NAME.search(name)):
            strong = True
        elif _POSTMASTER_LOCAL.match(local) or _SYSTEM_NAME.search(name) or _DAEMON_NAME.search(name):
            mta_sender = True
    weak += mta_sender
    return_path = message.header("Return-Path")
    weak += return_path is not None and return_path.strip().lower() in _NULL_PATHS
    weak += bool(_BOUNCE_SUBJECT.match(message.subject))
    return strong, weak


def _declares_dsn(message: ParsedMessage) -> bool:
    ctype = message.header("Content-Type") or ""
    return ctype.strip().lower().startswith("multipart/report") and bool(_REPORT_TYPE.search(ctype))


def _looks_like_auto_reply(message: ParsedMessage) -> bool:
    if any(message.header(h) is not None for h in ("X-Autoreply", "X-Autorespond")):
        return True
    return bool(_AUTO_REPLY_SUBJECT.match(message.subject))


def _from_addresses(message: ParsedMessage) -> list[tuple[str, str]]:
    found = [(message.from_.name, message.from_.email.lower())] if message.from_ else []
    header = message.header("From")
    if header:
        found += [(name, addr.lower()) for name, addr in getaddresses([header[:2000]])]
    return found
