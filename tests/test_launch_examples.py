"""The README's "Launching a job so recovery knows it": its RunTask examples (AWS CLI and boto3) run against
moto's ECS, and the tasks each one launches are one job by the rule recovery and the tables use."""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest

from consumers.core.facts import IdentityRules, job_identity
from events_schema.aws import TaskDetail

README = Path(__file__).parent.parent / "README.md"
CLUSTER = "gpu-training"
RUN = "llama-70b-run-42"


def launch_section() -> str:
    text = README.read_text()
    start = text.index("## Launching a job so recovery knows it")
    return text[start:text.index("\n## ", start + 1)]


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", launch_section(), flags=re.S)


def cli_calls() -> list[dict[str, Any]]:
    """Each `aws ecs run-task` line as RunTask's parameters (the CLI's --kebab-case flags are its members)."""
    script = "\n".join(code_blocks("bash")).replace("\\\n", " ")
    calls = []
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        if words[:3] != ["aws", "ecs", "run-task"]:
            continue
        flags = dict(zip(words[3::2], words[4::2], strict=True))
        calls.append({_member(flag): _value(flag, value) for flag, value in flags.items()})
    return calls


def _member(flag: str) -> str:
    head, *rest = flag.lstrip("-").split("-")
    return head + "".join(part.capitalize() for part in rest)


def _value(flag: str, value: str) -> Any:
    if flag == "--count":
        return int(value)
    if flag == "--tags":  # the CLI's shorthand: key=K,value=V
        return [dict(pair.split("=", 1) for pair in value.split(","))]
    return value


@pytest.fixture
def ecs(aws: None) -> Any:
    """A cluster with four GPU nodes and revisions 1-7 of llm-train, as the examples assume."""
    client, ec2 = boto3.client("ecs"), boto3.client("ec2")
    client.create_cluster(clusterName=CLUSTER)
    reservation = ec2.run_instances(ImageId="ami-12c6146b", MinCount=4, MaxCount=4, InstanceType="p4d.24xlarge")
    for instance in reservation["Instances"]:
        document = json.dumps({"instanceId": instance["InstanceId"], "region": "us-east-1",
                               "instanceType": "p4d.24xlarge", "accountId": "123456789012"})
        client.register_container_instance(cluster=CLUSTER, instanceIdentityDocument=document)
    for _ in range(7):
        client.register_task_definition(family="llm-train", containerDefinitions=[
            {"name": "trainer", "image": "public.ecr.aws/example/llm-train:latest", "memory": 1024}])
    return client


def jobs_of_new_tasks(ecs: Any, seen: set[str]) -> list[str | None]:
    """The job of every task launched since ``seen``, by recovery's rule, from what ECS says of each."""
    arns = [arn for arn in ecs.list_tasks(cluster=CLUSTER)["taskArns"] if arn not in seen]
    seen.update(arns)
    jobs = []
    for task in ecs.describe_tasks(cluster=CLUSTER, tasks=arns, include=["TAGS"])["tasks"]:
        fields = {key: value for key, value in task.items() if value != ""}  # moto's "" for what was not given
        detail = TaskDetail.model_validate({**fields, "version": task.get("version", 1), "containers": []})
        tags = ecs.list_tags_for_resource(resourceArn=task["taskArn"])["tags"]
        jobs.append(job_identity(detail, tags, IdentityRules()).job_id)
    return jobs


def test_every_launch_example_makes_its_four_tasks_one_job_named_after_the_run(ecs: Any) -> None:
    # GIVEN the README's CLI commands and boto3 calls
    calls = cli_calls()
    assert len(calls) == 3 and len(code_blocks("python")) == 1
    seen: set[str] = set()
    launched: list[list[str | None]] = []
    # WHEN each CLI command is run (as the same RunTask call)
    for params in calls:
        ecs.run_task(**params)
        launched.append(jobs_of_new_tasks(ecs, seen))
    # THEN every launch's four tasks are one job, and the job names the run
    assert [len(jobs) for jobs in launched] == [4, 4, 4]
    assert all(len(set(jobs)) == 1 and RUN in str(jobs[0]) for jobs in launched), launched
    # AND the boto3 block (two calls: by group, by tag) launches two such jobs
    exec(compile(code_blocks("python")[0], "README.md", "exec"), {})  # the README's own code, against moto
    assert Counter(jobs_of_new_tasks(ecs, seen)) == {f"job:{RUN}": 4, RUN: 4}

def test_without_an_identity_each_task_is_a_job_of_its_own(ecs: Any) -> None:
    # GIVEN a run launched with no group, tag or startedBy (ECS sets group family:llm-train)
    arns = [t["taskArn"] for t in ecs.run_task(cluster=CLUSTER, taskDefinition="llm-train:7", count=2)["tasks"]]
    assert {t["group"] for t in ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]} == {"family:llm-train"}
    jobs = jobs_of_new_tasks(ecs, set())
    # THEN each task is its own job: never one job "family:llm-train" every run would join
    assert len(set(jobs)) == 2 and all(str(job).startswith("task:") for job in jobs)
