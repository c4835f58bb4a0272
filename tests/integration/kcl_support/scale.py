"""Workload and probes for the KCL scale test: ECS-shaped events, a paced feeder, lease and log readers."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from events_schema.rules import ingest_rules
from local.bridge import EventBridgeBridge
from tests.factories import CLUSTER, node_arn, node_event, task_arn, task_event

POISON = b"\x00not json: a poison record"


# --- the workload ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """What the fleet did: per-entity histories in increasing versions, with some jobs failing."""

    nodes: int
    jobs: int
    node_versions: int
    task_versions: int
    failed_jobs: frozenset[int]
    seed: int = 7

    @property
    def ranks(self) -> int:
        return self.nodes // self.jobs

    def task_history(self, task: int) -> list[dict[str, Any]]:
        job = task // self.ranks
        group = f"job:train-{job:03d}"
        events = []
        for version in range(1, self.task_versions + 1):
            status = "PROVISIONING" if version == 1 else "PENDING" if version == 2 else "RUNNING"
            kwargs: dict[str, Any] = {}
            if version == self.task_versions and job in self.failed_jobs and task % self.ranks == 0:
                # rank 0 of a failing job crashes (exit 1): a GPU task failure the recovery acts on
                status, kwargs = "STOPPED", {"exit_code": 1, "stop_code": "EssentialContainerExited"}
            events.append(task_event(task, node=task, version=version, status=status, group=group, **kwargs))
        return events

    def node_history(self, node: int) -> list[dict[str, Any]]:
        return [node_event(node, version=v) for v in range(1, self.node_versions + 1)]

    def histories(self) -> list[list[dict[str, Any]]]:
        return [self.node_history(n) for n in range(self.nodes)] + [
            self.task_history(t) for t in range(self.nodes)
        ]


@dataclass(frozen=True)
class EcsWorld:
    """The fleet as moto's ECS knows it, so that the recovery's calls (tags, stops, drains) meet real
    resources: index n is node n, and task n runs on node n."""

    node_arns: list[str]
    instance_ids: list[str]
    task_arns: list[str]

    def renames(self) -> dict[str, str]:
        """The factories' placeholder ids -> moto's ids."""
        mapping = {node_arn(n): arn for n, arn in enumerate(self.node_arns)}
        mapping.update({f"i-{n:017x}": iid for n, iid in enumerate(self.instance_ids)})
        mapping.update({task_arn(n): arn for n, arn in enumerate(self.task_arns)})
        return mapping


def build_ecs_world(ecs: Any, ec2: Any, workload: Workload, *, cluster: str, region: str, account: str,
                    health_check_family: str) -> EcsWorld:
    """Instances, container instances, the training and health-check task definitions, one task per node."""
    reservation = ec2.run_instances(ImageId="ami-12c6146b", MinCount=workload.nodes, MaxCount=workload.nodes,
                                    InstanceType="p4d.24xlarge")
    instance_ids = [i["InstanceId"] for i in reservation["Instances"]]
    node_arns = []
    for instance_id in instance_ids:
        document = json.dumps({"instanceId": instance_id, "region": region, "instanceType": "p4d.24xlarge",
                               "accountId": account})
        registered = ecs.register_container_instance(cluster=cluster, instanceIdentityDocument=document)
        node_arns.append(registered["containerInstance"]["containerInstanceArn"])
    for family, container in (("llm-train", "trainer"), (health_check_family, "dcgm")):
        ecs.register_task_definition(family=family, containerDefinitions=[
            {"name": container, "image": f"public.ecr.aws/example/{family}:latest", "memory": 1024, "essential": True},
        ])
    task_arns = []
    for task, node in enumerate(node_arns):
        started = ecs.start_task(cluster=cluster, taskDefinition="llm-train", containerInstances=[node],
                                 group=f"job:train-{task // workload.ranks:03d}", startedBy="launcher",
                                 tags=[{"key": "rank", "value": str(task % workload.ranks)}])
        task_arns.append(started["tasks"][0]["taskArn"])
    return EcsWorld(node_arns, instance_ids, task_arns)


def rename(event: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """The event with every placeholder id replaced by its moto id."""
    text = _PLACEHOLDER.sub(lambda m: mapping.get(m.group(0), m.group(0)), json.dumps(event))
    renamed: dict[str, Any] = json.loads(text)
    return renamed


_PLACEHOLDER = re.compile(r"arn:aws:ecs:[^\"]+?/gpu-training/(?:node\d{4}|task\d{5})|i-[0-9a-f]{17}")


def interleave(histories: Sequence[Sequence[dict[str, Any]]], rng: random.Random) -> list[dict[str, Any]]:
    """A random merge that keeps each entity's own order (as ECS emits them)."""
    cursors = [0] * len(histories)
    live = [i for i, h in enumerate(histories) if h]
    merged: list[dict[str, Any]] = []
    while live:
        pick = rng.randrange(len(live))
        entity = live[pick]
        merged.append(histories[entity][cursors[entity]])
        cursors[entity] += 1
        if cursors[entity] == len(histories[entity]):
            live[pick] = live[-1]
            live.pop()
    return merged


