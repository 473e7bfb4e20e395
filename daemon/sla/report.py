"""The service report of a period (`ticketd report`): volume, response and resolution times, SLA, health.

Definitions (the period is [since, until): ``until`` is exclusive; a bare date is 00:00 UTC):

- *tickets in the period*: created in [since, until). Escalation, reopen, first response and
  SLA compliance are figures of these tickets, as stored when the report runs.
- *solved in the period*: the ticket's solve time (``solved_at``, the latest solve; ``closed_at``
  for one closed without being solved) falls in [since, until), whenever it was created.
  Resolution time, first-contact resolution and CSAT are figures of these tickets.
- *backlog*: tickets created before ``until`` and not solved or closed at ``until`` (a reopened
  ticket's status at ``until`` is read from its status_changed events).
- durations are wall-clock seconds (not business hours): created_at to first_response_at (the
  first agent reply relayed) and created_at to the solve time.
- percentiles are nearest-rank: the p-th of n sorted values is value number ceil(p/100 × n),
  so the median is the p50 (the lower middle of an even count) and every figure is a real value.
- *first-contact resolution*: solved tickets with exactly one agent reply and never reopened,
  over solved tickets. *reopen rate*: tickets reopened at least once over tickets in the period.
  *escalation rate*: tickets with an "escalated" event over tickets in the period.
- *SLA compliance*, per priority and target: a target is breached if the ticket has an
  ``sla_breach`` event for it; met if not breached and done (first_response: a first response;
  next_update and resolution: solved); otherwise undecided and not counted. rate = met /
  (met + breached). A target the [sla] policy of the ticket's priority and queue does not have
  (``none``) is not counted (customer tiers are not considered). Without [sla] in the config and
  without SLA events on the period's tickets, ``sla`` is null.
- *CSAT*: the share of ratings 4 or 5 among solved tickets that were rated, and the mean rating.

JSON keys (rates are fractions 0..1 rounded to 4 places, seconds are floats; null: no data):

=====================================  =============================================================
key                                    meaning
=====================================  =============================================================
since, until                           the period, ISO 8601 UTC (until exclusive)
generated_at                           the report's time (``--now``), ISO 8601 UTC
days                                   the period's length in days (float)
volume.new                             tickets created in the period
volume.solved                          tickets solved in the period
volume.backlog                         tickets open (not solved/closed) at ``until``
volume.daily_new                       volume.new / days
volume.backlog_ratio                   volume.backlog / volume.daily_new (null if no new tickets)
volume.per_day[]                       {date: YYYY-MM-DD (UTC), new, solved} for each day of the period
first_response.count                   tickets in the period with a first response
first_response.mean|median|p95         seconds from creation to the first response
first_response.histogram[]             {label, upto (seconds, null: no upper bound), count}
resolution.count                       tickets solved in the period
resolution.mean|median|p95             seconds from creation to the solve
sla                                    null, or {P1..P4: {first_response|next_update|resolution:
                                       {met, breached, rate}}, all: the same over all priorities}
escalation.count, escalation.rate      escalated tickets in the period, over volume.new
reopen.count, reopen.rate              reopened tickets in the period, over volume.new
fcr.count, fcr.rate                    solved with one agent reply and no reopen, over volume.solved
csat.rated, csat.satisfied             rated solved tickets; of them rated 4 or 5
csat.rate, csat.mean                   satisfied / rated; the mean rating (1..5)
health.<metric>                        "healthy" | "warning" | "critical" | null (no data), for
                                       first_response, resolution, csat, fcr, backlog, escalation
=====================================  =============================================================

Health uses the mean first response (< 4 h healthy, 4–24 h warning, > 24 h critical), the mean
resolution (< 24 h / 24–72 h / > 72 h), CSAT (> 85 % / 70–85 % / < 70 %), FCR (> 70 % / 50–70 %
/ < 50 %), the backlog ratio (< 1 / 1–3 / > 3 days of new tickets; a backlog with no new tickets
is critical) and the escalation rate (< 15 % / 15–30 % / > 30 %); a value on a boundary is a warning.

Only ticket columns and the few events named above are read: never an article, a body or raw bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable

from tortoise.expressions import Q

from ticketd.daemon.sla.policy import PRIORITIES, TARGETS
from ticketd.storage.models import Event, Ticket

if TYPE_CHECKING:
    from ticketd.daemon.sla.config import SlaConfig

HOUR = 3600.0
DONE = ("solved", "closed")
HISTOGRAM = ((HOUR, "< 1 h"), (4 * HOUR, "1–4 h"), (8 * HOUR, "4–8 h"), (24 * HOUR, "8–24 h"),
             (72 * HOUR, "1–3 d"), (None, "> 3 d"))
CHUNK = 500  # ticket ids per IN (...): under SQLite's variable limit
_COLUMNS = ("id", "status", "priority", "queue", "created_at", "first_response_at", "solved_at", "closed_at",
            "reopen_count", "csat", "agent_replies")


@dataclass(frozen=True)
class Band:
    """A health threshold: ``good`` or better is healthy, worse than ``bad`` critical, else a warning."""

    good: float
    bad: float
    higher_is_better: bool = False

    def judge(self, value: float | None) -> str | None:
        if value is None:
            return None
        if self.higher_is_better:
            return "healthy" if value > self.good else "critical" if value < self.bad else "warning"
        return "healthy" if value < self.good else "critical" if value > self.bad else "warning"


HEALTH = {"first_response": Band(4 * HOUR, 24 * HOUR), "resolution": Band(24 * HOUR, 72 * HOUR),
          "csat": Band(0.85, 0.70, True), "fcr": Band(0.70, 0.50, True), "backlog": Band(1, 3),
          "escalation": Band(0.15, 0.30)}


def nearest_rank(values: list[float], p: float) -> float | None:
    """The p-th percentile by nearest rank of ``values`` sorted ascending (None if empty)."""
    if not values:
        return None
    return values[max(1, math.ceil(p / 100 * len(values))) - 1]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def durations(values: Iterable[float]) -> dict[str, Any]:
    ordered = sorted(values)
    mean = round(sum(ordered) / len(ordered), 1) if ordered else None
    return {"count": len(ordered), "mean": mean, "median": nearest_rank(ordered, 50),
            "p95": nearest_rank(ordered, 95)}


def histogram(values: Iterable[float]) -> list[dict[str, Any]]:
    bins = [{"label": label, "upto": upto, "count": 0} for upto, label in HISTOGRAM]
    for value in values:
        next(b for b in bins if b["upto"] is None or value < b["upto"])["count"] += 1
    return bins


def _solve_time(row: dict[str, Any]) -> datetime | None:
    return row["solved_at"] or row["closed_at"]


def _days(since: datetime, until: datetime) -> list[str]:
    day, last = since.date(), (until - timedelta(microseconds=1)).date()
    out = []
    while day <= last:
        out.append(day.isoformat())
        day += timedelta(days=1)
    return out


async def _candidates(since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Every ticket the report can need: created in the period, solved in it, or open at ``until``."""
    wanted = (Q(created_at__gte=since) | ~Q(status__in=DONE) | Q(solved_at__gte=since)
              | Q(solved_at=None, closed_at__gte=since))
    return list(await Ticket.filter(Q(created_at__lt=until) & wanted).values(*_COLUMNS))


