"""The projector at KCL batch sizes against per-event conditional UpdateItems from 8 threads, same run.

Records: ``benchmarks.fleet_history.FleetHistory`` on 2,048 nodes running eight 256-rank jobs that
first launch within the same 10 seconds (a cluster brought up, or restarted after a fabric failure),
then complete, fail (the recovery's decisions and stops) and relaunch on their own; split by shard as
the ingest rules partition them (by container instance, 4 shards) and cut, shard by shard, into what a
KCL record processor gets in one-second polls. The busy seconds hold 20 to 50 records (more are split
into batches of at most 50; quiet seconds, under 20 records, are left out). A task or a node then sees
one update per batch (a rank's PROVISIONING, PENDING and RUNNING are tens of seconds apart), a job one
per rank of it in the batch: ``inputs.updates_per_item_per_batch`` says what the batches hold. (A job
of 2,048 ranks would make a job item of about 1.1 MB, over DynamoDB's 400 KB item limit.)

Both sides decode and fold with the same code into tables of their own on the same embedded AWS:

* ``consumers.projector.Projector`` + ``DynamoProjectionStore``: per batch, one BatchGetItem per 100
  touched items, the fold, then one conditional PutItem per touched item from 8 threads;
* ``UpdateItemProjector`` (the baseline, written here as a competent engineer would): per event, one
  conditional UpdateItem per register the event writes, no read, the batch's updates from 8 threads
  (one item's updates in order on one thread, as DynamoDB would serialize them anyway): a task's
  fields if its ECS version is newer; the job's entry for that rank (``tasks.<rank key>``: its version and
  rank string, consumers/core/job_ranks.py) if newer,
  creating the map on first use; a node's field group (ECS, health, repair, last report) if its
  order is newer; a recovery stop as a flag and a string-set ADD. It does not derive the job's
  summary fields (state, counts): a reader would, so it writes less.

Checked after every run: the task items, the jobs' ranks (the current generation's) and the nodes' fields are the
same on both sides (``inputs.same_registers_both_sides``). DynamoDB requests are counted with a
botocore ``before-call.dynamodb.*`` hook.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from benchmarks.projector_bench import RequestCounter
from benchmarks.server import client as aws_client
from benchmarks.stats import Figure, Target, baseline, figure, pair_ratios, progress, rounded
from consumers.core.ports import StreamRecord

TARGET_RATIO = Target(">=", 3)
TARGET_REQUESTS = Target("<=", 1)
THREADS = 8
BATCH_SIZES = (20, 50)
FLEET = {"nodes": 2048, "ranks": 256, "shards": 4, "first_launches_within_s": 10}
POLL_S = 1.0  # the KCL polls a shard about once a second
SEED = 20261201

# The registers of a node item, by the event that writes them, and the field that orders each.
NODE_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ContainerInstanceStateChange": ("ecs_version", (
        "cluster_arn", "ec2_instance_id", "is_external", "status", "status_reason", "agent_connected", "gpu_ids",
        "gpu_count", "attributes", "ecs_at", "registered_at")),
    "ContainerInstanceHealthChange": ("health_order", ("health_status", "health_checks")),
    "NodeStateChanged": ("repair_order", ("repair_state", "repair_reason", "incident_id")),
    "HealthCheckReported": ("report_order", ("last_health_report",)),
}
JOB_CONSTANTS = ("cluster_arn", "group", "started_by", "task_definition_arn")
RECOVERY_OWNED = frozenset({"stop_requested_by_recovery"})


# --- records ------------------------------------------------------------------------------------


def kcl_batches(n_events: int, seed: int = SEED) -> list[list[StreamRecord]]:
    """About ``n_events`` records in batches of 20-50, each what one shard's record processor gets in a
    one-second poll during the fleet's busy seconds (launches, completions, a failure's stops)."""
    from benchmarks.fleet_history import FleetHistory

    history = FleetHistory(nodes=FLEET["nodes"], days=3, ranks=FLEET["ranks"], shards=FLEET["shards"],
                           stagger_s=FLEET["first_launches_within_s"], seed=seed)
    polls: list[list[StreamRecord]] = []
    open_polls: dict[str, tuple[int, list[StreamRecord]]] = {}
    for day, raw in history:
        shard, _, sequence = raw.position.rpartition(":")
        second = int(day * 86_400 / POLL_S)
        current = open_polls.get(shard)
        if current is None or current[0] != second:
            if current is not None:
                polls += _busy(current[1])
            current = open_polls[shard] = (second, [])
        current[1].append(StreamRecord(shard_id=shard, sequence_number=sequence, partition_key=shard,
                                       data=raw.data, arrival=None))
        if sum(len(p) for p in polls) >= 12 * n_events:
            break
    step = max(1, len(polls) * 35 // max(1, n_events))  # evenly spaced: launches, stops, not only the first
    return polls[::step][: max(1, n_events // 35)]


def _busy(poll: list[StreamRecord]) -> list[list[StreamRecord]]:
    """A busy poll (at least 20 records) as batches of at most 50; quiet polls are left out."""
    low, high = BATCH_SIZES
    if len(poll) < low:
        return []
    parts = -(-len(poll) // high)
    size = -(-len(poll) // parts)
    return [poll[i:i + size] for i in range(0, len(poll), size)]


def updates_per_item(batches: Sequence[Sequence[StreamRecord]]) -> dict[str, float]:
    """Per table: updates per touched item per batch (the projector's coalescing has this to work with)."""
    from consumers.core.projection import ProjectionConfig, touched_keys
    from events_schema.decode import MalformedRecord, decode

    config = ProjectionConfig()
    updates: Counter[str] = Counter()
    items: Counter[str] = Counter()
    for batch in batches:
        seen: Counter[tuple[str, str]] = Counter()
        for record in batch:
            try:
                seen.update(touched_keys(decode(record.data), config))
            except MalformedRecord:
                continue
        for (table, _), count in seen.items():
            updates[table] += count
            items[table] += 1
    return {table: rounded(updates[table] / items[table]) for table in sorted(items)}


# --- the baseline: per-event conditional UpdateItem ---------------------------------------------


@dataclass
class Update:
    """One UpdateItem: ``SET`` these values (``if_not_exists`` for ``keep``), if ``condition`` holds."""

    table: str
    key: str
    sets: dict[str, Any]
    condition: str | None = None
    condition_values: dict[str, Any] = field(default_factory=dict)
    keep: dict[str, Any] = field(default_factory=dict)
    add_strings: dict[str, str] = field(default_factory=dict)
    map_entry: tuple[str, str] | None = None  # (map attribute, entry key): SET map.entry; create the map if absent


class UpdateItemProjector:
    """Per event, one conditional UpdateItem per register it writes, from ``threads`` threads; no reads."""

    def __init__(self, client: Any, table_names: dict[str, str], threads: int = THREADS) -> None:
        from consumers.core.projection import ProjectionConfig

        self._client = client
        self._names = table_names
        self._config = ProjectionConfig()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="update-item")

    def close(self) -> None:
        self._pool.shutdown()

    def handle_batch(self, records: Sequence[StreamRecord]) -> None:
        from events_schema.decode import MalformedRecord, decode

        updates: list[Update] = []
        for record in records:
            try:
                updates += self.updates_of(decode(record.data))
            except MalformedRecord:
                continue
        # One thread per item at a time, items in parallel: DynamoDB serializes writes to one item anyway,
        # and moto's server is not safe for concurrent updates of one item.
        by_item: dict[tuple[str, str], list[Update]] = defaultdict(list)
        for update in updates:
            by_item[(update.table, update.key)].append(update)
        list(self._pool.map(self._send_all, by_item.values()))  # the batch is done (checkpointable) when all are

    def _send_all(self, updates: list[Update]) -> None:
        for update in updates:
            self._send(update)

    def updates_of(self, event: Any) -> list[Update]:
        """The event's own registers, from a fold of the event alone (the same code as the projector)."""
        from consumers.core.projection import JOB, NODE, TASK, ProjectionState, fold, touched_keys
        from events_schema.envelope import OurEvent

        alone = fold(ProjectionState(), event, self._config).items
        kind = event.type if isinstance(event, OurEvent) else type(event).__name__
        out: list[Update] = []
        for table, key in touched_keys(event, self._config):
            item = alone.get((table, key))
            if item is None:
                continue
            if table == TASK:
                out.append(self._task(key, item, kind))
            elif table == JOB:
                out += self._job(key, item, event, kind)
            elif table == NODE and kind in NODE_GROUPS:
                order, fields = NODE_GROUPS[kind]
                out.append(Update(NODE, key, {f: item.get(f) for f in (*fields, order)},
                                  f"attribute_not_exists(#{order}) OR #{order} < :{order}",
                                  {order: item[order]}))
        return out

    def _task(self, key: str, item: dict[str, Any], kind: str) -> Update:
        from consumers.core.projection import KEY_ATTRIBUTE, TASK

        if kind == "DecisionRecorded":  # a recovery stop: a flag, set once
            return Update(TASK, key, {"stop_requested_by_recovery": True},
                          keep={"version": -1, "job_id": item.get("job_id")})
        fields = {f: v for f, v in item.items() if f != KEY_ATTRIBUTE[TASK] and f not in RECOVERY_OWNED}
        return Update(TASK, key, fields, "attribute_not_exists(#version) OR #version < :version",
                      {"version": item["version"]})

    def _job(self, key: str, item: dict[str, Any], event: Any, kind: str) -> list[Update]:
        from consumers.core.job_ranks import decode, rank_key
        from consumers.core.projection import JOB

        if kind == "TaskStateChange":
            name = rank_key(event.detail.taskArn)
            rank = item["ranks"].get(name)
            if rank is None:  # a rank of an older generation: the job keeps only its registers
                return []
            entry = {"version": decode(rank).version, "rank": rank}
            return [Update(JOB, key, {"entry": entry}, "attribute_not_exists(#tasks.#entry) OR "
                           "#tasks.#entry.#version < :version", {"version": entry["version"]},
                           keep={f: item.get(f) for f in JOB_CONSTANTS}, map_entry=("tasks", name))]
        if kind == "JobStateChanged":
            out = [Update(JOB, key, {"recovery": item["recovery"]},
                          "attribute_not_exists(#recovery) OR #recovery.#order < :order",
                          {"order": item["recovery"]["order"]})]
            if event.data.state == "RESTARTING":
                at = item["generation_at"]
                out.append(Update(JOB, key, {"generation_at": at},
                                  "attribute_not_exists(#generation_at) OR #generation_at < :generation_at",
                                  {"generation_at": at}))
            return out
        if kind == "DecisionRecorded":
            return [Update(JOB, key, {}, add_strings={"recovery_stop_set": event.data.action.target})]
        return []

    def _send(self, update: Update) -> None:
        from botocore.exceptions import ClientError

        try:
            self._client.update_item(**self._request(update, create_map=False))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                return  # a newer value is there already: nothing to do
            if code != "ValidationException" or update.map_entry is None:
                raise
            self._create_map(update)

    def _create_map(self, update: Update) -> None:
        """The job's ``tasks`` map does not exist yet: create it with this entry, unless a racer did."""
        from botocore.exceptions import ClientError

        try:
            self._client.update_item(**self._request(update, create_map=True))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            self._send(update)  # another thread created it first: set our entry in it

    def _request(self, update: Update, *, create_map: bool) -> dict[str, Any]:
        from consumers.adapters.dynamodb import to_attribute_map
        from consumers.core.projection import KEY_ATTRIBUTE

        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        parts: list[str] = []
        condition = update.condition
        for name, value in update.sets.items():
            if update.map_entry is not None and name == "entry":
                attribute, entry = update.map_entry
                names |= {f"#{attribute}": attribute, "#entry": entry, "#version": "version"}
                if create_map:
                    parts.append(f"#{attribute} = :map")
                    values[":map"] = {entry: value}
                    condition = f"attribute_not_exists(#{attribute})"
                    names.pop("#entry"), names.pop("#version")
                else:
                    parts.append(f"#{attribute}.#entry = :entry")
                    values[":entry"] = value
                continue
            names[f"#{name}"] = name
            values[f":{name}"] = value
            parts.append(f"#{name} = :{name}")
        for name, value in update.keep.items():
            names[f"#{name}"] = name
            values[f":keep_{name}"] = value
            parts.append(f"#{name} = if_not_exists(#{name}, :keep_{name})")
        if condition and not create_map:
            for name, value in update.condition_values.items():
                names[f"#{name}"] = name
                values[f":{name}"] = value
        expression = f"SET {', '.join(parts)}" if parts else ""
        serialized = to_attribute_map({k.removeprefix(":"): v for k, v in values.items()})
        attribute_values = {f":{k}": v for k, v in serialized.items()}
        for name, value in update.add_strings.items():
            names[f"#{name}"] = name
            attribute_values[f":add_{name}"] = {"SS": [value]}
            expression = f"{expression} ADD #{name} :add_{name}".strip()
        request: dict[str, Any] = {
            "TableName": self._names[update.table], "Key": {KEY_ATTRIBUTE[update.table]: {"S": update.key}},
            "UpdateExpression": expression, "ExpressionAttributeNames": names,
        }
        if attribute_values:
            request["ExpressionAttributeValues"] = attribute_values
        if condition:
            request["ConditionExpression"] = condition
        return request


