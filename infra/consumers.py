"""The KCL consumers on Fargate: one service per KCL application, each with its own least-privilege role.

Each task runs ``gpu-recovery consume <name> --engine kcl``: the MultiLangDaemon takes shard leases in
the application's three KCL tables (created here, named after the application) and drives our record
processor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.encryption import log_group
from infra.kcl_tables import KclApplicationTables
from infra.permissions import kcl_lease_statements, put_metrics_statement, task_role

# A JVM (the daemon) and a Python process per leased shard.
CPU = 1024
MEMORY_MIB = 2048


@dataclass(frozen=True, kw_only=True)
class ConsumerSpec:
    construct_id: str
    name: str  # the `gpu-recovery consume` subcommand
    application: str  # the KCL application name: lease table and metrics namespace
    desired_count: int


class Consumers(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, vpc: ec2.IVpc, subnets: ec2.SubnetSelection,
                 image: ecs.ContainerImage, environment: Mapping[str, str], specs: list[ConsumerSpec],
                 key: kms.IKey, metric_namespace: str, name_prefix: str, log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        # Its own cluster: our consumers' task events must not feed the GPU cluster's rules.
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            cluster_name=f"{name_prefix}-consumers",
            container_insights_v2=ecs.ContainerInsights.ENHANCED,
        )
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, allow_all_outbound=True,
            description="gpu-recovery KCL consumers: no inbound; outbound to AWS APIs only",
        )
        self.log_group = log_group(self, "Logs", key=key, retention=log_retention)
        self.services: dict[str, ecs.FargateService] = {}
        self.roles: dict[str, iam.Role] = {}
        self.kcl_tables: dict[str, KclApplicationTables] = {}
        for spec in specs:
            role = task_role(self, f"{spec.construct_id}TaskRole",
                             description=f"gpu-recovery {spec.name} consumer (KCL application {spec.application})")
            kcl = KclApplicationTables(self, f"{spec.construct_id}KclTables", application=spec.application, key=key)
            for statement in kcl_lease_statements([t.table_arn for t in kcl.tables], kcl.lease_owner_index_arn):
                role.add_to_policy(statement)
            key.grant_encrypt_decrypt(role)
            self.kcl_tables[spec.name] = kcl
            role.add_to_policy(put_metrics_statement([metric_namespace, spec.application]))
            self.roles[spec.name] = role
            self.services[spec.name] = self._service(spec, role, image, environment, subnets, name_prefix)

    def _service(self, spec: ConsumerSpec, role: iam.Role, image: ecs.ContainerImage,
                 environment: Mapping[str, str], subnets: ec2.SubnetSelection, name_prefix: str) -> ecs.FargateService:
        task_definition = ecs.FargateTaskDefinition(
            self,
            f"{spec.construct_id}TaskDefinition",
            family=f"{name_prefix}-{spec.name}",
            cpu=CPU,
            memory_limit_mib=MEMORY_MIB,
            task_role=role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        task_definition.add_container(
            "consumer",
            container_name="consumer",
            image=image,
            essential=True,
            # Explicit, so the service does not depend on the image's ENTRYPOINT.
            entry_point=["gpu-recovery"],
            command=["consume", spec.name, "--engine", "kcl"],
            environment=dict(environment),
            logging=ecs.LogDrivers.aws_logs(stream_prefix=spec.name, log_group=self.log_group),
        )
        return ecs.FargateService(
            self,
            f"{spec.construct_id}Service",
            cluster=self.cluster,
            task_definition=task_definition,
            desired_count=spec.desired_count,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            assign_public_ip=False,
            # A bad image rolls back instead of leaving the stream unread.
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            # Rolling: new workers start before old ones stop; KCL hands leases over.
            min_healthy_percent=100,
            max_healthy_percent=200,
        )