async def _events(since: datetime, until: datetime) -> list[tuple[int, str, Any]]:
    """The period's tickets' escalations and SLA events (joined: served by the event(ticket) index)."""
    rows = await Event.filter(what__in=("escalated", "sla_breach", "sla_warning"), ticket__created_at__gte=since,
                              ticket__created_at__lt=until).values_list("ticket_id", "what", "detail")
    return [(int(t), str(w), d) for t, w, d in rows]


async def _open_at(rows: list[dict[str, Any]], until: datetime) -> int:
    """How many of ``rows`` (created before ``until``) were neither solved nor closed at ``until``."""
    count, reopened = 0, []
    for row in rows:
        if row["reopen_count"]:
            reopened.append(row["id"])  # its stored times are of the latest solve: read its history
        elif row["status"] not in DONE or (_solve_time(row) or until) >= until:
            count += 1
    for start in range(0, len(reopened), CHUNK):
        last: dict[int, str] = {}
        changes = await Event.filter(ticket_id__in=reopened[start:start + CHUNK], what="status_changed",
                                     at__lt=until).order_by("at", "id").values_list("ticket_id", "detail")
        for ticket_id, detail in changes:
            last[int(ticket_id)] = str((detail or {}).get("to", ""))
        count += sum(1 for t in reopened[start:start + CHUNK] if last.get(t, "new") not in DONE)
    return count


