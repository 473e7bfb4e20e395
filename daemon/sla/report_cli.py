"""`ticketd report --since DATE [--until DATE] [--json | --html FILE] [--now ISO8601]`: the period's figures.

Imported to build the parser: the ORM and the report itself are imported when the command runs.
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from ticketd.daemon.cli import instant
from ticketd.storage import clock

if TYPE_CHECKING:
    from ticketd.daemon.config import Config

DATE_EXPECTED = "YYYY-MM-DD (00:00 UTC) or an ISO 8601 time with an offset (2026-12-01T09:00+01:00)"


def add_report_command(sub: Any) -> None:
    report = sub.add_parser("report", help="service figures of a period: volume, response and resolution times, "
                                           "SLA compliance, escalations, reopens, FCR, CSAT and a health triage")
    report.add_argument("--since", type=period_date, required=True, metavar="DATE",
                        help=f"start of the period, included: {DATE_EXPECTED}")
    report.add_argument("--until", type=period_date, metavar="DATE",
                        help="end of the period, excluded (a date: up to its 00:00 UTC; default: --now)")
    shown = report.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="the figures under stable keys")
    shown.add_argument("--html", metavar="FILE", help="write a self-contained HTML report with charts to FILE")
    report.add_argument("--now", type=instant, help="as if it were this ISO 8601 time (default: now)")
    report.set_defaults(handler=run_report)


def period_date(text: str) -> datetime:
    """A bare date is its 00:00 UTC; a time must say its offset (a report read elsewhere must mean one instant)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r}; expected {DATE_EXPECTED}") from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add one (Z, +01:00) or give a date")
    return at.astimezone(UTC)


async def run_report(config: Config, args: argparse.Namespace) -> int:
    import sys

    from ticketd.daemon.sla.report import build
    from ticketd.daemon.terminal import emit
    from ticketd.storage.db import database

    now = clock.now()
    until = args.until or now
    if until <= args.since:
        print(f"ticketd: --until ({until.isoformat()}) must be after --since ({args.since.isoformat()}) "
              "(see --help)", file=sys.stderr)
        return 2
    async with database(config.database_url):
        report = await build(args.since, until, now, config.sla)
    if args.html:
        from ticketd.daemon.sla.report_html import render

        try:
            with open(args.html, "w", encoding="utf-8") as out:
                out.write(render(report))
        except OSError as exc:
            print(f"ticketd: cannot write {args.html!r}: {exc.strerror}", file=sys.stderr)
            return 73  # EX_CANTCREAT
        print(f"report written to {args.html}")
        return 0
    return emit(report, args.json, human)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    minutes = round(value / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def human(report: dict[str, Any]) -> str:
    """A short table for a terminal; every value comes from the report, escaped all the same."""
    from ticketd.daemon.terminal import safe_line

    v, fr, res, health = report["volume"], report["first_response"], report["resolution"], report["health"]
    csat = report["csat"]
    ratio = "-" if v["backlog_ratio"] is None else f"{v['backlog_ratio']:.1f}"
    rows = [
        ("period", f"{report['since']} .. {report['until']} ({report['days']:g} days)", None),
        ("new / solved", f"{v['new']} / {v['solved']}", None),
        ("backlog", f"{v['backlog']} ({ratio} days of new tickets)", health["backlog"]),
        ("first response", f"mean {_seconds(fr['mean'])}  median {_seconds(fr['median'])}  "
                           f"p95 {_seconds(fr['p95'])}  ({fr['count']} tickets)", health["first_response"]),
        ("resolution", f"mean {_seconds(res['mean'])}  median {_seconds(res['median'])}  "
                       f"p95 {_seconds(res['p95'])}  ({res['count']} tickets)", health["resolution"]),
        ("escalation", f"{_pct(report['escalation']['rate'])} ({report['escalation']['count']})",
         health["escalation"]),
        ("reopen", f"{_pct(report['reopen']['rate'])} ({report['reopen']['count']})", None),
        ("first contact", f"{_pct(report['fcr']['rate'])} ({report['fcr']['count']})", health["fcr"]),
        ("CSAT", f"{_pct(csat['rate'])} satisfied, mean {csat['mean'] if csat['mean'] is not None else '-'} "
                 f"({csat['rated']} rated)", health["csat"]),
    ]
    lines = [f"{name:<15} {text:<62} {state or ''}".rstrip() for name, text, state in rows]
    sla = report["sla"]
    if sla is None:
        lines.append("SLA             - (no [sla] section, no SLA events)")
    else:
        lines.append("SLA met         " + "  ".join(f"{t:<14}" for t in sla["all"]))
        for priority, targets in sla.items():
            lines.append(f"  {priority:<13} " + "  ".join(
                f"{_pct(c['rate']):>6} {c['met']}/{c['met'] + c['breached']:<6}" for c in targets.values()))
    return "\n".join(safe_line(line) for line in lines)
