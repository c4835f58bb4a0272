"""``gpu-recovery simulate --html``: the simulation report as one self-contained page (inline CSS and SVG,
no script, nothing fetched): the headline, time lost per interruption by phase, interruptions over the
run by outcome, and recovery's state size by day."""

from __future__ import annotations

from html import escape

from analytics import svg
from analytics.html import CSS
from analytics.simulation import PHASES, SimulationReport

OUTCOME_COLORS = {"recovered": "#2ca02c", "escalated": "#d62728", "open": "#ff7f0e", "absorbed": "#7f7f7f"}
PHASE_COLORS = dict(zip(PHASES, ("#1f77b4", "#9467bd", "#8c564b", "#17becf"), strict=True))


def simulation_html(report: SimulationReport) -> str:
    head = report.headline
    ettr = head["effective_training_time"]
    cards = [("interruptions", head["interruptions"]), ("recovered automatically", head["recovered_automatically"]),
             ("escalated to humans", head["escalated_to_humans"]),
             ("effective training time", "-" if ettr is None else f"{ettr:.2%}"),
             ("wrong irreversible actions", head["wrong_irreversible_actions"])]
    title = (f"{report.fault_mix.get('name')} on {report.nodes} nodes x {report.gpus_per_node} GPUs, "
             f"{report.days:g} days")
    return "\n".join([
        "<!doctype html><html><head><meta charset='utf-8'>", f"<title>{escape(title)}</title>",
        f"<style>{CSS}</style></head><body>", f"<h1>{escape(title)}</h1>",
        f"<p class='sub'>seed {report.seed}, engine {escape(report.engine)}, {report.spares} spares; "
        f"{escape(str(report.fault_mix.get('source', '')))}</p>",
        "<div class='cards'>", *(f"<div class='card'>{escape(k)}<b>{escape(str(v))}</b></div>" for k, v in cards),
        "</div>", "<h2>Time lost per interruption</h2>", phases_svg(report),
        "<h2>Interruptions over the run</h2>", timeline_svg(report),
        "<h2>Recovery state by day</h2>", state_svg(report), "</body></html>"])


def phases_svg(report: SimulationReport) -> str:
    """One bar per interruption that hit a job, stacked by phase (detect, diagnose, repair, restart)."""
    hit = [i for i in report.interruption_list if i.lost_s is not None]
    if not hit:
        return "<p>No interruption hit a job.</p>"
    width, height, left, base = 900.0, 240.0, 50.0, 210.0
    top = max(i.lost_s or 0.0 for i in hit) or 1.0
    step = (width - left - 10) / len(hit)
    body = svg.value_axes(left, width - 10, base, int(top))
    for n, item in enumerate(hit):
        y = base
        for phase in PHASES:
            value = getattr(item, f"{phase}_s") or 0.0
            h = value / top * (base - 10)
            body.append(svg.rect(left + n * step, y - h, max(step - 1, 1), h, PHASE_COLORS[phase],
                                 f"#{item.index} {item.cause}: {phase} {value:.0f} s"))
            y -= h
    return svg.svg(width, height, body, "time lost per interruption by phase")


def timeline_svg(report: SimulationReport) -> str:
    """Every injected interruption at its time, colored by outcome."""
    if not report.interruption_list:
        return "<p>No interruption injected.</p>"
    width, left = 900.0, 50.0
    start = report.interruption_list[0].at
    span = max(report.days * 86_400.0, 1.0)
    body = [svg.line(left, 30, width - 10, 30)]
    for item in report.interruption_list:
        x = left + (item.at - start).total_seconds() / span * (width - left - 10)
        body.append(svg.circle(x, 30, 5, OUTCOME_COLORS.get(item.outcome, "#000"),
                               f"#{item.index} {item.cause} ({item.outcome}) on {item.node}"))
    return svg.svg(width, 60, body, "interruptions over the run by outcome")


def state_svg(report: SimulationReport) -> str:
    days = report.state.get("by_day") or []
    if not days:
        return "<p>No state sampled.</p>"
    width, height, left, base = 900.0, 200.0, 70.0, 180.0
    top = max(d["bytes"] for d in days) or 1
    step = (width - left - 10) / len(days)
    body = svg.value_axes(left, width - 10, base, int(top))
    for n, day in enumerate(days):
        h = day["bytes"] / top * (base - 10)
        body.append(svg.rect(left + n * step, base - h, max(step - 1, 1), h, "#1f77b4",
                             f"day {day['day']:g}: {day['bytes']} bytes, {day['records']} records"))
    return svg.svg(width, height, body, "recovery state bytes by day")
