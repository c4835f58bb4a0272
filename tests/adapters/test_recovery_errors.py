"""Errors are outcomes (issues 13 and 15): every way an AWS call can go wrong is a typed result, never an
exception; "unknown" (throttled after retries, a 5xx, a timeout, a parser error) is never read as "failed";
calls that are not safe to repeat reach AWS once per decision; and "did it already happen?" finds a task as
real ECS lists it (ListTasks without a desired status answers RUNNING tasks only: the simulator's
``EcsSemantics`` makes moto answer so).

Errors are injected with botocore's own event hooks on the session (``before-call`` answers a call as AWS
would have; ``before-send`` hands the real parser a broken HTTP response, or raises what the HTTP layer
raises): the actuator and the consumer run unchanged, on moto.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from moto import mock_aws

from consumers.adapters.actuators import AwsActuator
from consumers.core.ports import ActionResult
from consumers.recovery import InjectedStop, RecoveryConsumer
from events_schema.commands import (
    RESTART_TAG,
    CommandModel,
    Publish,
    RebootInstances,
    SendCommand,
    StartTask,
    StopTask,
)
from events_schema.notices import Notice
from gpu_recovery.aws import AwsClients
from gpu_recovery.settings import Settings
from local.ecs_semantics import EcsSemantics, InjectedError
from tests.adapters.recovery_rig import CHECK_FAMILY, HEALTHY, FakeAws, Rig, policy
from tests.factories import T0, task_arn

REGION = "us-east-1"
CLUSTER_NAME = "gpu-training"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:123456789012:cluster/{CLUSTER_NAME}"
TOPIC = f"arn:aws:sns:{REGION}:123456789012:gpu-recovery-notifications"


@dataclass(frozen=True)
class _Http:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


class Faults:
    """Botocore hooks on one session: what AWS (or the network) answers the next calls of an operation."""

    def __init__(self, session: Any) -> None:
        self.attempts: Counter[str] = Counter()  # HTTP attempts per operation (retries included)
        self._errors: dict[str, list[tuple[int, str]]] = {}
        self._broken: dict[str, list[Callable[[Any], AWSResponse]]] = {}
        session.events.register("before-call.*.*", self._answer)
        session.events.register("before-send.*.*", self._send)

    def error(self, operation: str, status: int, code: str, times: int = 1) -> None:
        self._errors.setdefault(operation, []).extend([(status, code)] * times)

    def garbage(self, operation: str, status: int, body: bytes) -> None:
        self._broken.setdefault(operation, []).append(
            lambda request: AWSResponse(request.url, status, HTTPHeaders(), _Body(body)))

    def raises(self, operation: str, exc: Exception) -> None:
        def fail(request: Any) -> AWSResponse:
            raise exc

        self._broken.setdefault(operation, []).append(fail)

    def _answer(self, model: Any, **_: Any) -> tuple[_Http, dict[str, Any]] | None:
        queued = self._errors.get(model.name)
        if not queued:
            return None
        self.attempts[model.name] += 1
        status, code = queued.pop(0)
        return _Http(status), {"Error": {"Code": code, "Message": f"injected {code}"},
                               "ResponseMetadata": {"HTTPStatusCode": status}}

    def _send(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        self.attempts[operation] += 1
        queued = self._broken.get(operation)
        return queued.pop(0)(request) if queued else None


@dataclass
class Moto:
    session: Any
    clients: AwsClients
    faults: Faults
    semantics: EcsSemantics
    actuator: AwsActuator
    node_arn: str
    instance_id: str

    def ecs(self) -> Any:
        return self.clients.client("ecs")


@pytest.fixture
def moto() -> Iterator[Moto]:
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        faults = Faults(session)
        semantics = EcsSemantics(lambda _: None, lambda _: 0, lambda: T0)
        semantics.attach(session)  # ListTasks without desiredStatus: RUNNING only, as real ECS answers
        clients = AwsClients(Settings(region=REGION, cluster_name=CLUSTER_NAME), session=session)
        ecs, ec2 = clients.client("ecs"), clients.client("ec2")
        ecs.create_cluster(clusterName=CLUSTER_NAME)
        for family, container in ((CHECK_FAMILY, "healthcheck"), ("llm-train", "trainer")):
            ecs.register_task_definition(family=family, containerDefinitions=[
                {"name": container, "image": "x", "memory": 512, "essential": True}])
        instance_id = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                                        InstanceType="p4d.24xlarge")["Instances"][0]["InstanceId"]
        document = json.dumps({"instanceId": instance_id, "region": REGION, "instanceType": "p4d.24xlarge",
                               "accountId": "123456789012"})
        node = ecs.register_container_instance(cluster=CLUSTER_NAME, instanceIdentityDocument=document)
        actuator = AwsActuator(clients.client, cluster=CLUSTER_NAME, topic_arn=TOPIC, check_key=b"k" * 32)
        clients.client("sns").create_topic(Name="gpu-recovery-notifications")
        yield Moto(session, clients, faults, semantics, actuator, node["containerInstance"]["containerInstanceArn"],
                   instance_id)


def check_command(node: str, key: str = "inc-1:check:1") -> StartTask:
    return StartTask(target=node, purpose="check", task_definition=CHECK_FAMILY, started_by="gpu-recovery",
                     overrides={"containerOverrides": [{"name": "healthcheck", "environment": []}]},
                     tags=[{"key": RESTART_TAG, "value": key}])


def commands(moto: Moto) -> dict[str, CommandModel]:
    notice = Notice(kind="escalation", cluster=CLUSTER_NAME, summary="test", next_step="none")
    return {
        "RebootInstances": RebootInstances(target=moto.instance_id),
        "StartTask": check_command(moto.node_arn),
        "SendCommand": SendCommand(target="mi-0123456789abcdef0"),
        "StopTask": StopTask(target=task_arn(1), reason="test"),
        "Publish": Publish(target="notifications", subject="test", notice=notice),
    }


# --- each error, one outcome ------------------------------------------------------------------------


def _inject(moto: Moto, how: str, operation: str) -> None:
    faults = moto.faults
    if how == "throttled (EC2's code)":
        faults.error(operation, 503, "RequestLimitExceeded")
    elif how == "throttled (as the simulator injects it)":
        moto.semantics.injected.append(InjectedError(T0, operation, "ThrottlingException", 1))
    elif how == "a 500":
        moto.semantics.injected.append(InjectedError(T0, operation, "ServerError", 1))
    elif how == "a 503":
        faults.error(operation, 503, "ServiceUnavailable")
    elif how == "a 400":
        moto.semantics.injected.append(InjectedError(T0, operation, "ValidationError", 1))
    elif how == "a 403":
        faults.error(operation, 403, "UnauthorizedOperation")
    elif how == "a parser error (HTML on a 200)":
        faults.garbage(operation, 200, b"<html><body>Internal error")
    elif how == "a parser error (bytes on a 500)":
        faults.garbage(operation, 500, b"\x00\xff\xfe not json, not xml")
    elif how == "a read timeout":
        faults.raises(operation, ReadTimeoutError(endpoint_url="https://example.invalid"))
    elif how == "no connection":
        faults.raises(operation, EndpointConnectionError(endpoint_url="https://example.invalid"))
    elif how == "something nobody expected":
        faults.raises(operation, RuntimeError("a bug three layers down"))
    else:
        raise AssertionError(how)


CASES = [
    ("RebootInstances", "throttled (EC2's code)", "unknown", "throttled"),
    ("RebootInstances", "throttled (as the simulator injects it)", "unknown", "throttled"),
    ("RebootInstances", "a 503", "unknown", "unavailable"),
    ("RebootInstances", "a 403", "failed", "refused"),
    ("RebootInstances", "a parser error (HTML on a 200)", "unknown", "unknown"),
    ("RebootInstances", "a read timeout", "unknown", "timeout"),
    ("RebootInstances", "something nobody expected", "unknown", "unknown"),
    ("StartTask", "a 500", "unknown", "unavailable"),
    ("StartTask", "throttled (as the simulator injects it)", "unknown", "throttled"),
    ("StartTask", "a 400", "failed", "refused"),
    ("StartTask", "a parser error (bytes on a 500)", "unknown", None),
    ("StartTask", "no connection", "unknown", "timeout"),
    ("SendCommand", "a 500", "unknown", "unavailable"),
    ("SendCommand", "a parser error (bytes on a 500)", "unknown", None),
    ("Publish", "something nobody expected", "unknown", "unknown"),
    ("StopTask", "a 400", "failed", "refused"),
]


@pytest.mark.parametrize(("operation", "how", "status", "kind"), CASES,
                         ids=[f"{op}: {how}" for op, how, _, _ in CASES])
def test_every_error_is_an_outcome_and_unknown_is_never_failed(moto: Moto, operation: str, how: str, status: str,
                                                               kind: str | None) -> None:
    # GIVEN AWS (or the network) answering this call badly
    _inject(moto, how, operation)
    # WHEN the actuator makes it
    result = moto.actuator.execute(commands(moto)[operation], "inc-1:step:1")
    # THEN it returns (never raises) the outcome: "failed" only when AWS refused
    assert result.status == status, result
    if kind is not None:
        assert result.error_kind == kind, result
    assert result.error


@pytest.mark.parametrize("operation", ["StartTask", "RebootInstances", "SendCommand"])
def test_a_call_not_safe_to_repeat_reaches_aws_once(moto: Moto, operation: str) -> None:
    # GIVEN a 5xx that botocore's standard retry mode would retry
    moto.faults.garbage(operation, 500, b'{"__type":"ServerException","message":"try again"}')
    moto.faults.garbage(operation, 500, b'{"__type":"ServerException","message":"try again"}')
    # WHEN the actuator makes the call
    result = moto.actuator.execute(commands(moto)[operation], "inc-1:step:1")
    # THEN one HTTP attempt, and the outcome is unknown: our own retry comes after checking whether it happened
    assert moto.faults.attempts[operation] == 1
    assert result.status == "unknown"


def test_a_successful_check_start_passes_the_secret_to_the_task_only(moto: Moto) -> None:
    result = moto.actuator.execute(check_command(moto.node_arn), "inc-1:check:1")
    assert result.status == "succeeded" and result.detail["task_arn"].startswith("arn:aws:ecs:")
    (task,) = moto.ecs().describe_tasks(cluster=CLUSTER_NAME, tasks=[result.detail["task_arn"]],
                                        include=["TAGS"])["tasks"]
    assert {"key": RESTART_TAG, "value": "inc-1:check:1"} in task["tags"]
    env = task["overrides"]["containerOverrides"][0]["environment"]
    assert [e["name"] for e in env] == ["GPU_RECOVERY_CHECK_SECRET"]


# --- "did it already happen?" as real ECS answers it -----------------------------------------------


def test_a_check_task_that_already_stopped_is_found(moto: Moto) -> None:
    # GIVEN a check task that was started with our key and has already STOPPED
    started = moto.actuator.execute(check_command(moto.node_arn), "inc-1:check:1")
    moto.ecs().stop_task(cluster=CLUSTER_NAME, task=started.detail["task_arn"], reason="check done")
    # (real ECS lists RUNNING tasks only when no desired status is given: it is not among them)
    assert moto.ecs().list_tasks(cluster=CLUSTER_NAME, containerInstance=moto.node_arn)["taskArns"] == []
    # WHEN recovery asks whether the StartTask took effect
    found = moto.actuator.find_done(check_command(moto.node_arn), "inc-1:check:1")
    # THEN the stopped task is found by its tag
    assert found == {"task_arn": started.detail["task_arn"], "found_after_restart": True}
    # AND a key no task carries finds nothing
    assert moto.actuator.find_done(check_command(moto.node_arn, "inc-1:check:2"), "inc-1:check:2") is None


# --- the consumer: no crash loop, no repeated call ---------------------------------------------------


class Through:
    """The Actuator port: commands of ``types`` go to the AwsActuator on moto (where the faults are), the rest
    to the fake AWS that answers and emits what follows."""

    def __init__(self, moto: Moto, fake: FakeAws, types: set[str], *, times: int = 1_000) -> None:
        self._moto, self._fake, self._types, self._times = moto, fake, types, times
        self.results: list[tuple[str, str, ActionResult]] = []

    def execute(self, command: Any, key: str) -> ActionResult:
        if command.type in self._types and self._times > 0:
            self._times -= 1
            result = self._moto.actuator.execute(command, key)
            self.results.append((command.type, key, result))
            return result
        return self._fake.execute(command, key)

    def find_done(self, command: Any, key: str) -> dict[str, Any] | None:
        if command.type in self._types:
            return self._moto.actuator.find_done(command, key)
        return self._fake.find_done(command, key)


def rig_through(moto: Moto, types: set[str], *, times: int = 1_000,
                fault: Callable[[str, str | None], None] | None = None) -> tuple[Rig, Through]:
    rig = Rig(config=policy(cluster_arn=CLUSTER_ARN))
    through = Through(moto, rig.aws, types, times=times)
    rig.consumers = {s: rig.consumer(s, actuator=through, **({"fault": fault} if fault else {}))
                     for s in rig.shard_ids}
    return rig, through


REBOOT = ("hardware_fault", "reboot", [48])  # the first check's verdict; the check after the reboot passes


def failed_rank(rig: Rig, *, node: int = 1, verdict: tuple[str, str, list[int]] | None = None) -> None:
    rig.aws.nodes(2)
    rig.aws.launch("job:alpha", [(1, node)])
    if verdict:
        rig.aws.verdicts[node] = [verdict, HEALTHY]
    rig.drain()
    rig.clock.advance(60)
    rig.aws.fail(task_arn(1))
    rig.drain()


def test_a_throttled_reboot_is_unknown_then_asked_again_at_its_deadline(moto: Moto) -> None:
    # GIVEN RebootInstances throttled (after botocore's retries: our client has none)
    moto.faults.error("RebootInstances", 503, "RequestLimitExceeded")
    rig, through = rig_through(moto, {"RebootInstances"}, times=1)
    # WHEN a check finds a reset-class XID and recovery reboots the node
    failed_rank(rig, verdict=REBOOT)
    # THEN the throttled call is "unknown": the node is not taken out of service, nothing escalates
    assert [(t, r.status, r.error_kind) for t, _, r in through.results] == [("RebootInstances", "unknown",
                                                                             "throttled")]
    (incident,) = rig.incidents()
    assert incident["phase"] == "REBOOTING" and incident["outcome"] is None
    assert rig.ledger.entries[incident["reboot_key"]]["status"] == "unknown"
    # WHEN its deadline passes without a sign of a reboot, recovery asks once more (and this time it works)
    rig.advance(16 * 60)
    assert [c.key for c in rig.aws.of("RebootInstances")] == [incident["incident_id"] + ":reboot:2"]
    (incident,) = rig.incidents()
    assert incident["outcome"] == "recovered" and rig.node(1)["plan"]["repair"] == "HEALTHY"


@pytest.mark.parametrize("how", ["a parser error (HTML on a 200)", "something nobody expected", "a 403"])
def test_the_consumer_never_crash_loops_on_a_broken_reboot(moto: Moto, how: str) -> None:
    _inject(moto, how, "RebootInstances")
    rig, through = rig_through(moto, {"RebootInstances"}, times=1)
    failed_rank(rig, verdict=REBOOT)  # no exception escapes handle_batch
    (incident,) = rig.incidents()
    (entry,) = [e for k, e in rig.ledger.entries.items() if k == incident["reboot_key"]]
    assert entry["state"] == "done" and entry["status"] == through.results[0][2].status
    assert rig.store.pending(rig.shard_ids[0]) == [] and rig.parking.records == []
    if through.results[0][2].status == "failed":
        assert incident["outcome"] == "escalated"
    else:
        assert incident["phase"] == "REBOOTING"


def test_a_lookup_that_fails_after_an_unknown_start_never_starts_it_again(moto: Moto) -> None:
    # GIVEN StartTask for the check answers a 500, and then ListTasks is throttled too
    moto.semantics.injected.append(InjectedError(T0, "StartTask", "ServerError", 1))
    moto.semantics.injected.append(InjectedError(T0, "ListTasks", "ThrottlingException", 10))
    rig, through = rig_through(moto, {"StartTask"})
    # WHEN the consumer runs the check (nothing escapes)
    failed_rank(rig)
    # THEN the check's outcome is unknown (not failed: no escalation), it was asked of AWS once
    (incident,) = rig.incidents()
    assert [r.status for t, _, r in through.results if t == "StartTask"] == ["unknown"]
    assert moto.faults.attempts["StartTask"] <= 1 and incident["phase"] == "CHECKING"
    assert rig.ledger.entries[incident["check_key"]]["status"] == "unknown"
    assert rig.store.pending(rig.shard_ids[0]) == []


def test_a_check_task_that_already_stopped_is_not_started_again_after_a_crash(moto: Moto) -> None:
    # GIVEN a job on the moto container instance; the consumer stops right after the check's StartTask
    # returned, before its result was written: the ledger holds only the claim
    stops: list[str] = []

    def crash(point: str, key: str | None) -> None:
        if point == "after_call" and key and ":check:" in key and not stops:
            stops.append(key)
            raise InjectedStop(f"stopped at {point} for {key}")

    rig, through = rig_through(moto, {"StartTask"}, fault=crash)
    _on_moto_node(rig, moto)
    rig.aws.launch("job:alpha", [(1, 1)])
    rig.drain()
    rig.clock.advance(60)
    rig.aws.fail(task_arn(1))
    rig.collect()
    with pytest.raises(InjectedStop):
        rig.drain()
    (key,) = stops
    assert rig.ledger.entries[key]["state"] == "claimed"
    # AND the check ran and STOPPED meanwhile (ListTasks without a desired status no longer lists it)
    ecs = moto.ecs()
    (task,) = ecs.list_tasks(cluster=CLUSTER_NAME, desiredStatus="RUNNING")["taskArns"]
    ecs.stop_task(cluster=CLUSTER_NAME, task=task, reason="check done")
    # WHEN a new consumer takes the shard
    shard = rig.shard_ids[0]
    consumer: RecoveryConsumer = rig.consumer(shard, actuator=through)
    rig.consumers[shard] = consumer
    rig.drain()
    # THEN it found the stopped task instead of starting a second check
    assert moto.faults.attempts["StartTask"] == 1
    assert rig.ledger.entries[key]["state"] == "done" and rig.ledger.entries[key]["status"] == "succeeded"
    assert rig.ledger.entries[key]["detail"] == {"task_arn": task, "found_after_restart": True}
    (incident,) = rig.incidents()
    assert incident["check_task_arn"] == task


def _on_moto_node(rig: Rig, moto: Moto) -> None:
    """Node 1 of the fake world is the container instance registered in moto."""
    rig.aws.node_arns[1] = moto.node_arn
    rig.aws.instance_ids[1] = moto.instance_id
    rig.aws.nodes(2)


class BreaksItsPromise:
    """An Actuator that raises (the port says it never does): the consumer must survive it all the same."""

    def __init__(self, fake: FakeAws, kind: str) -> None:
        self._fake, self._kind = fake, kind
        self.raised = 0

    def execute(self, command: Any, key: str) -> ActionResult:
        if command.type == self._kind and not self.raised:
            self.raised += 1
            raise RuntimeError("an adapter bug")
        return self._fake.execute(command, key)

    def find_done(self, command: Any, key: str) -> dict[str, Any] | None:
        raise RuntimeError("the lookup is broken too")


def test_an_actuator_that_raises_makes_an_unknown_outcome_not_a_parked_record() -> None:
    # GIVEN an actuator whose StartTask raises, and whose lookups raise
    rig = Rig()
    broken = BreaksItsPromise(rig.aws, "StartTask")
    rig.consumers = {s: rig.consumer(s, actuator=broken) for s in rig.shard_ids}
    # WHEN a rank fails and recovery starts the check (nothing escapes)
    failed_rank(rig)
    # THEN the check is "unknown" (not failed, not started twice), the failure's record is not parked
    (incident,) = rig.incidents()
    assert broken.raised == 1 and rig.ledger.entries[incident["check_key"]]["status"] == "unknown"
    assert rig.aws.of("StartTask", "check") == [] and incident["phase"] == "CHECKING"
    assert rig.parking.records == [] and rig.store.pending(rig.shard_ids[0]) == []
