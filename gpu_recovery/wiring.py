"""Composition: settings + clients -> the consumers, their adapters and their runtimes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.adapters.actuators import AwsActuator
from consumers.adapters.dynamodb import DynamoParkingLot, DynamoProjectionStore
from consumers.adapters.kinesis import KinesisStreamWriter
from consumers.adapters.ledger import DynamoLedger
from consumers.adapters.metrics import CloudWatchMetrics, Metrics, NullMetrics
from consumers.adapters.recovery_store import DynamoRecoveryStore
from consumers.adapters.sns_message import sibling_topic_arn
from consumers.core.recovery.config import PolicyConfig
from consumers.projector import Projector
from consumers.recovery import RecoveryConsumer, no_fault
from consumers.runtime.local_reader import DynamoCheckpoints, LocalReader
from consumers.runtime.processor import BatchHandler, ShardProcessor
from gpu_recovery.apps import PROJECTOR_APP, RECOVERY_APP, identity_rules, projection_config
from gpu_recovery.aws import AwsClients
from gpu_recovery.settings import Settings


def build_projector(clients: AwsClients) -> Projector:
    settings = clients.settings
    dynamodb = clients.client("dynamodb")
    return Projector(
        DynamoProjectionStore(dynamodb, settings.projection_tables()),
        parking_lot(clients),
        projection_config(settings),
        consumer="projector",
        metrics=metrics(clients),
    )


def parking_lot(clients: AwsClients) -> DynamoParkingLot:
    """Parked records; one bigger than an item keeps its head here and the whole in the archive bucket."""
    settings = clients.settings
    s3 = clients.client("s3") if settings.parked_archive_bucket else None
    return DynamoParkingLot(clients.client("dynamodb"), settings.parked_table, s3=s3,
                            archive_bucket=settings.parked_archive_bucket)


def metrics(clients: AwsClients) -> Metrics:
    if not clients.settings.metrics:
        return NullMetrics()
    return CloudWatchMetrics(clients.client("cloudwatch"))


def stream_writer(clients: AwsClients) -> KinesisStreamWriter:
    return KinesisStreamWriter(clients.client("kinesis"), clients.settings.stream_name)


def local_reader(clients: AwsClients, application: str, handler: BatchHandler) -> LocalReader:
    """An in-process reader for one application: one ShardProcessor per shard, as the daemon does.

    A fatal error propagates to the caller instead of exiting the process.
    """
    settings = clients.settings
    return LocalReader(
        clients.client("kinesis"),
        settings.stream_name,
        application,
        lambda: ShardProcessor(handler, on_fatal=_propagate),
        DynamoCheckpoints(clients.client("dynamodb"), settings.checkpoint_table),
    )


def _propagate(exc: BaseException) -> None:
    """Local runs surface a fatal processor error as an exception (the daemon exits instead)."""


def policy_config(settings: Settings) -> PolicyConfig:
    return PolicyConfig(
        cluster_name=settings.cluster_name,
        cluster_arn=settings.cluster_arn,
        health_check_family=settings.health_check_task,
        identity=identity_rules(settings),
        max_job_restarts=settings.max_job_restarts,
        restart_budget_window=timedelta(seconds=settings.restart_budget_window_s),
        breaker_fraction=settings.breaker_fraction,
        max_out_of_service_fraction=settings.max_out_of_service_fraction,
        min_out_of_service_nodes=settings.min_out_of_service_nodes,
        fault_window=timedelta(days=settings.fault_window_days),
        health_check_deadline=timedelta(seconds=settings.health_check_deadline_s),
        reboot_deadline=timedelta(seconds=settings.reboot_deadline_s),
        restart_deadline=timedelta(seconds=settings.restart_deadline_s),
        capacity_deadline=timedelta(seconds=settings.capacity_deadline_s),
        siblings_deadline=timedelta(seconds=settings.siblings_deadline_s),
        restart_backoff=timedelta(seconds=settings.restart_backoff_s),
        notice_window=timedelta(seconds=settings.notice_window_s),
        maintenance_lead=timedelta(seconds=settings.maintenance_lead_s),
        retention=timedelta(days=settings.ttl_days),
        future_skew=timedelta(seconds=settings.future_skew_s),
        replace_instances=settings.replace_instances,
        proactive_action=settings.proactive_action,
    )


def topic_arn(settings: Settings) -> str:
    return f"arn:aws:sns:{settings.region}:{settings.account_id}:{settings.sns_topic_name}"


def build_recovery(
    clients: AwsClients,
    *,
    clock: Callable[[], datetime] | None = None,
    fault: Callable[[str, str | None], None] = no_fault,
    wrap_actuator: Callable[[Any], Any] = lambda actuator: actuator,
    wrap_writer: Callable[[Any], Any] = lambda writer: writer,
    owner: str | None = None,
) -> RecoveryConsumer:
    """The recovery consumer; the wrappers let the local stack observe its calls and its events."""
    settings = clients.settings
    dynamodb = clients.client("dynamodb")
    store = DynamoRecoveryStore(dynamodb, settings.recovery_table, retention_days=settings.ttl_days)
    key = store.check_key()
    actuator = AwsActuator(clients.client, cluster=settings.cluster_name, topic_arn=topic_arn(settings),
                           check_key=key, chat_topic_arn=sibling_topic_arn(topic_arn(settings),
                                                                           settings.sns_chat_topic_name))
    return RecoveryConsumer(
        replace(policy_config(settings), secret_key=key),
        store,
        wrap_writer(stream_writer(clients)),
        wrap_actuator(actuator),
        DynamoLedger(dynamodb, settings.ledger_table, retention_s=settings.ttl_days * 86_400),
        parking_lot(clients),
        clock=clock or (lambda: datetime.now(UTC)),
        owner=owner,
        dry_run=settings.dry_run,
        fault=fault,
        metrics=metrics(clients),
    )


__all__ = ["PROJECTOR_APP", "RECOVERY_APP", "build_projector", "build_recovery", "local_reader", "projection_config"]