# --- the two sides, timed ----------------------------------------------------------------------


def _tables(client: Any, side: str) -> dict[str, str]:
    from consumers.adapters.dynamodb import create_tables
    from consumers.adapters.table_specs import PARKED
    from consumers.core.projection import TABLES

    suffix = uuid.uuid4().hex[:8]
    names = {logical: f"kcl-{side}-{suffix}-{logical}" for logical in (*TABLES, PARKED)}
    create_tables(client, names)
    return names


def run_side(side: str, client: Any, batches: list[list[StreamRecord]]) -> tuple[float, int, dict[str, str]]:
    """Seconds and DynamoDB requests of one side over ``batches``, on fresh tables."""
    from consumers.adapters.dynamodb import DynamoParkingLot, DynamoProjectionStore
    from consumers.adapters.table_specs import PARKED
    from consumers.core.projection import TABLES, ProjectionConfig
    from consumers.projector import Projector

    names = _tables(client, side)
    handler: Any
    if side == "projector":
        handler = Projector(DynamoProjectionStore(client, {t: names[t] for t in TABLES}, write_threads=THREADS),
                            DynamoParkingLot(client, names[PARKED]), ProjectionConfig())
    else:
        handler = UpdateItemProjector(client, names)
    with RequestCounter(client) as counter:
        started = time.perf_counter()
        for batch in batches:
            handler.handle_batch(batch)
        seconds = time.perf_counter() - started
    if isinstance(handler, UpdateItemProjector):
        handler.close()
    return seconds, counter.count, names