def with_duplicates(records: list[tuple[bytes, str]], count: int, rng: random.Random) -> list[tuple[bytes, str]]:
    """Redeliver ``count`` records later in the stream, as EventBridge and producers retrying do."""
    out = list(records)
    for _ in range(count):
        original = rng.randrange(len(records))
        out.insert(rng.randrange(original + 1, len(out) + 1), records[original])
    return out


def stream_records(
    workload: Workload, duplicates: int, renames: dict[str, str] | None = None
) -> list[tuple[bytes, str]]:
    """(data, partition key) pairs exactly as the EventBridge rules would put them."""
    rng = random.Random(workload.seed)
    bridge = EventBridgeBridge(ingest_rules(CLUSTER), writer=_NoWriter())
    events = interleave(workload.histories(), rng)
    if renames:
        events = [rename(event, renames) for event in events]
    routed = [pair for event in events for pair in bridge.route(event)]
    return with_duplicates(routed, duplicates, rng)


class _NoWriter:
    def put_raw(self, records: Sequence[tuple[bytes, str]]) -> list[str]:
        raise AssertionError("route() only")


# --- the feeder -----------------------------------------------------------------------------------


@dataclass
class Feeder:
    """Puts records in paced PutRecords chunks from a thread; can hold at a mark until released."""

    kinesis: Any
    stream: str
    records: list[tuple[bytes, str]]
    chunk: int
    pause_s: float
    pause_after_hold_s: float
    hold_at: int | None = None
    poison_at: int | None = None
    poison_shards: Sequence[dict[str, Any]] = ()
    sent: int = 0
    tips: dict[str, int] = field(default_factory=dict)
    poison_sequences: dict[str, str] = field(default_factory=dict)
    error: BaseException | None = None
    released: threading.Event = field(default_factory=threading.Event)
    at_hold: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    started_at: float = 0.0
    held_at: float = 0.0
    finished_at: float = 0.0

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        try:
            self.started_at = time.monotonic()
            for start in range(0, len(self.records), self.chunk):
                self._maybe_poison(start)
                self._maybe_hold(start)
                self._put([{"Data": d, "PartitionKey": k} for d, k in self.records[start : start + self.chunk]])
                self.sent = min(len(self.records), start + self.chunk)
                time.sleep(self.pause_after_hold_s if self.released.is_set() else self.pause_s)
            self._maybe_poison(len(self.records))
            self.finished_at = time.monotonic()
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            self.at_hold.set()
            self.done.set()

    def _maybe_hold(self, position: int) -> None:
        if self.hold_at is not None and position >= self.hold_at:
            self.hold_at = None
            self.held_at = time.monotonic()
            self.at_hold.set()
            self.released.wait()

    def _maybe_poison(self, position: int) -> None:
        if self.poison_at is None or position < self.poison_at:
            return
        self.poison_at = None
        for shard in self.poison_shards:
            # ExplicitHashKey pins the record to this shard whatever its partition key hashes to.
            response = self.kinesis.put_record(
                StreamName=self.stream, Data=POISON, PartitionKey=f"poison-{shard['ShardId']}",
                ExplicitHashKey=shard["HashKeyRange"]["StartingHashKey"],
            )
            self.poison_sequences[response["ShardId"]] = response["SequenceNumber"]
            self._note_tip(response["ShardId"], response["SequenceNumber"])

    def _put(self, entries: list[dict[str, Any]]) -> None:
        pending = entries
        for _ in range(10):
            response = self.kinesis.put_records(StreamName=self.stream, Records=pending)
            retry = []
            for entry, result in zip(pending, response["Records"], strict=True):
                if "ErrorCode" in result:
                    retry.append(entry)
                else:
                    self._note_tip(result["ShardId"], result["SequenceNumber"])
            if not retry:
                return
            pending = retry
            time.sleep(0.2)
        raise RuntimeError(f"{len(pending)} records still rejected after retries")

    def _note_tip(self, shard_id: str, sequence_number: str) -> None:
        self.tips[shard_id] = max(self.tips.get(shard_id, 0), int(sequence_number))


# --- probes -----------------------------------------------------------------------------------------


