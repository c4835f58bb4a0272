"""Recovery's records rebuilt from history with the recovery core's own fold, and where they go.

The fold is ``consumers.core.recovery.record.fold_event`` on one complete ``View``: ECS's events merge
into the facts with the functions live uses, ``RecoveryRecorded`` sets each plan (the highest version
wins, a tombstone retires a record) and nothing is decided. Memory holds one record per entity and the
small tombstones of retired ones, never the events.

What live never folds, replay skips too, and says so: ECS events of another cluster, and ECS events dated
beyond the allowed skew into the future. Live parks those against its own clock; replay judges them against
the record's arrival time, or, where the source keeps none (the archive, plain files), the newest event
time folded so far. Our own events are never judged: live does not read them back, and a decision taken
at a deadline is legitimately later than every ECS event of its shard.

The records go to the recovery's table in its own layout (``DynamoRecoveryStore``: a shadow table beside
the live one, or the live one), and ``summary`` is the ``recovery`` section people compare.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from consumers.adapters.recovery_store import DynamoRecoveryStore, record_key
from consumers.core.clocktext import iso
from consumers.core.errors import is_infrastructure
from consumers.core.facts import IdentityRules
from consumers.core.ports import Loaded, RecordKey, RecordWrite, StateConflict
from consumers.core.recovery.record import fold_event, record_write, summary
from consumers.core.recovery.view import Key, View
from events_schema.aws import ContainerInstanceHealthChange, ContainerInstanceStateChange, TaskStateChange
from events_schema.decode import StreamEvent
from events_schema.envelope import OurEvent
from events_schema.events import RecoveryRecorded, TaskTagsCaptured
from replay.sources import RawRecord
from replay.targets import TargetError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ECS_EVENTS = (TaskStateChange, ContainerInstanceStateChange, ContainerInstanceHealthChange)
SUMMARY_KINDS = frozenset({"job", "node", "incident"})
MAX_KEPT = 20  # skipped and failed records named in the summary; the rest are counted
WRITE_CHUNK = 20  # records per commit: with their index items, one transaction
CONFLICT_ROUNDS = 3


@dataclass(frozen=True)
class RecoveryRules:
    """What the live recovery consumer folds by: its identity rules, its cluster, its future skew."""

    identity: IdentityRules
    cluster_arn: str
    future_skew: timedelta = timedelta(minutes=5)


@dataclass
class RecoveryStats:
    ecs_events: int = 0
    recorded: int = 0
    tags: int = 0
    foreign_cluster: int = 0
    future_time: int = 0
    errors: int = 0
    skipped: list[str] = field(default_factory=list)  # the first MAX_KEPT, with why
    failed: list[str] = field(default_factory=list)

    def skip_future(self, position: str, at: str, reference: str, kind: str) -> None:
        self.future_time += 1
        if len(self.skipped) < MAX_KEPT:
            self.skipped.append(f"{position}: event time {at} is beyond the skew after {kind} {reference}")

    def fail(self, position: str, exc: Exception) -> None:
        self.errors += 1
        if len(self.failed) < MAX_KEPT:
            self.failed.append(f"{position}: {type(exc).__name__}: {str(exc)[:200]}")

    def as_json(self) -> dict[str, Any]:
        return {
            "ecs_events": self.ecs_events, "recovery_recorded": self.recorded, "tags_captured": self.tags,
            "skipped": {"foreign_cluster": self.foreign_cluster, "future_time": self.future_time},
            "skipped_first": list(self.skipped), "fold_errors": self.errors, "fold_errors_first": list(self.failed),
        }


class RecoveryFold:
    """Recovery's records as the stream folds to them (see the module's docstring)."""

    def __init__(self, rules: RecoveryRules) -> None:
        self.rules = rules
        self.view = View(complete=True)
        self.stats = RecoveryStats()
        self.tombstones: dict[Key, dict[str, Any]] = {}
        self._newest: str | None = None
        self._newest_limit = ""
        # TaskTagsCaptured is keyed by the job, not by its task's shard: a replay reading shards in any
        # order can read the tags first, and the fold drops tags of a task it does not know.
        self._early_tags: dict[str, list[tuple[OurEvent, str]]] = {}

    def add(self, event: StreamEvent, record: RawRecord) -> None:
        if isinstance(event, ECS_EVENTS):
            if not self._admitted(event, record):
                return
            self.stats.ecs_events += 1
        elif isinstance(event, OurEvent) and isinstance(event.data, RecoveryRecorded):
            self.stats.recorded += 1
        elif isinstance(event, OurEvent) and isinstance(event.data, TaskTagsCaptured):
            self.stats.tags += 1
            if self.view.task(event.data.task_arn) is None:
                self._early_tags.setdefault(event.data.task_arn, []).append((event, record.position))
                return  # read before its task's events (another shard): folded right after the task's first
        else:
            return  # nothing else changes a record (decisions, outcomes, reports: their results are recorded)
        self._fold(event, record.position)
        if isinstance(event, TaskStateChange) and event.detail.taskArn in self._early_tags:
            for tags, position in self._early_tags.pop(event.detail.taskArn):
                self._fold(tags, position)

    @property
    def tags_without_task(self) -> int:
        """Tags held for a task whose events the history did not hold (or that were skipped)."""
        return sum(len(held) for held in self._early_tags.values())

    def _fold(self, event: StreamEvent, position: str) -> None:
        try:
            fold_event(self.view, event, self.rules.identity)
        except Exception as exc:  # one record the fold cannot take: counted and named, never fatal
            if is_infrastructure(exc):
                raise
            self.stats.fail(position, exc)
        self.tombstones.update(self.view.retired)
        self.view.settled()

    def _admitted(self, event: TaskStateChange | ContainerInstanceStateChange | ContainerInstanceHealthChange,
                  record: RawRecord) -> bool:
        if event.detail.clusterArn != self.rules.cluster_arn:
            self.stats.foreign_cluster += 1
            return False
        at = iso(event.time)
        reference: str | None
        if record.arrival is not None:
            reference, limit, kind = iso(record.arrival), iso(record.arrival + self.rules.future_skew), "its arrival"
        else:
            reference, limit, kind = self._newest, self._newest_limit, "the newest event folded"
        if reference is not None and at > limit:
            self.stats.skip_future(record.position, at, reference, kind)
            return False
        if self._newest is None or at > self._newest:
            self._newest, self._newest_limit = at, iso(event.time + self.rules.future_skew)
        return True

    def records(self) -> dict[Key, Any]:
        """Every record the fold holds (parsed), retired ones left out."""
        return self.view.records()

    def summary(self) -> dict[str, Any]:
        """The ``recovery`` section: the same function over the same records as ``demo --json``."""
        return summary(self.records())

    def bodies(self) -> dict[Key, dict[str, Any]]:
        """Every record as the store keeps it (JSON), and the tombstone of each retired one."""
        records = self.records()
        out = {key: body for key, body in self.tombstones.items() if key not in records}
        out.update({key: dict(record.model_dump(mode="json")) for key, record in records.items()})
        return out

    def counts(self) -> dict[str, int]:
        """Records by kind, and tombstones."""
        records = self.records()
        kinds = Counter(key[0] for key in records)
        return {**dict(sorted(kinds.items())), "tombstones": sum(k not in records for k in self.tombstones)}


# --- the recovery table ---------------------------------------------------------------------------------


def record_writes(bodies: Mapping[Key, dict[str, Any]], stored: Loaded, retention: timedelta) -> list[RecordWrite]:
    """Each record written over what is stored (``stored``: bodies and revisions read just before; empty
    for a new table), with the store's index items moved as live moves them: its deadline and, for a
    node, its instance id; a stopped task's record leaves after ``retention`` (the live TTL)."""
    return [record_write(key, bodies[key], stored.bodies.get(key), stored.revs.get(key, 0), retention)
            for key in sorted(bodies)]


