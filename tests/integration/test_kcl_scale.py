"""KCL at scale: real MultiLangDaemon workers share the stream's leases; one is SIGKILLed midway.

The whole local stack (``local.stack.LocalStack``): kinesis-local (HTTP/2 Kinesis, for the KCL and our
Python side) with a 4-shard stream, moto's server (its own process) for DynamoDB, SNS and ECS. Two
projector workers and two recovery workers (no lock: each decides for the shards it leases), each
``gpu-recovery consume <consumer> --engine kcl``: the CLI, one JVM, one Python processor per shard lease.
20,000 ECS events (200 nodes, 50 jobs, duplicates,
one poison record per shard, three failing jobs) go in; half of them at once, the rest while a
projector worker is SIGKILLed. At the end the tables equal the fold of the stream, every poison record
is parked, and the recovery took each action once.

Figures (lease takeover, throughput per worker, total time) are printed and written to
``<tmp>/kcl-scale.json``; docs/kcl.md quotes them.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers.adapters.dynamodb import DynamoParkingLot, DynamoProjectionStore
from consumers.adapters.kinesis_reader import list_shards
from consumers.core.projection import KEY_ATTRIBUTE, TABLES, fold_all
from consumers.runtime import kcl_java
from events_schema.decode import MalformedRecord, StreamEvent, decode
from events_schema.envelope import OurEvent
from events_schema.events import ActionOutcome, DecisionRecorded
from gpu_recovery.settings import load_settings
from gpu_recovery.wiring import PROJECTOR_APP, RECOVERY_APP, projection_config
from local import kinesis_local
from local.stack import LocalStack, Worker, kill_group, tail
from tests.factories import ACCOUNT, REGION
from tests.integration.kcl_support import scale
from tests.tools import missing_tool

# Real daemons on wall-clock timeouts: alone on the machine (scripts/check.sh runs serial tests after the
# parallel ones), with room for its own waits (startup, balance, takeover, settle) before pytest-timeout's.
pytestmark = [pytest.mark.slow, pytest.mark.serial, pytest.mark.timeout(1200)]

SHARDS = 4
NODES, JOBS = 200, 50
NODE_VERSIONS, TASK_VERSIONS = 45, 50  # 200 x 45 + 200 x 50 = 19,000 distinct events
DUPLICATES = 1_000  # -> 20,000 records, plus one poison record per shard
FAILED_JOBS = frozenset({3, 17, 41})  # rank 0 of these jobs exits 1 at its last version
# Each half goes in as fast as kinesis-local takes it; the victim dies a few chunks into the second half.
CHUNK, PAUSE_S, KILL_AFTER_CHUNKS = 500, 0.0, 3
WORKER_OPTIONS = (
    # Polls every 2 s (local default 200 ms): fewer, bigger batches, which is what moto keeps up with.
    "--property", "idleTimeBetweenReadsInMillis=2000",
    # KCL 3 balances leases by throughput; a wider band keeps leases from hopping between the two
    # workers on every fluctuation of a shard's rate (each hop restarts a processor).
    "--property", "reBalanceThresholdPercentage=30",
    # ... and balancing every 10 lease-assignment runs (10 s here; 3 x 20 s by default) lets a graceful
    # hand-off finish before the next decision.
    "--property", "varianceBalancingFrequency=10",
)
# Workers yield the CPU to kinesis-local and moto, the stand-ins for AWS (2 cores for everything).
WORKER_NICE = 10
STARTUP_TIMEOUT_S, BALANCE_TIMEOUT_S, TAKEOVER_TIMEOUT_S, SETTLE_TIMEOUT_S = 90, 120, 60, 180


def _prerequisites_missing() -> str | None:
    try:
        kinesis_local.package_dir()
        kinesis_local.node_executable()
        kcl_java.jar_classpath()
        kcl_java.resolve_java()
    except (kinesis_local.KinesisLocalError, kcl_java.KclSetupError) as error:
        return str(error)
    return None


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    missing = _prerequisites_missing()
    if missing is not None:
        missing_tool(missing)
    settings = load_settings(
        stream_name="kcl-scale", stream_shards=SHARDS, region=REGION, account_id=ACCOUNT,
        cluster_name="gpu-training",
    )
    with LocalStack(settings, tmp_path / "stack", moto_in_process=False) as running:
        yield running  # stop() kills every worker's process group, then kinesis-local and moto


def _patient_kinesis(settings: Any) -> Any:
    """A Kinesis client that waits for a busy kinesis-local instead of timing out and putting again."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "kinesis", endpoint_url=settings.kinesis_endpoint_url, region_name=settings.region,
        config=Config(read_timeout=300, retries={"max_attempts": 2, "mode": "standard"}),
    )


