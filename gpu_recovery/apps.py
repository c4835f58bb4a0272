"""What every consumer and the replay tool agree on, without importing anything that acts:
the KCL application names and the projection's configuration from settings."""

from __future__ import annotations

from consumers.core.projection import ProjectionConfig
from gpu_recovery.settings import Settings

# One lease table per KCL application (KCL 3 adds <app>-CoordinatorState and <app>-WorkerMetricStats).
PROJECTOR_APP = "gpu-recovery-projector"
RECOVERY_APP = "gpu-recovery-recovery"


def projection_config(settings: Settings) -> ProjectionConfig:
    return ProjectionConfig(
        job_id_source=settings.job_id_source,
        gpu_task_families=frozenset(settings.gpu_task_families),
        health_check_family=settings.health_check_task,
        ttl_days=settings.ttl_days,
    )
