"""What real ECS and AWS answer that moto does not, as the simulator's hooks answer it (on moto)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local.ecs_semantics import EcsSemantics, InjectedError

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
NODE = "arn:aws:ecs:us-east-1:123456789012:container-instance/gpu-training/0001"


def _session(semantics: EcsSemantics) -> boto3.session.Session:
    session = boto3.session.Session(region_name="us-east-1")
    semantics.attach(session)
    return session


def _semantics(free: int | None = 8, in_asg: bool = True) -> EcsSemantics:
    return EcsSemantics(lambda arn: free if arn == NODE else None, lambda family: 8, lambda: NOW,
                        lambda instance_id: in_asg)


def _start(session: boto3.session.Session) -> dict[str, Any]:
    ecs = session.client("ecs")
    ecs.create_cluster(clusterName="gpu-training")
    ecs.register_task_definition(family="llm-train", containerDefinitions=[
        {"name": "trainer", "image": "trainer", "memory": 1024, "essential": True}])
    return dict(ecs.start_task(cluster="gpu-training", taskDefinition="llm-train", containerInstances=[NODE]))


def test_start_task_on_a_node_without_free_gpus_places_nothing_and_says_resource_gpu(aws: None) -> None:
    # GIVEN a node with 4 GPUs free and a task that needs 8
    semantics = _semantics(free=4)
    # WHEN the task is started there
    answer = _start(_session(semantics))
    # THEN ECS's answer: no task, a RESOURCE:GPU failure naming the instance
    assert answer["tasks"] == []
    assert answer["failures"] == [{"arn": NODE, "reason": "RESOURCE:GPU"}]
    assert semantics.refused == [(NODE, "RESOURCE:GPU")]


def test_start_task_with_room_goes_on_to_aws(aws: None) -> None:
    # GIVEN a node with all 8 GPUs free
    semantics = _semantics(free=8)
    session = _session(semantics)
    sent: list[str] = []
    session.events.register_first("before-send.ecs.StartTask", lambda **_: sent.append("StartTask"))
    # WHEN the task is started there
    with contextlib.suppress(Exception):  # moto itself refuses a container instance nobody registered
        _start(session)
    # THEN the call went on to AWS (moto), unrefused
    assert sent == ["StartTask"]
    assert semantics.refused == []


def test_list_tasks_without_a_desired_status_lists_running_tasks_only(aws: None) -> None:
    # GIVEN the hook on a session, and a ListTasks call that names no desiredStatus
    semantics = _semantics()
    session = _session(semantics)
    seen: list[dict[str, Any]] = []
    session.events.register("before-call.ecs.ListTasks",
                            lambda context, **_: seen.append(context["gpu_recovery_api_params"]))
    session.client("ecs").create_cluster(clusterName="gpu-training")
    session.client("ecs").list_tasks(cluster="gpu-training")
    # THEN the call went out as ECS treats it: RUNNING
    assert seen[0]["desiredStatus"] == "RUNNING"


def test_terminate_in_auto_scaling_group_of_an_instance_in_no_group_is_awss_validation_error(aws: None) -> None:
    session = _session(_semantics(in_asg=False))
    with pytest.raises(ClientError) as raised:
        session.client("autoscaling").terminate_instance_in_auto_scaling_group(
            InstanceId="i-0123456789abcdef0", ShouldDecrementDesiredCapacity=False)
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert "No managed instance found for instance ID: i-0123456789abcdef0" in error["Message"]


@pytest.mark.parametrize(("error", "code"), [("ThrottlingException", "ThrottlingException"),
                                             ("ServerError", "ServerException"),
                                             ("ValidationError", "InvalidParameterException")])
def test_an_injected_error_answers_the_next_calls_then_stops(aws: None, error: str, code: str) -> None:
    # GIVEN one injected error on ListClusters
    semantics = _semantics()
    semantics.injected = [InjectedError(NOW, "ListClusters", error, 1)]
    ecs = _session(semantics).client("ecs", config=Config(retries={"max_attempts": 1}))
    # WHEN it is called twice
    with pytest.raises(ClientError) as raised:
        ecs.list_clusters()
    # THEN the first call gets the injected error, the second reaches AWS
    assert raised.value.response["Error"]["Code"] == code
    assert ecs.list_clusters()["clusterArns"] == []
