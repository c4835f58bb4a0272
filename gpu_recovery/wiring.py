"""Composition: settings + clients -> the consumers, their adapters and their runtimes."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.adapters.actuators import AwsActuator
from consumers.adapters.dynamodb import DynamoParkingLot, DynamoProjectionStore
from consumers.adapters.kinesis import KinesisStreamWriter
from consumers.adapters.ledger import DynamoLedger
from consumers.adapters.metrics import CloudWatchMetrics, Metrics, NullMetrics
from consumers.adapters.recovery_store import DynamoRecoveryStore
from consumers.adapters.state_lock import DynamoStateLock
from consumers.core.recovery.config import PolicyConfig
from consumers.core.recovery.policy import RecoveryPolicy
from consumers.projector import Projector
from consumers.recovery import RecoveryConsumer, no_fault
from consumers.runtime.local_reader import DynamoCheckpoints, LocalReader
from consumers.runtime.processor import BatchHandler, ShardProcessor
from events_schema.rules import ingest_rules
from gpu_recovery.apps import PROJECTOR_APP, RECOVERY_APP, projection_config
from gpu_recovery.aws import AwsClients
from gpu_recovery.settings import Settings
from local.bridge import EventBridgeBridge


def build_projector(clients: AwsClients) -> Projector:
    settings = clients.settings
    dynamodb = clients.client("dynamodb")
    return Projector(
        DynamoProjectionStore(dynamodb, settings.projection_tables()),
        DynamoParkingLot(dynamodb, settings.parked_table),
        projection_config(settings),
        consumer="projector",
        metrics=metrics(clients),
    )


def metrics(clients: AwsClients) -> Metrics:
    if not clients.settings.metrics:
        return NullMetrics()
    return CloudWatchMetrics(clients.client("cloudwatch"))


def stream_writer(clients: AwsClients) -> KinesisStreamWriter:
    return KinesisStreamWriter(clients.client("kinesis"), clients.settings.stream_name)


def bridge(clients: AwsClients) -> EventBridgeBridge:
    return EventBridgeBridge(ingest_rules(clients.settings.cluster_arn), stream_writer(clients))


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
        health_check_family=settings.health_check_task,
        job_id_source=settings.job_id_source,
        gpu_task_families=frozenset(settings.gpu_task_families),
        max_job_restarts=settings.max_job_restarts,
        breaker_fraction=settings.breaker_fraction,
        fault_window=timedelta(days=settings.fault_window_days),
        health_check_deadline=timedelta(seconds=settings.health_check_deadline_s),
        reboot_deadline=timedelta(seconds=settings.reboot_deadline_s),
        restart_deadline=timedelta(seconds=settings.restart_deadline_s),
        capacity_deadline=timedelta(seconds=settings.capacity_deadline_s),
        restart_backoff=timedelta(seconds=settings.restart_backoff_s),
        replace_instances=settings.replace_instances,
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
) -> RecoveryConsumer:
    """The recovery consumer; the wrappers let the local stack observe its calls and its events."""
    settings = clients.settings
    dynamodb = clients.client("dynamodb")
    # Every process running it (one per shard under the KCL) takes turns on the one shared state.
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return RecoveryConsumer(
        RecoveryPolicy(policy_config(settings)),
        DynamoRecoveryStore(dynamodb, settings.recovery_table),
        wrap_writer(stream_writer(clients)),
        wrap_actuator(AwsActuator(clients, cluster=settings.cluster_name, topic_arn=topic_arn(settings))),
        DynamoLedger(dynamodb, settings.ledger_table),
        DynamoParkingLot(dynamodb, settings.parked_table),
        clock=clock or (lambda: datetime.now(UTC)),
        dry_run=settings.dry_run,
        fault=fault,
        metrics=metrics(clients),
        lock=DynamoStateLock(dynamodb, settings.recovery_table, owner),
    )


__all__ = ["PROJECTOR_APP", "RECOVERY_APP", "build_projector", "build_recovery", "local_reader", "projection_config"]