def same_registers(client: Any, projector: dict[str, str], update_item: dict[str, str]) -> bool:
    """Tasks, jobs' per-task entries and nodes' fields agree between the two sides' tables."""
    from consumers.adapters.dynamodb import DynamoProjectionStore
    from consumers.core.projection import JOB, NODE, TABLES, TASK

    def rows(names: dict[str, str], table: str) -> dict[str, dict[str, Any]]:
        store = DynamoProjectionStore(client, {t: names[t] for t in TABLES})
        key = {TASK: "task_arn", JOB: "job_id", NODE: "container_instance_arn"}[table]
        return {str(item[key]): item for item in store.scan_table(table)}

    ours, theirs = rows(projector, TASK), rows(update_item, TASK)
    tasks_ok = ours.keys() == theirs.keys() and all(
        {k: v for k, v in ours[arn].items() if k not in RECOVERY_OWNED}
        == {k: v for k, v in theirs[arn].items() if k not in RECOVERY_OWNED} for arn in ours)
    jobs, their_jobs = rows(projector, JOB), rows(update_item, JOB)
    jobs_ok = jobs.keys() == their_jobs.keys() and all(
        _ranks_agree(jobs[j].get("ranks", {}), their_jobs[j].get("tasks", {})) for j in jobs)
    nodes, their_nodes = rows(projector, NODE), rows(update_item, NODE)
    nodes_ok = nodes.keys() == their_nodes.keys() and all(
        nodes[n].get(f) == value for n in nodes for f, value in their_nodes[n].items())
    return tasks_ok and jobs_ok and nodes_ok


