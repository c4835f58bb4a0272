"""Who is reporting: explicit values win; inside an ECS task the metadata endpoints fill the gaps."""

from __future__ import annotations

import json
from collections.abc import Mapping

from healthcheck.identity import AGENT_INTROSPECTION_URL, IMDS, resolve
from tests.healthcheck.fakes import NODE_ARN, TASK_ARN

METADATA = "http://169.254.170.2/v4/abc123"


class Endpoints:
    def __init__(self, answers: dict[tuple[str, str], str]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str, dict[str, str]]] = []

    def __call__(self, method: str, url: str, headers: Mapping[str, str], timeout_s: float) -> str | None:
        self.asked.append((method, url, dict(headers)))
        return self.answers.get((method, url))


def test_inside_ecs_the_endpoints_fill_what_was_not_given() -> None:
    # GIVEN an ECS task on EC2 with host networking, and only the incident id given
    fetch = Endpoints({
        ("GET", f"{METADATA}/task"): json.dumps({"TaskARN": TASK_ARN, "Cluster": "gpu-training"}),
        ("GET", AGENT_INTROSPECTION_URL): json.dumps({"Cluster": "gpu-training", "ContainerInstanceArn": NODE_ARN}),
        ("PUT", f"{IMDS}/api/token"): "token-1",
        ("GET", f"{IMDS}/meta-data/instance-id"): "i-0123456789abcdef0\n",
    })
    who = resolve(node_arn=None, instance_id=None, check_task_arn=None, incident_id="inc-1",
                  environ={"ECS_CONTAINER_METADATA_URI_V4": METADATA}, fetch=fetch)
    # THEN everything is known, and IMDS was asked with a v2 token
    assert (who.node_arn, who.instance_id, who.check_task_arn, who.incident_id) == \
        (NODE_ARN, "i-0123456789abcdef0", TASK_ARN, "inc-1")
    assert fetch.asked[-1][2] == {"X-aws-ec2-metadata-token": "token-1"}


def test_explicit_values_are_not_looked_up() -> None:
    fetch = Endpoints({})
    who = resolve(node_arn=NODE_ARN, instance_id="i-1", check_task_arn=TASK_ARN, incident_id=None,
                  environ={"ECS_CONTAINER_METADATA_URI_V4": METADATA}, fetch=fetch)
    assert fetch.asked == [] and who.node_arn == NODE_ARN


def test_by_hand_nothing_is_probed_and_the_node_is_named_by_host() -> None:
    # GIVEN an operator's shell (not an ECS task) and no node ARN
    fetch = Endpoints({})
    who = resolve(node_arn=None, instance_id=None, check_task_arn=None, incident_id=None, environ={}, fetch=fetch)
    # THEN no endpoint is asked, and the node is reported as unknown with the host name
    assert fetch.asked == []
    assert who.node_arn.startswith("unknown-node:") and who.instance_id is None


def test_ecs_anywhere_without_imds_or_unreadable_answers_leaves_gaps() -> None:
    fetch = Endpoints({("GET", f"{METADATA}/task"): "not json"})
    who = resolve(node_arn=NODE_ARN, instance_id=None, check_task_arn=None, incident_id=None,
                  environ={"ECS_CONTAINER_METADATA_URI_V4": METADATA}, fetch=fetch)
    assert (who.check_task_arn, who.instance_id) == (None, None)


def test_the_check_key_secret_and_boot_time_are_carried_and_the_secret_never_printed() -> None:
    from datetime import UTC, datetime

    booted = datetime(2026, 11, 28, 9, 58, tzinfo=UTC)
    who = resolve(node_arn=NODE_ARN, instance_id="i-1", check_task_arn=TASK_ARN, incident_id="inc-1", environ={},
                  fetch=Endpoints({}), check_key="inc-1:check:1", secret="s3cr3t-value", boot_time=booted)
    assert (who.check_key, who.secret, who.boot_time) == ("inc-1:check:1", "s3cr3t-value", booted)
    assert "s3cr3t-value" not in repr(who)
    # AND an Identity built the old way (the fleet simulator's) has none of them
    from healthcheck.identity import Identity

    assert Identity(NODE_ARN, None, TASK_ARN, "inc-1").check_key is None