def _compliance(sla: SlaConfig | None, period: list[dict[str, Any]], breaches: set[tuple[int, str]]) \
        -> dict[str, Any]:
    counts = {p: {t: [0, 0] for t in TARGETS} for p in (*PRIORITIES, "all")}
    for row in period:
        policy = sla.policy(row["priority"], row["queue"] or None) if sla is not None else None
        for target in TARGETS:
            if policy is not None and getattr(policy, target) is None:
                continue  # no such target for this priority
            done = row["first_response_at"] if target == "first_response" else _solve_time(row)
            breached = (row["id"], target) in breaches
            if not breached and done is None:
                continue  # not decided yet
            for key in {row["priority"], "all"} & set(counts):
                counts[key][target][1 if breached else 0] += 1
    return {p: {t: {"met": m, "breached": b, "rate": _rate(m, m + b)} for t, (m, b) in by_target.items()}
            for p, by_target in counts.items()}


async def build(since: datetime, until: datetime, now: datetime, sla: SlaConfig | None = None) -> dict[str, Any]:
    """The report of [since, until) as JSON-ready data (keys: the module docstring)."""
    rows = await _candidates(since, until)
    period = [r for r in rows if r["created_at"] >= since]
    solved = [r for r in rows if since <= (_solve_time(r) or until) < until]
    events = await _events(since, until)
    escalated = {t for t, what, _ in events if what == "escalated"}
    breaches = {(t, str((d or {}).get("target"))) for t, what, d in events if what == "sla_breach"}
    has_sla = sla is not None or any(what.startswith("sla_") for _, what, _ in events)

    days = (until - since).total_seconds() / 86400
    backlog = await _open_at(rows, until)
    daily = len(period) / days
    ratio = round(backlog / daily, 4) if daily else None
    per_day = {d: {"date": d, "new": 0, "solved": 0} for d in _days(since, until)}
    for row in period:
        per_day[row["created_at"].astimezone(UTC).date().isoformat()]["new"] += 1
    for row in solved:
        per_day[_solve_time(row).astimezone(UTC).date().isoformat()]["solved"] += 1  # type: ignore[union-attr]

    first = [(r["first_response_at"] - r["created_at"]).total_seconds() for r in period if r["first_response_at"]]
    resolution = [(_solve_time(r) - r["created_at"]).total_seconds() for r in solved]  # type: ignore[operator]
    ratings = [r["csat"] for r in solved if r["csat"] is not None]
    happy = sum(1 for c in ratings if c >= 4)
    fcr = sum(1 for r in solved if r["agent_replies"] == 1 and not r["reopen_count"])
    reopened = sum(1 for r in period if r["reopen_count"])
    n_escalated = sum(1 for r in period if r["id"] in escalated)

    report: dict[str, Any] = {
        "since": since.isoformat(), "until": until.isoformat(), "generated_at": now.isoformat(),
        "days": round(days, 4),
        "volume": {"new": len(period), "solved": len(solved), "backlog": backlog, "daily_new": round(daily, 4),
                   "backlog_ratio": ratio, "per_day": list(per_day.values())},
        "first_response": {**durations(first), "histogram": histogram(first)},
        "resolution": durations(resolution),
        "sla": _compliance(sla, period, breaches) if has_sla else None,
        "escalation": {"count": n_escalated, "rate": _rate(n_escalated, len(period))},
        "reopen": {"count": reopened, "rate": _rate(reopened, len(period))},
        "fcr": {"count": fcr, "rate": _rate(fcr, len(solved))},
        "csat": {"rated": len(ratings), "satisfied": happy, "rate": _rate(happy, len(ratings)),
                 "mean": round(sum(ratings) / len(ratings), 2) if ratings else None},
    }
    backlog_health = HEALTH["backlog"].judge(ratio) if ratio is not None else ("critical" if backlog else None)
    report["health"] = {
        "first_response": HEALTH["first_response"].judge(report["first_response"]["mean"]),
        "resolution": HEALTH["resolution"].judge(report["resolution"]["mean"]),
        "csat": HEALTH["csat"].judge(report["csat"]["rate"]), "fcr": HEALTH["fcr"].judge(report["fcr"]["rate"]),
        "backlog": backlog_health, "escalation": HEALTH["escalation"].judge(report["escalation"]["rate"])}
    return report
