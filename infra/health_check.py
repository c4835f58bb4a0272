"""The DCGM health-check task the recovery starts on a suspect node (EC2 or ECS Anywhere).

Its role can do one thing: put records to our stream (with the key that encrypts it). Nothing on a
node can do more, so a compromised or confused node can only report, never act.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from events_schema.health_check import CHECK_CONTAINER
from infra.encryption import log_group
from infra.permissions import task_role

# The recovery names this container in its StartTask overrides (level, incident id, node).
CONTAINER_NAME = CHECK_CONTAINER


class HealthCheck(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, family: str, image: ecs.ContainerImage,
                 stream: kinesis.IStream, key: kms.IKey, gpus: int, environment: Mapping[str, str],
                 log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        self.task_role = task_role(self, "TaskRole", description="DCGM health check: put records to the stream")
        self.task_role.add_to_policy(
            iam.PolicyStatement(sid="ReportToStream", actions=["kinesis:PutRecord", "kinesis:PutRecords"],
                                resources=[stream.stream_arn])
        )
        self.task_role.add_to_policy(
            iam.PolicyStatement(sid="EncryptRecords", actions=["kms:GenerateDataKey"], resources=[key.key_arn])
        )
        # Host networking: DCGM's host engine and NVML see the node as it is (no NAT, no port mapping).
        self.task_definition = ecs.TaskDefinition(
            self,
            "TaskDefinition",
            family=family,
            compatibility=ecs.Compatibility.EC2,
            network_mode=ecs.NetworkMode.HOST,
            task_role=self.task_role,
        )
        # EC2 and ECS Anywhere nodes alike (CDK's enum has no EC2+EXTERNAL pair).
        cfn = cast(ecs.CfnTaskDefinition, self.task_definition.node.default_child)
        cfn.add_property_override("RequiresCompatibilities", ["EC2", "EXTERNAL"])
        linux = ecs.LinuxParameters(self, "Linux")
        # Not privileged. SYS_ADMIN: DCGM's profiling/diagnostic modules need it (NVIDIA's DCGM and
        # dcgm-exporter containers run with --cap-add SYS_ADMIN). SYSLOG: read the kernel ring
        # buffer for NVRM Xid lines.
        linux.add_capabilities(ecs.Capability.SYS_ADMIN, ecs.Capability.SYSLOG)
        self.log_group = log_group(self, "Logs", key=key, retention=log_retention)
        self.container = self.task_definition.add_container(
            CONTAINER_NAME,
            container_name=CONTAINER_NAME,
            image=image,
            essential=True,
            gpu_count=gpus,
            cpu=1024,
            memory_reservation_mib=1024,
            linux_parameters=linux,
            environment=dict(environment),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="healthcheck", log_group=self.log_group),
        )
