"""Small crafted histories for the replay and audit tests, as stream lines (JSON objects).

``incident_story``: job ``job:alpha`` runs on nodes 1 and 2; rank 0 dies on node 1 with an XID, the
recovery opens incident ``inc-1``, stops the sibling, health-checks node 1 (hardware fault), reboots
it, verifies it and restarts the job. Around it: node 3 running ``job:beta``, with its own incident.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from events_schema.commands import command_from_v1
from events_schema.envelope import EventData, Subject
from events_schema.events import (
    ActionOutcome,
    DecisionRecorded,
    HealthCheckReported,
    IncidentClosed,
    IncidentOpened,
    JobStateChanged,
    NodeStateChanged,
    Notice,
    NotificationSent,
    XidCount,
)
from tests.factories import at, node_arn, node_event, ours, task_arn, task_event

ALPHA = "job:alpha"
BETA = "job:beta"
INCIDENT = "inc-1"
OTHER_INCIDENT = "inc-9"
NODE1 = node_arn(1)
INSTANCE1 = f"i-{1:017x}"


def our_event(data: EventData, second: float, **subject: str) -> dict[str, Any]:
    envelope = ours(data, when=at(second), subject=Subject(**subject), event_id=f"ev-{second:08.1f}")
    return envelope.model_dump(mode="json")


def _command(action: str, target: str) -> Any:
    """A v1-shaped action as today's typed command (the upcaster's own mapping)."""
    return command_from_v1({"type": action, "target": target, "params": {"task_definition": "llm-train"}})


def _decision(second: float, action: str, target: str, step: str, reason: str, **kw: Any) -> dict[str, Any]:
    key = f"{INCIDENT}/{step}"
    data = DecisionRecorded(idempotency_key=key, action=_command(action, target), step=step,
                            reason=reason, incident_id=kw.get("incident_id", INCIDENT), job_id=kw.get("job_id"))
    return our_event(data, second, node=kw.get("node", NODE1), incident=INCIDENT)


def _outcome(second: float, action: str, target: str, step: str) -> dict[str, Any]:
    data = ActionOutcome(idempotency_key=f"{INCIDENT}/{step}", action=_command(action, target), step=step,
                         incident_id=INCIDENT, status="succeeded")
    return our_event(data, second, node=NODE1, incident=INCIDENT)


def incident_story() -> list[dict[str, Any]]:
    nsc = NodeStateChanged
    return [
        *(node_event(n, version=1, when=at(0)) for n in (1, 2, 3)),
        task_event(1, node=1, version=2, status="RUNNING", group=ALPHA, when=at(10)),
        task_event(2, node=2, version=2, status="RUNNING", group=ALPHA, when=at(10)),
        task_event(9, node=3, version=2, status="RUNNING", group=BETA, when=at(10)),
        task_event(1, node=1, version=3, status="STOPPED", exit_code=1, stop_code="EssentialContainerExited",
                   group=ALPHA, when=at(100)),
        our_event(IncidentOpened(incident_id=INCIDENT, node_arn=NODE1, ec2_instance_id=INSTANCE1, job_ids=[ALPHA],
                             trigger_task_arn=task_arn(1), reason="rank 0 exited 1 with XID 48 in the log"),
              101, node=NODE1, incident=INCIDENT),
        our_event(JobStateChanged(job_id=ALPHA, state="RECOVERING", incident_id=INCIDENT, reason="rank 0 failed"),
              102, job=ALPHA, incident=INCIDENT),
        _decision(103, "StopTask", task_arn(2), "stop_ranks", "stop the sibling ranks", job_id=ALPHA),
        _outcome(104, "StopTask", task_arn(2), "stop_ranks"),
        task_event(2, node=2, version=3, status="STOPPED", stop_code="UserInitiated", exit_code=143, group=ALPHA,
                   when=at(105)),
        our_event(nsc(node_arn=NODE1, state="CHECKING", incident_id=INCIDENT, reason="health check started"),
              110, node=NODE1, incident=INCIDENT),
        _decision(111, "StartTask", NODE1, "health_check", "run dcgmi diag -r 2 on the failed rank's node"),
        our_event(HealthCheckReported(node_arn=NODE1, incident_id=INCIDENT, level=2, verdict="hardware_fault",
                                  recommended_action="reboot", reason="XID 48: double-bit ECC error",
                                  xids=[XidCount(xid=48, count=2)]),
              200, node=NODE1, incident=INCIDENT),
        _decision(201, "RebootInstances", INSTANCE1, "reboot", "XID 48 is reset-class: reboot"),
        _outcome(202, "RebootInstances", INSTANCE1, "reboot"),
        our_event(nsc(node_arn=NODE1, state="REBOOTING", incident_id=INCIDENT, reason="reboot requested"),
              203, node=NODE1, incident=INCIDENT),
        node_event(1, version=2, connected=False, when=at(210)),
        node_event(1, version=3, connected=True, when=at(300)),
        our_event(nsc(node_arn=NODE1, state="VERIFYING", incident_id=INCIDENT, reason="agent reconnected"),
              301, node=NODE1, incident=INCIDENT),
        our_event(HealthCheckReported(node_arn=NODE1, incident_id=INCIDENT, level=1, verdict="healthy",
                                  reason="post-reboot check passed"),
              400, node=NODE1, incident=INCIDENT),
        our_event(nsc(node_arn=NODE1, state="HEALTHY", incident_id=INCIDENT, reason="reboot proven"),
              401, node=NODE1, incident=INCIDENT),
        our_event(JobStateChanged(job_id=ALPHA, state="RESTARTING", incident_id=INCIDENT, restart_count=1,
                              reason="node 1 repaired"), 402, job=ALPHA, incident=INCIDENT),
        task_event(3, node=1, version=2, status="RUNNING", group=ALPHA, when=at(410), created=at(405)),
        task_event(4, node=2, version=2, status="RUNNING", group=ALPHA, when=at(410), created=at(405)),
        our_event(JobStateChanged(job_id=ALPHA, state="RUNNING", incident_id=INCIDENT, restart_count=1,
                              reason="all ranks running"), 420, job=ALPHA, incident=INCIDENT),
        our_event(IncidentClosed(incident_id=INCIDENT, node_arn=NODE1, outcome="recovered",
                                 reason="rebooted, verified"), 421, node=NODE1, incident=INCIDENT),
        our_event(NotificationSent(kind="incident_closed", subject="node 1 recovered after a reboot",
                               message=Notice(kind="incident_closed", cluster="gpu-training",
                                              summary="node 1 recovered after a reboot"),
                               incident_id=INCIDENT, node_arn=NODE1), 422, node=NODE1, incident=INCIDENT),
        # Elsewhere: node 3 has its own incident, which no audit of alpha, node 1 or inc-1 may show.
        our_event(nsc(node_arn=node_arn(3), state="SUSPECT", incident_id=OTHER_INCIDENT, reason="unrelated"),
              150, node=node_arn(3), incident=OTHER_INCIDENT),
        node_event(3, version=2, connected=False, when=at(250)),
    ]


def partition_key(event: dict[str, Any]) -> str:
    """The key the stream would carry (the bridge's rules; events_schema.partition for ours): a node's
    events share a shard and stay in order, as do a job's events that name no node."""
    if "detail" in event:
        detail = event["detail"]
        return str(detail.get("containerInstanceArn") or detail["taskArn"])
    subject = event["subject"]
    return str(subject.get("node") or subject.get("job") or subject.get("task") or event["event_id"])


def put_records(kinesis: Any, stream: str, events: list[dict[str, Any]]) -> None:
    pairs = zip(events, lines(events), strict=True)
    kinesis.put_records(StreamName=stream, Records=[{"Data": d, "PartitionKey": partition_key(e)} for e, d in pairs])


def lines(events: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(e, separators=(",", ":")).encode() for e in events]


def write_jsonl(path: Path, events: list[dict[str, Any]] | list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for event in events:
            out.write(event if isinstance(event, bytes) else json.dumps(event, separators=(",", ":")).encode())
            out.write(b"\n")
    return path
