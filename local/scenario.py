"""Scenario files (YAML or JSON in scenarios/): a fleet, jobs, injected faults, and what must happen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from consumers.core.errors import ConfigError

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
DEFAULT_SCENARIO = "02-xid48-reboot"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeHealth(_Spec):
    dcgm: Literal["pass", "fail", "crash", "config"] = "pass"
    xids: list[int] = Field(default_factory=list)


class FaultSpec(_Spec):
    at: float = Field(ge=0, description="seconds after every job runs")
    node: str
    xids: list[int] = Field(default_factory=list)
    dcgm: Literal["pass", "fail", "crash", "config"] = "fail"
    after_reboot: NodeHealth = Field(default_factory=NodeHealth)
    reboot: Literal["ok", "never_returns", "lost", "late"] = "ok"
    check: Literal["ok", "fails_to_start", "exits_without_report"] = "ok"
    # The failed rank's own stop names the XIDs (evidence against this node), or only the NCCL timeout.
    evidence: bool = True
    # A fault that hits no rank (an idle node): it shows at the next check, or when a rank starts there.
    silent: bool = False


EventType = Literal[
    "agent_reconnect", "user_stop", "stray_check_task", "raw", "operator_release", "operator_attribute",
    "job_cancel", "instance_health", "gpu_signal", "aws_health", "instance_state", "forged_report",
]


class EventSpec(_Spec):
    at: float = Field(ge=0)
    type: EventType
    node: str | None = None
    job: str | None = None
    # raw: any record put on the stream as it is (forged events, other clusters, future dates).
    record: dict[str, Any] | None = None
    partition_key: str | None = None
    # instance_health: an ECS instance health check changes status.
    check: str = "ACCELERATED_COMPUTE"
    status: str = "IMPAIRED"
    reason: str = ""
    # gpu_signal: the node watcher reports a degradation.
    xids: list[int] = Field(default_factory=list)
    kind: str = "xid"
    # aws_health: an AWS Health scheduled change (seconds after the event, relative).
    code: str = "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"
    start: float | None = None
    end: float | None = None
    # instance_state: EC2 state change not caused by recovery; forged_report: the verdict it claims.
    state: str = "stopped"
    verdict: str = "hardware_fault"
    # operator_release / operator_attribute: the operator repaired the node first (False: returned as it is).
    fixed: bool = True


class ErrorSpec(_Spec):
    """From ``at`` on, the next ``count`` calls of ``action`` fail as AWS would answer."""

    at: float = Field(ge=0)
    action: str
    error: Literal["ThrottlingException", "ServerError", "ValidationError", "RESOURCE:GPU"]
    count: int = Field(1, ge=1, le=1000)


class JobSpec(_Spec):
    id: str
    nodes: list[str]
    family: str = "llm-train"
    gpus: int | None = Field(None, ge=1, le=16, description="GPUs per rank (default: the fleet's per node)")
    tags: list[dict[str, str]] = Field(default_factory=lambda: [{"key": "team", "value": "foundation-models"}])


class FleetSpec(_Spec):
    nodes: int = Field(5, ge=1, le=4096)
    gpus: int = Field(8, ge=1, le=16)
    external: list[str] = Field(default_factory=list, description="node names that are ECS Anywhere nodes")
    auto_scaling_group: bool = Field(False, description="the EC2 nodes belong to one Auto Scaling group")


class DeliverySpec(_Spec):
    duplicate: bool = False
    shuffle: bool = False
    seed: int = 7


class Spares(_Spec):
    spares: int = Field(ge=0)


class Expect(_Spec):
    incidents: int | None = None
    actions: dict[str, int] | None = None
    job_states: dict[str, str] = Field(default_factory=dict)
    node_states: dict[str, str] = Field(default_factory=dict)
    restarts: dict[str, int] = Field(default_factory=dict)
    notifications: list[str] = Field(default_factory=list)
    no_notifications: bool = False
    forbid_notifications: list[str] = Field(default_factory=list)
    notification_counts: dict[str, int] = Field(default_factory=dict)
    max_in_repair: int | None = None
    max_out_of_service: int | None = None
    no_double_booking: bool = False
    # A list (exactly these nodes), a set (YAML ``{a, b}``: every rank on one of these) or ``{spares: N}``
    # (exactly N ranks on nodes the job did not use before).
    restarted_on: dict[str, list[str] | set[str] | Spares] = Field(default_factory=dict)

    @field_validator("restarted_on", mode="before")
    @classmethod
    def _sets(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for job, nodes in value.items():
            if isinstance(nodes, dict) and "spares" not in nodes and all(v is None for v in nodes.values()):
                nodes = set(nodes)
            out[job] = nodes
        return out
    incident_outcomes: dict[str, str] | list[str] | None = None
    parked: dict[str, int] = Field(default_factory=dict)


class Scenario(_Spec):
    name: str
    title: str
    description: str = ""
    fleet: FleetSpec = Field(default_factory=FleetSpec)
    jobs: list[JobSpec]
    faults: list[FaultSpec] = Field(default_factory=list)
    events: list[EventSpec] = Field(default_factory=list)
    errors: list[ErrorSpec] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    delivery: DeliverySpec = Field(default_factory=DeliverySpec)
    expect: Expect = Field(default_factory=Expect)
    run_for: float = Field(7200, description="virtual seconds to simulate at most")


def scenario_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(name_or_path: str) -> Scenario:
    path = Path(name_or_path)
    if not path.exists():
        matches = (sorted(SCENARIO_DIR.glob(f"{name_or_path}*.yaml"))
                   or sorted(SCENARIO_DIR.glob(f"*{name_or_path}*.yaml")))
        if not matches:
            raise ConfigError(f"scenario {name_or_path!r} not found; known: {', '.join(scenario_names())} "
                              "(or give a path to a YAML/JSON file)")
        path = matches[0]
    text = path.read_text()
    try:
        if path.suffix == ".json":
            raw = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
        return Scenario.model_validate(raw)
    except (ValidationError, ValueError) as exc:
        raise ConfigError(f"scenario file {path} is invalid: {exc}") from exc
