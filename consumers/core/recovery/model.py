"""What recovery remembers: four kinds of record, each a pair of facts and plan.

* facts come from ECS's own events and merge the same way in any order (a lifecycle stage only moves
  forward, flags only get set, versions decide the rest);
* a plan is what recovery decided; it changes only by a decision, which records the new plan on the
  stream (``RecoveryRecorded``) with its version, so the highest version wins wherever it is folded.

So the live snapshot and a replay of the stream fold to the same records. Every record is bounded: a job
holds only its current generation (a compact rank table) and a short history.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from consumers.core.facts import RankView
from events_schema.events import IncidentOutcome, NodeRepairState

JobPhase = Literal[
    "RUNNING", "RECOVERING", "WAITING_CAPACITY", "RESTARTING", "COMPLETED", "FAILED", "STOPPED_BY_USER",
]
TERMINAL: frozenset[str] = frozenset({"COMPLETED", "FAILED", "STOPPED_BY_USER"})
IN_RECOVERY: frozenset[str] = frozenset({"RECOVERING", "WAITING_CAPACITY", "RESTARTING"})
IncidentPhase = Literal["WAITING", "CHECKING", "REBOOTING", "VERIFYING", "CLOSED"]
IncidentTrigger = Literal["failure", "signal", "maintenance", "operator"]
REPAIRING: frozenset[str] = frozenset({"CHECKING", "REBOOTING", "VERIFYING"})
OUT_OF_SERVICE: frozenset[str] = frozenset({"QUARANTINED", "REPLACED", "MISCONFIGURED"})
TimerKind = Literal[
    "siblings", "health_check", "report_grace", "reboot", "restart", "capacity", "backoff", "notices",
    "maintenance", "retention",
]
HISTORY_KEPT = 10


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=False)


class Timer(_Record):
    """One pending deadline; ``token`` tells a re-armed timer from the one it replaced."""

    kind: TimerKind
    due_at: str
    token: str


# --- jobs ------------------------------------------------------------------------------------------

_CODES = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"
FAILED_BIT, USER_STOP_BIT, RECOVERY_STOP_BIT = 8, 16, 32


def rank_code(stage: int, *, failed: bool, user_stop: bool, recovery_stop: bool) -> int:
    return stage | (FAILED_BIT if failed else 0) | (USER_STOP_BIT if user_stop else 0) | (
        RECOVERY_STOP_BIT if recovery_stop else 0)


def merge_codes(a: int, b: int) -> int:
    """Later stage, every flag: commutative, so events merge the same in any order."""
    return max(a & 7, b & 7) | ((a | b) & ~7)


class RankTable(_Record):
    """The ranks of a job's current generation: one task id and one status character each.

    2,048 ranks take about 80 KB (DynamoDB's item limit is 400 KB); node and launch spec of each rank
    live in its task record.
    """

    prefix: str = ""
    ids: list[str] = Field(default_factory=list)
    codes: str = ""
    _index: dict[str, int] | None = PrivateAttr(default=None)

    def _split(self, task_arn: str) -> str:
        if not self.ids and not self.prefix:
            self.prefix = task_arn.rsplit("/", 1)[0] + "/"
        return task_arn[len(self.prefix):] if task_arn.startswith(self.prefix) else task_arn

    def arn(self, short: str) -> str:
        return short if short.startswith("arn:") else self.prefix + short

    def position(self, task_arn: str) -> int | None:
        if self._index is None:
            self._index = {self.arn(s): i for i, s in enumerate(self.ids)}
        return self._index.get(task_arn)

    def put(self, task_arn: str, code: int) -> bool:
        """Merge a rank's status in; True when anything changed."""
        at = self.position(task_arn)
        if at is None:
            self.ids.append(self._split(task_arn))
            self.codes += _CODES[code]
            if self._index is not None:
                self._index[task_arn] = len(self.ids) - 1
            return True
        old = _CODES.index(self.codes[at])
        new = merge_codes(old, code)
        if new == old:
            return False
        self.codes = self.codes[:at] + _CODES[new] + self.codes[at + 1:]
        return True

    def code(self, task_arn: str) -> int | None:
        at = self.position(task_arn)
        return None if at is None else _CODES.index(self.codes[at])

    def __len__(self) -> int:
        return len(self.ids)

    def items(self) -> Iterator[tuple[str, int]]:
        for short, char in zip(self.ids, self.codes, strict=True):
            yield self.arn(short), _CODES.index(char)

    def views(self) -> Iterator[RankView]:
        for char in self.codes:
            code = _CODES.index(char)
            yield RankView(stage=code & 7, failed=bool(code & FAILED_BIT), user_stop=bool(code & USER_STOP_BIT),
                           recovery_stop=bool(code & RECOVERY_STOP_BIT))

    def clear(self) -> None:
        self.prefix, self.ids, self.codes, self._index = "", [], "", None


class FailureMark(_Record):
    at: str
    task_arn: str
    node_arn: str | None = None
    exit_code: int | None = None
    reason: str = ""


class JobFacts(_Record):
    ranks: RankTable = Field(default_factory=RankTable)
    gpu: bool = False
    gpus_per_rank: int = 0
    first_failure: FailureMark | None = None
    # Node -> GPU-fault XIDs named by its own ranks' stops (evidence that node is a suspect too).
    evidence: dict[str, list[int]] = Field(default_factory=dict)
    partition_key: str | None = None
    cluster_arn: str | None = None
    last_seen_at: str = ""
    # Facts belong to the run that started after this moment (a finished job's next run resets them).
    since: str = ""

    def reset(self) -> None:
        self.ranks.clear()
        self.first_failure = None
        self.evidence = {}


class GenerationSummary(_Record):
    generation: int
    started_at: str
    launched_by: Literal["user", "recovery"]
    ranks: int
    ended: str = ""


class JobPlan(_Record):
    version: int = 0
    phase: JobPhase = "RUNNING"
    generation: int = 0
    generation_at: str = ""
    launched_by: Literal["user", "recovery"] = "user"
    expected_ranks: int = 0
    stop_requested: bool = False
    suspects_chosen: bool = False
    incidents: list[str] = Field(default_factory=list)
    restarts: list[str] = Field(default_factory=list)
    restart_total: int = 0
    history: list[GenerationSummary] = Field(default_factory=list)
    reason: str = ""
    timer: Timer | None = None
    at_risk: str | None = None
    finished_at: str | None = None
    round_counted: bool = False
    start_failed: str | None = None


class Job(_Record):
    job_id: str
    facts: JobFacts = Field(default_factory=JobFacts)
    plan: JobPlan = Field(default_factory=JobPlan)

    @property
    def phase(self) -> JobPhase:
        return self.plan.phase

    @property
    def finished(self) -> bool:
        return self.plan.phase in TERMINAL


# --- nodes -----------------------------------------------------------------------------------------


class HealthRegister(_Record):
    """One health check's latest status (ECS's instance health checks, our node watcher's signals)."""

    status: str
    since: str
    reason: str = ""
    order: str = ""


class ScheduledChange(_Record):
    code: str
    start: str | None = None
    end: str | None = None
    event_arn: str = ""


class NodeFacts(_Record):
    ecs_version: int = -1
    cluster_arn: str | None = None
    instance_id: str | None = None
    status: str | None = None
    agent_connected: bool | None = None
    gpus_total: int = 0
    gpus_remaining: int | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    attributes_at: str = ""  # the time of the event that showed these attributes
    last_disconnect_at: str | None = None
    last_connect_at: str | None = None
    health: dict[str, HealthRegister] = Field(default_factory=dict)
    ec2_state: str | None = None
    ec2_state_at: str = ""
    maintenance: dict[str, ScheduledChange] = Field(default_factory=dict)

    @property
    def external(self) -> bool:
        return bool(self.instance_id and self.instance_id.startswith("mi-"))

    @property
    def gpu_node(self) -> bool:
        return self.gpus_total > 0 and self.status in ("ACTIVE", "DRAINING")


class Hold(_Record):
    """A job's claim on a node's GPUs, valid while that job is in that generation and not finished."""

    generation: int
    gpus: int
    at: str = ""
    # The GPUs of each rank seen on the node (a job can run several ranks on one node): ``gpus`` is at
    # least their sum.
    ranks: dict[str, int] = Field(default_factory=dict)


class NodePlan(_Record):
    version: int = 0
    repair: NodeRepairState = "HEALTHY"
    incident_id: str | None = None
    reason: str = ""
    holds: dict[str, Hold] = Field(default_factory=dict)
    fault_times: list[str] = Field(default_factory=list)
    counted: bool = False
    drained: bool = False
    refused_at: str | None = None
    lost_handled: str | None = None
    attribute_acted: str | None = None
    # When ECS had the repair state's attribute (its PutAttributes succeeded); None while that call is out.
    # PutAttributes sends no event: an event older than this may still show the attribute as it was.
    mirrored_at: str | None = None
    maintenance_acted: list[str] = Field(default_factory=list)
    maintenance_notified: list[str] = Field(default_factory=list)
    replacing: str | None = None  # the scheduled change a replace-ahead call is out for
    replace_tried: list[str] = Field(default_factory=list)
    timer: Timer | None = None


class Node(_Record):
    arn: str
    facts: NodeFacts = Field(default_factory=NodeFacts)
    plan: NodePlan = Field(default_factory=NodePlan)


# --- incidents -------------------------------------------------------------------------------------


class ReportSummary(_Record):
    """The verified report of the current check attempt, until it is acted on."""

    check_key: str
    verdict: str
    action: str = "none"
    reason: str = ""
    xids: list[int] = Field(default_factory=list)
    boot_time: str | None = None
    fix: str = ""
    at: str = ""


class Incident(_Record):
    """One suspect node's diagnosis and repair; the jobs that wait on it."""

    incident_id: str
    node_arn: str
    version: int = 0
    trigger: IncidentTrigger = "failure"
    opened_at: str
    reason: str = ""
    fault_at: str | None = None
    jobs: list[str] = Field(default_factory=list)
    phase: IncidentPhase = "WAITING"
    check_attempt: int = 0
    check_level: int = 2
    check_key: str | None = None
    check_task_arn: str | None = None
    check_exit: int | None = None
    secret_sha256: str | None = None
    xids: list[int] = Field(default_factory=list)
    verdict: str | None = None
    action: str | None = None
    reboot_attempt: int = 0
    reboot_requested_at: str | None = None
    reboot_due: str | None = None
    reboot_key: str | None = None
    hint_after: str | None = None
    reboot_hint: bool = False
    report: ReportSummary | None = None
    check_stopped: str | None = None
    replacing: bool = False
    signal: str = ""
    applied: dict[str, str] = Field(default_factory=dict)
    outcome: IncidentOutcome | None = None
    closed_at: str | None = None
    timer: Timer | None = None

    @property
    def closed(self) -> bool:
        return self.phase == "CLOSED"


# --- the fleet -------------------------------------------------------------------------------------


class PendingNotice(_Record):
    """Notices of one kind and cause, gathered over a short window and sent as one message."""

    kind: str
    opened_at: str
    summary: str
    next_step: str
    node_arns: list[str] = Field(default_factory=list)
    job_ids: list[str] = Field(default_factory=list)
    incident_ids: list[str] = Field(default_factory=list)
    xids: list[int] = Field(default_factory=list)
    verdict: str | None = None
    reasons: list[str] = Field(default_factory=list)
    count: int = 0
    done: list[str] = Field(default_factory=list)  # what recovery did: the steps' idempotency keys
    # The first node's instance, noted while its record is loaded: the window closes on the fleet's timer,
    # when only the fleet's record is.
    instance_id: str | None = None


class Fleet(_Record):
    """Counters shared by the whole cluster, changed with conditional writes (no lock)."""

    version: int = 0
    gpu_nodes: int = 0
    in_repair: list[str] = Field(default_factory=list)
    out_of_service: list[str] = Field(default_factory=list)
    waiting_repair: list[str] = Field(default_factory=list)
    waiting_capacity: list[str] = Field(default_factory=list)
    replaced: list[str] = Field(default_factory=list)
    notices: dict[str, PendingNotice] = Field(default_factory=dict)
    timer: Timer | None = None


# --- tasks -----------------------------------------------------------------------------------------


class TaskRecord(_Record):
    """What a task needs to be started again exactly as it was (ECS forgets stopped tasks)."""

    task_arn: str
    job_id: str | None = None
    identity: str = ""
    node_arn: str | None = None
    family: str = ""
    created_at: str = ""
    gpus: int = 0
    spec: dict[str, Any] = Field(default_factory=dict)
    tags: list[dict[str, str]] | None = None
    tags_requested: bool = False
    # While its job is unknown (it depends on its tags): its status so far, merged in when known.
    pending_code: int | None = None
    stopped_at: str | None = None
