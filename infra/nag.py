"""Every reviewed finding of the two template checkers, each with the reason it is safe here, in one place:
cdk-nag (AwsSolutions) acknowledgments and checkov skips.

cdk-nag 3 matches an acknowledgment to a finding by exact id, so wildcard findings (AwsSolutions-IAM5)
are acknowledged per finding: every wildcard in every policy of the stack must match one reviewed
pattern below, or synthesis fails. A new wildcard therefore needs a new, reasoned line here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
from aws_cdk import aws_iam as iam
from constructs import IConstruct

from infra.permissions import NODE_TAG_KEY

# (pattern over cdk-nag's finding id, reason). Finding ids look like ``Action::kms:ReEncrypt*`` or
# ``Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/gpu-training/*``.
# A region or account segment is literal, or a reference such as <AWS::Region> (colons inside).
_AT = r"(?:<[^>]*>|[^:<]*):(?:<[^>]*>|[^:<]*)"
REVIEWED_WILDCARDS: list[tuple[str, str]] = [
    (r"^Action::kms:(ReEncrypt|GenerateDataKey)\*$",
     "CDK's grant for a KMS-encrypted stream, table, topic or bucket; the resource is this stack's one key"),
    (r"^Action::s3:(GetObject|GetBucket|List|DeleteObject|Abort)\*$",
     "CDK's Firehose-to-S3 destination grant (multipart uploads, retries); limited to the archive bucket"),
    (r"^Resource::<\w+\.Arn>/\*$",
     "objects inside this stack's own archive bucket"),
    (r"^Resource::\*$",
     "only actions with no resource-level permissions (ecr:GetAuthorizationToken) or scoped by condition "
     "(cloudwatch:PutMetricData on our namespaces); tests/infra walks every statement against this allow-list"),
    (rf":ecs:{_AT}:task-definition/[^/:*]+:\*$",
     "every revision of one task definition family (the health check, or a configured job family); "
     "only in our cluster (ecs:cluster condition)"),
    (rf":ecs:{_AT}:task/[^/*]+/\*$",
     "tasks of our GPU cluster only (the ARN names the cluster, plus an ecs:cluster condition)"),
    (rf":ecs:{_AT}:container-instance/[^/*]+/\*$",
     "container instances of our GPU cluster only (the ARN names the cluster, plus an ecs:cluster condition)"),
    (rf":ec2:{_AT}:instance/\*$",
     f"only instances tagged {NODE_TAG_KEY}=<cluster> (aws:ResourceTag condition)"),
    (rf":ssm:{_AT}:managed-instance/\*$",
     f"only ECS Anywhere managed instances tagged {NODE_TAG_KEY}=<cluster> (aws:ResourceTag condition)"),
    (rf":autoscaling:{_AT}:autoScalingGroup:\*:autoScalingGroupName/\*$",
     f"only Auto Scaling groups tagged {NODE_TAG_KEY}=<cluster> (aws:ResourceTag condition)"),
]

# Whole-rule acknowledgments: (construct path suffix, rule id, reason).
REVIEWED_RULES: list[tuple[str, str, str]] = [
    ("Stream/Stream", "AwsSolutions-KDS3",
     "a customer managed key on purpose: one key policy lets EventBridge and CloudWatch use it, with rotation"),
    ("Ingest/DeadLetterQueue", "AwsSolutions-SQS3",
     "this queue is the dead-letter queue of the EventBridge targets; its depth is alarmed to the topic"),
    ("HealthCheck/TaskDefinition", "AwsSolutions-ECS2",
     "plain configuration only (stream name, region), validated by the settings model; no secrets exist here"),
    ("Consumers/ProjectorTaskDefinition", "AwsSolutions-ECS2",
     "plain configuration only (table, stream, topic names; policy knobs), validated by the settings model"),
    ("Consumers/RecoveryTaskDefinition", "AwsSolutions-ECS2",
     "plain configuration only (table, stream, topic names; policy knobs), validated by the settings model"),
    ("Archive/Delivery", "AwsSolutions-KDF1",
     "Firehose cannot add its own encryption to a Kinesis-stream source; the source stream and the S3 "
     "archive are both encrypted with our customer managed key"),
]


# checkov (CloudFormation checks, run on the synthesized template by tests/infra/test_checkov.py):
# (construct path suffix, check id, reason). Written into the resource's Metadata (checkov: skip), where
# checkov reads it, so `checkov -f cdk.out/GpuRecovery.template.json` gives the same answer as CI.
CHECKOV_SKIPS: list[tuple[str, str, str]] = [
    ("Archive/AccessLogs", "CKV_AWS_18",
     "this bucket receives the archive bucket's server access logs; logging it too would need a third bucket "
     "with the same question (S3 cannot deliver access logs to an SSE-KMS bucket, so it is SSE-S3, private, "
     "versioned, TLS-only and expires logs after a year)"),
]


def suppress(stack: Stack) -> None:
    """Acknowledge the reviewed findings; call once every construct and grant is in place."""
    for construct in stack.node.find_all():
        path = construct.node.path
        for suffix, rule, reason in REVIEWED_RULES:
            if path.endswith(f"/{suffix}"):
                _acknowledge(construct, rule, reason)
        for suffix, check, reason in CHECKOV_SKIPS:
            if path.endswith(f"/{suffix}"):
                _skip_checkov(construct, check, reason)
        if isinstance(construct, iam.CfnPolicy):
            owner = _policy_owner(construct)
            for finding in wildcard_findings(stack.resolve(construct.policy_document)):
                why = reviewed_reason(finding)
                if why is not None:
                    _acknowledge(owner, f"AwsSolutions-IAM5[{finding}]", why)


def _policy_owner(policy: iam.CfnPolicy) -> IConstruct:
    """The role a policy belongs to: CDK may split its policy into overflow policies at synthesis."""
    scope = policy.node.scope
    while scope is not None and not isinstance(scope, iam.Role):
        scope = scope.node.scope
    return scope if scope is not None else policy


def reviewed_reason(finding: str) -> str | None:
    for pattern, reason in REVIEWED_WILDCARDS:
        if re.search(pattern, finding):
            return reason
    return None


def wildcard_findings(document: dict[str, Any]) -> Iterator[str]:
    """The ids AwsSolutions-IAM5 gives a policy document's wildcards (cdk-nag's own format)."""
    for statement in document.get("Statement", []):
        if statement.get("Effect") != "Allow":
            continue
        for action in _as_list(statement.get("Action")):
            if "*" in action:
                yield f"Action::{action}"
        for resource in _as_list(statement.get("Resource")):
            flat = flatten_reference(resource)
            if "*" in flat:
                yield f"Resource::{flat}"


def flatten_reference(node: Any) -> str:
    """cdk-nag's flattenCfnReference: a CloudFormation reference as the flat string its ids use."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return str(delimiter).join(flatten_reference(item) for item in items)
        if "Fn::Sub" in node:
            return flatten_reference(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{flatten_reference(resource)}.{flatten_reference(attribute)}>"
        if "Fn::ImportValue" in node:
            return flatten_reference(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{flatten_reference(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _skip_checkov(construct: IConstruct, check: str, reason: str) -> None:
    resource = construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"checkov skip {check} names {construct.node.path}, which has no CloudFormation resource")
    skips = (resource.get_metadata("checkov") or {}).get("skip", [])
    resource.add_metadata("checkov", {"skip": [*skips, {"id": check, "comment": reason}]})


def _acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))