def _dead_worker(workers: list[Worker]) -> str | None:
    for worker in workers:
        if worker.process.poll() is not None:
            return f"worker {worker.worker_id} exited with {worker.process.returncode}:\n{tail(worker.log_path)}"
    return None


def _decoded(records: list[bytes]) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    for data in records:
        try:
            events.append(decode(data))
        except MalformedRecord:
            continue  # the poison records
    return events


def _describe(table: str, keys: list[str], live: dict[str, Any], want: dict[str, Any]) -> str:
    """The first differing item, leaf by leaf."""
    first = keys[0]
    leaves = _leaf_diffs(live[first], want[first])
    return f"{table}: {len(keys)} items differ; {first}: " + "; ".join(
        f"{path}: live={a!r} replay={b!r}" for path, a, b in leaves[:10]
    )


def _leaf_diffs(live: Any, want: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(live, dict) and isinstance(want, dict):
        return [d for k in sorted(set(live) | set(want)) for d in _leaf_diffs(live.get(k), want.get(k), f"{path}/{k}")]
    return [] if live == want else [(path, live, want)]


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    plain: dict[str, Any] = json.loads(json.dumps(item, sort_keys=True, default=str))
    plain.pop("rev", None)
    return plain


def _settle(
    stack: LocalStack, dynamodb: Any, workers: list[Worker]
) -> tuple[float, list[tuple[str, int, bytes]]]:
    """Wait until both applications have checkpointed the stream's tips and the recovery wrote no more.

    Returns the seconds it took and the whole stream as (shard, sequence number, data), read once: the
    recovery's events are interleaved with ours, and kinesis-local spends ~1 ms of CPU per record read.
    """
    tips = scale.StreamTips(stack.clients().client("kinesis"), stack.settings.stream_name)
    last: dict[str, int] = {}

    def settled() -> bool:
        nonlocal last
        now = tips.refresh()
        done = now == last and all(
            scale.caught_up(scale.lease_rows(dynamodb, app), now) for app in (PROJECTOR_APP, RECOVERY_APP)
        )
        last = now
        return done

    took = scale.wait_for(settled, timeout=SETTLE_TIMEOUT_S, interval=2.0, what="both applications caught up",
                          alive=lambda: _dead_worker(workers))
    return took, tips.seen


def test_kcl_workers_share_leases_survive_a_sigkill_and_match_the_replay(
    stack: LocalStack, tmp_path: Path
) -> None:
    test_started = time.monotonic()
    settings = stack.settings
    clients = stack.clients()
    kinesis, dynamodb = clients.client("kinesis"), clients.client("dynamodb")
    shards = list_shards(kinesis, settings.stream_name)
    assert len(shards) == SHARDS

    # GIVEN the fleet in moto's ECS (the recovery's calls meet real tasks and container instances)
    workload = scale.Workload(NODES, JOBS, NODE_VERSIONS, TASK_VERSIONS, FAILED_JOBS)
    world = scale.build_ecs_world(
        clients.client("ecs"), clients.client("ec2"), workload, cluster=settings.cluster_name,
        region=settings.region, account=settings.account_id, health_check_family=settings.health_check_task,
    )
    # AND a projector worker holding every lease (the leader), then a second one; and recovery workers
    first = stack.start_worker("projector", worker_id="projector-1", extra=WORKER_OPTIONS, nice=WORKER_NICE)
    recovery = stack.start_worker("recovery", worker_id="recovery-1", extra=WORKER_OPTIONS, nice=WORKER_NICE)
    leases_taken_s = scale.wait_for(
        lambda: len(scale.owners(scale.lease_rows(dynamodb, PROJECTOR_APP)).get(first.worker_id, ())) == SHARDS,
        timeout=STARTUP_TIMEOUT_S, interval=0.5, what="projector-1 taking the leases",
        alive=lambda: _dead_worker([first, recovery]),
    )
    second = stack.start_worker("projector", worker_id="projector-2", extra=WORKER_OPTIONS, nice=WORKER_NICE)
    recovery_2 = stack.start_worker("recovery", worker_id="recovery-2", extra=WORKER_OPTIONS, nice=WORKER_NICE)
    projectors, recoveries = [first, second], [recovery, recovery_2]
    everyone = [*projectors, *recoveries]

    # AND 20,000 ECS events over 200 nodes and 50 jobs, with duplicates and one poison record per shard
    records = scale.stream_records(workload, DUPLICATES, world.renames())
    assert len(records) == 20_000
    feeder = scale.Feeder(
        kinesis=_patient_kinesis(settings), stream=settings.stream_name, records=records, chunk=CHUNK,
        pause_s=PAUSE_S, pause_after_hold_s=PAUSE_S, hold_at=len(records) // 2,
        poison_at=len(records) // 4, poison_shards=shards,
    )
    feeder.start()

    # WHEN, midway, both projector workers hold leases and process, and the non-leader is SIGKILLed
    # while the second half comes in
    assert feeder.at_hold.wait(timeout=120) and feeder.error is None, feeder.error
    leader = scale.leader_of(dynamodb, PROJECTOR_APP)
    victim = next(w for w in projectors if w.worker_id != leader)
    survivor = next(w for w in projectors if w is not victim)
    balanced_s = scale.wait_for(
        lambda: bool(scale.owners(scale.lease_rows(dynamodb, PROJECTOR_APP)).get(victim.worker_id))
        and bool(scale.batches_in_log(victim.log_path)),
        timeout=BALANCE_TIMEOUT_S, interval=0.5, what=f"{victim.worker_id} holding leases and processing",
        alive=lambda: _dead_worker(everyone),
    )
    # AND the two recovery workers share the leases too (KCL 3 balances by throughput: only once records flow)
    recovery_balanced_s = scale.wait_for(
        lambda: all(scale.owners(scale.lease_rows(dynamodb, RECOVERY_APP)).get(w.worker_id) for w in recoveries),
        timeout=BALANCE_TIMEOUT_S, interval=0.5, what="both recovery workers holding leases",
        alive=lambda: _dead_worker(everyone),
    )
    feeder.released.set()
    scale.wait_for(lambda: feeder.sent >= len(records) // 2 + KILL_AFTER_CHUNKS * CHUNK or feeder.done.is_set(),
                   timeout=60, interval=0.1, what="the second half starting")
    orphaned = scale.owners(scale.lease_rows(dynamodb, PROJECTOR_APP))[victim.worker_id]
    assert orphaned, f"{victim.worker_id} lost its leases before the kill"
    kill_group(victim.pgid)
    killed_at = time.monotonic()
    takeover_s = scale.wait_for(
        lambda: all(
            scale.lease_rows(dynamodb, PROJECTOR_APP)[shard]["owner"] == survivor.worker_id for shard in orphaned
        ),
        timeout=TAKEOVER_TIMEOUT_S, interval=0.2, what=f"{survivor.worker_id} taking over {sorted(orphaned)}",
        alive=lambda: _dead_worker([survivor, *recoveries]),
    )
    taken_over_at = time.monotonic()

    # AND the survivor and the recovery catch up with everything on the stream
    assert feeder.done.wait(timeout=300) and feeder.error is None, feeder.error
    settle_s, stream = _settle(stack, dynamodb, [survivor, *recoveries])
    settled_at = time.monotonic()

    # THEN the tables equal the fold of the same stream (rev aside), in shard and sequence order: each
    # entity's own order, as live saw it
    events = _decoded([data for _, _, data in sorted(stream, key=lambda r: (r[0], r[1]))])
    expected = fold_all(events, projection_config(settings))
    store = DynamoProjectionStore(dynamodb, settings.projection_tables())
    for table in TABLES:
        key = KEY_ATTRIBUTE[table]
        live = {item[key]: _plain(item) for item in store.scan_table(table)}
        want = {item[key]: _plain(item) for item in expected.table(table)}
        assert len(want) == {"ecs_task": NODES, "ecs_job": JOBS, "ecs_node": NODES}[table]
        assert live.keys() == want.keys(), table
        differing = [k for k in want if live[k] != want[k]]
        if differing:
            (tmp_path / f"{table}.live.json").write_text(json.dumps(live, indent=1, sort_keys=True))
            (tmp_path / f"{table}.replay.json").write_text(json.dumps(want, indent=1, sort_keys=True))
        assert not differing, _describe(table, differing, live, want)

    # AND each poison record is parked exactly once by the projector, by shard and sequence number
    parked = DynamoParkingLot(dynamodb, settings.parked_table).list("projector")
    assert {(p["shard_id"], p["sequence_number"]) for p in parked} == set(feeder.poison_sequences.items())
    assert len(parked) == SHARDS and {p["reason_kind"] for p in parked} == {"not_json"}

    figures = _figures(
        records=len(records) + SHARDS, projectors=projectors, recoveries=recoveries, victim=victim, survivor=survivor,
        orphaned=orphaned, leader=leader, leases_taken_s=leases_taken_s, balanced_s=balanced_s,
        recovery_balanced_s=recovery_balanced_s,
        takeover_s=takeover_s, feeder=feeder, settle_s=settle_s, killed_at=killed_at,
        taken_over_at=taken_over_at, settled_at=settled_at, test_started=test_started,
    )
    (tmp_path / "kcl-scale.json").write_text(json.dumps(figures, indent=2))
    print("\nKCL scale figures:", json.dumps(figures, indent=2))
    assert figures["per_worker"][victim.worker_id]["records"] > 0
    assert figures["per_worker"][survivor.worker_id]["records"] > 0
    assert all(figures["per_worker"][w.worker_id]["records"] > 0 for w in recoveries), "a recovery worker idle"

    # AND the recovery took each expected action exactly once
    _assert_actions_exactly_once(events, dynamodb, settings, workload, world)


def _assert_actions_exactly_once(events: list[StreamEvent], dynamodb: Any, settings: Any,
                                 workload: scale.Workload, world: scale.EcsWorld) -> None:
    from consumers.adapters.ledger import DynamoLedger
    from consumers.adapters.recovery_store import DynamoRecoveryStore

    ledger_table = settings.ledger_table

    decisions: dict[str, set[str]] = defaultdict(set)  # idempotency key -> decision event ids
    actions: dict[str, tuple[str, str]] = {}  # idempotency key -> (action type, target)
    outcomes: dict[str, set[tuple[str, str]]] = defaultdict(set)  # key -> {(outcome event id, status)}
    for event in events:
        if isinstance(event, OurEvent) and isinstance(event.data, DecisionRecorded):
            decisions[event.data.idempotency_key].add(event.event_id)
            actions[event.data.idempotency_key] = (event.data.action.type, event.data.action.target)
        elif isinstance(event, OurEvent) and isinstance(event.data, ActionOutcome):
            outcomes[event.data.idempotency_key].add((event.event_id, event.data.status))
    ledger = {entry["idempotency_key"]: entry for entry in DynamoLedger(dynamodb, ledger_table).entries()}

    # one decision per key (a redelivered decision is the same event), one outcome, one ledger entry, done
    assert decisions, "the recovery decided nothing"
    assert all(len(ids) == 1 for ids in decisions.values())
    assert ledger.keys() == decisions.keys()
    for key in decisions:
        assert len(outcomes[key]) == 1, (key, outcomes[key])
        ((_, status),) = outcomes[key]
        assert status in ("succeeded", "failed"), (key, status)
        assert ledger[key]["state"] == "done" and ledger[key]["status"] == status, (key, ledger[key])

    # the expected actions: tags captured once per task; the failed jobs' other ranks stopped, once each
    by_type: dict[str, list[str]] = defaultdict(list)
    for action_type, target in actions.values():
        by_type[action_type].append(target)
    assert sorted(by_type["ListTagsForResource"]) == sorted(world.task_arns)
    siblings = {
        world.task_arns[job * workload.ranks + rank]
        for job in workload.failed_jobs for rank in range(1, workload.ranks)
    }
    # A job's ranks run on different nodes, so on different shards, so in different processor processes:
    # the rank that failed is seen by one, its siblings' state was written by the others.
    missing = sorted(siblings - set(by_type["StopTask"]))
    assert sorted(by_type["StopTask"]) == sorted(siblings), (
        "every other rank of a failed job is stopped once; not stopped, as the recovery knows them: "
        + _as_recovery_knows(DynamoRecoveryStore(dynamodb, settings.recovery_table), missing)
    )


def _as_recovery_knows(store: Any, task_arns: list[str]) -> str:
    state = store.load()
    tasks = [state.tasks.get(arn) for arn in task_arns]
    return "; ".join(f"{task} in {state.jobs.get(task.job_id) if task and task.job_id else None}" for task in tasks)


def _figures(*, records: int, projectors: list[Worker], recoveries: list[Worker], victim: Worker, survivor: Worker,
             orphaned: set[str], leader: str | None, leases_taken_s: float, balanced_s: float,
             recovery_balanced_s: float, takeover_s: float,
             feeder: scale.Feeder, settle_s: float, killed_at: float, taken_over_at: float,
             settled_at: float, test_started: float) -> dict[str, Any]:
    def rates(worker: Worker) -> dict[str, Any]:
        t = scale.throughput(scale.batches_in_log(worker.log_path))
        return {"records": t.records, "batches": t.batches, "busy_s": round(t.busy_s, 1),
                "span_s": round(t.span_s, 1), "records_per_busy_s": round(t.per_busy_second),
                "records_per_wall_s": round(t.per_wall_second)}

    return {
        "records_fed": records,
        "projector_1_leases_taken_s": round(leases_taken_s, 1),
        "victim": victim.worker_id, "leader": leader, "orphaned_leases": sorted(orphaned),
        "victim_holding_and_processing_after_hold_s": round(balanced_s, 1),
        "recovery_workers_sharing_after_hold_s": round(recovery_balanced_s, 1),
        "lease_takeover_s": round(takeover_s, 1),
        "first_half_fed_s": round(feeder.held_at - feeder.started_at, 1),
        "feed_s": round(feeder.finished_at - feeder.started_at, 1),
        "settle_after_feed_s": round(settle_s, 1),
        "kill_to_settled_s": round(settled_at - killed_at, 1),
        "takeover_to_settled_s": round(settled_at - taken_over_at, 1),
        "per_worker": {w.worker_id: rates(w) for w in [*projectors, *recoveries]},
        "total_test_s": round(time.monotonic() - test_started, 1),
    }
