"""Spam filter: score with SpamAssassin's spamd (through aiospamc), or trust an upstream MTA's score.

One SYMBOLS request per message, one connection: spamd answers with the ``Spam: True ; 1000.6 / 5.0``
header (the score) and a body listing the rules that hit, so score and rule names cost one round trip.

Trusting an upstream MTA (``trust_upstream = ["mx.example.com"]``). The X-Spam-* headers of a message
are used instead of asking spamd only when the *topmost* ``Received:`` header — the one written by the
MTA that delivered into our mailbox, which a sender cannot forge — names a trusted host:

* ``by HOST``: the host that wrote the topmost header (the first word after ``by`` outside
  parenthesised comments) is trusted, e.g. the mailbox server runs SpamAssassin itself; or
* ``from HOST``: *every* name that header records for the relay is trusted: the word after ``from``
  and, when the comment right after it starts with a host name (Postfix and Sendmail write the
  reverse-DNS name there, ``unknown`` when the lookup failed), that name too. So ``from mx.example.com
  (mx.example.com [192.0.2.1])`` is trusted, ``from mx.example.com (evil.example [203.0.113.9])`` and
  ``from mx.example.com (unknown [203.0.113.9])`` are not. Where the comment holds only the address
  (``([192.0.2.1] helo=...)``, Exim's style, whose first word is the verified name) the word after
  ``from`` alone decides.

Names compare case-insensitively without a trailing dot; list every name the gateway may be recorded
under (its HELO name and its reverse-DNS name). Only the first X-Spam-Status header is read and it must
carry ``score=`` (or the older ``hits=``): our own thresholds apply to that score, its ``tests=`` become
the rule names, and an upstream "Yes" (in X-Spam-Status or X-Spam-Flag) makes the verdict at least
"tag". Without a readable score, spamd is asked as usual. Name only MTAs that drop X-Spam-* headers
they did not add themselves (SpamAssassin does when it marks up a message).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ticketd.daemon.config import Section
from ticketd.daemon.filters import ACCEPT, DEFER, QUARANTINE, TAG, FilterContext, Verdict
from ticketd.daemon.metrics import SpamdStats
from ticketd.daemon.outage import Outage
from ticketd.daemon.parsers.model import ParsedMessage

log = logging.getLogger("ticketd.spam")

UNREACHABLE_CHOICES = ("accept", "defer")
_SPAM_TAGS = ("spam",)
_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")
_COMMENT = re.compile(r"\([^()]*\)")
_FROM = re.compile(r"from\s+([^\s;()]+)(?:\s*\(\s*([^\s()]*))?", re.IGNORECASE)
_BY = re.compile(r"(?:^|\s)by\s+([^\s;()]+)", re.IGNORECASE)
_SCORE = re.compile(r"\b(?:score|hits)=(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_TESTS = re.compile(r"\btests=(.*?)(?=\s+[\w-]+=|\s*$)", re.IGNORECASE)


@dataclass(frozen=True)
class SpamSettings:
    """``[filters.spam]``, validated."""

    host: str = "127.0.0.1"
    port: int = 783
    socket: str | None = None  # spamd's Unix socket; wins over host/port when set
    timeout: float = 30.0  # seconds for the whole exchange: connect, send, score, answer
    max_size: int = 500 * 1024  # larger messages are not sent (spamc's default limit)
    tag_threshold: float = 5.0
    quarantine_threshold: float = 10.0
    on_unreachable: str = "accept"  # accept | defer
    trust_upstream: tuple[str, ...] = ()  # MTAs whose X-Spam-* headers we trust (module docstring)


def load_settings(section: Section) -> SpamSettings:
    """Read and check ``[filters.spam]``; errors name the file and the key."""
    defaults = SpamSettings()
    host = section.get("host", str, defaults.host)
    if not host.strip():
        section.fail("host", "a host name or address", host)
    port = section.get("port", int, defaults.port)
    if not 0 < port < 65536:
        section.fail("port", "a TCP port (1-65535)", port)
    socket = section.get("socket", str, None)
    if socket is not None and not Path(socket).is_absolute():
        section.fail("socket", "an absolute path to spamd's Unix socket", socket)
    tag = section.get("tag_threshold", float, defaults.tag_threshold)
    quarantine = section.get("quarantine_threshold", float, defaults.quarantine_threshold)
    if tag > quarantine:
        section.fail("tag_threshold", f"a score no higher than quarantine_threshold ({quarantine:g})", tag)
    settings = SpamSettings(
        host=host, port=port, socket=socket,
        timeout=section.positive("timeout", float, defaults.timeout),
        max_size=section.positive("max_size", int, defaults.max_size),
        tag_threshold=tag, quarantine_threshold=quarantine,
        on_unreachable=section.choice("on_unreachable", UNREACHABLE_CHOICES, defaults.on_unreachable),
        trust_upstream=_trusted_hosts(section),
    )
    section.done()
    return settings


def _trusted_hosts(section: Section) -> tuple[str, ...]:
    names = section.get("trust_upstream", list, [], expected="an array of host names")
    for name in names:
        if not isinstance(name, str) or not _HOST.fullmatch(name):
            section.fail("trust_upstream", "an array of host names", name)
    return tuple(dict.fromkeys(_normal(name) for name in names))


class SpamUnavailable(Exception):
    """spamd could not give a score; the text says why, in one line, and ``kind`` in one word."""

    KINDS = ("timeout", "connect", "bad_answer", "refused", "other")  # the metrics' reason label

    def __init__(self, text: str, kind: str = "other") -> None:
        super().__init__(text)
        self.kind = kind


class SpamFilter:
    """Score with SpamAssassin's spamd; tag or quarantine above the thresholds."""

    name = "spam"
    description = "Score with SpamAssassin's spamd; tag or quarantine above the thresholds"

    def __init__(self, settings: SpamSettings, outage: Outage | None = None, stats: SpamdStats | None = None) -> None:
        self.settings = settings
        self.stats = stats or SpamdStats()  # the daemon's metrics, which outlive a reload's new filter
        self.unreachable_count = 0  # checks that got no score from spamd, for logs and tests
        # Every message asks spamd: while it is down, a line a step (daemon.outage), not a message.
        self.outage = outage or Outage()
        self._trusted = frozenset(settings.trust_upstream)
        # Imported here, once per filter built: aiospamc (and the loguru it brings) costs ~40 ms
        # at every start, and only a site whose pipeline names "spam" builds this filter.
        from ticketd.daemon.filters._spamd import Spamd

        self._spamd: Spamd = Spamd(settings)

    async def check(self, ctx: FilterContext) -> Verdict:
        upstream = self._upstream(ctx.message)
        if upstream is not None:
            return upstream
        size = len(ctx.raw)
        if size > self.settings.max_size:
            return Verdict(ACCEPT, details={"skipped": "too large", "size": size})
        started = time.perf_counter()
        try:
            score, rules = await self._spamd.symbols(ctx.raw)
        except SpamUnavailable as exc:
            self.stats.errors[exc.kind] += 1
            return self._unreachable(ctx, str(exc))
        if self.outage.failures:
            log.info("spamd answers again after %d failed checks", self.outage.answered())
        self.stats.latency.observe(time.perf_counter() - started)
        return self._verdict(score, rules, "spamd")

    def _unreachable(self, ctx: FilterContext, error: str) -> Verdict:
        self.unreachable_count += 1
        defer = self.settings.on_unreachable == DEFER
        if checks := self.outage.failed():
            log.warning("%s: spamd unreachable (%s); %s%s", ctx.message.message_id or "(no Message-ID)", error,
                        "deferred for a later pass" if defer else "accepted without a spam check",
                        f" ({checks} checks failed since the last line)" if checks > 1 else "")
        reason = f"spamd unreachable: {error}"
        return Verdict(DEFER if defer else ACCEPT, reason=reason, details={"error": error})

    def _verdict(self, score: float, rules: list[str], source: str, *, flagged: bool = False) -> Verdict:
        details: dict[str, Any] = {"score": score, "rules": rules, "source": source}
        s = self.settings
        if score >= s.quarantine_threshold:
            return Verdict(QUARANTINE, f"spam score {score:.1f} >= {s.quarantine_threshold}", _SPAM_TAGS,
                           True, details)
        if score >= s.tag_threshold:
            return Verdict(TAG, f"spam score {score:.1f} >= {s.tag_threshold}", _SPAM_TAGS, True, details)
        if flagged:
            return Verdict(TAG, f"flagged as spam upstream (score {score:.1f})", _SPAM_TAGS, True, details)
        return Verdict(ACCEPT, details=details)

    def _upstream(self, message: ParsedMessage) -> Verdict | None:
        """The verdict from a trusted MTA's X-Spam-* headers, or None to ask spamd."""
        if not self._trusted:
            return None
        received = message.header("Received")
        if received is None or not relay_is_trusted(received, self._trusted):
            return None
        status = message.header("X-Spam-Status") or ""
        score = _SCORE.search(status)
        if score is None:
            return None
        tests = _TESTS.search(status)
        rules = [r.strip() for r in tests.group(1).split(",") if r.strip()] if tests else []
        rules = [r for r in rules if r.lower() != "none"]
        flag = (message.header("X-Spam-Flag") or "").strip().lower()
        flagged = flag.startswith("yes") or status.strip().lower().startswith("yes")
        return self._verdict(float(score.group(1)), rules, "upstream", flagged=flagged)


def relay_is_trusted(received: str, trusted: frozenset[str]) -> bool:
    """True when a Received header says ``by`` a trusted host or ``from`` one (module docstring)."""
    text = " ".join(received.split())
    by = _BY.search(_strip_comments(text))
    if by is not None and _normal(by.group(1)) in trusted:
        return True
    relay = _FROM.match(text)
    if relay is None:
        return False
    names = {_normal(relay.group(1))}
    looked_up = relay.group(2) or ""
    if looked_up and not looked_up.startswith("[") and "=" not in looked_up:
        names.add(_normal(looked_up))  # "from HELO (RDNS [IP])": our MTA's own lookup
    return names <= trusted


def _strip_comments(text: str) -> str:
    while True:
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            return text
        text = stripped


def _normal(host: str) -> str:
    return host.strip().rstrip(".").lower()