def fill_recovery_table(store: DynamoRecoveryStore, bodies: Mapping[Key, dict[str, Any]], *, empty: bool,
                        retention: timedelta) -> int:
    """Write every record; ``empty``: a new table, else each record conditionally on the revision read
    just before (a consumer that writes meanwhile is noticed and retried, never silently overwritten)."""
    keys = sorted(bodies)
    for start in range(0, len(keys), WRITE_CHUNK):
        _write_chunk(store, {k: bodies[k] for k in keys[start:start + WRITE_CHUNK]}, empty, retention)
    return len(keys)


def _write_chunk(store: DynamoRecoveryStore, chunk: dict[Key, dict[str, Any]], empty: bool,
                 retention: timedelta) -> None:
    for _ in range(CONFLICT_ROUNDS):
        stored = Loaded({}, {}) if empty else store.load(list(chunk))
        try:
            store.commit(record_writes(chunk, stored, retention), [], "replay")
            return
        except StateConflict:
            empty = False  # someone wrote meanwhile: read the revisions and write again
    raise TargetError(f"{len(chunk)} recovery record(s) kept changing while being overwritten (is a "
                              "recovery consumer still running?): " + ", ".join(f"{k}/{n}" for k, n in list(chunk)[:5]))


def scan_records(client: DynamoDBClient, table: str) -> Iterator[tuple[RecordKey, dict[str, Any]]]:
    """The jobs, nodes and incidents of a recovery table (a paginated, consistent scan: an audit
    command's read, never the consumers' path)."""
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for row in page.get("Items", []):
            key = record_key(row["pk"]["S"], row["sk"]["S"])
            if key[0] in SUMMARY_KINDS and "body" in row:
                yield key, json.loads(row["body"]["S"])


def live_summary(rows: Iterator[tuple[RecordKey, dict[str, Any]]]) -> dict[str, Any]:
    """The ``recovery`` section of stored records (parsed as the consumer parses them; tombstones left out)."""
    return summary(View(dict(rows), complete=True).records())
