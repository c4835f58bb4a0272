"""Recovery policy settings (DESIGN section 5); every one is configurable and tested."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta


@dataclass(frozen=True)
class PolicyConfig:
    cluster_name: str = "gpu-training"
    health_check_family: str = "gpu-recovery-healthcheck"
    job_id_source: str = "group"
    gpu_task_families: frozenset[str] = field(default_factory=frozenset)
    max_job_restarts: int = 3
    breaker_fraction: float = 0.2
    fault_window: timedelta = timedelta(days=7)
    health_check_deadline: timedelta = timedelta(minutes=20)
    reboot_deadline: timedelta = timedelta(minutes=15)
    restart_deadline: timedelta = timedelta(minutes=10)
    capacity_deadline: timedelta = timedelta(hours=1)
    siblings_deadline: timedelta = timedelta(minutes=2)
    report_grace: timedelta = timedelta(minutes=1)
    restart_backoff: timedelta = timedelta(seconds=30)
    replace_instances: bool = False
    post_failure_level: int = 2
    post_reboot_level: int = 1
    node_attribute: str = "gpu-recovery.state"

    def breaker_limit(self, gpu_nodes: int) -> int:
        """Most nodes in repair at once: a fraction of the GPU nodes, never less than one."""
        return max(1, int(gpu_nodes * self.breaker_fraction + 1e-9))

    def backoff(self, attempt: int) -> timedelta:
        factor: int = 2 ** max(0, attempt - 1)
        return self.restart_backoff * factor
