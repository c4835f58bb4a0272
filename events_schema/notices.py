"""What a human is told: the notice model every notification carries (SNS ``default`` body, email, chat)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["info", "action_needed", "page"]


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Seen(_Part):
    xids: list[int] = Field(default_factory=list, description="The XIDs seen on the node.")
    verdict: str | None = Field(None, description="The DCGM verdict, if a check reported.")
    reason: str = Field("", description="What was seen, in words.")


class Notice(_Part):
    """What a human is told: the ``default`` body of the SNS message, rendered for email and chat too.

    A burst (one cause, many nodes or jobs) is one notice listing them all.
    """

    kind: str = Field(description="What happened: `job_failed`, `node_quarantined`, `breaker_open`, ...")
    severity: Severity = Field("action_needed", description="`info`, `action_needed` or `page`.")
    cluster: str = Field(description="The ECS cluster name.")
    title: str = Field("", description="One line, for a chat title or an email subject.")
    summary: str = Field(description="What was seen and done, in words.")
    next_step: str = Field("", description="What a person should do next.")
    incident_id: str | None = Field(None, description="The incident, when there is one.")
    node_arn: str | None = Field(None, description="The node, when the notice is about one.")
    instance_id: str | None = Field(None, description="The node's EC2 (or managed) instance id.")
    job_ids: list[str] = Field(default_factory=list, description="The jobs concerned.")
    node_arns: list[str] = Field(default_factory=list, description="Every node concerned (a burst lists them all).")
    incident_ids: list[str] = Field(default_factory=list, description="Every incident concerned.")
    seen: Seen = Field(default_factory=Seen, description="What was seen.")
    done: list[str] = Field(default_factory=list, description="The recorded steps (idempotency keys) so far.")
    at: datetime | None = Field(None, description="When.")
    test: bool = Field(False, description="A test notification from `gpu-recovery notify test`: no action needed.")


NOTICE_SEVERITY: dict[str, Severity] = {
    "job_failed": "page", "escalation": "page", "deadline_expired": "page", "budget_exhausted": "page",
    "node_quarantined": "action_needed", "node_replaced": "info", "replace_failed": "action_needed",
    "node_misconfigured": "action_needed", "breaker_open": "action_needed", "out_of_service_cap": "page",
    "waiting_capacity": "info", "job_at_risk": "action_needed", "maintenance_scheduled": "info", "test": "info",
}
