"""``e2e.kcl``: an ECS event put on the stream to the recovery's first AWS call for it, through the real KCL.

The whole local stack (``local.stack.LocalStack``): kinesis-local (the KCL's HTTP/2 Kinesis) with a 4-shard
stream and moto's server in its own process (DynamoDB for the KCL's leases and the recovery's tables, ECS).
One recovery worker, ``gpu-recovery consume recovery --engine kcl`` (the CLI, the Java MultiLangDaemon, one
Python processor per shard lease), with the local lease timings and the production poll interval
(``idleTimeBetweenReadsInMillis`` 1,500 ms, ``consumers.runtime.kcl_config``'s default).

Each decision: a GPU task of a new job is seen RUNNING (its ECS Task State Change, routed by the ingest rules
as EventBridge would put it), and the recovery's first act on it is to capture its tags
(``ListTagsForResource``, idempotency key ``tags:<task ARN>``): the ledger entry it claims just before the
call holds the processor's wall clock (``claimed_at``, microseconds). Latency = ``claimed_at`` less the wall
clock when the ``PutRecord`` that wrote the event returned (same machine, same clock). Events go in one at a
time at a steady pace, so each is a fresh arrival, not a backlog. The tasks exist in moto's ECS, so the calls
succeed. Before measuring, one event is put and its call awaited: the JVM, the leases and the processors
are up.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.stats import TAIL_MIN_SAMPLES, Figure, Target, figure, percentile, progress, rounded, tail

REGION = "us-east-1"
ACCOUNT = "123456789012"
CLUSTER_NAME = "gpu-training"
POLL_MS = 1_500  # the production poll interval (consumers.runtime.kcl_config.DaemonConfig)
SHARDS = 4
READY_TIMEOUT_S = 180.0
DRAIN_TIMEOUT_S = 120.0


def bench_e2e_kcl(decisions: int, pace_s: float = 0.1) -> dict[str, Figure]:
    from gpu_recovery.settings import load_settings
    from local.stack import LocalStack

    settings = load_settings(stream_name="bench-e2e-kcl", stream_shards=SHARDS, region=REGION, account_id=ACCOUNT,
                             cluster_name=CLUSTER_NAME)
    with tempfile.TemporaryDirectory(prefix="bench-e2e-kcl-") as tmp:
        progress(f"e2e.kcl: kinesis-local + moto server, one recovery KCL worker (poll {POLL_MS} ms)")
        with LocalStack(settings, Path(tmp) / "stack", moto_in_process=False) as stack:
            run = _Run(stack, decisions + 1)
            worker = stack.start_worker("recovery", worker_id="recovery-1",
                                        extra=("--property", f"idleTimeBetweenReadsInMillis={POLL_MS}"))
            ready_s = run.warm_up(worker)
            progress(f"e2e.kcl: worker ready after {ready_s:.0f} s; {decisions} decisions, one event every "
                     f"{pace_s:g} s")
            latencies = run.measure(worker, range(1, decisions + 1), pace_s)
    return _figures(latencies, decisions, pace_s, ready_s)


class _Run:
    def __init__(self, stack: Any, tasks: int) -> None:
        from consumers.adapters.ledger import DynamoLedger
        from events_schema.rules import ingest_rules
        from local.bridge import EventBridgeBridge

        self.stack = stack
        clients = stack.clients()
        self.kinesis, self.dynamodb = clients.client("kinesis"), clients.client("dynamodb")
        self.ledger = DynamoLedger(self.dynamodb, stack.settings.ledger_table)
        self.stream = stack.settings.stream_name
        cluster = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER_NAME}"
        self.bridge = EventBridgeBridge(ingest_rules(cluster), writer=_NoWriter())
        self.tasks = _ecs_world(clients.client("ecs"), clients.client("ec2"), tasks)

    def warm_up(self, worker: Any) -> float:
        started = time.monotonic()
        self.measure(worker, [0], 0.0, timeout_s=READY_TIMEOUT_S)
        return time.monotonic() - started

    def measure(self, worker: Any, indexes: Any, pace_s: float, timeout_s: float = DRAIN_TIMEOUT_S) -> list[float]:
        put_at: dict[str, float] = {}
        for index in indexes:
            arn, node = self.tasks[index]
            (data, partition_key), = self.bridge.route(_running_event(arn, node, index))
            self.kinesis.put_record(StreamName=self.stream, Data=data, PartitionKey=partition_key)
            put_at[f"tags:{arn}"] = time.time()
            time.sleep(pace_s)
        claimed = self._await_claims(set(put_at), worker, timeout_s)
        return [(claimed[key] - put_at[key]) * 1000 for key in put_at]

    def _await_claims(self, keys: set[str], worker: Any, timeout_s: float) -> dict[str, float]:
        from local.stack import tail as log_tail

        deadline = time.monotonic() + timeout_s
        while True:
            found = {e["idempotency_key"]: e for e in self.ledger.entries() if e["idempotency_key"] in keys}
            if len(found) == len(keys):
                return {key: _epoch(str(entry["claimed_at"])) for key, entry in found.items()}
            if worker.process.poll() is not None:
                raise RuntimeError(f"the recovery worker exited with {worker.process.returncode}: "
                                   f"{log_tail(worker.log_path)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(keys) - len(found)} of {len(keys)} tag captures not called after "
                                   f"{timeout_s:g} s: {log_tail(worker.log_path)}")
            time.sleep(2.0)  # each look is a scan of the ledger on the one-request-at-a-time server


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


class _NoWriter:
    def put_raw(self, records: Any) -> list[str]:
        raise AssertionError("route() only")


def _ecs_world(ecs: Any, ec2: Any, tasks: int) -> list[tuple[str, str]]:
    """``tasks`` training tasks in moto's ECS, one per container instance: (task ARN, node ARN)."""
    reservation = ec2.run_instances(ImageId="ami-12c6146b", MinCount=tasks, MaxCount=tasks,
                                    InstanceType="p4d.24xlarge")
    ecs.register_task_definition(family="llm-train", containerDefinitions=[
        {"name": "trainer", "image": "public.ecr.aws/example/llm-train:latest", "memory": 1024, "essential": True}])
    world = []
    for n, instance in enumerate(reservation["Instances"]):
        document = json.dumps({"instanceId": instance["InstanceId"], "region": REGION,
                               "instanceType": "p4d.24xlarge", "accountId": ACCOUNT})
        node = ecs.register_container_instance(cluster=CLUSTER_NAME, instanceIdentityDocument=document)[
            "containerInstance"]["containerInstanceArn"]
        task = ecs.start_task(cluster=CLUSTER_NAME, taskDefinition="llm-train", containerInstances=[node],
                              group=f"job:bench-{n:04d}", startedBy="launcher",
                              tags=[{"key": "rank", "value": "0"}])["tasks"][0]["taskArn"]
        world.append((task, node))
    return world


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _running_event(arn: str, node: str, index: int) -> dict[str, Any]:
    """The ECS Task State Change of a one-rank GPU job's task going RUNNING, now."""
    now = datetime.now(UTC)
    detail = {
        "clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER_NAME}", "taskArn": arn,
        "taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/llm-train:1",
        "containerInstanceArn": node, "group": f"job:bench-{index:04d}", "startedBy": "launcher",
        "launchType": "EC2", "lastStatus": "RUNNING", "desiredStatus": "RUNNING", "version": 2,
        "containers": [{"containerArn": f"{arn}/trainer", "name": "trainer", "lastStatus": "RUNNING",
                        "gpuIds": [str(g) for g in range(8)]}],
        "createdAt": _iso(now), "startedAt": _iso(now), "updatedAt": _iso(now),
    }
    return {"version": "0", "id": f"00000000-0000-4000-8000-{index:012d}", "detail-type": "ECS Task State Change",
            "source": "aws.ecs", "account": ACCOUNT, "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": REGION,
            "resources": [arn], "detail": detail}


