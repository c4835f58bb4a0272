"""The projector on the embedded endpoint versus the old tool's per-event read-then-write, same run.

Both sides decode and fold with the same code into tables of their own on the same server, from the
same batches (every entity updated ``updates`` times per batch), so the figure is the I/O pattern:

* ``consumers.projector.Projector`` + ``DynamoProjectionStore``: one BatchGetItem per 100 touched items,
  then one conditional PutItem per touched item (coalesced: ten updates of a task make one write),
  written by a small thread pool;
* ``NaiveProjector`` (the baseline, written here): for each event, a GetItem per item it touches, the
  fold, then a PutItem per item, one at a time, as the old Lambda tool did.

DynamoDB requests are counted with a botocore hook (``before-call.dynamodb.*``): API calls, not retries.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from benchmarks.records import entity_batches
from benchmarks.server import client as aws_client
from benchmarks.stats import Figure, Target, baseline, figure, pair_ratios, progress, rounded
from consumers.core.ports import StreamRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

TARGET_RATIO = Target(">=", 5)
TARGET_REQUESTS = Target("<=", 0.2)


class RequestCounter:
    """Counts DynamoDB API calls made through one client, while attached."""

    def __init__(self, client: DynamoDBClient) -> None:
        self.count = 0
        self._events = client.meta.events

    def __enter__(self) -> RequestCounter:
        self._events.register("before-call.dynamodb.*", self.seen)
        return self

    def __exit__(self, *_: object) -> None:
        self._events.unregister("before-call.dynamodb.*", self.seen)

    def seen(self, **_: Any) -> None:
        self.count += 1


class NaiveProjector:
    """The baseline: per event, read each item it touches, fold, write each back (no batching, no
    coalescing, no conditions), as the old tool did with its GetItem/PutItem per event."""

    def __init__(self, client: DynamoDBClient, table_names: dict[str, str]) -> None:
        from consumers.core.projection import ProjectionConfig

        self._client = client
        self._names = table_names
        self._config = ProjectionConfig()

    def handle_batch(self, records: Sequence[StreamRecord]) -> None:
        from consumers.adapters.dynamodb import from_attribute_map, to_attribute_map
        from consumers.core.projection import KEY_ATTRIBUTE, ProjectionState, fold, touched_keys
        from events_schema.decode import MalformedRecord, decode

        for record in records:
            try:
                event = decode(record.data)
            except MalformedRecord:
                continue
            state = ProjectionState()
            for table, key in touched_keys(event, self._config):
                found = self._client.get_item(TableName=self._names[table], ConsistentRead=True,
                                              Key={KEY_ATTRIBUTE[table]: {"S": key}})
                if "Item" in found:
                    state.items[(table, key)] = from_attribute_map(found["Item"])
            fold(state, event, self._config)
            for table, key in sorted(state.dirty):
                self._client.put_item(TableName=self._names[table], Item=to_attribute_map(state.items[(table, key)]))


def _tables(client: DynamoDBClient, side: str) -> dict[str, str]:
    from consumers.adapters.dynamodb import create_tables
    from consumers.adapters.table_specs import PARKED
    from consumers.core.projection import TABLES

    suffix = uuid.uuid4().hex[:8]
    names = {logical: f"bench-{side}-{suffix}-{logical}" for logical in (*TABLES, PARKED)}
    create_tables(client, names)
    return names


def _items(client: DynamoDBClient, names: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    from consumers.adapters.dynamodb import DynamoProjectionStore
    from consumers.core.projection import TABLES

    store = DynamoProjectionStore(client, {t: names[t] for t in TABLES})
    return {t: sorted(store.scan_table(t), key=repr) for t in TABLES}


def run_projector(client: DynamoDBClient, batches: list[list[StreamRecord]]) -> tuple[float, int, dict[str, str]]:
    """Seconds and DynamoDB requests of the real projector over ``batches``, on fresh tables."""
    from consumers.adapters.dynamodb import DynamoParkingLot, DynamoProjectionStore
    from consumers.adapters.table_specs import PARKED
    from consumers.core.projection import TABLES, ProjectionConfig
    from consumers.projector import Projector

    names = _tables(client, "projector")
    projector = Projector(DynamoProjectionStore(client, {t: names[t] for t in TABLES}),
                          DynamoParkingLot(client, names[PARKED]), ProjectionConfig())
    with RequestCounter(client) as counter:
        started = time.perf_counter()
        for batch in batches:
            projector.handle_batch(batch)
        seconds = time.perf_counter() - started
    return seconds, counter.count, names


def run_naive(client: DynamoDBClient, batches: list[list[StreamRecord]]) -> tuple[float, int, dict[str, str]]:
    names = _tables(client, "naive")
    naive = NaiveProjector(client, names)
    with RequestCounter(client) as counter:
        started = time.perf_counter()
        for batch in batches:
            naive.handle_batch(batch)
        seconds = time.perf_counter() - started
    return seconds, counter.count, names


def bench_projector(
    endpoint_url: str, *, batches: int = 2, runs: int = 3, tasks: int = 40, ranks: int = 10, nodes: int = 10,
    updates: int = 10, server: str = "process",
) -> dict[str, Figure]:
    """``projector.events_per_s``, ``projector.ratio_vs_naive`` and ``projector.ddb_requests_per_event``."""
    records = entity_batches(batches, tasks=tasks, ranks=ranks, nodes=nodes, updates=updates)
    n_events = sum(len(batch) for batch in records)
    client = aws_client("dynamodb", endpoint_url)
    # Warm the connection pool, the decoders and the server's code paths outside the timing.
    run_projector(client, entity_batches(1, tasks=4, ranks=2, nodes=1, updates=2))
    run_naive(client, entity_batches(1, tasks=4, ranks=2, nodes=1, updates=2))
    fast_rate: list[float] = []
    fast_requests: list[float] = []
    naive_rate: list[float] = []
    naive_requests: list[float] = []
    same_items = True
    for run in range(runs):
        progress(f"projector: run {run + 1}/{runs}: projector and per-event read-then-write on {n_events} events")
        sides = ("projector", "naive") if run % 2 == 0 else ("naive", "projector")
        written: dict[str, dict[str, str]] = {}
        for side in sides:
            seconds, requests, names = (run_projector if side == "projector" else run_naive)(client, records)
            written[side] = names
            if side == "projector":
                fast_rate.append(n_events / seconds)
                fast_requests.append(requests / n_events)
            else:
                naive_rate.append(n_events / seconds)
                naive_requests.append(requests / n_events)
        # Both sides must have built the same tables, or the comparison is void.
        same_items = same_items and _items(client, written["projector"]) == _items(client, written["naive"])
    inputs: dict[str, Any] = {
        "events": n_events, "batches": batches, "events_per_batch": n_events // batches,
        "entities": {"tasks": tasks, "jobs": tasks // ranks, "nodes": tasks + nodes},
        "updates_per_entity_per_batch": updates, "runs": runs,
        "server": f"EmbeddedAws (moto server on 127.0.0.1) in a {'child process' if server == 'process' else 'thread'}",
        "write_threads": 8, "same_items_both_sides": same_items,
    }
    base = baseline("per-event GetItem then PutItem (the old tool's way), same server, same run", naive_rate,
                    "events/s", "per-event read-then-write")
    base["ddb_requests_per_event"] = rounded(statistics.median(naive_requests))
    return {
        "projector.events_per_s": figure(fast_rate, unit="events/s", inputs=inputs, baseline=base),
        "projector.ratio_vs_naive": figure(pair_ratios(fast_rate, naive_rate), unit="ratio", inputs=inputs,
                                           target=TARGET_RATIO, baseline=base,
                                           note="events/s of the projector over the naive one, run by run"),
        "projector.ddb_requests_per_event": figure(fast_requests, unit="requests/event", inputs=inputs,
                                                   target=TARGET_REQUESTS, baseline=base),
    }
