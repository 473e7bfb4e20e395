"""The daemon's counters: plain ints and dicts updated by the event loop, read at scrape time.

Nothing here locks or calls into prometheus_client. The hot path (~300 messages/s) pays a
dict increment per message and outcome, where a prometheus_client Counter would take a lock
and look up a labelled child; daemon.metrics_http turns these values into metric families
when Prometheus asks. The scrape thread only reads: each dict or list is copied there in one
C call, under the GIL, so it never sees one half-updated.

Labels stay few: mailbox names, outcome, reason, filter, verdict, kind, target, never an
address or a Message-ID (a Message-ID is a key of ``arrivals``, which is never exported).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from ticketd.daemon.commit import Outcome

# Seconds from a message's arrival (its raw bytes committed) to the SMTP server's 250 for its
# acknowledgement: the benchmark's target is a p95 within 1 s, an outage shows in the top ones.
ACK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
# One spamd SYMBOLS exchange: 20-200 ms when spamd is healthy, its timeout (30 s) when not.
SPAMD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Acknowledgements waiting for their 250 whose arrival is remembered; past it the oldest are
# forgotten (rows that failed, or a backlog far beyond any SMTP outage worth timing).
MAX_ARRIVALS = 100_000
ACKNOWLEDGEMENT = "acknowledgement"  # the responder's name, and so its outbox rows' kind


class Histogram:
    """Bucket counts (not yet cumulative) and their sum, as Prometheus wants them at scrape."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # "le": a value on a bound belongs to it
        self.sum += value

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative (le, count) pairs ending with +Inf, and the sum; consistent with each other."""
        counts, total = list(self.counts), self.sum
        cumulative, running = [], 0
        for bound, count in zip((*map(_le, self.bounds), "+Inf"), counts):
            running += count
            cumulative.append((bound, running))
        return cumulative, total


def _le(bound: float) -> str:
    return repr(float(bound))


@dataclass
class SpamdStats:
    """spamd's answers as the spam filter saw them."""

    errors: Counter[str] = field(default_factory=Counter)  # kind (SpamUnavailable.kind) -> checks
    latency: Histogram = field(default_factory=lambda: Histogram(SPAMD_BUCKETS))


@dataclass(frozen=True)
class DatabaseFigures:
    """What only the database knows, read every few seconds by daemon.health (see there why)."""

    read_at: float  # time.time() of the read
    outbox_pending: int = 0
    outbox_oldest: float | None = None  # epoch seconds of the oldest pending row's creation
    due_now: int = 0  # due steps (SLA, reminders, auto-solve/close) whose time has come
    backlog: dict[str, int] = field(default_factory=dict)  # mailbox -> rows stored, not processed


@dataclass
class Metrics:
    """Every counter of one daemon process; each field's comment says what a unit is."""

    started: float = field(default_factory=time.time)
    fetched: Counter[str] = field(default_factory=Counter)  # mailbox -> messages fetched over IMAP
    lmtp: Counter[str] = field(default_factory=Counter)  # mailbox -> messages stored from LMTP
    processed: Counter[tuple[str, str]] = field(default_factory=Counter)  # (mailbox, outcome) -> rows
    quarantined: Counter[str] = field(default_factory=Counter)  # reason (quarantine_reason) -> rows
    verdicts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (filter, action) -> messages
    reconnects: Counter[str] = field(default_factory=Counter)  # mailbox -> sessions lost or refused
    sent: Counter[str] = field(default_factory=Counter)  # outbox kind -> messages the server took
    send_failures: Counter[str] = field(default_factory=Counter)  # reason -> attempts not ending in "sent"
    ack_latency: Histogram = field(default_factory=lambda: Histogram(ACK_BUCKETS))
    spamd: SpamdStats = field(default_factory=SpamdStats)
    sla_warnings: Counter[str] = field(default_factory=Counter)  # target -> warnings committed
    sla_breaches: Counter[str] = field(default_factory=Counter)  # target -> breaches committed
    escalations: Counter[str] = field(default_factory=Counter)  # cause (breached target or trigger)
    due_run: Counter[str] = field(default_factory=Counter)  # step kind -> steps run (claimed and committed)
    oauth_errors: Counter[tuple[str, str]] = field(default_factory=Counter)  # (peer, reason) -> failed token refreshes
    database: DatabaseFigures | None = None  # None until first read
    webhook_delivered: Counter[str] = field(default_factory=Counter)  # webhook -> events it answered 2xx to
    webhook_failed: Counter[str] = field(default_factory=Counter)  # webhook -> events refused or given up
    webhook_retried: Counter[str] = field(default_factory=Counter)  # webhook -> attempts to be tried again
    webhook_pending: dict[str, int] = field(default_factory=dict)  # webhook -> rows waiting (every few s)
    # Message-ID of an acknowledgement in the outbox -> its message's arrival, until the 250.
    arrivals: dict[str, datetime] = field(default_factory=dict)

    def count_outcomes(self, mailbox: str, outcomes: list[Outcome]) -> None:
        """One committed group's outcomes (the caller's transaction is over)."""
        for outcome in outcomes:
            self.processed[mailbox, outcome.status] += 1
            if outcome.status == "quarantined":
                self.quarantined[quarantine_reason(outcome.reason)] += 1

    def expect_acks(self, arrivals: list[tuple[str, datetime]]) -> None:
        """Acknowledgements just committed to the outbox, with their messages' arrival."""
        self.arrivals.update(arrivals)
        while len(self.arrivals) > MAX_ARRIVALS:  # insertion order: the oldest go first
            del self.arrivals[next(iter(self.arrivals))]

    def acknowledged(self, kind: str, message_id: str, accepted_at: datetime) -> None:
        """The SMTP server took an outbox row (its "sent" is committed)."""
        self.sent[kind] += 1
        arrived = self.arrivals.pop(message_id, None) if kind == ACKNOWLEDGEMENT else None
        if arrived is not None:
            seconds = (accepted_at - arrived).total_seconds()
            # Below zero only for a row stored by another clock (`--now` in the past): it was on time.
            self.ack_latency.observe(seconds if seconds > 0 else 0.0)

    def gave_up(self, message_id: str, reason: str) -> None:
        self.send_failures[reason] += 1
        self.arrivals.pop(message_id, None)

    def count_fired(self, fired: Counter[tuple[str, str]]) -> None:
        """A committed transaction's SLA events: ("warning" | "breach" | "escalation", target or cause)."""
        for (event, label), count in fired.items():
            {"warning": self.sla_warnings, "breach": self.sla_breaches, "escalation": self.escalations}[event][label] \
                += count


# What a stored quarantine reason starts with -> its label (the rest is a filter's name).
_REASONS = (("too large", "too_large"), ("unreadable", "unreadable"), ("parser error", "unreadable"),
            ("processing error", "processing_error"))
# daemon.filters.registry's names, written out: that module imports every filter (a test keeps them equal).
FILTERS = ("bounce", "autoreply", "senders", "spam")


def quarantine_reason(reason: str) -> str:
    """A low-cardinality label for a quarantine reason: its kind, or the filter that held it.

    A filter's reason reads "spam: spam score 12.0 >= 10.0" (daemon.filters.combine); several
    filters holding one message are joined by "; " and the first names it.
    """
    for prefix, label in _REASONS:
        if reason.startswith(prefix):
            return label
    name = reason.partition(":")[0]
    return name if name in FILTERS else "other"
