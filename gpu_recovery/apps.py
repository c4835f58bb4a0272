"""What every consumer and the replay tool agree on, without importing anything that acts:
the KCL application names, the rules of which tasks make a job, and the projection's configuration."""

from __future__ import annotations

from consumers.core.facts import IdentityRules, IdentitySource
from consumers.core.projection import ProjectionConfig
from gpu_recovery.settings import Settings

# One lease table per KCL application (KCL 3 adds <app>-CoordinatorState and <app>-WorkerMetricStats).
PROJECTOR_APP = "gpu-recovery-projector"
RECOVERY_APP = "gpu-recovery-recovery"


def identity_rules(settings: Settings) -> IdentityRules:
    """Which job a task belongs to, and which tasks are GPU tasks: the tables and recovery read the same."""
    return IdentityRules(
        order=tuple(identity_order(settings)), tag_key=settings.job_tag_key,
        services_are_jobs=settings.services_are_jobs, health_check_family=settings.health_check_task,
        gpu_task_families=frozenset(settings.gpu_task_families),
    )


def identity_order(settings: Settings) -> list[IdentitySource]:
    """``job_id_source=startedBy`` (the older setting) puts startedBy first."""
    order: list[IdentitySource] = list(settings.job_identity)
    if settings.job_id_source == "startedBy" and "startedBy" in order:
        order.remove("startedBy")
        order.insert(0, "startedBy")
    return order


def projection_config(settings: Settings) -> ProjectionConfig:
    return ProjectionConfig(identity=identity_rules(settings), cluster_arn=settings.cluster_arn,
                            ttl_days=settings.ttl_days)
