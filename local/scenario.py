"""Scenario files (YAML or JSON in scenarios/): a fleet, jobs, injected faults, and what must happen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consumers.core.errors import ConfigError

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
DEFAULT_SCENARIO = "02-xid48-reboot"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeHealth(_Spec):
    dcgm: Literal["pass", "fail", "crash"] = "pass"
    xids: list[int] = Field(default_factory=list)


class FaultSpec(_Spec):
    at: float = Field(ge=0, description="seconds after every job runs")
    node: str
    xids: list[int] = Field(default_factory=list)
    dcgm: Literal["pass", "fail", "crash"] = "fail"
    after_reboot: NodeHealth = Field(default_factory=NodeHealth)
    reboot: Literal["ok", "never_returns", "lost"] = "ok"
    check: Literal["ok", "fails_to_start", "exits_without_report"] = "ok"


class EventSpec(_Spec):
    at: float = Field(ge=0)
    type: Literal["agent_reconnect", "user_stop", "stray_check_task"]
    node: str | None = None
    job: str | None = None


class JobSpec(_Spec):
    id: str
    nodes: list[str]
    family: str = "llm-train"
    tags: list[dict[str, str]] = Field(default_factory=lambda: [{"key": "team", "value": "foundation-models"}])


class FleetSpec(_Spec):
    nodes: int = Field(5, ge=1, le=512)
    gpus: int = Field(8, ge=1, le=16)
    external: list[str] = Field(default_factory=list, description="node names that are ECS Anywhere nodes")
    auto_scaling_group: bool = Field(False, description="the EC2 nodes belong to one Auto Scaling group")


class DeliverySpec(_Spec):
    duplicate: bool = False
    shuffle: bool = False
    seed: int = 7


class Expect(_Spec):
    incidents: int | None = None
    actions: dict[str, int] | None = None
    job_states: dict[str, str] = Field(default_factory=dict)
    node_states: dict[str, str] = Field(default_factory=dict)
    restarts: dict[str, int] = Field(default_factory=dict)
    notifications: list[str] = Field(default_factory=list)
    no_notifications: bool = False
    max_in_repair: int | None = None
    restarted_on: dict[str, list[str]] = Field(default_factory=dict)


class Scenario(_Spec):
    name: str
    title: str
    description: str = ""
    fleet: FleetSpec = Field(default_factory=FleetSpec)
    jobs: list[JobSpec]
    faults: list[FaultSpec] = Field(default_factory=list)
    events: list[EventSpec] = Field(default_factory=list)
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
