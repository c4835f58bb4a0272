"""The report for people: rich tables in a terminal. (``html.py`` writes the page with charts.)"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from analytics.report import PHASES, Report, Stat
from events_schema.arn import short_arn


def duration(seconds: float | None) -> str:
    """``3725`` -> ``1h 2m 5s``; ``None`` -> ``-``."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def summary_table(report: Report) -> Table:
    table = Table(title="Fleet reliability", show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value")
    since = report.since.isoformat() if report.since else "start of history"
    end = report.range_end.isoformat() if report.range_end else "-"
    table.add_row("range", f"{since} .. {end}")
    table.add_row("events read", str(report.events))
    table.add_row("incidents", f"{report.incidents} ({report.incidents_complete} with every phase known)")
    table.add_row("outcomes", ", ".join(f"{k} {v}" for k, v in report.outcomes.items()) or "-")
    table.add_row("automatic recovery", f"{percent(report.automatic_recovery_rate)} "
                  f"({report.automatic_recoveries} of {report.incidents})")
    table.add_row("goodput lost", f"{report.gpu_hours_lost:.1f} GPU-hours in {len(report.interruptions)} "
                  "job interruptions")
    return table


def recovery_table(report: Report) -> Table:
    table = Table(title=f"Time to recovery ({report.time_to_recovery.count} incidents)")
    for column in ("phase", "mean", "p90"):
        table.add_column(column, justify="right" if column != "phase" else "left")
    rows: list[tuple[str, Stat]] = [(phase, report.phases[phase]) for phase in PHASES]
    for name, figures in [*rows, ("total", report.time_to_recovery)]:
        style = "bold" if name == "total" else None
        table.add_row(name, duration(figures.mean_s), duration(figures.p90_s), style=style)
    return table


def xid_table(report: Report) -> Table:
    table = Table(title="Faults by XID")
    for column in ("XID", "meaning", "class", "incidents", "occurrences"):
        table.add_column(column)
    for xid in report.xids:
        table.add_row(str(xid.xid), xid.meaning, xid.cls, str(xid.incidents), str(xid.occurrences))
    return table


def node_table(report: Report, limit: int = 20) -> Table:
    table = Table(title=f"Nodes by faults (lemon: >= {report.lemon_threshold} hardware faults)")
    for column in ("node", "incidents", "hardware", "application", "reboots", "quarantined", "XIDs", ""):
        table.add_column(column)
    for node in report.nodes[:limit]:
        table.add_row(
            short_arn(node.node_arn), str(node.incidents), str(node.hardware_faults), str(node.application_faults),
            str(node.reboots), "yes" if node.quarantined else "", ",".join(map(str, node.xids)),
            "[bold red]LEMON[/]" if node.lemon else "",
        )
    return table


def interruption_table(report: Report) -> Table:
    table = Table(title=f"Job interruptions ({report.gpu_hours_lost:.1f} GPU-hours lost)")
    for column in ("job", "incident", "failed at", "back at", "down for", "GPUs", "GPU-hours"):
        table.add_column(column)
    for item in report.interruptions:
        table.add_row(
            item.job_id, item.incident_id, item.failed_at.strftime("%Y-%m-%d %H:%M:%S"),
            item.running_at.strftime("%Y-%m-%d %H:%M:%S") if item.running_at else "[red]never[/]",
            duration(item.duration_s), str(item.gpus), f"{item.gpu_hours_lost:.2f}",
        )
    return table


def print_report(report: Report, console: Console | None = None) -> None:
    console = console or Console()
    for table in (summary_table(report), recovery_table(report), xid_table(report), node_table(report),
                  interruption_table(report)):
        console.print(table)
