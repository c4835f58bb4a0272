"""What the recovery consumer remembers: a projection of the stream, persisted entity by entity."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")

REPAIRING = frozenset({"SUSPECT", "CHECKING", "REBOOTING", "VERIFYING"})
OUT_OF_SERVICE = frozenset({"QUARANTINED", "REPLACED"})


@dataclass
class Record:
    KIND: ClassVar[str]
    KEY: ClassVar[str]

    def to_item(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_item(cls: type[R], item: dict[str, Any]) -> R:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in item.items() if k in names})


@dataclass
class TaskRec(Record):
    KIND: ClassVar[str] = "task"
    KEY: ClassVar[str] = "arn"
    arn: str
    job_id: str | None
    node: str | None
    family: str
    status: str = "PROVISIONING"
    version: int = 0
    is_gpu: bool = False
    is_check: bool = False
    failed: bool = False
    exit_code: int | None = None
    stop_code: str | None = None
    created_at: str = ""
    stopped_at: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    gpus: int = 0
    tags: list[dict[str, str]] | None = None
    recovery_stop: bool = False
    ran: bool = False


@dataclass
class NodeRec(Record):
    KIND: ClassVar[str] = "node"
    KEY: ClassVar[str] = "arn"
    arn: str
    instance_id: str | None = None
    status: str | None = None
    agent_connected: bool | None = None
    gpu_count: int = 0
    version: int = 0
    last_disconnect_at: str | None = None
    last_connect_at: str | None = None
    repair_state: str = "HEALTHY"
    incident_id: str | None = None
    fault_times: list[str] = field(default_factory=list)

    @property
    def external(self) -> bool:
        return bool(self.instance_id and self.instance_id.startswith("mi-"))


@dataclass
class JobRec(Record):
    KIND: ClassVar[str] = "job"
    KEY: ClassVar[str] = "job_id"
    job_id: str
    state: str = "RUNNING"
    restart_count: int = 0
    incident_id: str | None = None
    tasks: list[str] = field(default_factory=list)
    generation_at: str = ""
    first_failure_at: str | None = None
    restart_attempt: int = 0
    restart_tasks: list[str] = field(default_factory=list)
    reason: str = ""


@dataclass
class Incident(Record):
    KIND: ClassVar[str] = "incident"
    KEY: ClassVar[str] = "id"
    id: str
    node: str
    jobs: list[str]
    opened_at: str
    trigger_task: str | None
    reason: str
    fault_at: str | None = None
    phase: str = "OPEN"
    check_level: int = 2
    check_attempt: int = 0
    check_key: str | None = None
    check_task_arn: str | None = None
    check_exit: int | None = None
    verdict: str | None = None
    action: str | None = None
    xids: list[int] = field(default_factory=list)
    reboot_attempt: int = 0
    reboot_requested_at: str | None = None
    saw_disconnect: bool = False
    outcomes: dict[str, str] = field(default_factory=dict)
    closed: bool = False
    outcome: str | None = None

    def verdict_for_check(self) -> bool:
        """Whether the current check already has its verdict."""
        return self.verdict is not None and self.phase not in ("CHECKING", "VERIFYING")


@dataclass
class Deadline(Record):
    KIND: ClassVar[str] = "deadline"
    KEY: ClassVar[str] = "id"
    id: str
    kind: str
    due_at: str
    incident_id: str | None = None
    job_id: str | None = None
    node: str | None = None


KINDS: dict[str, type[Record]] = {cls.KIND: cls for cls in (TaskRec, NodeRec, JobRec, Incident, Deadline)}


@dataclass
class RecoveryState:
    tasks: dict[str, TaskRec] = field(default_factory=dict)
    nodes: dict[str, NodeRec] = field(default_factory=dict)
    jobs: dict[str, JobRec] = field(default_factory=dict)
    incidents: dict[str, Incident] = field(default_factory=dict)
    deadlines: dict[str, Deadline] = field(default_factory=dict)
    dirty: set[tuple[str, str]] = field(default_factory=set)
    removed: set[tuple[str, str]] = field(default_factory=set)
    # The store's save count this copy reflects; a save from a stale copy is refused.
    generation: int = 0

    def touch(self, record: Record) -> None:
        key = (record.KIND, _key_of(record))
        self.dirty.add(key)
        self.removed.discard(key)

    def table(self, kind: str) -> dict[str, Any]:
        tables: dict[str, dict[str, Any]] = {"task": self.tasks, "node": self.nodes, "job": self.jobs,
                                             "incident": self.incidents, "deadline": self.deadlines}
        return tables[kind]

    def put(self, record: Record) -> None:
        self.table(record.KIND)[_key_of(record)] = record
        self.touch(record)

    def drop(self, kind: str, key: str) -> None:
        if self.table(kind).pop(key, None) is not None:
            self.removed.add((kind, key))
            self.dirty.discard((kind, key))

    def record(self, kind: str, key: str) -> Record | None:
        found: Record | None = self.table(kind).get(key)
        return found

    def open_incident_on(self, node: str) -> Incident | None:
        return next((i for i in self.incidents.values() if i.node == node and not i.closed), None)

    def gpu_nodes(self) -> list[NodeRec]:
        return [n for n in self.nodes.values() if n.gpu_count > 0 and n.status in ("ACTIVE", "DRAINING")]

    def nodes_in_repair(self) -> int:
        return sum(1 for n in self.nodes.values() if n.repair_state in REPAIRING - {"SUSPECT"})


def _key_of(record: Record) -> str:
    return str(getattr(record, record.KEY))