@dataclass
class StreamTips:
    """Each shard's last sequence number, read incrementally (after the last one seen); every record read
    is kept in ``seen`` as (shard, sequence number, data)."""

    kinesis: Any
    stream: str
    tips: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[str, int, bytes]] = field(default_factory=list)

    def refresh(self) -> dict[str, int]:
        for shard in self.kinesis.list_shards(StreamName=self.stream)["Shards"]:
            shard_id = shard["ShardId"]
            after = self.tips.get(shard_id)
            kwargs: dict[str, Any] = (
                {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
                if after else {"ShardIteratorType": "TRIM_HORIZON"}
            )
            iterator = self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard_id, **kwargs)
            iterator = iterator["ShardIterator"]
            while iterator:
                response = self.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                if not response["Records"]:
                    break
                self.tips[shard_id] = response["Records"][-1]["SequenceNumber"]
                self.seen.extend((shard_id, int(r["SequenceNumber"]), bytes(r["Data"])) for r in response["Records"])
                iterator = response.get("NextShardIterator")
        return {shard: int(seq) for shard, seq in self.tips.items()}


def lease_rows(dynamodb: Any, table: str) -> dict[str, dict[str, Any]]:
    """leaseKey -> {owner, checkpoint, counter} from the KCL lease table (empty if not there yet)."""
    try:
        items = dynamodb.scan(TableName=table, ConsistentRead=True).get("Items", [])
    except dynamodb.exceptions.ResourceNotFoundException:
        return {}
    return {
        item["leaseKey"]["S"]: {
            "owner": item.get("leaseOwner", {}).get("S"),
            "checkpoint": item.get("checkpoint", {}).get("S"),
            "counter": int(item.get("leaseCounter", {}).get("N", "0")),
        }
        for item in items
    }


def leader_of(dynamodb: Any, application: str) -> str | None:
    """The worker holding the KCL 3 leader lock (it runs lease assignment)."""
    try:
        response = dynamodb.get_item(
            TableName=f"{application}-CoordinatorState", Key={"key": {"S": "Leader"}}, ConsistentRead=True
        )
    except dynamodb.exceptions.ResourceNotFoundException:
        return None
    item = response.get("Item")
    return item["ownerName"]["S"] if item and "ownerName" in item else None


def owners(leases: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    by_owner: dict[str, set[str]] = defaultdict(set)
    for shard, row in leases.items():
        if row["owner"]:
            by_owner[row["owner"]].add(shard)
    return by_owner


def caught_up(leases: dict[str, dict[str, Any]], tips: dict[str, int]) -> bool:
    """Every shard's checkpoint has reached the last sequence number put into it."""
    for shard, tip in tips.items():
        checkpoint = (leases.get(shard) or {}).get("checkpoint") or ""
        if not checkpoint.isdigit() or int(checkpoint) < tip:
            return False
    return True


def wait_for(
    condition: Callable[[], bool], *, timeout: float, interval: float, what: str,
    alive: Callable[[], str | None] = lambda: None,
) -> float:
    """Poll until ``condition``; returns the seconds it took. Fails with ``what`` (and why, if a worker died)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        problem = alive()
        if problem:
            raise AssertionError(f"{what}: {problem}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


_BATCH_LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO gpu_recovery\.kcl_entry pid=\d+ "
    r"batch shard=(?P<shard>\S+) records=(?P<records>\d+) last_seq=\d+ seconds=(?P<seconds>[\d.]+)$"
)


@dataclass(frozen=True)
class Batch:
    at: datetime
    shard: str
    records: int
    seconds: float


def batches_in_log(path: Path) -> list[Batch]:
    """The processors' per-batch lines (the daemon copies each processor's stderr into its log)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        match = _BATCH_LINE.match(line)
        if match:
            at = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f")
            out.append(Batch(at, match["shard"], int(match["records"]), float(match["seconds"])))
    return out


@dataclass(frozen=True)
class Throughput:
    records: int
    batches: int
    busy_s: float
    span_s: float

    @property
    def per_busy_second(self) -> float:
        return self.records / self.busy_s if self.busy_s else 0.0

    @property
    def per_wall_second(self) -> float:
        return self.records / self.span_s if self.span_s else 0.0


def throughput(batches: Iterable[Batch]) -> Throughput:
    rows = sorted(batches, key=lambda b: b.at)
    if not rows:
        return Throughput(0, 0, 0.0, 0.0)
    span = (rows[-1].at - rows[0].at).total_seconds() + rows[-1].seconds
    return Throughput(sum(b.records for b in rows), len(rows), sum(b.seconds for b in rows), span)