def _tenths(latencies: list[float]) -> list[list[float]]:
    """The decisions in the order their events were put, in ten parts: does the latency drift as jobs pile up?"""
    size = max(1, -(-len(latencies) // 10))
    return [latencies[i:i + size] for i in range(0, len(latencies), size)]


def _figures(latencies: list[float], decisions: int, pace_s: float, ready_s: float) -> dict[str, Figure]:
    stat, tail_ms = tail(latencies)
    inputs = {
        "decisions": decisions, "runs": 1, "pace_s": pace_s, "shards": SHARDS, "poll_ms": POLL_MS,
        "workers": 1, "worker_ready_s": rounded(ready_s),
        "what": "ECS Task State Change (a new one-rank GPU job's task RUNNING) put on kinesis-local -> the recovery "
                "worker's ledger claim just before its ListTagsForResource call (claimed_at, the processor's clock)",
        "stack": "kinesis-local (HTTP/2), moto server in its own process, gpu-recovery consume recovery --engine kcl "
                 "(MultiLangDaemon, --timings local, idleTimeBetweenReadsInMillis=1500)",
        "p90_ms": rounded(percentile(latencies, 90)), "max_ms": rounded(max(latencies)),
        "min_ms": rounded(min(latencies)),
        "p50_by_tenth_ms": [rounded(percentile(part, 50)) for part in _tenths(latencies)],
    }
    target = Target("<=", POLL_MS + 500)
    tail_note = f"over {len(latencies)} decisions; target: the poll interval + 500 ms"
    out: dict[str, Figure] = {
        "e2e.kcl.latency_ms.p50": figure([percentile(latencies, 50)], unit="ms", inputs=inputs,
                                         note=f"over {len(latencies)} decisions"),
        "e2e.kcl.latency_ms.max": figure([max(latencies)], unit="ms", inputs=inputs, target=target, note=tail_note),
    }
    if stat == "p99":
        out["e2e.kcl.latency_ms.p99"] = figure([tail_ms], unit="ms", inputs=inputs, target=target, note=tail_note)
    else:  # too few samples: the max stands for the tail, and the p99 says why it is missing
        out["e2e.kcl.latency_ms.p99"] = {
            "value": None, "met": None, "error": f"{len(latencies)} decisions are too few for a p99 "
            f"({TAIL_MIN_SAMPLES:,} needed): see e2e.kcl.latency_ms.max", "inputs": inputs}
    return out
