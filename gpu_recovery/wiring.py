"""Composition: settings + clients -> the consumers, their adapters and their runtimes."""

from __future__ import annotations

from consumers.adapters.dynamodb import DynamoParkingLot, DynamoProjectionStore
from consumers.adapters.kinesis import KinesisStreamWriter
from consumers.core.projection import ProjectionConfig
from consumers.projector import Projector
from consumers.runtime.local_reader import DynamoCheckpoints, LocalReader
from consumers.runtime.processor import BatchHandler, ShardProcessor
from events_schema.rules import ingest_rules
from gpu_recovery.aws import AwsClients
from gpu_recovery.settings import Settings
from local.bridge import EventBridgeBridge

PROJECTOR_APP = "gpu-recovery-projector"
RECOVERY_APP = "gpu-recovery-recovery"


def projection_config(settings: Settings) -> ProjectionConfig:
    return ProjectionConfig(
        job_id_source=settings.job_id_source,
        gpu_task_families=frozenset(settings.gpu_task_families),
        health_check_family=settings.health_check_task,
        ttl_days=settings.ttl_days,
    )


def build_projector(clients: AwsClients) -> Projector:
    settings = clients.settings
    dynamodb = clients.client("dynamodb")
    return Projector(
        DynamoProjectionStore(dynamodb, settings.projection_tables()),
        DynamoParkingLot(dynamodb, settings.parked_table),
        projection_config(settings),
        consumer="projector",
    )


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
