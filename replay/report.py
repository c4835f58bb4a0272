"""Terminal output for people: the progress bar (stderr), the replay summary, diffs and timelines."""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from replay.audit import CATEGORY_TITLE, Timeline
from replay.leases import ConsumerCheck
from replay.rebuild import Rebuilt, ReplayStats, retention_json
from replay.recovery import RecoveryFold
from replay.sources import Source
from replay.verify import VerifyReport

MAX_SHOWN_VALUE = 100


class ReplayProgress:
    """A progress bar with records/s and an ETA (from bytes of files and objects, or shard time spans)."""

    def __init__(self, source: Source, *, enabled: bool, console: Console | None = None) -> None:
        self._source = source
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[records]:,} records"),
            TextColumn("{task.fields[rate]:,.0f}/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
            disable=not enabled,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> ReplayProgress:
        self._bar.start()
        self._task = self._bar.add_task(f"replay {self._source.description}", total=None, records=0, rate=0.0)
        return self

    def tick(self, stats: ReplayStats) -> None:
        if self._task is None:
            return
        where = self._source.progress()
        self._bar.update(self._task, completed=where.done, total=where.total, records=stats.records,
                         rate=stats.rate)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None and exc is None:
            where = self._source.progress()
            self._bar.update(self._task, completed=where.total or where.done, total=where.total or where.done)
        self._bar.stop()


def print_summary(rebuilt: Rebuilt, console: Console, *, target: str) -> None:
    stats = rebuilt.stats
    console.print(
        f"[bold green]replayed[/] {stats.records:,} records in {stats.seconds:.1f} s "
        f"({stats.rate:,.0f}/s): {stats.events:,} events folded, "
        f"{sum(stats.malformed.values()):,} malformed, {stats.outside_window:,} outside the time window"
    )
    if stats.first_time:
        console.print(f"events from {stats.first_time} to {stats.last_time}")
    types = Table(title="events by type")
    types.add_column("type")
    types.add_column("count", justify="right")
    for name, count in sorted(stats.by_type.items()):
        types.add_row(name, f"{count:,}")
    console.print(types)
    if stats.reasons:
        bad = Table(title="malformed or unknown records (counted, not fatal)")
        for column in ("kind: reason", "count", "first at"):
            bad.add_column(column)
        for reason, entry in sorted(stats.reasons.items()):
            bad.add_row(reason, f"{entry.count:,}", entry.first_position)
        console.print(bad)
    items = ", ".join(f"{table} {count:,}" for table, count in rebuilt.items_per_table().items())
    console.print(f"items: {items} -> {target}")
    kept = retention_json(rebuilt.retention)
    if any(kept.values()):
        console.print(f"retention: {kept['expired']:,} expired items left the fold (as DynamoDB's TTL deletes "
                      f"them), {kept['late_dropped']:,} late records of expired items dropped")
    if rebuilt.recovery is not None:
        _print_recovery(rebuilt.recovery, console)


def _print_recovery(fold: RecoveryFold, console: Console) -> None:
    stats = fold.stats
    records = ", ".join(f"{kind} {count:,}" for kind, count in fold.counts().items())
    console.print(f"recovery records: {records} (from {stats.ecs_events:,} ECS events and "
                  f"{stats.recorded:,} RecoveryRecorded)")
    if stats.foreign_cluster or stats.future_time or stats.errors:
        console.print(f"[yellow]recovery skipped[/] {stats.foreign_cluster:,} ECS events of another cluster and "
                      f"{stats.future_time:,} dated beyond the allowed skew (live parks them); "
                      f"{stats.errors:,} could not be folded")


def print_verify(report: VerifyReport, console: Console) -> None:
    compared = ", ".join(f"{t} {n:,}" for t, n in report.compared.items())
    if report.equal:
        console.print(f"[bold green]verify: live tables match the replay[/] ({compared}; "
                      f"{report.expired_skipped} expired items skipped; ignored fields: rev)")
        return
    console.print(f"[bold red]verify: {report.differing:,} item(s) differ[/] ({compared})")
    for diff in report.diffs:
        if diff.kind == "only_live":
            console.print(f"[red]-[/] {diff.table} {diff.key}: only in live", soft_wrap=True)
        elif diff.kind == "only_replay":
            console.print(f"[green]+[/] {diff.table} {diff.key}: only in the replay", soft_wrap=True)
        else:
            console.print(f"[yellow]~[/] {diff.table} {diff.key}:", soft_wrap=True)
            for field in diff.fields:
                console.print(f"    {field.path}: live {_shown(field.live)}  replay {_shown(field.replay)}",
                              markup=False, highlight=False, soft_wrap=True)
    if report.differing > len(report.diffs):
        console.print(f"... and {report.differing - len(report.diffs):,} more")


def _shown(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_SHOWN_VALUE else text[: MAX_SHOWN_VALUE - 3] + "..."


def print_consumers(check: ConsumerCheck, console: Console) -> None:
    for line in check.held:
        console.print(f"[bold red]active:[/] {line}", highlight=False, soft_wrap=True)
    for line in check.notes:
        console.print(f"[dim]found:[/] {line}", highlight=False, soft_wrap=True)


def print_timeline(timeline: Timeline, console: Console) -> None:
    subject = timeline.subject
    table = Table(title=f"audit of {subject.kind} {subject.id}: {len(timeline.rows)} events", show_lines=False)
    for column in ("time (UTC)", "", "subject", "event", "why"):
        table.add_column(column, overflow="fold")
    for row in timeline.rows:
        table.add_row(row.time.replace("T", " ").rstrip("Z")[:23], CATEGORY_TITLE[row.category], row.subject,
                      row.what, row.why)
    console.print(table)
    incidents = ", ".join(sorted(timeline.links.incidents)) or "none"
    console.print(f"incidents: {incidents}; {timeline.records_read:,} records read")
