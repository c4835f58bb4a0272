"""A self-contained HTML page of an audit: the timeline and an SVG chart of node health over time.

Inline CSS and SVG only (the charts are ``analytics.svg``'s): no script, no CDN, no font download; the file
opens anywhere, offline.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from analytics import svg
from consumers.core.clocktext import parse_iso
from events_schema.arn import short_arn
from replay.audit import CATEGORY_TITLE, Timeline

STATE_COLORS = {
    "HEALTHY": "#2e9d5b", "SUSPECT": "#e0b000", "CHECKING": "#f08c00", "REBOOTING": "#3b6fd8",
    "VERIFYING": "#8a5cd0", "QUARANTINED": "#d6336c", "REPLACED": "#868e96",
}
VERDICT_COLORS = {"healthy": "#2e9d5b", "application_fault": "#e0b000", "hardware_fault": "#d6336c",
                  "inconclusive": "#868e96"}
CATEGORY_COLORS = {"ecs": "#495057", "health": "#0b7285", "request": "#e8590c", "decision": "#5f3dc4",
                   "action": "#1864ab", "outcome": "#2b8a3e", "other": "#868e96"}
CHART_WIDTH = 960
LABEL_WIDTH = 150
LANE_HEIGHT = 30
AXIS_HEIGHT = 28

CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#212529}
h1{font-size:20px;margin:0 0 4px} .meta{color:#6c757d;margin-bottom:16px}
table{border-collapse:collapse;width:100%;margin-top:16px} th,td{padding:4px 8px;text-align:left;
vertical-align:top;border-bottom:1px solid #dee2e6} th{background:#f1f3f5;position:sticky;top:0}
td.time{white-space:nowrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.badge{display:inline-block;padding:1px 6px;border-radius:8px;color:#fff;font-size:12px;white-space:nowrap}
.why{color:#495057} svg text{font:11px system-ui,sans-serif;fill:#343a40} .legend span{margin-right:12px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
"""


def render_html(timeline: Timeline, *, title: str | None = None) -> str:
    subject = timeline.subject
    heading = title or f"Audit of {subject.kind} {subject.id}"
    rows = "\n".join(_row(row.as_json()) for row in timeline.rows)
    incidents = escape(", ".join(sorted(timeline.links.incidents)) or "none")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(heading)}</title><style>{CSS}</style></head>
<body>
<h1>{escape(heading)}</h1>
<div class="meta">{len(timeline.rows)} events; incidents: {incidents};
read {timeline.records_read} records</div>
<h2>Node health over time</h2>
{health_chart(timeline)}
<div class="legend">{_legend()}</div>
<h2>Timeline</h2>
<table><thead><tr><th>time (UTC)</th><th>what</th><th>subject</th><th>event</th><th>why</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""


def _row(row: dict[str, object]) -> str:
    category = str(row["category"])
    badge = (f'<span class="badge" style="background:{CATEGORY_COLORS.get(category, "#868e96")}">'
             f"{escape(CATEGORY_TITLE.get(category, category))}</span>")
    return (f'<tr><td class="time">{escape(str(row["time"]))}</td><td>{badge}</td>'
            f'<td>{escape(str(row["subject"]))}</td><td>{escape(str(row["what"]))}</td>'
            f'<td class="why">{escape(str(row["why"]))}</td></tr>')


def _legend() -> str:
    states = "".join(f'<span><i class="swatch" style="background:{c}"></i>{escape(s)}</span>'
                     for s, c in STATE_COLORS.items())
    verdicts = "".join(f'<span><i class="swatch" style="background:{c};border-radius:50%"></i>'
                       f"check: {escape(v)}</span>" for v, c in VERDICT_COLORS.items())
    return states + verdicts


def health_chart(timeline: Timeline) -> str:
    """One lane per node, a band per repair state from each change to the next; dots for checks."""
    series = timeline.node_health()
    checks = timeline.health_checks()
    nodes = sorted(set(series) | set(checks))
    times = [parse_iso(row.time) for row in timeline.rows]
    height = AXIS_HEIGHT + LANE_HEIGHT * max(1, len(nodes))
    label = "node repair state over time"
    if not nodes or not times:
        return svg.svg(CHART_WIDTH, height, [svg.text(LABEL_WIDTH, 20, "no node state changes in this history")], label)
    start, end = min(times), max(times)
    x = svg.time_scale(start, end, LABEL_WIDTH, CHART_WIDTH - 10)
    parts: list[str] = []
    for lane, node in enumerate(nodes):
        top = lane * LANE_HEIGHT
        parts.append(svg.text(4, top + 19, short_arn(node, width=22)))
        parts.extend(_bands(series.get(node, []), top, end, x))
        parts.extend(_dots(checks.get(node, []), top, x))
    parts.extend(svg.time_axis(start, end, height - AXIS_HEIGHT + 4, x))
    return svg.svg(CHART_WIDTH, height, parts, label)


def _bands(changes: list[dict[str, str]], top: int, end: datetime, x: svg.Scale) -> list[str]:
    out: list[str] = []
    for i, change in enumerate(changes):
        begin = parse_iso(change["time"])
        finish = parse_iso(changes[i + 1]["time"]) if i + 1 < len(changes) else end
        left, right = x(begin), x(finish)
        out.append(svg.rect(left, top + 6, max(right - left, 2.0), LANE_HEIGHT - 12,
                            STATE_COLORS.get(change["state"], "#adb5bd"),
                            f"{change['state']} from {change['time']}: {change['reason']}"))
    return out


def _dots(marks: list[dict[str, str]], top: int, x: svg.Scale) -> list[str]:
    return [svg.circle(x(parse_iso(mark["time"])), top + LANE_HEIGHT // 2, 5,
                       VERDICT_COLORS.get(mark["verdict"], "#868e96"), f"{mark['verdict']} at {mark['time']}")
            for mark in marks]
