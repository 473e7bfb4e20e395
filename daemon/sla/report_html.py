"""The report as one self-contained HTML page: health cards, inline SVG charts, the figures in tables.

Nothing is fetched: no script, font, stylesheet or image outside the file (a Content-Security-Policy
says so to the browser too). Every value written is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

from ticketd.daemon.sla.report_cli import _pct, _seconds

COLOURS = {"healthy": "#2e7d32", "warning": "#e0a000", "critical": "#c62828", None: "#9e9e9e"}
NEW, SOLVED = "#3f6ad8", "#26a69a"
TARGET_COLOURS = {"first_response": "#3f6ad8", "next_update": "#8e6ad8", "resolution": "#26a69a"}
CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2430;
background:#f4f5f8;margin:0;padding:24px 32px}
h1{font-size:24px;margin:0 0 2px}h2{font-size:17px;margin:0 0 10px}.sub{color:#5b6270;margin:0 0 20px}
.cards{display:grid;grid-template-columns:repeat(3,1fr);gap:12px;margin-bottom:18px}
.card{background:#fff;border-radius:8px;padding:12px 14px;border-left:6px solid #9e9e9e;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card .name{color:#5b6270;font-size:13px;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:24px;font-weight:600;margin:2px 0}.card .state{font-size:13px;font-weight:600}
.panel{background:#fff;border-radius:8px;padding:14px 16px;margin-bottom:16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.row{display:grid;grid-template-columns:1fr 1fr;gap:16px}svg{display:block;width:100%;height:auto}
table{border-collapse:collapse;width:100%;font-size:14px}td,th{padding:5px 8px;border-bottom:1px solid #e6e8ee;
text-align:right}th:first-child,td:first-child{text-align:left;white-space:nowrap}th{color:#5b6270;font-weight:600}
.legend span{display:inline-block;margin-right:14px;font-size:13px;color:#5b6270}
.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;vertical-align:-1px}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _card(name: str, value: str, state: str | None) -> str:
    return (f'<div class="card" style="border-left-color:{COLOURS[state]}"><div class="name">{_e(name)}</div>'
            f'<div class="value">{_e(value)}</div><div class="state" style="color:{COLOURS[state]}">'
            f'{_e(state or "no data")}</div></div>')


def _legend(items: list[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(f'<span><i style="background:{c}"></i>{_e(n)}</span>'
                                            for n, c in items) + "</div>"


def _axis(width: int, height: int, top: int, left: int, bottom: int, peak: float, as_pct: bool = False) -> str:
    """Horizontal grid lines with their values, from 0 to ``peak``."""
    out = []
    for i in range(5):
        value = peak * i / 4
        y = top + (height - top - bottom) * (1 - i / 4)
        label = f"{value * 100:.0f}%" if as_pct else f"{value:g}"
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e8ee"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" fill="#5b6270">'
                   f'{_e(label)}</text>')
    return "".join(out)


def _nice(peak: float) -> float:
    """A round axis top at or above ``peak`` (4 grid steps of a round size)."""
    step = 1.0
    while step * 4 < peak:
        step = step * 2.5 if str(step).startswith("2") else step * 2
    return step * 4


def _svg(chart: str, width: int, height: int, label: str, body: str) -> str:
    return (f'<svg data-chart="{chart}" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}" '
            f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui,sans-serif">{body}</svg>')


def volume_chart(per_day: list[dict[str, Any]]) -> str:
    width, height, top, left, bottom = 1080, 260, 12, 44, 38
    peak = _nice(max([1] + [max(d["new"], d["solved"]) for d in per_day]))
    slot = (width - 10 - left) / max(1, len(per_day))
    bar = max(1.0, min(30.0, slot * 0.38))
    scale = (height - top - bottom) / peak
    parts = [_axis(width, height, top, left, bottom, peak)]
    every = max(1, round(len(per_day) / 12))  # at most ~12 date labels
    for i, day in enumerate(per_day):
        x = left + slot * i + slot / 2
        for offset, key, colour in ((-bar, "new", NEW), (0, "solved", SOLVED)):
            h = day[key] * scale
            parts.append(f'<rect x="{x + offset:.1f}" y="{height - bottom - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" fill="{colour}" rx="1"><title>{_e(day["date"])}: {day[key]} '
                         f'{key}</title></rect>')
            if day[key] and slot >= 28:  # room for a count above the bar
                parts.append(f'<text x="{x + offset + bar / 2:.1f}" y="{height - bottom - h - 5:.1f}" '
                             f'text-anchor="middle" font-size="11" fill="#1f2430">{day[key]}</text>')
        if i % every == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - bottom + 18}" text-anchor="middle" font-size="12" '
                         f'fill="#5b6270">{_e(day["date"][5:])}</text>')
    return _svg("volume", width, height, "new and solved tickets per day", "".join(parts))


def histogram_chart(bins: list[dict[str, Any]]) -> str:
    width, height, top, left, bottom = 520, 260, 12, 40, 38
    peak = _nice(max([1] + [b["count"] for b in bins]))
    slot = (width - 10 - left) / len(bins)
    scale = (height - top - bottom) / peak
    parts = [_axis(width, height, top, left, bottom, peak)]
    for i, b in enumerate(bins):
        x, h = left + slot * i, b["count"] * scale
        colour = COLOURS["healthy"] if b["upto"] is not None and b["upto"] <= 4 * 3600 else \
            COLOURS["warning"] if b["upto"] is not None and b["upto"] <= 24 * 3600 else COLOURS["critical"]
        parts.append(f'<rect x="{x + slot * 0.12:.1f}" y="{height - bottom - h:.1f}" width="{slot * 0.76:.1f}" '
                     f'height="{h:.1f}" fill="{colour}" rx="2"><title>{_e(b["label"])}: {b["count"]}</title></rect>'
                     f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 18}" text-anchor="middle" '
                     f'font-size="12" fill="#5b6270">{_e(b["label"])}</text>')
        if b["count"]:
            parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - bottom - h - 5:.1f}" text-anchor="middle" '
                         f'font-size="12" fill="#1f2430">{b["count"]}</text>')
    return _svg("first-response", width, height, "first response times", "".join(parts))


def compliance_chart(sla: dict[str, Any] | None) -> str:
    width, height, top, left, bottom = 520, 260, 20, 44, 38
    parts = [_axis(width, height, top, left, bottom, 1.0, as_pct=True)]
    groups = [p for p in (sla or {}) if p != "all"] or ["P1", "P2", "P3", "P4"]
    slot = (width - 10 - left) / len(groups)
    bar = slot * 0.8 / len(TARGET_COLOURS)
    scale = height - top - bottom
    for i, priority in enumerate(groups):
        x = left + slot * i + slot * 0.1
        for j, (target, colour) in enumerate(TARGET_COLOURS.items()):
            figure = (sla or {}).get(priority, {}).get(target)
            if sla is None:
                continue
            if figure is None or figure["rate"] is None:
                parts.append(f'<text x="{x + bar * (j + .5):.1f}" y="{height - bottom - 5}" text-anchor="middle" '
                             f'font-size="11" fill="#9e9e9e">–</text>')
                continue
            h = figure["rate"] * scale
            parts.append(f'<rect x="{x + bar * j + 1:.1f}" y="{height - bottom - h:.1f}" width="{bar - 2:.1f}" '
                         f'height="{h:.1f}" fill="{colour}" rx="2"><title>{_e(priority)} {_e(target)}: '
                         f'{figure["met"]} met, {figure["breached"]} breached</title></rect>'
                         f'<text x="{x + bar * (j + .5):.1f}" y="{height - bottom - h - 5:.1f}" text-anchor="middle" '
                         f'font-size="11" fill="#1f2430">{figure["rate"] * 100:.0f}%</text>')
        parts.append(f'<text x="{left + slot * (i + .5):.1f}" y="{height - bottom + 18}" text-anchor="middle" '
                     f'font-size="13" fill="#1f2430">{_e(priority)}</text>')
    if sla is None:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-size="14" fill="#5b6270">'
                     'no SLA configured</text>')
    return _svg("compliance", width, height, "SLA compliance per priority", "".join(parts))


def _sla_table(sla: dict[str, Any] | None) -> str:
    if sla is None:
        return "<p>No [sla] section in the configuration and no SLA events: no compliance figures.</p>"
    head = "".join(f"<th>{_e(t.replace('_', ' '))}</th>" for t in TARGET_COLOURS)
    rows = "".join(f"<tr><td>{_e(p)}</td>" + "".join(
        f"<td>{_e(_pct(c['rate']))} <small>({c['met']}/{c['met'] + c['breached']})</small></td>"
        for c in targets.values()) + "</tr>" for p, targets in sla.items())
    return f"<table><tr><th>priority</th>{head}</tr>{rows}</table>"


def render(report: dict[str, Any]) -> str:
    v, fr, res, health = report["volume"], report["first_response"], report["resolution"], report["health"]
    ratio = "no new tickets" if v["backlog_ratio"] is None else f"{v['backlog_ratio']:.1f} days of intake"
    cards = "".join((
        _card("First response (mean)", _seconds(fr["mean"]), health["first_response"]),
        _card("Resolution (mean)", _seconds(res["mean"]), health["resolution"]),
        _card("CSAT (4–5 of 5)", _pct(report["csat"]["rate"]), health["csat"]),
        _card("First-contact resolution", _pct(report["fcr"]["rate"]), health["fcr"]),
        _card("Backlog", f"{v['backlog']} ({ratio})", health["backlog"]),
        _card("Escalation rate", _pct(report["escalation"]["rate"]), health["escalation"])))
    figures = [("New tickets", v["new"]), ("Solved", v["solved"]), ("Backlog at end", v["backlog"]),
               ("First response mean / median / p95",
                f"{_seconds(fr['mean'])} / {_seconds(fr['median'])} / {_seconds(fr['p95'])}"),
               ("Resolution mean / median / p95",
                f"{_seconds(res['mean'])} / {_seconds(res['median'])} / {_seconds(res['p95'])}"),
               ("Escalated", f"{_pct(report['escalation']['rate'])} ({report['escalation']['count']})"),
               ("Reopened", f"{_pct(report['reopen']['rate'])} ({report['reopen']['count']})"),
               ("First-contact resolution", f"{_pct(report['fcr']['rate'])} ({report['fcr']['count']})"),
               ("CSAT: rated 4–5", f"{_pct(report['csat']['rate'])} (mean {report['csat']['mean'] or '-'}, "
                                   f"{report['csat']['rated']} rated)")]
    table = "<table>" + "".join(f"<tr><td>{_e(k)}</td><td>{_e(val)}</td></tr>" for k, val in figures) + "</table>"
    period = f"{report['since'][:16].replace('T', ' ')} to {report['until'][:16].replace('T', ' ')} UTC"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Support report {_e(period)}</title><style>{CSS}</style></head><body>
<h1>Support report</h1><p class="sub">{_e(period)} · {report['days']:g} days · generated
{_e(report['generated_at'][:16].replace('T', ' '))} UTC</p>
<div class="cards">{cards}</div>
<div class="panel"><h2>Tickets per day</h2>{_legend([("new", NEW), ("solved", SOLVED)])}
{volume_chart(v["per_day"])}</div>
<div class="row"><div class="panel"><h2>First response time ({fr['count']} tickets)</h2>
{_legend([("< 4 h", COLOURS["healthy"]), ("4–24 h", COLOURS["warning"]), ("> 24 h", COLOURS["critical"])])}
{histogram_chart(fr["histogram"])}</div>
<div class="panel"><h2>SLA compliance per priority</h2>
{_legend([(t.replace("_", " "), c) for t, c in TARGET_COLOURS.items()])}
{compliance_chart(report["sla"])}</div></div>
<div class="row"><div class="panel"><h2>Figures</h2>{table}</div>
<div class="panel"><h2>SLA targets met</h2>{_sla_table(report["sla"])}</div></div>
</body></html>
"""
