"""IAM statements whose scope is the point: the KCL's own tables and the recovery consumer's actions.

Pure functions of names and ARNs (CloudFormation references included): the stack attaches them, the
tests read them back from the template. Each statement is as narrow as the action allows; the
Service Authorization Reference says which actions take a resource and which condition keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from consumers.core.errors import ConfigError

# Operators tag their GPU nodes (EC2 instances or their Auto Scaling group, and ECS Anywhere managed
# instances) with this key and the cluster's name; the recovery may act only on tagged nodes.
NODE_TAG_KEY = "gpu-recovery:cluster"
# Our custom metrics (published by the consumers): see infra/operations.py.
METRIC_NAMESPACE = "GpuRecovery"
ECS_TASKS = "ecs-tasks.amazonaws.com"


@dataclass(frozen=True, kw_only=True)
class Arns:
    """Builds ARNs in one partition, region and account (literal or CloudFormation references)."""

    partition: str
    region: str
    account: str

    def of(self, service: str, resource: str, *, region: str | None = None, account: str | None = None) -> str:
        return (f"arn:{self.partition}:{service}:{self.region if region is None else region}:"
                f"{self.account if account is None else account}:{resource}")


def kcl_lease_statements(tables: list[str], lease_owner_index: str) -> list[iam.PolicyStatement]:
    """What the KCL needs in its lease, coordinator-state and worker-metrics tables, and nothing else.

    The stack creates those tables (infra/kcl_tables.py), so no CreateTable or UpdateTable: the KCL
    describes each at start and uses it as it is.
    """
    return [
        iam.PolicyStatement(
            sid="KclMetadataTables",
            actions=[
                "dynamodb:DescribeTable", "dynamodb:Scan", "dynamodb:Query", "dynamodb:GetItem",
                "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
            ],
            resources=tables,
        ),
        iam.PolicyStatement(sid="KclLeaseOwnerIndex", actions=["dynamodb:Query"], resources=[lease_owner_index]),
    ]


def put_metrics_statement(namespaces: list[str]) -> iam.PolicyStatement:
    """PutMetricData takes no resource worth naming; the namespace condition is the scope."""
    return iam.PolicyStatement(
        sid="PutOwnMetrics",
        actions=["cloudwatch:PutMetricData"],
        resources=["*"],
        conditions={"StringEquals": {"cloudwatch:namespace": namespaces}},
    )


@dataclass(frozen=True, kw_only=True)
class ActionScope:
    """Everything the recovery consumer may touch."""

    arns: Arns
    cluster_name: str
    cluster_arn: str
    health_check_family: str
    topic_arn: str
    # The chat topic (Amazon Q Developer in chat applications), when there is one.
    chat_topic_arn: str | None = None
    pass_role_arns: list[str]
    # Restart only these task definition families: required, so a restart can never start an arbitrary
    # task definition, even in our cluster.
    job_families: list[str]
    replace_instances: bool

    def __post_init__(self) -> None:
        if not self.job_families:
            raise ConfigError(MISSING_FAMILIES)


MISSING_FAMILIES = (
    "setting gpu_task_families is empty: the recovery consumer may restart (ecs:StartTask) only the task "
    "definition families of your training jobs, and the stack will not grant restarts of any family.\n"
    "    fix: pass -c gpu_task_families=FAMILY[,FAMILY...] (or set it in cdk.json's context), or set "
    "GPU_RECOVERY_GPU_TASK_FAMILIES, to your training jobs' task definition families."
)


def recovery_action_statements(scope: ActionScope) -> list[iam.PolicyStatement]:
    return [
        *_ecs_statements(scope),
        *_node_statements(scope),
        iam.PolicyStatement(sid="NotifyOurTopic", actions=["sns:Publish"],
                            resources=[scope.topic_arn, *([scope.chat_topic_arn] if scope.chat_topic_arn else [])]),
        iam.PolicyStatement(
            sid="PassJobAndHealthCheckRoles",
            actions=["iam:PassRole"],
            resources=scope.pass_role_arns,
            conditions={"StringEquals": {"iam:PassedToService": ECS_TASKS}},
        ),
    ]


def _in_cluster(scope: ActionScope) -> dict[str, dict[str, str]]:
    return {"ArnEquals": {"ecs:cluster": scope.cluster_arn}}


def _ecs_statements(scope: ActionScope) -> list[iam.PolicyStatement]:
    arns, cluster = scope.arns, scope.cluster_name
    job_definitions = [arns.of("ecs", f"task-definition/{family}:*") for family in scope.job_families]
    tasks = arns.of("ecs", f"task/{cluster}/*")
    instances = arns.of("ecs", f"container-instance/{cluster}/*")
    return [
        iam.PolicyStatement(
            sid="StartHealthCheckInCluster",
            actions=["ecs:StartTask"],
            resources=[arns.of("ecs", f"task-definition/{scope.health_check_family}:*")],
            conditions=_in_cluster(scope),
        ),
        # Restarts place each task on a chosen node (StartTask), with its exact revision.
        iam.PolicyStatement(
            sid="RestartJobTasksInCluster",
            actions=["ecs:StartTask"],
            resources=job_definitions,
            conditions=_in_cluster(scope),
        ),
        # Restarted tasks keep their tags (the old tool lost them); tagging on create needs this.
        iam.PolicyStatement(
            sid="TagTasksOnStart",
            actions=["ecs:TagResource"],
            resources=[tasks],
            conditions={"StringEquals": {"ecs:CreateAction": "StartTask"}},
        ),
        iam.PolicyStatement(
            sid="TasksInCluster",
            actions=["ecs:StopTask", "ecs:DescribeTasks"],
            resources=[tasks],
            conditions=_in_cluster(scope),
        ),
        iam.PolicyStatement(
            sid="NodesInCluster",
            actions=["ecs:UpdateContainerInstancesState", "ecs:PutAttributes", "ecs:ListTasks"],
            resources=[instances],
            conditions=_in_cluster(scope),
        ),
        # ListTagsForResource takes no ecs:cluster key; the ARNs themselves name the cluster (ECS's long
        # ARN format, the default for every account).
        iam.PolicyStatement(
            sid="ReadTagsInCluster",
            actions=["ecs:ListTagsForResource"],
            resources=[tasks, instances],
        ),
    ]


def _tagged(scope: ActionScope) -> dict[str, dict[str, str]]:
    return {"StringEquals": {f"aws:ResourceTag/{NODE_TAG_KEY}": scope.cluster_name}}


def _node_statements(scope: ActionScope) -> list[iam.PolicyStatement]:
    arns = scope.arns
    statements = [
        iam.PolicyStatement(
            sid="RebootTaggedInstances",
            actions=["ec2:RebootInstances"],
            resources=[arns.of("ec2", "instance/*")],
            conditions=_tagged(scope),
        ),
        # SendCommand is authorized against the document and the target separately: the document is
        # AWS's own (no account), the targets are our tagged ECS Anywhere nodes.
        iam.PolicyStatement(
            sid="RunShellScriptDocumentOnly",
            actions=["ssm:SendCommand"],
            resources=[arns.of("ssm", "document/AWS-RunShellScript", account="")],
        ),
        iam.PolicyStatement(
            sid="SendCommandToTaggedManagedInstances",
            actions=["ssm:SendCommand"],
            resources=[arns.of("ssm", "managed-instance/*")],
            conditions=_tagged(scope),
        ),
    ]
    if scope.replace_instances:
        # Replace = terminate without decrementing desired capacity; Auto Scaling then terminates the
        # instance with its own service-linked role, so no ec2:TerminateInstances here. The group
        # carries the tag (and propagates it to its instances at launch).
        statements.append(
            iam.PolicyStatement(
                sid="ReplaceInTaggedGroups",
                actions=["autoscaling:TerminateInstanceInAutoScalingGroup"],
                resources=[arns.of("autoscaling", "autoScalingGroup:*:autoScalingGroupName/*")],
                conditions=_tagged(scope),
            )
        )
    return statements


def task_role(scope: Construct, construct_id: str, *, description: str) -> iam.Role:
    """A task role that only ECS tasks of this account can assume (the confused-deputy guard ECS documents)."""
    principal = iam.ServicePrincipal(ECS_TASKS).with_conditions(
        {"StringEquals": {"aws:SourceAccount": Stack.of(scope).account}}
    )
    return iam.Role(scope, construct_id, assumed_by=principal, description=description)
