"""The projector's ``ecs_job`` item of a big job restarted again and again, sized as DynamoDB sizes it.

A 2,048-rank job (one rank per node, task ids of 32 hex digits as ECS writes them now) runs, fails (one
rank; in the second generation every rank at once: the fabric), has its other ranks stopped by recovery and
is restarted by recovery, ``restarts`` times, and then runs again. Its records are folded phase by phase
with the projector's own fold (``consumers.core.projection.fold``, ranks kept as ``consumers.core.job_ranks``
keeps them); after every phase the job's item is put in DynamoDB's wire form (``to_attribute_map``, what
the store writes) and sized by ``benchmarks.ddb_capacity.item_size`` (the Developer Guide's rules, the
sizing the burst's capacity units use). The figure is the largest size over the whole history: an item
over 400 KB is refused by DynamoDB (moto does not refuse it).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.stats import Figure, Target, figure, progress

REGION = "us-east-1"
ACCOUNT = "123456789012"
CLUSTER = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/gpu-training"
JOB = "job:llama-405b"
T0 = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)
KB = 1024
DESIGN_BOUND = 100 * KB  # DESIGN §3.10; DynamoDB's own limit is 400 KB
DYNAMODB_LIMIT = 400 * KB


def task_arn(generation: int, rank: int) -> str:
    digest = hashlib.md5(f"{generation}/{rank}".encode(), usedforsecurity=False).hexdigest()
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/gpu-training/{digest}"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def rank_event(generation: int, rank: int, *, version: int, status: str, when: datetime,
               exit_code: int | None = None, stop_code: str | None = None, reason: str | None = None
               ) -> dict[str, Any]:
    """An ECS Task State Change of rank ``rank`` of generation ``generation``, as EventBridge delivers it."""
    arn = task_arn(generation, rank)
    created = T0 + timedelta(hours=generation, seconds=1, milliseconds=rank)
    container: dict[str, Any] = {"containerArn": f"{arn}/trainer", "name": "trainer", "lastStatus": status,
                                 "gpuIds": [str(g) for g in range(8)]}
    if exit_code is not None:
        container["exitCode"] = exit_code
    detail: dict[str, Any] = {
        "clusterArn": CLUSTER, "taskArn": arn, "group": JOB, "launchType": "EC2", "startedBy": "launcher",
        "taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/llm-train:7",
        "containerInstanceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/gpu-training/"
                                f"{rank // 8 + 1:032x}",
        "lastStatus": status, "desiredStatus": "STOPPED" if status == "STOPPED" else "RUNNING",
        "version": version, "containers": [container], "createdAt": _iso(created), "startedAt": _iso(created),
        "updatedAt": _iso(when),
        "overrides": {"containerOverrides": [{"name": "trainer", "environment": [{"name": "RANK",
                                                                                   "value": str(rank)}]}]},
    }
    if stop_code is not None:
        detail |= {"stopCode": stop_code, "stoppedReason": reason or stop_code, "stoppedAt": _iso(when)}
    return {"version": "0", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{arn}/{version}")),
            "detail-type": "ECS Task State Change", "source": "aws.ecs", "account": ACCOUNT,
            "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": REGION, "resources": [arn], "detail": detail}


def _job_state(state: str, generation: int, restarts: int, when: datetime) -> dict[str, Any]:
    from events_schema.envelope import Subject, make_envelope
    from events_schema.events import JobStateChanged

    data = JobStateChanged(job_id=JOB, state=state, incident_id=f"i{generation}",
                           restart_count=restarts)
    envelope = make_envelope(data, event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{JOB}/{state}/{generation}")),
                             time=when, source="gpu-recovery/bench", subject=Subject())
    return envelope.model_dump(mode="json")


def generation_phases(generation: int, ranks: int, *, fabric: bool, restart: bool) -> list[list[dict[str, Any]]]:
    """Every rank runs; one rank fails (every rank, when the fabric fails) and recovery stops the others;
    recovery restarts the job. The last generation only runs."""
    start = T0 + timedelta(hours=generation)
    running = [rank_event(generation, r, version=2, status="RUNNING", when=start + timedelta(seconds=60))
               for r in range(ranks)]
    if not restart:
        return [running]
    failed = ranks if fabric else 1
    failures = [rank_event(generation, r, version=3, status="STOPPED", exit_code=1,
                           stop_code="EssentialContainerExited", when=start + timedelta(seconds=120))
                for r in range(failed)]
    from consumers.core.facts import RECOVERY_STOP_REASON

    stops = [rank_event(generation, r, version=3, status="STOPPED", exit_code=137, stop_code="UserInitiated",
                        reason=RECOVERY_STOP_REASON, when=start + timedelta(seconds=130))
             for r in range(failed, ranks)]
    return [running, [*failures, _job_state("RECOVERING", generation, generation, start + timedelta(seconds=121))],
            stops, [_job_state("RESTARTING", generation, generation + 1, start + timedelta(seconds=200))]]


def job_item_sizes(ranks: int, restarts: int) -> tuple[list[int], dict[str, Any]]:
    """The job item's DynamoDB size after every phase of ``restarts`` restarts and one more run; the last item."""
    from benchmarks.ddb_capacity import item_size
    from consumers.adapters.dynamodb import to_attribute_map
    from consumers.core.facts import IdentityRules
    from consumers.core.projection import JOB as JOB_TABLE
    from consumers.core.projection import ProjectionConfig, ProjectionState, fold
    from events_schema.decode import decode_mapping

    config = ProjectionConfig(identity=IdentityRules(health_check_family="gpu-recovery-healthcheck"))
    state = ProjectionState()
    sizes: list[int] = []
    for generation in range(restarts + 1):
        for phase in generation_phases(generation, ranks, fabric=generation == 1, restart=generation < restarts):
            for raw in phase:
                fold(state, decode_mapping(raw), config)
            sizes.append(item_size(to_attribute_map(state.items[(JOB_TABLE, JOB)])))
    return sizes, state.items[(JOB_TABLE, JOB)]


def bench_job_item(ranks: int = 2_048, restarts: int = 5) -> dict[str, Figure]:
    progress(f"job item: a {ranks}-rank job restarted {restarts} times, folded phase by phase")
    sizes, job = job_item_sizes(ranks, restarts)
    inputs = {
        "ranks": ranks, "restarts": restarts, "runs": 1, "phases": len(sizes), "bytes_by_phase": sizes,
        "final_bytes": sizes[-1], "first_generation_peak_bytes": max(sizes[:4]),
        "final_job": {k: job.get(k) for k in ("state", "task_count", "running_count", "failed_count",
                                              "restart_count")},
        "history": "each generation: every rank RUNNING, one rank fails (generation 1: every rank, the fabric), "
                   "recovery RECOVERING, the siblings stopped by recovery, RESTARTING; the last one runs",
        "fold": "consumers.core.projection.fold", "sizing": "benchmarks.ddb_capacity.item_size of to_attribute_map",
        "dynamodb_limit_bytes": DYNAMODB_LIMIT,
    }
    return {"dynamodb.job_item_bytes_2048": figure(
        [float(max(sizes))], unit="bytes", inputs=inputs, target=Target("<=", DESIGN_BOUND),
        note="the largest size of the job's ecs_job item over the whole history (DESIGN §3.10's bound: 100 KB; "
             "DynamoDB refuses items over 400 KB)")}
