"""The fleet reliability report as it goes out (``--json``), and what shapes it (``ReportConfig``).

The definitions of every figure are in ``analytics.report``'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict

from consumers.core.projection import ProjectionConfig

PHASES = ("detect", "diagnose", "repair", "restart")


@dataclass(frozen=True)
class ReportConfig:
    lemon_threshold: int = 2  # hardware faults in the range that make a node a "lemon"
    escalation_kinds: frozenset[str] = frozenset({"escalation", "deadline_expired", "job_failed"})
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)


# --- the report, as it goes out (--json) ------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Stat(_Out):
    count: int
    mean_s: float | None
    p90_s: float | None


class IncidentFigures(_Out):
    incident_id: str
    node_arn: str
    opened_at: datetime
    closed_at: datetime | None
    outcome: str  # an IncidentClosed outcome, or "open"
    verdict: str | None
    hardware_fault: bool
    jobs: list[str]
    first_failure_at: datetime | None
    detect_s: float | None
    diagnose_s: float | None
    repair_s: float | None
    restart_s: float | None
    time_to_recovery_s: float | None
    automatic: bool
    xids: dict[int, int]


class XidFigures(_Out):
    xid: int
    meaning: str
    cls: str
    incidents: int
    occurrences: int


class NodeFigures(_Out):
    node_arn: str
    incidents: int
    hardware_faults: int
    application_faults: int
    reboots: int
    quarantined: bool
    xids: list[int]
    lemon: bool


class Interruption(_Out):
    incident_id: str
    job_id: str
    failed_at: datetime
    running_at: datetime | None
    duration_s: float
    gpus: int
    gpu_hours_lost: float
    recovered: bool


class DayFaults(_Out):
    day: date
    hardware: int
    application: int
    other: int


class Report(_Out):
    since: datetime | None
    until: datetime | None
    range_end: datetime | None
    events: int
    unreadable: dict[str, int]  # records that were not events, by reason (counted, never skipped silently)
    incidents: int
    incidents_complete: int
    outcomes: dict[str, int]
    automatic_recoveries: int
    automatic_recovery_rate: float | None
    time_to_recovery: Stat
    phases: dict[str, Stat]
    xids: list[XidFigures]
    nodes: list[NodeFigures]
    lemon_threshold: int
    interruptions: list[Interruption]
    gpu_hours_lost: float
    faults_by_day: list[DayFaults]
    node_day: dict[str, dict[str, int]]  # node ARN -> ISO day -> incidents opened
    incident_list: list[IncidentFigures]
