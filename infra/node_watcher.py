"""The node watcher (``gpu-recovery healthcheck --watch``) as an ECS daemon service: one task on every node of
the GPU cluster, telling the stream when a GPU degrades (docs/healthcheck.md, "The node watcher").

Off by default (``node_watcher`` in infra/config.py). Its role can do one thing: put records to our stream
(with the key that encrypts it), so a compromised node can at most send a signal, and a signal can at most
cost a check. It reserves no GPU (jobs need them all): the image's ``NVIDIA_VISIBLE_DEVICES=all`` lets it see
them, and host networking lets it reach the node's DCGM host engine and the ECS agent (for its node ARN).
Its settings travel as command-line flags, so the task definition holds no environment at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.permissions import task_role

CONTAINER_NAME = "node-watcher"
DEFAULT_INTERVAL_S = 300


class NodeWatcher(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, cluster_name: str, image: ecs.ContainerImage,
                 stream: kinesis.IStream, key: kms.Key, stream_name: str, name_prefix: str,
                 log_retention: logs.RetentionDays, interval_s: int = DEFAULT_INTERVAL_S) -> None:
        super().__init__(scope, construct_id)
        self.task_role = task_role(self, "TaskRole", description="node watcher: put GPU health signals to the stream")
        self.task_role.add_to_policy(iam.PolicyStatement(
            sid="SignalToStream", actions=["kinesis:PutRecord", "kinesis:PutRecords"], resources=[stream.stream_arn]))
        self.task_role.add_to_policy(iam.PolicyStatement(
            sid="EncryptRecords", actions=["kms:GenerateDataKey"], resources=[key.key_arn]))
        self.log_group = self._log_group(key, name_prefix, log_retention)
        self.task_definition = self._task_definition()
        self.container = self.task_definition.add_container(
            CONTAINER_NAME, container_name=CONTAINER_NAME, image=image, essential=True, cpu=128,
            memory_reservation_mib=256, command=_command(stream_name, interval_s),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="node-watcher", log_group=self.log_group),
        )
        self.service = ecs.CfnService(
            self, "Service",
            cluster=cluster_name,
            task_definition=self.task_definition.task_definition_arn,
            scheduling_strategy="DAEMON",
            launch_type="EC2",
            # A daemon replaces its task node by node: stop the old one, then start the new one.
            deployment_configuration=ecs.CfnService.DeploymentConfigurationProperty(
                maximum_percent=100, minimum_healthy_percent=0),
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
        )

    def _task_definition(self) -> ecs.TaskDefinition:
        # Host networking: the node's nv-hostengine (127.0.0.1:5555) and ECS agent (127.0.0.1:51678) as they are.
        definition = ecs.TaskDefinition(self, "TaskDefinition", compatibility=ecs.Compatibility.EC2,
                                        network_mode=ecs.NetworkMode.HOST, task_role=self.task_role)
        cfn = cast(ecs.CfnTaskDefinition, definition.node.default_child)
        cfn.add_property_override("RequiresCompatibilities", ["EC2", "EXTERNAL"])
        return definition

    def _log_group(self, key: kms.Key, name_prefix: str, retention: logs.RetentionDays) -> logs.LogGroup:
        """Encrypted with the stack's key and retained with it (what a node saw is evidence). The name is fixed so
        the key policy can name the group without a reference cycle (the group names the key)."""
        name = f"/{name_prefix}/node-watcher"
        arn = f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{name}"
        key.add_to_resource_policy(iam.PolicyStatement(
            sid="NodeWatcherLogs",
            principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],
            conditions={"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": arn}},
        ))
        return logs.LogGroup(self, "Logs", log_group_name=name, encryption_key=key, retention=retention,
                             removal_policy=RemovalPolicy.RETAIN)


def _command(stream_name: str, interval_s: int) -> Sequence[str]:
    """Appended to the image's entrypoint (``gpu-recovery healthcheck``)."""
    return ["--watch", "--interval-s", str(interval_s), "--stream-name", stream_name, "--region", Aws.REGION]
