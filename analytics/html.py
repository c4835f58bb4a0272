"""The report as one self-contained HTML page: inline CSS and SVG (``analytics.svg``), no script, nothing fetched.

Charts: the time-to-recovery distribution (histogram), faults over time (stacked bars per day) and a
per-node heat map (node x day). Every value is escaped; every chart element has a <title> tooltip.
"""

from __future__ import annotations

from datetime import date, timedelta
from html import escape

from analytics import svg
from analytics.render import duration, percent
from analytics.report import PHASES, Report
from events_schema.arn import short_arn

COLORS = {"hardware": "#d62728", "application": "#1f77b4", "other": "#7f7f7f"}
HEAT_ROWS = 40  # the heat map shows the nodes with most incidents

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222;max-width:1100px}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;min-width:10rem}
.card b{display:block;font-size:1.5rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem} td,th{border-bottom:1px solid #eee;padding:.25rem .6rem;
text-align:left} th{background:#f6f6f6} .lemon{color:#fff;background:#d62728;padding:0 .3rem;border-radius:3px}
svg text{font-size:11px;fill:#333}
"""


def ttr_histogram_svg(report: Report) -> str:
    values = [i.time_to_recovery_s for i in report.incident_list if i.time_to_recovery_s is not None]
    bins = svg.histogram(values)
    if not bins:
        return "<p>No incident with every phase known in this range.</p>"
    width, height, left, bottom = 640, 220, 40, 40
    bar_w = (width - left - 10) / len(bins)
    top = max(c for _, _, c in bins)
    parts = []
    for n, (low, high, count) in enumerate(bins):
        h = (height - bottom - 10) * count / top
        x = left + n * bar_w
        parts.append(svg.rect(x, height - bottom - h, bar_w - 2, h, "#1f77b4",
                              f"{duration(low)} - {duration(high)}: {count} incident(s)",
                              cls="bin", data={"count": count}))
        parts.append(svg.text(x, height - bottom + 14, duration(low)))
    parts.append(svg.text(left, height - 8, "time to recovery (incidents per bin)"))
    parts.extend(svg.value_axes(left, width - 5, height - bottom, top))
    return svg.svg(width, height, parts, "time to recovery distribution")


def faults_over_time_svg(report: Report) -> str:
    days = report.faults_by_day
    if not days:
        return "<p>No incident in this range.</p>"
    width, height, left, bottom = 640, 220, 40, 40
    bar_w = min(48.0, (width - left - 10) / len(days))  # a few days should not give slabs
    top = max(d.hardware + d.application + d.other for d in days) or 1
    parts = []
    label_every = max(1, len(days) // 10)
    for n, day in enumerate(days):
        x = left + n * bar_w
        y = float(height - bottom)
        for kind in ("hardware", "application", "other"):
            count = getattr(day, kind)
            if not count:
                continue
            h = (height - bottom - 10) * count / top
            y -= h
            parts.append(svg.rect(x, y, max(bar_w - 2, 1), h, COLORS[kind], f"{day.day.isoformat()}: {count} {kind}",
                                  cls=kind, data={"day": day.day.isoformat(), "count": count}))
        if n % label_every == 0:
            parts.append(svg.text(x, height - bottom + 14, day.day.strftime("%m-%d")))
    for k, kind in enumerate(COLORS):  # the legend
        parts.append(svg.rect(left + 110 * k, height - 14, 10, 10, COLORS[kind]))
        parts.append(svg.text(left + 14 + 110 * k, height - 5, kind))
    parts.extend(svg.value_axes(left, width - 5, height - bottom, top))
    return svg.svg(width, height, parts, "faults over time")


def heat_map_svg(report: Report) -> str:
    if not report.node_day:
        return "<p>No incident in this range.</p>"
    all_days = sorted({day for days in report.node_day.values() for day in days})
    first, last = date.fromisoformat(all_days[0]), date.fromisoformat(all_days[-1])
    days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    nodes = sorted(report.node_day, key=lambda n: (-sum(report.node_day[n].values()), n))[:HEAT_ROWS]
    top = max(count for node in nodes for count in report.node_day[node].values())
    cell, left, head = 18, 150, 60
    width, height = left + cell * len(days) + 10, head + cell * len(nodes) + 10
    parts = []
    for col, day in enumerate(days):
        if col % max(1, len(days) // 15) == 0:
            parts.append(svg.text(left + col * cell + cell / 2, head - 4, day[5:], rotate=-60))
    for row, node in enumerate(nodes):
        y = head + row * cell
        parts.append(svg.text(0, y + cell - 5, short_arn(node, width=22)))
        for col, day in enumerate(days):
            count = report.node_day[node].get(day, 0)
            fill = f"rgba(214,39,40,{0.08 + 0.92 * count / top:.2f})" if count else "#f3f3f3"
            parts.append(svg.rect(left + col * cell, y, cell - 2, cell - 2, fill,
                                  f"{short_arn(node)} {day}: {count} incident(s)",
                                  cls="cell", data={"node": node, "day": day, "count": count}))
    return svg.svg(width, height, parts, "incidents per node and day")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(report: Report, title: str = "GPU fleet reliability") -> str:
    since = report.since.isoformat() if report.since else "start of history"
    end = report.range_end.isoformat() if report.range_end else "-"
    cards = [
        ("incidents", str(report.incidents)),
        ("automatic recovery", percent(report.automatic_recovery_rate)),
        ("mean time to recovery", duration(report.time_to_recovery.mean_s)),
        ("p90 time to recovery", duration(report.time_to_recovery.p90_s)),
        ("GPU-hours lost", f"{report.gpu_hours_lost:.1f}"),
        ("lemon nodes", str(sum(1 for n in report.nodes if n.lemon))),
    ]
    phases = [[p, duration(report.phases[p].mean_s), duration(report.phases[p].p90_s)] for p in PHASES]
    phases.append(["<b>total</b>", duration(report.time_to_recovery.mean_s), duration(report.time_to_recovery.p90_s)])
    xids = [[str(x.xid), escape(x.meaning), x.cls, str(x.incidents), str(x.occurrences)] for x in report.xids]
    nodes = [[escape(short_arn(n.node_arn)), str(n.incidents), str(n.hardware_faults), str(n.application_faults),
              str(n.reboots), "yes" if n.quarantined else "", '<span class="lemon">LEMON</span>' if n.lemon else ""]
             for n in report.nodes]
    jobs = [[escape(i.job_id), escape(i.incident_id), i.failed_at.isoformat(),
             i.running_at.isoformat() if i.running_at else "never", duration(i.duration_s), str(i.gpus),
             f"{i.gpu_hours_lost:.2f}"] for i in report.interruptions]
    outcomes = ", ".join(f"{escape(k)} {v}" for k, v in report.outcomes.items()) or "-"
    return "\n".join([
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{CSS}</style></head>',
        "<body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{escape(since)} .. {escape(end)} &middot; {report.events} events &middot; '
        f"outcomes: {outcomes}</p>",
        '<div class="cards">' + "".join(f'<div class="card"><b>{escape(v)}</b>{escape(k)}</div>' for k, v in cards)
        + "</div>",
        "<h2>Time to recovery</h2>",
        ttr_histogram_svg(report),
        _table(["phase", "mean", "p90"], phases),
        "<h2>Faults over time</h2>",
        faults_over_time_svg(report),
        "<h2>Incidents per node and day</h2>",
        heat_map_svg(report),
        f"<h2>Nodes by faults (lemon: &ge; {report.lemon_threshold} hardware faults)</h2>",
        _table(["node", "incidents", "hardware", "application", "reboots", "quarantined", ""], nodes),
        "<h2>Faults by XID</h2>",
        _table(["XID", "meaning", "class", "incidents", "occurrences"], xids),
        "<h2>Job interruptions</h2>",
        _table(["job", "incident", "failed at", "back at", "down for", "GPUs", "GPU-hours"], jobs),
        "</body></html>",
    ])
