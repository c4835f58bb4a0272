"""Where a rebuilt state goes: a JSON file, new shadow tables, or (deliberately) the live tables.
(Recovery's records go to its own table: ``replay.recovery``.)"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consumers.core.errors import UnwritableItem
from consumers.core.ports import ItemWrite, ProjectionStore
from consumers.core.projection import KEY_ATTRIBUTE, TABLES, EntityKey, Item, ProjectionState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

WRITE_CHUNK = 500
CONFLICT_ROUNDS = 3


class TargetError(RuntimeError):
    """The target could not be written as asked (explained for the operator)."""


# --- file:PATH ------------------------------------------------------------------------------------


def item_line(item: Item) -> str:
    return json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def render_lines(state: ProjectionState, recovery: Mapping[str, Any] | None = None) -> Iterator[str]:
    """``{"ecs_job": [...], "ecs_node": [...], "ecs_task": [...], "recovery": {...}}``, one item per line,
    sorted by key; ``recovery`` (when given): one incident, node or job per line.

    The same state always renders to the same bytes: tables and keys sorted, items sorted by key.
    """
    tables = sorted(TABLES)
    yield "{\n"
    for t, table in enumerate(tables):
        rows = state.table(table)
        yield f"{json.dumps(table)}: ["
        for i, item in enumerate(rows):
            yield ("\n" if i == 0 else ",\n") + item_line(item)
        yield ("\n]" if rows else "]") + (",\n" if t < len(tables) - 1 or recovery is not None else "\n")
    if recovery is not None:
        yield from _render_recovery(recovery)
    yield "}\n"


def _render_recovery(recovery: Mapping[str, Any]) -> Iterator[str]:
    """``"recovery": {"incidents": [...], "jobs": {...}, "nodes": {...}}`` (``summary``'s own order of
    incidents: by opening time)."""
    yield '"recovery": {\n'
    sections = sorted(recovery)
    for s, section in enumerate(sections):
        value = recovery[section]
        lines = ([item_line(entry) for entry in value] if isinstance(value, list)
                 else [f"{json.dumps(key, ensure_ascii=False)}: {item_line(value[key])}" for key in sorted(value)])
        opening, closing = ("[", "]") if isinstance(value, list) else ("{", "}")
        yield f"{json.dumps(section)}: {opening}"
        yield "".join(("\n" if i == 0 else ",\n") + line for i, line in enumerate(lines))
        yield ("\n" if lines else "") + closing + (",\n" if s < len(sections) - 1 else "\n")
    yield "}\n"


def write_file(state: ProjectionState, path: str, recovery: Mapping[str, Any] | None = None) -> None:
    """Write atomically (a temp file renamed over the target); ``-`` writes to stdout."""
    if path == "-":
        sys.stdout.writelines(render_lines(state, recovery))
        sys.stdout.flush()
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.writelines(render_lines(state, recovery))
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# --- DynamoDB: shadow and live --------------------------------------------------------------------


def shadow_table_names(tables: Mapping[str, str], stamp: datetime) -> dict[str, str]:
    """``ecs_task`` -> ``ecs_task-replay-20261128T100000Z``: new tables beside the live ones."""
    return {logical: shadow_name(tables[logical], stamp) for logical in TABLES}


def shadow_name(table: str, stamp: datetime) -> str:
    return f"{table}-replay-{stamp.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


@dataclass
class WriteReport:
    written: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    deleted: dict[str, int] = field(default_factory=dict)
    unwritable: dict[str, str] = field(default_factory=dict)  # "table/key" -> why the store refused the item


def fill_tables(store: ProjectionStore, state: ProjectionState, *, empty: bool) -> WriteReport:
    """Write every item. ``empty``: fresh tables, no revision to read; else overwrite at the current one.

    Overwriting is conditional on the revision read just before, so a writer that sneaks in between
    (a consumer that should not be running) is noticed and retried, never silently clobbered.
    """
    report = WriteReport(written={table: 0 for table in TABLES})
    keys = sorted(state.items)
    for start in range(0, len(keys), WRITE_CHUNK):
        _write_chunk(store, state, keys[start : start + WRITE_CHUNK], empty, report)
    return report


def _write_chunk(
    store: ProjectionStore, state: ProjectionState, keys: list[EntityKey], empty: bool, report: WriteReport
) -> None:
    pending = keys
    for _ in range(CONFLICT_ROUNDS):
        revs = {} if empty else {key: stored.rev for key, stored in store.load(pending).items()}
        writes = [ItemWrite(key, state.items[key], revs.get(key, 0)) for key in pending]
        try:
            conflicts = set(store.save(writes))
        except UnwritableItem as exc:  # refused before anything was written: leave it out, say so, go on
            report.unwritable[f"{exc.key[0]}/{exc.key[1][:200]}"] = exc.problem
            _write_chunk(store, state, [key for key in pending if key != exc.key], empty, report)
            return
        for key in pending:
            if key not in conflicts:
                report.written[key[0]] += 1
        if not conflicts:
            return
        report.conflicts += len(conflicts)
        pending, empty = sorted(conflicts), False
    raise TargetError(
        f"{len(pending)} item(s) kept changing while being overwritten (is a consumer still running?): "
        + ", ".join(f"{t}/{k}" for t, k in pending[:5])
    )


def prune_tables(
    client: DynamoDBClient,
    table_names: Mapping[str, str],
    state: ProjectionState,
    scan: Callable[[str], Iterable[Item]],
    report: WriteReport,
) -> None:
    """Delete live items the replay did not produce (only with --prune: an archive may be partial)."""
    for table in TABLES:
        key_name = KEY_ATTRIBUTE[table]
        stale = [str(item[key_name]) for item in scan(table) if (table, str(item[key_name])) not in state.items]
        for key in stale:
            client.delete_item(TableName=table_names[table], Key={key_name: {"S": key}})
        report.deleted[table] = len(stale)
