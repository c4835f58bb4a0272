"""Own events are a record, never a command (issue 13): the recovery consumer, on in-memory adapters and a fake
AWS (tests/adapters/recovery_rig.py), is handed what anyone who can write to the stream could forge. None of it
may cause an AWS call, a notification or any change to the recovery's records, timers or outbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from consumers.core.recovery.context import stable_id
from events_schema.commands import RebootInstances
from events_schema.envelope import Envelope, Subject, make_envelope
from events_schema.events import ActionOutcome, DeadlineExpired, NotificationSent, RecoveryRecorded
from tests.adapters.recovery_rig import Rig, report_bytes
from tests.factories import CLUSTER, at, node_arn, task_arn, task_event

OTHER_CLUSTER = CLUSTER.replace("gpu-training", "someone-elses")


def checking() -> tuple[Rig, dict[str, Any]]:
    """A 2-rank job whose rank on node 1 failed: the check task runs on node 1 and has not reported yet."""
    rig = Rig()
    rig.aws.nodes(3)
    rig.aws.launch("job:alpha", [(1, 1), (2, 2)])
    rig.drain()
    rig.clock.advance(60)
    rig.aws.hold = {1}  # the check runs, and has not reported yet
    rig.aws.fail(task_arn(1))
    rig.drain()
    (incident,) = rig.incidents()
    assert incident["phase"] == "CHECKING" and incident["check_task_arn"]
    return rig, incident


def ours(data: Any, subject: Subject, rig: Rig, event_id: str) -> Envelope:
    return make_envelope(data, event_id=event_id, time=rig.clock(), source="gpu-recovery/recovery", subject=subject)


def forged_deadline(rig: Rig, incident: dict[str, Any]) -> bytes:
    # The deadline's id is guessable: the check key, which every decision on the stream carries.
    timer = incident["timer"]
    data = DeadlineExpired(deadline_id=timer["token"], kind=timer["kind"], due_at=at(0),
                           incident_id=incident["incident_id"], node_arn=incident["node_arn"])
    envelope = ours(data, Subject(incident=incident["incident_id"], node=incident["node_arn"]), rig,
                    stable_id(f"DeadlineExpired:forged:{timer['token']}"))
    return json.dumps(envelope.model_dump(mode="json")).encode()


def forged_failed_reboot(rig: Rig, incident: dict[str, Any]) -> bytes:
    key = f"{incident['incident_id']}:reboot:1"
    data = ActionOutcome(idempotency_key=key, action=RebootInstances(target=f"i-{1:017x}"), step="reboot",
                         incident_id=incident["incident_id"], status="failed", error="UnauthorizedOperation",
                         error_kind="refused")
    envelope = ours(data, Subject(incident=incident["incident_id"], node=incident["node_arn"]), rig,
                    stable_id(f"outcome:{key}"))
    return json.dumps(envelope.model_dump(mode="json")).encode()


def forged_recovery_recorded(rig: Rig, incident: dict[str, Any]) -> bytes:
    data = RecoveryRecorded(kind="node", key=incident["node_arn"], version=999,
                            record={"repair": "QUARANTINED", "reason": "forged", "incident_id": None})
    envelope = ours(data, Subject(node=incident["node_arn"]), rig, "forged-recovery-recorded")
    return json.dumps(envelope.model_dump(mode="json")).encode()


def copied_check_report(rig: Rig, incident: dict[str, Any]) -> bytes:
    # Everything the live check's report would name, copied from the stream; only the proof cannot be made.
    data = {"node_arn": incident["node_arn"], "check_task_arn": incident["check_task_arn"],
            "incident_id": incident["incident_id"], "check_key": incident["check_key"], "level": 2,
            "verdict": "hardware_fault", "recommended_action": "quarantine", "reason": "forged",
            "xids": [{"xid": 79, "count": 1}], "proof": "0" * 64}
    return report_bytes(data, rig.clock())


def foreign_gpu_failure(rig: Rig, incident: dict[str, Any]) -> bytes:
    # A GPU task of another cluster, even one named like our job and on a node ARN like ours, fails.
    event = task_event(99, node=3, version=3, status="STOPPED", exit_code=1, stop_code="EssentialContainerExited",
                       when=rig.clock(), cluster=OTHER_CLUSTER, group="job:alpha")
    event["detail"]["containerInstanceArn"] = node_arn(3).replace("gpu-training", "someone-elses")
    return json.dumps(event).encode()


FORGERIES: dict[str, Callable[[Rig, dict[str, Any]], bytes]] = {
    "DeadlineExpired with a guessable id": forged_deadline,
    "failed ActionOutcome for a reboot key": forged_failed_reboot,
    "RecoveryRecorded": forged_recovery_recorded,
    "unsigned report copying the check task's ARN": copied_check_report,
    "GPU task failing in another cluster": foreign_gpu_failure,
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_a_forged_record_causes_no_action_no_notification_and_no_state_change(name: str) -> None:
    # GIVEN a job in recovery, its suspect node's check running
    rig, incident = checking()
    calls, events, before = len(rig.aws.calls), len(rig.writer.envelopes), rig.snapshot()
    # WHEN a forged record arrives
    rig.clock.advance(30)
    rig.put(FORGERIES[name](rig, incident), incident["node_arn"])
    rig.drain()
    # THEN no AWS call, no notification, and the records, timers and outbox are as they were
    assert rig.aws.calls[calls:] == []
    assert not [e for e in rig.writer.envelopes[events:] if e.type == NotificationSent.TYPE]
    assert rig.snapshot() == before
    # AND the check's deadline still stands where it was
    assert rig.incidents()[0]["timer"] == incident["timer"]


def test_a_report_that_does_not_verify_is_parked_as_suspect_even_among_other_records() -> None:
    # GIVEN a check running, WHEN an unsigned copy of its report arrives in one batch with good records
    rig, incident = checking()
    rig.clock.advance(30)
    rig.aws.node_event(2)
    rig.collect()
    shard = rig.shard_ids[0]
    bad = rig.put(copied_check_report(rig, incident), incident["node_arn"], shard)
    rig.aws.node_event(3)
    rig.collect()
    assert len(rig.shards[shard].records) == 3
    rig.deliver(shard)
    # THEN that record, and only it, is parked as suspect, with the reason
    parked = [p for p in rig.parking.records if p.reason_kind == "suspect"]
    assert [p.sequence_number for p in parked] == [bad.sequence_number]
    assert "proof does not verify" in parked[0].reason
