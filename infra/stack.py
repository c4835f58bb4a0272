"""One Stack, one Construct per unit. Reading order follows the data: stream, ingest, tables,
notifications, health check, consumers, archive and analytics, operations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Aws, Stack
from aws_cdk import aws_logs as logs
from constructs import Construct

from consumers.adapters.table_specs import LEDGER, PARKED, RECOVERY
from consumers.core.projection import JOB, NODE, TASK
from gpu_recovery.apps import PROJECTOR_APP, RECOVERY_APP
from gpu_recovery.settings import Settings
from infra import nag
from infra.archive import Analytics, Archive
from infra.config import LOG_RETENTION_DAYS, InfraConfig
from infra.consumers import Consumers, ConsumerSpec
from infra.encryption import Encryption
from infra.environment import settings_environment
from infra.health_check import HealthCheck
from infra.images import CONSUMER_DOCKERFILE, HEALTH_CHECK_DOCKERFILE, REPO_ROOT, container_image
from infra.ingest import Ingest
from infra.network import Network
from infra.node_watcher import NodeWatcher
from infra.notifications import Notifications, chat_topic_name
from infra.operations import Operations
from infra.permissions import METRIC_NAMESPACE, ActionScope, Arns, recovery_action_statements
from infra.stream import EventStream
from infra.tables import Tables


def retention_days(days: int) -> logs.RetentionDays:
    """CDK's enum for a CloudWatch Logs period (the config accepts only these; INFINITE is last)."""
    finite = [member for member in logs.RetentionDays if member is not logs.RetentionDays.INFINITE]
    return dict(zip(sorted(LOG_RETENTION_DAYS), finite, strict=True))[days]


class GpuRecoveryStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, config: InfraConfig,
                 source_root: Path = REPO_ROOT, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, description="gpu-recovery: keep GPU training jobs alive on ECS",
                         **kwargs)
        prefix = config.name_prefix
        arns = Arns(partition=Aws.PARTITION, region=self.region, account=self.account)
        # The GPU cluster lives in this account and region (EventBridge rules see no other).
        self.cluster_arn = arns.of("ecs", f"cluster/{settings.cluster_name}")
        log_retention = retention_days(config.log_retention_days)
        chat_topic = chat_topic_name(settings, config)
        environment = settings_environment(settings, overrides={
            "region": self.region, "account_id": self.account,
            **({"sns_chat_topic_name": chat_topic} if chat_topic else {}),
        })

        key = Encryption(self, "Encryption", alias=f"alias/{prefix}").key
        self.stream = EventStream(self, "Stream", stream_name=settings.stream_name,
                                  shards=settings.stream_shards, config=config, key=key).stream
        self.ingest = Ingest(self, "Ingest", cluster_arn=self.cluster_arn, stream=self.stream, key=key,
                             name_prefix=prefix)
        self.tables = Tables(self, "Tables", names=settings.table_names(), key=key)
        self.notifications = Notifications(self, "Notifications", topic_name=settings.sns_topic_name,
                                           display_name=settings.sns_topic_display_name,
                                           emails=config.notification_emails, key=key,
                                           chat_topic_name=chat_topic, config=config)
        self.topic = self.notifications.topic
        health_image = container_image(configured=config.health_check_image, source_root=source_root,
                                       dockerfile=HEALTH_CHECK_DOCKERFILE, setting="health_check_image")
        self.health_check = HealthCheck(
            self, "HealthCheck", family=settings.health_check_task, image=health_image,
            stream=self.stream, key=key, gpus=config.health_check_gpus,
            environment={name: environment[name] for name in ("GPU_RECOVERY_STREAM_NAME", "GPU_RECOVERY_REGION")},
            log_retention=log_retention,
        )
        # The node watcher (same image, `--watch`): a daemon on every GPU node, only when asked for.
        self.node_watcher = NodeWatcher(
            self, "NodeWatcher", cluster_name=settings.cluster_name, image=health_image, stream=self.stream,
            key=key, stream_name=settings.stream_name, name_prefix=prefix, log_retention=log_retention,
        ) if config.node_watcher else None
        network = Network(self, "Network", config=config, key=key, log_retention=log_retention)
        specs = [
            ConsumerSpec(construct_id="Projector", name="projector", application=PROJECTOR_APP,
                         desired_count=config.projector_desired_count),
            ConsumerSpec(construct_id="Recovery", name="recovery", application=RECOVERY_APP,
                         desired_count=config.recovery_desired_count),
        ]
        self.consumers = Consumers(
            self, "Consumers", vpc=network.vpc, subnets=network.subnets,
            image=container_image(configured=config.consumer_image, source_root=source_root,
                                  dockerfile=CONSUMER_DOCKERFILE, setting="consumer_image"),
            environment=environment, specs=specs, key=key, metric_namespace=METRIC_NAMESPACE,
            name_prefix=prefix, log_retention=log_retention,
        )
        self._grant_consumers(settings, config, arns)
        Analytics(self, "Analytics", stream=self.stream, name_prefix=prefix)
        self.archive = Archive(self, "Archive", stream=self.stream, key=key, config=config,
                               log_retention=log_retention)
        Operations(self, "Operations", stream=self.stream, dead_letter_queue=self.ingest.dead_letter_queue,
                   topic=self.topic, chat_topic=self.notifications.chat_topic, services=self.consumers.services,
                   desired_counts={spec.name: spec.desired_count for spec in specs}, config=config,
                   name_prefix=prefix)
        nag.suppress(self)

    def _grant_consumers(self, settings: Settings, config: InfraConfig, arns: Arns) -> None:
        projector, recovery = self.consumers.roles["projector"], self.consumers.roles["recovery"]
        # Both read the stream; only the recovery appends to it (its decisions and outcomes). The projector
        # parks bad records in the parked table and writes nothing else anywhere.
        for role in (projector, recovery):
            self.stream.grant_read(role)
            self.tables[PARKED].grant_read_write_data(role)
        self.stream.grant_write(recovery)
        for logical in (TASK, JOB, NODE):
            self.tables[logical].grant_read_write_data(projector)
            self.tables[logical].grant_read_data(recovery)
        for logical in (RECOVERY, LEDGER):
            self.tables[logical].grant_read_write_data(recovery)
        health = self.health_check.task_definition
        passed = [self.health_check.task_role.role_arn, health.obtain_execution_role().role_arn,
                  *config.job_task_role_arns]
        scope = ActionScope(
            arns=arns, cluster_name=settings.cluster_name, cluster_arn=self.cluster_arn,
            health_check_family=settings.health_check_task, topic_arn=self.topic.topic_arn,
            chat_topic_arn=self.notifications.chat_topic.topic_arn if self.notifications.chat_topic else None,
            pass_role_arns=passed, job_families=list(settings.gpu_task_families),
            replace_instances=settings.replace_instances,
        )
        for statement in recovery_action_statements(scope):
            recovery.add_to_policy(statement)
