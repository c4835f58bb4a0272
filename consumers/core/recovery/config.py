"""Recovery policy settings (DESIGN section 5); every one is configurable and tested."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from consumers.core.facts import IdentityRules

ProactiveAction = Literal["notify", "stop_job"]


@dataclass(frozen=True)
class PolicyConfig:
    cluster_name: str = "gpu-training"
    cluster_arn: str = "arn:aws:ecs:us-east-1:123456789012:cluster/gpu-training"
    health_check_family: str = "gpu-recovery-healthcheck"
    identity: IdentityRules = field(
        default_factory=lambda: IdentityRules(health_check_family="gpu-recovery-healthcheck"))
    max_job_restarts: int = 3
    restart_budget_window: timedelta = timedelta(hours=24)
    breaker_fraction: float = 0.2
    max_out_of_service_fraction: float = 0.2
    min_out_of_service_nodes: int = 2
    fault_window: timedelta = timedelta(days=7)
    health_check_deadline: timedelta = timedelta(minutes=20)
    reboot_deadline: timedelta = timedelta(minutes=15)
    restart_deadline: timedelta = timedelta(minutes=10)
    capacity_deadline: timedelta = timedelta(hours=1)
    siblings_deadline: timedelta = timedelta(minutes=2)
    report_grace: timedelta = timedelta(minutes=1)
    restart_backoff: timedelta = timedelta(seconds=30)
    notice_window: timedelta = timedelta(seconds=60)
    maintenance_lead: timedelta = timedelta(hours=2)
    retention: timedelta = timedelta(days=30)
    replace_instances: bool = False
    proactive_action: ProactiveAction = "notify"
    post_failure_level: int = 2
    post_reboot_level: int = 1
    proactive_level: int = 2
    node_attribute: str = "gpu-recovery.state"
    # The key per-check secrets derive from (events_schema.proof.check_secret); never on the stream.
    secret_key: bytes = field(default=b"", repr=False)
    # How far in the future an event's time may be before it is parked (clocks drift; a forged date must
    # not push deadlines years away).
    future_skew: timedelta = timedelta(minutes=5)

    @property
    def gpu_task_families(self) -> frozenset[str]:
        return self.identity.gpu_task_families

    def breaker_limit(self, gpu_nodes: int) -> int:
        """Most nodes in repair at once: a fraction of the GPU nodes, never less than one."""
        return max(1, int(gpu_nodes * self.breaker_fraction + 1e-9))

    def out_of_service_cap(self, gpu_nodes: int) -> int:
        """Most nodes out of service at once (in repair + quarantined + replaced awaiting a successor)."""
        return max(self.min_out_of_service_nodes, int(gpu_nodes * self.max_out_of_service_fraction + 1e-9))

    def backoff(self, attempt: int) -> timedelta:
        factor: int = 2 ** max(0, min(attempt - 1, 16))
        return self.restart_backoff * factor
