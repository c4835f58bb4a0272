"""Helpers for the infra tests: synthesize the app, find resources and statements without logical ids.

Each synthesis runs in its own App with cdk.json's context (the feature flags a user gets), an explicit
environment for the infra settings, and a source folder holding stub Dockerfiles, so the image
assets are staged exactly as from a checkout without copying the whole repository.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import App
from aws_cdk.assertions import Template

from infra.app import build
from infra.images import REPO_ROOT
from infra.stack import GpuRecoveryStack

ACCOUNT = "210987654321"
REGION = "eu-west-1"
JOB_ROLES = ["arn:aws:iam::210987654321:role/trainer-task", "arn:aws:iam::210987654321:role/trainer-exec"]
# The one setting the stack requires: the families the recovery may restart (infra/permissions.py).
REQUIRED_CONTEXT: dict[str, Any] = {"gpu_task_families": "train-llm"}
# Every knob turned (tests/infra/test_variants.py).
TURNED_CONTEXT: dict[str, Any] = {
    "account": ACCOUNT,
    "region": REGION,
    "stream_mode": "provisioned",
    "stream_shards": "8",
    "retention_hours": "8760",
    "projector_desired_count": "3",
    "recovery_desired_count": "1",
    "notification_emails": "ops@example.com,oncall@example.com",
    "log_retention_days": "365",
    "health_check_gpus": "4",
    "job_task_role_arns": ",".join(JOB_ROLES),
    "gpu_task_families": "train-llm,train-vision",
    "replace_instances": "true",
    "cluster_name": "gpu-prod",
    "task_table": "legacy_tasks",
    "sns_topic_name": "gpu-alerts",
    "vpc_id": "vpc-0123456789abcdef0",
    "vpc_subnet_ids": "subnet-0aaaaaaaaaaaaaaa1,subnet-0bbbbbbbbbbbbbbb2",
    "vpc_availability_zones": "eu-west-1a,eu-west-1b",
    "consumer_image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gpu-recovery-consumer:1.0",
    "health_check_image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gpu-recovery-healthcheck:1.0",
    # Amazon Q Developer in chat applications: a Slack and a Teams channel (ids in their documented forms).
    "slack_workspace_id": "T0123ABCD",
    "slack_channel_id": "C0123ABCDEF",
    "teams_team_id": "12345678-90ab-cdef-1234-567890abcdef",
    "teams_channel_id": "19%3aab12cd34ef56ab12cd34ef56ab12cd34%40thread.tacv2",
    "teams_tenant_id": "abcdef12-3456-7890-abcd-ef1234567890",
}


def cdk_json_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return context


@dataclass(frozen=True)
class Synth:
    stack: GpuRecoveryStack
    template: Template
    outdir: Path

    @property
    def json(self) -> dict[str, Any]:
        return dict(self.template.to_json())

    def resources(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {name: dict(resource) for name, resource in self.template.find_resources(type_name).items()}

    def logical_id(self, construct: Any) -> str:
        """The logical id CDK gave a construct (tests never hard-code one)."""
        child = construct.node.default_child if construct.node.default_child is not None else construct
        return str(self.stack.get_logical_id(child))

    def resolve(self, value: Any) -> Any:
        return self.stack.resolve(value)


def synthesize(outdir: Path, source_root: Path, *, context: Mapping[str, Any] | None = None,
               environ: Mapping[str, str] | None = None) -> Synth:
    app = App(outdir=str(outdir), context={**cdk_json_context(), **(context or {})})
    stack = build(app, environ=environ or {}, source_root=source_root)
    app.synth()  # runs cdk-nag's AwsSolutions checks: an unacknowledged finding raises here
    return Synth(stack=stack, template=Template.from_stack(stack), outdir=outdir)


def statements_of(policy_resources: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every statement of the given AWS::IAM::Policy / ManagedPolicy resources."""
    found: list[dict[str, Any]] = []
    for resource in policy_resources.values():
        found.extend(resource["Properties"]["PolicyDocument"]["Statement"])
    return found


def role_statements(synth: Synth, role: Any) -> list[dict[str, Any]]:
    """Every statement attached to one role, across its default and overflow policies."""
    role_id = synth.logical_id(role)
    policies = {
        **synth.resources("AWS::IAM::Policy"),
        **synth.resources("AWS::IAM::ManagedPolicy"),
    }
    attached = {
        name: resource for name, resource in policies.items()
        if {"Ref": role_id} in resource["Properties"].get("Roles", [])
    }
    return statements_of(attached)


def by_sid(statements: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {statement["Sid"]: statement for statement in statements if "Sid" in statement}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