def _ranks_agree(ranks: dict[str, str], entries: dict[str, Any]) -> bool:
    """Every rank of the projector's current generation is the baseline's entry for it (the baseline keeps
    every generation's, and sets a recovery stop as a string-set ADD, not in the rank)."""
    return all(name in entries and _without_stop(entries[name]["rank"]) == _without_stop(value)
               for name, value in ranks.items())


def _without_stop(rank: str) -> str:
    from consumers.core.job_ranks import RECOVERY_STOP

    return rank[0] + str(int(rank[1]) & ~RECOVERY_STOP) + rank[2:]


def bench_projector_kcl(endpoint_url: str, *, events: int, runs: int, server: str = "process") -> dict[str, Figure]:
    """``projector.ratio_vs_update_item`` and ``projector.requests_per_event`` at KCL batch sizes."""
    batches = kcl_batches(events)
    n_events = sum(len(batch) for batch in batches)
    client = aws_client("dynamodb", endpoint_url)
    warm = kcl_batches(200, seed=SEED + 1)[:3]
    for side in ("projector", "update_item"):  # the connection pool, the decoders, the server's code paths
        run_side(side, client, warm)
    rate: dict[str, list[float]] = {"projector": [], "update_item": []}
    requests: dict[str, list[float]] = {"projector": [], "update_item": []}
    same = True
    for run in range(runs):
        progress(f"projector (KCL batches): run {run + 1}/{runs}: projector and per-event UpdateItem "
                 f"on {n_events} records in {len(batches)} batches")
        sides = ("projector", "update_item") if run % 2 == 0 else ("update_item", "projector")
        written: dict[str, dict[str, str]] = {}
        for side in sides:
            seconds, count, written[side] = run_side(side, client, batches)
            rate[side].append(n_events / seconds)
            requests[side].append(count / n_events)
        same = same and same_registers(client, written["projector"], written["update_item"])
    sizes = [len(batch) for batch in batches]
    inputs: dict[str, Any] = {
        "events": n_events, "batches": len(batches), "batch_size": {"min": min(sizes), "max": max(sizes),
                                                                     "median": statistics.median(sizes)},
        "updates_per_item_per_batch": updates_per_item(batches), "runs": runs, "threads_each_side": THREADS,
        "source": "benchmarks.fleet_history.FleetHistory", "fleet": FLEET,
        "server": f"EmbeddedAws (moto server on 127.0.0.1) in a {'child process' if server == 'process' else 'thread'}",
        "same_registers_both_sides": same,
    }
    base = baseline("per-event conditional UpdateItem of each register the event writes, 8 threads, no reads "
                    "(UpdateItemProjector), same server, same batches", rate["update_item"], "events/s",
                    "per-event UpdateItem x 8 threads")
    base["requests_per_event"] = rounded(statistics.median(requests["update_item"]))
    return {
        "projector.ratio_vs_update_item": figure(
            pair_ratios(rate["projector"], rate["update_item"]), unit="ratio", inputs=inputs, target=TARGET_RATIO,
            baseline=base, note="events/s of the projector over per-event UpdateItems, run by run"),
        "projector.requests_per_event": figure(requests["projector"], unit="requests/event", inputs=inputs,
                                               target=TARGET_REQUESTS, baseline=base),
    }
